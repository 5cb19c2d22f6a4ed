//! The API cases of the end-to-end tests, written once and run against each build of the todo
//! component (`tests/api.rs`): every route and status code of both APIs, over HTTP.

use anyhow::Context;
use serde_json::json;

use super::Host;

pub fn todos_crud_over_http(host: &Host) -> anyhow::Result<()> {
    let (status, list) = host.call("GET", "/todos", None)?;
    assert_eq!((status, list), (200, json!([])));

    let created = host.request(
        "POST",
        "/todos",
        Some(("application/json", r#"{"title":"buy milk"}"#)),
    )?;
    assert_eq!(created.status, 201);
    let todo = created.json();
    let url = format!("{}/todos/1", host.base);
    assert_eq!(todo["url"], url.as_str());
    assert_eq!(created.header("location"), Some(url.as_str()));
    assert_eq!(created.header("access-control-allow-origin"), Some("*"));
    assert_eq!(todo["completed"], false);
    assert!(todo["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')));

    let (status, todo) = host.call("GET", "/todos/1", None)?;
    assert_eq!((status, todo["title"].clone()), (200, json!("buy milk")));

    let (status, todo) = host.call("PATCH", "/todos/1", Some(r#"{"completed":true}"#))?;
    assert_eq!((status, todo["completed"].clone()), (200, json!(true)));

    let (status, todo) = host.call(
        "PUT",
        "/todos/1",
        Some(r#"{"title":"buy oat milk","order":3}"#),
    )?;
    assert_eq!(status, 200);
    assert_eq!(todo["title"], "buy oat milk");
    assert_eq!(todo["completed"], false);
    assert_eq!(todo["order"], 3);

    assert_eq!(host.call("DELETE", "/todos/1", None)?.0, 204);
    let (status, body) = host.call("GET", "/todos/1", None)?;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "no todo with id 1");

    host.call("POST", "/todos", Some(r#"{"title":"a"}"#))?;
    host.call("POST", "/todos", Some(r#"{"title":"b"}"#))?;
    assert_eq!(host.call("DELETE", "/todos", None)?.0, 204);
    assert_eq!(host.call("GET", "/todos", None)?.1, json!([]));
    Ok(())
}

pub fn errors_over_http_carry_status_and_json_message(host: &Host) -> anyhow::Result<()> {
    let (status, body) = host.call("POST", "/todos", Some("{not json"))?;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not valid JSON")),
        "{body}"
    );

    let (status, body) = host.call("PATCH", "/todos/42", Some(r#"{"title":"x"}"#))?;
    assert_eq!(
        (status, body["error"].clone()),
        (404, json!("no todo with id 42"))
    );

    let wrong = host.request("PUT", "/todos", Some(("application/json", "{}")))?;
    assert_eq!(wrong.status, 405);
    assert_eq!(
        wrong.header("allow"),
        Some("GET, HEAD, POST, DELETE, OPTIONS")
    );
    assert!(wrong.json()["error"].as_str().is_some());

    let unsupported = host.request("POST", "/todos", Some(("text/plain", "title")))?;
    assert_eq!(unsupported.status, 415);
    assert!(
        unsupported.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("text/plain"))
    );

    let huge = format!(r#"{{"title":"{}"}}"#, "x".repeat(2 << 20));
    let too_large = host.request("POST", "/todos", Some(("application/json", &huge)))?;
    assert_eq!(too_large.status, 413);
    assert!(
        too_large.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("larger than"))
    );

    let (status, body) = host.call("GET", "/api/unknown", None)?;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());

    assert_eq!(
        host.call("GET", "/todos", None)?.1,
        json!([]),
        "no error created anything"
    );
    Ok(())
}

pub fn preflight_head_and_the_page(host: &Host) -> anyhow::Result<()> {
    let preflight = host.request("OPTIONS", "/todos/1", None)?;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, POST, PUT, PATCH, DELETE, OPTIONS")
    );

    let page = host.request("GET", "/", None)?;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text().contains("<title>Todos</title>"));
    assert!(
        !page.text().contains("https://"),
        "the page loads nothing from elsewhere"
    );

    let fallback = host.request("GET", "/active/filter", None)?;
    assert_eq!(fallback.status, 200);
    assert!(fallback.text().contains("<title>Todos</title>"));

    let head = host.request("HEAD", "/", None)?;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    Ok(())
}

pub fn a_body_that_only_says_json_is_fine_and_accept_is_never_refused(
    host: &Host,
) -> anyhow::Result<()> {
    let response = super::raw_request(
        host.addr(),
        b"GET /todos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: text/plain, */*\r\nConnection: close\r\n\r\n",
    )?;
    assert_eq!(response.status, 200, "{}", response.text());
    Ok(())
}

pub fn legacy_api_over_http(host: &Host) -> anyhow::Result<()> {
    let (status, rule) = host.call("POST", "/api/rule", Some(r#"{"name":"n","desc":"d"}"#))?;
    assert_eq!(status, 200);
    assert_eq!(
        (
            rule["key"].clone(),
            rule["name"].clone(),
            rule["desc"].clone()
        ),
        (json!(1), json!("n"), json!("d"))
    );

    let form = host.request(
        "POST",
        "/api/rule",
        Some((
            "application/x-www-form-urlencoded",
            "name=second+rule&desc=two",
        )),
    )?;
    assert_eq!(form.status, 200);
    assert_eq!(form.json()["name"], "second rule");

    let (status, rule) = host.call("PUT", "/api/rule", Some(r#"{"key":1,"status":2}"#))?;
    assert_eq!(status, 200);
    assert_eq!(
        (
            rule["status"].clone(),
            rule["name"].clone(),
            rule["desc"].clone()
        ),
        (json!(2), json!("n"), json!("d"))
    );
    assert_eq!(
        host.call("PUT", "/api/rule", Some(r#"{"key":77,"name":"x"}"#))?
            .0,
        404
    );

    let (status, page) = host.call("GET", "/api/rule?current=1&pageSize=10", None)?;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 2);
    assert_eq!(page["success"], true);
    assert_eq!(page["current"], 1);
    assert_eq!(page["pageSize"], 10);

    let (status, after) = host.call("DELETE", "/api/rule", Some(r#"{"key":[1]}"#))?;
    assert_eq!(status, 200);
    assert_eq!(after["pagination"]["total"], 1);
    assert_eq!(after["list"][0]["key"], 2);

    let (status, user) = host.call("GET", "/api/currentUser", None)?;
    assert_eq!(status, 200);
    assert!(user["userid"].as_str().is_some_and(|id| !id.is_empty()));
    Ok(())
}

/// Run with `--kv-max-batch-keys 7`: every list, page and bulk delete of both APIs works under
/// the host's batch limit, whatever it is (the host splits larger batches).
pub fn lists_and_bulk_deletes_work_under_a_small_kv_batch_limit(host: &Host) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, todo) =
            host.call("POST", "/todos", Some(&format!(r#"{{"title":"t{i}"}}"#)))?;
        assert_eq!(status, 201, "create {i}: {todo}");
        ids.push(todo["id"].as_u64().context("no id")?);
    }
    assert_eq!(super::listed_ids(host)?, ids, "GET /todos lists all 20");

    let (status, page) = host.call("GET", "/api/rule?current=1&pageSize=50", None)?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 20, "{page}");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(20), "{page}");

    let (gone, kept) = ids.split_at(10);
    let (status, after) = host.call(
        "DELETE",
        "/api/rule",
        Some(&json!({ "key": gone }).to_string()),
    )?;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["pagination"]["total"], 10, "{after}");
    assert_eq!(after["list"].as_array().map(Vec::len), Some(10), "{after}");
    assert_eq!(super::listed_ids(host)?, kept, "the other 10 are left");

    // Cursor pages of 3 over the 10 left: ids in order, `Link` while more remain, the counts.
    let mut target = "/todos?limit=3".to_string();
    let mut paged = Vec::new();
    loop {
        let page = host.request("GET", &target, None)?;
        assert_eq!(page.status, 200, "{target}: {}", page.text());
        assert_eq!(page.header("x-total-count"), Some("10"));
        paged.extend(
            page.json()
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["id"].as_u64()),
        );
        let Some(link) = page.header("link") else {
            break;
        };
        let next = link
            .strip_prefix(&format!("<{}", host.base))
            .and_then(|rest| rest.strip_suffix(">; rel=\"next\""))
            .with_context(|| format!("not a next link: {link}"))?;
        target = next.to_string();
    }
    assert_eq!(paged, kept, "four pages of 3, 3, 3 and 1");

    let (status, body) = host.call("DELETE", "/todos", None)?;
    assert_eq!(status, 204, "{body}");
    assert_eq!(host.call("GET", "/todos", None)?.1, json!([]));
    Ok(())
}

/// A valid `POST /todos` body of just over 2 MiB: a short title, then 2 MiB of JSON whitespace.
fn two_mib_todo() -> String {
    format!(r#"{{"title":"roomy"{}}}"#, " ".repeat(2 << 20))
}

/// Run with `--max-body 3MiB`: the host's limit is the only one; the guest has no cap of its own.
pub fn a_body_under_a_raised_host_limit_is_accepted(host: &Host) -> anyhow::Result<()> {
    let created = host.request(
        "POST",
        "/todos",
        Some(("application/json", &two_mib_todo())),
    )?;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["title"], "roomy");
    Ok(())
}

/// With the default limit (1 MiB) the same body is refused with 413 before the guest runs.
pub fn the_same_body_under_the_default_limit_gets_413(host: &Host) -> anyhow::Result<()> {
    let refused = host.request(
        "POST",
        "/todos",
        Some(("application/json", &two_mib_todo())),
    )?;
    assert_eq!(refused.status, 413, "{}", refused.text());
    assert!(refused.json()["error"].is_string(), "{}", refused.text());
    assert_eq!(host.call("GET", "/todos", None)?.1, json!([]));
    Ok(())
}

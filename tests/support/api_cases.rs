//! The API cases of the end-to-end tests, written once and run against each build of the todo
//! component (`tests/api.rs`) and on every platform (`tests/platforms.rs`): every route and
//! status code of both APIs, over HTTP; and, in [`bad_requests`], the bad-input table that
//! `tests/bad_input.rs` and `tests/platforms.rs` share.

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

/// The bad-input table: malformed, mistyped, oversized and misrouted requests, each with its
/// documented 4xx and a piece of the JSON error that says what was wrong. `tests/bad_input.rs`
/// runs it on `todo-host`, `tests/platforms.rs` on every other platform; [`check`] is what each
/// answer must pass, the same everywhere.
pub mod bad_requests {
    use anyhow::Context;
    use serde_json::Value;

    use crate::support::{Host, RawResponse, raw_call};

    const JSON: &str = "application/json";

    /// One bad request: method, raw target, optional (content type, body), expected status, and a
    /// piece of text the error message must contain.
    pub struct Case {
        pub method: &'static str,
        pub target: String,
        pub body: Option<(&'static str, Vec<u8>)>,
        pub status: u16,
        pub says: &'static str,
    }

    impl Case {
        /// The case's name in failures and in tables of differences: the method, the target, and
        /// the body (its content type when not JSON), each shortened to a readable length.
        pub fn name(&self) -> String {
            let target = shortened(self.target.as_bytes());
            match &self.body {
                None => format!("{} {target}", self.method),
                Some((JSON, body)) => format!("{} {target} {}", self.method, shortened(body)),
                Some((content_type, body)) => {
                    format!(
                        "{} {target} {content_type} {}",
                        self.method,
                        shortened(body)
                    )
                }
            }
        }
    }

    /// `bytes` as text, or, past 50 bytes, its first 20 and its length.
    fn shortened(bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        if bytes.len() <= 50 {
            return text.into_owned();
        }
        let start: String = text.chars().take(20).collect();
        format!("{start}… ({} bytes)", bytes.len())
    }

    fn case(
        method: &'static str,
        target: &str,
        body: Option<(&'static str, &[u8])>,
        status: u16,
        says: &'static str,
    ) -> Case {
        Case {
            method,
            target: target.to_string(),
            body: body.map(|(ct, b)| (ct, b.to_vec())),
            status,
            says,
        }
    }

    fn json(
        method: &'static str,
        target: &str,
        body: &str,
        status: u16,
        says: &'static str,
    ) -> Case {
        case(method, target, Some((JSON, body.as_bytes())), status, says)
    }

    /// Every bad request, for a store holding [`seed`]'s three todos (ids 1 to 3).
    pub fn cases() -> Vec<Case> {
        let long_title = format!(r#"{{"title":"{}"}}"#, "t".repeat(1001));
        let huge_body = format!(r#"{{"title":"{}"}}"#, "b".repeat(2 << 20));
        vec![
            // Malformed or mistyped JSON.
            json("POST", "/todos", "{", 400, "not valid JSON"),
            json("POST", "/todos", "", 400, "empty"),
            json("POST", "/todos", "   ", 400, "empty"),
            json("POST", "/todos", "[]", 400, "got an array"),
            json("POST", "/todos", "null", 400, "got null"),
            json("POST", "/todos", r#""title""#, 400, "got a string"),
            json(
                "POST",
                "/todos",
                r#"{"title":5}"#,
                400,
                "'title' must be a string",
            ),
            json(
                "POST",
                "/todos",
                r#"{"title":["x"]}"#,
                400,
                "'title' must be a string",
            ),
            json(
                "POST",
                "/todos",
                r#"{"completed":true}"#,
                400,
                "'title' is required",
            ),
            json(
                "POST",
                "/todos",
                r#"{"title":""}"#,
                400,
                "must not be empty",
            ),
            json(
                "POST",
                "/todos",
                r#"{"title":" \t\n "}"#,
                400,
                "must not be empty",
            ),
            json("POST", "/todos", &long_title, 400, "the limit is 1000"),
            json(
                "POST",
                "/todos",
                r#"{"title":"x","completed":"true"}"#,
                400,
                "'completed' must be true or false",
            ),
            json(
                "POST",
                "/todos",
                r#"{"title":"x","order":"1"}"#,
                400,
                "'order' must be an integer",
            ),
            json(
                "POST",
                "/todos",
                r#"{"title":"x","order":1.5}"#,
                400,
                "'order' must be an integer",
            ),
            json(
                "POST",
                "/todos",
                r#"{"title":"x","order":1e30}"#,
                400,
                "'order' must be an integer",
            ),
            json(
                "POST",
                "/todos",
                r#"{"title":"x"} trailing"#,
                400,
                "not valid JSON",
            ),
            case(
                "POST",
                "/todos",
                Some((JSON, b"{\"title\":\"\xff\xfe\"}")),
                400,
                "UTF-8",
            ),
            json(
                "PATCH",
                "/todos/1",
                r#"{"completed":null}"#,
                400,
                "'completed' must be true or false",
            ),
            json("PATCH", "/todos/1", "{", 400, "not valid JSON"),
            json("PUT", "/todos/1", "{}", 400, "'title' is required"),
            // Unsupported content types.
            case(
                "POST",
                "/todos",
                Some(("text/plain", b"{\"title\":\"x\"}")),
                415,
                "text/plain",
            ),
            case(
                "POST",
                "/todos",
                Some(("application/x-www-form-urlencoded", b"title=x")),
                415,
                "application/json",
            ),
            case(
                "PATCH",
                "/todos/1",
                Some(("application/xml", b"<t/>")),
                415,
                "application/xml",
            ),
            case(
                "POST",
                "/api/rule",
                Some(("multipart/form-data", b"--x")),
                415,
                "form-urlencoded",
            ),
            // Ids that are not ids, and things that do not exist.
            case("GET", "/todos/abc", None, 404, "'abc'"),
            case("GET", "/todos/-1", None, 404, "'-1'"),
            case("GET", "/todos/0", None, 404, "'0'"),
            case("GET", "/todos/1.5", None, 404, "'1.5'"),
            case(
                "GET",
                "/todos/99999999999999999999999",
                None,
                404,
                "positive integers",
            ),
            case("GET", "/todos/999", None, 404, "no todo with id 999"),
            json(
                "PATCH",
                "/todos/999",
                r#"{"title":"x"}"#,
                404,
                "no todo with id 999",
            ),
            case("DELETE", "/todos/999", None, 404, "no todo with id 999"),
            case("GET", "/todos/1/extra", None, 404, "no route"),
            case("GET", "/api/nope", None, 404, "no route"),
            // Path tricks: nothing is decoded into another route or a file.
            case("GET", "/todos/..", None, 404, "'..'"),
            case("GET", "/todos/%2e%2e", None, 404, "'%2e%2e'"),
            case(
                "GET",
                "/todos/..%2f..%2fetc%2fpasswd",
                None,
                404,
                "positive integers",
            ),
            case("GET", "/todos/1%2F2", None, 404, "positive integers"),
            // `/todos/%31` is `/todos/1` (a percent-encoded digit is the digit); a broken escape
            // is not.
            case("GET", "/todos/%3", None, 400, "'%3'"),
            case("DELETE", "/api/../todos", None, 404, "no route"),
            // Wrong methods.
            case("PUT", "/todos", None, 405, "PUT"),
            case("PATCH", "/todos", None, 405, "PATCH"),
            case("POST", "/todos/1", None, 405, "POST"),
            case("DELETE", "/api/currentUser", None, 405, "DELETE"),
            case("POST", "/", None, 405, "POST"),
            case("TRACE", "/todos", None, 405, "TRACE"),
            // Query parameters.
            case("GET", "/api/rule?current=abc", None, 400, "'current'"),
            case("GET", "/api/rule?pageSize=100000", None, 400, "'pageSize'"),
            case(
                "GET",
                "/api/rule?current=1&current=2",
                None,
                400,
                "more than once",
            ),
            case(
                "GET",
                "/api/rule?current=%zz",
                None,
                400,
                "percent-encoding",
            ),
            // Page parameters of `GET /todos`: a limit out of 1..=1000, a cursor that is no id,
            // or one past the highest id this store issued (forged, or from another store).
            case(
                "GET",
                "/todos?limit=0",
                None,
                400,
                "'limit' must be an integer from 1",
            ),
            case("GET", "/todos?limit=-1", None, 400, "got '-1'"),
            case("GET", "/todos?limit=1001", None, 400, "from 1 to 1000"),
            case("GET", "/todos?limit=ten", None, 400, "got 'ten'"),
            case("GET", "/todos?limit=", None, 400, "'limit'"),
            case("GET", "/todos?limit=5&limit=6", None, 400, "more than once"),
            case(
                "GET",
                "/todos?after=abc",
                None,
                400,
                "'after' must be the id",
            ),
            case("GET", "/todos?after=-1", None, 400, "got '-1'"),
            case("GET", "/todos?after=1e3", None, 400, "got '1e3'"),
            case("GET", "/todos?after=4", None, 400, "past the highest id"),
            case(
                "GET",
                "/todos?limit=10&after=99999999999999999999",
                None,
                400,
                "'after'",
            ),
            case("GET", "/todos?after=%zz", None, 400, "percent-encoding"),
            case("GET", "/api/rule?current=0", None, 400, "'current'"),
            case("GET", "/api/rule?current=-2", None, 400, "'current'"),
            case("GET", "/api/rule?pageSize=0", None, 400, "'pageSize'"),
            case("GET", "/api/rule?pageSize=ten", None, 400, "'pageSize'"),
            // Legacy bodies.
            json(
                "POST",
                "/api/rule",
                r#"{"name":""}"#,
                400,
                "must not be empty",
            ),
            json(
                "PUT",
                "/api/rule",
                r#"{"key":"1x"}"#,
                400,
                "'key' must be a positive integer",
            ),
            json(
                "PUT",
                "/api/rule",
                r#"{"key":1,"status":"done"}"#,
                400,
                "'status' must be 1",
            ),
            json(
                "DELETE",
                "/api/rule",
                r#"{"key":"all"}"#,
                400,
                "'key' must be a positive integer",
            ),
            case(
                "POST",
                "/api/rule",
                Some(("application/x-www-form-urlencoded", b"name=%ff")),
                400,
                "UTF-8",
            ),
            json(
                "DELETE",
                "/api/rule",
                &format!(r#"{{"key":{:?}}}"#, (1..=1001).collect::<Vec<u64>>()),
                400,
                "at most 1000",
            ),
            // Sizes.
            json("POST", "/todos", &huge_body, 413, "larger than"),
            case(
                "GET",
                &format!("/todos/{}", "9".repeat(9000)),
                None,
                414,
                "the limit is",
            ),
        ]
    }

    /// What the cases expect to find: two todos and a legacy rule, ids 1 to 3.
    pub fn seed(host: &Host) -> anyhow::Result<()> {
        for title in ["first", "second"] {
            let (status, body) =
                host.call("POST", "/todos", Some(&format!(r#"{{"title":"{title}"}}"#)))?;
            anyhow::ensure!(status == 201, "seeding {title}: {status} {body}");
        }
        let (status, body) =
            host.call("POST", "/api/rule", Some(r#"{"name":"third","desc":"d"}"#))?;
        anyhow::ensure!(status == 200, "seeding the rule: {status} {body}");
        Ok(())
    }

    /// Everything a client can see of the store, the counts of `GET /todos` included.
    pub fn snapshot(host: &Host) -> anyhow::Result<(Value, Value, Option<String>)> {
        let todos = host.request("GET", "/todos", None)?;
        Ok((
            todos.json(),
            host.call("GET", "/api/rule?pageSize=1000", None)?.1,
            todos.header("x-total-count").map(str::to_string),
        ))
    }

    /// Sends `case` as it is, over a raw connection: no client library rewrites its target.
    /// A chunked answer (wash and `wasmtime serve` stream the component's body) is decoded.
    pub fn send(host: &Host, case: &Case) -> anyhow::Result<RawResponse> {
        let body = case.body.as_ref().map(|(ct, b)| (*ct, b.as_slice()));
        let mut response = raw_call(host.addr(), case.method, &case.target, body)?;
        if response
            .header("transfer-encoding")
            .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"))
        {
            response.body = dechunked(&response.body)
                .with_context(|| format!("{}: a broken chunked body", case.name()))?;
        }
        Ok(response)
    }

    /// The data of a `Transfer-Encoding: chunked` body: hex size, CRLF, data, CRLF, until size 0.
    fn dechunked(mut wire: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut data = Vec::new();
        loop {
            let line_end = wire
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("no CRLF after a chunk size")?;
            let size_text = std::str::from_utf8(&wire[..line_end])?;
            // A size may carry `;extensions`.
            let size_hex = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .with_context(|| format!("chunk size {size_text:?}"))?;
            wire = &wire[line_end + 2..];
            if size == 0 {
                return Ok(data);
            }
            anyhow::ensure!(wire.len() >= size + 2, "a chunk of {size} bytes cut short");
            data.extend_from_slice(&wire[..size]);
            wire = &wire[size + 2..];
        }
    }

    /// What is wrong with `response` as the answer to `case`; `None` when it is the documented
    /// one: its status, a JSON error saying what the case says, and `Allow` with a 405.
    pub fn check(case: &Case, response: &RawResponse) -> Option<String> {
        let error = response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if response.status != case.status {
            Some(format!(
                "status {} (want {}): {}",
                response.status,
                case.status,
                response.text().chars().take(200).collect::<String>()
            ))
        } else if !error.contains(case.says) {
            Some(format!("error {error:?} does not say {:?}", case.says))
        } else if response.status == 405 && response.header("allow").is_none() {
            Some("405 without Allow".to_string())
        } else {
            None
        }
    }

    /// Name of the check [`conventions`] makes, for tables of differences.
    pub const CONVENTIONS: &str = "after them: a page past the last is empty with the total, \
        a cursor at the highest id ends the list, and the next create gets id 4";

    /// What follows the table on a store [`seed`]ed and then sent every case: not errors, by
    /// convention (a page past the last is empty, with the real total; a cursor at the highest
    /// id ends the list), and no bad request consumed an id.
    pub fn conventions(host: &Host) -> anyhow::Result<()> {
        let (status, past) = host.call("GET", "/api/rule?current=9&pageSize=10", None)?;
        anyhow::ensure!(
            (status, &past["data"], &past["total"]) == (200, &serde_json::json!([]), &3.into()),
            "a page past the last: {status} {past}"
        );
        let (status, end) = host.call("GET", "/todos?after=3", None)?;
        anyhow::ensure!(
            (status, &end) == (200, &serde_json::json!([])),
            "a cursor at the highest id: {status} {end}"
        );
        let (status, created) = host.call("POST", "/todos", Some(r#"{"title":"after"}"#))?;
        anyhow::ensure!(
            (status, &created["id"]) == (201, &4.into()),
            "the next create: {status} {created}"
        );
        Ok(())
    }
}

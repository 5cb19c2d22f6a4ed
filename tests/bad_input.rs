//! Bad input to the todo API, table-driven over real sockets: each case gets its documented 4xx
//! with a JSON error that says what was wrong, and leaves the store exactly as it was.

mod support;

use serde_json::Value;
use support::{Host, RawResponse, raw_call};

const JSON: &str = "application/json";

/// One bad request: method, raw target, optional (content type, body), expected status, and a
/// piece of text the error message must contain.
struct Case {
    method: &'static str,
    target: String,
    body: Option<(&'static str, Vec<u8>)>,
    status: u16,
    says: &'static str,
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

fn json(method: &'static str, target: &str, body: &str, status: u16, says: &'static str) -> Case {
    case(method, target, Some((JSON, body.as_bytes())), status, says)
}

fn cases() -> Vec<Case> {
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
        // `/todos/%31` is `/todos/1` (a percent-encoded digit is the digit); a broken escape is not.
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

/// Everything a client can see of the store, the counts of `GET /todos` included.
fn snapshot(host: &Host) -> anyhow::Result<(Value, Value, Option<String>)> {
    let todos = host.request("GET", "/todos", None)?;
    Ok((
        todos.json(),
        host.call("GET", "/api/rule?pageSize=1000", None)?.1,
        todos.header("x-total-count").map(str::to_string),
    ))
}

fn check(host: &Host, case: &Case) -> anyhow::Result<RawResponse> {
    let body = case.body.as_ref().map(|(ct, b)| (*ct, b.as_slice()));
    raw_call(host.addr(), case.method, &case.target, body)
}

#[test]
fn every_bad_request_gets_its_4xx_with_a_json_reason_and_changes_nothing() -> anyhow::Result<()> {
    let host = Host::start(&["--store", "memory://"])?;
    for title in ["first", "second"] {
        assert_eq!(
            host.call("POST", "/todos", Some(&format!(r#"{{"title":"{title}"}}"#)))?
                .0,
            201
        );
    }
    host.call("POST", "/api/rule", Some(r#"{"name":"third","desc":"d"}"#))?;
    let before = snapshot(&host)?;

    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let response = check(&host, case)?;
        let error = response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let what = format!(
            "{} {}",
            case.method,
            case.target.chars().take(60).collect::<String>()
        );
        if response.status != case.status {
            failures.push(format!(
                "{what}: status {} (want {}), {error}",
                response.status, case.status
            ));
        } else if !error.contains(case.says) {
            failures.push(format!(
                "{what}: error {error:?} does not say {:?}",
                case.says
            ));
        } else if response.status == 405 && response.header("allow").is_none() {
            failures.push(format!("{what}: 405 without Allow"));
        } else if snapshot(&host)? != before {
            failures.push(format!("{what}: the store changed"));
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Not errors, by convention: a page past the last is empty, with the real total; a cursor
    // at the highest id ends the list.
    let (status, past) = host.call("GET", "/api/rule?current=9&pageSize=10", None)?;
    assert_eq!(
        (status, past["data"].clone(), past["total"].clone()),
        (200, serde_json::json!([]), 3.into())
    );
    let (status, end) = host.call("GET", "/todos?after=3", None)?;
    assert_eq!((status, end), (200, serde_json::json!([])));
    assert_eq!(snapshot(&host)?, before, "the store is unchanged");

    // No bad request consumed an id either.
    let (_, created) = host.call("POST", "/todos", Some(r#"{"title":"after"}"#))?;
    assert_eq!(created["id"], 4);
    Ok(())
}

//! The published contract, `guest/src/openapi.json`, kept in step with the code: every documented
//! operation is routed and answers a documented status; every method a route's `Allow` lists is
//! documented and nothing more; the documented limits are the code's constants and hold at their
//! boundaries; the document is served at `GET /openapi.json`, byte for byte, whatever the public
//! folder holds. The live check is schemathesis in CI (`tests/contract.sh`).

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::error_of;
use todo_guest::body::{MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS};
use todo_guest::kv::MemoryKv;
use todo_guest::legacy::{CURRENT_USER_ALLOW, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, RULE_ALLOW};
use todo_guest::public::PublicFiles;
use todo_guest::router::{CORS_METHODS, OPENAPI_JSON, PAGE_ALLOW};
use todo_guest::time::Timestamp;
use todo_guest::todos::{COLLECTION_ALLOW, ITEM_ALLOW, MAX_LIMIT};
use todo_guest::{Request, Response, handle, handle_with_files};

const NOW: Timestamp = Timestamp {
    seconds: 1_764_000_000,
    nanoseconds: 0,
};

/// The HTTP methods an OpenAPI path item may hold, as its keys spell them.
const METHODS: [&str; 8] = [
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

fn document() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("guest/src/openapi.json is JSON")
}

/// The value at JSON pointer `pointer` of the document; a missing one fails the test by name.
fn at<'a>(doc: &'a Value, pointer: &str) -> &'a Value {
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("the document has nothing at {pointer}"))
}

/// `#/components/...` followed: the target of a `$ref`, or `value` itself.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => resolve(doc, at(doc, reference.trim_start_matches('#'))),
        None => value,
    }
}

/// The documented methods of `path`, upper case.
fn documented_methods(doc: &Value, path: &str) -> BTreeSet<String> {
    let item = at(
        doc,
        &format!("/paths/{}", path.replace('~', "~0").replace('/', "~1")),
    );
    item.as_object()
        .expect("a path item is an object")
        .keys()
        .filter(|key| METHODS.contains(&key.as_str()))
        .map(|key| key.to_ascii_uppercase())
        .collect()
}

fn paths(doc: &Value) -> Vec<String> {
    at(doc, "/paths")
        .as_object()
        .expect("paths is an object")
        .keys()
        .cloned()
        .collect()
}

fn send(kv: &MemoryKv, request: Request) -> Response {
    handle(&request, kv, NOW)
}

/// A store holding todo 1 (also rule 1), so that `{id}` names something.
fn store_with_one_todo() -> MemoryKv {
    let kv = MemoryKv::new();
    let response = send(
        &kv,
        Request::new("POST", "/todos").with_json(r#"{"title":"one"}"#),
    );
    assert_eq!(response.status, 201, "{:?}", response.body_json());
    kv
}

/// A body each writing operation accepts, so the answer shows the route, not a body error.
fn valid_body(method: &str, path: &str) -> Option<&'static str> {
    match (method, path) {
        ("POST", "/todos") | ("PUT", "/todos/{id}") => Some(r#"{"title":"t"}"#),
        ("PATCH", "/todos/{id}") => Some(r#"{"completed":true}"#),
        ("POST", "/api/rule") => Some(r#"{"name":"n"}"#),
        ("PUT", "/api/rule") => Some(r#"{"key":1,"status":2}"#),
        ("DELETE", "/api/rule") => Some(r#"{"key":[1]}"#),
        _ => None,
    }
}

#[test]
fn the_document_is_openapi_3_with_both_apis() {
    let doc = document();
    assert!(
        at(&doc, "/openapi")
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "not OpenAPI 3"
    );
    let paths: BTreeSet<String> = paths(&doc).into_iter().collect();
    let expected: BTreeSet<String> = [
        "/todos",
        "/todos/{id}",
        "/api/rule",
        "/api/currentUser",
        "/openapi.json",
    ]
    .map(String::from)
    .into();
    assert_eq!(paths, expected);
}

#[test]
fn every_documented_operation_is_routed_and_answers_a_documented_status() {
    let doc = document();
    for path in paths(&doc) {
        for method in documented_methods(&doc, &path) {
            let kv = store_with_one_todo();
            let target = path.replace("{id}", "1");
            let mut request = Request::new(&method, &target);
            if let Some(body) = valid_body(&method, &path) {
                request = request.with_json(body);
            }
            let response = send(&kv, request);
            let label = format!("{method} {path}");
            assert_ne!(response.status, 405, "{label} is not routed");
            assert!(
                !(response.status == 404 && error_of(&response).contains("no route")),
                "{label} is not routed: {}",
                error_of(&response)
            );
            assert!(
                response.status < 400,
                "{label} with a valid request answered {}: {}",
                response.status,
                error_of(&response)
            );
            let pointer = format!(
                "/paths/{}/{}/responses/{}",
                path.replace('/', "~1"),
                method.to_ascii_lowercase(),
                response.status
            );
            assert!(
                doc.pointer(&pointer).is_some(),
                "{label} answered {}, which it does not document",
                response.status
            );
            assert_eq!(
                response.header("access-control-allow-origin"),
                Some("*"),
                "{label}"
            );
        }
    }
}

#[test]
fn every_method_a_route_allows_is_documented_and_no_other() {
    let doc = document();
    for path in paths(&doc) {
        let kv = store_with_one_todo();
        let response = send(&kv, Request::new("TRACE", &path.replace("{id}", "1")));
        assert_eq!(response.status, 405, "TRACE {path}");
        let allow: BTreeSet<String> = response
            .header("allow")
            .unwrap_or_else(|| panic!("405 on {path} without Allow"))
            .split(',')
            .map(|method| method.trim().to_string())
            .collect();
        assert_eq!(
            allow,
            documented_methods(&doc, &path),
            "{path}: Allow vs the document"
        );
    }
    // The same by name: each route's constant against its path.
    for (path, allow) in [
        ("/todos", COLLECTION_ALLOW),
        ("/todos/{id}", ITEM_ALLOW),
        ("/api/rule", RULE_ALLOW),
        ("/api/currentUser", CURRENT_USER_ALLOW),
        ("/openapi.json", PAGE_ALLOW),
    ] {
        let allow: BTreeSet<String> = allow.split(", ").map(String::from).collect();
        assert_eq!(allow, documented_methods(&doc, path), "{path}");
    }
}

#[test]
fn undocumented_api_paths_are_not_routed() {
    let kv = store_with_one_todo();
    for path in [
        "/todos/1/x",
        "/api",
        "/api/rules",
        "/api/rule/1",
        "/api/user",
    ] {
        let response = send(&kv, Request::new("GET", path));
        assert_eq!(response.status, 404, "{path}");
        assert!(error_of(&response).contains("no route"), "{path}");
    }
}

/// The parameter `name` of operation `method path`.
fn parameter<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    let pointer = format!("/paths/{}/{method}/parameters", path.replace('/', "~1"));
    at(doc, &pointer)
        .as_array()
        .expect("parameters is an array")
        .iter()
        .map(|p| resolve(doc, p))
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path} documents no parameter '{name}'"))
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    at(doc, &format!("/components/schemas/{name}"))
}

/// The characters of a negated class `[^...]` written with literal characters and ranges.
fn negated_class(pattern: &str) -> BTreeSet<char> {
    let inner: Vec<char> = pattern
        .strip_prefix("[^")
        .and_then(|p| p.strip_suffix(']'))
        .unwrap_or_else(|| panic!("{pattern:?} is not a negated class"))
        .chars()
        .collect();
    let mut set = BTreeSet::new();
    let mut i = 0;
    while i < inner.len() {
        if inner.get(i + 1) == Some(&'-') && i + 2 < inner.len() {
            set.extend(inner[i]..=inner[i + 2]);
            i += 3;
        } else {
            set.insert(inner[i]);
            i += 1;
        }
    }
    set
}

#[test]
fn documented_limits_are_the_codes_constants() {
    let doc = document();
    let limit = &parameter(&doc, "/todos", "get", "limit")["schema"];
    assert_eq!(limit["minimum"], 1);
    assert_eq!(limit["maximum"], MAX_LIMIT);
    let after = &parameter(&doc, "/todos", "get", "after")["schema"];
    assert_eq!(after["type"], "integer");
    assert_eq!(after["minimum"], 0);
    assert_eq!(
        at(
            &doc,
            "/paths/~1todos/get/responses/200/content/application~1json/schema/maxItems"
        ),
        MAX_LIMIT
    );
    let current = &parameter(&doc, "/api/rule", "get", "current")["schema"];
    assert_eq!(current["minimum"], 1);
    assert_eq!(current["maximum"], u64::MAX);
    let page_size = &parameter(&doc, "/api/rule", "get", "pageSize")["schema"];
    assert_eq!(page_size["minimum"], 1);
    assert_eq!(page_size["maximum"], MAX_PAGE_SIZE);
    assert_eq!(
        schema(&doc, "RulePage")["properties"]["data"]["maxItems"],
        MAX_PAGE_SIZE
    );
    let deleted = &schema(&doc, "RuleDeleted")["properties"];
    assert_eq!(deleted["list"]["maxItems"], DEFAULT_PAGE_SIZE);
    assert_eq!(
        deleted["pagination"]["properties"]["pageSize"]["enum"][0],
        DEFAULT_PAGE_SIZE
    );
    assert_eq!(
        schema(&doc, "RuleDelete")["properties"]["key"]["oneOf"][0]["maxItems"],
        MAX_PAGE_SIZE
    );

    // A title: trimmed of what `str::trim` trims, then 1 to MAX_TITLE_CHARS characters.
    let title = schema(&doc, "Title");
    let non_space = title["pattern"].as_str().expect("Title has a pattern");
    let space: BTreeSet<char> = (0..=u32::from(char::MAX))
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace())
        .collect();
    assert_eq!(
        negated_class(non_space),
        space,
        "the Title pattern's class must be exactly what str::trim removes"
    );
    assert_eq!(
        title["not"]["pattern"],
        format!("{non_space}[\\s\\S]{{{},}}{non_space}", MAX_TITLE_CHARS - 1),
        "a title longer than {MAX_TITLE_CHARS} characters once trimmed is refused"
    );
    for stored in [
        &schema(&doc, "Todo")["properties"]["title"],
        &schema(&doc, "Rule")["properties"]["name"],
    ] {
        assert_eq!(stored["maxLength"], MAX_TITLE_CHARS);
    }
    assert_eq!(
        schema(&doc, "Description")["maxLength"],
        MAX_DESCRIPTION_CHARS
    );
    for body in ["Rule", "RuleCreate", "RuleUpdate"] {
        assert_eq!(
            schema(&doc, body)["properties"]["desc"]["maxLength"],
            MAX_DESCRIPTION_CHARS,
            "{body}"
        );
    }
    let order = schema(&doc, "Order");
    assert_eq!(order["minimum"], i64::MIN);
    assert_eq!(order["maximum"], i64::MAX);
    assert_eq!(schema(&doc, "Id")["maximum"], u64::MAX);
    assert_eq!(
        at(
            &doc,
            "/paths/~1todos/options/responses/204/headers/Access-Control-Allow-Methods/schema/enum/0"
        ),
        CORS_METHODS
    );
}

/// Each documented bound, read from the document, holds against the code: the bound itself is
/// accepted, one past it is a 400.
#[test]
fn documented_bounds_hold_at_their_edges() {
    let doc = document();
    let number = |value: &Value| value.as_u64().expect("a whole-number bound");
    let limit = number(&parameter(&doc, "/todos", "get", "limit")["schema"]["maximum"]);
    let page_size = number(&parameter(&doc, "/api/rule", "get", "pageSize")["schema"]["maximum"]);
    let description = number(&schema(&doc, "Description")["maxLength"]);
    let keys = number(&schema(&doc, "RuleDelete")["properties"]["key"]["oneOf"][0]["maxItems"]);
    let title = number(&schema(&doc, "Todo")["properties"]["title"]["maxLength"]) as usize;
    let kv = store_with_one_todo();
    let status = |request: Request| send(&kv, request).status;

    for (query, ok) in [
        (format!("limit={limit}"), 200),
        (format!("limit={}", limit + 1), 400),
        ("limit=0".to_string(), 400),
        ("after=0".to_string(), 200),
        ("after=1".to_string(), 200),
        ("after=-1".to_string(), 400),
        ("after=1.0".to_string(), 400),
        ("limit=1&limit=1".to_string(), 400),
    ] {
        assert_eq!(
            status(Request::new("GET", &format!("/todos?{query}"))),
            ok,
            "{query}"
        );
    }
    for (query, ok) in [
        (format!("pageSize={page_size}"), 200),
        (format!("pageSize={}", page_size + 1), 400),
        ("pageSize=0".to_string(), 400),
        ("current=1".to_string(), 200),
        ("current=0".to_string(), 400),
        (format!("current={}", u64::MAX), 200),
        ("current=2&current=2".to_string(), 400),
    ] {
        assert_eq!(
            status(Request::new("GET", &format!("/api/rule?{query}"))),
            ok,
            "{query}"
        );
    }

    let padded = format!(" \t{}\u{3000}\n", "t".repeat(title));
    for (body, ok) in [
        (json!({ "title": padded }), 201),
        (json!({ "title": "t".repeat(title + 1) }), 400),
        (json!({ "title": "\u{2003}\u{85}" }), 400),
        (json!({ "title": "\u{feff}" }), 201),
        (json!({ "title": "t", "order": i64::MIN }), 201),
        (json!({ "title": "t", "order": i64::MAX }), 201),
        (json!({ "title": "t", "order": u64::MAX }), 400),
        (json!({ "title": "t", "order": 1.5 }), 400),
    ] {
        let request = Request::new("POST", "/todos").with_json(&body.to_string());
        assert_eq!(status(request), ok, "{body}");
    }
    // An integer is written without fraction or exponent; `-0` is 0, `-0.0` is not an integer.
    for (order, ok) in [
        ("-0", 201),
        ("0", 201),
        ("-0.0", 400),
        ("0.0", 400),
        ("-0e1", 400),
        ("1e0", 400),
        ("5.0", 400),
    ] {
        let body = format!(r#"{{"title":"a -0 b","order":{order}}}"#);
        let response = send(&kv, Request::new("POST", "/todos").with_json(&body));
        assert_eq!(response.status, ok, "{body}");
        if ok == 201 {
            assert_eq!(response.body_json()["order"], 0, "{body}");
            assert_eq!(response.body_json()["title"], "a -0 b", "{body}");
        }
    }
    for (body, ok) in [
        (
            json!({ "name": "n", "desc": "d".repeat(description as usize) }),
            200,
        ),
        (
            json!({ "name": "n", "desc": "d".repeat(description as usize + 1) }),
            400,
        ),
        (json!({ "name": "n", "desc": null }), 200),
    ] {
        let request = Request::new("POST", "/api/rule").with_json(&body.to_string());
        assert_eq!(status(request), ok, "POST /api/rule");
    }
    for (key, ok) in [
        (json!(vec![1; keys as usize]), 200),
        (json!(vec![1; keys as usize + 1]), 400),
        (json!("0001"), 200),
        (json!(u64::MAX.to_string()), 200),
        (json!("18446744073709551616"), 400),
        (json!("0"), 400),
    ] {
        let body = json!({ "key": key }).to_string();
        let request = Request::new("DELETE", "/api/rule").with_json(&body);
        assert_eq!(status(request), ok, "DELETE /api/rule key {key}");
    }
    let rule = send(
        &kv,
        Request::new("POST", "/api/rule").with_json(r#"{"name":"s"}"#),
    )
    .body_json();
    for (status_value, ok) in [
        (json!(1), 200),
        (json!("2"), 200),
        (json!("02"), 200),
        (json!(3), 400),
        (json!(" 2"), 400),
        (json!("+2"), 400),
        (json!(2.0), 400),
    ] {
        let body = json!({ "key": rule["key"], "status": status_value }).to_string();
        let request = Request::new("PUT", "/api/rule").with_json(&body);
        assert_eq!(status(request), ok, "PUT /api/rule status {status_value}");
    }
}

/// The parameter names of an operation: its own and its path item's.
fn parameter_names(doc: &Value, path_item: &Value, operation: &Value) -> BTreeSet<String> {
    [path_item, operation]
        .into_iter()
        .flat_map(|holder| holder["parameters"].as_array().into_iter().flatten())
        .filter_map(|p| resolve(doc, p)["name"].as_str())
        .map(String::from)
        .collect()
}

#[test]
fn the_links_name_operations_and_parameters_that_exist() {
    let doc = document();
    // operationId → (path item, operation).
    let mut operations = std::collections::BTreeMap::new();
    for path in paths(&doc) {
        let path_item = at(&doc, &format!("/paths/{}", path.replace('/', "~1")));
        for method in documented_methods(&doc, &path) {
            let operation = &path_item[method.to_ascii_lowercase()];
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(
                operations
                    .insert(id.to_string(), (path_item, operation))
                    .is_none(),
                "operationId {id} twice"
            );
        }
    }
    for (source, (_, operation)) in &operations {
        for (status, response) in operation["responses"].as_object().into_iter().flatten() {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                let target = link["operationId"].as_str().unwrap_or_default();
                let (path_item, target) = operations.get(target).unwrap_or_else(|| {
                    panic!("{source} {status} link {name}: no operation {target}")
                });
                let names = parameter_names(&doc, path_item, target);
                for parameter in link["parameters"].as_object().into_iter().flatten() {
                    assert!(
                        names.contains(parameter.0),
                        "{source} {status} link {name}: no parameter {}",
                        parameter.0
                    );
                }
            }
        }
    }
    let created = at(&doc, "/paths/~1todos/post/responses/201/links");
    let targets: BTreeSet<&str> = created
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, link)| link["operationId"].as_str())
        .collect();
    assert_eq!(
        targets,
        BTreeSet::from(["getTodo", "patchTodo", "putTodo", "deleteTodo"])
    );
}

#[test]
fn every_reference_resolves() {
    fn walk(doc: &Value, value: &Value) {
        match value {
            Value::Object(map) => {
                if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                    at(doc, reference.trim_start_matches('#'));
                }
                map.values().for_each(|v| walk(doc, v));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
            _ => {}
        }
    }
    let doc = document();
    walk(&doc, &doc);
}

/// A public folder that has a file at every path, `openapi.json` included.
struct EveryFile;

impl PublicFiles for EveryFile {
    fn read(&self, relative: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(format!("the folder's {relative}").into_bytes()))
    }

    fn is_dir(&self, _relative: &str) -> bool {
        false
    }
}

#[test]
fn get_openapi_json_serves_exactly_the_file_whatever_the_folder_holds() {
    let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/src/openapi.json"))
        .expect("guest/src/openapi.json is readable");
    let kv = MemoryKv::new();
    for target in ["/openapi.json", "/openapi.json/", "/openapi.json?x=1"] {
        let response = handle_with_files(&Request::new("GET", target), &kv, &EveryFile, NOW);
        assert_eq!(response.status, 200, "{target}");
        assert_eq!(response.body, file, "{target}");
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    }
    let head = handle_with_files(&Request::new("HEAD", "/openapi.json"), &kv, &EveryFile, NOW);
    assert_eq!((head.status, head.body.len()), (200, 0));
    let post = handle_with_files(&Request::new("POST", "/openapi.json"), &kv, &EveryFile, NOW);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some(PAGE_ALLOW));
    // Other paths still come from the folder.
    let other = handle_with_files(&Request::new("GET", "/api.json"), &kv, &EveryFile, NOW);
    assert_eq!(other.body, b"the folder's api.json");
}

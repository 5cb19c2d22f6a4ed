//! The todo logic, natively, against an in-memory bucket: every route and status of both APIs,
//! and the static files and single-page-app fallback around them.

mod support;

use serde_json::{Value, json};
use support::error_of;
use todo_guest::kv::{MEMORY_PAGE_SIZE, MemoryKv};
use todo_guest::public::{NoFiles, PublicFiles};
use todo_guest::time::Timestamp;
use todo_guest::{Request, Response, handle};

const NOW: Timestamp = Timestamp {
    seconds: 1_764_000_000,
    nanoseconds: 0,
};

fn send(kv: &MemoryKv, request: Request) -> Response {
    handle(&request, kv, NOW)
}

fn create(kv: &MemoryKv, title: &str) -> Value {
    let response = send(
        kv,
        Request::new("POST", "/todos").with_json(&json!({ "title": title }).to_string()),
    );
    assert_eq!(response.status, 201, "{:?}", response.body_json());
    response.body_json()
}

#[test]
fn post_creates_a_todo_with_location_and_absolute_url() {
    let kv = MemoryKv::new();
    let mut request = Request::new("POST", "/todos").with_json(r#"{"title":" walk the dog "}"#);
    request.authority = "example.test:8080".to_string();
    let response = send(&kv, request);
    assert_eq!(response.status, 201);
    let todo = response.body_json();
    assert_eq!(todo["id"], 1);
    assert_eq!(todo["title"], "walk the dog");
    assert_eq!(todo["completed"], false);
    assert_eq!(todo["order"], 1);
    assert_eq!(todo["url"], "http://example.test:8080/todos/1");
    assert_eq!(todo["createdAt"], "2025-11-24T16:00:00.000Z");
    assert_eq!(
        response.header("location"),
        Some("http://example.test:8080/todos/1")
    );
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn get_collection_sorts_by_order_then_id() {
    let kv = MemoryKv::new();
    for (title, order) in [("c", 5), ("a", 1), ("b", 5)] {
        let body = json!({ "title": title, "order": order }).to_string();
        assert_eq!(
            send(&kv, Request::new("POST", "/todos").with_json(&body)).status,
            201
        );
    }
    let response = send(&kv, Request::new("GET", "/todos"));
    assert_eq!(response.status, 200);
    let titles: Vec<Value> = response
        .body_json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| t["title"].clone())
        .collect();
    assert_eq!(titles, vec![json!("a"), json!("c"), json!("b")]);
}

#[test]
fn get_item_and_unknown_item() {
    let kv = MemoryKv::new();
    create(&kv, "x");
    let found = send(&kv, Request::new("GET", "/todos/1"));
    assert_eq!(found.status, 200);
    assert_eq!(found.body_json()["title"], "x");
    let missing = send(&kv, Request::new("GET", "/todos/2"));
    assert_eq!(missing.status, 404);
    assert_eq!(error_of(&missing), "no todo with id 2");
    let not_an_id = send(&kv, Request::new("GET", "/todos/abc"));
    assert_eq!(not_an_id.status, 404);
    assert!(error_of(&not_an_id).contains("'abc'"));
}

#[test]
fn patch_changes_only_the_given_fields() {
    let kv = MemoryKv::new();
    create(&kv, "x");
    let response = send(
        &kv,
        Request::new("PATCH", "/todos/1").with_json(r#"{"completed":true}"#),
    );
    assert_eq!(response.status, 200);
    let todo = response.body_json();
    assert_eq!(todo["completed"], true);
    assert_eq!(todo["title"], "x");
    let response = send(
        &kv,
        Request::new("PATCH", "/todos/1").with_json(r#"{"title":"y","order":9}"#),
    );
    assert_eq!(response.body_json()["title"], "y");
    assert_eq!(response.body_json()["order"], 9);
    assert_eq!(response.body_json()["completed"], true);
}

#[test]
fn patch_unknown_todo_returns_404() {
    let kv = MemoryKv::new();
    let response = send(
        &kv,
        Request::new("PATCH", "/todos/7").with_json(r#"{"completed":true}"#),
    );
    assert_eq!(response.status, 404);
}

#[test]
fn put_replaces_title_and_completed() {
    let kv = MemoryKv::new();
    create(&kv, "x");
    send(
        &kv,
        Request::new("PATCH", "/todos/1").with_json(r#"{"completed":true}"#),
    );
    let response = send(
        &kv,
        Request::new("PUT", "/todos/1").with_json(r#"{"title":"z"}"#),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.body_json()["title"], "z");
    assert_eq!(response.body_json()["completed"], false);
    let no_title = send(
        &kv,
        Request::new("PUT", "/todos/1").with_json(r#"{"completed":true}"#),
    );
    assert_eq!(no_title.status, 400);
    assert!(error_of(&no_title).contains("'title' is required"));
    let missing = send(
        &kv,
        Request::new("PUT", "/todos/9").with_json(r#"{"title":"z"}"#),
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn delete_item_then_it_is_gone_and_ids_are_not_reused() {
    let kv = MemoryKv::new();
    create(&kv, "a");
    create(&kv, "b");
    assert_eq!(send(&kv, Request::new("DELETE", "/todos/2")).status, 204);
    assert_eq!(send(&kv, Request::new("GET", "/todos/2")).status, 404);
    assert_eq!(send(&kv, Request::new("DELETE", "/todos/2")).status, 404);
    assert_eq!(create(&kv, "c")["id"], 3);
}

#[test]
fn delete_collection_removes_every_todo_but_keeps_the_counter() {
    let kv = MemoryKv::new();
    for i in 0..7 {
        create(&kv, &format!("t{i}"));
    }
    assert_eq!(send(&kv, Request::new("DELETE", "/todos")).status, 204);
    assert_eq!(
        send(&kv, Request::new("GET", "/todos")).body_json(),
        json!([])
    );
    assert_eq!(create(&kv, "after")["id"], 8);
}

#[test]
fn bad_bodies_get_400_with_a_message_and_change_nothing() {
    let kv = MemoryKv::new();
    create(&kv, "keep");
    let before = kv.snapshot();
    let cases = [
        ("POST", "/todos", "", "empty"),
        ("POST", "/todos", "{", "not valid JSON"),
        (
            "POST",
            "/todos",
            "[1]",
            "must be a JSON object, got an array",
        ),
        ("POST", "/todos", "{}", "'title' is required"),
        ("POST", "/todos", r#"{"title":""}"#, "must not be empty"),
        ("POST", "/todos", r#"{"title":"   "}"#, "must not be empty"),
        (
            "POST",
            "/todos",
            r#"{"title":5}"#,
            "'title' must be a string, got a number",
        ),
        (
            "POST",
            "/todos",
            r#"{"title":"x","completed":"yes"}"#,
            "'completed' must be true or false",
        ),
        (
            "POST",
            "/todos",
            r#"{"title":"x","order":1.5}"#,
            "'order' must be an integer",
        ),
        (
            "PATCH",
            "/todos/1",
            r#"{"completed":1}"#,
            "'completed' must be true or false",
        ),
        (
            "PATCH",
            "/todos/1",
            r#"{"title":null}"#,
            "'title' must be a string, got null",
        ),
        ("PUT", "/todos/1", "nope", "not valid JSON"),
    ];
    for (method, path, body, expected) in cases {
        let response = send(&kv, Request::new(method, path).with_json(body));
        assert_eq!(response.status, 400, "{method} {path} {body}");
        assert!(
            error_of(&response).contains(expected),
            "{method} {path} {body}: {}",
            error_of(&response)
        );
    }
    let long = "x".repeat(1001);
    let response = send(
        &kv,
        Request::new("POST", "/todos").with_json(&json!({ "title": long }).to_string()),
    );
    assert_eq!(response.status, 400);
    assert!(error_of(&response).contains("limit is 1000"));
    let invalid_utf8 =
        Request::new("POST", "/todos").with_body("application/json", b"{\"title\":\"\xff\"}");
    let response = send(&kv, invalid_utf8);
    assert_eq!(response.status, 400);
    assert!(error_of(&response).contains("UTF-8"));
    assert_eq!(kv.snapshot(), before);
}

#[test]
fn unsupported_content_type_gets_415() {
    let kv = MemoryKv::new();
    let response = send(
        &kv,
        Request::new("POST", "/todos").with_body("text/plain", b"{\"title\":\"x\"}"),
    );
    assert_eq!(response.status, 415);
    assert!(error_of(&response).contains("text/plain"));
    let form = send(
        &kv,
        Request::new("POST", "/todos").with_body("application/x-www-form-urlencoded", b"title=x"),
    );
    assert_eq!(form.status, 415);
    assert!(kv.is_empty());
}

#[test]
fn a_body_without_content_type_is_read_as_json() {
    let kv = MemoryKv::new();
    let mut request = Request::new("POST", "/todos");
    request.body = br#"{"title":"x"}"#.to_vec();
    assert_eq!(send(&kv, request).status, 201);
}

#[test]
fn wrong_methods_get_405_with_allow() {
    let kv = MemoryKv::new();
    for (method, path, allow) in [
        ("PUT", "/todos", "GET, HEAD, POST, DELETE, OPTIONS"),
        ("PATCH", "/todos", "GET, HEAD, POST, DELETE, OPTIONS"),
        ("POST", "/todos/1", "GET, HEAD, PATCH, PUT, DELETE, OPTIONS"),
        (
            "PATCH",
            "/api/rule",
            "GET, HEAD, POST, PUT, DELETE, OPTIONS",
        ),
        ("POST", "/api/currentUser", "GET, HEAD, OPTIONS"),
        ("POST", "/", "GET, HEAD, OPTIONS"),
    ] {
        let response = send(&kv, Request::new(method, path));
        assert_eq!(response.status, 405, "{method} {path}");
        assert_eq!(response.header("allow"), Some(allow), "{method} {path}");
        assert!(error_of(&response).contains(method));
    }
}

#[test]
fn options_is_a_cors_preflight_on_any_path() {
    let kv = MemoryKv::new();
    for path in ["/todos", "/todos/1", "/api/rule", "/anything"] {
        let response = send(&kv, Request::new("OPTIONS", path));
        assert_eq!(response.status, 204);
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            response.header("access-control-allow-methods"),
            Some("GET, POST, PUT, PATCH, DELETE, OPTIONS")
        );
        assert_eq!(
            response.header("access-control-allow-headers"),
            Some("Content-Type")
        );
    }
}

#[test]
fn unknown_api_routes_get_404_json() {
    let kv = MemoryKv::new();
    for path in [
        "/api/nope",
        "/todos/1/extra",
        "/todos//1",
        "/todos/..",
        "/todos/%31",
    ] {
        let response = send(&kv, Request::new("GET", path));
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.header("content-type"), Some("application/json"));
    }
}

#[test]
fn other_gets_serve_the_page_and_head_has_no_body() {
    let kv = MemoryKv::new();
    for path in ["/", "/index.html", "/some/app/route"] {
        let response = send(&kv, Request::new("GET", path));
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(String::from_utf8_lossy(&response.body).contains("<title>Todos</title>"));
    }
    let head = send(&kv, Request::new("HEAD", "/"));
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

#[test]
fn legacy_rule_crud_round_trip() {
    let kv = MemoryKv::new();
    let created = send(
        &kv,
        Request::new("POST", "/api/rule").with_json(r#"{"name":"n1","desc":"d1"}"#),
    );
    assert_eq!(created.status, 200);
    let rule = created.body_json();
    assert_eq!(rule["key"], 1);
    assert_eq!(rule["name"], "n1");
    assert_eq!(rule["desc"], "d1");
    assert_eq!(rule["status"], 1);
    assert_eq!(rule["progress"], 0);
    assert!(rule["owner"].is_string());

    let form = send(
        &kv,
        Request::new("POST", "/api/rule").with_body(
            "application/x-www-form-urlencoded",
            b"name=from+form&desc=%C3%A9",
        ),
    );
    assert_eq!(form.status, 200);
    assert_eq!(form.body_json()["name"], "from form");
    assert_eq!(form.body_json()["desc"], "é");

    // Partial PUT keeps absent fields; status may be a string.
    let updated = send(
        &kv,
        Request::new("PUT", "/api/rule").with_json(r#"{"key":1,"status":"2"}"#),
    );
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body_json()["status"], 2);
    assert_eq!(updated.body_json()["name"], "n1");
    assert_eq!(updated.body_json()["desc"], "d1");
    // The canonical API sees the same data.
    assert_eq!(
        send(&kv, Request::new("GET", "/todos/1")).body_json()["completed"],
        true
    );

    let unknown = send(
        &kv,
        Request::new("PUT", "/api/rule").with_json(r#"{"key":99,"name":"x"}"#),
    );
    assert_eq!(unknown.status, 404);

    let page = send(&kv, Request::new("GET", "/api/rule?current=1&pageSize=1")).body_json();
    assert_eq!(page["total"], 2);
    assert_eq!(page["success"], true);
    assert_eq!(page["pageSize"], 1);
    assert_eq!(page["current"], 1);
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1));
    let second = send(&kv, Request::new("GET", "/api/rule?current=2&pageSize=1")).body_json();
    assert_eq!(second["data"][0]["key"], 2);

    let deleted = send(
        &kv,
        Request::new("DELETE", "/api/rule").with_json(r#"{"key":[1]}"#),
    );
    assert_eq!(deleted.status, 200);
    let body = deleted.body_json();
    assert_eq!(body["pagination"]["total"], 1);
    assert_eq!(body["list"][0]["key"], 2);
}

#[test]
fn legacy_keys_match_exactly() {
    let kv = MemoryKv::new();
    for i in 1..=12 {
        send(
            &kv,
            Request::new("POST", "/api/rule")
                .with_json(&json!({ "name": format!("r{i}") }).to_string()),
        );
    }
    // Deleting key 1 must not touch 10, 11 or 12.
    let body = send(
        &kv,
        Request::new("DELETE", "/api/rule").with_json(r#"{"key":[1]}"#),
    )
    .body_json();
    let keys: Vec<u64> = body["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["key"].as_u64())
        .collect();
    assert_eq!(keys, (2..=12).collect::<Vec<u64>>());
}

#[test]
fn legacy_bad_input_gets_400() {
    let kv = MemoryKv::new();
    for (method, target, body, expected) in [
        ("POST", "/api/rule", "{}", "'name' is required"),
        ("PUT", "/api/rule", r#"{"name":"x"}"#, "'key' is required"),
        (
            "PUT",
            "/api/rule",
            r#"{"key":"abc"}"#,
            "'key' must be a positive integer id",
        ),
        (
            "PUT",
            "/api/rule",
            r#"{"key":1,"status":3}"#,
            "'status' must be 1 (open) or 2 (done)",
        ),
        ("DELETE", "/api/rule", "{}", "'key' is required"),
        ("DELETE", "/api/rule", r#"{"key":[-1]}"#, "positive integer"),
        (
            "GET",
            "/api/rule?current=0",
            "",
            "'current' must be an integer",
        ),
        (
            "GET",
            "/api/rule?pageSize=x",
            "",
            "'pageSize' must be an integer",
        ),
    ] {
        let request = if body.is_empty() {
            Request::new(method, target)
        } else {
            Request::new(method, target).with_json(body)
        };
        let response = send(&kv, request);
        assert_eq!(response.status, 400, "{method} {target} {body}");
        assert!(
            error_of(&response).contains(expected),
            "{method} {target}: {}",
            error_of(&response)
        );
    }
}

#[test]
fn current_user_is_a_fixed_demo_user() {
    let kv = MemoryKv::new();
    let user = send(&kv, Request::new("GET", "/api/currentUser")).body_json();
    for field in ["name", "avatar", "userid", "email"] {
        assert!(
            user[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}"
        );
    }
}

/// A public folder in memory: for the routing around static files, without a file system.
struct Folder(Vec<(&'static str, &'static [u8])>);

impl PublicFiles for Folder {
    fn read(&self, relative: &str) -> Result<Option<Vec<u8>>, String> {
        if relative == "forbidden.txt" {
            return Err("the sandbox refused".to_string());
        }
        Ok(self
            .0
            .iter()
            .find(|(name, _)| *name == relative)
            .map(|(_, bytes)| bytes.to_vec()))
    }

    fn is_dir(&self, relative: &str) -> bool {
        self.0
            .iter()
            .any(|(name, _)| name.starts_with(&format!("{relative}/")))
    }
}

#[test]
fn public_files_come_first_with_type_etag_and_304() {
    let kv = MemoryKv::new();
    let folder = Folder(vec![
        ("index.html", b"<p>static</p>"),
        ("js/app.js", b"1"),
        ("docs/index.html", b"docs"),
    ]);
    let get =
        |path: &str| todo_guest::handle_with_files(&Request::new("GET", path), &kv, &folder, NOW);

    let home = get("/");
    assert_eq!(
        (home.status, home.body.as_slice()),
        (200, &b"<p>static</p>"[..])
    );
    let script = get("/js/app.js");
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let etag = script.header("etag").unwrap_or_default().to_string();
    let mut again = Request::new("GET", "/js/app.js");
    again.if_none_match = Some(etag.clone());
    let cached = todo_guest::handle_with_files(&again, &kv, &folder, NOW);
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    assert_eq!(get("/docs").body, b"docs");

    // A client-side route gets the folder's start page (the single-page-app fallback).
    assert_eq!(get("/unknown/route").body, b"<p>static</p>");
    assert_eq!(
        get("/todos").status,
        200,
        "the API is not shadowed by files"
    );
    assert_eq!(get("/../etc/passwd").status, 400);
    assert_eq!(get("/%2e%2e/x").status, 400);
    assert_eq!(get("/forbidden.txt").status, 403);
}

fn get_with(files: &dyn PublicFiles, path: &str) -> Response {
    todo_guest::handle_with_files(&Request::new("GET", path), &MemoryKv::new(), files, NOW)
}

fn is_the_page(response: &Response) -> bool {
    response.status == 200
        && String::from_utf8_lossy(&response.body).contains("<title>Todos</title>")
}

#[test]
fn deep_link_with_a_folder_index_gets_the_folders_index() {
    let folder = Folder(vec![("index.html", b"<p>spa</p>"), ("app.js", b"1")]);
    let home = get_with(&folder, "/");
    for path in ["/list", "/deep/link", "/deep/link/", "/v1.2/todos"] {
        let response = get_with(&folder, path);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.body, b"<p>spa</p>", "{path}");
        assert_eq!(
            response.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert_eq!(response.header("etag"), home.header("etag"), "{path}");
        assert_eq!(response.header("cache-control"), Some("no-cache"), "{path}");
    }
    let mut cached = Request::new("GET", "/deep/link");
    cached.if_none_match = home.header("etag").map(str::to_string);
    let cached = todo_guest::handle_with_files(&cached, &MemoryKv::new(), &folder, NOW);
    assert_eq!(cached.status, 304);
    let head = todo_guest::handle_with_files(
        &Request::new("HEAD", "/deep/link"),
        &MemoryKv::new(),
        &folder,
        NOW,
    );
    assert_eq!((head.status, head.body.len()), (200, 0));
}

#[test]
fn deep_link_with_a_folder_without_index_gets_the_page() {
    let folder = Folder(vec![("app.js", b"1"), ("docs/guide.txt", b"g")]);
    for path in ["/", "/index.html", "/list", "/deep/link", "/docs"] {
        assert!(is_the_page(&get_with(&folder, path)), "{path}");
    }
}

#[test]
fn a_missing_file_name_gets_404_json_with_or_without_a_folder() {
    let folder = Folder(vec![("index.html", b"<p>spa</p>")]);
    let files: [&dyn PublicFiles; 2] = [&folder, &NoFiles];
    for files in files {
        for path in ["/foo.js", "/assets/app.css", "/docs/index.html", "/.env"] {
            let response = get_with(files, path);
            assert_eq!(response.status, 404, "{path}");
            assert_eq!(
                response.header("content-type"),
                Some("application/json"),
                "{path}"
            );
            assert!(
                error_of(&response).contains(path),
                "{path}: {}",
                error_of(&response)
            );
        }
    }
}

#[test]
fn a_present_file_is_served() {
    let folder = Folder(vec![
        ("index.html", b"<p>spa</p>"),
        ("app.js", b"let a = 1;"),
    ]);
    let response = get_with(&folder, "/app.js");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"let a = 1;");
    assert_eq!(
        response.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(response.header("etag").is_some());
}

#[test]
fn with_no_folder_a_deep_link_gets_the_page() {
    for path in ["/", "/index.html", "/list", "/deep/link"] {
        assert!(is_the_page(&get_with(&NoFiles, path)), "{path}");
    }
}

#[test]
fn api_paths_are_never_files_or_the_app_shell() {
    let folder = Folder(vec![
        ("index.html", b"<p>spa</p>"),
        ("api/nope", b"file"),
        ("todos/x/y", b"file"),
    ]);
    for path in ["/api/nope", "/api/app.js", "/todos/x/y", "/todos/1/extra"] {
        let response = get_with(&folder, path);
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{path}"
        );
    }
}

#[test]
fn malformed_percent_escapes_are_400_naming_the_text() {
    let kv = MemoryKv::new();
    for (target, named) in [
        ("/caf%zz", "caf%zz"),
        ("/a%4", "a%4"),
        ("/%FF", "UTF-8"),
        ("/api/rule?current=%4", "%4"),
    ] {
        let response = send(&kv, Request::new("GET", target));
        assert_eq!(response.status, 400, "{target}");
        assert!(
            error_of(&response).contains(named),
            "{target}: {}",
            error_of(&response)
        );
    }
}

// The batch tests below prove the guest never names more keys in one batch call than a
// `list_keys` page held: `MemoryKv` refuses larger batches, and holds fewer keys a page than
// the todos each test makes.
const _: () = assert!(MEMORY_PAGE_SIZE < 5, "the batch tests need small pages");

/// How many todo keys the bucket holds (it also holds the id counter and the index).
fn todo_keys(kv: &MemoryKv) -> usize {
    kv.snapshot()
        .keys()
        .filter(|key| key.starts_with("todo/"))
        .count()
}

fn ten_todos(kv: &MemoryKv) {
    for i in 1..=10 {
        create(kv, &format!("t{i}"));
    }
}

#[test]
fn listing_ten_todos_reads_page_by_page() {
    let kv = MemoryKv::new();
    ten_todos(&kv);
    let list = send(&kv, Request::new("GET", "/todos"));
    assert_eq!(list.status, 200, "{}", error_of(&list));
    assert_eq!(list.body_json().as_array().map(Vec::len), Some(10));
    let page = send(&kv, Request::new("GET", "/api/rule?pageSize=100")).body_json();
    assert_eq!(page["total"], 10);
}

#[test]
fn deleting_all_of_ten_todos_deletes_page_by_page() {
    let kv = MemoryKv::new();
    ten_todos(&kv);
    let response = send(&kv, Request::new("DELETE", "/todos"));
    assert_eq!(response.status, 204, "{}", error_of(&response));
    assert_eq!(
        send(&kv, Request::new("GET", "/todos")).body_json(),
        json!([])
    );
    assert_eq!(todo_keys(&kv), 0, "no todo key is left");
}

#[test]
fn legacy_delete_of_five_keys_deletes_page_by_page_and_ignores_unknown_keys() {
    let kv = MemoryKv::new();
    ten_todos(&kv);
    let response = send(
        &kv,
        Request::new("DELETE", "/api/rule").with_json(r#"{"key":[1,3,5,7,9,42]}"#),
    );
    assert_eq!(response.status, 200, "{}", error_of(&response));
    let body = response.body_json();
    let keys: Vec<u64> = body["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["key"].as_u64())
        .collect();
    assert_eq!(keys, vec![2, 4, 6, 8, 10]);
    assert_eq!(body["pagination"]["total"], 5);
    assert_eq!(todo_keys(&kv), 5, "five todos are left");
}

#[test]
fn minus_zero_is_the_integer_zero_and_fractions_are_still_refused() {
    let kv = MemoryKv::new();
    let zero = send(
        &kv,
        Request::new("POST", "/todos").with_json(r#"{"title":"z","order":-0}"#),
    );
    assert_eq!(zero.status, 201, "{:?}", zero.body_json());
    assert_eq!(zero.body_json()["order"], 0);
    for bad in [
        r#"{"title":"z","order":0.5}"#,
        r#"{"title":"z","order":1e3}"#,
    ] {
        let refused = send(&kv, Request::new("POST", "/todos").with_json(bad));
        assert_eq!(refused.status, 400, "{bad}");
    }
}

#[test]
fn a_percent_encoded_id_is_the_same_todo() {
    let kv = MemoryKv::new();
    create(&kv, "one");
    create(&kv, "two");
    for path in ["/todos/2", "/todos/%32", "/todos/0002"] {
        let response = send(&kv, Request::new("GET", path));
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.body_json()["id"], 2, "{path}");
    }
    assert_eq!(send(&kv, Request::new("GET", "/todos/%zz")).status, 400);
}

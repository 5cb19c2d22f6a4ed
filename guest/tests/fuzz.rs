//! Property-based fuzzing of request parsing and routing: any method, path, query, content type
//! and body bytes. Whatever arrives, the logic answers (never panics), with a real status; every
//! error is a JSON `{"error": ...}`; and the store stays readable.
//!
//! CI runs the default 256 cases per property. For a longer, bounded run:
//! `PROPTEST_CASES=100000 cargo test --release -p todo-guest --test fuzz`.

use proptest::prelude::*;
use serde_json::Value;
use todo_guest::kv::MemoryKv;
use todo_guest::time::Timestamp;
use todo_guest::{Request, handle};

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("PUT".to_string()),
        Just("PATCH".to_string()),
        Just("DELETE".to_string()),
        Just("OPTIONS".to_string()),
        Just("HEAD".to_string()),
        "[A-Z]{1,8}",
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("todos".to_string()),
        Just("api".to_string()),
        Just("rule".to_string()),
        Just("currentUser".to_string()),
        Just("..".to_string()),
        Just("%2e%2e".to_string()),
        Just(String::new()),
        "[0-9]{1,25}",
        "-?[0-9]{1,5}",
        "[a-zA-Z0-9%._~-]{0,12}",
        any::<String>(),
    ]
}

fn path() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..5), any::<bool>()).prop_map(|(segments, slash)| {
        let mut path = format!("/{}", segments.join("/"));
        if slash {
            path.push('/');
        }
        path
    })
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        "(current|pageSize|x)=[0-9a-z%+]{0,6}(&(current|pageSize|x)=[0-9a-z%+]{0,6}){0,3}",
        any::<String>(),
    ])
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        Just("application/json".to_string()),
        Just("application/json; charset=utf-8".to_string()),
        Just("application/x-www-form-urlencoded".to_string()),
        Just("text/plain".to_string()),
        Just("application/vnd.api+json".to_string()),
        any::<String>(),
    ])
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        Just(br#"{"title":"x"}"#.to_vec()),
        Just(br#"{"title":"x","completed":true,"order":3}"#.to_vec()),
        Just(br#"{"key":[1,2,3]}"#.to_vec()),
        Just(br#"{"key":1,"status":"2","name":"n"}"#.to_vec()),
        Just(b"name=a+b&desc=%41".to_vec()),
        "\\PC{0,40}".prop_map(String::into_bytes),
        r#"\{"(title|completed|order|key|name|desc|status)":("[a-z]{0,5}"|-?[0-9]{1,20}|true|false|null|\[\]|\{\}|1\.5e3)\}"#
            .prop_map(String::into_bytes),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (method(), path(), query(), content_type(), body()).prop_map(
        |(method, path, query, content_type, body)| Request {
            method,
            path,
            query,
            scheme: "http".to_string(),
            authority: "localhost:3001".to_string(),
            content_type,
            if_none_match: None,
            cookie: None,
            authorization: None,
            origin: None,
            fetch_site: None,
            body,
        },
    )
}

const NOW: Timestamp = Timestamp {
    seconds: 1_764_000_000,
    nanoseconds: 0,
};

proptest! {
    #[test]
    fn any_request_gets_a_well_formed_answer(requests in prop::collection::vec(request(), 1..8)) {
        let kv = MemoryKv::new();
        for request in &requests {
            let response = handle(request, &kv, NOW);
            prop_assert!((200..600).contains(&response.status), "status {}", response.status);
            prop_assert_eq!(response.header("access-control-allow-origin"), Some("*"));
            // A HEAD answer has the GET answer's status and headers but no body.
            if response.status >= 400 && request.method != "HEAD" {
                let body: Value = serde_json::from_slice(&response.body)
                    .map_err(|err| TestCaseError::fail(format!("error body is not JSON: {err}")))?;
                prop_assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", body);
                prop_assert!(response.status < 500, "a client's request made a {}: {}", response.status, body);
            }
            if response.status == 405 {
                prop_assert!(response.header("allow").is_some());
            }
        }
        // Whatever happened, the store still lists cleanly.
        let list = handle(&Request::new("GET", "/todos"), &kv, NOW);
        prop_assert_eq!(list.status, 200);
        prop_assert!(serde_json::from_slice::<Value>(&list.body).is_ok_and(|v| v.is_array()));
    }
}

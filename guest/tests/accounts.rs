//! Accounts, natively, against an in-memory bucket: the modes, the routes, credentials good and
//! bad, the abuse limits, cross-site refusals, and a randomized run of two users and anonymous
//! callers on both APIs in which nobody ever reads or changes another's todos.

mod support;

use std::cell::Cell;
use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::error_of;
use todo_guest::context::{Context, SeededEntropy, Settings};
use todo_guest::kv::{Kv, MemoryKv};
use todo_guest::time::Timestamp;
use todo_guest::{Request, Response, handle, handle_in};

const START: u64 = 1_764_000_000;

/// One deployment: a bucket, the operator's settings, a clock the test moves.
struct Deployment {
    kv: MemoryKv,
    settings: Settings,
    entropy: SeededEntropy,
    now: Cell<u64>,
}

impl Deployment {
    fn new(pairs: &[(&str, &str)]) -> Self {
        Self {
            kv: MemoryKv::new(),
            settings: Settings::from_pairs(pairs.iter().copied()),
            entropy: SeededEntropy::new(42),
            now: Cell::new(START),
        }
    }

    fn optional() -> Self {
        Self::new(&[("accounts", "optional")])
    }

    fn send(&self, request: Request) -> Response {
        let ctx = Context {
            kv: &self.kv,
            now: Timestamp {
                seconds: self.now.get(),
                nanoseconds: 0,
            },
            config: &self.settings,
            entropy: &self.entropy,
        };
        handle_in(&request, &ctx)
    }

    /// Registers `name` and answers its session cookie's `name=value`.
    fn register(&self, name: &str, password: &str) -> String {
        let response = self.send(credentials("/api/register", name, password));
        assert_eq!(response.status, 201, "{}", error_of(&response));
        cookie_of(&response)
    }

    fn bearer(&self, name: &str, password: &str) -> String {
        let response = self.send(credentials("/api/tokens", name, password));
        assert_eq!(response.status, 200, "{}", error_of(&response));
        let token = response.body_json()["token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        format!("Bearer {token}")
    }
}

fn credentials(path: &str, name: &str, password: &str) -> Request {
    Request::new("POST", path)
        .with_json(&json!({"userName": name, "password": password, "type": "account"}).to_string())
}

/// `name=value` of the response's `Set-Cookie`.
fn cookie_of(response: &Response) -> String {
    let header = response.header("set-cookie").unwrap_or_default();
    header.split(';').next().unwrap_or_default().to_string()
}

fn with_cookie(mut request: Request, cookie: &str) -> Request {
    request.cookie = Some(cookie.to_string());
    request
}

fn with_auth(mut request: Request, authorization: &str) -> Request {
    request.authorization = Some(authorization.to_string());
    request
}

fn create(title: &str) -> Request {
    Request::new("POST", "/todos").with_json(&json!({ "title": title }).to_string())
}

fn titles(response: &Response) -> Vec<String> {
    let body = response.body_json();
    let items = body.as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|todo| todo["title"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn off_answers_every_request_as_before_accounts_byte_for_byte() {
    let before = MemoryKv::new();
    let off = Deployment::new(&[]);
    let explicit = Deployment::new(&[("accounts", "off")]);
    let requests = [
        create("a"),
        Request::new("GET", "/todos"),
        Request::new("GET", "/todos/1"),
        Request::new("PATCH", "/todos/1").with_json(r#"{"completed":true}"#),
        Request::new("GET", "/api/currentUser"),
        Request::new("GET", "/api/rule?current=1&pageSize=5"),
        credentials("/api/register", "ann", "correct horse"),
        credentials("/api/login/account", "ann", "correct horse"),
        Request::new("POST", "/api/login/outLogin"),
        Request::new("GET", "/api/session"),
        with_cookie(Request::new("GET", "/todos"), "todo_session=bad"),
        with_auth(Request::new("GET", "/todos"), "Basic YTpi"),
        Request::new("OPTIONS", "/todos"),
        Request::new("DELETE", "/todos"),
        Request::new("GET", "/"),
    ];
    for request in requests {
        let expected = handle(
            &request,
            &before,
            Timestamp {
                seconds: START,
                nanoseconds: 0,
            },
        );
        assert_eq!(off.send(request.clone()), expected, "{request:?}");
        assert_eq!(explicit.send(request.clone()), expected, "{request:?}");
    }
    assert_eq!(off.kv.snapshot(), before.snapshot());
}

#[test]
fn optional_gives_anonymous_callers_the_public_list_and_each_user_their_own() {
    let app = Deployment::optional();
    assert_eq!(app.send(create("public")).status, 201);
    let ann = app.register("Ann", "correct horse");
    assert!(ann.starts_with("todo_session="), "{ann}");
    assert!(titles(&app.send(with_cookie(Request::new("GET", "/todos"), &ann))).is_empty());
    let created = app.send(with_cookie(create("ann's"), &ann));
    assert_eq!(created.status, 201);
    // Ids are per list: Ann's first todo is 1, like the public list's.
    assert_eq!(created.body_json()["id"], 1);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    assert_eq!(created.header("vary"), Some("Cookie, Authorization"));
    assert_eq!(
        titles(&app.send(with_cookie(Request::new("GET", "/todos"), &ann))),
        ["ann's"]
    );
    let public = app.send(Request::new("GET", "/todos"));
    assert_eq!(titles(&public), ["public"]);
    assert_eq!(public.header("vary"), Some("Cookie, Authorization"));
    assert_eq!(public.header("cache-control"), None);

    let me = app.send(with_cookie(Request::new("GET", "/api/currentUser"), &ann));
    assert_eq!(me.body_json()["userid"], "ann");
    assert_eq!(me.body_json()["access"], "user");
    let demo = app.send(Request::new("GET", "/api/currentUser"));
    assert_eq!(demo.body_json()["name"], "Demo User");
    let session = app.send(with_cookie(Request::new("GET", "/api/session"), &ann));
    assert_eq!(
        session.body_json(),
        json!({"mode": "optional", "user": {
            "userid": "ann", "name": "ann", "expiresAt": "2025-11-25T00:00:00.000Z",
        }})
    );

    // The same account signs in again with any case of its name; a bearer token sees the same list.
    let again = app.send(credentials("/api/login/account", "ANN", "correct horse"));
    assert_eq!(again.body_json()["status"], "ok");
    let bearer = app.bearer("ann", "correct horse");
    assert_eq!(
        titles(&app.send(with_auth(Request::new("GET", "/todos"), &bearer))),
        ["ann's"]
    );
    // A user's wipe is their own.
    assert_eq!(
        app.send(with_cookie(Request::new("DELETE", "/todos"), &ann))
            .status,
        204
    );
    assert_eq!(titles(&app.send(Request::new("GET", "/todos"))), ["public"]);
}

#[test]
fn required_refuses_anonymous_callers_but_keeps_the_page_and_the_sign_in_open() {
    let app = Deployment::new(&[("accounts", "required")]);
    for request in [
        Request::new("GET", "/todos"),
        create("x"),
        Request::new("GET", "/todos/1"),
        Request::new("GET", "/api/rule"),
        Request::new("GET", "/api/currentUser"),
    ] {
        let response = app.send(request.clone());
        assert_eq!(response.status, 401, "{request:?}");
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(app.send(Request::new("GET", "/")).status, 200);
    assert_eq!(app.send(Request::new("GET", "/openapi.json")).status, 200);
    let session = app.send(Request::new("GET", "/api/session"));
    assert_eq!(
        session.body_json(),
        json!({"mode": "required", "user": null})
    );
    let ann = app.register("ann", "correct horse");
    assert_eq!(app.send(with_cookie(create("mine"), &ann)).status, 201);
    let rules = app.send(with_cookie(Request::new("GET", "/api/rule"), &ann));
    assert_eq!(rules.body_json()["total"], 1);
    // Nothing reached the public list.
    assert_eq!(app.kv.get("todo/1"), Ok(None));
}

#[test]
fn a_mode_that_is_none_of_the_three_is_a_500_naming_it() {
    let app = Deployment::new(&[("accounts", "requird")]);
    let response = app.send(Request::new("GET", "/todos"));
    assert_eq!(response.status, 500);
    assert!(
        error_of(&response).contains("'requird'"),
        "{}",
        error_of(&response)
    );
    assert_eq!(app.send(Request::new("GET", "/")).status, 200);
    let ttl = Deployment::new(&[("accounts", "optional"), ("session_ttl", "soon")]);
    let response = ttl.send(credentials("/api/register", "ann", "correct horse"));
    assert_eq!(response.status, 500);
    assert!(error_of(&response).contains("session_ttl"));
}

#[test]
fn a_bad_or_spent_credential_is_a_401_never_the_public_list() {
    let app = Deployment::new(&[("accounts", "optional"), ("session_ttl", "60")]);
    assert_eq!(app.send(create("public")).status, 201);
    let ann = app.register("ann", "correct horse");
    for (cookie, authorization) in [
        (Some("todo_session=short"), None),
        (Some(&*format!("todo_session={}", "A".repeat(43))), None),
        (None, Some("Basic YW5uOmNvcnJlY3QgaG9yc2U=")),
        (None, Some("Bearer")),
        (None, Some("Bearer not a token")),
    ] {
        let mut request = Request::new("GET", "/todos");
        request.cookie = cookie.map(str::to_string);
        request.authorization = authorization.map(str::to_string);
        let response = app.send(request);
        assert_eq!(response.status, 401, "{cookie:?} {authorization:?}");
        if cookie.is_some() {
            // The browser is told to drop the bad cookie.
            assert!(
                response
                    .header("set-cookie")
                    .is_some_and(|c| c.contains("Max-Age=0")),
                "{cookie:?}"
            );
        }
    }
    // Expired: one second past the lifetime.
    app.now.set(START + 60);
    assert_eq!(
        app.send(with_cookie(Request::new("GET", "/todos"), &ann))
            .status,
        401
    );
    // Signed out: the token is worth nothing, and the cookie is expired.
    let ann = app.send(credentials("/api/login/account", "ann", "correct horse"));
    let ann = cookie_of(&ann);
    let out = app.send(with_cookie(
        Request::new("POST", "/api/login/outLogin"),
        &ann,
    ));
    assert_eq!(out.status, 200);
    assert_eq!(out.body_json(), json!({"data": {}, "success": true}));
    assert!(
        out.header("set-cookie")
            .unwrap_or_default()
            .contains("Max-Age=0")
    );
    assert_eq!(
        app.send(with_cookie(Request::new("GET", "/todos"), &ann))
            .status,
        401
    );
}

#[test]
fn the_store_keeps_no_token_and_no_password() {
    let app = Deployment::optional();
    let cookie = app.register("ann", "correct horse battery");
    let token = cookie.trim_start_matches("todo_session=");
    let bearer = app.bearer("ann", "correct horse battery");
    for (key, value) in app.kv.snapshot() {
        let text = format!("{key} {}", String::from_utf8_lossy(&value));
        assert!(!text.contains(token), "{text}");
        assert!(
            !text.contains(bearer.trim_start_matches("Bearer ")),
            "{text}"
        );
        assert!(!text.contains("correct horse"), "{text}");
    }
    let account = app.kv.get("account/ann").ok().flatten().unwrap_or_default();
    let account: Value = serde_json::from_slice(&account).unwrap_or_default();
    assert_eq!(account["password"]["algorithm"], "argon2id");
    assert_eq!(account["password"]["memoryKib"], 19 * 1024);
    assert_eq!(account["password"]["passes"], 2);
    assert_eq!(account["password"]["lanes"], 1);
}

#[test]
fn every_failed_sign_in_answers_alike_and_the_eleventh_is_a_429_without_a_hash() {
    let app = Deployment::optional();
    app.register("ann", "correct horse");
    let unknown = app.send(credentials("/api/login/account", "nobody", "correct horse"));
    let wrong = app.send(credentials("/api/login/account", "ann", "wrong horse!"));
    assert_eq!(unknown, wrong);
    assert_eq!(
        wrong.body_json(),
        json!({"status": "error", "type": "account", "currentAuthority": "guest"})
    );
    // A success does not count against the name.
    for _ in 0..3 {
        let ok = app.send(credentials("/api/login/account", "ann", "correct horse"));
        assert_eq!(ok.body_json()["status"], "ok");
    }
    for _ in 1..10 {
        let wrong = app.send(credentials("/api/login/account", "ann", "wrong horse!"));
        assert_eq!(wrong.body_json()["status"], "error");
    }
    for password in ["wrong horse!", "correct horse"] {
        let locked = app.send(credentials("/api/login/account", "ann", password));
        assert_eq!(locked.status, 429, "{password}");
        let retry: u64 = locked
            .header("retry-after")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!((1..=900).contains(&retry), "{retry}");
    }
    let tokens = app.send(credentials("/api/tokens", "ann", "correct horse"));
    assert_eq!(tokens.status, 429);
    // Another name is not locked; the next window opens the first again.
    assert_eq!(
        app.send(credentials("/api/login/account", "bob", "correct horse"))
            .body_json()["status"],
        "error"
    );
    app.now.set(START + 15 * 60 + 1);
    let ok = app.send(credentials("/api/login/account", "ann", "correct horse"));
    assert_eq!(ok.body_json()["status"], "ok");
}

#[test]
fn sign_ups_are_limited_per_minute_and_names_are_unique_in_any_case() {
    let app = Deployment::new(&[("accounts", "optional"), ("signups_per_minute", "3")]);
    app.register("ann", "correct horse");
    let taken = app.send(credentials("/api/register", "ANN", "another pass"));
    assert_eq!(taken.status, 409);
    assert!(error_of(&taken).contains("'ann'"));
    app.register("bob", "correct horse");
    let limited = app.send(credentials("/api/register", "cid", "correct horse"));
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    app.now.set(START + 60);
    app.register("cid", "correct horse");
}

#[test]
fn bad_account_input_is_a_400_naming_the_field_and_changes_nothing() {
    let app = Deployment::optional();
    let long = "p".repeat(129);
    let cases: Vec<(String, &str)> = vec![
        (json!({"password": "correct horse"}).to_string(), "userName"),
        (
            json!({"userName": 7, "password": "correct horse"}).to_string(),
            "userName",
        ),
        (
            json!({"userName": "ann", "username": "bob", "password": "correct horse"}).to_string(),
            "username",
        ),
        (
            json!({"userName": "a b", "password": "correct horse"}).to_string(),
            "userName",
        ),
        (
            json!({"userName": "an", "password": "correct horse"}).to_string(),
            "userName",
        ),
        (json!({"userName": "ann"}).to_string(), "password"),
        (
            json!({"userName": "ann", "password": "short"}).to_string(),
            "password",
        ),
        (
            json!({"userName": "ann", "password": long}).to_string(),
            "password",
        ),
        (
            json!({"userName": "ann", "password": 12345678}).to_string(),
            "password",
        ),
        ("not json".to_string(), ""),
    ];
    for path in ["/api/register", "/api/login/account", "/api/tokens"] {
        for (body, field) in &cases {
            let response = app.send(Request::new("POST", path).with_json(body));
            assert_eq!(response.status, 400, "{path} {body}");
            assert!(
                error_of(&response).contains(field),
                "{path} {body}: {}",
                error_of(&response)
            );
        }
        let huge = json!({"userName": "ann", "password": "x".repeat(5000)}).to_string();
        assert_eq!(
            app.send(Request::new("POST", path).with_json(&huge)).status,
            413
        );
        let form = Request::new("POST", path).with_body(
            "application/x-www-form-urlencoded",
            b"userName=ann&password=12345678",
        );
        assert_eq!(app.send(form).status, 415);
        assert_eq!(app.send(Request::new("GET", path)).status, 405);
    }
    assert!(app.kv.is_empty(), "{:?}", app.kv.snapshot().keys());
}

#[test]
fn cross_site_writes_with_a_cookie_are_refused_and_bearer_clients_are_not() {
    let app = Deployment::optional();
    let ann = app.register("ann", "correct horse");
    let bearer = app.bearer("ann", "correct horse");
    let from = |origin: Option<&str>, site: Option<&str>, mut request: Request| {
        request.origin = origin.map(str::to_string);
        request.fetch_site = site.map(str::to_string);
        request
    };
    let form_rule = Request::new("POST", "/api/rule")
        .with_body("application/x-www-form-urlencoded", b"name=forged");
    for request in [
        from(Some("https://evil.example"), None, create("forged")),
        from(None, Some("cross-site"), create("forged")),
        from(Some("null"), None, Request::new("DELETE", "/todos")),
        from(Some("https://evil.example"), None, form_rule),
    ] {
        let response = app.send(with_cookie(request.clone(), &ann));
        assert_eq!(response.status, 403, "{request:?}");
    }
    assert!(titles(&app.send(with_cookie(Request::new("GET", "/todos"), &ann))).is_empty());
    // Same-origin writes, cross-site reads and bearer clients from anywhere go through.
    let same = from(
        Some("http://localhost"),
        Some("same-origin"),
        create("mine"),
    );
    assert_eq!(app.send(with_cookie(same, &ann)).status, 201);
    let read = from(
        Some("https://evil.example"),
        Some("cross-site"),
        Request::new("GET", "/todos"),
    );
    assert_eq!(app.send(with_cookie(read, &ann)).status, 200);
    let api = from(
        Some("https://tool.example"),
        Some("cross-site"),
        create("api"),
    );
    assert_eq!(app.send(with_auth(api, &bearer)).status, 201);
    // Signing a visitor in from another site is refused too.
    let login = from(
        None,
        Some("cross-site"),
        credentials("/api/login/account", "ann", "correct horse"),
    );
    assert_eq!(app.send(login).status, 403);
    // A preflight lets API clients send Authorization, and never allows credentials.
    let preflight = app.send(Request::new("OPTIONS", "/todos"));
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("Content-Type, Authorization")
    );
    assert_eq!(preflight.header("access-control-allow-credentials"), None);
}

#[test]
fn over_https_the_cookie_is_secure_under_the_host_prefix() {
    let app = Deployment::optional();
    let mut request = credentials("/api/register", "ann", "correct horse");
    request.scheme = "https".to_string();
    let response = app.send(request);
    let cookie = response.header("set-cookie").unwrap_or_default();
    assert!(cookie.starts_with("__Host-todo_session="), "{cookie}");
    for attribute in ["; Path=/", "; HttpOnly", "; SameSite=Strict", "; Secure"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let mut read = with_cookie(Request::new("GET", "/todos"), &cookie_of(&response));
    read.scheme = "https".to_string();
    assert_eq!(app.send(read).status, 200);
}

/// Who acts in the randomized run, with the credential they send.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Actor {
    Anonymous,
    Ann,
    Bob,
}

/// A small deterministic generator, so a failure repeats.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn ten_thousand_mixed_operations_never_cross_from_one_list_to_another() {
    let app = Deployment::optional();
    let ann = app.register("ann", "correct horse");
    let bob = app.bearer_after_register("bob", "battery staple");
    let authenticate = |actor: Actor, request: Request| match actor {
        Actor::Anonymous => request,
        Actor::Ann => with_cookie(request, &ann),
        Actor::Bob => with_auth(request, &bob),
    };
    // What each list must hold: id → title.
    let mut model: BTreeMap<Actor, BTreeMap<u64, String>> = BTreeMap::new();
    let mut next_id: BTreeMap<Actor, u64> = BTreeMap::new();
    let mut dice = Dice(0x5eed_1234_abcd_ef01);
    let actors = [Actor::Anonymous, Actor::Ann, Actor::Bob];
    for step in 0..10_000u64 {
        let actor = actors[dice.below(3) as usize];
        let list = model.entry(actor).or_default();
        // Ids are guessed from the whole range any list has used, so most guesses name another's.
        let highest = next_id.values().copied().max().unwrap_or(0) + 2;
        let id = 1 + dice.below(highest);
        let legacy = dice.below(2) == 1;
        match dice.below(10) {
            0..=2 => {
                let title = format!("{actor:?} {step}");
                let request = if legacy {
                    Request::new("POST", "/api/rule").with_json(&json!({"name": title}).to_string())
                } else {
                    create(&title)
                };
                let response = app.send(authenticate(actor, request));
                assert!(matches!(response.status, 200 | 201), "{step}: {response:?}");
                let body = response.body_json();
                let id = body["id"].as_u64().or(body["key"].as_u64()).unwrap_or(0);
                let next = next_id.entry(actor).or_insert(0);
                *next += 1;
                assert_eq!(id, *next, "{step}: ids are per list");
                list.insert(id, title);
            }
            3..=4 => {
                let response = app.send(authenticate(
                    actor,
                    Request::new("GET", &format!("/todos/{id}")),
                ));
                match list.get(&id) {
                    Some(title) => {
                        assert_eq!(response.status, 200, "{step}");
                        assert_eq!(response.body_json()["title"], title.as_str(), "{step}");
                    }
                    None => assert_eq!(response.status, 404, "{step}: {actor:?} read id {id}"),
                }
            }
            5 => {
                let title = format!("{actor:?} renamed {step}");
                let request = if legacy {
                    Request::new("PUT", "/api/rule")
                        .with_json(&json!({"key": id, "name": title}).to_string())
                } else {
                    Request::new("PATCH", &format!("/todos/{id}"))
                        .with_json(&json!({"title": title}).to_string())
                };
                let response = app.send(authenticate(actor, request));
                if let Some(old) = list.get_mut(&id) {
                    assert_eq!(response.status, 200, "{step}");
                    *old = title;
                } else {
                    assert_eq!(response.status, 404, "{step}: {actor:?} changed id {id}");
                }
            }
            6 => {
                let request = if legacy {
                    Request::new("DELETE", "/api/rule").with_json(&json!({"key": [id]}).to_string())
                } else {
                    Request::new("DELETE", &format!("/todos/{id}"))
                };
                let response = app.send(authenticate(actor, request));
                let existed = list.remove(&id).is_some();
                if !legacy {
                    let expected = if existed { 204 } else { 404 };
                    assert_eq!(
                        response.status, expected,
                        "{step}: {actor:?} deleted id {id}"
                    );
                }
            }
            _ => {
                let (request, field) = if legacy {
                    (
                        Request::new("GET", "/api/rule?current=1&pageSize=1000"),
                        "name",
                    )
                } else {
                    (Request::new("GET", "/todos"), "title")
                };
                let response = app.send(authenticate(actor, request));
                assert_eq!(response.status, 200, "{step}");
                let body = response.body_json();
                let items = if legacy { body["data"].clone() } else { body };
                let mut seen: Vec<(u64, String)> = items
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|item| {
                        let id = item["id"].as_u64().or(item["key"].as_u64()).unwrap_or(0);
                        (id, item[field].as_str().unwrap_or_default().to_string())
                    })
                    .collect();
                seen.sort();
                let expected: Vec<(u64, String)> =
                    list.iter().map(|(id, t)| (*id, t.clone())).collect();
                assert_eq!(seen, expected, "{step}: {actor:?}'s list");
            }
        }
    }
    // Every key of the bucket is the public list's, an account's, or under its owner's prefix.
    for key in app.kv.snapshot().keys() {
        let public = ["todo/", "meta/", "fence/", "index/", "page/"]
            .iter()
            .any(|prefix| key.starts_with(prefix));
        let accounts = ["account/", "account-claim/", "session/", "limit/"]
            .iter()
            .any(|prefix| key.starts_with(prefix));
        let own = key.starts_with("user/ann/") || key.starts_with("user/bob/");
        assert!(public || accounts || own, "{key}");
    }
}

impl Deployment {
    fn bearer_after_register(&self, name: &str, password: &str) -> String {
        self.register(name, password);
        self.bearer(name, password)
    }
}

//! The account cases of issue #24, written once and run on every host that serves the todo
//! component in `optional` mode (its configuration key `accounts`): `todo-host --config
//! accounts=optional`, and, in `tests/platforms.rs`, `wash dev`, `wasmtime serve` and the Node
//! host. Plain HTTP, as a client sees it: sign-up, sign-in, sign-out, bearer tokens, and that two
//! users and anonymous callers never see or touch each other's todos.
//!
//! Each case expects a fresh host in `optional` mode with an empty store, as the API cases of
//! `api_cases.rs` do. What they are not: the abuse limits (429s), the CSRF refusals and the
//! timing targets, which need a host the tests can measure and hold (`todo-host`).

use anyhow::Context;
use base64::Engine;
use serde_json::{Value, json};

use super::{Host, HttpResponse, titles};

/// The session cookie's name on plain HTTP (`__Host-todo_session` on HTTPS).
const COOKIE: &str = "todo_session";

/// A password every case may use: within 8..=128 bytes.
const PASSWORD: &str = "correct horse battery";

/// What `POST /api/login/account` answers to every failed sign-in, the seed's contract.
fn sign_in_failed() -> Value {
    json!({"status": "error", "type": "account", "currentAuthority": "guest"})
}

pub fn register_answers_201_and_a_session_cookie(host: &Host) -> anyhow::Result<()> {
    let registered = register(host, "alice")?;
    let body = registered.json();
    assert_eq!(registered.status, 201, "{}", registered.text());
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["type"], "account", "{body}");
    assert_eq!(body["currentAuthority"], "user", "{body}");
    assert_eq!(body["userid"], "alice", "{body}");
    assert_eq!(body["name"], "alice", "{body}");

    let set_cookie = registered
        .header("set-cookie")
        .context("register answered no Set-Cookie")?;
    let token = cookie_token(&registered)?;
    assert_eq!(
        token.len(),
        43,
        "a 32-byte token in base64url: {set_cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(
            set_cookie.contains(attribute),
            "no {attribute} in {set_cookie}"
        );
    }
    assert!(
        !set_cookie.contains("Max-Age=0"),
        "a live session: {set_cookie}"
    );
    assert!(
        !set_cookie.contains("Secure"),
        "plain HTTP: no Secure attribute: {set_cookie}"
    );

    // The cookie signs the next request in.
    let session = send(host, "GET", "/api/session", &cookie(&token), None)?;
    let body = session.json();
    assert_eq!(
        (
            session.status,
            &body["mode"],
            &body["user"]["userid"],
            &body["user"]["name"]
        ),
        (200, &json!("optional"), &json!("alice"), &json!("alice")),
        "the session the register cookie opened: {body}"
    );
    let me = send(host, "GET", "/api/currentUser", &cookie(&token), None)?;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["userid"], "alice", "{}", me.text());
    assert_eq!(me.json()["access"], "user", "{}", me.text());

    // The name is taken now, whatever its case.
    let again = register(host, "ALICE")?;
    assert_eq!(again.status, 409, "a second ALICE: {}", again.text());
    assert!(again.header("set-cookie").is_none(), "no session for a 409");
    Ok(())
}

pub fn a_new_users_list_is_empty_while_the_public_list_is_not(host: &Host) -> anyhow::Result<()> {
    let public = send(host, "POST", "/todos", &[], Some(r#"{"title":"public"}"#))?;
    assert_eq!(public.status, 201, "{}", public.text());

    let bob = cookie(&cookie_token(&registered(host, "bob")?)?);
    let (status, list) = json_of(send(host, "GET", "/todos", &bob, None)?);
    assert_eq!((status, list), (200, json!([])), "bob's list, signed in");
    let rules = send(host, "GET", "/api/rule?current=1&pageSize=10", &bob, None)?;
    assert_eq!(rules.status, 200, "{}", rules.text());
    assert_eq!(rules.json()["total"], 0, "bob's rules: {}", rules.text());

    let (status, list) = json_of(send(host, "GET", "/todos", &[], None)?);
    assert_eq!(status, 200);
    assert_eq!(titles(&list), ["public"], "the public list, anonymously");

    // An authenticated answer is the caller's: no shared cache may keep it.
    let answer = send(host, "GET", "/todos", &bob, None)?;
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let vary = answer
        .header("vary")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        vary.contains("cookie") && vary.contains("authorization"),
        "vary: {vary:?}"
    );
    Ok(())
}

pub fn two_users_do_not_see_each_others_todos_or_ids(host: &Host) -> anyhow::Result<()> {
    let alice = cookie(&cookie_token(&registered(host, "alice")?)?);
    let bob = cookie(&cookie_token(&registered(host, "bob")?)?);
    for title in ["alice one", "alice two"] {
        let created = send(host, "POST", "/todos", &alice, Some(&todo(title)))?;
        assert_eq!(created.status, 201, "{}", created.text());
    }
    let created = send(host, "POST", "/todos", &bob, Some(&todo("bob one")))?;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(
        created.json()["id"],
        1,
        "ids are per list: {}",
        created.text()
    );

    // Bob's list is his one todo; alice's id 2 is no todo of his, for any method.
    let (_, list) = json_of(send(host, "GET", "/todos", &bob, None)?);
    assert_eq!(titles(&list), ["bob one"], "bob's list");
    for (method, body) in [
        ("GET", None),
        (
            "PATCH",
            Some(r#"{"title":"bob was here","completed":true}"#),
        ),
        ("PUT", Some(r#"{"title":"bob was here"}"#)),
        ("DELETE", None),
    ] {
        let answer = send(host, method, "/todos/2", &bob, body)?;
        assert_eq!(
            answer.status,
            404,
            "bob's {method} of alice's id 2: {}",
            answer.text()
        );
    }
    let legacy = send(
        host,
        "PUT",
        "/api/rule",
        &bob,
        Some(r#"{"key":2,"name":"bob was here"}"#),
    )?;
    assert_eq!(
        legacy.status,
        404,
        "bob's rule update of key 2: {}",
        legacy.text()
    );

    // Id 1 is each one's own.
    let (_, mine) = json_of(send(host, "GET", "/todos/1", &bob, None)?);
    assert_eq!(mine["title"], "bob one");
    let patched = send(
        host,
        "PATCH",
        "/todos/1",
        &bob,
        Some(r#"{"completed":true}"#),
    )?;
    assert_eq!(patched.status, 200, "{}", patched.text());

    // Alice's todos are as she left them, and bob's bulk delete empties only his list.
    let cleared = send(host, "DELETE", "/todos", &bob, None)?;
    assert_eq!(cleared.status, 204, "{}", cleared.text());
    let (_, list) = json_of(send(host, "GET", "/todos", &alice, None)?);
    assert_eq!(titles(&list), ["alice one", "alice two"], "alice's list");
    assert!(
        list.as_array()
            .into_iter()
            .flatten()
            .all(|t| t["completed"] == false),
        "{list}"
    );
    let (status, two) = json_of(send(host, "GET", "/todos/2", &alice, None)?);
    assert_eq!((status, two["title"].clone()), (200, json!("alice two")));
    let rules = send(host, "GET", "/api/rule?current=1&pageSize=10", &alice, None)?;
    assert_eq!(rules.json()["total"], 2, "alice's rules: {}", rules.text());
    let (_, list) = json_of(send(host, "GET", "/todos", &bob, None)?);
    assert_eq!(list, json!([]), "bob's list after his bulk delete");

    // Neither list leaked into the public one.
    let (_, public) = json_of(send(host, "GET", "/todos", &[], None)?);
    assert_eq!(public, json!([]), "the public list");
    Ok(())
}

pub fn sign_out_ends_the_session(host: &Host) -> anyhow::Result<()> {
    let token = cookie_token(&registered(host, "carol")?)?;
    let carol = cookie(&token);
    let created = send(host, "POST", "/todos", &carol, Some(&todo("carol's")))?;
    assert_eq!(created.status, 201, "{}", created.text());

    let out = send(host, "POST", "/api/login/outLogin", &carol, None)?;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.json(), json!({"data": {}, "success": true}));
    let expired = out
        .header("set-cookie")
        .context("sign-out answered no Set-Cookie")?;
    assert!(
        expired.starts_with(&format!("{COOKIE}=")) && expired.contains("Max-Age=0"),
        "sign-out expires the cookie: {expired}"
    );

    // The old cookie is refused, never taken for an anonymous caller.
    let refused = send(host, "GET", "/todos", &carol, None)?;
    assert_eq!(
        refused.status,
        401,
        "the signed-out cookie: {}",
        refused.text()
    );
    assert!(refused.json()["error"].is_string(), "{}", refused.text());
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    let session = send(host, "GET", "/api/session", &carol, None)?;
    assert!(
        session.status == 401 || session.json()["user"].is_null(),
        "the session after sign-out: {} {}",
        session.status,
        session.text()
    );

    // Signing in again opens a new session, on the same list.
    let again = sign_in(host, "carol", PASSWORD)?;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["status"], "ok", "{}", again.text());
    let new_token = cookie_token(&again)?;
    assert_ne!(new_token, token, "a new token at every sign-in");
    let (status, list) = json_of(send(host, "GET", "/todos", &cookie(&new_token), None)?);
    assert_eq!(status, 200);
    assert_eq!(titles(&list), ["carol's"], "carol's list, signed in again");
    Ok(())
}

pub fn a_wrong_password_is_a_200_with_status_error(host: &Host) -> anyhow::Result<()> {
    registered(host, "dave")?;
    let wrong = sign_in(host, "dave", "not dave's password")?;
    assert_eq!(wrong.status, 200, "{}", wrong.text());
    assert_eq!(wrong.json(), sign_in_failed(), "the wrong password");
    assert!(wrong.header("set-cookie").is_none(), "no session");

    let unknown = sign_in(host, "nobody", PASSWORD)?;
    assert_eq!(unknown.status, 200, "{}", unknown.text());
    assert_eq!(
        unknown.json(),
        sign_in_failed(),
        "the same answer for no such user"
    );
    assert!(unknown.header("set-cookie").is_none(), "no session");

    // The seed's frontend sends `userName`; `username` is accepted too.
    let right = send(
        host,
        "POST",
        "/api/login/account",
        &[],
        Some(&json!({"username": "dave", "password": PASSWORD, "type": "account"}).to_string()),
    )?;
    assert_eq!(right.status, 200, "{}", right.text());
    assert_eq!(
        right.json(),
        json!({"status": "ok", "type": "account", "currentAuthority": "user"}),
        "the right password"
    );
    let token = cookie_token(&right)?;
    let me = send(host, "GET", "/api/currentUser", &cookie(&token), None)?;
    assert_eq!(me.json()["userid"], "dave", "{}", me.text());
    Ok(())
}

pub fn a_bearer_token_works_and_basic_is_401(host: &Host) -> anyhow::Result<()> {
    registered(host, "erin")?;
    let issued = send(
        host,
        "POST",
        "/api/tokens",
        &[],
        Some(&json!({"userName": "erin", "password": PASSWORD}).to_string()),
    )?;
    assert_eq!(issued.status, 200, "{}", issued.text());
    assert!(
        issued.header("set-cookie").is_none(),
        "a token sets no cookie"
    );
    let body = issued.json();
    assert_eq!(body["tokenType"], "Bearer", "{body}");
    assert!(body["expiresIn"].as_u64().is_some_and(|s| s > 0), "{body}");
    assert!(body["expiresAt"].is_string(), "{body}");
    let token = body["token"].as_str().context("no token")?.to_string();
    assert_eq!(token.len(), 43, "{body}");
    let bearer = [("authorization", format!("Bearer {token}"))];

    let created = send(host, "POST", "/todos", &bearer, Some(&todo("erin's")))?;
    assert_eq!(created.status, 201, "{}", created.text());
    let (status, list) = json_of(send(host, "GET", "/todos", &bearer, None)?);
    assert_eq!(status, 200);
    assert_eq!(titles(&list), ["erin's"], "erin's list, by bearer token");
    let me = send(host, "GET", "/api/currentUser", &bearer, None)?;
    assert_eq!(me.json()["userid"], "erin", "{}", me.text());
    let (_, public) = json_of(send(host, "GET", "/todos", &[], None)?);
    assert_eq!(public, json!([]), "the public list");

    // Refused credentials are 401s, never the public list.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("erin:{PASSWORD}"));
    for (what, value) in [
        ("Basic", format!("Basic {basic}")),
        (
            "an unknown bearer token",
            format!("Bearer {}", "A".repeat(43)),
        ),
        ("a malformed bearer token", "Bearer not a token".to_string()),
    ] {
        let refused = send(host, "GET", "/todos", &[("authorization", value)], None)?;
        assert_eq!(refused.status, 401, "{what}: {}", refused.text());
        assert!(
            refused.json()["error"].is_string(),
            "{what}: {}",
            refused.text()
        );
    }
    let wrong = send(
        host,
        "POST",
        "/api/tokens",
        &[],
        Some(&json!({"userName": "erin", "password": "not erin's password"}).to_string()),
    )?;
    assert_eq!(
        wrong.status,
        401,
        "a token for the wrong password: {}",
        wrong.text()
    );
    Ok(())
}

pub fn anonymous_requests_still_see_the_public_list(host: &Host) -> anyhow::Result<()> {
    let session = send(host, "GET", "/api/session", &[], None)?;
    assert_eq!(session.status, 200, "{}", session.text());
    assert_eq!(session.json(), json!({"mode": "optional", "user": null}));

    let created = send(host, "POST", "/todos", &[], Some(&todo("everyone's")))?;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("access-control-allow-origin"), Some("*"));
    let frank = cookie(&cookie_token(&registered(host, "frank")?)?);
    let mine = send(host, "POST", "/todos", &frank, Some(&todo("frank's")))?;
    assert_eq!(mine.status, 201, "{}", mine.text());

    let (status, list) = json_of(send(host, "GET", "/todos", &[], None)?);
    assert_eq!(status, 200);
    assert_eq!(
        titles(&list),
        ["everyone's"],
        "the public list, anonymously"
    );
    let (status, one) = json_of(send(host, "GET", "/todos/1", &[], None)?);
    assert_eq!((status, one["title"].clone()), (200, json!("everyone's")));
    let patched = send(
        host,
        "PATCH",
        "/todos/1",
        &[],
        Some(r#"{"completed":true}"#),
    )?;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let (_, list) = json_of(send(host, "GET", "/todos", &frank, None)?);
    assert_eq!(titles(&list), ["frank's"], "frank's list");
    assert_eq!(list[0]["completed"], false, "{list}");

    // Anonymous in optional mode: the demo user, as before accounts.
    let me = send(host, "GET", "/api/currentUser", &[], None)?;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_ne!(me.json()["userid"], "frank", "{}", me.text());
    Ok(())
}

/// `POST /api/register` for `name` with [`PASSWORD`], as the seed's frontend names the fields.
fn register(host: &Host, name: &str) -> anyhow::Result<HttpResponse> {
    send(
        host,
        "POST",
        "/api/register",
        &[],
        Some(&json!({"userName": name, "password": PASSWORD}).to_string()),
    )
}

/// [`register`], which must succeed.
fn registered(host: &Host, name: &str) -> anyhow::Result<HttpResponse> {
    let response = register(host, name)?;
    anyhow::ensure!(
        response.status == 201,
        "registering {name} answered {}: {}",
        response.status,
        response.text()
    );
    Ok(response)
}

/// `POST /api/login/account` as the seed's frontend sends it.
fn sign_in(host: &Host, name: &str, password: &str) -> anyhow::Result<HttpResponse> {
    send(
        host,
        "POST",
        "/api/login/account",
        &[],
        Some(&json!({"userName": name, "password": password, "type": "account"}).to_string()),
    )
}

/// The session token a response's `Set-Cookie` carries.
fn cookie_token(response: &HttpResponse) -> anyhow::Result<String> {
    let set_cookie = response
        .header("set-cookie")
        .with_context(|| format!("no Set-Cookie in the answer: {}", response.text()))?;
    let pair = set_cookie.split(';').next().unwrap_or_default();
    let token = pair
        .strip_prefix(&format!("{COOKIE}="))
        .with_context(|| format!("not a {COOKIE} cookie: {set_cookie}"))?;
    Ok(token.to_string())
}

/// The request header that presents the session `token`.
fn cookie(token: &str) -> [(&'static str, String); 1] {
    [("cookie", format!("{COOKIE}={token}"))]
}

/// A `POST /todos` body.
fn todo(title: &str) -> String {
    json!({ "title": title }).to_string()
}

/// The status and JSON body of `response`.
fn json_of(response: HttpResponse) -> (u16, Value) {
    (response.status, response.json())
}

/// Sends `method path` with `headers` and an optional JSON `body`, and reads the whole answer.
fn send(
    host: &Host,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
) -> anyhow::Result<HttpResponse> {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    host.request_with(
        method,
        path,
        &headers,
        body.map(|b| ("application/json", b)),
    )
}

/// Calls `$then!` with the name of every case above: each host's suite runs this one list
/// (`tests/accounts.rs` on `todo-host`, `tests/platforms.rs` on the others). Not every test
/// binary that includes `support` runs them.
#[allow(unused_macros)]
macro_rules! every_account_case {
    ($then:ident) => {
        $then!(
            register_answers_201_and_a_session_cookie,
            a_new_users_list_is_empty_while_the_public_list_is_not,
            two_users_do_not_see_each_others_todos_or_ids,
            sign_out_ends_the_session,
            a_wrong_password_is_a_200_with_status_error,
            a_bearer_token_works_and_basic_is_401,
            anonymous_requests_still_see_the_public_list,
        );
    };
}
#[allow(unused_imports)]
pub(crate) use every_account_case;

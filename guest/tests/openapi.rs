//! The published contract, `guest/src/openapi.json`, kept in step with the code: every path the
//! routers match is documented and no other; every documented operation is routed and answers a
//! documented status, with accounts off and on, anonymous and signed in; every method a route's
//! `Allow` lists is documented and nothing more; the account routes are a 404 with accounts off;
//! the security schemes are the credentials the code reads, declared on exactly the operations
//! that read one, whose refusals (401, 403) are documented; the documented limits are the code's
//! constants and hold at their boundaries; the document is served at `GET /openapi.json`, byte for
//! byte, whatever the public folder holds. The live check is schemathesis in CI
//! (`tests/contract.sh`), anonymous and signed in.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::error_of;
use todo_guest::accounts::{
    DEFAULT_SESSION_TTL, DEFAULT_SIGNUPS_PER_MINUTE, LOGIN_WINDOW, MAX_BODY, MAX_FAILURES,
};
use todo_guest::body::{MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS};
use todo_guest::context::{Context, SeededEntropy, Settings};
use todo_guest::kv::MemoryKv;
use todo_guest::legacy::{CURRENT_USER_ALLOW, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, RULE_ALLOW};
use todo_guest::password;
use todo_guest::public::PublicFiles;
use todo_guest::router::{CORS_METHODS, OPENAPI_JSON, PAGE_ALLOW};
use todo_guest::session::{COOKIE, SECURE_COOKIE, TOKEN_LEN};
use todo_guest::time::Timestamp;
use todo_guest::todos::{COLLECTION_ALLOW, ITEM_ALLOW, MAX_LIMIT};
use todo_guest::{Request, Response, handle, handle_in, handle_with_files};

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

/// The accounts modes a route can be tried in: `off` is also what a host without configuration
/// gives.
const MODES: [&str; 3] = ["off", "optional", "required"];

/// The user the signed-in requests are made as, and the password of every account here.
const USER: &str = "ann";
const PASSWORD: &str = "correct horse";

/// The todo component as a host runs it: a store, and the configuration value `accounts`.
struct App {
    kv: MemoryKv,
    config: Settings,
    entropy: SeededEntropy,
}

impl App {
    fn new(mode: &str) -> Self {
        Self {
            kv: MemoryKv::new(),
            config: Settings::from_pairs([("accounts", mode)]),
            entropy: SeededEntropy::new(24),
        }
    }

    fn send(&self, request: Request) -> Response {
        let ctx = Context {
            kv: &self.kv,
            now: NOW,
            config: &self.config,
            entropy: &self.entropy,
        };
        handle_in(&request, &ctx)
    }

    /// `request` with `credential` (`None`: anonymous).
    fn send_as(&self, credential: Option<&Credential>, request: Request) -> Response {
        self.send(match credential {
            Some(credential) => credential.apply(request),
            None => request,
        })
    }
}

/// How a test request says who it is.
#[derive(Debug, Clone)]
enum Credential {
    Bearer(String),
    Cookie(String),
    /// An `Authorization` header as sent, e.g. `Basic ...`.
    Header(String),
}

impl Credential {
    fn apply(&self, mut request: Request) -> Request {
        match self {
            Credential::Bearer(token) => request.authorization = Some(format!("Bearer {token}")),
            Credential::Cookie(token) => request.cookie = Some(format!("{COOKIE}={token}")),
            Credential::Header(value) => request.authorization = Some(value.clone()),
        }
        request
    }
}

/// A JSON body naming `name` and `password`.
fn credentials(name: &str, password: &str) -> String {
    json!({ "userName": name, "password": password }).to_string()
}

/// The session token a `Set-Cookie` value gives.
fn cookie_token(response: &Response) -> String {
    let set_cookie = response.header("set-cookie").unwrap_or_else(|| {
        panic!(
            "{} without Set-Cookie: {:?}",
            response.status,
            response.body_json()
        )
    });
    let (_, rest) = set_cookie
        .split_once('=')
        .unwrap_or_else(|| panic!("{set_cookie:?}"));
    rest.split(';').next().unwrap_or_default().to_string()
}

/// An app in `mode` whose public list holds todo 1 (also rule 1); with accounts on, it also has
/// the account [`USER`], signed in by the credential returned, whose own list holds todo 1 too.
fn app_with_one_todo(mode: &str) -> (App, Option<Credential>) {
    let app = App::new(mode);
    let create = |credential: Option<&Credential>| {
        let response = app.send_as(
            credential,
            Request::new("POST", "/todos").with_json(r#"{"title":"one"}"#),
        );
        assert_eq!(response.status, 201, "{:?}", response.body_json());
    };
    if mode == "off" {
        create(None);
        return (app, None);
    }
    // The public list, written as with accounts off (in `required` mode no anonymous caller may).
    handle(
        &Request::new("POST", "/todos").with_json(r#"{"title":"one"}"#),
        &app.kv,
        NOW,
    );
    let response =
        app.send(Request::new("POST", "/api/register").with_json(&credentials(USER, PASSWORD)));
    assert_eq!(response.status, 201, "{:?}", response.body_json());
    let credential = Credential::Bearer(cookie_token(&response));
    create(Some(&credential));
    (app, Some(credential))
}

/// The paths the routers match, read from their source: the match arms on a path's segments
/// (`["api", "rule"] =>`) of `router::route` and `accounts::route`, a binding (`id`) read as a
/// path parameter (`{id}`), catch-alls (`..`) left out. A route added in code is in this set, so
/// it must be in the document.
fn routed_paths(source: &str) -> BTreeSet<String> {
    source
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("[\"") && line.contains("=>"))
        .filter_map(|line| {
            let (segments, _) = line[1..].split_once(']')?;
            let segments: Vec<&str> = segments.split(',').map(str::trim).collect();
            if segments.contains(&"..") {
                return None;
            }
            let path: Vec<String> = segments
                .iter()
                .map(|segment| match segment.strip_prefix('"') {
                    Some(literal) => literal.trim_end_matches('"').to_string(),
                    None => format!("{{{segment}}}"),
                })
                .collect();
            Some(format!("/{}", path.join("/")))
        })
        .collect()
}

const ROUTER_SOURCE: &str = include_str!("../src/router.rs");
const ACCOUNTS_SOURCE: &str = include_str!("../src/accounts.rs");

/// The account routes, from `accounts::route`: they exist only with accounts on.
fn account_paths() -> BTreeSet<String> {
    routed_paths(ACCOUNTS_SOURCE)
}

/// A body each account operation accepts, for `app` from [`app_with_one_todo`].
fn valid_account_body(method: &str, path: &str) -> Option<String> {
    match (method, path) {
        ("POST", "/api/register") => Some(credentials("newcomer", PASSWORD)),
        ("POST", "/api/login/account" | "/api/tokens") => Some(credentials(USER, PASSWORD)),
        _ => None,
    }
}

/// The documented statuses of `method path`.
fn documented_statuses(doc: &Value, path: &str, method: &str) -> BTreeSet<u16> {
    let pointer = format!(
        "/paths/{}/{}/responses",
        path.replace('/', "~1"),
        method.to_ascii_lowercase()
    );
    at(doc, &pointer)
        .as_object()
        .expect("responses is an object")
        .keys()
        .filter_map(|status| status.parse().ok())
        .collect()
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
        "/api/register",
        "/api/login/account",
        "/api/login/outLogin",
        "/api/tokens",
        "/api/session",
        "/openapi.json",
    ]
    .map(String::from)
    .into();
    assert_eq!(paths, expected);
}

#[test]
fn every_path_the_code_routes_is_documented_and_no_other() {
    let doc = document();
    let documented: BTreeSet<String> = paths(&doc).into_iter().collect();
    let mut routed = routed_paths(ROUTER_SOURCE);
    routed.extend(account_paths());
    assert_eq!(
        routed, documented,
        "the routers' match arms (guest/src/router.rs, guest/src/accounts.rs) vs the document"
    );
    assert_eq!(
        account_paths(),
        [
            "/api/register",
            "/api/login/account",
            "/api/login/outLogin",
            "/api/tokens",
            "/api/session",
        ]
        .map(String::from)
        .into(),
        "the source scan finds the account routes"
    );
    // The account operations, and only they, carry the tag that says they need accounts on.
    for path in paths(&doc) {
        for method in documented_methods(&doc, &path) {
            let pointer = format!(
                "/paths/{}/{}/tags/0",
                path.replace('/', "~1"),
                method.to_ascii_lowercase()
            );
            assert_eq!(
                at(&doc, &pointer) == "accounts",
                account_paths().contains(&path),
                "{method} {path}: tagged accounts exactly when it is an account route"
            );
        }
    }
}

/// Accounts off, optional (anonymous and signed in) and required (signed in): every documented
/// operation is routed, accepts a valid request and answers a documented status. (Accounts off,
/// an account route is a 404: `account_routes_exist_only_with_accounts_on`.)
#[test]
fn every_documented_operation_is_routed_and_answers_a_documented_status() {
    let doc = document();
    for (mode, signed_in) in [
        ("off", false),
        ("optional", false),
        ("optional", true),
        ("required", true),
    ] {
        for path in paths(&doc) {
            if mode == "off" && account_paths().contains(&path) {
                continue;
            }
            for method in documented_methods(&doc, &path) {
                let (app, credential) = app_with_one_todo(mode);
                let credential = credential.filter(|_| signed_in);
                let target = path.replace("{id}", "1");
                let mut request = Request::new(&method, &target);
                if let Some(body) = valid_body(&method, &path) {
                    request = request.with_json(body);
                }
                if let Some(body) = valid_account_body(&method, &path) {
                    request = request.with_json(&body);
                }
                let response = app.send_as(credential.as_ref(), request);
                let label = format!("{method} {path}, accounts {mode}, signed in: {signed_in}");
                assert_answers_as_documented(&doc, &path, &method, &response, &label);
            }
        }
    }
}

/// `response` to a valid `method path` is routed, not an error, and documented.
fn assert_answers_as_documented(
    doc: &Value,
    path: &str,
    method: &str,
    response: &Response,
    label: &str,
) {
    assert_ne!(response.status, 405, "{label} is not routed");
    assert!(
        !(response.status == 404 && error_of(response).contains("no route")),
        "{label} is not routed: {}",
        error_of(response)
    );
    assert!(
        response.status < 400,
        "{label} with a valid request answered {}: {}",
        response.status,
        error_of(response)
    );
    if let Err(difference) = as_documented(doc, path, method, response) {
        panic!("{label}: {difference}");
    }
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("*"),
        "{label}"
    );
}

/// Whether `response` to `method path` is as the document has it: a documented status, every
/// header the document requires, and a JSON body that conforms to the documented schema.
fn as_documented(doc: &Value, path: &str, method: &str, response: &Response) -> Result<(), String> {
    let pointer = format!(
        "/paths/{}/{}/responses/{}",
        path.replace('/', "~1"),
        method.to_ascii_lowercase(),
        response.status
    );
    let documented = doc
        .pointer(&pointer)
        .map(|documented| resolve(doc, documented))
        .ok_or_else(|| format!("{} is not documented", response.status))?;
    for (name, header) in documented["headers"].as_object().into_iter().flatten() {
        let header = resolve(doc, header);
        if header["required"] == true && response.header(&name.to_ascii_lowercase()).is_none() {
            return Err(format!("{}: no {name}, which is required", response.status));
        }
    }
    let schema = &documented["content"]["application/json"]["schema"];
    if method != "HEAD" && !schema.is_null() {
        let body: Value = serde_json::from_slice(&response.body)
            .map_err(|err| format!("{}: the body is not JSON: {err}", response.status))?;
        conforms(doc, schema, &body, "")
            .map_err(|difference| format!("{}: the body {difference}", response.status))?;
    }
    Ok(())
}

/// Whether `value` conforms to `schema`, or the first difference found, by its JSON pointer.
/// What the document uses of OpenAPI 3.0's JSON Schema but `pattern`, `format` and `not` (which
/// schemathesis checks live): `$ref`, `nullable`, `type`, `enum`, `oneOf`, `anyOf`, `required`,
/// `properties`, `additionalProperties: false`, `maxProperties`, `items`, `maxItems`,
/// `minLength`, `maxLength`, `minimum`, `maximum`.
fn conforms(doc: &Value, schema: &Value, value: &Value, pointer: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    let differ = |what: String| Err(format!("at '{pointer}' {what}: {value}"));
    if value.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    let kind_ok = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => return differ(format!("has a schema of unknown type {other}")),
    };
    if !kind_ok {
        return differ(format!("is not of type {}", schema["type"]));
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.contains(value)
    {
        return differ(format!("is none of {}", schema["enum"]));
    }
    if let Some(branches) = schema["oneOf"].as_array() {
        let matching = branches
            .iter()
            .filter(|branch| conforms(doc, branch, value, pointer).is_ok())
            .count();
        if matching != 1 {
            return differ(format!("matches {matching} of its oneOf branches"));
        }
    }
    if let Some(branches) = schema["anyOf"].as_array()
        && !branches
            .iter()
            .any(|branch| conforms(doc, branch, value, pointer).is_ok())
    {
        return differ("matches none of its anyOf branches".to_string());
    }
    if let Some(object) = value.as_object() {
        for key in schema["required"].as_array().into_iter().flatten() {
            if !object.contains_key(key.as_str().unwrap_or_default()) {
                return differ(format!("has no {key}"));
            }
        }
        let properties = schema["properties"].as_object();
        for (key, item) in object {
            match properties.and_then(|properties| properties.get(key)) {
                Some(property) => conforms(doc, property, item, &format!("{pointer}/{key}"))?,
                None if schema["additionalProperties"] == false => {
                    return differ(format!("has '{key}', which the schema does not allow"));
                }
                None => {}
            }
        }
        if schema["maxProperties"]
            .as_u64()
            .is_some_and(|max| object.len() as u64 > max)
        {
            return differ("has too many properties".to_string());
        }
    }
    if let Some(items) = value.as_array() {
        if schema["maxItems"]
            .as_u64()
            .is_some_and(|max| items.len() as u64 > max)
        {
            return differ("has too many items".to_string());
        }
        for (index, item) in items.iter().enumerate() {
            conforms(doc, &schema["items"], item, &format!("{pointer}/{index}"))?;
        }
    }
    if let Some(text) = value.as_str() {
        let chars = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| chars < min)
            || schema["maxLength"].as_u64().is_some_and(|max| chars > max)
        {
            return differ("is not of a documented length".to_string());
        }
    }
    if let Some(number) = value.as_f64()
        && (schema["minimum"].as_f64().is_some_and(|min| number < min)
            || schema["maximum"].as_f64().is_some_and(|max| number > max))
    {
        return differ("is out of its documented range".to_string());
    }
    Ok(())
}

#[test]
fn every_method_a_route_allows_is_documented_and_no_other() {
    let doc = document();
    for mode in MODES {
        let app = App::new(mode);
        for path in paths(&doc) {
            if mode == "off" && account_paths().contains(&path) {
                continue;
            }
            let response = app.send(Request::new("TRACE", &path.replace("{id}", "1")));
            if mode == "required" && response.status == 401 {
                // A todo route refuses an anonymous caller before it looks at the method.
                continue;
            }
            assert_eq!(response.status, 405, "TRACE {path}, accounts {mode}");
            let allow: BTreeSet<String> = response
                .header("allow")
                .unwrap_or_else(|| panic!("405 on {path} without Allow"))
                .split(',')
                .map(|method| method.trim().to_string())
                .collect();
            assert_eq!(
                allow,
                documented_methods(&doc, &path),
                "{path}, accounts {mode}: Allow vs the document"
            );
        }
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
    for mode in ["off", "optional"] {
        let app = App::new(mode);
        for path in [
            "/todos/1/x",
            "/api",
            "/api/rules",
            "/api/rule/1",
            "/api/user",
            "/api/login",
            "/api/login/account/x",
            "/api/login/outlogin",
            "/api/logout",
            "/api/register/1",
            "/api/token",
            "/api/tokens/1",
            "/api/sessions",
        ] {
            for method in ["GET", "POST"] {
                let response = app.send(Request::new(method, path));
                assert_eq!(response.status, 404, "{method} {path}, accounts {mode}");
                assert!(
                    error_of(&response).contains("no route"),
                    "{method} {path}, accounts {mode}"
                );
            }
        }
    }
}

/// The document says so: the account routes are a JSON 404 with accounts off, and there the
/// preflight allows no `Authorization`.
#[test]
fn account_routes_exist_only_with_accounts_on() {
    let doc = document();
    let description = at(&doc, "/info/description").as_str().unwrap_or_default();
    for words in ["`off` by default", "404", "`optional` or `required`"] {
        assert!(
            description.contains(words),
            "the description says {words:?}"
        );
    }
    let off = App::new("off");
    let on = App::new("optional");
    for path in account_paths() {
        for method in documented_methods(&doc, &path) {
            let request = || {
                let request = Request::new(&method, &path);
                match valid_account_body(&method, &path) {
                    Some(body) => request.with_json(&body),
                    None => request,
                }
            };
            let response = off.send(request());
            let label = format!("{method} {path}");
            if method == "OPTIONS" {
                // Every path has the preflight, with accounts off as before.
                assert_eq!(response.status, 204, "{label}");
                continue;
            }
            assert_eq!(response.status, 404, "{label} with accounts off");
            if method != "HEAD" {
                assert!(error_of(&response).contains("no route"), "{label}");
            }
            assert_ne!(on.send(request()).status, 404, "{label} with accounts on");
        }
    }
    // The preflight's allowed headers, both as documented.
    for (app, allowed) in [(&off, "Content-Type"), (&on, "Content-Type, Authorization")] {
        for path in paths(&doc) {
            let response = app.send(Request::new("OPTIONS", &path.replace("{id}", "1")));
            assert_eq!(
                response.header("access-control-allow-headers"),
                Some(allowed),
                "{path}"
            );
            let pointer = format!(
                "/paths/{}/options/responses/204/headers/Access-Control-Allow-Headers/schema/enum",
                path.replace('/', "~1")
            );
            assert!(
                at(&doc, &pointer)
                    .as_array()
                    .is_some_and(|values| values.contains(&json!(allowed))),
                "OPTIONS {path} documents {allowed:?}"
            );
        }
    }
}

/// The optional security `[{}, cookie, bearer]`: anonymous, the session cookie, or a bearer token.
fn optional_security() -> Value {
    json!([{}, { "cookie": [] }, { "bearer": [] }])
}

/// Whether `method path` reads the caller's credential: every operation of the todo routes and
/// `/api/currentUser` (the preflight aside), who is signed in, and sign-out.
fn reads_credential(path: &str, method: &str) -> bool {
    method != "OPTIONS"
        && (!account_paths().contains(path)
            || path == "/api/session"
            || path == "/api/login/outLogin")
        && path != "/openapi.json"
}

#[test]
fn the_security_schemes_are_the_credentials_the_code_reads() {
    let doc = document();
    let cookie = at(&doc, "/components/securitySchemes/cookie");
    assert_eq!(
        (&cookie["type"], &cookie["in"], &cookie["name"]),
        (&json!("apiKey"), &json!("cookie"), &json!(COOKIE))
    );
    assert!(
        cookie["description"]
            .as_str()
            .is_some_and(|text| text.contains(SECURE_COOKIE)),
        "the cookie's HTTPS name is documented"
    );
    let bearer = at(&doc, "/components/securitySchemes/bearer");
    assert_eq!(
        (&bearer["type"], &bearer["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    assert!(
        doc.pointer("/security").is_none(),
        "no document-wide security"
    );
    for path in paths(&doc) {
        for method in documented_methods(&doc, &path) {
            let pointer = format!(
                "/paths/{}/{}/security",
                path.replace('/', "~1"),
                method.to_ascii_lowercase()
            );
            let expected = reads_credential(&path, &method).then(optional_security);
            assert_eq!(
                doc.pointer(&pointer).cloned(),
                expected,
                "{method} {path}: its security"
            );
        }
    }
}

/// Every refusal of a credential, or of its absence, is a documented status: a malformed or
/// unknown credential and, with accounts required, none at all (401), and a state-changing
/// request from another site signed in by cookie (403); never with accounts off.
#[test]
fn refused_credentials_answer_documented_statuses() {
    let doc = document();
    let unknown = Credential::Bearer("A".repeat(TOKEN_LEN));
    let basic = Credential::Header("Basic YWxhZGRpbjpvcGVuc2VzYW1l".to_string());
    let short_cookie = Credential::Cookie("short".to_string());
    for path in paths(&doc) {
        for method in documented_methods(&doc, &path) {
            if method == "OPTIONS" {
                continue;
            }
            let target = path.replace("{id}", "1");
            let request = || {
                let mut request = Request::new(&method, &target);
                if let Some(body) = valid_body(&method, &path) {
                    request = request.with_json(body);
                }
                if let Some(body) = valid_account_body(&method, &path) {
                    request = request.with_json(&body);
                }
                request
            };
            let statuses = documented_statuses(&doc, &path, &method);
            let todo_route = reads_credential(&path, &method) && !account_paths().contains(&path);
            let label = format!("{method} {path}");

            // Accounts off: no credential is read, so none is refused.
            let (off, _) = app_with_one_todo("off");
            if !account_paths().contains(&path) {
                for credential in [&unknown, &basic, &short_cookie] {
                    let status = off.send_as(Some(credential), request()).status;
                    assert!(
                        ![401, 403].contains(&status) && statuses.contains(&status),
                        "{label} off, {credential:?}: {status}"
                    );
                }
            }

            let (app, user) = app_with_one_todo("optional");
            for credential in [&unknown, &basic, &short_cookie] {
                let response = app.send_as(Some(credential), request());
                if todo_route {
                    assert_eq!(response.status, 401, "{label}, {credential:?}");
                    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
                    assert_eq!(
                        response.header("set-cookie").is_some(),
                        matches!(credential, Credential::Cookie(_)),
                        "{label}, {credential:?}: a bad cookie, and only it, is expired"
                    );
                }
                if let Err(difference) = as_documented(&doc, &path, &method, &response) {
                    panic!("{label}, {credential:?}: {difference}");
                }
            }

            let (required, _) = app_with_one_todo("required");
            let response = required.send(request());
            assert_eq!(
                response.status == 401,
                todo_route,
                "{label}, accounts required, anonymous: {}",
                response.status
            );
            if let Err(difference) = as_documented(&doc, &path, &method, &response) {
                panic!("{label}: {difference}");
            }

            // Signed in by cookie, sent by another site's page.
            let Some(Credential::Bearer(token)) = user else {
                panic!("signed in")
            };
            let mut cross_site = Credential::Cookie(token).apply(request());
            cross_site.fetch_site = Some("cross-site".to_string());
            let response = app.send(cross_site);
            let changes_state = !matches!(method.as_str(), "GET" | "HEAD");
            assert_eq!(
                response.status == 403,
                changes_state,
                "{label} signed in by cookie from another site: {}",
                response.status
            );
            if let Err(difference) = as_documented(&doc, &path, &method, &response) {
                panic!("{label}: {difference}");
            }
        }
    }
}

/// The documented limits and rules of the account routes are the code's.
#[test]
fn documented_account_limits_are_the_codes_constants() {
    let doc = document();
    let password = schema(&doc, "Password");
    assert_eq!(password["minLength"], password::MIN_LEN);
    assert_eq!(password["maxLength"], password::MAX_LEN);
    assert_eq!(schema(&doc, "UserName")["pattern"], "^[A-Za-z0-9_-]{3,32}$");
    assert!(todo_guest::accounts::NAME_RULE.starts_with("3 to 32 characters of a-z, 0-9"));
    assert_eq!(
        schema(&doc, "Token")["properties"]["token"]["pattern"],
        format!("^[A-Za-z0-9_-]{{{TOKEN_LEN}}}$")
    );
    let set_cookie = schema(&doc, "SessionCookie")["pattern"]
        .as_str()
        .unwrap_or_default();
    for name in [COOKIE, SECURE_COOKIE] {
        assert!(
            set_cookie.contains(&format!("|{name}=")) || set_cookie.contains(&format!("({name}="))
        );
    }
    let description = |name: &str| {
        at(&doc, &format!("/components/responses/{name}/description"))
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(description("AccountBodyTooLarge").contains(&format!("{MAX_BODY} bytes")));
    assert!(
        description("SignUpLimit").contains(&format!("({DEFAULT_SIGNUPS_PER_MINUTE} by default)"))
    );
    assert!(description("SignInLimit").contains(&format!(
        "More than {MAX_FAILURES} sign-ins for this user name failed in the current {}-minute window",
        LOGIN_WINDOW / 60
    )));
    assert!(
        schema(&doc, "Token")["properties"]["expiresIn"]["description"]
            .as_str()
            .is_some_and(|text| text.contains(&format!("({DEFAULT_SESSION_TTL}, ")))
    );
}

/// The account routes' bounds, read from the document, hold against the code: the bound itself
/// is accepted, one past it is a 400 (a 413 for the body). Passwords count bytes.
#[test]
fn documented_account_bounds_hold_at_their_edges() {
    let doc = document();
    let number = |value: &Value| value.as_u64().expect("a whole-number bound") as usize;
    let password = schema(&doc, "Password");
    let (min, max) = (
        number(&password["minLength"]),
        number(&password["maxLength"]),
    );
    let kind = number(&schema(&doc, "Credentials")["properties"]["type"]["maxLength"]);
    let app = App::new("optional");
    let sign_in = |body: Value| {
        app.send(Request::new("POST", "/api/login/account").with_json(&body.to_string()))
            .status
    };
    let name = |n: usize| "n".repeat(n);
    for (body, ok) in [
        (
            json!({ "userName": name(3), "password": "p".repeat(min) }),
            200,
        ),
        (
            json!({ "userName": name(32), "password": "p".repeat(max) }),
            200,
        ),
        (
            json!({ "username": "Mixed_Case-9", "password": "p".repeat(min) }),
            200,
        ),
        (
            json!({ "userName": "nnn", "username": "nnn", "password": "p".repeat(min) }),
            200,
        ),
        (
            json!({ "userName": "nnn", "username": "mmm", "password": "p".repeat(min) }),
            400,
        ),
        (
            json!({ "userName": name(2), "password": "p".repeat(min) }),
            400,
        ),
        (
            json!({ "userName": name(33), "password": "p".repeat(min) }),
            400,
        ),
        (
            json!({ "userName": "n.n", "password": "p".repeat(min) }),
            400,
        ),
        (
            json!({ "userName": "nnn", "password": "p".repeat(min - 1) }),
            400,
        ),
        (
            json!({ "userName": "nnn", "password": "p".repeat(max + 1) }),
            400,
        ),
        // Bytes, not characters: `é` is two.
        (
            json!({ "userName": "nnn", "password": "é".repeat(max / 2) }),
            200,
        ),
        (
            json!({ "userName": "nnn", "password": "é".repeat(max / 2 + 1) }),
            400,
        ),
        (
            json!({ "userName": "nnn", "password": "é".repeat(min / 2) }),
            200,
        ),
        (
            json!({ "userName": "nnn", "password": "é".repeat(min / 2 - 1) }),
            400,
        ),
        (
            json!({ "userName": "nnn", "password": "p".repeat(min), "type": "t".repeat(kind) }),
            200,
        ),
        (
            json!({ "userName": "nnn", "password": "p".repeat(min), "type": "t".repeat(kind + 1) }),
            400,
        ),
        (
            json!({ "userName": "nnn", "password": "p".repeat(min), "type": null }),
            200,
        ),
        (
            json!({ "userName": null, "password": "p".repeat(min) }),
            400,
        ),
        (json!({ "userName": "nnn" }), 400),
    ] {
        assert_eq!(sign_in(body.clone()), ok, "{body}");
    }
    // The body: MAX_BODY bytes are read, one more is a 413, whatever it holds.
    let padded = |size: usize| {
        let body = json!({ "userName": "pad", "password": "p".repeat(min), "x": "" }).to_string();
        let fill = "x".repeat(size - body.len());
        json!({ "userName": "pad", "password": "p".repeat(min), "x": fill }).to_string()
    };
    for (size, ok) in [(MAX_BODY, 200), (MAX_BODY + 1, 413)] {
        let body = padded(size);
        assert_eq!(body.len(), size);
        let request = Request::new("POST", "/api/login/account").with_json(&body);
        assert_eq!(app.send(request).status, ok, "a body of {size} bytes");
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

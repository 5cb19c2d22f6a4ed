//! Accounts: who a request is, and the routes that sign people up, in and out.
//!
//! # Modes
//!
//! The operator chooses with the configuration key [`MODE_KEY`] (`wasi:config/store`):
//! * `off` (the default: unset, or a host that serves no configuration): no accounts; every
//!   answer is what it was before accounts existed, byte for byte. The default, because turning
//!   people on changes what a deployed URL answers, and that is the operator's call to make;
//! * `optional`: anonymous requests keep the shared public list (the Todo-Backend spec passes
//!   unchanged), a signed-in request has its own list;
//! * `required`: every todo route and `/api/currentUser` need a signed-in caller (401 without);
//!   the page, static files, `/openapi.json` and the account routes stay public.
//!
//! A credential that is present but bad is a 401 in both modes (`session.rs`).
//!
//! # Isolation
//!
//! A signed-in caller's list is the public layout under `user/<name>/`
//! ([`crate::kv::PrefixedKv`]), and the name comes only from the verified session: nothing in
//! the URL or the body can choose another prefix.
//!
//! # Abuse
//!
//! * Sign-in attempts per name per 15-minute window ([`LOGIN_WINDOW`]) are counted with the
//!   store's atomic `increment` *before* any hash is computed, successes in a second counter;
//!   past [`MAX_FAILURES`] attempts that did not succeed, the name answers 429 with
//!   `Retry-After` until the window ends, and no hash is computed. The counters are in the
//!   store, so the limit holds across instances and hosts. Windows are fixed, not sliding: a
//!   burst across a boundary may try 2 × [`MAX_FAILURES`].
//! * Sign-ups are counted per minute for the whole store ([`SIGNUPS_KEY`], default
//!   [`DEFAULT_SIGNUPS_PER_MINUTE`]).
//! * A state-changing request authenticated by cookie that comes from another site
//!   (`Sec-Fetch-Site: cross-site`, or an `Origin` that is not the request's host) is refused
//!   (403): the legacy API reads form bodies, which any page can post.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::body::{self, Accepts};
use crate::context::{Config, Context};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::index::parse_counter;
use crate::layout::{
    account_key, login_attempts_key, login_passes_key, name_claim_key, signups_key,
};
use crate::password::{self, PasswordHash};
use crate::session::{self, Credential};

/// The configuration key of the mode: `off`, `optional` or `required`.
pub const MODE_KEY: &str = "accounts";
/// The configuration key of a session's lifetime, seconds.
pub const SESSION_TTL_KEY: &str = "session_ttl";
/// The configuration key of the sign-ups allowed per minute.
pub const SIGNUPS_KEY: &str = "signups_per_minute";
/// A session's lifetime when [`SESSION_TTL_KEY`] is unset: 8 hours, a working day.
pub const DEFAULT_SESSION_TTL: u64 = 8 * 60 * 60;
/// Sign-ups per minute when [`SIGNUPS_KEY`] is unset.
pub const DEFAULT_SIGNUPS_PER_MINUTE: u64 = 20;
/// Sign-in attempts that did not succeed, per name and window, before 429.
pub const MAX_FAILURES: u64 = 10;
/// The sign-in limit's window, seconds.
pub const LOGIN_WINDOW: u64 = 15 * 60;
/// The largest body an account route reads.
pub const MAX_BODY: usize = 4 * 1024;
/// The user-name rule, as errors state it.
pub const NAME_RULE: &str = "3 to 32 characters of a-z, 0-9, '_' and '-' (letters in any case)";

/// Whether and how accounts are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No accounts.
    Off,
    /// Anonymous requests use the public list; signed-in ones their own.
    Optional,
    /// Todo routes need a signed-in caller.
    Required,
}

impl Mode {
    /// The mode `config` names; a value that is none of the three is a 500 naming it.
    pub fn from_config(config: &dyn Config) -> Result<Mode, ApiError> {
        match setting(config, MODE_KEY)?.as_deref() {
            None | Some("off") => Ok(Mode::Off),
            Some("optional") => Ok(Mode::Optional),
            Some("required") => Ok(Mode::Required),
            Some(other) => Err(ApiError::Misconfigured(format!(
                "configuration '{MODE_KEY}' is '{other}'; expected off, optional or required"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Optional => "optional",
            Mode::Required => "required",
        }
    }
}

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credential.
    Anonymous,
    /// A signed-in user, whether by cookie (the credential a browser sends by itself, which
    /// cross-site checks guard), and when the session ends (seconds since the epoch).
    User {
        name: String,
        by_cookie: bool,
        expires: u64,
    },
}

/// Who `request` is: anonymous, or the user of its valid session. A credential that is there but
/// not valid is a 401.
pub fn caller(request: &Request, ctx: &Context) -> Result<Caller, ApiError> {
    let (token, by_cookie) = match session::credential(request)? {
        Credential::None => return Ok(Caller::Anonymous),
        Credential::Cookie(token) => (token, true),
        Credential::Bearer(token) => (token, false),
    };
    let session = session::open(ctx.kv, &token, ctx.now.seconds)?;
    Ok(Caller::User {
        name: session.user,
        by_cookie,
        expires: session.expires,
    })
}

/// Refuses a state-changing request from another site that the browser sent with its cookie.
pub fn check_same_site(request: &Request, caller: &Caller) -> Result<(), ApiError> {
    let by_cookie = matches!(
        caller,
        Caller::User {
            by_cookie: true,
            ..
        }
    );
    if by_cookie && changes_state(request) && cross_site(request) {
        return Err(ApiError::Forbidden(format!(
            "a {} with a session cookie from another site is refused (cross-site request forgery)",
            request.method
        )));
    }
    Ok(())
}

fn changes_state(request: &Request) -> bool {
    !matches!(request.method.as_str(), "GET" | "HEAD" | "OPTIONS")
}

/// Whether the browser says the request came from another site, or its `Origin` is not the
/// host it was sent to.
fn cross_site(request: &Request) -> bool {
    if request.fetch_site.as_deref() == Some("cross-site") {
        return true;
    }
    let Some(origin) = &request.origin else {
        return false;
    };
    let host = origin.split_once("://").map(|(_, host)| host);
    host.is_none_or(|host| !same_host(host, &request.authority))
}

/// `host[:port]` of an origin against the request's authority, default ports aside.
fn same_host(origin_host: &str, authority: &str) -> bool {
    fn bare(host: &str) -> &str {
        host.strip_suffix(":80")
            .or_else(|| host.strip_suffix(":443"))
            .unwrap_or(host)
    }
    bare(origin_host).eq_ignore_ascii_case(bare(authority))
}

/// The account routes, `/api/...`: `None` for a path that is none of them.
pub fn route(
    request: &Request,
    segments: &[&str],
    ctx: &Context,
    mode: Mode,
) -> Option<Result<Response, ApiError>> {
    let answer = match segments {
        ["api", "register"] => post_only(request, |r| register(r, ctx)),
        ["api", "login", "account"] => post_only(request, |r| login(r, ctx)),
        ["api", "login", "outLogin"] => post_only(request, |r| logout(r, ctx)),
        ["api", "tokens"] => post_only(request, |r| token(r, ctx)),
        ["api", "session"] => session_info(request, ctx, mode),
        _ => return None,
    };
    Some(answer)
}

fn post_only(
    request: &Request,
    answer: impl FnOnce(&Request) -> Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    if request.method != "POST" {
        return Err(ApiError::MethodNotAllowed {
            method: request.method.clone(),
            path: request.path.clone(),
            allow: "POST, OPTIONS",
        });
    }
    if request.fetch_site.as_deref() == Some("cross-site") {
        // Signing a victim's browser in as the attacker (login CSRF) is refused as well.
        return Err(ApiError::Forbidden(format!(
            "{} from another site is refused",
            request.path
        )));
    }
    answer(request)
}

/// `POST /api/register`: a new account, signed in (201 and the cookie), or 409 when the name
/// is taken.
fn register(request: &Request, ctx: &Context) -> Result<Response, ApiError> {
    let credentials = Credentials::read(request)?;
    let limit = number_setting(ctx.config, SIGNUPS_KEY, DEFAULT_SIGNUPS_PER_MINUTE)?;
    let now = ctx.now.seconds;
    let signups = ctx.kv.increment(&signups_key(now / 60), 1)?;
    if signups > limit {
        return Err(ApiError::TooManyRequests {
            message: format!("more than {limit} sign-ups this minute; try again shortly"),
            retry_after: 60 - now % 60,
        });
    }
    let taken = || ApiError::Conflict(format!("the user name '{}' is taken", credentials.name));
    // A cheap look first, so a taken name costs no hash.
    if ctx.kv.get(&account_key(&credentials.name))?.is_some() {
        return Err(taken());
    }
    let password = password::hash(credentials.password.as_bytes(), ctx.entropy)?;
    // The store has no "set if absent": the name belongs to the request whose increment of its
    // claim made it 1. A crash between the claim and the account leaves the name taken and
    // unusable, never two accounts under one name.
    if ctx.kv.increment(&name_claim_key(&credentials.name), 1)? != 1 {
        return Err(taken());
    }
    let account = Account {
        name: credentials.name.clone(),
        password,
        created_at: ctx.now.to_rfc3339(),
    };
    let value = serde_json::to_vec(&account).map_err(|err| {
        ApiError::Store(format!("cannot encode account '{}': {err}", account.name))
    })?;
    ctx.kv.set(&account_key(&account.name), &value)?;
    let (token, ttl) = start_session(ctx, &account.name)?;
    Ok(Response::json(
        201,
        &json!({
            "status": "ok",
            "type": "account",
            "currentAuthority": "user",
            "userid": account.name,
            "name": account.name,
        }),
    )
    .with_header("set-cookie", session::set_cookie(request, &token, ttl)))
}

/// `POST /api/login/account`, the seed frontend's contract: 200 either way, `"status":"ok"` with
/// the cookie, or `"status":"error"` for every failure alike.
fn login(request: &Request, ctx: &Context) -> Result<Response, ApiError> {
    let credentials = Credentials::read(request)?;
    let kind = credentials.kind.clone();
    match sign_in(&credentials, ctx)? {
        Some(name) => {
            let (token, ttl) = start_session(ctx, &name)?;
            Ok(Response::json(
                200,
                &json!({"status": "ok", "type": kind, "currentAuthority": "user"}),
            )
            .with_header("set-cookie", session::set_cookie(request, &token, ttl)))
        }
        None => Ok(Response::json(
            200,
            &json!({"status": "error", "type": kind, "currentAuthority": "guest"}),
        )),
    }
}

/// `POST /api/tokens`: a bearer token for an API client (no cookie); 401 for bad credentials.
fn token(request: &Request, ctx: &Context) -> Result<Response, ApiError> {
    let credentials = Credentials::read(request)?;
    let name = sign_in(&credentials, ctx)?
        .ok_or_else(|| ApiError::Unauthorized("wrong user name or password".to_string()))?;
    let (token, ttl) = start_session(ctx, &name)?;
    let expires = crate::time::Timestamp {
        seconds: ctx.now.seconds.saturating_add(ttl),
        nanoseconds: 0,
    };
    Ok(Response::json(
        200,
        &json!({
            "token": token,
            "tokenType": "Bearer",
            "expiresIn": ttl,
            "expiresAt": expires.to_rfc3339(),
        }),
    )
    .with_header("cache-control", "no-store"))
}

/// `POST /api/login/outLogin`: ends the caller's session, if any, and expires the cookie. A
/// stale or bad credential still gets the cookie expired: signing out never fails.
fn logout(request: &Request, ctx: &Context) -> Result<Response, ApiError> {
    if let Ok(Credential::Cookie(token) | Credential::Bearer(token)) = session::credential(request)
    {
        session::end(ctx.kv, &token)?;
    }
    Ok(Response::json(200, &json!({"data": {}, "success": true}))
        .with_header("set-cookie", session::expire_cookie(request)))
}

/// `GET /api/session`: the mode and who is signed in until when, for the page (which signs out
/// at `expiresAt`: the browser drops the cookie then, and the page must not go on as if signed
/// in). A bad credential reads as no one (and its cookie is expired), so the page can always
/// offer to sign in.
fn session_info(request: &Request, ctx: &Context, mode: Mode) -> Result<Response, ApiError> {
    if request.method != "GET" {
        return Err(ApiError::MethodNotAllowed {
            method: request.method.clone(),
            path: request.path.clone(),
            allow: "GET, HEAD, OPTIONS",
        });
    }
    let (user, bad_cookie) = match caller(request, ctx) {
        Ok(Caller::User { name, expires, .. }) => {
            let expires_at = crate::time::Timestamp {
                seconds: expires,
                nanoseconds: 0,
            };
            let user = json!({"userid": name, "name": name, "expiresAt": expires_at.to_rfc3339()});
            (user, false)
        }
        Ok(Caller::Anonymous) => (Value::Null, false),
        // The bad credential was the cookie when no `Authorization` came: the browser drops it.
        Err(ApiError::Unauthorized(_)) => (Value::Null, request.authorization.is_none()),
        Err(other) => return Err(other),
    };
    let mut response = Response::json(200, &json!({"mode": mode.name(), "user": user}));
    if bad_cookie {
        response = response.with_header("set-cookie", session::expire_cookie(request));
    }
    Ok(response
        .with_header("cache-control", "no-store")
        .with_header("vary", "Cookie, Authorization"))
}

/// `GET /api/currentUser` for a signed-in user, in the seed frontend's shape.
pub fn current_user(name: &str) -> Response {
    Response::json(
        200,
        &json!({
            "name": name,
            "userid": name,
            "access": "user",
            "avatar": "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 1 1'%3E%3Crect width='1' height='1' fill='%2347a'/%3E%3C/svg%3E",
        }),
    )
}

/// The name of the account `credentials` sign in to, or `None` for a wrong name or password;
/// a 429 past the limit, before any hash.
fn sign_in(credentials: &Credentials, ctx: &Context) -> Result<Option<String>, ApiError> {
    let name = &credentials.name;
    let now = ctx.now.seconds;
    let window = now / LOGIN_WINDOW;
    let attempts = ctx.kv.increment(&login_attempts_key(name, window), 1)?;
    let found = ctx
        .kv
        .get_many(&[account_key(name), login_passes_key(name, window)])?;
    let passes = found[1]
        .as_ref()
        .and_then(|(_, value)| parse_counter(value))
        .unwrap_or(0);
    if attempts.saturating_sub(passes) > MAX_FAILURES {
        return Err(ApiError::TooManyRequests {
            message: format!(
                "more than {MAX_FAILURES} failed sign-ins for '{name}' in {} minutes; try again later",
                LOGIN_WINDOW / 60
            ),
            retry_after: (window + 1) * LOGIN_WINDOW - now,
        });
    }
    let password = credentials.password.as_bytes();
    let verified = match &found[0] {
        Some((key, value)) => {
            let account: Account = serde_json::from_slice(value).map_err(|err| {
                ApiError::Store(format!("the value of '{key}' is not an account: {err}"))
            })?;
            password::verify(password, &account.password)?
        }
        None => password::verify_unknown(password)?,
    };
    if !verified {
        return Ok(None);
    }
    ctx.kv.increment(&login_passes_key(name, window), 1)?;
    Ok(Some(name.clone()))
}

/// A new session for `name`: its token and lifetime.
fn start_session(ctx: &Context, name: &str) -> Result<(String, u64), ApiError> {
    let ttl = number_setting(ctx.config, SESSION_TTL_KEY, DEFAULT_SESSION_TTL)?;
    let token = session::start(
        ctx.kv,
        ctx.entropy,
        name,
        ctx.now.seconds.saturating_add(ttl),
    )?;
    Ok((token, ttl))
}

/// An account as the store keeps it under [`account_key`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Account {
    name: String,
    password: PasswordHash,
    created_at: String,
}

/// A sign-up or sign-in body: `userName` (or `username`) and `password`, checked against the
/// rules before anything is hashed.
struct Credentials {
    name: String,
    password: String,
    /// The seed frontend's `type`, echoed back (`account` when absent).
    kind: String,
}

impl Credentials {
    fn read(request: &Request) -> Result<Credentials, ApiError> {
        if request.body.len() > MAX_BODY {
            return Err(ApiError::PayloadTooLarge(format!(
                "an account request's body is at most {MAX_BODY} bytes; this one is {}",
                request.body.len()
            )));
        }
        let map = body::object(request, Accepts::Json)?;
        let name = user_name(&map)?;
        let password = string_field(&map, "password")?
            .ok_or_else(|| ApiError::BadRequest("'password' is required".to_string()))?;
        if !(password::MIN_LEN..=password::MAX_LEN).contains(&password.len()) {
            return Err(ApiError::BadRequest(format!(
                "'password' must be {} to {} bytes; it is {}",
                password::MIN_LEN,
                password::MAX_LEN,
                password.len()
            )));
        }
        let kind = string_field(&map, "type")?.unwrap_or_else(|| "account".to_string());
        if kind.len() > 32 {
            return Err(ApiError::BadRequest(
                "'type' is at most 32 bytes".to_string(),
            ));
        }
        Ok(Credentials {
            name,
            password,
            kind,
        })
    }
}

/// `userName` or `username` (the same when both), lower-cased, by [`NAME_RULE`].
fn user_name(map: &Map<String, Value>) -> Result<String, ApiError> {
    let name = match (
        string_field(map, "userName")?,
        string_field(map, "username")?,
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::BadRequest(
                "'userName' and 'username' differ; send one".to_string(),
            ));
        }
        (Some(name), _) | (None, Some(name)) => name,
        (None, None) => {
            return Err(ApiError::BadRequest("'userName' is required".to_string()));
        }
    };
    let name = name.to_ascii_lowercase();
    let valid = (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
    if !valid {
        return Err(ApiError::BadRequest(format!(
            "'userName' must be {NAME_RULE}"
        )));
    }
    Ok(name)
}

fn string_field(map: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(ApiError::BadRequest(format!(
            "'{field}' must be a string, not {}",
            body::kind(other)
        ))),
    }
}

/// The value of configuration `key`; the host's failure to say is a 500 naming the key.
fn setting(config: &dyn Config, key: &str) -> Result<Option<String>, ApiError> {
    config.get(key).map_err(|err| {
        ApiError::Misconfigured(format!(
            "the host could not give configuration '{key}': {err}"
        ))
    })
}

/// A positive whole-number setting, `default` when unset.
fn number_setting(config: &dyn Config, key: &str, default: u64) -> Result<u64, ApiError> {
    match setting(config, key)? {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ApiError::Misconfigured(format!(
                    "configuration '{key}' is '{text}'; expected a whole number above 0"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_their_host_whatever_the_default_port() {
        assert!(same_host("localhost:8080", "localhost:8080"));
        assert!(same_host("example.com", "example.com:443"));
        assert!(same_host("Example.com", "example.com"));
        assert!(!same_host("evil.com", "example.com"));
        assert!(!same_host("example.com:8081", "example.com:8080"));
    }

    #[test]
    fn user_names_follow_the_rule_and_fold_case() {
        let read = |body: &str| {
            let map: Map<String, Value> = serde_json::from_str(body).unwrap_or_default();
            user_name(&map)
        };
        assert_eq!(read(r#"{"userName":"Ann_1"}"#), Ok("ann_1".to_string()));
        assert_eq!(read(r#"{"username":"bob"}"#), Ok("bob".to_string()));
        assert_eq!(
            read(r#"{"userName":"bob","username":"bob"}"#),
            Ok("bob".to_string())
        );
        for bad in [
            r#"{"userName":"ab"}"#,
            r#"{"userName":"a/b/c"}"#,
            r#"{"userName":"ann","username":"bob"}"#,
            r#"{"userName":7}"#,
            r#"{}"#,
            &format!(r#"{{"userName":"{}"}}"#, "a".repeat(33)),
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}

//! Sessions and the credentials that name them, without a secret in the component.
//!
//! A session is a random token ([`TOKEN_BYTES`] from the host's randomness, base64url), given
//! to the client once: in a cookie ([`set_cookie`]) for a browser, in the body of
//! `POST /api/tokens` for an API client, which sends it back as `Authorization: Bearer`. The
//! store keeps only its SHA-256 ([`session_key`]) with the user and an absolute expiry, so a
//! copy of the store signs no one in; ending the session deletes that key, and the token is
//! then worth nothing.
//!
//! A credential that is present but malformed, unknown or expired is refused (401), never
//! taken as no credential: a client that meant to be someone must not silently act on the
//! public list.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::context::Entropy;
use crate::encoding::{base64url, hex, is_base64url};
use crate::error::ApiError;
use crate::http::Request;
use crate::kv::Kv;
use crate::layout::session_key;

/// Random bytes per token (256 bits).
pub const TOKEN_BYTES: usize = 32;
/// Characters of a token: [`TOKEN_BYTES`] in unpadded base64url (43).
pub const TOKEN_LEN: usize = (TOKEN_BYTES * 4).div_ceil(3);
/// The session cookie's name over plain HTTP.
pub const COOKIE: &str = "todo_session";
/// The session cookie's name over HTTPS: the `__Host-` prefix makes browsers demand `Secure`,
/// `Path=/` and no `Domain`, so no sibling host can set it.
pub const SECURE_COOKIE: &str = "__Host-todo_session";

/// How a request says who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Nothing: anonymous.
    None,
    /// The session cookie.
    Cookie(String),
    /// `Authorization: Bearer`.
    Bearer(String),
}

/// The session record a token's hash keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The user name.
    pub user: String,
    /// Seconds since the epoch after which the session is over.
    pub expires: u64,
}

/// The credential of `request`: `Authorization` first, then the session cookie. A malformed
/// one (`Basic`, a token of the wrong shape, our cookie with a bad value) is a 401.
pub fn credential(request: &Request) -> Result<Credential, ApiError> {
    if let Some(header) = &request.authorization {
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "the Authorization header must be 'Bearer <token>' from POST /api/tokens"
                        .to_string(),
                )
            })?;
        return well_formed(token).map(Credential::Bearer);
    }
    let Some(cookies) = &request.cookie else {
        return Ok(Credential::None);
    };
    let ours = cookies.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let name = name.trim();
        (name == COOKIE || name == SECURE_COOKIE).then(|| value.trim())
    });
    match ours {
        None => Ok(Credential::None),
        Some(token) => well_formed(token).map(Credential::Cookie),
    }
}

fn well_formed(token: &str) -> Result<String, ApiError> {
    if token.len() == TOKEN_LEN && is_base64url(token) {
        Ok(token.to_string())
    } else {
        Err(ApiError::Unauthorized(format!(
            "a session token is {TOKEN_LEN} base64url characters; this one is not"
        )))
    }
}

/// The store key of `token`'s session: its SHA-256, never the token.
fn key_of(token: &str) -> String {
    session_key(&hex(&Sha256::digest(token.as_bytes())))
}

/// A new session for `user`, ending at `expires`: the token, to hand to the client once.
pub fn start(
    kv: &dyn Kv,
    entropy: &dyn Entropy,
    user: &str,
    expires: u64,
) -> Result<String, ApiError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    entropy.fill(&mut bytes);
    let token = base64url(&bytes);
    let record = SessionRecord {
        user: user.to_string(),
        expires,
    };
    let value = serde_json::to_vec(&record)
        .map_err(|err| ApiError::Store(format!("cannot encode a session of '{user}': {err}")))?;
    kv.set(&key_of(&token), &value)?;
    Ok(token)
}

/// The session `token` names, if it exists and has not expired at `now` (seconds). An expired
/// session's key is deleted on the way.
pub fn open(kv: &dyn Kv, token: &str, now: u64) -> Result<SessionRecord, ApiError> {
    let key = key_of(token);
    let unknown = || ApiError::Unauthorized("the session has ended or never was".to_string());
    let bytes = kv.get(&key)?.ok_or_else(unknown)?;
    let record: SessionRecord = serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::Store(format!("the value of '{key}' is not a session: {err}")))?;
    if record.expires <= now {
        kv.delete(&key)?;
        return Err(unknown());
    }
    Ok(record)
}

/// Ends `token`'s session: from now on it signs no one in.
pub fn end(kv: &dyn Kv, token: &str) -> Result<(), ApiError> {
    Ok(kv.delete(&key_of(token))?)
}

/// The `Set-Cookie` value that gives a browser `token` for `max_age` seconds: `HttpOnly` (no
/// script reads it), `SameSite=Strict` (no other site's page sends it), and over HTTPS `Secure`
/// under the `__Host-` name.
pub fn set_cookie(request: &Request, token: &str, max_age: u64) -> String {
    let (name, secure) = cookie_name(request);
    format!("{name}={token}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that makes a browser drop the session cookie.
pub fn expire_cookie(request: &Request) -> String {
    set_cookie(request, "", 0)
}

fn cookie_name(request: &Request) -> (&'static str, &'static str) {
    if request.scheme == "https" {
        (SECURE_COOKIE, "; Secure")
    } else {
        (COOKIE, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::SeededEntropy;
    use crate::kv::MemoryKv;

    #[test]
    fn the_store_keeps_the_hash_and_never_the_token() -> Result<(), ApiError> {
        let kv = MemoryKv::new();
        let token = start(&kv, &SeededEntropy::new(7), "ann", 100)?;
        assert_eq!(token.len(), TOKEN_LEN);
        for (key, value) in kv.snapshot() {
            assert!(!key.contains(&token) && !String::from_utf8_lossy(&value).contains(&token));
        }
        assert_eq!(open(&kv, &token, 99)?.user, "ann");
        // Expired: refused, and its key gone.
        assert!(matches!(
            open(&kv, &token, 100),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(kv.is_empty());
        Ok(())
    }

    #[test]
    fn credentials_are_read_strictly() {
        let token = "a".repeat(TOKEN_LEN);
        let mut request = Request::new("GET", "/todos");
        assert_eq!(credential(&request), Ok(Credential::None));
        request.cookie = Some(format!("theme=dark; {COOKIE}={token}"));
        assert_eq!(credential(&request), Ok(Credential::Cookie(token.clone())));
        request.cookie = Some(format!("{COOKIE}=short"));
        assert!(credential(&request).is_err());
        request.cookie = Some("theme=dark".to_string());
        assert_eq!(credential(&request), Ok(Credential::None));
        request.authorization = Some(format!("Bearer {token}"));
        assert_eq!(credential(&request), Ok(Credential::Bearer(token.clone())));
        for bad in [
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            "Bearer",
            "Bearer a+b",
            "token",
        ] {
            request.authorization = Some(bad.to_string());
            assert!(credential(&request).is_err(), "{bad}");
        }
    }

    #[test]
    fn cookies_are_host_only_http_only_and_strict() {
        let mut request = Request::new("POST", "/api/login/account");
        assert_eq!(
            set_cookie(&request, "t", 60),
            "todo_session=t; Max-Age=60; Path=/; HttpOnly; SameSite=Strict"
        );
        request.scheme = "https".to_string();
        assert_eq!(
            expire_cookie(&request),
            "__Host-todo_session=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
    }
}

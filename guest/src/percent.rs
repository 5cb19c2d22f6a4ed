//! Strict percent-decoding of request paths, query strings and form bodies.
//!
//! The `percent-encoding` crate does the decoding. It is lenient by design: a `%` not followed by
//! two hex digits passes through as itself. We refuse such text with a 400 instead, as we refuse
//! text that does not decode to UTF-8: a client that sends `%4` or `%zz` has a bug worth hearing
//! about, and a path must have exactly one reading before the public folder is asked for it.

use std::borrow::Cow;

use percent_encoding::percent_decode;

use crate::error::ApiError;

/// `text` with every `%XX` escape decoded; `+` stays a `+` (as in a path).
pub fn decode(text: &str) -> Result<String, ApiError> {
    decode_bytes(text, text.as_bytes())
}

/// `text` as a form or query component: `+` is a space, then every `%XX` escape is decoded.
pub fn decode_form(text: &str) -> Result<String, ApiError> {
    // `+` is replaced before decoding, so an escaped plus (`%2B`) stays a plus.
    let spaced: Cow<'_, str> = if text.contains('+') {
        Cow::Owned(text.replace('+', " "))
    } else {
        Cow::Borrowed(text)
    };
    decode_bytes(text, spaced.as_bytes())
}

/// Decodes `bytes` (which are `text`, perhaps with `+` already turned into spaces); errors name
/// `text` as the client sent it.
fn decode_bytes(text: &str, bytes: &[u8]) -> Result<String, ApiError> {
    check_escapes(text)?;
    percent_decode(bytes)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| ApiError::BadRequest(format!("'{text}' does not decode to UTF-8")))
}

/// Fails on the first `%` that is not followed by two hex digits.
fn check_escapes(text: &str) -> Result<(), ApiError> {
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices('%') {
        let escape = bytes.get(at + 1..at + 3);
        if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
            let shown: String = text[at..].chars().take(3).collect();
            return Err(ApiError::BadRequest(format!(
                "bad percent-encoding in '{text}': '{shown}' is not '%' and two hex digits"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_plus_decode_as_each_context_says() -> Result<(), ApiError> {
        assert_eq!(decode("caf%C3%A9+x%2Fy")?, "café+x/y");
        assert_eq!(decode_form("a+b%2Bc%20d")?, "a b+c d");
        assert_eq!(decode_form("")?, "");
        Ok(())
    }

    #[test]
    fn malformed_escapes_are_bad_requests_naming_the_text() {
        for bad in ["%", "%4", "a%zz", "%%41", "x%4g", "%é1", "ok%2"] {
            for result in [decode(bad), decode_form(bad)] {
                match result {
                    Err(ApiError::BadRequest(message)) => {
                        assert!(message.contains(&format!("'{bad}'")), "{message}");
                    }
                    other => panic!("{bad:?} gave {other:?}"),
                }
            }
        }
    }

    #[test]
    fn escapes_that_are_not_utf8_are_bad_requests() {
        for bad in ["%FF", "%C3", "a%C3%28"] {
            assert!(
                matches!(decode(bad), Err(ApiError::BadRequest(m)) if m.contains("UTF-8")),
                "{bad}"
            );
        }
    }
}

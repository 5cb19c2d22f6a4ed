//! Request bodies and query strings: content types, JSON objects, form fields, query parameters,
//! and typed field access with errors that name the field and say what was wrong.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::http::Request;
use crate::percent;

/// The longest title we keep, in characters.
pub const MAX_TITLE_CHARS: usize = 1000;
/// The longest legacy description we keep, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;

/// Which body formats a route reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// JSON only (`application/json`, `*/*+json`); a body without a type is read as JSON.
    Json,
    /// JSON or `application/x-www-form-urlencoded`.
    JsonOrForm,
}

impl Accepts {
    fn expected(self) -> &'static str {
        match self {
            Accepts::Json => "application/json",
            Accepts::JsonOrForm => "application/json or application/x-www-form-urlencoded",
        }
    }
}

/// The media type of `content_type`, lower case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// The request body as a JSON object, read according to its `Content-Type`.
pub fn object(request: &Request, accepts: Accepts) -> Result<Map<String, Value>, ApiError> {
    let media = request.content_type.as_deref().map(media_type);
    match media.as_deref() {
        None => json_object(&request.body),
        Some(media) if is_json(media) => json_object(&request.body),
        Some("application/x-www-form-urlencoded") if accepts == Accepts::JsonOrForm => {
            form_object(&request.body)
        }
        Some(_) => Err(ApiError::UnsupportedMediaType {
            got: request.content_type.clone().unwrap_or_default(),
            expected: accepts.expected(),
        }),
    }
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "request body is empty: expected a JSON object".to_string(),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|err| ApiError::BadRequest(format!("request body is not valid UTF-8: {err}")))?;
    match serde_json::from_str::<Value>(&plain_minus_zeros(text)) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::BadRequest(format!(
            "request body must be a JSON object, got {}",
            kind(&other)
        ))),
        Err(err) => Err(ApiError::BadRequest(format!(
            "request body is not valid JSON: {err}"
        ))),
    }
}

/// `text` with every number written `-0` (no fraction, no exponent) written `0`.
///
/// A JSON parser reads `-0` as a floating-point negative zero, the same value as `-0.0` or
/// `-0e1`; only the text tells the integer from the numbers with a fraction or exponent, so the
/// integer is rewritten before parsing. A `-` counts only where a number starts (after `[`, `,`,
/// `:` or white space) and outside strings; the rest of the text is unchanged.
fn plain_minus_zeros(text: &str) -> Cow<'_, str> {
    if !text.contains("-0") {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let (mut in_string, mut escaped) = (false, false);
    for (at, &byte) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_string = true;
        } else if byte == b'-'
            && bytes.get(at + 1) == Some(&b'0')
            && !matches!(bytes.get(at + 2), Some(b'0'..=b'9' | b'.' | b'e' | b'E'))
            && (at == 0
                || matches!(
                    bytes[at - 1],
                    b'[' | b',' | b':' | b' ' | b'\t' | b'\n' | b'\r'
                ))
        {
            out.push_str(&text[copied..at]);
            copied = at + 1;
        }
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

fn form_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|err| ApiError::BadRequest(format!("form body is not valid UTF-8: {err}")))?;
    let mut map = Map::new();
    for (name, value) in form_pairs(text)? {
        map.insert(name, Value::String(value));
    }
    Ok(map)
}

/// The `name=value` pairs of a query string or form body, percent-decoded (`+` is a space);
/// a malformed escape is a 400 naming the text that holds it.
pub fn form_pairs(text: &str) -> Result<Vec<(String, String)>, ApiError> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent::decode_form(name)?, percent::decode_form(value)?))
        })
        .collect()
}

/// The parameters of `request`'s query string, percent-decoded as [`form_pairs`], in order. A
/// parameter given more than once is a 400: which of its values was meant is the client's to say.
pub fn query_pairs(request: &Request) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = form_pairs(request.query.as_deref().unwrap_or(""))?;
    for (at, (name, _)) in pairs.iter().enumerate() {
        if pairs[..at].iter().any(|(seen, _)| seen == name) {
            return Err(ApiError::BadRequest(format!(
                "query parameter '{name}' is given more than once"
            )));
        }
    }
    Ok(pairs)
}

/// A JSON value's kind, for error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::BadRequest(format!(
        "field '{field}' must be {expected}, got {}",
        kind(got)
    ))
}

/// Field `field` as a title: a string, not blank, at most [`MAX_TITLE_CHARS`]; trimmed.
pub fn title(map: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = map.get(field) else {
        return Ok(None);
    };
    let Value::String(text) = value else {
        return Err(wrong_type(field, "a string", value));
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "field '{field}' must not be empty"
        )));
    }
    let chars = trimmed.chars().count();
    if chars > MAX_TITLE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "field '{field}' is {chars} characters long; the limit is {MAX_TITLE_CHARS}"
        )));
    }
    Ok(Some(trimmed.to_string()))
}

/// Field `field` as free text of at most [`MAX_DESCRIPTION_CHARS`] (may be empty).
pub fn text(map: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let chars = text.chars().count();
            if chars > MAX_DESCRIPTION_CHARS {
                return Err(ApiError::BadRequest(format!(
                    "field '{field}' is {chars} characters long; the limit is {MAX_DESCRIPTION_CHARS}"
                )));
            }
            Ok(Some(text.clone()))
        }
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

/// Field `field` as a boolean.
pub fn boolean(map: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(field, "true or false", other)),
    }
}

/// Field `field` as a signed 64-bit integer, written without fraction or exponent. `-0` is the
/// integer 0 (`plain_minus_zeros` hands the parser `0`); `-0.0` has a fraction, as `0.0` does.
pub fn integer(map: &Map<String, Value>, field: &str) -> Result<Option<i64>, ApiError> {
    match map.get(field) {
        None => Ok(None),
        Some(value @ Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| wrong_type(field, "an integer between -2^63 and 2^63-1", value)),
        Some(other) => Err(wrong_type(field, "an integer", other)),
    }
}

/// `value` as an id: a positive integer, as a JSON number or a string of digits.
pub fn id_value(field: &str, value: &Value) -> Result<u64, ApiError> {
    let id = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => parse_id(text),
        _ => None,
    };
    id.filter(|id| *id > 0)
        .ok_or_else(|| wrong_type(field, "a positive integer id", value))
}

/// `text` as an id: ASCII digits only (no sign, no spaces), a positive u64.
pub fn parse_id(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_pairs_decode_plus_and_percent() -> Result<(), ApiError> {
        let pairs = form_pairs("name=buy+milk&desc=2%25%20fat&empty=")?;
        assert_eq!(
            pairs,
            vec![
                ("name".to_string(), "buy milk".to_string()),
                ("desc".to_string(), "2% fat".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
        Ok(())
    }

    #[test]
    fn truncated_percent_escape_is_a_bad_request() {
        assert!(matches!(form_pairs("a=%4"), Err(ApiError::BadRequest(m)) if m.contains("'%4'")));
        assert!(
            matches!(form_pairs("a%zz=1"), Err(ApiError::BadRequest(m)) if m.contains("'a%zz'"))
        );
        assert!(matches!(form_pairs("a=%FF"), Err(ApiError::BadRequest(m)) if m.contains("UTF-8")));
    }

    #[test]
    fn a_query_parameter_given_twice_is_a_bad_request_naming_it() -> Result<(), ApiError> {
        let pairs = query_pairs(&Request::new("GET", "/todos?limit=2&after=1&x="))?;
        assert_eq!(pairs.len(), 3);
        assert!(query_pairs(&Request::new("GET", "/todos"))?.is_empty());
        let twice = query_pairs(&Request::new("GET", "/todos?after=1&limit=2&after=3"));
        assert!(
            matches!(twice, Err(ApiError::BadRequest(m)) if m == "query parameter 'after' is given more than once")
        );
        Ok(())
    }

    #[test]
    fn parse_id_accepts_only_plain_positive_digits() {
        assert_eq!(parse_id("42"), Some(42));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            " 1",
            "1.0",
            "abc",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_a_plain_minus_zero_number_is_rewritten() {
        for (text, plain) in [
            (r#"{"a":-0}"#, r#"{"a":0}"#),
            (r#"[-0, -0 ,-0]"#, r#"[0, 0 ,0]"#),
            ("-0", "0"),
            (
                r#"{"a":-0.0,"b":-0e1,"c":-0E1,"d":-01,"e":1e-0,"f":5-0}"#,
                "",
            ),
            (r#"{"a":"-0","b":"\"-0","c":[" -0"]}"#, ""),
            (r#"{"c":"\\","d":-0}"#, r#"{"c":"\\","d":0}"#),
        ] {
            let expected = if plain.is_empty() { text } else { plain };
            assert_eq!(plain_minus_zeros(text), expected, "{text}");
        }
    }

    #[test]
    fn content_type_parameters_and_case_are_ignored() -> Result<(), ApiError> {
        let request = Request::new("POST", "/todos")
            .with_body("Application/JSON; charset=utf-8", br#"{"title":"x"}"#);
        assert!(object(&request, Accepts::Json)?.contains_key("title"));
        Ok(())
    }
}

//! How host bucket names and keys are written in NATS, which allows fewer characters in names
//! than the host does. Both mappings are one-to-one: two host names never share a NATS name.
//!
//! # Buckets
//! The host allows bucket names of `[A-Za-z0-9_.-]`; NATS allows `[A-Za-z0-9_-]`. A host bucket
//! becomes the NATS bucket `P` + its name with `_` written `__` and every other character NATS
//! refuses written `_` + the two hex digits of each of its UTF-8 bytes (`.` → `_2e`): `default` is
//! `default`, `todo.v2` is `todo_2ev2`, `my_app` is `my__app`. The mapping is one-to-one, so two
//! host buckets never share a NATS bucket. A bucket is created on first use (history 1, file
//! storage, the URL's replica count); one that exists already is used as it is, with a warning
//! when its settings differ from those.
//!
//! # Keys
//! NATS keys allow `[-/_=.A-Za-z0-9]`, and a key is part of a subject, which the protocol caps
//! (a 4 KiB control line by default). So a key is stored as one of three tokens:
//! * itself, when it is 1 to 256 characters of `[-/_=A-Za-z0-9]` and does not start with `=`
//!   (the todo app's `todo/12` and `meta/next-id`; `nats kv get default todo/12` works);
//! * `=` + base64url (no padding) of its UTF-8 bytes when that is at most 256 characters (empty,
//!   Unicode, spaces, dots, ...);
//! * `==` + base64url of its SHA-256 otherwise, with the key itself (base64url) in the message's
//!   `Todo-Kv-Key` header, where listing finds it and reads check it.
//!
//! `=` never starts a plain token, and base64url never contains `=`: the three forms never meet.

use async_nats::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// The longest key token in a subject: far below the 4 KiB protocol line that carries it.
const MAX_KEY_TOKEN: usize = 256;
/// Where the key of a hashed token is kept.
pub(super) const KEY_HEADER: &str = "Todo-Kv-Key";

/// The NATS bucket of host bucket `bucket`: `prefix` + the name, `_` doubled, other characters
/// NATS refuses as `_` + hex bytes.
pub(super) fn nats_bucket_name(prefix: &str, bucket: &str) -> String {
    let mut name = String::from(prefix);
    for c in bucket.chars() {
        match c {
            '_' => name.push_str("__"),
            c if c.is_ascii_alphanumeric() || c == '-' => name.push(c),
            c => {
                let mut utf8 = [0; 4];
                for byte in c.encode_utf8(&mut utf8).bytes() {
                    name.push_str(&format!("_{byte:02x}"));
                }
            }
        }
    }
    name
}

/// How a key is written in a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KeyToken {
    /// The key itself, or `=` + its base64url.
    Plain(String),
    /// `==` + base64url of its SHA-256; the key travels in [`KEY_HEADER`].
    Hashed(String),
}

impl KeyToken {
    pub(super) fn of(key: &str) -> Self {
        let verbatim = !key.is_empty()
            && key.len() <= MAX_KEY_TOKEN
            && !key.starts_with('=')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b));
        if verbatim {
            return Self::Plain(key.to_string());
        }
        let encoded = format!("={}", URL_SAFE_NO_PAD.encode(key));
        if encoded.len() <= MAX_KEY_TOKEN {
            return Self::Plain(encoded);
        }
        Self::Hashed(format!(
            "=={}",
            URL_SAFE_NO_PAD.encode(Sha256::digest(key.as_bytes()))
        ))
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            Self::Plain(token) | Self::Hashed(token) => token,
        }
    }

    /// The key a stored message's token (and headers) stand for; `None` for a message this host
    /// did not write and cannot name.
    pub(super) fn decode(token: &str, headers: Option<&HeaderMap>) -> Option<String> {
        let bytes = if token.starts_with("==") {
            let header = headers?.get(KEY_HEADER)?;
            URL_SAFE_NO_PAD.decode(header.as_str()).ok()?
        } else if let Some(encoded) = token.strip_prefix('=') {
            URL_SAFE_NO_PAD.decode(encoded).ok()?
        } else {
            return Some(token.to_string());
        };
        String::from_utf8(bytes).ok()
    }

    /// The header a write of `key` under this token carries, if any: a hashed token's key.
    pub(super) fn key_header(&self, key: &str) -> Option<String> {
        match self {
            Self::Plain(_) => None,
            Self::Hashed(_) => Some(URL_SAFE_NO_PAD.encode(key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_map_one_to_one_onto_what_nats_allows() {
        assert_eq!(nats_bucket_name("", "default"), "default");
        assert_eq!(nats_bucket_name("", "todo.v2"), "todo_2ev2");
        assert_eq!(nats_bucket_name("", "my_app"), "my__app");
        assert_eq!(nats_bucket_name("p-", "a-b"), "p-a-b");
        // `_2e` could be a dot or an underscore followed by "2e": escaping `_` keeps them apart.
        assert_ne!(nats_bucket_name("", "a.b"), nats_bucket_name("", "a_2eb"));
        for name in ["a.b", "a_2eb", "x__y", "ü", "-_.-"] {
            let mapped = nats_bucket_name("", name);
            assert!(
                mapped
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)),
                "{mapped}"
            );
        }
    }

    #[test]
    fn keys_are_stored_plain_encoded_or_hashed_and_decode_back() {
        assert_eq!(KeyToken::of("todo/12"), KeyToken::Plain("todo/12".into()));
        assert_eq!(
            KeyToken::of("meta/next-id"),
            KeyToken::Plain("meta/next-id".into())
        );
        for key in ["", "has space", "a.b", "=starts", "todo/ünïcødé ✓", "x*>"] {
            let token = KeyToken::of(key);
            let KeyToken::Plain(text) = &token else {
                panic!("{key:?} was hashed");
            };
            assert!(text.starts_with('=') && !text.starts_with("=="), "{text}");
            assert_eq!(KeyToken::decode(text, None).as_deref(), Some(key));
        }
        let long = format!("long/{}", "k".repeat(4000));
        let token = KeyToken::of(&long);
        assert!(matches!(token, KeyToken::Hashed(_)));
        assert!(token.as_str().len() <= MAX_KEY_TOKEN);
        // What a write of the key puts in its header is what decoding reads back.
        let mut headers = HeaderMap::new();
        headers.insert(
            KEY_HEADER,
            token.key_header(&long).expect("a hashed key's header"),
        );
        assert_eq!(
            KeyToken::decode(token.as_str(), Some(&headers)).as_deref(),
            Some(long.as_str())
        );
        assert_eq!(KeyToken::decode(token.as_str(), None), None);
        assert_eq!(
            KeyToken::of("=x").key_header("=x"),
            None,
            "a plain key needs no header"
        );
        // Every token is a valid NATS key: no dots, no wildcards, no spaces.
        for key in ["", "a b", &long, "todo/1", "ü"] {
            let token = KeyToken::of(key);
            assert!(
                token
                    .as_str()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b)),
                "{key:?}: {token:?}"
            );
        }
    }
}

//! The bucket's layout: the name of every key the guest reads or writes, and the JSON a todo key
//! holds. This is the one file that spells a key; the layers above name keys only through it.
//!
//! Inside the bucket [`BUCKET`]:
//! * `todo/<id>` ([`todo_key`]) → one [`TodoRecord`] as JSON. One key per todo, so concurrent
//!   creates never overwrite each other. The todo keys are the truth; everything else is derived
//!   from them.
//! * `meta/next-id` ([`NEXT_ID_KEY`]) → the id counter, only ever changed through `increment`: no
//!   read-modify-write, no duplicate ids, and an id is never reused after a delete. Its value is
//!   the highest id issued, so ids are dense apart from deleted ones.
//! * `fence/<level>/<n>` ([`fence_key`]) and `index/<level>/<n>` ([`summary_key`]) → the id index
//!   (`index.rs`): per range of ids, a fence counter and a summary of how many todos (and
//!   completed ones) it holds.
//! * `page/<n>` ([`page_key`]) → the todos of block `n` (ids `n·64 ..= n·64 + 63`) as one JSON
//!   value, with the fence it was taken at: what a list reads instead of the todo keys while that
//!   fence holds (`index.rs`).
//!
//! * accounts (`accounts.rs`, `session.rs`), only when the operator turns them on:
//!   `account/<name>` ([`account_key`]) → the account, its password hash included;
//!   `account-claim/<name>` ([`name_claim_key`]) → a counter, the first to make it 1 owns the name;
//!   `session/<sha256 of token>` ([`session_key`]) → the session's user and expiry (never the
//!   token); `limit/...` ([`login_attempts_key`], [`login_passes_key`], [`signups_key`]) → the
//!   counters of the abuse limits, one per window;
//!   `user/<name>/` ([`user_prefix`]) → that user's own list: every key above it again, under the
//!   prefix. The public list keeps the keys it always had, so an existing store needs no migration.
//!
//! The todo's JSON lives here, below the index, because the index reads todos to count them;
//! what a summary holds is the index's own business.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The bucket the todo component opens.
pub const BUCKET: &str = "default";
/// Prefix of todo keys.
pub const TODO_PREFIX: &str = "todo/";
/// The id counter's key.
pub const NEXT_ID_KEY: &str = "meta/next-id";

/// The key of todo `id`.
pub fn todo_key(id: u64) -> String {
    format!("{TODO_PREFIX}{id}")
}

/// The key of the fence of index node `n` of `level`.
pub fn fence_key(level: u8, n: u64) -> String {
    format!("fence/{level}/{n}")
}

/// The key of the summary of index node `n` of `level`.
pub fn summary_key(level: u8, n: u64) -> String {
    format!("index/{level}/{n}")
}

/// The key of the page of block `n`: its todos, kept beside its summary (`index.rs`).
pub fn page_key(n: u64) -> String {
    format!("page/{n}")
}

/// The prefix of every key of user `name`'s own list. Names hold no `/` (`accounts.rs` checks),
/// so no user's keys can reach the public list's or another user's.
pub fn user_prefix(name: &str) -> String {
    format!("user/{name}/")
}

/// The key of account `name`.
pub fn account_key(name: &str) -> String {
    format!("account/{name}")
}

/// The counter whose first increment claims user name `name`.
pub fn name_claim_key(name: &str) -> String {
    format!("account-claim/{name}")
}

/// The key of the session whose token hashes to `digest_hex`.
pub fn session_key(digest_hex: &str) -> String {
    format!("session/{digest_hex}")
}

/// The counter of sign-in attempts for `name` in window `window`.
pub fn login_attempts_key(name: &str, window: u64) -> String {
    format!("limit/login/{name}/{window}")
}

/// The counter of successful sign-ins for `name` in window `window`.
pub fn login_passes_key(name: &str, window: u64) -> String {
    format!("limit/login-ok/{name}/{window}")
}

/// The counter of sign-ups in minute `minute` (since the epoch).
pub fn signups_key(minute: u64) -> String {
    format!("limit/signup/{minute}")
}

/// A todo as the bucket holds it. Both APIs are views of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TodoRecord {
    pub id: u64,
    pub title: String,
    pub completed: bool,
    pub order: i64,
    /// Only the legacy API shows it (`desc`).
    #[serde(default)]
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The value todo key [`todo_key`]`(record.id)` holds.
pub fn encode(record: &TodoRecord) -> Result<Vec<u8>, ApiError> {
    // Strings, numbers and booleans always encode; were it ever to fail, nothing was written.
    serde_json::to_vec(record)
        .map_err(|err| ApiError::Store(format!("cannot encode todo {}: {err}", record.id)))
}

/// Decodes the value of todo key `key`.
pub fn decode(key: &str, bytes: &[u8]) -> Result<TodoRecord, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::Store(format!("the value of '{key}' is not a todo: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_spelled_as_stores_already_hold_them() {
        assert_eq!(BUCKET, "default");
        assert_eq!(todo_key(42), "todo/42");
        assert_eq!(NEXT_ID_KEY, "meta/next-id");
        assert_eq!(fence_key(3, 0), "fence/3/0");
        assert_eq!(summary_key(1, 17), "index/1/17");
        assert_eq!(user_prefix("ann"), "user/ann/");
        assert_eq!(account_key("ann"), "account/ann");
    }

    #[test]
    fn a_todo_encodes_as_camel_case_json_and_decodes_back() -> Result<(), ApiError> {
        let record = TodoRecord {
            id: 7,
            title: "t".into(),
            completed: true,
            order: -1,
            description: String::new(),
            created_at: "c".into(),
            updated_at: "u".into(),
        };
        let bytes = encode(&record)?;
        assert_eq!(
            bytes,
            br#"{"id":7,"title":"t","completed":true,"order":-1,"description":"","createdAt":"c","updatedAt":"u"}"#
        );
        assert_eq!(decode(&todo_key(7), &bytes)?, record);
        Ok(())
    }
}

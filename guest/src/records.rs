//! The todo records in the KV bucket: their layout, and the operations both APIs build on
//! (create, find, save, list, delete).
//!
//! Inside the bucket [`BUCKET`]:
//! * `todo/<id>` → one [`TodoRecord`] as JSON. One key per todo, so concurrent creates never
//!   overwrite each other.
//! * `meta/next-id` → the id counter, only ever changed through `increment`: no read-modify-write,
//!   no duplicate ids, and an id is never reused after a delete.
//!
//! # Batches follow list pages
//!
//! Hosts bound how many keys one batch call (`get_many`, `delete_many`) may name, and bound their
//! `list_keys` pages by the same limit. So this module never names more keys in one batch than
//! one `list_keys` page held: the todo keys of a page go into one batch call, whatever the host's
//! limit is, and the guest keeps no copy of it. Listing is two host calls per page.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::kv::Kv;
use crate::time::Timestamp;

/// The bucket the todo component opens.
pub const BUCKET: &str = "default";
/// Prefix of todo keys.
pub const TODO_PREFIX: &str = "todo/";
/// The id counter's key.
pub const NEXT_ID_KEY: &str = "meta/next-id";

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

/// What a new todo is made of; the rest comes from the id counter and the clock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewTodo {
    pub title: String,
    pub completed: bool,
    /// Defaults to the id, so todos keep their creation order.
    pub order: Option<i64>,
    pub description: String,
}

/// The key of todo `id`.
pub fn todo_key(id: u64) -> String {
    format!("{TODO_PREFIX}{id}")
}

/// Creates a todo with a fresh id.
pub fn create(kv: &dyn Kv, new: NewTodo, now: Timestamp) -> Result<TodoRecord, ApiError> {
    let id = kv.increment(NEXT_ID_KEY, 1)?;
    let stamp = now.to_rfc3339();
    let record = TodoRecord {
        id,
        title: new.title,
        completed: new.completed,
        order: new.order.unwrap_or(i64::try_from(id).unwrap_or(i64::MAX)),
        description: new.description,
        created_at: stamp.clone(),
        updated_at: stamp,
    };
    save(kv, &record)?;
    Ok(record)
}

/// Todo `id`, if it exists.
pub fn find(kv: &dyn Kv, id: u64) -> Result<Option<TodoRecord>, ApiError> {
    match kv.get(&todo_key(id))? {
        Some(bytes) => Ok(Some(decode(&todo_key(id), &bytes)?)),
        None => Ok(None),
    }
}

/// Todo `id`, or 404.
pub fn get(kv: &dyn Kv, id: u64) -> Result<TodoRecord, ApiError> {
    find(kv, id)?.ok_or_else(|| not_found(id))
}

/// The 404 for todo `id`.
pub fn not_found(id: u64) -> ApiError {
    ApiError::NotFound(format!("no todo with id {id}"))
}

/// Writes `record` under its key.
pub fn save(kv: &dyn Kv, record: &TodoRecord) -> Result<(), ApiError> {
    // Strings, numbers and booleans always encode; were it ever to fail, nothing was written.
    let bytes = serde_json::to_vec(record)
        .map_err(|err| ApiError::Store(format!("cannot encode todo {}: {err}", record.id)))?;
    kv.set(&todo_key(record.id), &bytes)?;
    Ok(())
}

/// Every todo, sorted by `order`, then `id`.
pub fn list(kv: &dyn Kv) -> Result<Vec<TodoRecord>, ApiError> {
    let mut todos = Vec::new();
    for_each_todo_page(kv, |keys| read_into(kv, &keys, &mut todos))?;
    sort(&mut todos);
    Ok(todos)
}

/// Deletes todo `id`; 404 when it does not exist.
pub fn delete(kv: &dyn Kv, id: u64) -> Result<(), ApiError> {
    let key = todo_key(id);
    if kv.get(&key)?.is_none() {
        return Err(not_found(id));
    }
    kv.delete(&key)?;
    Ok(())
}

/// Deletes every todo (the id counter stays: ids are never reused).
pub fn delete_all(kv: &dyn Kv) -> Result<(), ApiError> {
    for page in todo_key_pages(kv)? {
        kv.delete_many(&page)?;
    }
    Ok(())
}

/// Deletes the todos of `ids` that exist (the others are ignored), then answers every todo
/// left, sorted as [`list`] sorts them.
///
/// One listing serves both: the keys are found page by page, each page's doomed keys go in one
/// `delete_many`, and each page's other keys in one `get_many`.
pub fn delete_ids_then_list(kv: &dyn Kv, ids: &[u64]) -> Result<Vec<TodoRecord>, ApiError> {
    let doomed: BTreeSet<String> = ids.iter().map(|id| todo_key(*id)).collect();
    let pages: Vec<(Vec<String>, Vec<String>)> = todo_key_pages(kv)?
        .into_iter()
        .map(|page| page.into_iter().partition(|key| doomed.contains(key)))
        .collect();
    for (delete, _) in &pages {
        if !delete.is_empty() {
            kv.delete_many(delete)?;
        }
    }
    let mut todos = Vec::new();
    for (_, keep) in &pages {
        read_into(kv, keep, &mut todos)?;
    }
    sort(&mut todos);
    Ok(todos)
}

/// The todo keys of every `list_keys` page, one `Vec` per page that holds any.
///
/// Keys first, deletes after: deleting while paging could move the cursor past live keys.
fn todo_key_pages(kv: &dyn Kv) -> Result<Vec<Vec<String>>, ApiError> {
    let mut pages = Vec::new();
    for_each_todo_page(kv, |keys| {
        pages.push(keys);
        Ok(())
    })?;
    Ok(pages)
}

/// Calls `f` with the todo keys of each `list_keys` page that holds any, following the cursor to
/// the end. Each call's keys are few enough for one batch call: one page held them.
fn for_each_todo_page(
    kv: &dyn Kv,
    mut f: impl FnMut(Vec<String>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut cursor: Option<String> = None;
    loop {
        let page = kv.list_keys(cursor.as_deref())?;
        let keys: Vec<String> = page
            .keys
            .into_iter()
            .filter(|key| key.starts_with(TODO_PREFIX))
            .collect();
        if !keys.is_empty() {
            f(keys)?;
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// Reads the todos of `keys` (one page's worth) with one `get_many` into `todos`.
fn read_into(kv: &dyn Kv, keys: &[String], todos: &mut Vec<TodoRecord>) -> Result<(), ApiError> {
    if keys.is_empty() {
        return Ok(());
    }
    // A key listed a moment ago may have been deleted since: skip it rather than fail.
    for (key, bytes) in kv.get_many(keys)?.into_iter().flatten() {
        todos.push(decode(&key, &bytes)?);
    }
    Ok(())
}

fn sort(todos: &mut [TodoRecord]) {
    todos.sort_by_key(|todo| (todo.order, todo.id));
}

fn decode(key: &str, bytes: &[u8]) -> Result<TodoRecord, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::Store(format!("the value of '{key}' is not a todo: {err}")))
}

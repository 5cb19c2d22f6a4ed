//! The KV layout of the todo data, and the operations both APIs build on.
//!
//! Inside the bucket [`BUCKET`]:
//! * `todo/<id>` → one [`TodoRecord`] as JSON. One key per todo, so concurrent creates never
//!   overwrite each other.
//! * `meta/next-id` → the id counter, only ever changed through `increment`: no read-modify-write,
//!   no duplicate ids, and an id is never reused after a delete.
//!
//! Listing follows `list_keys` to the end, keeps the `todo/` keys and reads each page of them
//! with one `get_many`: two host calls per page, whatever the number of todos.

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
/// The most keys one batch call names: hosts bound batches (ours to 1000 by default).
pub const BATCH_KEYS: usize = 500;

/// A todo as stored. Both APIs are views of it.
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

/// What a new todo is made of; the rest comes from the store and the clock.
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
    let bytes = serde_json::to_vec(record)
        .map_err(|err| ApiError::Store(format!("cannot encode todo {}: {err}", record.id)))?;
    kv.set(&todo_key(record.id), &bytes)?;
    Ok(())
}

/// Every todo, sorted by `order`, then `id`.
pub fn list(kv: &dyn Kv) -> Result<Vec<TodoRecord>, ApiError> {
    let mut todos = Vec::new();
    for_each_todo_batch(kv, |keys| {
        // A key listed a moment ago may have been deleted since: skip it rather than fail.
        for (key, bytes) in kv.get_many(keys)?.into_iter().flatten() {
            todos.push(decode(&key, &bytes)?);
        }
        Ok(())
    })?;
    todos.sort_by_key(|todo| (todo.order, todo.id));
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
    // Keys first, deletes after: deleting while paging could move the cursor past live keys.
    let mut keys = Vec::new();
    for_each_todo_batch(kv, |batch| {
        keys.extend_from_slice(batch);
        Ok(())
    })?;
    delete_many(kv, &keys)
}

/// Deletes `keys`, in batches the host accepts.
pub fn delete_many(kv: &dyn Kv, keys: &[String]) -> Result<(), ApiError> {
    for batch in keys.chunks(BATCH_KEYS) {
        kv.delete_many(batch)?;
    }
    Ok(())
}

/// Calls `f` with the todo keys of each `list_keys` page, at most [`BATCH_KEYS`] at a time.
fn for_each_todo_batch(
    kv: &dyn Kv,
    mut f: impl FnMut(&[String]) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut cursor: Option<String> = None;
    loop {
        let page = kv.list_keys(cursor.as_deref())?;
        let keys: Vec<String> = page
            .keys
            .into_iter()
            .filter(|key| key.starts_with(TODO_PREFIX))
            .collect();
        for batch in keys.chunks(BATCH_KEYS) {
            f(batch)?;
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

fn decode(key: &str, bytes: &[u8]) -> Result<TodoRecord, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::Store(format!("stored value of '{key}' is not a todo: {err}")))
}

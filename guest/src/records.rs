//! The todo records in the KV bucket: the invariant that keeps them readable, and the operations
//! both APIs build on (create, find, update, page, delete). The keys they live under, and the
//! JSON of a todo, are [`crate::layout`]'s; the counts per range of ids are [`crate::index`]'s.
//!
//! # Reads cost the page
//!
//! Pages follow id order. A page is found by walking the index from the top (one summary per
//! 262,144 ids) down to the blocks of 64 ids that hold it, then read with one `get_many` of
//! exactly its todo keys: a handful of small reads plus the page, whatever the store holds.
//! Empty ranges, however many deleted ids they span, are passed over by their counts, so holes
//! cost nothing; `total` and the completed count are sums over the top. No listing ever calls
//! `list_keys` to find todos.
//!
//! # The invariant, and what a crash leaves
//!
//! **Every write to a todo key is fenced**: before it, `increment` the fences of its level-3,
//! level-2 and block nodes by 1 (started); after it, the same fences, innermost first, by 2³²
//! (finished). A summary is trusted only while its node's fence still reads the settled value
//! (started = finished) the summary was computed at; otherwise the reader recomputes it from the
//! level below and stores it for the next one. Hence, at every point between two KV calls:
//!
//! > a trusted summary counts exactly the todo keys in its range.
//!
//! What each step of each write leaves if the process dies right after it, and who copes:
//!
//! | endpoint | steps | a crash after a step leaves | later requests |
//! |---|---|---|---|
//! | `POST` (both APIs) | increment `meta/next-id`; start 3 fences; set `todo/<id>`; finish 3 fences | an id with no todo (a hole), and/or unsettled fences | skip the hole by its counts; recompute the unsettled nodes (at most 64 reads each) until [`index::STALE_WRITE`] has passed, then settle them |
//! | `PATCH`/`PUT` | get; start; set; finish | the old or the new todo, unsettled fences | as above |
//! | `DELETE /todos/{id}` | get; start; delete; finish | the todo or none, unsettled fences | as above; a repeated delete answers 404 or deletes it |
//! | `DELETE /todos`, legacy `DELETE` | per range: start; `delete_many`; finish | some todos deleted, the rest not | the rest is listed and counted as it is: the request may be repeated |
//! | reads | may set summaries | a summary, or none | a summary with an old fence is never trusted |
//!
//! Nothing is misread: a todo is listed if and only if its key exists, and counts come only from
//! summaries whose fence proves them current. Concurrent writers, on any number of hosts, need
//! nothing else: fences and ids only ever change by `increment`.
//!
//! # Batches
//!
//! A batch call (`get_many`, `set_many`, `delete_many`) names at most [`crate::kv::BATCH`] keys,
//! the guest's own unit; a host with a lower limit splits it, so the guest keeps no copy of any
//! host's limit. A batch is one round trip to the store: how many each route makes is
//! [`crate::trips`]'s claim.

use crate::error::ApiError;
use crate::index::{self, Node, Store};
use crate::kv::Kv;
use crate::layout::{self, NEXT_ID_KEY};
use crate::time::Timestamp;

// What callers of these operations name with them; the host's and the benches' seeding code
// finds them here.
pub use crate::layout::{BUCKET, TodoRecord, todo_key};

/// What a new todo is made of; the rest comes from the id counter and the clock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewTodo {
    pub title: String,
    pub completed: bool,
    /// Defaults to the id, so todos keep their creation order.
    pub order: Option<i64>,
    pub description: String,
}

/// Creates a todo with a fresh id: the id from the counter, then the todo key, fenced.
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
    index::fenced(kv, &index::path(id), || save(kv, &record))?;
    Ok(record)
}

/// Todo `id`, if it exists.
pub fn find(kv: &dyn Kv, id: u64) -> Result<Option<TodoRecord>, ApiError> {
    match kv.get(&todo_key(id))? {
        Some(bytes) => Ok(Some(layout::decode(&todo_key(id), &bytes)?)),
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

/// Writes `record` under its key, unfenced: only for callers that fence it ([`update`]).
fn save(kv: &dyn Kv, record: &TodoRecord) -> Result<(), ApiError> {
    kv.set(&todo_key(record.id), &layout::encode(record)?)?;
    Ok(())
}

/// Writes `record` under its key, fenced ([`index::fenced`]): how PATCH and PUT save.
pub fn update(kv: &dyn Kv, record: &TodoRecord) -> Result<(), ApiError> {
    index::fenced(kv, &index::path(record.id), || save(kv, record))
}

/// Deletes todo `id`; 404 when it does not exist.
pub fn delete(kv: &dyn Kv, id: u64) -> Result<(), ApiError> {
    let key = todo_key(id);
    if kv.get(&key)?.is_none() {
        return Err(not_found(id));
    }
    index::fenced(kv, &index::path(id), || Ok(kv.delete(&key)?))
}

/// Deletes every todo (the id counter stays: ids are never reused).
///
/// Walks the index: every level-3 node, then every level-2 node, that holds a todo; each
/// level-2 node's non-empty blocks are fenced and all their ids deleted in batches. Memory stays
/// bounded by one level-2 node (4096 keys), and todos created meanwhile in other blocks stay.
pub fn delete_all(kv: &dyn Kv, now: Timestamp) -> Result<(), ApiError> {
    let store = Store::open(kv, now)?;
    let top: Vec<Node> = (0..=Node::of(store.max_id(), index::LEVELS).n)
        .map(|n| Node {
            level: index::LEVELS,
            n,
        })
        .collect();
    let top_counts = store.counts(&top)?;
    for (l3, counts) in top.iter().zip(&top_counts) {
        let l2s: Vec<Node> = children_with_todos(*l3, counts);
        if l2s.is_empty() {
            continue;
        }
        let l2_counts = store.counts(&l2s)?;
        index::fenced(kv, &[*l3], || {
            for (l2, counts) in l2s.iter().zip(&l2_counts) {
                let blocks = children_with_todos(*l2, counts);
                let mut fences = vec![*l2];
                fences.extend(&blocks);
                // The blocks' pages go too: a page whose fence moved is never read, but it
                // need not stay behind in the store.
                let keys: Vec<String> = blocks
                    .iter()
                    .flat_map(|block| ids_of(*block))
                    .map(todo_key)
                    .chain(blocks.iter().map(|block| layout::page_key(block.n)))
                    .collect();
                index::fenced(kv, &fences, || store.delete_many(&keys))?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// The children of `node` that its counts say hold a todo.
fn children_with_todos(node: Node, counts: &index::Counts) -> Vec<Node> {
    (0..index::FANOUT)
        .filter(|c| counts.live[*c as usize] > 0)
        .map(|c| Node {
            level: node.level - 1,
            n: node.n * index::FANOUT + c,
        })
        .collect()
}

/// Every id a block covers (id 0 is never issued).
fn ids_of(block: Node) -> impl Iterator<Item = u64> {
    let first = block.n * index::FANOUT;
    (first..first + index::FANOUT).filter(|id| *id > 0)
}

/// Deletes the todos of `ids` that exist (the others are ignored). Reads them first (one batch
/// per page of keys) so that only nodes that change are fenced.
pub fn delete_ids(kv: &dyn Kv, ids: &[u64], now: Timestamp) -> Result<(), ApiError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let store = Store::open(kv, now)?;
    let keys: Vec<String> = ids.iter().map(|id| todo_key(*id)).collect();
    let doomed: Vec<(u64, String)> = ids
        .into_iter()
        .zip(keys.iter().cloned())
        .zip(store.get_many(&keys)?)
        .filter_map(|(pair, value)| value.map(|_| pair))
        .collect();
    if doomed.is_empty() {
        return Ok(());
    }
    let mut fences: Vec<Node> = doomed.iter().flat_map(|(id, _)| index::path(*id)).collect();
    // Outermost first, as `fenced` wants them; each node once.
    fences.sort_by_key(|node| (std::cmp::Reverse(node.level), node.n));
    fences.dedup();
    let keys: Vec<String> = doomed.into_iter().map(|(_, key)| key).collect();
    index::fenced(kv, &fences, || store.delete_many(&keys))
}

//! How many round trips to the store each route makes at most: the claim that
//! `guest/tests/pages.rs` holds the logic to in process and `tests/operate.rs` holds `todo-host`
//! to through its access log (`kv_calls`), on stores of 1,000 and 100,000 todos, and that
//! `bench/run.sh` reports beside each route's throughput.
//!
//! A round trip is one call to the store: the component is synchronous, so its calls follow one
//! another, and a batch call (`get_many`) is one trip however many keys it names. The bounds hold
//! on a store whose index summaries are current: the first read after a write recomputes the
//! summaries the write changed, and stores them for the reads after it.
//!
//! A read fetches the id counter, the first node of the index's top and the path down to the
//! page's first block in one batch (`index::Store::open_after`), then one batch per level the
//! page still needs, then its todos. A block whose summary was computed by a read of this
//! version also has a page (`page/<n>`, its todos) that comes with its summary, so such a list
//! needs no batch of todos: a small store's `GET /todos` is then one trip
//! (`guest/tests/pages.rs`). The bounds below are for stores without pages (as seeded by
//! `index::dense_entries`). Past id 262,143 the rest of the top costs one more batch,
//! so a deep `/api/rule` page of a store that large takes 5. A write is its fences around its one write
//! (`records.rs`): three started, the write, three finished; a create's id and a change's read
//! of the todo come first. Those are separate calls because `wasi:keyvalue` has no batched
//! `increment`: each fence is its own call.
//!
//! # Why a change cannot take 3
//!
//! `PATCH`, `PUT` and `DELETE /todos/{id}` need at least 4 calls under `wasi:keyvalue@0.2.0-draft`
//! with counts kept exact across crashes and concurrent hosts, whatever the index looks like:
//!
//! 1. **The read.** The todo is read first: the answer is 404 when it is missing, and `PATCH`
//!    and `PUT` keep the fields the body leaves out.
//! 2. **The write.**
//! 3. **A mark after it.** Counts that a read trusts without reading every todo need a key that
//!    every count-changing write changes after its data. Without that mark, a count computed
//!    just before the data lands stays trusted.
//! 4. **A mark before it.** If the writer dies between its data and its mark after, the second
//!    mark never comes. Only a mark written before the data tells a reader that a write may be
//!    in flight and the counts must be counted again.
//!
//! Marks 3 and 4 must be counters changed by `increment`. A key that is merely `set` cannot
//! count concurrent writers: one writer's "finished" hides another writer that is still in flight.
//! Neither can ride in a call with the write or the read, because the interface has no such call:
//! * `increment` names one key;
//! * `batch` has `get-many`, `set-many` and `delete-many`, and promises neither atomicity nor order
//!   ("the key-value pairs are not guaranteed to be set in the order they are provided");
//! * there is no compare-and-swap (draft2 has one, and only Spin serves draft2).
//!
//! So one level of fences gives 4 calls, and this three-level index gives 8. Fewer levels would
//! make reads cost the store's size: counts at a million todos would sum 15,625 block summaries.
//!
//! A create is different. Its id `increment` can serve as its mark before, so id, todo and one
//! counter of creates finished per block would be 3 calls. That design changes what the stored
//! index means: stores written before it have no such counters, and no call here can record a
//! one-time baseline for them safely. It is not built.

/// One route's bound. `target` may name `{mid}` (the middle id), `{middle}` (the middle page of
/// 20) and `{last}` (the last page of 20) of a store; [`RouteTrips::target_for`] fills them in.
#[derive(Debug, Clone, Copy)]
pub struct RouteTrips {
    pub method: &'static str,
    pub target: &'static str,
    pub body: Option<&'static str>,
    pub bound: usize,
}

impl RouteTrips {
    /// The target on a store of `size` dense todos (ids `1..=size`).
    pub fn target_for(&self, size: u64) -> String {
        self.target
            .replace("{mid}", &(size / 2).to_string())
            .replace("{middle}", &(size / 2 / 20).to_string())
            .replace("{last}", &(size / 20).to_string())
    }
}

/// The bound of every route, in an order that leaves each request something to act on.
pub const BOUNDS: &[RouteTrips] = &[
    route("GET", "/todos/7", None, 1),
    // The first page of a small store: the top and the first path came with the id counter.
    route("GET", "/todos?limit=10", None, 2),
    route("GET", "/todos?limit=10&after={mid}", None, 2),
    // A thousand todos span 16 blocks: one more batch for their summaries.
    route("GET", "/todos", None, 4),
    route("GET", "/api/rule", None, 2),
    route("GET", "/api/rule?current={middle}&pageSize=20", None, 4),
    route("GET", "/api/rule?current={last}&pageSize=20", None, 4),
    route("POST", "/todos", Some(r#"{"title":"t"}"#), 8),
    route("PATCH", "/todos/5", Some(r#"{"title":"u"}"#), 8),
    route("PATCH", "/todos/5", Some(r#"{"completed":true}"#), 8),
    route("PUT", "/todos/6", Some(r#"{"title":"v"}"#), 8),
    route("DELETE", "/todos/9", None, 8),
];

const fn route(
    method: &'static str,
    target: &'static str,
    body: Option<&'static str>,
    bound: usize,
) -> RouteTrips {
    RouteTrips {
        method,
        target,
        body,
        bound,
    }
}

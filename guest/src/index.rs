//! The id index: how many todos (and how many of them completed) each range of ids holds, so
//! that a page, a count or an offset costs the page, not the store.
//!
//! Ids come from one counter and are never reused, so todo `id` has a fixed place in a tree of id
//! ranges with a fan-out of [`FANOUT`]:
//!
//! | level | node `n` covers ids | its summary counts, per child |
//! |---|---|---|
//! | 1 (block) | `n·64 ..= n·64 + 63` | the todo ids themselves (0 or 1) |
//! | 2 | `n·4096 ..` (64 blocks) | live and completed todos of each block |
//! | 3 | `n·262144 ..` (64 level-2 nodes) | live and completed todos of each level-2 node |
//!
//! The top of the tree is the list of level-3 nodes up to the highest id issued: 4 at a million
//! todos. Every node has two keys (spelled in [`crate::layout`]):
//!
//! * `fence/<level>/<n>`: a counter, only ever changed by `increment`. A write to a todo key in
//!   the node's range adds 1 before it ("started") and 2³² after it ("finished"), so the low 32
//!   bits count writes started and the high bits writes finished. Started = finished means no
//!   write is in flight.
//! * `index/<level>/<n>`: a [`Summary`]: the children's counts and the fence value they were
//!   computed at.
//!
//! A block also has `page/<n>`: a [`Page`], its todos themselves as they were when its summary was
//! computed, with the same fence value. A list reads the pages of its blocks instead of the todo
//! keys, so the page of a small store comes in the first batch, with the id counter.
//!
//! # Why a summary can be trusted
//!
//! A summary is computed by a *reader*: it reads the fence (value `v`, with started =
//! finished), then the data below (todo keys, or the children's summaries), and stores the counts
//! with `v`. A later reader trusts it only while the fence still reads `v`. Any change the
//! computation missed happened after its data read, so its writer's "finished" increment came
//! after that too, and its "started" increment came after the fence read (had it come before,
//! started would have exceeded finished at `v`): the fence no longer reads `v`. Writers fence the
//! outer levels first and finish them last, so a settled parent implies settled children.
//! A page is trusted by the same rule: every write to a todo key moves its block's fence, so
//! while the fence reads the page's value, the todo keys hold what the page holds.
//! Nothing here needs a transaction or compare-and-swap: only `increment`, which every backend
//! and both drafts of `wasi:keyvalue` make atomic, across any number of host processes.
//!
//! A write that dies between its two increments (a crash, a killed instance) leaves its fences
//! unsettled. Readers then recompute those nodes from the level below on every read (at most 64
//! todos, or 64 child summaries, per node: slower, never wrong) until [`STALE_WRITE`] has passed
//! with the fence unchanged; then a reader finishes the dead write on its behalf, and the node is
//! summarized again.
//!
//! # Batches
//!
//! A batch is one round trip, so reads go level by level, breadth first: a request reads the id
//! counter together with the first level-3 node and the path down to the page's first block
//! ([`Store::open_after`]), then at most one batch per level below, then one of todos. The
//! blocks a page lists come with their pages (the first block's in the first batch), and where
//! those are current the batch of todos is not needed. Pages are read only where they fit the
//! batch that the fences and summaries take anyway; a recomputation of the level above reads
//! only its blocks' counts. One batch call names at most
//! [`BATCH`] keys (a page of 1,000 todos). That is the guest's own bound, not a copy of a
//! host's: a host whose limit is lower splits a batch itself (`todo-host` does,
//! `--kv-max-batch-keys`), so the guest needs to know nothing of it, and asks the store nothing
//! to learn it.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::kv::{BATCH, Kv};
use crate::layout::{self, NEXT_ID_KEY, TodoRecord};
use crate::time::Timestamp;

/// Children per node: 64, so a block's ids fit one `u64` of bits.
pub const FANOUT: u64 = 1 << FANOUT_BITS;
const FANOUT_BITS: u32 = 6;
// A node's children (their fences and summaries) fit one batch call ("Batches").
const _: () = assert!(2 * FANOUT as usize <= BATCH);
/// The deepest level: level-3 nodes are the top of the tree.
pub const LEVELS: u8 = 3;
/// How long a fence may stay unsettled, unchanged, before readers take its writer for dead.
/// Far longer than any request may run on a sane host (the default deadline is 10 s).
pub const STALE_WRITE_SECS: u64 = 600;
/// [`STALE_WRITE_SECS`], for docs.
pub const STALE_WRITE: std::time::Duration = std::time::Duration::from_secs(STALE_WRITE_SECS);

/// "Started" is the low half of a fence; "finished" the high half.
const FINISHED: u64 = 1 << 32;

/// What `index/<level>/<n>` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The fence value the counts were computed at; `None`: no counts to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<u64>,
    /// Live todos per child, trailing zeros left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live: Vec<u64>,
    /// Completed todos per child, trailing zeros left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<u64>,
    /// `[fence, seconds]`: the unsettled fence value a reader first saw, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<[u64; 2]>,
}

/// What `page/<n>` holds: the todos of block `n` when the block's fence read `fence`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page {
    pub fence: u64,
    pub todos: Vec<TodoRecord>,
}

/// The largest page stored, in bytes: past it, a page costs more to read than the few todos a
/// list wants from it, and the block's todos are read from their own keys. A host whose values
/// are smaller (`Kv::value_limit`) gets pages no larger than its limit.
pub const PAGE_MAX_BYTES: usize = 16 * 1024;

/// The most bytes of pages one request stores. A read that recomputes a thousand blocks at once
/// (after a delete spread across the whole store) keeps pages for the first few only: the
/// component's memory holds every byte a request allocates until it ends, and a page only saves
/// reads. Blocks recomputed past this get theirs at their next recomputation.
pub const PAGES_PER_REQUEST_BYTES: usize = 256 * 1024;

/// The counts of one node's children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub live: [u64; FANOUT as usize],
    pub done: [u64; FANOUT as usize],
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            live: [0; FANOUT as usize],
            done: [0; FANOUT as usize],
        }
    }
}

impl Counts {
    fn total(&self) -> (u64, u64) {
        (self.live.iter().sum(), self.done.iter().sum())
    }

    fn from_summary(summary: &Summary) -> Self {
        let mut counts = Counts::default();
        for (slot, value) in counts.live.iter_mut().zip(&summary.live) {
            *slot = *value;
        }
        for (slot, value) in counts.done.iter_mut().zip(&summary.done) {
            *slot = *value;
        }
        counts
    }

    fn to_summary(&self, fence: Option<u64>) -> Summary {
        let trim = |values: &[u64]| {
            let end = values.iter().rposition(|v| *v != 0).map_or(0, |i| i + 1);
            values[..end].to_vec()
        };
        Summary {
            fence,
            live: trim(&self.live),
            done: trim(&self.done),
            stuck: None,
        }
    }
}

/// A node of the tree: `level` 1..=3, or 0 for a single todo id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node {
    pub level: u8,
    pub n: u64,
}

impl Node {
    /// The node of `level` that holds `id`.
    pub fn of(id: u64, level: u8) -> Self {
        Node {
            level,
            n: id >> (FANOUT_BITS * u32::from(level)),
        }
    }

    /// The first id of its range.
    fn first(self) -> u64 {
        self.n << (FANOUT_BITS * u32::from(self.level))
    }

    /// The last id of its range.
    fn last(self) -> u64 {
        self.first() + ((1u64 << (FANOUT_BITS * u32::from(self.level))) - 1)
    }

    fn child(self, c: u64) -> Node {
        Node {
            level: self.level - 1,
            n: self.n * FANOUT + c,
        }
    }

    fn fence_key(self) -> String {
        layout::fence_key(self.level, self.n)
    }

    fn summary_key(self) -> String {
        layout::summary_key(self.level, self.n)
    }

    /// The ids of this block that may have been issued by `max_id` (id 0 never is).
    fn issued_ids(self, max_id: u64) -> std::ops::RangeInclusive<u64> {
        self.first().max(1)..=self.last().min(max_id)
    }
}

/// The nodes a write to todo `id` fences, outermost first.
pub fn path(id: u64) -> [Node; LEVELS as usize] {
    [Node::of(id, 3), Node::of(id, 2), Node::of(id, 1)]
}

/// Counts started and finished writes on the fences of `nodes`, around `write`. `nodes` must
/// be ordered outermost first ([`path`]); they are finished in the reverse order.
pub fn fenced<R>(
    kv: &dyn Kv,
    nodes: &[Node],
    write: impl FnOnce() -> Result<R, ApiError>,
) -> Result<R, ApiError> {
    for node in nodes {
        kv.increment(&node.fence_key(), 1)?;
    }
    let result = write()?;
    for node in nodes.iter().rev() {
        kv.increment(&node.fence_key(), FINISHED)?;
    }
    Ok(result)
}

fn settled(fence: u64) -> bool {
    fence & (FINISHED - 1) == fence >> 32
}

/// The highest id the counter has issued (0 before the first), from the value of
/// [`NEXT_ID_KEY`].
fn max_id(value: Option<&[u8]>) -> Result<u64, ApiError> {
    match value {
        None => Ok(0),
        Some(bytes) => parse_counter(bytes)
            .ok_or_else(|| ApiError::Store(format!("'{NEXT_ID_KEY}' does not hold a counter"))),
    }
}

/// A counter's value as `get` returns it. `wasi:keyvalue` leaves a counter's bytes to the host,
/// and hosts differ: decimal text (todo-host, Redis, wasmtime, our Node host), a `u64` little-
/// endian (wasmCloud's in-memory store) or big-endian (wasmCloud's NATS store). Text is read as
/// text; 8 other bytes as whichever byte order gives the smaller value, which is the right one
/// for every counter here (ids and fences stay far below 2^56, so their top byte is zero, and
/// read the other way round that zero becomes the low byte of a much larger number).
pub fn parse_counter(bytes: &[u8]) -> Option<u64> {
    if let Some(value) = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
    {
        return Some(value);
    }
    let raw: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_le_bytes(raw).min(u64::from_be_bytes(raw)))
}

/// One request's view of the store: the highest id, and the counts read so far.
pub struct Store<'a> {
    kv: &'a dyn Kv,
    now: Timestamp,
    max_id: u64,
    counts: RefCell<HashMap<Node, Counts>>,
    /// Fences and summaries read with the id counter, in the same batch: each is used once, to
    /// trust its node's summary ([`Store::open`]).
    prefetched: RefCell<Vec<Prefetched>>,
    /// Summaries recomputed, to store in one batch ([`Store::flush`]).
    recomputed: RefCell<Vec<(String, Vec<u8>)>>,
    /// Pages of the blocks recomputed, stored with the summaries.
    pages: RefCell<Vec<(String, Vec<u8>)>>,
    /// The bytes of the pages built, kept or not, held to [`PAGES_PER_REQUEST_BYTES`].
    page_bytes: std::cell::Cell<usize>,
    /// The todos known so far, by id: read from their keys or from a trusted page; `None` where
    /// there was no todo. Boxed, so that the many ids a recomputation finds empty cost a
    /// pointer each.
    read: RefCell<HashMap<u64, Option<Box<TodoRecord>>>>,
}

/// Level-3 nodes whose fence and summary come with the id counter: the whole top of the tree up
/// to id 262,143, so that a count of such a store costs no trip of its own. A larger store reads
/// the rest of the top in one more batch. Not more: on NATS every key of a batch is a request of
/// its own to the stream leader, so keys read cost there even when they are missing (three more
/// level-3 nodes, six keys on every list, made `GET /todos` 16-22% slower on NATS in
/// `bench/run.sh`'s section floor).
const TOP_PREFETCH: u64 = 1;

/// A node's fence and summary (and a block's page), as [`Store::open_after`] read them.
struct Prefetched {
    node: Node,
    fence: Option<Vec<u8>>,
    summary: Option<Vec<u8>>,
    page: Option<Vec<u8>>,
}

/// What the fence and summary of a node, read together, say.
enum Trust {
    /// The summary is current.
    Current(Summary),
    /// It is not: the fence, and the summary to replace.
    Stale(u64, Summary),
}

/// A page of ids, and whether more follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPage {
    pub ids: Vec<u64>,
    pub more: bool,
}

impl<'a> Store<'a> {
    /// Opens the index of `kv` for reads from the first id: [`Store::open_after`] 0.
    pub fn open(kv: &'a dyn Kv, now: Timestamp) -> Result<Self, ApiError> {
        Self::open_after(kv, now, 0)
    }

    /// Opens the index of `kv` for reads of the ids after `after`, in one round trip: the id
    /// counter, and in the same batch the fences and summaries a page is likely to need first
    /// (the first level-3 node, and the nodes of each level that hold `after`). On a store whose
    /// summaries are current, a page of one block then needs one more trip (its todos), and any
    /// page at most three more: one per level below the top, one of todos; past id 262,143, one
    /// more for the rest of the top.
    ///
    /// The counter and the fences come from one batch, in no known order, so these fences only
    /// ever *trust* a summary (a summary matching its fence is current, whenever it was read);
    /// a node to recompute is read again, after the counter (see "Why a summary can be trusted").
    pub fn open_after(kv: &'a dyn Kv, now: Timestamp, after: u64) -> Result<Self, ApiError> {
        let mut nodes: Vec<Node> = (0..TOP_PREFETCH)
            .map(|n| Node { level: LEVELS, n })
            .collect();
        for level in (1..LEVELS).rev() {
            nodes.push(Node::of(after, level));
        }
        if !nodes.contains(&Node::of(after, LEVELS)) {
            nodes.push(Node::of(after, LEVELS));
        }
        let first_block = Node::of(after, 1);
        let mut keys = vec![NEXT_ID_KEY.to_string()];
        keys.extend(
            nodes
                .iter()
                .flat_map(|node| [node.fence_key(), node.summary_key()]),
        );
        keys.push(layout::page_key(first_block.n));
        let mut values = kv
            .get_many(&keys)?
            .into_iter()
            .map(|found| found.map(|(_, value)| value));
        let max_id = max_id(values.next().flatten().as_deref())?;
        let mut prefetched: Vec<Prefetched> = nodes
            .into_iter()
            .map(|node| Prefetched {
                node,
                fence: values.next().flatten(),
                summary: values.next().flatten(),
                page: None,
            })
            .collect();
        if let Some(block) = prefetched.iter_mut().find(|p| p.node == first_block) {
            block.page = values.next().flatten();
        }
        Ok(Self {
            kv,
            now,
            max_id,
            counts: RefCell::new(HashMap::new()),
            prefetched: RefCell::new(prefetched),
            recomputed: RefCell::new(Vec::new()),
            pages: RefCell::new(Vec::new()),
            page_bytes: std::cell::Cell::new(0),
            read: RefCell::new(HashMap::new()),
        })
    }

    /// Stores the summaries this view recomputed, in one batch, for the requests after it; a
    /// view that is not flushed leaves them to be recomputed again (slower, never wrong: a
    /// summary is trusted by its fence, whenever it was written).
    ///
    /// Pages go in the same batch. Should that batch fail, the summaries are stored again
    /// without them: a page only saves reads, and a store that refuses it must still count.
    pub fn flush(&self) -> Result<(), ApiError> {
        let mut entries = self.recomputed.take();
        let summaries = entries.len();
        entries.extend(self.pages.take());
        self.store_entries(&entries).or_else(|err| {
            if summaries == entries.len() {
                return Err(err);
            }
            self.store_entries(&entries[..summaries])
        })
    }

    fn store_entries(&self, entries: &[(String, Vec<u8>)]) -> Result<(), ApiError> {
        for chunk in entries.chunks(BATCH) {
            self.kv.set_many(chunk)?;
        }
        Ok(())
    }

    /// The highest id issued when this view was opened.
    pub fn max_id(&self) -> u64 {
        self.max_id
    }

    /// `get_many` in batches of at most [`BATCH`] keys.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, ApiError> {
        let mut values = Vec::with_capacity(keys.len());
        if keys.len() == 1 {
            values.push(self.kv.get(&keys[0])?);
            return Ok(values);
        }
        for chunk in keys.chunks(BATCH) {
            values.extend(
                self.kv
                    .get_many(chunk)?
                    .into_iter()
                    .map(|found| found.map(|(_, value)| value)),
            );
        }
        Ok(values)
    }

    /// `delete_many` in batches of at most [`BATCH`] keys.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), ApiError> {
        if keys.is_empty() {
            return Ok(());
        }
        for chunk in keys.chunks(BATCH) {
            self.kv.delete_many(chunk)?;
        }
        Ok(())
    }

    /// The todos of `ids` that exist, in the order of `ids`.
    pub fn records(&self, ids: &[u64]) -> Result<Vec<TodoRecord>, ApiError> {
        if self.read.borrow().is_empty() {
            // Nothing read before: straight from one batch, nothing kept.
            let keys: Vec<String> = ids.iter().map(|id| layout::todo_key(*id)).collect();
            let values = self.get_many(&keys)?;
            return decode_found(&keys, values.iter().map(Option::as_deref));
        }
        self.fetch(ids, false)?;
        let read = self.read.borrow();
        Ok(ids
            .iter()
            .filter_map(|id| read.get(id).and_then(|todo| todo.as_deref().cloned()))
            .collect())
    }

    /// Reads the todos of `ids` into this view: those it does not know yet, or (`fresh`) all.
    fn fetch(&self, ids: &[u64], fresh: bool) -> Result<(), ApiError> {
        // Todos this view already read (recomputing a block) are not read again for a page: the
        // page's ids came from the counts those very reads gave.
        let missing: Vec<usize> = {
            let read = self.read.borrow();
            (0..ids.len())
                .filter(|i| fresh || !read.contains_key(&ids[*i]))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = missing.iter().map(|i| layout::todo_key(ids[*i])).collect();
        let values = self.get_many(&keys)?;
        let mut read = self.read.borrow_mut();
        for ((i, key), value) in missing.iter().zip(&keys).zip(values) {
            let record = value.map(|bytes| layout::decode(key, &bytes)).transpose()?;
            read.insert(ids[*i], record.map(Box::new));
        }
        Ok(())
    }

    /// Takes the todos of block `node` from `page` when the page was stored at `fence`, the
    /// block's current fence; a page from any other fence is ignored.
    fn adopt_page(&self, node: Node, fence: u64, page: &[u8]) {
        // A page that does not parse is as good as none: the todo keys are read instead.
        let Ok(page) = serde_json::from_slice::<Page>(page) else {
            return;
        };
        if page.fence != fence {
            return;
        }
        let ids = node.issued_ids(self.max_id);
        let mut read = self.read.borrow_mut();
        for todo in page.todos.into_iter().filter(|todo| ids.contains(&todo.id)) {
            read.entry(todo.id).or_insert(Some(Box::new(todo)));
        }
        // The ids of the block the page does not hold have no todo.
        for id in ids {
            read.entry(id).or_insert(None);
        }
    }

    /// The page of block `node`, just recomputed at settled `fence` from its todo keys, for
    /// [`Store::flush`] to store; none when it would be larger than a page may be.
    fn keep_page(&self, node: Node, fence: u64) -> Result<(), ApiError> {
        if self.page_bytes.get() >= PAGES_PER_REQUEST_BYTES {
            return Ok(());
        }
        let page = {
            let read = self.read.borrow();
            Page {
                fence,
                todos: node
                    .issued_ids(self.max_id)
                    .filter_map(|id| read.get(&id).and_then(|todo| todo.as_deref().cloned()))
                    .collect(),
            }
        };
        let bytes = serde_json::to_vec(&page)
            .map_err(|err| ApiError::Store(format!("cannot encode the page of a block: {err}")))?;
        let limit = self
            .kv
            .value_limit()
            .map_or(PAGE_MAX_BYTES, |limit| limit.min(PAGE_MAX_BYTES));
        // Charged whether kept or not: a page built and dropped stays in memory just the same.
        let spent = self.page_bytes.get() + bytes.len();
        self.page_bytes.set(spent);
        if bytes.len() <= limit && spent <= PAGES_PER_REQUEST_BYTES {
            self.pages
                .borrow_mut()
                .push((layout::page_key(node.n), bytes));
        }
        Ok(())
    }

    /// The level-3 nodes up to the highest id: the top of the tree.
    fn top(&self) -> Vec<Node> {
        (0..=Node::of(self.max_id, LEVELS).n)
            .map(|n| Node { level: LEVELS, n })
            .collect()
    }

    /// Every todo, and every completed one: a handful of reads, however many there are.
    pub fn totals(&self) -> Result<(u64, u64), ApiError> {
        let top = self.top();
        self.ensure_counts(&top)?;
        let known = self.counts.borrow();
        Ok(top.iter().fold((0, 0), |(live, done), node| {
            let (l, d) = known[node].total();
            (live + l, done + d)
        }))
    }

    /// Up to `limit` ids in ascending order: those after id `after`, less the first `skip` of
    /// them; `more` when others follow.
    ///
    /// Level by level, breadth first: at each level, the nodes the page needs are chosen by
    /// their counts, and their own counts read in one batch; so a page costs one trip per level
    /// below the top at most, however many nodes it spans. The nodes that hold `after` itself
    /// (where only some ids follow it) are counted first, along `after`'s path, which
    /// [`Store::open_after`] has already read.
    pub fn page(&self, after: u64, skip: u64, limit: usize) -> Result<IdPage, ApiError> {
        let top = self.top();
        self.ensure_counts(&top)?;
        let mut candidates: Vec<(Node, u64)> = {
            let known = self.counts.borrow();
            top.iter()
                .map(|node| (*node, known[node].total().0))
                .collect()
        };
        let want = limit.saturating_add(1) as u64;
        let mut skip = skip;
        loop {
            let mut chosen = Vec::new();
            let mut need = want;
            for (node, live) in candidates {
                let following = self.live_after(node, live, after)?;
                if following == 0 {
                    continue;
                }
                // The skip is spent on the first nodes; what is left of it falls inside the
                // first node chosen, and goes down with it.
                if chosen.is_empty() && skip >= following {
                    skip -= following;
                    continue;
                }
                let gives = if chosen.is_empty() {
                    following - skip
                } else {
                    following
                };
                chosen.push(node);
                need = need.saturating_sub(gives);
                if need == 0 {
                    break;
                }
            }
            let Some(first) = chosen.first() else {
                return Ok(IdPage {
                    ids: Vec::new(),
                    more: false,
                });
            };
            if first.level == 0 {
                let mut ids: Vec<u64> = chosen.iter().map(|node| node.n).collect();
                let more = ids.len() > limit;
                ids.truncate(limit);
                return Ok(IdPage { ids, more });
            }
            self.ensure_counts(&chosen)?;
            let known = self.counts.borrow();
            candidates = chosen
                .iter()
                .flat_map(|node| {
                    let live = &known[node].live;
                    (0..FANOUT).map(move |c| (node.child(c), live[c as usize]))
                })
                .collect();
        }
    }

    /// How many of the `live` ids under `node` are greater than `after`.
    fn live_after(&self, node: Node, live: u64, after: u64) -> Result<u64, ApiError> {
        if node.last() <= after {
            return Ok(0);
        }
        // Ids start at 1: node 0 holds none at or below `after` = 0.
        if node.first().max(1) > after || node.level == 0 {
            return Ok(live);
        }
        // `node` holds `after`: the children after the one that holds it count whole, and that
        // one is counted the same way, down `after`'s path.
        self.ensure_counts(&[node])?;
        let c = (after - node.first()) >> (FANOUT_BITS * u32::from(node.level - 1));
        let (straddler, later) = {
            let known = self.counts.borrow();
            let live = &known[&node].live;
            (live[c as usize], live[c as usize + 1..].iter().sum::<u64>())
        };
        Ok(later + self.live_after(node.child(c), straddler, after)?)
    }

    /// The counts of `nodes`' children, each from a summary that can be trusted, or computed
    /// afresh from the level below (and stored for the next reader).
    pub fn counts(&self, nodes: &[Node]) -> Result<Vec<Counts>, ApiError> {
        self.ensure_counts(nodes)?;
        let known = self.counts.borrow();
        Ok(nodes.iter().map(|node| known[node].clone()).collect())
    }

    /// Makes sure the counts of `nodes`' children are known ([`Store::counts`]), without
    /// copying them out.
    fn ensure_counts(&self, nodes: &[Node]) -> Result<(), ApiError> {
        let missing: Vec<Node> = {
            let known = self.counts.borrow();
            nodes
                .iter()
                .filter(|node| !known.contains_key(node))
                .copied()
                .collect()
        };
        if !missing.is_empty() {
            let computed = self.load_prefetched(&missing)?;
            self.counts
                .borrow_mut()
                .extend(missing.into_iter().zip(computed));
        }
        Ok(())
    }

    /// What the fence and summary of `node`, read as `fence` and `summary`, say.
    fn trust(
        &self,
        node: Node,
        fence: Option<&[u8]>,
        summary: Option<&[u8]>,
    ) -> Result<Trust, ApiError> {
        let fence = match fence {
            None => 0,
            Some(bytes) => parse_fence(&node.fence_key(), bytes)?,
        };
        let summary: Summary = match summary {
            None => Summary::default(),
            Some(bytes) => serde_json::from_slice(bytes).map_err(|err| {
                ApiError::Store(format!(
                    "'{}' is not an index summary: {err}",
                    node.summary_key()
                ))
            })?,
        };
        if settled(fence) && summary.fence == Some(fence) {
            return Ok(Trust::Current(summary));
        }
        Ok(Trust::Stale(fence, summary))
    }

    /// The counts of `nodes`' children: from prefetched summaries that are current, else from
    /// [`Store::load`].
    fn load_prefetched(&self, nodes: &[Node]) -> Result<Vec<Counts>, ApiError> {
        let mut result: Vec<Option<Counts>> = vec![None; nodes.len()];
        let mut rest = Vec::new();
        {
            let mut prefetched = self.prefetched.borrow_mut();
            for (i, node) in nodes.iter().enumerate() {
                let found = prefetched
                    .iter()
                    .position(|p| p.node == *node)
                    .map(|at| prefetched.swap_remove(at));
                if node.first() > self.max_id {
                    result[i] = Some(Counts::default());
                    continue;
                }
                if let Some(found) = found
                    && let Trust::Current(summary) =
                        self.trust(*node, found.fence.as_deref(), found.summary.as_deref())?
                {
                    if let (Some(page), Some(fence)) = (&found.page, summary.fence) {
                        self.adopt_page(*node, fence, page);
                    }
                    result[i] = Some(Counts::from_summary(&summary));
                    continue;
                }
                rest.push(i);
            }
        }
        if !rest.is_empty() {
            let missing: Vec<Node> = rest.iter().map(|i| nodes[*i]).collect();
            for (i, counts) in rest.into_iter().zip(self.load(&missing, true)?) {
                result[i] = Some(counts);
            }
        }
        Ok(result.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Reads the fences and summaries of `nodes`; recomputes the ones that cannot be trusted.
    /// `with_pages`: blocks come with their pages, for a list that will want their todos (not
    /// for a recomputation of the level above, which wants only their counts).
    fn load(&self, nodes: &[Node], with_pages: bool) -> Result<Vec<Counts>, ApiError> {
        // Pages only where they fit the batch the fences and summaries take anyway: a sparse
        // store's page may span up to a thousand blocks, and a page read must not add a trip.
        let blocks = nodes.iter().filter(|node| node.level == 1).count();
        let with_pages = with_pages
            && (2 * nodes.len() + blocks).div_ceil(BATCH) == (2 * nodes.len()).div_ceil(BATCH);
        let paged = |node: &Node| with_pages && node.level == 1;
        let mut keys: Vec<String> = nodes
            .iter()
            .flat_map(|node| [node.fence_key(), node.summary_key()])
            .collect();
        keys.extend(
            nodes
                .iter()
                .filter(|node| paged(node))
                .map(|node| layout::page_key(node.n)),
        );
        let values = self.get_many(&keys)?;
        let mut pages = values[2 * nodes.len()..].iter();
        let mut result: Vec<Option<Counts>> = vec![None; nodes.len()];
        // Nodes to recompute: index, the fence read before the data, and the summary to store
        // afterwards (with counts filled in when the fence was settled).
        let mut stale: Vec<(usize, u64, Summary)> = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if node.first() > self.max_id {
                result[i] = Some(Counts::default());
                continue;
            }
            let page = if paged(node) { pages.next() } else { None };
            match self.trust(
                *node,
                values[2 * i].as_deref(),
                values[2 * i + 1].as_deref(),
            )? {
                Trust::Current(summary) => {
                    if let (Some(Some(page)), Some(fence)) = (page, summary.fence) {
                        self.adopt_page(*node, fence, page);
                    }
                    result[i] = Some(Counts::from_summary(&summary));
                }
                Trust::Stale(fence, summary) => {
                    let fence = self.settle(*node, fence, &summary)?;
                    stale.push((i, fence, summary));
                }
            }
        }
        if !stale.is_empty() {
            let recompute: Vec<Node> = stale.iter().map(|(i, _, _)| nodes[*i]).collect();
            let computed = self.compute(&recompute)?;
            for ((i, fence, old), counts) in stale.into_iter().zip(computed) {
                let summary = if settled(fence) {
                    counts.to_summary(Some(fence))
                } else {
                    // A write is in flight, or died: note when this fence value was first seen.
                    let since = match old.stuck {
                        Some([seen, since]) if seen == fence => since,
                        _ => self.now.seconds,
                    };
                    Summary {
                        stuck: Some([fence, since]),
                        ..Summary::default()
                    }
                };
                // A range nothing was ever fenced in and nothing is in: nothing worth storing
                // (and a read of an empty store writes nothing).
                let empty = fence == 0 && counts == Counts::default();
                if summary != old && !empty {
                    let bytes = serde_json::to_vec(&summary).map_err(|err| {
                        ApiError::Store(format!("cannot encode an index summary: {err}"))
                    })?;
                    self.recomputed
                        .borrow_mut()
                        .push((nodes[i].summary_key(), bytes));
                }
                if settled(fence) && !empty && nodes[i].level == 1 {
                    self.keep_page(nodes[i], fence)?;
                }
                result[i] = Some(counts);
            }
        }
        Ok(result.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// The fence of `node` to compute at: `fence` itself, unless it has been unsettled and
    /// unchanged for [`STALE_WRITE`]: then its writers are taken for dead and their writes
    /// finished on their behalf.
    fn settle(&self, node: Node, fence: u64, summary: &Summary) -> Result<u64, ApiError> {
        if settled(fence) {
            return Ok(fence);
        }
        match summary.stuck {
            Some([seen, since])
                if seen == fence && self.now.seconds.saturating_sub(since) >= STALE_WRITE_SECS =>
            {
                let started = fence & (FINISHED - 1);
                let finished = fence >> 32;
                let missing = started.saturating_sub(finished);
                Ok(self
                    .kv
                    .increment(&node.fence_key(), missing.saturating_mul(FINISHED))?)
            }
            _ => Ok(fence),
        }
    }

    /// The children counts of `nodes`, from the level below.
    fn compute(&self, nodes: &[Node]) -> Result<Vec<Counts>, ApiError> {
        let mut result = vec![Counts::default(); nodes.len()];
        if nodes.iter().all(|node| node.level == 1) {
            let ids: Vec<u64> = nodes
                .iter()
                .flat_map(|node| (0..FANOUT).map(move |c| node.child(c).n))
                .filter(|id| *id >= 1 && *id <= self.max_id)
                .collect();
            // Into this view's todos only: a copy handed back would stay in the instance's
            // memory until the request ends, and a recomputation may span thousands of blocks.
            self.fetch(&ids, true)?;
            let read = self.read.borrow();
            for id in &ids {
                let Some(Some(todo)) = read.get(id) else {
                    continue;
                };
                let i = nodes
                    .iter()
                    .position(|node| *node == Node::of(todo.id, 1))
                    .unwrap_or_default();
                let c = (todo.id % FANOUT) as usize;
                result[i].live[c] = 1;
                result[i].done[c] = u64::from(todo.completed);
            }
            return Ok(result);
        }
        let children: Vec<Node> = nodes
            .iter()
            .flat_map(|node| (0..FANOUT).map(move |c| node.child(c)))
            .filter(|child| child.first() <= self.max_id)
            .collect();
        // Read afresh, after this level's fences: counts cached earlier in the request may
        // predate them (see "Why a summary can be trusted").
        let counts = self.load(&children, false)?;
        self.counts
            .borrow_mut()
            .extend(children.iter().copied().zip(counts.iter().cloned()));
        for (child, counts) in children.iter().zip(counts) {
            let parent = Node::of(child.first(), child.level + 1);
            let i = nodes
                .iter()
                .position(|node| *node == parent)
                .unwrap_or_default();
            let c = (child.n % FANOUT) as usize;
            let (live, done) = counts.total();
            result[i].live[c] = live;
            result[i].done[c] = done;
        }
        Ok(result)
    }
}

/// The todos of `keys` whose values were found, in order; a key with none (deleted since the
/// index was read) is skipped rather than failed.
fn decode_found<'v>(
    keys: &[String],
    values: impl Iterator<Item = Option<&'v [u8]>>,
) -> Result<Vec<TodoRecord>, ApiError> {
    keys.iter()
        .zip(values)
        .filter_map(|(key, value)| value.map(|bytes| layout::decode(key, bytes)))
        .collect()
}

fn parse_fence(key: &str, bytes: &[u8]) -> Result<u64, ApiError> {
    parse_counter(bytes)
        .ok_or_else(|| ApiError::Store(format!("'{key}' does not hold a fence counter")))
}

/// The index entries of a store that holds exactly the todos `1..=count` and has issued no
/// other id, with `completed(id)` telling which are done: every summary settled at fence 0,
/// and the id counter. For seeding large stores fast (tests, benchmarks) without going through
/// a request per todo; the todo keys themselves are the caller's to write.
pub fn dense_entries(count: u64, completed: impl Fn(u64) -> bool) -> Vec<(String, Vec<u8>)> {
    let mut entries = Vec::new();
    let encode = |counts: &Counts| {
        serde_json::to_vec(&counts.to_summary(Some(0))).unwrap_or_else(|_| b"{}".to_vec())
    };
    let mut level_counts: HashMap<Node, Counts> = HashMap::new();
    for id in 1..=count {
        for level in 1..=LEVELS {
            let node = Node::of(id, level);
            let below = Node::of(id, level - 1);
            let c = (below.n % FANOUT) as usize;
            let counts = level_counts.entry(node).or_default();
            counts.live[c] += 1;
            counts.done[c] += u64::from(completed(id));
        }
    }
    let mut nodes: Vec<(&Node, &Counts)> = level_counts.iter().collect();
    nodes.sort_by_key(|(node, _)| (node.level, node.n));
    for (node, counts) in nodes {
        entries.push((node.summary_key(), encode(counts)));
    }
    entries.push((NEXT_ID_KEY.to_string(), count.to_string().into_bytes()));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_the_same_whatever_bytes_the_host_keeps_them_in() {
        for value in [
            0u64,
            1,
            7,
            255,
            256,
            1 << 32 | 3,
            (5 << 32) | 5,
            123_456_789,
        ] {
            assert_eq!(parse_counter(value.to_string().as_bytes()), Some(value));
            assert_eq!(
                parse_counter(&value.to_le_bytes()),
                Some(value),
                "LE {value}"
            );
            assert_eq!(
                parse_counter(&value.to_be_bytes()),
                Some(value),
                "BE {value}"
            );
        }
        assert_eq!(parse_counter(b"not a counter"), None);
    }
}

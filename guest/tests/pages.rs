//! Pages, counts and the id index, natively against an in-memory bucket: cursor pages and legacy
//! offsets walk every todo once in id order across holes; a page reads the page, not the store;
//! an interrupted write is never misread; bad page parameters are refused.

mod support;

use std::cell::Cell;

use serde_json::{Value, json};
use support::error_of;
use todo_guest::index::{self, STALE_WRITE_SECS};
use todo_guest::kv::{KeyPage, Kv, KvError, MemoryKv, Values};
use todo_guest::records::{TodoRecord, todo_key};
use todo_guest::time::Timestamp;
use todo_guest::{Request, Response, handle};

const NOW: Timestamp = Timestamp {
    seconds: 1_764_000_000,
    nanoseconds: 0,
};

/// A bucket that counts the keys each request reads (values fetched and keys listed).
#[derive(Default)]
struct CountingKv {
    inner: MemoryKv,
    read: Cell<usize>,
    calls: Cell<usize>,
}

impl CountingKv {
    fn reset(&self) -> (usize, usize) {
        (self.read.replace(0), self.calls.replace(0))
    }

    fn tick(&self, keys: usize) {
        self.read.set(self.read.get() + keys);
        self.calls.set(self.calls.get() + 1);
    }
}

impl Kv for CountingKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.tick(1);
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.calls.set(self.calls.get() + 1);
        self.inner.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.calls.set(self.calls.get() + 1);
        self.inner.delete(key)
    }
    fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        self.calls.set(self.calls.get() + 1);
        self.inner.increment(key, delta)
    }
    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, KvError> {
        let page = self.inner.list_keys(cursor)?;
        self.tick(page.keys.len());
        Ok(page)
    }
    fn get_many(&self, keys: &[String]) -> Result<Values, KvError> {
        self.tick(keys.len());
        self.inner.get_many(keys)
    }
    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        self.calls.set(self.calls.get() + 1);
        self.inner.set_many(entries)
    }
    fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        self.calls.set(self.calls.get() + 1);
        self.inner.delete_many(keys)
    }
}

fn send(kv: &dyn Kv, request: Request) -> Response {
    handle(&request, kv, NOW)
}

fn send_at(kv: &dyn Kv, request: Request, now: Timestamp) -> Response {
    handle(&request, kv, now)
}

fn create(kv: &dyn Kv, count: usize) {
    for i in 0..count {
        let body = json!({ "title": format!("t{i}") }).to_string();
        let response = send(kv, Request::new("POST", "/todos").with_json(&body));
        assert_eq!(response.status, 201, "{:?}", response.body_json());
    }
}

fn ids(body: &Value) -> Vec<u64> {
    body.as_array()
        .into_iter()
        .flatten()
        .filter_map(|todo| todo["id"].as_u64())
        .collect()
}

fn legacy_delete(kv: &dyn Kv, keys: &[u64]) {
    for chunk in keys.chunks(1000) {
        let body = json!({ "key": chunk }).to_string();
        let response = send(kv, Request::new("DELETE", "/api/rule").with_json(&body));
        assert_eq!(response.status, 200, "{:?}", response.body_json());
    }
}

/// Follows `Link: rel="next"` from `first` to the end; returns every id and the page count.
fn follow(kv: &dyn Kv, first: &str) -> (Vec<u64>, usize) {
    let mut target = first.to_string();
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let response = send(kv, Request::new("GET", &target));
        assert_eq!(response.status, 200, "{target}: {:?}", response.body_json());
        pages += 1;
        all.extend(ids(&response.body_json()));
        match response.header("link") {
            None => return (all, pages),
            Some(link) => {
                let url = link
                    .strip_prefix("<http://localhost")
                    .and_then(|rest| rest.split_once('>'))
                    .map(|(url, rel)| {
                        assert_eq!(rel, "; rel=\"next\"");
                        url.to_string()
                    })
                    .expect("a Link to this host");
                target = url;
            }
        }
    }
}

/// Seeds `count` todos the fast way: the todo keys plus their index, as the test support and
/// the benchmark do it, then checks the store through the API.
fn seed(kv: &dyn Kv, count: u64) {
    for id in 1..=count {
        let record = TodoRecord {
            id,
            title: format!("seeded {id}"),
            completed: id.is_multiple_of(4),
            order: id as i64,
            description: String::new(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
        };
        let bytes = serde_json::to_vec(&record).expect("a record encodes");
        kv.set(&todo_key(id), &bytes).expect("memory set");
    }
    for (key, value) in index::dense_entries(count, |id| id.is_multiple_of(4)) {
        kv.set(&key, &value).expect("memory set");
    }
}

#[test]
fn cursor_pages_list_every_todo_once_in_id_order_across_holes() {
    let kv = MemoryKv::new();
    create(&kv, 300);
    // Holes: a long run (a whole block and more), and scattered ones.
    let mut gone: Vec<u64> = (40..=230).collect();
    gone.extend([1, 7, 64, 255, 300]);
    legacy_delete(&kv, &gone);
    let expected: Vec<u64> = (1..=300).filter(|id| !gone.contains(id)).collect();

    let (all, pages) = follow(&kv, "/todos?limit=7");
    assert_eq!(all, expected);
    assert_eq!(pages, expected.len().div_ceil(7));

    let whole = send(&kv, Request::new("GET", "/todos"));
    assert_eq!(ids(&whole.body_json()), expected);
    assert_eq!(whole.header("link"), None, "one page holds them all");
    let count = expected.len().to_string();
    assert_eq!(whole.header("x-total-count"), Some(count.as_str()));
    assert_eq!(whole.header("x-active-count"), Some(count.as_str()));

    // A deleted id is a fine cursor: the page starts after it.
    let after_hole = send(&kv, Request::new("GET", "/todos?limit=2&after=40"));
    assert_eq!(ids(&after_hole.body_json()), vec![231, 232]);
    assert_eq!(
        after_hole.header("link"),
        Some("<http://localhost/todos?limit=2&after=232>; rel=\"next\"")
    );
    let last = send(&kv, Request::new("GET", "/todos?after=300"));
    assert_eq!((last.status, last.body_json()), (200, json!([])));
}

#[test]
fn without_limit_the_first_page_holds_a_thousand_and_links_the_rest() {
    let kv = MemoryKv::new();
    seed(&kv, 2500);
    let first = send(&kv, Request::new("GET", "/todos"));
    assert_eq!(first.status, 200);
    assert_eq!(ids(&first.body_json()), (1..=1000).collect::<Vec<_>>());
    assert_eq!(
        first.header("link"),
        Some("<http://localhost/todos?after=1000>; rel=\"next\"")
    );
    assert_eq!(first.header("x-total-count"), Some("2500"));
    assert_eq!(first.header("x-active-count"), Some("1875"));
    let (all, pages) = follow(&kv, "/todos");
    assert_eq!(all, (1..=2500).collect::<Vec<_>>());
    assert_eq!(pages, 3);
}

#[test]
fn within_a_page_todos_are_sorted_by_order_then_id() {
    let kv = MemoryKv::new();
    for (title, order) in [("c", 5), ("a", 1), ("b", 5), ("d", -3)] {
        let body = json!({ "title": title, "order": order }).to_string();
        assert_eq!(
            send(&kv, Request::new("POST", "/todos").with_json(&body)).status,
            201
        );
    }
    // Pages are cut in id order (ids 1..=3, then 4); each is shown in order, then id.
    let first = send(&kv, Request::new("GET", "/todos?limit=3")).body_json();
    assert_eq!(ids(&first), vec![2, 1, 3]);
    let second = send(&kv, Request::new("GET", "/todos?limit=3&after=3")).body_json();
    assert_eq!(ids(&second), vec![4]);
    let all = send(&kv, Request::new("GET", "/todos")).body_json();
    assert_eq!(ids(&all), vec![4, 2, 1, 3]);
}

#[test]
fn legacy_pages_are_offsets_in_id_order_with_exact_totals() {
    let kv = MemoryKv::new();
    create(&kv, 150);
    let gone: Vec<u64> = (10..=139).collect();
    legacy_delete(&kv, &gone);
    let left: Vec<u64> = (1..=150).filter(|id| !gone.contains(id)).collect();
    assert_eq!(left.len(), 20);
    for current in 1..=4u64 {
        let page = send(
            &kv,
            Request::new("GET", &format!("/api/rule?current={current}&pageSize=6")),
        )
        .body_json();
        let keys: Vec<u64> = page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|rule| rule["key"].as_u64())
            .collect();
        let start = (current as usize - 1) * 6;
        assert_eq!(keys, left[start..(start + 6).min(20)], "page {current}");
        assert_eq!(page["total"], 20);
    }
    // Past the last page: an empty page with the real total, as the Ant Design table expects.
    let past = send(&kv, Request::new("GET", "/api/rule?current=99&pageSize=6"));
    assert_eq!(past.status, 200);
    assert_eq!(past.body_json()["data"], json!([]));
    assert_eq!(past.body_json()["total"], 20);
    let huge = send(
        &kv,
        Request::new(
            "GET",
            "/api/rule?current=18446744073709551615&pageSize=1000",
        ),
    );
    assert_eq!(huge.status, 200);
    assert_eq!(huge.body_json()["data"], json!([]));
}

#[test]
fn counts_follow_every_kind_of_write() {
    let kv = MemoryKv::new();
    create(&kv, 5);
    let total = |kv: &MemoryKv| {
        let response = send(kv, Request::new("GET", "/todos?limit=1"));
        (
            response.header("x-total-count").map(str::to_string),
            response.header("x-active-count").map(str::to_string),
        )
    };
    assert_eq!(total(&kv), (Some("5".into()), Some("5".into())));
    let patch = Request::new("PATCH", "/todos/2").with_json(r#"{"completed":true}"#);
    assert_eq!(send(&kv, patch).status, 200);
    let put = Request::new("PUT", "/todos/3").with_json(r#"{"title":"x","completed":true}"#);
    assert_eq!(send(&kv, put).status, 200);
    assert_eq!(total(&kv), (Some("5".into()), Some("3".into())));
    let legacy = Request::new("PUT", "/api/rule").with_json(r#"{"key":3,"status":1}"#);
    assert_eq!(send(&kv, legacy).status, 200);
    assert_eq!(send(&kv, Request::new("DELETE", "/todos/2")).status, 204);
    assert_eq!(total(&kv), (Some("4".into()), Some("4".into())));
    assert_eq!(send(&kv, Request::new("DELETE", "/todos")).status, 204);
    assert_eq!(total(&kv), (Some("0".into()), Some("0".into())));
    create(&kv, 1);
    let after = send(&kv, Request::new("GET", "/todos")).body_json();
    assert_eq!(ids(&after), vec![6], "ids go on after a delete of all");
}

/// Keys read and host calls made by one request.
fn cost(kv: &CountingKv, target: &str) -> (usize, usize) {
    kv.reset();
    let response = send(kv, Request::new("GET", target));
    assert_eq!(response.status, 200, "{target}: {:?}", response.body_json());
    kv.reset()
}

#[test]
fn a_page_reads_the_page_not_the_store() {
    let small = CountingKv::default();
    seed(&small, 1_000);
    let large = CountingKv::default();
    seed(&large, 300_000);
    for target in [
        "/todos?limit=10",
        "/todos?limit=10&after=500",
        "/api/rule?current=1&pageSize=10",
        "/api/rule?current=100&pageSize=10",
        "/todos/1",
    ] {
        // The first request may store summaries; the cost is that of the next ones.
        cost(&small, target);
        cost(&large, target);
        let (small_keys, small_calls) = cost(&small, target);
        let (large_keys, large_calls) = cost(&large, target);
        println!("{target}: {small_keys} keys at 1,000 todos, {large_keys} at 300,000");
        assert!(
            large_keys <= small_keys + 12 && large_calls <= small_calls + 8,
            "{target}: {large_keys} keys / {large_calls} calls at 300,000 todos, \
             {small_keys} / {small_calls} at 1,000"
        );
        assert!(large_keys < 60, "{target} read {large_keys} keys");
    }
    let last = "/api/rule?current=30000&pageSize=10";
    cost(&large, last);
    let (keys, _) = cost(&large, last);
    assert!(keys < 60, "the last page read {keys} keys");
}

#[test]
fn holes_cost_nothing_to_pass_over() {
    let kv = CountingKv::default();
    seed(&kv, 20_000);
    // Delete everything between 2 and 19,990: ten thousand and more holes in a row.
    let gone: Vec<u64> = (2..=19_990).collect();
    legacy_delete(&kv, &gone);
    let target = "/todos?limit=5&after=1";
    cost(&kv, target);
    let response = send(&kv, Request::new("GET", target));
    assert_eq!(
        ids(&response.body_json()),
        vec![19_991, 19_992, 19_993, 19_994, 19_995]
    );
    let (keys, calls) = cost(&kv, target);
    assert!(keys < 40 && calls < 16, "{keys} keys, {calls} calls");
}

#[test]
fn deleting_all_of_many_todos_leaves_none_and_counts_zero() {
    let kv = MemoryKv::new();
    seed(&kv, 10_000);
    assert_eq!(send(&kv, Request::new("DELETE", "/todos")).status, 204);
    let left = kv
        .snapshot()
        .keys()
        .filter(|key| key.starts_with("todo/"))
        .count();
    assert_eq!(left, 0);
    let page = send(&kv, Request::new("GET", "/api/rule")).body_json();
    assert_eq!(page["total"], 0);
}

#[test]
fn a_write_interrupted_mid_way_is_never_misread_and_is_settled_once_stale() {
    let kv = MemoryKv::new();
    create(&kv, 5);
    assert_eq!(
        send(&kv, Request::new("GET", "/todos"))
            .header("x-total-count")
            .map(str::to_string),
        Some("5".into())
    );
    // A create that died after starting its fences and writing its todo, before finishing.
    let id = kv.increment("meta/next-id", 1).expect("increment");
    for node in index::path(id) {
        kv.increment(&format!("fence/{}/{}", node.level, node.n), 1)
            .expect("increment");
    }
    let record = json!({"id": id, "title": "orphan", "completed": false, "order": 6,
        "createdAt": "x", "updatedAt": "x"});
    kv.set(&todo_key(id), record.to_string().as_bytes())
        .expect("set");

    for _ in 0..2 {
        let list = send(&kv, Request::new("GET", "/todos"));
        assert_eq!(ids(&list.body_json()), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(list.header("x-total-count"), Some("6"));
    }
    // Unsettled, the block's summary is not trusted: a key written behind the index's back
    // (which no endpoint does) is still found, because the block is read afresh each time.
    let id = kv.increment("meta/next-id", 1).expect("increment");
    let record = json!({"id": id, "title": "hidden", "completed": false, "order": 7,
        "createdAt": "x", "updatedAt": "x"});
    kv.set(&todo_key(id), record.to_string().as_bytes())
        .expect("set");
    let list = send(&kv, Request::new("GET", "/todos"));
    assert_eq!(list.header("x-total-count"), Some("7"));

    // Once the fence has not moved for longer than any write can take, it is settled for the
    // dead writer, and the summaries are trusted (and cheap) again.
    let later = Timestamp {
        seconds: NOW.seconds + STALE_WRITE_SECS + 1,
        nanoseconds: 0,
    };
    let list = send_at(&kv, Request::new("GET", "/todos"), later);
    assert_eq!(list.header("x-total-count"), Some("7"));
    let fence: u64 = String::from_utf8(kv.get("fence/1/0").expect("get").expect("a fence"))
        .expect("utf-8")
        .parse()
        .expect("a number");
    assert_eq!(fence & 0xFFFF_FFFF, fence >> 32, "settled: {fence:#x}");
    // Trusted now: a key written behind the index's back is not seen until a fenced write.
    kv.delete(&todo_key(7)).expect("delete");
    let list = send_at(&kv, Request::new("GET", "/todos?limit=1"), later);
    assert_eq!(list.header("x-total-count"), Some("7"));
    // A fenced write to the block makes the next reader count it afresh.
    let create = Request::new("POST", "/todos").with_json(r#"{"title":"new"}"#);
    assert_eq!(send_at(&kv, create, later).status, 201);
    let list = send_at(&kv, Request::new("GET", "/todos"), later);
    assert_eq!(ids(&list.body_json()), vec![1, 2, 3, 4, 5, 6, 8]);
    assert_eq!(list.header("x-total-count"), Some("7"));
}

#[test]
fn a_summary_taken_while_a_write_is_in_flight_is_not_trusted_after_it() {
    let kv = MemoryKv::new();
    create(&kv, 3);
    // A PATCH in flight: its fences are started, its new value not yet written.
    for node in index::path(2) {
        kv.increment(&format!("fence/{}/{}", node.level, node.n), 1)
            .expect("increment");
    }
    let list = send(&kv, Request::new("GET", "/todos"));
    assert_eq!(list.header("x-active-count"), Some("3"));
    // It writes, and finishes.
    let done = json!({"id": 2, "title": "t1", "completed": true, "order": 2,
        "createdAt": "x", "updatedAt": "x"});
    kv.set(&todo_key(2), done.to_string().as_bytes())
        .expect("set");
    for node in index::path(2).iter().rev() {
        kv.increment(&format!("fence/{}/{}", node.level, node.n), 1 << 32)
            .expect("increment");
    }
    let list = send(&kv, Request::new("GET", "/todos"));
    assert_eq!(list.header("x-active-count"), Some("2"));
}

#[test]
fn bad_page_parameters_are_400_and_change_nothing() {
    let kv = MemoryKv::new();
    create(&kv, 3);
    let before = kv.snapshot();
    for (target, says) in [
        ("/todos?limit=0", "'limit'"),
        ("/todos?limit=-1", "'limit'"),
        ("/todos?limit=1001", "from 1 to 1000"),
        ("/todos?limit=abc", "'limit'"),
        ("/todos?limit=", "'limit'"),
        ("/todos?limit=1&limit=2", "more than once"),
        ("/todos?after=abc", "'after'"),
        ("/todos?after=-1", "'after'"),
        ("/todos?after=1.5", "'after'"),
        ("/todos?after=99", "past the highest id"),
        ("/todos?after=99999999999999999999999", "'after'"),
        ("/todos?after=%zz", "percent-encoding"),
        ("/api/rule?current=0", "'current'"),
        ("/api/rule?pageSize=0", "'pageSize'"),
        ("/api/rule?pageSize=-5", "'pageSize'"),
    ] {
        let response = send(&kv, Request::new("GET", target));
        assert_eq!(response.status, 400, "{target}");
        let error = error_of(&response);
        assert!(error.contains(says), "{target}: {error}");
    }
    let keys: Vec<u64> = (1..=1001).collect();
    let too_many =
        Request::new("DELETE", "/api/rule").with_json(&json!({ "key": keys }).to_string());
    let response = send(&kv, too_many);
    assert_eq!(response.status, 400);
    assert_eq!(kv.snapshot(), before, "the store is unchanged");
}

/// Host calls (each one round trip to the store) made by one request, which must succeed.
fn trips(kv: &CountingKv, method: &str, target: &str, body: Option<&str>) -> usize {
    kv.reset();
    let mut request = Request::new(method, target);
    if let Some(body) = body {
        request = request.with_json(body);
    }
    let response = send(kv, request);
    assert!(
        response.status < 300,
        "{method} {target}: {} {:?}",
        response.status,
        response.body_json()
    );
    kv.reset().1
}

#[test]
fn round_trips_per_route_are_bounded_at_any_store_size() {
    for size in [1_000u64, 100_000] {
        let kv = CountingKv::default();
        seed(&kv, size);
        for route in todo_guest::trips::BOUNDS {
            let (method, bound) = (route.method, route.bound);
            let target = route.target_for(size);
            let made = trips(&kv, method, &target, route.body);
            assert!(
                made <= bound,
                "{method} {target} at {size} todos: {made} round trips, the bound is {bound}"
            );
            if method != "GET" {
                // The write changed summaries: the next read recomputes them (the id counter
                // with the top, the changed nodes again after it, one batch per level below,
                // and their summaries stored in one batch), and the reads after it are back
                // within the bound.
                let recompute = trips(&kv, "GET", "/todos?limit=10", None);
                assert!(
                    recompute <= 7,
                    "the read after {method} {target}: {recompute} round trips"
                );
                let again = trips(&kv, "GET", "/todos?limit=10", None);
                assert!(again <= 2, "after {method} {target}: {again} round trips");
            }
        }
    }
}

/// Titles of a `GET /todos` answer, by id.
fn titles_by_id(kv: &dyn Kv) -> Vec<(u64, String)> {
    let response = send(kv, Request::new("GET", "/todos"));
    assert_eq!(response.status, 200, "{:?}", response.body_json());
    let mut titles: Vec<(u64, String)> = response
        .body_json()
        .as_array()
        .into_iter()
        .flatten()
        .map(|todo| {
            let title = todo["title"].as_str().unwrap_or_default().to_string();
            (todo["id"].as_u64().unwrap_or_default(), title)
        })
        .collect();
    titles.sort();
    titles
}

#[test]
fn once_its_block_is_recomputed_a_small_list_is_one_round_trip_and_shows_every_write() {
    let kv = CountingKv::default();
    create(&kv, 10);
    // The first read recomputes block 0 and stores its page beside its summary.
    trips(&kv, "GET", "/todos?limit=10", None);
    assert!(
        kv.inner.get("page/0").ok().flatten().is_some(),
        "a page is stored"
    );
    assert_eq!(trips(&kv, "GET", "/todos?limit=10", None), 1);
    assert_eq!(trips(&kv, "GET", "/todos?limit=5&after=3", None), 1);
    // A write moves the block's fence: the page is not trusted until recomputed, so the read
    // after it shows the write, and so do the one-trip reads after that.
    let patched = send(
        &kv,
        Request::new("PATCH", "/todos/4").with_json(r#"{"title":"changed"}"#),
    );
    assert_eq!(patched.status, 200);
    let deleted = send(&kv, Request::new("DELETE", "/todos/7"));
    assert_eq!(deleted.status, 204);
    for round in 0..2 {
        let titles = titles_by_id(&kv);
        assert_eq!(titles.len(), 9, "round {round}: {titles:?}");
        assert!(titles.contains(&(4, "changed".to_string())), "{titles:?}");
        assert!(!titles.iter().any(|(id, _)| *id == 7), "{titles:?}");
    }
    assert_eq!(trips(&kv, "GET", "/todos?limit=10", None), 1);
}

#[test]
fn a_page_is_read_only_at_the_fence_it_was_taken_at() {
    let kv = MemoryKv::new();
    create(&kv, 5);
    send(&kv, Request::new("GET", "/todos"));
    let stored = kv.get("page/0").ok().flatten().expect("a page is stored");
    let mut page: index::Page = serde_json::from_slice(&stored).expect("a page parses");
    assert_eq!(page.todos.len(), 5);
    page.todos[0].title = "only in the page".into();
    // At another fence, the page is ignored: the list comes from the todo keys.
    let forged = index::Page {
        fence: page.fence + 1,
        todos: page.todos.clone(),
    };
    kv.set("page/0", &serde_json::to_vec(&forged).expect("encodes"))
        .expect("memory set");
    assert_eq!(titles_by_id(&kv)[0], (1, "t0".to_string()));
    // At the block's fence, it is what the list shows: the rule, not luck, keeps pages out.
    kv.set("page/0", &serde_json::to_vec(&page).expect("encodes"))
        .expect("memory set");
    assert_eq!(titles_by_id(&kv)[0], (1, "only in the page".to_string()));
}

#[test]
fn a_host_that_keeps_small_values_gets_no_pages_and_lists_as_before() {
    // Each todo fits 300 bytes; a page of several does not.
    let kv = MemoryKv::with_value_limit(300);
    create(&kv, 6);
    for _ in 0..2 {
        let titles = titles_by_id(&kv);
        assert_eq!(titles.len(), 6, "{titles:?}");
    }
    assert!(
        !kv.snapshot().keys().any(|key| key.starts_with("page/")),
        "no page larger than the host keeps"
    );
    assert!(
        kv.get("index/1/0").ok().flatten().is_some(),
        "summaries are"
    );
}

#[test]
fn a_read_that_recomputes_many_blocks_keeps_pages_within_its_budget() {
    let kv = MemoryKv::new();
    create(&kv, 3_000);
    let (all, _) = follow(&kv, "/todos");
    assert_eq!(all, (1..=3_000).collect::<Vec<_>>());
    let page_bytes: usize = kv
        .snapshot()
        .iter()
        .filter(|(key, _)| key.starts_with("page/"))
        .map(|(_, value)| value.len())
        .sum();
    assert!(page_bytes > 0, "some blocks got pages");
    assert!(
        page_bytes <= index::PAGES_PER_REQUEST_BYTES,
        "{page_bytes} bytes of pages from one read"
    );
    assert!(
        kv.get("index/1/46").ok().flatten().is_some(),
        "every block's summary is stored, page or not"
    );
}

//! A store that survives losing a machine: `todo-host` processes on a real three-node NATS
//! JetStream cluster (three replicas), under load, while the node that leads the todo bucket's
//! stream is killed with SIGKILL. Also: concurrent creates across hosts, draft2 compare-and-swap,
//! a store outage and its recovery, and the `nats://` start-up errors. Real processes throughout.

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use support::draft2::check_cas_increment_and_cursors;
use support::nats::{NatsCluster, NatsServer};
use support::{HOST_BIN, Host, create_concurrently};

/// The todo component's bucket, as NATS names its stream.
const TODO_STREAM: &str = "KV_default";
/// Client threads creating todos.
const CLIENTS: usize = 8;
/// Load before the kill, and after the first create that succeeds again.
const STEADY: Duration = Duration::from_secs(3);
/// The longest the load runs after the kill, whatever happens.
const AFTER_KILL_MAX: Duration = Duration::from_secs(30);
/// The longest outage window (and stall) the test accepts (see the assertion for why not 5 s).
const OUTAGE_BOUND: Duration = Duration::from_secs(15);
/// How often the surviving servers are asked who leads the stream, after the kill.
const LEADER_POLL: Duration = Duration::from_millis(20);
/// Each client's pause between creates: keeps the number of todos (and the final listing) modest.
const PAUSE: Duration = Duration::from_millis(10);

/// One create, as a client saw it.
struct Outcome {
    /// When the answer came, from the start of the load.
    at: Duration,
    /// The id of a create answered 201.
    id: Option<u64>,
}

/// The longest stretch in which creates failed: from the last success before a run of failures
/// to the first success after it.
fn outage_window(outcomes: &mut [Outcome]) -> Duration {
    outcomes.sort_by_key(|o| o.at);
    let mut longest = Duration::ZERO;
    let mut last_success = Duration::ZERO;
    let mut failing = false;
    for outcome in outcomes.iter() {
        match outcome.id {
            Some(_) => {
                if failing {
                    longest = longest.max(outcome.at - last_success);
                    failing = false;
                }
                last_success = outcome.at;
            }
            None => failing = true,
        }
    }
    longest
}

/// The longest stretch without an acknowledged create: between two successive answers 201, by
/// the time they came. Unlike [`outage_window`] it also counts creates that were slow rather than
/// failed (a host holding requests until the store answers would have no outage window at all).
/// `outcomes` must be sorted by time.
fn longest_stall(outcomes: &[Outcome]) -> Duration {
    let successes: Vec<Duration> = outcomes
        .iter()
        .filter(|o| o.id.is_some())
        .map(|o| o.at)
        .collect();
    successes
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default()
}

/// Every todo id `host` lists, following `Link: <...>; rel="next"` from page to page.
fn all_ids(host: &Host) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::new();
    let mut path = "/todos".to_string();
    loop {
        let page = host.request("GET", &path, None)?;
        anyhow::ensure!(
            page.status == 200,
            "GET {path}: {} {}",
            page.status,
            page.text()
        );
        let todos = page.json();
        let todos = todos.as_array().context("GET /todos is not an array")?;
        ids.extend(todos.iter().filter_map(|todo| todo["id"].as_u64()));
        let next = page.header("link").and_then(|link| {
            let (target, rel) = link.split_once(';')?;
            rel.contains("next").then(|| {
                let url = target.trim().trim_start_matches('<').trim_end_matches('>');
                url.strip_prefix(&host.base).unwrap_or(url).to_string()
            })
        });
        match next {
            Some(next) => path = next,
            None => return Ok(ids),
        }
    }
}

fn still_running(host: &Host) -> bool {
    Command::new("kill")
        .args(["-0", &host.pid().to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn killing_the_stream_leader_under_load_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(3)?;
    let url = cluster.url();
    let hosts = [
        Host::start(&["--store", &url])?,
        Host::start(&["--store", &url])?,
    ];
    assert!(
        hosts[0].banner.contains("replicas 3"),
        "{}",
        hosts[0].banner
    );
    let pids: Vec<u32> = hosts.iter().map(Host::pid).collect();

    // The first create makes the bucket; then its stream has a leader to kill.
    let (status, body) = hosts[0].call("POST", "/todos", Some(r#"{"title":"first"}"#))?;
    assert_eq!(status, 201, "{body}");
    let first_id = body["id"].as_u64().expect("an id");
    let leader = cluster.wait_for_leader(TODO_STREAM, Duration::from_secs(10))?;
    let victim = cluster.index_of(&leader)?;

    let outcomes = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (killed_at, elected) = std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (outcomes, stop, hosts) = (&outcomes, &stop, &hosts);
            scope.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let host = &hosts[(client + n) % hosts.len()];
                    let title = format!(r#"{{"title":"c{client}-{n}"}}"#);
                    let id = match host.call("POST", "/todos", Some(&title)) {
                        Ok((201, todo)) => todo["id"].as_u64(),
                        _ => None,
                    };
                    let at = start.elapsed();
                    outcomes.lock().unwrap().push(Outcome { at, id });
                    n += 1;
                    std::thread::sleep(PAUSE);
                }
            });
        }
        std::thread::sleep(STEADY);
        let killed_at = start.elapsed();
        let killed = cluster.kill9(victim);
        // Keep the load going until creates have succeeded again for a while; meanwhile, ask the
        // survivors who leads, to tell the servers' election from the hosts' part of the outage.
        let deadline = Instant::now() + AFTER_KILL_MAX;
        let mut recovered_at = None;
        let mut elected: Option<(Duration, String)> = None;
        while Instant::now() < deadline {
            std::thread::sleep(LEADER_POLL);
            if elected.is_none() {
                let survivors = cluster.nodes.iter().filter(|node| node.is_running());
                for node in survivors {
                    if let Ok(Some(leader)) = node.stream_leader_seen(TODO_STREAM)
                        && leader != cluster.nodes[victim].name
                    {
                        elected = Some((start.elapsed(), leader));
                        break;
                    }
                }
            }
            let outcomes = outcomes.lock().unwrap();
            let failed_after_kill = outcomes.iter().any(|o| o.at > killed_at && o.id.is_none());
            let last_failure = outcomes
                .iter()
                .filter(|o| o.id.is_none())
                .map(|o| o.at)
                .max()
                .unwrap_or(killed_at);
            let succeeded_since = outcomes
                .iter()
                .any(|o| o.id.is_some() && o.at > last_failure.max(killed_at));
            if succeeded_since && (failed_after_kill || start.elapsed() > killed_at + STEADY) {
                let since = *recovered_at.get_or_insert_with(Instant::now);
                if since.elapsed() >= STEADY {
                    break;
                }
            } else {
                recovered_at = None;
            }
        }
        stop.store(true, Ordering::Relaxed);
        killed?;
        anyhow::Ok((killed_at, elected))
    })?;

    let mut outcomes = outcomes.into_inner().unwrap();
    let acknowledged: Vec<u64> = std::iter::once(first_id)
        .chain(outcomes.iter().filter_map(|o| o.id))
        .collect();
    let distinct: HashSet<u64> = acknowledged.iter().copied().collect();
    let failed = outcomes.iter().filter(|o| o.id.is_none()).count();
    let window = outage_window(&mut outcomes);
    let stall = longest_stall(&outcomes);
    let (elected_at, new_leader) = elected.context("no survivor named a new leader")?;
    let first_after_election = outcomes
        .iter()
        .find(|o| o.at >= elected_at && o.id.is_some())
        .map(|o| o.at)
        .context("no create succeeded after the election")?;
    let last_before_kill = outcomes
        .iter()
        .rev()
        .find(|o| o.at <= killed_at && o.id.is_some())
        .map_or(Duration::ZERO, |o| o.at);

    // Every acknowledged create is there, read through both hosts.
    let listed: Vec<u64> = all_ids(&hosts[0])?;
    let listed_set: HashSet<u64> = listed.iter().copied().collect();
    let lost: Vec<u64> = distinct.difference(&listed_set).copied().collect();
    println!(
        "failover: killed {leader} (the leader of {TODO_STREAM}) at {killed_at:.1?} under {CLIENTS} \
         clients; acknowledged {} creates, {failed} failed; found {} of them (listed {}); lost {}; \
         outage window {window:.2?}; longest stall {stall:.2?}",
        acknowledged.len(),
        distinct.intersection(&listed_set).count(),
        listed.len(),
        lost.len(),
    );
    println!(
        "failover timing: last 201 before the kill at {last_before_kill:.2?}, kill at \
         {killed_at:.2?}; a survivor named {new_leader} leader {:.2?} after the kill (RAFT \
         election); first 201 after that {:.2?} later (the hosts' part)",
        elected_at - killed_at,
        first_after_election - elected_at,
    );
    assert_eq!(
        distinct.len(),
        acknowledged.len(),
        "an id was given to two acknowledged creates"
    );
    assert_eq!(listed_set.len(), listed.len(), "a todo is listed twice");
    assert!(lost.is_empty(), "acknowledged creates lost: {lost:?}");
    assert!(
        outcomes.iter().any(|o| o.at > killed_at && o.id.is_some()),
        "no create succeeded after the kill"
    );
    // JetStream's RAFT followers wait 4 to 9 s (fixed in nats-server: `minElectionTimeout`,
    // `maxElectionTimeout` in server/raft.go, no option) without word from a leader before they
    // elect another; the outage cannot be shorter than that election, and this bound catches a
    // hang.
    assert!(window < OUTAGE_BOUND, "outage window {window:?}");
    assert!(stall < OUTAGE_BOUND, "longest stall {stall:?}");
    let through_b: HashSet<u64> = all_ids(&hosts[1])?.into_iter().collect();
    assert!(distinct.is_subset(&through_b), "host B lists fewer");
    // No host was restarted: the same two processes served all of it.
    for (host, pid) in hosts.iter().zip(&pids) {
        assert_eq!(host.pid(), *pid);
        assert!(still_running(host), "host {} is gone", host.addr());
    }

    // The killed node comes back and catches up; `restart` waits for its /healthz, which
    // reports 200 only once its replicas are current.
    let restarted = cluster.nodes[victim].name.clone();
    let restarting = Instant::now();
    cluster.restart(victim)?;
    let info = loop {
        let info = cluster.stream_cluster(TODO_STREAM)?;
        let current = info
            .replicas
            .iter()
            .any(|(name, current, lag)| *name == restarted && *current && *lag == 0);
        if current || info.leader.as_deref() == Some(&restarted) {
            break info;
        }
        anyhow::ensure!(
            restarting.elapsed() < Duration::from_secs(60),
            "{restarted} did not catch up within 60 s: {info:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "catch-up: {restarted} current {:.1?} after its restart: {info:?}",
        restarting.elapsed()
    );
    let leader_now = info.leader.clone().unwrap_or_default();
    // Kill one of the other two that does not lead, then hand the lead to the restarted node:
    // every read now comes from the node that was dead during the load.
    let other = (0..3)
        .find(|&i| i != victim && cluster.nodes[i].name != leader_now)
        .expect("two other nodes, at most one of them leads");
    cluster.kill9(other)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leader = cluster
            .stream_cluster(TODO_STREAM)
            .ok()
            .and_then(|info| info.leader);
        if leader.as_deref() == Some(&restarted) {
            break;
        }
        let asked = cluster.move_leader(TODO_STREAM, &restarted);
        anyhow::ensure!(
            Instant::now() < deadline,
            "{restarted} did not take the lead (leader {leader:?}; last stepdown: {asked:?})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for host in &hosts {
        let mut seen = None;
        // The hosts' connections to the killed node move to a live one first.
        for _ in 0..50 {
            match all_ids(host) {
                Ok(ids) => {
                    seen = Some(ids);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let seen: HashSet<u64> = seen
            .ok_or_else(|| anyhow::anyhow!("{} could not list", host.addr()))?
            .into_iter()
            .collect();
        let missing: Vec<&u64> = distinct.difference(&seen).collect();
        assert!(
            missing.is_empty(),
            "{restarted} leads after catching up, yet {} acknowledged creates are missing",
            missing.len()
        );
    }
    println!(
        "catch-up: {restarted} restarted, {} killed, {restarted} leads; all {} acknowledged creates \
         read through both hosts",
        cluster.nodes[other].name,
        distinct.len()
    );
    Ok(())
}

#[test]
fn six_hundred_concurrent_creates_over_three_hosts_on_nats_give_600_distinct_ids()
-> anyhow::Result<()> {
    let cluster = NatsCluster::start(3)?;
    let url = cluster.url();
    let a = Host::start(&["--store", &url])?;
    let b = Host::start(&["--store", &url])?;
    let c = Host::start(&["--store", &url])?;
    // The bucket is created on first use, with its replicas and a leader election: on two busy
    // cores that can outlast a request's timeout, and the first requests would get 503. Open it
    // through each host first; the race under test is the increments', not the bucket's.
    for host in [&a, &b, &c] {
        let (status, body) = host.call("GET", "/todos", None)?;
        anyhow::ensure!(status == 200, "GET /todos before the load: {status} {body}");
    }
    let ids = create_concurrently(&[&a, &b, &c], 600)?;
    let distinct: HashSet<u64> = ids.into_iter().collect();
    assert_eq!(distinct.len(), 600, "increments raced across hosts");
    for host in [&a, &b, &c] {
        let listed: HashSet<u64> = all_ids(host)?.into_iter().collect();
        assert_eq!(listed, distinct, "every host lists all 600");
    }
    Ok(())
}

#[test]
fn draft2_compare_and_swap_increments_and_cursors_on_nats() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    check_cas_increment_and_cursors(&nats.url())
}

#[test]
fn nats_going_away_costs_503s_at_once_and_the_host_recovers_by_itself() -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let host = Host::start(&["--store", &nats.url()])?;
    let (status, before) = host.call("POST", "/todos", Some(r#"{"title":"before"}"#))?;
    assert_eq!(status, 201, "{before}");

    nats.kill9()?;
    for (method, path, body) in [
        ("GET", "/todos", None),
        ("POST", "/todos", Some(r#"{"title":"during"}"#)),
    ] {
        let asked = Instant::now();
        let (status, answer) = host.call(method, path, body)?;
        assert_eq!(status, 503, "{method} {path}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains("NATS")),
            "{answer}"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(6),
            "{method} {path} took {:?}",
            asked.elapsed()
        );
    }

    // The same server back on its port and storage: the host reconnects by itself, and the
    // acknowledged write survived the server's SIGKILL (one replica, on file).
    nats.restart()?;
    let mut recovered = false;
    for _ in 0..100 {
        if host.call("POST", "/todos", Some(r#"{"title":"after"}"#))?.0 == 201 {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(recovered, "the host did not reconnect to NATS within 10 s");
    let ids = all_ids(&host)?;
    assert!(
        ids.contains(&before["id"].as_u64().expect("an id")),
        "{ids:?}"
    );
    Ok(())
}

#[test]
fn losing_quorum_costs_503s_within_bounds_and_the_hosts_recover_when_it_returns()
-> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(3)?;
    let host = Host::start(&["--store", &cluster.url()])?;
    let (status, before) = host.call("POST", "/todos", Some(r#"{"title":"before"}"#))?;
    assert_eq!(status, 201, "{before}");

    // One server of three left: no majority, so nothing can be written (a create answers 503).
    // Reads may still be answered by a leader that has not yet noticed it lost its followers
    // (no write can commit meanwhile, so what it serves is current); either way, no hang.
    cluster.kill9(0)?;
    cluster.kill9(1)?;
    for (method, path, body) in [
        ("POST", "/todos", Some(r#"{"title":"without quorum"}"#)),
        ("GET", "/todos", None),
        ("GET", "/todos/1", None),
    ] {
        let asked = Instant::now();
        let (status, answer) = host.call(method, path, body)?;
        let allowed: &[u16] = if method == "POST" {
            &[503]
        } else {
            &[200, 503]
        };
        assert!(
            allowed.contains(&status),
            "{method} {path}: {status} {answer}"
        );
        if status == 503 {
            assert!(
                answer["error"].as_str().is_some_and(|e| e.contains("NATS")),
                "{answer}"
            );
        }
        assert!(
            asked.elapsed() < Duration::from_secs(6),
            "{method} {path} took {:?}",
            asked.elapsed()
        );
    }

    cluster.restart(0)?;
    cluster.restart(1)?;
    let back = Instant::now();
    let mut recovered = false;
    while back.elapsed() < Duration::from_secs(40) {
        if host.call("POST", "/todos", Some(r#"{"title":"after"}"#))?.0 == 201 {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        recovered,
        "the host did not recover within 40 s of the quorum's return"
    );
    println!(
        "quorum back: the host created again {:.1?} later",
        back.elapsed()
    );
    let ids = all_ids(&host)?;
    assert!(
        ids.contains(&before["id"].as_u64().expect("an id")),
        "{ids:?}"
    );
    Ok(())
}

#[test]
fn bad_nats_urls_and_unreachable_servers_fail_before_binding_and_name_the_value()
-> anyhow::Result<()> {
    let nothing = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let unreachable = format!("nats://127.0.0.1:{nothing}");
    let cases: [(&str, &str); 6] = [
        ("nats://", "names no NATS server"),
        ("nats://127.0.0.1:notaport", "'notaport'"),
        ("nats://127.0.0.1:4222?replicas=7", "replicas '7'"),
        (
            "nats://127.0.0.1:4222?bucket-prefix=a.b",
            "bucket-prefix 'a.b'",
        ),
        (
            "nats://127.0.0.1:4222?buckets=x",
            "unknown parameter 'buckets'",
        ),
        (&unreachable, &unreachable[7..]),
    ];
    for (url, named) in cases {
        let started = Instant::now();
        let output = Command::new(HOST_BIN)
            .args(["--listen", "127.0.0.1:0", "--store", url])
            .output()?;
        assert!(!output.status.success(), "{url} succeeded");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains("Serving HTTP"), "{url} started serving");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(named),
            "{url}: stderr does not name {named:?}: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{url} took {:?} to fail",
            started.elapsed()
        );
    }
    Ok(())
}

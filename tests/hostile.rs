//! Hostile clients against the real binary over real sockets: stalled uploads, stalled request
//! heads, a connection flood past `--max-connections`, and forged `Host` headers. Every wait has
//! a deadline, a client that withholds its body holds no concurrency slot, and a healthy client
//! keeps being served throughout (its p99 is printed, not asserted: speed is for `bench/`).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use support::{Host, raw_request};

/// Short deadlines so the test runs in seconds; the defaults are 10 s each.
const BODY_TIMEOUT: &str = "2s";
const HEADER_TIMEOUT: &str = "2s";
/// How long past a deadline an answer or a close may come: a loaded 2-core machine is slow.
const MARGIN: Duration = Duration::from_secs(5);

/// Open descriptors of process `pid`.
fn open_descriptors(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Resident memory of process `pid`, in KiB.
fn resident_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Raises this process's descriptor limit to its hard limit (the host, started after, inherits
/// it) and says how many sockets the test may open: thousands, each held by both processes.
fn allow_many_sockets() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
    let allowed = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    usize::try_from(allowed.saturating_sub(600)).unwrap_or(usize::MAX)
}

/// A healthy client's latencies over `duration`: `GET /todos/1`, one request per connection as
/// a browser's first visit would make it. Every one must succeed.
fn healthy_latencies(host: &Host, duration: Duration) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let started = Instant::now();
        let (status, todo) = host.call("GET", "/todos/1", None)?;
        latencies.push(started.elapsed());
        anyhow::ensure!(status == 200, "a healthy request got {status}: {todo}");
    }
    latencies.sort();
    Ok(latencies)
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

/// Reads from `stream` until the server closes it or `deadline`; what it sent.
fn read_until_closed(stream: &mut TcpStream, deadline: Instant) -> anyhow::Result<Vec<u8>> {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        anyhow::ensure!(!left.is_zero(), "still open at the deadline: {answer:?}");
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(answer),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return Ok(answer),
            Err(err) => return Err(err).context("waiting for the server to close"),
        }
    }
}

/// Opens `uploads` stalled uploads and `heads` stalled heads, keeps a healthy client busy beside
/// them, and checks that every stalled connection is answered (408) or closed by its deadline.
fn attack(host: &Host, uploads: usize, heads: usize) -> anyhow::Result<()> {
    // Uploads that promise 100 bytes and send one: more than the 512 concurrency slots.
    let started = Instant::now();
    let mut stalled_uploads = Vec::new();
    for _ in 0..uploads {
        let mut stream = TcpStream::connect(host.addr())?;
        stream.write_all(
            b"POST /todos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )?;
        stalled_uploads.push(stream);
    }
    // Request heads that never end.
    let mut stalled_heads = Vec::new();
    for _ in 0..heads {
        let mut stream = TcpStream::connect(host.addr())?;
        stream.write_all(b"GET /todos HTTP/1.1\r\nHost: x\r\n")?;
        stalled_heads.push(stream);
    }
    let opened = started.elapsed();
    let during = healthy_latencies(host, Duration::from_secs(1))?;
    println!(
        "during {uploads} stalled uploads and {heads} stalled heads (opened in {opened:?}): {} healthy requests, all 200, p50 {:?}, p99 {:?}",
        during.len(),
        during[during.len() / 2],
        p99(&during)
    );
    let deadline = started + Duration::from_secs(2) + MARGIN;
    for stream in &mut stalled_uploads {
        let answer = read_until_closed(stream, deadline)?;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("access-control-allow-origin: *")
                && answer.contains("did not arrive within 2s"),
            "{answer}"
        );
    }
    for stream in &mut stalled_heads {
        let answer = read_until_closed(stream, deadline)?;
        assert!(
            answer.is_empty(),
            "a stalled head got an answer: {answer:?}"
        );
    }
    println!(
        "every stalled connection answered (408) or closed within {:?}",
        started.elapsed()
    );
    Ok(())
}

/// Waits for the host's descriptors to come back to `baseline` (a little slack for timing).
fn descriptors_settle(pid: u32, baseline: usize) -> anyhow::Result<usize> {
    let settle = Instant::now() + MARGIN;
    let mut descriptors = open_descriptors(pid)?;
    while descriptors > baseline + 2 && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
        descriptors = open_descriptors(pid)?;
    }
    Ok(descriptors)
}

#[test]
fn stalled_uploads_and_stalled_heads_hold_no_slot_and_are_cut_off_at_their_deadlines()
-> anyhow::Result<()> {
    // 1,000 stalled uploads and 3,000 stalled heads, or as many as the descriptor limit allows.
    let sockets = allow_many_sockets().min(4000);
    let (uploads, heads) = (sockets / 4, sockets - sockets / 4);
    let host = Host::start(&[
        "--store",
        "memory://",
        "--body-timeout",
        BODY_TIMEOUT,
        "--header-timeout",
        HEADER_TIMEOUT,
    ])?;
    assert_eq!(
        host.call("POST", "/todos", Some(r#"{"title":"healthy"}"#))?
            .0,
        201
    );
    let pid = host.pid();
    let descriptors_before = open_descriptors(pid)?;

    // A flood grows the allocator's caches (4,000 connections' buffers freed at once are kept
    // for reuse, spread over the worker threads' arenas, not handed back to the OS), so resident
    // memory rises to a high-water mark set by the flood that had the most connections open at
    // once (measured here over six floods: +71, +31, +19, +5, +2, +0.4 MiB; in another run
    // +27, +13, then +64 MiB for a third flood that, alone on the machine, opened its sockets in
    // 0.1 s instead of 1.2 s), and a later flood that reaches no new high adds almost nothing. A
    // leak adds about the same every time. So: at least one flood after the first adds less than
    // half of what the largest one added (a leak fails this once it is as large as the caches'
    // growth). Descriptors must come back to the baseline after each.
    let mut resident = vec![resident_kib(pid)?];
    for _ in 0..4 {
        attack(&host, uploads, heads)?;
        let descriptors = descriptors_settle(pid, descriptors_before)?;
        assert!(
            descriptors <= descriptors_before + 2,
            "descriptors {descriptors_before} before a flood, {descriptors} after"
        );
        resident.push(resident_kib(pid)?);
    }
    println!(
        "descriptors back to {descriptors_before} after each flood; resident memory (KiB) before and after each flood: {resident:?}"
    );
    let growth: Vec<u64> = resident
        .windows(2)
        .map(|pair| pair[1].saturating_sub(pair[0]))
        .collect();
    let largest = growth.iter().copied().max().unwrap_or(0);
    let least_later = growth[1..].iter().copied().min().unwrap_or(0);
    assert!(
        2 * least_later <= largest,
        "every flood after the first held at least {least_later} KiB more, the largest \
         {largest} KiB: memory is not given back ({resident:?})"
    );
    Ok(())
}

#[test]
fn past_max_connections_new_connections_wait_until_one_closes() -> anyhow::Result<()> {
    let host = Host::start(&[
        "--store",
        "memory://",
        "--max-connections",
        "3",
        "--header-timeout",
        HEADER_TIMEOUT,
    ])?;
    // Three connections that hold every slot with a head that never ends.
    let mut stalled: Vec<TcpStream> = (0..3)
        .map(|_| -> anyhow::Result<TcpStream> {
            let mut stream = TcpStream::connect(host.addr())?;
            stream.write_all(b"GET /todos HTTP/1.1\r\nHost: x\r\n")?;
            Ok(stream)
        })
        .collect::<anyhow::Result<_>>()?;
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let waiting = std::thread::scope(|scope| -> anyhow::Result<Duration> {
        let fourth = scope.spawn(|| {
            raw_request(
                host.addr(),
                b"GET /todos HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
        });
        let answer = fourth
            .join()
            .map_err(|_| anyhow::anyhow!("the client panicked"))??;
        assert_eq!(answer.status, 200, "{}", answer.text());
        Ok(started.elapsed())
    })?;
    // The fourth was served only once the header timeout closed a stalled one.
    assert!(
        waiting >= Duration::from_millis(1500),
        "served after {waiting:?}: the cap did not hold it back"
    );
    for stream in &mut stalled {
        assert!(read_until_closed(stream, started + Duration::from_secs(2) + MARGIN)?.is_empty());
    }
    println!("the connection past the cap was served after {waiting:?}");
    Ok(())
}

#[test]
fn forged_host_headers_are_refused_and_never_reach_a_url() -> anyhow::Result<()> {
    let host = Host::start(&["--store", "memory://"])?;
    let post = |host_lines: &str| -> anyhow::Result<support::RawResponse> {
        let body = r#"{"title":"forged"}"#;
        raw_request(
            host.addr(),
            format!(
                "POST /todos HTTP/1.1\r\n{host_lines}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    for forged in [
        "Host: a b\r\n",
        "Host: evil.example/x?y#z\r\n",
        "Host: x\"><script>\r\n",
        "Host: user@evil.example\r\n",
        "Host: \r\n",
        "Host: a.example\r\nHost: b.example\r\n",
        "",
    ] {
        let answer = post(forged)?;
        assert_eq!(answer.status, 400, "{forged:?}: {}", answer.text());
        assert!(
            answer.json()["error"].is_string(),
            "{forged:?}: {}",
            answer.text()
        );
        assert_eq!(
            answer.header("access-control-allow-origin").as_deref(),
            Some("*")
        );
        assert_eq!(answer.header("location"), None);
    }
    let (status, todos) = host.call("GET", "/todos", None)?;
    assert_eq!(
        (status, todos),
        (200, serde_json::json!([])),
        "nothing was created"
    );

    let good = post("Host: todo.example:8080\r\n")?;
    assert_eq!(good.status, 201);
    assert_eq!(
        good.header("location").as_deref(),
        Some("http://todo.example:8080/todos/1")
    );
    Ok(())
}

#[test]
fn a_public_url_pins_every_absolute_url_whatever_host_says() -> anyhow::Result<()> {
    let host = Host::start(&[
        "--store",
        "memory://",
        "--public-url",
        "https://todo.example.com",
    ])?;
    let body = r#"{"title":"behind a proxy"}"#;
    let answer = raw_request(
        host.addr(),
        format!(
            "POST /todos HTTP/1.1\r\nHost: internal:3001\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )?;
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(
        answer.header("location").as_deref(),
        Some("https://todo.example.com/todos/1")
    );
    assert_eq!(answer.json()["url"], "https://todo.example.com/todos/1");
    Ok(())
}

//! Operating the host: the admin listener's metrics (parsed by the exposition format's grammar,
//! counters checked against exactly what was sent), health and readiness, and zero-downtime
//! reloads under load (`POST /admin/reload`, `SIGHUP`), refused reloads included.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use support::{Host, fixture, temp_dir};

/// The todo component as `build.rs` built it.
const TODO_WASM: &str = env!("TODO_COMPONENT_WASM");

/// A sample's identity: metric name and its labels, sorted.
type Series = (String, BTreeMap<String, String>);

/// Parses an OpenMetrics / Prometheus text exposition by its grammar: `# HELP`, `# TYPE`,
/// `# UNIT` lines, samples `name{label="value",...} number`, `# EOF` last. Every sample must
/// belong to a family declared by `# TYPE`. Fails on the first line that does not fit.
fn parse_exposition(text: &str) -> anyhow::Result<BTreeMap<Series, f64>> {
    fn is_name(name: &str, colons: bool) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
    }
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    anyhow::ensure!(
        lines.last() == Some(&"# EOF"),
        "the exposition does not end with # EOF"
    );
    for (number, line) in lines.iter().enumerate() {
        let at = || format!("line {}: {line:?}", number + 1);
        if *line == "# EOF" {
            anyhow::ensure!(number + 1 == lines.len(), "{}: # EOF before the end", at());
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name.with_context(at)?;
            anyhow::ensure!(is_name(name, true), "{}: bad metric name", at());
            match kind {
                Some("TYPE") => {
                    let kind = rest.with_context(at)?;
                    anyhow::ensure!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "gaugehistogram",
                            "summary",
                            "info",
                            "stateset",
                            "unknown"
                        ]
                        .contains(&kind),
                        "{}: unknown type",
                        at()
                    );
                    families.insert(name.to_string(), kind.to_string());
                }
                Some("HELP" | "UNIT") => {}
                _ => bail!("{}: not HELP, TYPE, UNIT or EOF", at()),
            }
            continue;
        }
        // A sample: name, optional labels, a value (and an optional timestamp).
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => bail!("{}: a sample with no value", at()),
        };
        anyhow::ensure!(is_name(name, true), "{}: bad metric name", at());
        let mut labels = BTreeMap::new();
        let rest = if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            let end = loop {
                let (start, c) = chars.next().with_context(at)?;
                if c == '}' {
                    break start;
                }
                if c == ',' {
                    continue;
                }
                let eq = inner[start..].find('=').with_context(at)? + start;
                let label = &inner[start..eq];
                anyhow::ensure!(is_name(label, false), "{}: bad label name {label:?}", at());
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                anyhow::ensure!(
                    chars.next().map(|(_, c)| c) == Some('"'),
                    "{}: unquoted label",
                    at()
                );
                let mut value = String::new();
                loop {
                    match chars.next().with_context(at)? {
                        (_, '"') => break,
                        (_, '\\') => match chars.next().with_context(at)?.1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            other => bail!("{}: bad escape \\{other}", at()),
                        },
                        (_, c) => value.push(c),
                    }
                }
                labels.insert(label.to_string(), value);
            };
            &inner[end + 1..]
        } else {
            rest
        };
        let mut fields = rest.split_whitespace();
        let value = fields.next().with_context(at)?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            number => number.parse().with_context(at)?,
        };
        if let Some(timestamp) = fields.next() {
            timestamp.parse::<f64>().with_context(at)?;
        }
        anyhow::ensure!(fields.next().is_none(), "{}: trailing fields", at());
        let family = [
            "_total", "_bucket", "_count", "_sum", "_created", "_info", "",
        ]
        .iter()
        .find_map(|suffix| {
            name.strip_suffix(suffix)
                .filter(|family| families.contains_key(*family))
        });
        anyhow::ensure!(family.is_some(), "{}: no # TYPE for this sample", at());
        samples.insert((name.to_string(), labels), value);
    }
    Ok(samples)
}

/// The value of the sample `name` whose labels include `labels` (summed over the rest).
fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, l), _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// `http://ADDR` of the admin listener, from the start-up line.
fn admin_base(host: &Host) -> anyhow::Result<String> {
    let (_, rest) = host
        .banner
        .split_once("admin: http://")
        .context("the start-up line names no admin listener")?;
    Ok(format!(
        "http://{}",
        rest.split('/').next().context("no address")?
    ))
}

fn admin(host: &Host, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let url = format!("{}{path}", admin_base(host)?);
    let answer = match ureq::request(method, &url).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(err) => return Err(err).with_context(|| format!("{method} {url}")),
    };
    Ok((answer.status(), answer.into_string()?))
}

fn scrape(host: &Host) -> anyhow::Result<BTreeMap<Series, f64>> {
    let (status, text) = admin(host, "GET", "/metrics")?;
    anyhow::ensure!(status == 200, "GET /metrics: {status} {text}");
    parse_exposition(&text).with_context(|| format!("in:\n{text}"))
}

#[test]
fn metrics_count_exactly_what_was_sent() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let faults = fixture("faults")?;
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"mix\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"todo\"\n\
             [[trigger.http]]\nroute = \"/faults/...\"\ncomponent = \"faults\"\n\
             [component.todo]\nsource = \"{TODO_WASM}\"\nkey_value_stores = [\"default\"]\n\
             [component.faults]\nsource = \"{}\"\n",
            faults.display()
        ),
    )?;
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(&config, "[key_value_store.default]\ntype = \"memory\"\n")?;
    let host = Host::start(&[
        "up",
        "--manifest",
        &manifest.display().to_string(),
        "--runtime-config-file",
        &config.display().to_string(),
        "--admin-listen",
        "127.0.0.1:0",
        "--request-timeout",
        "1s",
    ])?;
    for _ in 0..3 {
        assert_eq!(
            host.call("POST", "/todos", Some(r#"{"title":"x"}"#))?.0,
            201
        );
    }
    for _ in 0..2 {
        assert_eq!(host.call("GET", "/todos", None)?.0, 200);
    }
    assert_eq!(host.call("GET", "/todos/999", None)?.0, 404);
    assert_eq!(host.request("GET", "/faults/trap", None)?.status, 500);
    assert_eq!(host.request("GET", "/faults/loop", None)?.status, 504);

    let samples = scrape(&host)?;
    let requests = "todo_host_requests_total";
    assert_eq!(
        value(&samples, requests, &[("route", "todos"), ("status", "2xx")]),
        5.0
    );
    assert_eq!(
        value(&samples, requests, &[("route", "todos"), ("status", "4xx")]),
        1.0
    );
    assert_eq!(
        value(&samples, requests, &[("route", "other"), ("status", "5xx")]),
        2.0
    );
    assert_eq!(
        value(&samples, requests, &[]),
        8.0,
        "nothing else was counted"
    );
    let refusals = "todo_host_refusals_total";
    assert_eq!(value(&samples, refusals, &[("reason", "trap")]), 1.0);
    assert_eq!(value(&samples, refusals, &[("reason", "timeout")]), 1.0);
    assert_eq!(value(&samples, refusals, &[]), 2.0);
    assert_eq!(
        value(&samples, "todo_host_request_duration_seconds_count", &[]),
        8.0
    );
    // Every request that reached a guest made an instance: the 404 too; the loop was stopped.
    assert_eq!(
        value(
            &samples,
            "todo_host_instantiation_duration_seconds_count",
            &[]
        ),
        8.0
    );
    // Key-value calls, in the store labelled `default`, a memory backend: what one create costs
    // is the component's business, so measure it with one more create; the three before must
    // have cost exactly three times that.
    let kv = [("store", "default"), ("backend", "memory")];
    let increments = |samples: &BTreeMap<Series, f64>| {
        value(
            samples,
            "todo_host_kv_operations_total",
            &[("op", "increment"), kv[0], kv[1]],
        )
    };
    let before = increments(&samples);
    assert_eq!(
        host.call("POST", "/todos", Some(r#"{"title":"x"}"#))?.0,
        201
    );
    let one_create = increments(&scrape(&host)?) - before;
    assert!(one_create >= 1.0, "a create made no increment");
    assert_eq!(
        before,
        3.0 * one_create,
        "{before} increments for 3 creates"
    );
    assert_eq!(value(&samples, "todo_host_kv_errors_total", &[]), 0.0);
    assert_eq!(value(&samples, "todo_host_requests_in_flight", &[]), 0.0);
    assert_eq!(value(&samples, "todo_host_store_up", &kv), 1.0);
    assert_eq!(
        value(
            &samples,
            "todo_host_component_info",
            &[("component", "todo")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "todo_host_component_info",
            &[("component", "faults")]
        ),
        1.0
    );
    // The public port serves none of it.
    let public = host.request("GET", "/metrics", None)?;
    assert!(
        !public.text().contains("todo_host_"),
        "the public port served metrics"
    );
    Ok(())
}

#[test]
fn readiness_follows_the_store_and_health_the_process() -> anyhow::Result<()> {
    let mut redis = support::redis::RedisServer::start()?;
    let host = Host::start(&["--store", &redis.url(), "--admin-listen", "127.0.0.1:0"])?;
    assert_eq!(admin(&host, "GET", "/healthz")?.0, 200);
    assert_eq!(admin(&host, "GET", "/readyz")?.0, 200);
    redis.stop()?;
    let (status, body) = admin(&host, "GET", "/readyz")?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store 'default'"), "{body}");
    assert_eq!(admin(&host, "GET", "/healthz")?.0, 200, "still serving");
    assert_eq!(
        value(
            &scrape(&host)?,
            "todo_host_store_up",
            &[("store", "default")]
        ),
        0.0
    );
    redis.restart()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin(&host, "GET", "/readyz")?.0 != 200 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not ready again after Redis came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[test]
fn metrics_off_records_nothing_and_health_still_answers() -> anyhow::Result<()> {
    let host = Host::start(&[
        "--store",
        "memory://",
        "--no-metrics",
        "--admin-listen",
        "127.0.0.1:0",
    ])?;
    let (status, _) = host.call("POST", "/todos", Some(r#"{"title":"counted nowhere"}"#))?;
    assert_eq!(status, 201);
    let (status, body) = admin(&host, "GET", "/metrics")?;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("--no-metrics"), "{body}");
    assert_eq!(admin(&host, "GET", "/healthz")?.0, 200);
    assert_eq!(admin(&host, "GET", "/readyz")?.0, 200);
    Ok(())
}

/// Writes a copy of the version fixture that answers `version` (8 characters) to `path`.
fn write_version(path: &Path, version: &str) -> anyhow::Result<()> {
    anyhow::ensure!(version.len() == 8, "versions are 8 characters: {version:?}");
    let mut bytes = std::fs::read(fixture("version")?)?;
    let marker = b"VERSION:00000000";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .context("the version marker is not in the fixture")?;
    bytes[at + 8..at + 16].copy_from_slice(version.as_bytes());
    // Written beside and renamed: the host never reads half a file.
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// A host serving version `v0000001` of the version fixture from a file it can be reloaded
/// from, with an admin listener; the folder lives as long as the returned guard.
fn version_host() -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf, Host)> {
    let dir = temp_dir()?;
    let component = dir.path().join("app.wasm");
    write_version(&component, "v0000001")?;
    let host = Host::start(&[
        "--store",
        "memory://",
        "--component",
        &component.display().to_string(),
        "--admin-listen",
        "127.0.0.1:0",
    ])?;
    Ok((dir, component, host))
}

/// What one client request saw: when it started, and the version that answered (or the error).
type Seen = (Instant, Result<String, String>);

#[test]
fn reloads_under_load_drop_no_request_and_switch_every_later_request() -> anyhow::Result<()> {
    let (_dir, component, host) = version_host()?;
    let host = &host;
    let stop = AtomicBool::new(false);
    let seen: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
    // Ten reloads: eight good ones (one by SIGHUP) and two refused. Each good swap: its version,
    // and when its reload call returned.
    let mut swaps: Vec<(String, Instant)> = vec![("v0000001".to_string(), Instant::now())];
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..32 {
            scope.spawn(|| {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let answer = match host.request("GET", "/version", None) {
                        Ok(r) if r.status == 200 => Ok(r.text()),
                        Ok(r) => Err(format!("{} {}", r.status, r.text())),
                        Err(err) => Err(format!("{err:#}")),
                    };
                    mine.push((started, answer));
                }
                seen.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        for round in 2..=11 {
            let version = format!("v{round:07}");
            match round {
                // A file that is not a component: refused, the running one keeps serving.
                5 => {
                    std::fs::write(&component, b"not a component")?;
                    let (status, body) = admin(host, "POST", "/admin/reload")?;
                    assert_eq!(status, 422, "{body}");
                    assert!(body.contains("cannot load component"), "{body}");
                }
                // A component that loads and links, and traps on its smoke request.
                8 => {
                    write_version(&component, "BROKEN08")?;
                    let (status, body) = admin(host, "POST", "/admin/reload")?;
                    assert_eq!(status, 422, "{body}");
                    assert!(body.contains("smoke request"), "{body}");
                }
                // SIGHUP reloads too.
                10 => {
                    write_version(&component, &version)?;
                    support::signal(host.pid(), "HUP")?;
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while host.request("GET", "/version", None)?.text() != version {
                        anyhow::ensure!(Instant::now() < deadline, "SIGHUP did not reload");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    swaps.push((version, Instant::now()));
                }
                _ => {
                    write_version(&component, &version)?;
                    let (status, body) = admin(host, "POST", "/admin/reload")?;
                    assert_eq!(status, 200, "{body}");
                    swaps.push((version, Instant::now()));
                }
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        stop.store(true, Ordering::Relaxed);
        Ok(())
    })?;
    let seen = seen.into_inner().unwrap_or_else(|e| e.into_inner());
    let failed: Vec<_> = seen.iter().filter(|(_, r)| r.is_err()).collect();
    println!(
        "{} requests from 32 clients over {} good swaps and 2 refused ones: {} failed",
        seen.len(),
        swaps.len() - 1,
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "failed requests: {:?}",
        &failed[..failed.len().min(5)]
    );
    // A request that started after swap i returned is answered by version i (or a later one
    // only once swap i+1 has begun, which the window below allows for).
    for (i, (version, returned)) in swaps.iter().enumerate() {
        let next = swaps.get(i + 1).map(|(_, at)| *at);
        for (started, answer) in &seen {
            let answer = answer.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
            let in_window = *started > *returned
                && next.is_none_or(|n| *started < n - Duration::from_millis(100));
            if in_window {
                assert_eq!(
                    answer, version,
                    "a request started after {version} was swapped in got {answer}"
                );
            }
        }
    }
    let known: Vec<&str> = swaps.iter().map(|(v, _)| v.as_str()).collect();
    for (_, answer) in &seen {
        let answer = answer.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(
            known.contains(&answer.as_str()),
            "an answer from no deployed version: {answer}"
        );
    }
    let samples = scrape(host)?;
    assert_eq!(
        value(&samples, "todo_host_reloads_total", &[("outcome", "ok")]),
        8.0
    );
    assert_eq!(
        value(
            &samples,
            "todo_host_reloads_total",
            &[("outcome", "refused")]
        ),
        2.0
    );
    Ok(())
}

#[test]
fn bad_reload_requests_change_nothing() -> anyhow::Result<()> {
    let (_dir, component, host) = version_host()?;
    assert_eq!(admin(&host, "GET", "/admin/reload")?.0, 405);
    let url = format!("{}/admin/reload", admin_base(&host)?);
    let with_body = match ureq::post(&url).send_string("{\"component\":\"/etc/passwd\"}") {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(status, _)) => status,
        Err(err) => return Err(err.into()),
    };
    assert_eq!(with_body, 400);
    std::fs::remove_file(&component)?;
    let (status, body) = admin(&host, "POST", "/admin/reload")?;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains(&component.display().to_string()), "{body}");
    assert_eq!(
        host.request("GET", "/", None)?.text(),
        "v0000001",
        "the old one serves"
    );
    assert_eq!(admin(&host, "GET", "/nope")?.0, 404);
    // The public port does not reload anything.
    assert_ne!(
        host.request("POST", "/admin/reload", None)?.text(),
        "reloaded"
    );
    Ok(())
}

/// The access-log lines in `log`.
fn access_lines(log: &Path) -> anyhow::Result<Vec<String>> {
    Ok(std::fs::read_to_string(log)?
        .lines()
        .filter(|line| line.contains("todo_host::access"))
        .map(str::to_string)
        .collect())
}

/// The value of `name=value` in an access line (`path="/todos"` gives `/todos`).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
        .map(|value| value.trim_matches('"'))
}

#[test]
fn the_access_log_has_one_line_per_request_soon_and_all_of_them_at_exit() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let log = dir.path().join("host.log");
    let (mut child, base) = support::host_logging_to(&log, &[])?;
    let addr = base.trim_start_matches("http://").to_string();
    let sent: Vec<(&str, &str, Option<&str>, u16)> = vec![
        ("POST", "/todos", Some(r#"{"title":"logged"}"#), 201),
        ("GET", "/todos/1", None, 200),
        ("GET", "/todos/999", None, 404),
        ("POST", "/todos", Some("{not json"), 400),
        ("DELETE", "/todos/1", None, 204),
    ];
    for (method, path, body, status) in &sent {
        let body = body.map(|body| ("application/json", body.as_bytes()));
        let answer = support::raw_call(&addr, method, path, body)?;
        assert_eq!(answer.status, *status, "{method} {path}");
    }
    // Written in batches, yet soon: within a few flush periods, with the process still running.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = access_lines(&log)?;
    while lines.len() < sent.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        lines = access_lines(&log)?;
    }
    assert_eq!(lines.len(), sent.len(), "one line per request: {lines:#?}");
    for ((method, path, _, status), line) in sent.iter().zip(&lines) {
        assert_eq!(field(line, "method"), Some(*method), "{line}");
        assert_eq!(field(line, "path"), Some(*path), "{line}");
        assert_eq!(
            field(line, "status"),
            Some(status.to_string().as_str()),
            "{line}"
        );
        for number in ["total_us", "instantiate_us", "guest_us", "kv_calls"] {
            let value = field(line, number).with_context(|| format!("no {number}: {line}"))?;
            value
                .parse::<u64>()
                .with_context(|| format!("{number}={value}: {line}"))?;
        }
        let hash = field(line, "component").with_context(|| format!("no component: {line}"))?;
        assert!(
            hash.len() >= 8,
            "a content hash names the component: {line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|line| field(line, "kv_calls").is_some_and(|n| n != "0")),
        "KV calls are counted: {lines:#?}"
    );
    // Lines still waiting in memory when the host is told to stop are written before it exits.
    let burst = 200;
    for _ in 0..burst {
        support::raw_call(&addr, "GET", "/todos", None)?;
    }
    support::signal(child.id(), "TERM")?;
    assert!(child.wait()?.success());
    assert_eq!(access_lines(&log)?.len(), sent.len() + burst);

    let quiet_log = dir.path().join("quiet.log");
    let (mut quiet, base) = support::host_logging_to(&quiet_log, &["--no-access-log"])?;
    support::raw_call(base.trim_start_matches("http://"), "GET", "/todos", None)?;
    support::signal(quiet.id(), "TERM")?;
    assert!(quiet.wait()?.success());
    assert_eq!(access_lines(&quiet_log)?, Vec::<String>::new());
    Ok(())
}

/// Each route's round trips to the store on `todo-host`, as its access log counts them
/// (`kv_calls`), within `todo_guest::trips::BOUNDS` on SQLite stores of 1,000 and 100,000
/// todos: the in-process bound of `guest/tests/pages.rs`, through the real host and store.
#[test]
fn each_route_keeps_to_its_round_trips_through_the_host() -> anyhow::Result<()> {
    for size in [1_000u64, 100_000] {
        let dir = temp_dir()?;
        let url = support::sqlite_url(dir.path());
        support::seed_todos(&url, size)?;
        let log = dir.path().join("host.log");
        let (mut child, base) = support::host_logging_to(&log, &["--store", &url])?;
        let addr = base.trim_start_matches("http://").to_string();
        // Every request sent, with the bound its access line is held to (none for the read
        // that recomputes what a write changed).
        let mut sent: Vec<(String, String, Option<usize>)> = Vec::new();
        let mut send = |method: &str, target: &str, body: Option<&str>, bound| {
            let body = body.map(|body| ("application/json", body.as_bytes()));
            let answer = support::raw_call(&addr, method, target, body)?;
            anyhow::ensure!(answer.status < 300, "{method} {target}: {}", answer.status);
            sent.push((method.to_string(), target.to_string(), bound));
            anyhow::Ok(())
        };
        for route in todo_guest::trips::BOUNDS {
            let target = route.target_for(size);
            send(route.method, &target, route.body, Some(route.bound))?;
            if route.method != "GET" {
                send("GET", "/todos?limit=10", None, None)?;
                send("GET", "/todos?limit=10", None, Some(2))?;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut lines = access_lines(&log)?;
        while lines.len() < sent.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            lines = access_lines(&log)?;
        }
        support::signal(child.id(), "TERM")?;
        child.wait()?;
        assert_eq!(lines.len(), sent.len(), "one line per request: {lines:#?}");
        for ((method, target, bound), line) in sent.iter().zip(&lines) {
            let calls: usize = field(line, "kv_calls")
                .with_context(|| format!("no kv_calls: {line}"))?
                .parse()?;
            assert!(
                calls > 0,
                "{method} {target} made no call to the store: {line}"
            );
            if let Some(bound) = bound {
                assert!(
                    calls <= *bound,
                    "{method} {target} at {size} todos: {calls} round trips, the bound is {bound}"
                );
            }
        }
    }
    Ok(())
}

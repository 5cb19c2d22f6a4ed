//! Scale to zero and back, out and in: `todo-host` on a listening socket its parent holds
//! (systemd's socket activation, played here by a parent in the test), exiting when idle
//! (`--idle-exit`) and started again by the next connection, and processes joining and leaving
//! one shared socket under load. Real processes, real sockets, a real SQLite file; the client
//! counts every failed request.

mod support;

use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use support::activation::{Activator, SharedSocket, host_with_fds};
use support::{HOST_BIN, sqlite_url, temp_dir};

/// Short, so that twenty cycles take seconds.
const IDLE: &str = "150ms";

/// One request as a client makes it: a fresh agent keeps at most one connection.
fn client() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
}

#[test]
fn twenty_cycles_of_idle_exit_and_activation_answer_every_request_and_keep_the_data()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let store = sqlite_url(dir.path());
    let activator = Activator::start(&["--store", &store, "--idle-exit", IDLE])?;
    let base = activator.base();
    let agent = client();
    for cycle in 0..20 {
        assert!(
            !activator.host_running(),
            "cycle {cycle}: a host still runs before the request"
        );
        // The connection is made while no process runs; the parent starts one to answer it.
        let created: serde_json::Value = agent
            .post(&format!("{base}/todos"))
            .set("content-type", "application/json")
            .send_string(&format!(r#"{{"title":"cycle {cycle}"}}"#))
            .with_context(|| format!("cycle {cycle}: the create failed"))?
            .into_json()?;
        assert_eq!(created["title"], format!("cycle {cycle}"));
        activator.wait_for_exit(Duration::from_secs(10))?;
    }
    let listed: Vec<serde_json::Value> = agent.get(&format!("{base}/todos")).call()?.into_json()?;
    let titles: Vec<&str> = listed.iter().filter_map(|t| t["title"].as_str()).collect();
    let expected: Vec<String> = (0..20).map(|cycle| format!("cycle {cycle}")).collect();
    assert_eq!(
        titles, expected,
        "every cycle's todo, kept across 21 processes"
    );
    activator.wait_for_exit(Duration::from_secs(10))?;
    let activations = activator.stop()?;
    assert_eq!(
        activations.started, 21,
        "one process per cycle, one for the list"
    );
    assert_eq!(activations.exits.len(), 21);
    assert!(
        activations.exits.iter().all(|status| status.success()),
        "every idle exit is clean: {:?}",
        activations.exits
    );
    Ok(())
}

#[test]
fn an_idle_exit_closes_idle_connections_and_the_store_and_says_why() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let socket = SharedSocket::bind()?;
    let (mut command, spares) = host_with_fds(
        &[socket.listener()],
        &[("LISTEN_FDS", "1"), ("RUST_LOG", "info")],
        &["--store", &sqlite_url(dir.path()), "--idle-exit", "300ms"],
    )?;
    let mut host = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    drop(spares);
    let created = client()
        .post(&format!("{}/todos", socket.base()))
        .set("content-type", "application/json")
        .send_string(r#"{"title":"kept"}"#)?;
    assert_eq!(created.status(), 201);
    // An idle keep-alive connection does not keep the host up: stopping closes it.
    let mut held = TcpStream::connect(socket.addr)?;
    held.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut byte = [0u8; 1];
    let read = held.read(&mut byte);
    assert!(
        matches!(read, Ok(0)),
        "the idle connection is closed when the host exits: {read:?}"
    );
    let status = wait_with_limit(&mut host, Duration::from_secs(10))?;
    assert!(status.success(), "idle exit status: {status}");
    let mut log = String::new();
    host.stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut log)?;
    assert!(
        log.contains("no request for 300ms: exiting (--idle-exit)"),
        "{log}"
    );
    assert!(log.contains("store closed"), "{log}");
    let database = dir.path().join("todo.db");
    assert!(database.exists(), "{}", database.display());
    // SQLite removes its write-ahead log when the last connection closes cleanly.
    let wal = dir.path().join("todo.db-wal");
    assert!(
        !wal.exists(),
        "{} is left: a connection was not closed",
        wal.display()
    );
    Ok(())
}

#[test]
fn an_inherited_socket_is_served_and_the_start_up_line_names_its_address() -> anyhow::Result<()> {
    let socket = SharedSocket::bind()?;
    let host = socket.spawn_host(&["--store", "memory://"])?;
    assert!(
        host.banner
            .starts_with(&format!("Serving HTTP on http://{}/ (store: ", socket.addr)),
        "{}",
        host.banner
    );
    assert!(
        host.banner.contains("socket from the parent"),
        "{}",
        host.banner
    );
    let listed = client().get(&format!("{}/todos", socket.base())).call()?;
    assert_eq!(listed.status(), 200);
    Ok(())
}

#[test]
fn systemd_socket_activate_starts_the_host_at_the_first_connection() -> anyhow::Result<()> {
    // systemd's own implementation of the protocol, beside the test's parent: it binds, waits
    // for a connection, then execs the host with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut activate = std::process::Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=http"])
        .args([HOST_BIN, "--store", "memory://", "--idle-exit", "200ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {}",
                support::tools::install_hint(
                    "systemd-socket-activate, which the socket activation test runs",
                    "apt-get install systemd"
                )
            )
        })?;
    let mut stderr = std::io::BufReader::new(activate.stderr.take().context("stderr")?);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line)?;
    assert!(line.contains("Listening on"), "{line}");
    let mut activate = KillOnDrop(activate);
    let answer = client()
        .get(&format!("http://127.0.0.1:{port}/todos"))
        .call()?;
    assert_eq!(answer.status(), 200);
    let mut stdout = String::new();
    activate
        .0
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)?;
    assert!(
        stdout.starts_with(&format!("Serving HTTP on http://127.0.0.1:{port}/ (")),
        "{stdout}"
    );
    let status = wait_with_limit(&mut activate.0, Duration::from_secs(10))?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[test]
fn an_admin_socket_named_admin_serves_the_admin_routes() -> anyhow::Result<()> {
    let http = SharedSocket::bind()?;
    let admin = SharedSocket::bind()?;
    let (mut command, spares) = host_with_fds(
        &[http.listener(), admin.listener()],
        &[("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "http:admin")],
        &["--store", "memory://"],
    )?;
    let host = command.stdout(Stdio::piped()).spawn()?;
    drop(spares);
    let mut host = KillOnDrop(host);
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(host.0.stdout.take().context("stdout")?),
        &mut banner,
    )?;
    assert!(
        banner.contains(&format!("admin: http://{}/", admin.addr)),
        "{banner}"
    );
    let health = client().get(&format!("{}/healthz", admin.base())).call()?;
    assert_eq!(health.status(), 200);
    let api = client().get(&format!("{}/todos", http.base())).call()?;
    assert_eq!(api.status(), 200);
    Ok(())
}

/// An inherited descriptor that must be refused: what it is, the descriptor, the environment
/// that comes with it, and what the error must say.
type Refused<'a> = (
    &'a str,
    &'a dyn std::os::fd::AsFd,
    &'a [(&'a str, &'a str)],
    &'a str,
);

#[test]
fn what_is_not_a_listening_tcp_socket_is_refused_naming_what_was_found() -> anyhow::Result<()> {
    let file = std::fs::File::open(HOST_BIN)?;
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let bound_only = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        None,
    )?;
    rustix::net::bind(&bound_only, &"127.0.0.1:0".parse::<std::net::SocketAddr>()?)?;
    let listening = TcpListener::bind("127.0.0.1:0")?;
    let one = [("LISTEN_FDS", "1")];
    let cases: [Refused; 6] = [
        (
            "a file",
            &file,
            &one,
            "inherited descriptor 3 is not a TCP socket",
        ),
        (
            "a UDP socket",
            &udp,
            &one,
            "inherited descriptor 3 is not a TCP socket",
        ),
        (
            "a TCP socket that is bound but not listening",
            &bound_only,
            &one,
            "inherited descriptor 3 is a TCP socket that is not listening (bound to 127.0.0.1:",
        ),
        (
            "sockets for another process",
            &listening,
            &[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")],
            "LISTEN_PID is '1' but this process is",
        ),
        (
            "a count that the names do not match",
            &listening,
            &[("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "http")],
            "LISTEN_FDNAMES is 'http', 1 name(s), but LISTEN_FDS is 2",
        ),
        (
            "a count that is not a number",
            &listening,
            &[("LISTEN_FDS", "all")],
            "LISTEN_FDS is 'all'",
        ),
    ];
    for (what, fd, env, expected) in cases {
        let (mut command, spares) = host_with_fds(&[fd], env, &["--store", "memory://"])?;
        let output = command.stdin(Stdio::null()).output()?;
        drop(spares);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: the host started");
        assert!(
            stderr.contains("todo-host: socket activation: ") && stderr.contains(expected),
            "{what}: {stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "{what}: nothing may serve: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(())
}

#[test]
fn idle_exit_without_a_unit_or_of_zero_is_refused_before_anything_listens() -> anyhow::Result<()> {
    for (value, expected) in [("30", "'30'"), ("0s", "above zero"), ("soon", "'soon'")] {
        let output = std::process::Command::new(HOST_BIN)
            .args(["--listen", "127.0.0.1:0", "--store", "memory://"])
            .args(["--idle-exit", value])
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "--idle-exit {value}: {stderr}"
        );
        assert!(stderr.contains(expected), "--idle-exit {value}: {stderr}");
        assert!(output.stdout.is_empty(), "--idle-exit {value}: it served");
    }
    Ok(())
}

#[test]
fn hosts_join_and_leave_one_shared_socket_under_load_without_one_failed_request()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let store = sqlite_url(dir.path());
    let args = ["--store", store.as_str()];
    let socket = Arc::new(SharedSocket::bind()?);
    let mut hosts = vec![socket.spawn_host(&args)?];

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..6)
        .map(|client_index| {
            let (socket, stop, done, failures) =
                (socket.clone(), stop.clone(), done.clone(), failures.clone());
            std::thread::spawn(move || {
                let agent = client();
                let base = socket.base();
                let mut turn = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    turn += 1;
                    let outcome = if turn % 2 == 1 {
                        agent
                            .post(&format!("{base}/todos"))
                            .set("content-type", "application/json")
                            .send_string(&format!(r#"{{"title":"c{client_index} {turn}"}}"#))
                    } else {
                        agent.get(&format!("{base}/todos/1")).call()
                    };
                    match outcome {
                        Ok(response) if (200..300).contains(&response.status()) => {
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(response) => failures
                            .lock()
                            .unwrap()
                            .push(format!("status {}", response.status())),
                        Err(err) => failures.lock().unwrap().push(err.to_string()),
                    }
                }
            })
        })
        .collect();

    let mut stopped = Vec::new();
    std::thread::sleep(Duration::from_millis(500));
    for _cycle in 0..5 {
        hosts.push(socket.spawn_host(&args)?);
        hosts.push(socket.spawn_host(&args)?);
        std::thread::sleep(Duration::from_millis(700));
        // The two oldest leave, so that every process is replaced in turn.
        for host in hosts.drain(..2).collect::<Vec<_>>() {
            stopped.push(host.terminate()?);
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("a client thread panicked");
    }
    let failures = failures.lock().unwrap();
    let served = done.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed while hosts came and went: {:?}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(stopped.len(), 10);
    assert!(
        stopped.iter().all(|status| status.success()),
        "SIGTERM drains and exits 0: {stopped:?}"
    );
    assert!(served > 100, "the load ran: {served} requests");
    Ok(())
}

#[test]
fn the_systemd_units_in_deploy_start_a_host_that_serves_and_idles_out() -> anyhow::Result<()> {
    let units = support::workspace().join("deploy/systemd");
    let socket_unit = std::fs::read_to_string(units.join("todo-host.socket"))?;
    let service_unit = std::fs::read_to_string(units.join("todo-host.service"))?;
    let setting = |unit: &str, key: &str| -> anyhow::Result<String> {
        unit.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .with_context(|| format!("no {key}= in the unit"))
    };
    let name = setting(&socket_unit, "FileDescriptorName")?;
    assert_eq!(setting(&socket_unit, "ListenStream")?, "127.0.0.1:3001");
    assert_eq!(setting(&service_unit, "Type")?, "notify");
    // The service's command line as systemd would run it, with the state folder in a temporary
    // one and the binary under test.
    let dir = temp_dir()?;
    let state = dir.path().display().to_string();
    let exec = setting(&service_unit, "ExecStart")?;
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/todo-host"));
    let args: Vec<String> = words
        .map(|word| word.replace("/var/lib/todo-host", &state))
        .collect();
    let idle = args
        .iter()
        .position(|arg| arg == "--idle-exit")
        .context("the service sets --idle-exit")?;
    let mut args = args.clone();
    args[idle + 1] = "200ms".to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let socket = SharedSocket::bind()?;
    let (mut command, spares) = host_with_fds(
        &[socket.listener()],
        &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", &name)],
        &args,
    )?;
    let mut host = KillOnDrop(command.stdout(Stdio::null()).spawn()?);
    drop(spares);
    let created = client()
        .post(&format!("{}/todos", socket.base()))
        .set("content-type", "application/json")
        .send_string(r#"{"title":"from the unit"}"#)?;
    assert_eq!(created.status(), 201);
    let status = wait_with_limit(&mut host.0, Duration::from_secs(10))?;
    assert!(status.success(), "{status}");
    assert!(
        dir.path().join("todo.db").exists(),
        "the store is in the state folder"
    );
    Ok(())
}

#[test]
fn an_idle_host_wakes_no_thread_and_spends_no_cpu() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let host = support::Host::start(&["--store", &sqlite_url(dir.path())])?;
    assert_eq!(
        host.call("POST", "/todos", Some(r#"{"title":"then idle"}"#))?
            .0,
        201
    );
    std::thread::sleep(Duration::from_millis(300));
    let pid = host.pid();
    let (before, cpu_before) = (context_switches(pid)?, cpu_ticks(pid)?);
    std::thread::sleep(Duration::from_secs(3));
    let (after, cpu_after) = (context_switches(pid)?, cpu_ticks(pid)?);
    // Threads alive at both ends: a blocking-pool thread that ends its idle wait exits once.
    let woken: Vec<(u32, u64)> = after
        .iter()
        .filter_map(|(tid, n)| Some((*tid, n - before.get(tid)?)))
        .filter(|(_, woken)| *woken > 0)
        .collect();
    let total: u64 = woken.iter().map(|(_, n)| n).sum();
    // A ticker at 100 Hz and a flusher at 10 Hz woke it 318 times in 3 s before.
    assert!(
        total <= 3,
        "threads woke {total} times in 3 s of idleness (thread, wake-ups): {woken:?}"
    );
    assert!(
        cpu_after - cpu_before <= 1,
        "{} clock ticks of CPU while idle",
        cpu_after - cpu_before
    );
    Ok(())
}

/// Context switches so far of each thread of `pid`.
fn context_switches(pid: u32) -> anyhow::Result<std::collections::HashMap<u32, u64>> {
    let mut switches = std::collections::HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?;
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        let count: u64 = status
            .lines()
            .filter(|line| line.contains("ctxt_switches:"))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        let tid = task.file_name().to_string_lossy().parse()?;
        switches.insert(tid, count);
    }
    Ok(switches)
}

/// User plus system CPU time of `pid` so far, in clock ticks (`/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after_name = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name and state.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// Waits for `child` to exit, for up to `limit`.
fn wait_with_limit(
    child: &mut std::process::Child,
    limit: Duration,
) -> anyhow::Result<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if start.elapsed() > limit {
            anyhow::bail!("the host did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child killed when the test ends, whatever happens.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

//! A parent that holds the listening socket and hands it to `todo-host` processes the way
//! systemd does (descriptor 3, `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`): one at a time when
//! a connection waits and none runs ([`Activator`], socket activation), or several at once on
//! the one socket ([`SharedSocket::spawn_host`], scaling out and in).
//!
//! Descriptors are placed by `bash` (dash takes no descriptor above 9): each is duplicated above 10 without close-on-exec, and the
//! shell moves it to 3, 4, ... and `exec`s the host, so `$$` is the host's pid (`LISTEN_PID`, as
//! systemd sets it after its fork). No `unsafe` `pre_exec` is needed.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};

use super::HOST_BIN;

/// The lowest number the parent's duplicates take: above 3, 4, ... where they are moved to.
const FIRST_SPARE_FD: i32 = 10;

/// A command that starts `todo-host` with `fds` as descriptors 3, 4, ..., the environment
/// `env` (`LISTEN_PID` is set to the host's pid unless `env` sets it) and `args`. The
/// duplicates it holds must live until the command is spawned.
pub fn host_with_fds(
    fds: &[&dyn AsFd],
    env: &[(&str, &str)],
    args: &[&str],
) -> anyhow::Result<(Command, Vec<OwnedFd>)> {
    let mut spares = Vec::new();
    let mut script = String::from("exec");
    for (index, fd) in fds.iter().enumerate() {
        let spare = rustix::io::fcntl_dupfd_cloexec(fd, FIRST_SPARE_FD)
            .context("cannot duplicate a descriptor for the host")?;
        rustix::io::fcntl_setfd(&spare, rustix::io::FdFlags::empty())
            .context("cannot make a descriptor inheritable")?;
        script.push_str(&format!(" {}<&{}", index + 3, spare.as_raw_fd()));
        spares.push(spare);
    }
    for spare in &spares {
        script.push_str(&format!(" {}<&-", spare.as_raw_fd()));
    }
    let sets_pid = env.iter().any(|(name, _)| *name == "LISTEN_PID");
    if !sets_pid {
        script.push_str("; export LISTEN_PID=$$");
    }
    script.push_str("; exec \"$0\" \"$@\"");
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(script)
        .arg(HOST_BIN)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .envs(env.iter().copied());
    Ok((command, spares))
}

/// A listening socket on a free loopback port, held by the test as systemd holds a `.socket`
/// unit's.
pub struct SharedSocket {
    listener: TcpListener,
    pub addr: SocketAddr,
}

impl SharedSocket {
    pub fn bind() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts a `todo-host` on this socket with `args`, as systemd would (`LISTEN_FDNAMES=http`),
    /// and waits for its start-up line.
    pub fn spawn_host(&self, args: &[&str]) -> anyhow::Result<ActivatedHost> {
        let (mut command, spares) = host_with_fds(
            &[&self.listener],
            &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "http")],
            args,
        )?;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {HOST_BIN} on the shared socket"))?;
        drop(spares);
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if !line.starts_with("Serving HTTP on") {
            let status = child.wait()?;
            bail!("todo-host did not start on the shared socket (exit {status}): {line:?}");
        }
        Ok(ActivatedHost {
            child,
            banner: line.trim().to_string(),
        })
    }

    /// The socket itself, to poll it or hand it to a host by other means.
    pub fn listener(&self) -> &TcpListener {
        &self.listener
    }
}

/// A host started on a [`SharedSocket`]; killed when dropped.
pub struct ActivatedHost {
    child: Child,
    pub banner: String,
}

impl ActivatedHost {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        super::signal(self.child.id(), "TERM")?;
        Ok(self.child.wait()?)
    }
}

impl Drop for ActivatedHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an [`Activator`] did.
#[derive(Debug, Default, Clone)]
pub struct Activations {
    /// Hosts started.
    pub started: usize,
    /// Exit statuses of the hosts that have exited, in order.
    pub exits: Vec<ExitStatus>,
}

/// Socket activation in the test: a thread that holds the socket and starts a `todo-host` on it
/// whenever a connection waits and no host runs, as systemd does for a `.socket` unit. Hosts
/// that exit (`--idle-exit`) leave the socket open here, so the next connection waits for the
/// next host instead of being refused.
pub struct Activator {
    socket: Arc<SharedSocket>,
    stop: Arc<AtomicBool>,
    running: Arc<AtomicUsize>,
    record: Arc<Mutex<Activations>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

/// How often the activator looks at the socket and its host.
const ACTIVATOR_POLL: Duration = Duration::from_millis(2);

impl Activator {
    /// Starts activating `todo-host ARGS` on a new socket.
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        let socket = Arc::new(SharedSocket::bind()?);
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicUsize::new(0));
        let record = Arc::new(Mutex::new(Activations::default()));
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let thread = {
            let (socket, stop, running, record) = (
                socket.clone(),
                stop.clone(),
                running.clone(),
                record.clone(),
            );
            std::thread::spawn(move || activate(&socket, &args, &stop, &running, &record))
        };
        Ok(Self {
            socket,
            stop,
            running,
            record,
            thread: Some(thread),
        })
    }

    pub fn base(&self) -> String {
        self.socket.base()
    }

    /// Whether a host runs now.
    pub fn host_running(&self) -> bool {
        self.running.load(Ordering::SeqCst) > 0
    }

    /// What happened so far.
    pub fn activations(&self) -> Activations {
        self.record.lock().unwrap().clone()
    }

    /// Waits until no host runs (the last one exited), for up to `limit`.
    pub fn wait_for_exit(&self, limit: Duration) -> anyhow::Result<()> {
        let start = std::time::Instant::now();
        while self.host_running() {
            if start.elapsed() > limit {
                bail!("the host still runs after {limit:?}");
            }
            std::thread::sleep(ACTIVATOR_POLL);
        }
        Ok(())
    }

    /// Stops activating (killing a running host) and reports whether the thread failed.
    pub fn stop(mut self) -> anyhow::Result<Activations> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("the activator thread panicked"))??;
        }
        Ok(self.activations())
    }
}

impl Drop for Activator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The activator's loop: start a host when the socket is readable (a connection waits) and
/// none runs; reap it when it exits.
fn activate(
    socket: &SharedSocket,
    args: &[String],
    stop: &AtomicBool,
    running: &AtomicUsize,
    record: &Mutex<Activations>,
) -> anyhow::Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut host: Option<Child> = None;
    while !stop.load(Ordering::SeqCst) {
        if let Some(child) = &mut host {
            if let Some(status) = child.try_wait()? {
                record.lock().unwrap().exits.push(status);
                host = None;
                running.store(0, Ordering::SeqCst);
            }
            std::thread::sleep(ACTIVATOR_POLL);
            continue;
        }
        let mut polled = [rustix::event::PollFd::new(
            socket.listener(),
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: ACTIVATOR_POLL.as_nanos() as _,
        };
        if rustix::event::poll(&mut polled, Some(&timeout)).context("cannot poll the socket")? == 0
        {
            continue;
        }
        let (mut command, spares) = host_with_fds(
            &[socket.listener()],
            &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "http")],
            &args,
        )?;
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {HOST_BIN}"))?;
        drop(spares);
        running.store(1, Ordering::SeqCst);
        record.lock().unwrap().started += 1;
        host = Some(child);
    }
    if let Some(mut child) = host {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}

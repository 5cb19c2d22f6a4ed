//! The test bed of the nemesis tests (`tests/partition.rs`): a three-node NATS JetStream cluster,
//! durable (`sync_interval: always`), one node per network namespace ([`netns`]), and one
//! `todo-host` in each node's namespace, connected to that node, so that a host sits on each side
//! of any cut; and the clients, threads of the test pinned to a host each, that create todos and
//! read back ones acknowledged through any host, recording the history the checker ([`history`])
//! judges. The faults themselves are in the test file: each is a few lines over this.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::history::{Answer, Op, Request};
use crate::netns::Network;
use crate::support::Host;
use crate::support::nats::{NatsCluster, Placement, ReplicaState};

/// The todo component's bucket, as NATS names its stream.
pub const STREAM: &str = "KV_default";
/// Client threads.
pub const CLIENTS: usize = 8;
/// Each client's pause between two operations: enough load to meet every fault, little enough
/// that three servers, three hosts and the clients share two cores.
const PAUSE: Duration = Duration::from_millis(15);
/// How long a client waits for an answer before it calls the operation indeterminate. Longer
/// than any answer a host should take (a create makes several store operations, each bounded
/// at 5 s): a request still open then is one that hangs.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the test waits for the cluster to agree, for a host to list, for a leader to move.
const PATIENCE: Duration = Duration::from_secs(30);

/// The cluster, its network and the hosts.
pub struct Testbed {
    pub net: Network,
    pub cluster: NatsCluster,
    /// Host `i` runs in node `i`'s namespace.
    pub hosts: Vec<Host>,
}

impl Testbed {
    /// Builds the network, starts the cluster and one host per node, creates the bucket (the
    /// first todo) and moves the stream's lead to node 0, so that host 0 shares the leader's
    /// namespace.
    pub fn start() -> anyhow::Result<Self> {
        let net = Network::build(3)?;
        let places: Vec<Placement> = (0..3)
            .map(|i| Placement {
                netns: Some(net.names[i].clone()),
                ip: Some(net.ips[i].clone()),
            })
            .collect();
        let cluster = NatsCluster::start_placed(&places, true)?;
        // Host `i` names only node `i`, so it starts connected to the node beside it: pinned to
        // that node's side of a cut. (It learns of the others from the cluster, and moves to one
        // of them if its own goes away.)
        let hosts = (0..3)
            .map(|i| {
                let url = format!("nats://{}?replicas=3", cluster.nodes[i].addr());
                Host::start_wrapped(
                    &net.wrapper(i),
                    &format!("{}:0", net.ips[i]),
                    &["--store", &url],
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let bed = Self {
            net,
            cluster,
            hosts,
        };
        // The bucket is created on first use, and its first leader elected: on two busy cores
        // that may outlast a request.
        let deadline = Instant::now() + PATIENCE;
        loop {
            match bed.hosts[0].call("POST", "/todos", Some(r#"{"title":"first"}"#)) {
                Ok((201, _)) => break,
                other if Instant::now() > deadline => {
                    bail!("the first create never succeeded: {other:?}")
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        bed.lead_on(0)?;
        Ok(bed)
    }

    /// The index of the node leading the stream, as the cluster answers.
    pub fn leader(&self) -> anyhow::Result<usize> {
        let name = self.cluster.wait_for_leader(STREAM, PATIENCE)?;
        self.cluster.index_of(&name)
    }

    /// Moves the stream's lead to node `i` and waits until it leads.
    pub fn lead_on(&self, i: usize) -> anyhow::Result<()> {
        let name = self.cluster.nodes[i].name.clone();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let leader = self
                .cluster
                .stream_cluster(STREAM)
                .ok()
                .and_then(|info| info.leader);
            if leader.as_deref() == Some(&name) {
                return Ok(());
            }
            let asked = self.cluster.move_leader(STREAM, &name);
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name} did not take the lead of {STREAM} (leader {leader:?}; last stepdown: \
                 {asked:?})"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until every node holds the same copy of the stream (the same messages and
    /// sequences, each node asked for its own replica), and returns how long that took.
    pub fn wait_converged(&self, within: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let states: Vec<Option<ReplicaState>> = self
                .cluster
                .nodes
                .iter()
                .map(|node| node.stream_state(STREAM).ok().flatten())
                .collect();
            if states.iter().all(Option::is_some) && states.windows(2).all(|w| w[0] == w[1]) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                bail!("the nodes did not agree within {within:?}: {states:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the stream's leader reports every other replica current (caught up, as the
    /// leader's `STREAM.INFO` says), and returns how long that took. Works under load, unlike
    /// comparing the replicas' sequences.
    pub fn wait_replicas_current(&self, within: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let info = self.cluster.stream_cluster(STREAM);
            if let Ok(info) = &info
                && info.leader.is_some()
                && info.replicas.len() == self.cluster.nodes.len() - 1
                && info.replicas.iter().all(|(_, current, _)| *current)
            {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                bail!("the replicas were not all current within {within:?}: {info:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every todo id each host lists, each host asked until it answers (it may be between
    /// servers just after a fault).
    pub fn final_lists(&self) -> anyhow::Result<Vec<Vec<u64>>> {
        self.hosts.iter().map(list_patiently).collect()
    }

    /// Whether every host is still the process started at the beginning, alive.
    pub fn hosts_alive(&self) -> anyhow::Result<()> {
        for host in &self.hosts {
            let alive = std::process::Command::new("kill")
                .args(["-0", &host.pid().to_string()])
                .status()
                .is_ok_and(|status| status.success());
            anyhow::ensure!(alive, "host {} exited", host.addr());
        }
        Ok(())
    }
}

/// Every id `host` lists, asked again for up to [`PATIENCE`] while it fails.
pub fn list_patiently(host: &Host) -> anyhow::Result<Vec<u64>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match crate::support::listed_ids(host) {
            Ok(ids) => return Ok(ids),
            Err(err) if Instant::now() > deadline => {
                return Err(err.context(format!("{} could not list", host.addr())));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The clients' shared state while a fault runs.
pub struct Load {
    pub start: Instant,
    stop: AtomicBool,
    history: Mutex<Vec<Op>>,
    /// Ids acknowledged so far, for the reads to pick from.
    acknowledged: Mutex<Vec<u64>>,
}

impl Load {
    /// Now, from the start of the test.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// How long after `since` the first create through host `host` answered after `since` was
    /// acknowledged, if one was.
    pub fn created_through_since(&self, host: usize, since: Duration) -> Option<Duration> {
        let history = self.history.lock().unwrap();
        history
            .iter()
            .filter(|op| op.host == host && op.answered > since)
            .filter(|op| matches!(op.answer, Answer::Created(_)))
            .map(|op| op.answered - since)
            .min()
    }

    /// Waits until a create through every host has been acknowledged after `since`, for at most
    /// `within`; returns how long after `since` each host got there (`None`: not in time).
    pub fn wait_recovered(
        &self,
        hosts: usize,
        since: Duration,
        within: Duration,
    ) -> Vec<Option<Duration>> {
        let mut recovered = vec![None; hosts];
        while recovered.iter().any(Option::is_none) && self.now() < since + within {
            for (host, slot) in recovered.iter_mut().enumerate() {
                if slot.is_none() {
                    *slot = self.created_through_since(host, since);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        recovered
    }
}

/// Runs [`CLIENTS`] clients against `bases` (the hosts' `http://IP:PORT`) while `nemesis` runs
/// on this thread; stops them when it returns, and gives back its value and the history.
pub fn under_load<T>(
    bases: &[String],
    nemesis: impl FnOnce(&Load) -> anyhow::Result<T>,
) -> anyhow::Result<(T, Vec<Op>)> {
    let load = Load {
        start: Instant::now(),
        stop: AtomicBool::new(false),
        history: Mutex::new(Vec::new()),
        acknowledged: Mutex::new(Vec::new()),
    };
    let outcome = std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let load = &load;
            scope.spawn(move || run_client(client, bases, load));
        }
        let outcome = nemesis(&load);
        load.stop.store(true, Ordering::Relaxed);
        outcome
    })?;
    Ok((outcome, load.history.into_inner().unwrap()))
}

/// Reads each client makes after each create: reads are what a partition's minority side can
/// get wrong, and a create through it takes seconds to fail.
const READS_PER_CREATE: usize = 3;

/// One client, pinned to host `client % hosts` (a host that hangs stalls its own clients only,
/// as a load balancer's connections would): a create, then [`READS_PER_CREATE`] reads of ids
/// acknowledged through any host, until told to stop.
fn run_client(client: usize, bases: &[String], load: &Load) {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2))
        .timeout(CLIENT_TIMEOUT)
        .build();
    let host = client % bases.len();
    let base = &bases[host];
    let mut n = 0;
    while !load.stop.load(Ordering::Relaxed) {
        let sent = load.now();
        let answer = match agent
            .post(&format!("{base}/todos"))
            .set("content-type", "application/json")
            .send_string(&format!(r#"{{"title":"c{client}-{n}"}}"#))
        {
            Ok(response) if response.status() == 201 => {
                match response
                    .into_json::<serde_json::Value>()
                    .ok()
                    .and_then(|todo| todo["id"].as_u64())
                {
                    Some(id) => Answer::Created(id),
                    None => Answer::Indeterminate("201 without an id".into()),
                }
            }
            Ok(response) => Answer::Indeterminate(format!("{}", response.status())),
            Err(ureq::Error::Status(status, _)) => Answer::Indeterminate(status.to_string()),
            Err(err) => Answer::Indeterminate(err.kind().to_string()),
        };
        let answered = load.now();
        if let Answer::Created(id) = answer {
            load.acknowledged.lock().unwrap().push(id);
        }
        load.history.lock().unwrap().push(Op {
            host,
            request: Request::Create,
            sent,
            answered,
            answer,
        });
        std::thread::sleep(PAUSE);

        for _ in 0..READS_PER_CREATE {
            if load.stop.load(Ordering::Relaxed) {
                break;
            }
            // Half the reads ask for the newest acknowledged id: that is the one a stale copy
            // lacks. The others, any: a lost write shows there.
            let id = {
                let acknowledged = load.acknowledged.lock().unwrap();
                match acknowledged.last() {
                    Some(&newest) if fastrand::bool() => Some(newest),
                    Some(_) => Some(acknowledged[fastrand::usize(..acknowledged.len())]),
                    None => None,
                }
            };
            let Some(id) = id else { break };
            let sent = load.now();
            let answer = match agent.get(&format!("{base}/todos/{id}")).call() {
                Ok(response) if response.status() == 200 => Answer::Found,
                Ok(response) => Answer::Indeterminate(response.status().to_string()),
                Err(ureq::Error::Status(404, _)) => Answer::NotFound,
                Err(ureq::Error::Status(status, _)) => Answer::Indeterminate(status.to_string()),
                Err(err) => Answer::Indeterminate(err.kind().to_string()),
            };
            load.history.lock().unwrap().push(Op {
                host,
                request: Request::Read(id),
                sent,
                answered: load.now(),
                answer,
            });
            std::thread::sleep(PAUSE);
        }
        n += 1;
    }
}

/// The longest time any request through `host`, sent in `[from, to)`, took to be answered.
pub fn slowest_answer(history: &[Op], host: usize, from: Duration, to: Duration) -> Duration {
    history
        .iter()
        .filter(|op| op.host == host && op.sent >= from && op.sent < to)
        .map(|op| op.answered - op.sent)
        .max()
        .unwrap_or_default()
}

/// The first answer other than success (a create not acknowledged, a read not found) through
/// `host` after `from`: how long after `from` it came.
pub fn first_failure_after(history: &[Op], host: usize, from: Duration) -> Option<Duration> {
    history
        .iter()
        .filter(|op| op.host == host && op.sent >= from)
        .filter(|op| matches!(op.answer, Answer::Indeterminate(_)))
        .map(|op| op.answered - from)
        .min()
}

/// What each host answered to the operations sent in `[from, to)`: one line per host.
pub fn by_host(history: &[Op], hosts: usize, from: Duration, to: Duration) -> Vec<String> {
    (0..hosts)
        .map(|host| {
            let (mut created, mut found, mut not_found, mut failed_c, mut failed_r) =
                (0, 0, 0, 0, 0);
            for op in history
                .iter()
                .filter(|op| op.host == host && op.sent >= from && op.sent < to)
            {
                match (&op.request, &op.answer) {
                    (Request::Create, Answer::Created(_)) => created += 1,
                    (Request::Create, _) => failed_c += 1,
                    (Request::Read(_), Answer::Found) => found += 1,
                    (Request::Read(_), Answer::NotFound) => not_found += 1,
                    (Request::Read(_), _) => failed_r += 1,
                }
            }
            format!(
                "host {host}: creates {created} acknowledged, {failed_c} not; reads {found} \
                 found, {not_found} not found, {failed_r} failed"
            )
        })
        .collect()
}

/// Writes `history` to `$TODO_NEMESIS_HISTORY/NAME.tsv` when that variable names a folder, for
/// a look beyond the checker's table: one operation a line.
pub fn dump(history: &[Op], name: &str) -> anyhow::Result<()> {
    let Some(dir) = std::env::var_os("TODO_NEMESIS_HISTORY") else {
        return Ok(());
    };
    let path = std::path::Path::new(&dir).join(format!("{name}.tsv"));
    let mut text = String::from("host\trequest\tsent_ms\tanswered_ms\tanswer\n");
    for op in history {
        text.push_str(&format!(
            "{}\t{:?}\t{}\t{}\t{:?}\n",
            op.host,
            op.request,
            op.sent.as_millis(),
            op.answered.as_millis(),
            op.answer
        ));
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Formats `d` in seconds with one decimal.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// `Some(d)` as seconds, `None` as "not in time".
pub fn maybe_secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "not in time".to_string(), secs)
}

/// How long the test should keep a fault's aftermath under load: enough for every host to
/// create again, bounded.
pub const RECOVERY: Duration = Duration::from_secs(30);

/// The environment variable asking each nemesis to run this many times in a row (default 1).
pub const RUNS_VAR: &str = "TODO_NEMESIS_RUNS";

/// How many runs [`RUNS_VAR`] asks for.
pub fn runs() -> anyhow::Result<usize> {
    match std::env::var(RUNS_VAR) {
        Ok(value) => {
            value.parse().ok().filter(|&n| n >= 1).with_context(|| {
                format!("{RUNS_VAR}='{value}' is not a number of runs (1 or more)")
            })
        }
        Err(_) => Ok(1),
    }
}

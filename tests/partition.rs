//! Jepsen-style nemesis tests of the replicated store: a durable three-node NATS JetStream
//! cluster, each node in its own network namespace with a `todo-host` beside it, 8 clients (each
//! pinned to one host) creating todos and reading back ones acknowledged through any host, and one
//! fault at a time:
//!
//! * `partition`: the stream leader cut off from the other two nodes for 20 s, then healed;
//! * `pause`: the leader stopped (`SIGSTOP`) for 15 s, then continued; five times in a row;
//! * `crash`: a node killed (`kill -9`) and brought back on an empty store folder, under load;
//! * `planned`: a rolling restart of all three nodes (`SIGTERM`, leader first), as the README
//!   tells an operator.
//!
//! Each runs in a sandbox of its own (`unshare`, [`netns`]), records a history and prints one row
//! of the checker's table ([`history`]): acknowledged, found, lost, duplicate ids, real-time order
//! violations, stale reads, the longest windows in which creates and reads failed. The rules:
//! nothing acknowledged is lost, no id twice, ids in real-time order, no 404 for an acknowledged
//! id outside the fault's documented window ([`STALE_BOUND`], [`STALE_AFTER_CONT`]), every node
//! holds the same data within 30 s of healing, no host needs a restart. `TODO_NEMESIS_RUNS=N` runs each nemesis
//! N times (`bench/` material: one run each keeps the suite within its budget).

mod support;

#[path = "support/history.rs"]
mod history;
#[path = "support/nemesis.rs"]
mod nemesis;
#[path = "support/netns.rs"]
mod netns;

use std::sync::Mutex;
use std::time::Duration;

use history::{Op, Verdict, check};
use nemesis::{
    RECOVERY, Testbed, first_failure_after, list_patiently, maybe_secs, runs, secs, slowest_answer,
    under_load,
};
use support::Host;

/// Load before the fault.
const STEADY: Duration = Duration::from_secs(3);
/// How long after healing every node must hold the same data.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(30);
/// How long the partition lasts.
const PARTITION: Duration = Duration::from_secs(20);
/// How long each pause lasts, and how many.
const PAUSE: Duration = Duration::from_secs(15);
const PAUSES: usize = 5;
/// How soon after `SIGCONT` every host must create again.
const PAUSE_RECOVERY_BOUND: Duration = Duration::from_secs(12);

/// How long after a cut a host on the minority side may read stale data (a todo acknowledged
/// through the majority answers 404): the old leader keeps answering reads until its lost-quorum
/// check fires, which nats-server runs every 10 s over the last 10 s (`lostQuorumCheck`,
/// `lostQuorumInterval` in server/raft.go, no setting), so at most 20 s after the cut; the
/// majority elects a new leader (and takes writes the old one does not see) from 4 s on. One more
/// second for a busy machine: the check's tick, the heal and the read race on two shared cores.
const STALE_BOUND: Duration = Duration::from_secs(21);
/// How long after `SIGCONT` a paused leader may answer a read from its old state: until it
/// reads the new leader's messages waiting on its routes, within milliseconds.
const STALE_AFTER_CONT: Duration = Duration::from_secs(1);
/// A request through the minority host is answered within this (each store operation gives up
/// after 5 s, and the todo component answers 503): nothing hangs.
const MINORITY_ANSWER_BOUND: Duration = Duration::from_secs(6);
/// Creates through the majority side succeed again within this of the cut.
const MAJORITY_BOUND: Duration = Duration::from_secs(12);

/// The sandboxes run one at a time: each is a whole cluster, and the machine has two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `body` inside a sandbox of its own (see [`netns::run_sandboxed`]), once per run that
/// [`runs`] asks, each in a new sandbox.
fn sandboxed(name: &str, body: fn(usize) -> anyhow::Result<()>) -> anyhow::Result<()> {
    if let Some(run) = netns::inside()? {
        body(run)?;
        return netns::done(name);
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for run in 1..=runs()? {
        netns::run_sandboxed(name, run)?;
    }
    Ok(())
}

/// `converged`: how long after the (last) fault ended the leader reported every replica current.
fn judge(
    name: &str,
    run: usize,
    bed: &Testbed,
    history: &[Op],
    stale_allowed: &[(Duration, Duration)],
    converged: Duration,
) -> anyhow::Result<Verdict> {
    nemesis::dump(history, &format!("{name}-{run}"))?;
    let lists = bed.final_lists()?;
    // Under no load now, every node's own copy must be the same.
    bed.wait_converged(CONVERGENCE_BOUND)?;
    let verdict = check(history, &lists);
    println!("{}", Verdict::header());
    println!("{}", verdict.row(&format!("{name} {run}"), converged));
    anyhow::ensure!(
        converged < CONVERGENCE_BOUND,
        "{name}: the replicas were current only {} after the fault",
        secs(converged)
    );
    if let (Some(first), Some(last)) = (
        verdict.stale_reads.iter().min(),
        verdict.stale_reads.iter().max(),
    ) {
        println!(
            "{name}: stale reads sent from {} to {}",
            secs(*first),
            secs(*last)
        );
    }
    let slowest = |create: bool| {
        history
            .iter()
            .filter(|op| (op.request == history::Request::Create) == create)
            .map(|op| op.answered - op.sent)
            .max()
            .unwrap_or_default()
    };
    println!(
        "{name}: slowest create answered in {}, slowest read in {}",
        secs(slowest(true)),
        secs(slowest(false))
    );
    let violations = verdict.violations(stale_allowed);
    anyhow::ensure!(violations.is_empty(), "{name}: {}", violations.join("; "));
    bed.hosts_alive()?;
    Ok(verdict)
}

fn bases(bed: &Testbed) -> Vec<String> {
    bed.hosts.iter().map(|host| host.base.clone()).collect()
}

#[test]
fn partition_of_the_stream_leader_loses_no_acknowledged_create() -> anyhow::Result<()> {
    sandboxed(
        "partition_of_the_stream_leader_loses_no_acknowledged_create",
        partition,
    )
}

/// Cuts node 0 (the leader, host 0 beside it) off from nodes 1 and 2 for [`PARTITION`].
fn partition(run: usize) -> anyhow::Result<()> {
    let bed = Testbed::start()?;
    let leader = bed.cluster.nodes[0].name.clone();
    let ((cut_at, healed_at, elected, converged), history) = under_load(&bases(&bed), |load| {
        std::thread::sleep(STEADY);
        let cut_at = load.now();
        bed.net.cut(0, &[1, 2])?;
        // Who each side takes for the leader, until the heal.
        let (mut elected, mut stepped_down) = (None, None);
        while load.now() < cut_at + PARTITION {
            if elected.is_none() {
                let majority = bed.cluster.nodes[1..]
                    .iter()
                    .filter_map(|node| node.stream_leader_seen(nemesis::STREAM).ok())
                    .flatten()
                    .find(|name| *name != leader);
                if majority.is_some() {
                    elected = Some(load.now() - cut_at);
                }
            }
            if stepped_down.is_none()
                && bed.cluster.nodes[0]
                    .stream_leader_seen(nemesis::STREAM)
                    .is_ok_and(|seen| seen.as_deref() != Some(leader.as_str()))
            {
                stepped_down = Some(load.now() - cut_at);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bed.net.heal(0)?;
        let healed_at = load.now();
        let converged = bed.wait_replicas_current(CONVERGENCE_BOUND)?;
        let recovered = load.wait_recovered(bed.hosts.len(), healed_at, RECOVERY);
        println!(
            "partition run {run}: cut {leader} at {}; majority elected a leader {} after the \
             cut; {leader} stopped leading {} after the cut; healed at {}; replicas current {} \
             after; every host created again after {:?}",
            secs(cut_at),
            maybe_secs(elected),
            maybe_secs(stepped_down),
            secs(healed_at),
            secs(converged),
            recovered.iter().map(|d| maybe_secs(*d)).collect::<Vec<_>>(),
        );
        std::thread::sleep(STEADY);
        anyhow::Ok((cut_at, healed_at, elected, converged))
    })?;
    let minority_first_failure = first_failure_after(&history, 0, cut_at);
    let minority_slowest = slowest_answer(&history, 0, cut_at, healed_at);
    let majority_creates: Vec<(Duration, bool)> = history
        .iter()
        .filter(|op| op.host != 0 && op.request == history::Request::Create)
        .filter(|op| op.sent >= cut_at && op.sent < healed_at)
        .map(|op| {
            (
                op.answered,
                matches!(op.answer, history::Answer::Created(_)),
            )
        })
        .collect();
    let majority_window = history::failure_window(majority_creates);
    println!(
        "partition run {run}: the minority host's first failed answer {} after the cut, its \
         slowest answer {}; creates through the majority hosts failed for at most {}",
        maybe_secs(minority_first_failure),
        secs(minority_slowest),
        secs(majority_window),
    );
    for line in nemesis::by_host(&history, bed.hosts.len(), cut_at, healed_at) {
        println!("partition run {run}, during the cut: {line}");
    }
    let verdict = judge(
        "partition",
        run,
        &bed,
        &history,
        &[(cut_at, cut_at + STALE_BOUND)],
        converged,
    )?;
    if let Some(last) = verdict.stale_reads.iter().max() {
        println!(
            "partition run {run}: the last stale read was sent {} after the cut (bound {})",
            secs(*last - cut_at),
            secs(STALE_BOUND)
        );
    }
    anyhow::ensure!(
        minority_slowest < MINORITY_ANSWER_BOUND,
        "a request through the minority host took {} to be answered",
        secs(minority_slowest)
    );
    anyhow::ensure!(
        majority_window < MAJORITY_BOUND,
        "creates through the majority failed for {}",
        secs(majority_window)
    );
    anyhow::ensure!(
        elected.is_some_and(|took| took < MAJORITY_BOUND),
        "the majority elected no leader within {}",
        secs(MAJORITY_BOUND)
    );
    Ok(())
}

#[test]
fn pausing_the_stream_leader_five_times_loses_no_acknowledged_create() -> anyhow::Result<()> {
    sandboxed(
        "pausing_the_stream_leader_five_times_loses_no_acknowledged_create",
        pause,
    )
}

/// Stops the leader for [`PAUSE`], [`PAUSES`] times; after each, every host must create again
/// within [`PAUSE_RECOVERY_BOUND`].
fn pause(run: usize) -> anyhow::Result<()> {
    let bed = Testbed::start()?;
    let ((recoveries, paused, converged), history) = under_load(&bases(&bed), |load| {
        std::thread::sleep(STEADY);
        let mut recoveries = Vec::new();
        let mut paused = Vec::new();
        let mut converged = Duration::ZERO;
        for round in 1..=PAUSES {
            let leader = bed.leader()?;
            let node = &bed.cluster.nodes[leader];
            let pid = node.pid().expect("the leader runs").to_string();
            let stopped = load.now();
            support::signal(pid.parse()?, "STOP")?;
            std::thread::sleep(PAUSE);
            support::signal(pid.parse()?, "CONT")?;
            let continued = load.now();
            paused.push((stopped, continued + STALE_AFTER_CONT));
            converged = converged.max(bed.wait_replicas_current(CONVERGENCE_BOUND)?);
            let recovered = load.wait_recovered(bed.hosts.len(), continued, RECOVERY);
            println!(
                "pause run {run}, round {round}: paused {} (the leader) for {}; every host \
                 created again after {:?}",
                node.name,
                secs(PAUSE),
                recovered.iter().map(|d| maybe_secs(*d)).collect::<Vec<_>>()
            );
            recoveries.push(recovered);
        }
        std::thread::sleep(STEADY);
        anyhow::Ok((recoveries, paused, converged))
    })?;
    judge("pause", run, &bed, &history, &paused, converged)?;
    for (round, recovered) in recoveries.iter().enumerate() {
        for (host, took) in recovered.iter().enumerate() {
            anyhow::ensure!(
                took.is_some_and(|took| took < PAUSE_RECOVERY_BOUND),
                "pause round {}: host {host} created again only after {}",
                round + 1,
                maybe_secs(*took)
            );
        }
    }
    Ok(())
}

#[test]
fn a_node_replaced_with_an_empty_disk_under_load_catches_up() -> anyhow::Result<()> {
    sandboxed(
        "a_node_replaced_with_an_empty_disk_under_load_catches_up",
        crash,
    )
}

/// Kills the leader with SIGKILL and starts it again on an empty store folder, under load. Then
/// it takes the lead, and every acknowledged create is read through a host that names only it.
fn crash(run: usize) -> anyhow::Result<()> {
    let mut bed = Testbed::start()?;
    let victim = bed.leader()?;
    let bases = bases(&bed);
    let (caught_up, history) = under_load(&bases, |load| {
        std::thread::sleep(STEADY);
        bed.cluster.kill9(victim)?;
        let killed_at = load.now();
        std::thread::sleep(STEADY);
        let replacing = load.now();
        bed.cluster.replace(victim)?;
        let caught_up = load.now() - replacing;
        let converged = bed.wait_replicas_current(CONVERGENCE_BOUND)? + caught_up;
        let recovered = load.wait_recovered(bed.hosts.len(), load.now(), RECOVERY);
        println!(
            "crash run {run}: killed {} (the leader) at {}, replaced it with an empty store \
             {} later; healthy (caught up) {} after its start; every host created again after \
             {:?}",
            bed.cluster.nodes[victim].name,
            secs(killed_at),
            secs(replacing - killed_at),
            secs(caught_up),
            recovered.iter().map(|d| maybe_secs(*d)).collect::<Vec<_>>()
        );
        std::thread::sleep(STEADY);
        anyhow::Ok((caught_up, converged))
    })?;
    let (caught_up, converged) = caught_up;
    let verdict = judge("crash", run, &bed, &history, &[], converged)?;
    // The replaced node leads; a host that names only it reads every acknowledged create.
    bed.lead_on(victim)?;
    let ip = bed.net.ips[victim].clone();
    let alone = format!("nats://{}", bed.cluster.nodes[victim].addr());
    let host = Host::start_wrapped(
        &bed.net.wrapper(victim),
        &format!("{ip}:0"),
        &["--store", &alone],
    )?;
    let listed = list_patiently(&host)?;
    let replay = check(&history, &[listed]);
    anyhow::ensure!(
        replay.lost.is_empty(),
        "{} leads after its replacement, and a host connected only to it misses {} acknowledged \
         creates: {:?}",
        bed.cluster.nodes[victim].name,
        replay.lost.len(),
        &replay.lost[..replay.lost.len().min(20)]
    );
    println!(
        "crash run {run}: {} (replaced, caught up in {}) leads; all {} acknowledged creates read \
         through a host connected only to it",
        bed.cluster.nodes[victim].name,
        secs(caught_up),
        verdict.acknowledged
    );
    Ok(())
}

#[test]
fn a_rolling_restart_of_every_node_fails_creates_for_under_a_second() -> anyhow::Result<()> {
    sandboxed(
        "a_rolling_restart_of_every_node_fails_creates_for_under_a_second",
        planned,
    )
}

/// Restarts each node in turn with SIGTERM, the leader first, waiting for each to be healthy
/// (caught up) before the next, as the README's recipe says.
fn planned(run: usize) -> anyhow::Result<()> {
    let mut bed = Testbed::start()?;
    let (steps, history) = under_load(&bases(&bed), |load| {
        std::thread::sleep(STEADY);
        let first = bed.leader()?;
        let order = [first, (first + 1) % 3, (first + 2) % 3];
        let mut steps = Vec::new();
        let mut converged = Duration::ZERO;
        for i in order {
            let led = bed.leader()? == i;
            let from = load.now();
            bed.cluster.restart_gracefully(i)?;
            let back = load.now();
            converged =
                converged.max(bed.wait_replicas_current(CONVERGENCE_BOUND)? + (back - from));
            std::thread::sleep(Duration::from_secs(2));
            steps.push((bed.cluster.nodes[i].name.clone(), led, from, back));
        }
        std::thread::sleep(STEADY);
        anyhow::Ok((steps, converged))
    })?;
    let (steps, converged) = steps;
    judge("planned", run, &bed, &history, &[], converged)?;
    for (name, led, from, back) in steps {
        let creates: Vec<(Duration, bool)> = history
            .iter()
            .filter(|op| op.request == history::Request::Create)
            .filter(|op| op.answered >= from && op.answered < back + Duration::from_secs(2))
            .map(|op| {
                (
                    op.answered,
                    matches!(op.answer, history::Answer::Created(_)),
                )
            })
            .collect();
        let window = history::failure_window(creates);
        println!(
            "planned run {run}: restarted {name}{} in {}; creates failed for at most {}",
            if led { " (the leader)" } else { "" },
            secs(back - from),
            secs(window)
        );
        anyhow::ensure!(
            window < Duration::from_secs(1),
            "restarting {name} failed creates for {}",
            secs(window)
        );
    }
    Ok(())
}

//! A throwaway network for the nemesis tests: the test re-executes itself under
//! `unshare --net --mount --pid --fork`, and inside builds one Linux network namespace per node,
//! joined by veth pairs to one bridge, where `nft` rules cut links. Everything (processes,
//! namespaces, the bridge, the rules) lives in namespaces that die with the test's process, even
//! when it panics or is killed: nothing is left on the machine.
//!
//! What it needs: root (or `CAP_SYS_ADMIN` and `CAP_NET_ADMIN`), `unshare` (util-linux), `ip`
//! (Debian `iproute2`) and `nft` (Debian `nftables`). Without one of them the test fails and
//! names what is missing: a nemesis test that cannot cut a link must not pass.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Set in the re-executed test process: it is inside the sandbox.
const INSIDE: &str = "TODO_NEMESIS_SANDBOX";
/// Where the re-executed test writes that its body ran to the end: a child that ran no test
/// (a filter that matched nothing) must not count as a pass.
const DONE_FILE: &str = "TODO_NEMESIS_DONE";
/// The bridge every namespace is joined to, in the sandbox's own network namespace.
const BRIDGE: &str = "nem0";
/// The subnet of the test network: the bridge is `.254`, node `i` (from 0) is `.{i + 1}`. It
/// exists only inside the sandbox's network namespace, which has no route anywhere else.
const SUBNET: &str = "10.27.0";

/// Which run this process is, when it is the sandbox (see [`run_sandboxed`]); `None` outside.
/// Inside, it also lays a tmpfs over /run/netns, where `ip netns add` mounts the namespaces:
/// the mount namespace is the sandbox's own, and so the files stay off the machine's /run.
pub fn inside() -> anyhow::Result<Option<usize>> {
    let Some(value) = std::env::var_os(INSIDE) else {
        return Ok(None);
    };
    let number: usize = value
        .to_str()
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("{INSIDE}={value:?} is not a run number"))?;
    std::fs::create_dir_all("/run/netns").context("cannot create /run/netns")?;
    run(Command::new("mount").args(["-t", "tmpfs", "nemesis", "/run/netns"]))?;
    Ok(Some(number))
}

/// Runs the test `name` (its full path, as libtest's `--exact` wants it) again, as run number
/// `run`, inside a new sandbox: this same test binary under `unshare`, where [`inside`] says so.
/// Fails if the sandbox cannot be made (naming what is missing), if the test fails in it, or if
/// no test ran.
pub fn run_sandboxed(name: &str, run: usize) -> anyhow::Result<()> {
    require_tools()?;
    let probe = Command::new("unshare")
        .args(["--net", "--mount", "--pid", "--fork", "true"])
        .output()
        .context("cannot run unshare (Debian util-linux)")?;
    if !probe.status.success() {
        bail!(
            "this nemesis test needs Linux namespaces, and `unshare --net --mount --pid --fork` \
             failed ({}: {}): run it as root (or with CAP_SYS_ADMIN and CAP_NET_ADMIN), outside \
             a container that forbids unshare(2)",
            probe.status,
            String::from_utf8_lossy(&probe.stderr).trim()
        );
    }
    let done = tempfile::NamedTempFile::new()?;
    let exe = std::env::current_exe()?;
    // `setpriv --pdeathsig KILL`: unshare dies with the thread that started it (a test killed,
    // a harness gone), and `--kill-child` takes the sandbox's first process with it, which is
    // the PID namespace's init: every process in the sandbox dies.
    let status = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--", "unshare"])
        .args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
        ])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(INSIDE, run.to_string())
        .env(DONE_FILE, done.path())
        .status()
        .with_context(|| format!("cannot run {} under setpriv and unshare", exe.display()))?;
    anyhow::ensure!(
        status.success(),
        "{name} (run {run}) failed inside its sandbox ({status}): its output is above"
    );
    let ran = std::fs::read_to_string(done.path())?;
    anyhow::ensure!(
        ran.trim() == name,
        "{name} did not run inside its sandbox (no test matched `{name}`?)"
    );
    Ok(())
}

/// Says, from inside the sandbox, that test `name` ran to its end.
pub fn done(name: &str) -> anyhow::Result<()> {
    let path = std::env::var_os(DONE_FILE).context("not inside a nemesis sandbox")?;
    std::fs::write(PathBuf::from(path), name)?;
    Ok(())
}

fn require_tools() -> anyhow::Result<()> {
    for (tool, package) in [
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
        ("ip", "iproute2"),
        ("nft", "nftables"),
    ] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            bail!(
                "the nemesis tests need `{tool}` (Debian package {package}: `apt-get install -y \
                 {package}`, or {})",
                crate::support::tools::SETUP
            );
        }
    }
    Ok(())
}

/// Runs `command`; an error names it and carries its stderr.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// `count` network namespaces `nem1`, `nem2`, ..., each with one address on the bridge.
pub struct Network {
    pub names: Vec<String>,
    pub ips: Vec<String>,
}

impl Network {
    /// Builds the bridge and the namespaces. Only inside the sandbox ([`inside`]): outside it
    /// this would change the machine's own network.
    pub fn build(count: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            std::env::var_os(INSIDE).is_some(),
            "Network::build outside the sandbox"
        );
        run(Command::new("ip").args(["link", "set", "lo", "up"]))?;
        run(Command::new("ip").args(["link", "add", BRIDGE, "type", "bridge"]))?;
        let bridge_ip = format!("{SUBNET}.254/24");
        run(Command::new("ip").args(["addr", "add", &bridge_ip, "dev", BRIDGE]))?;
        run(Command::new("ip").args(["link", "set", BRIDGE, "up"]))?;
        let mut network = Self {
            names: Vec::new(),
            ips: Vec::new(),
        };
        for i in 1..=count {
            let name = format!("nem{i}");
            let (inner, outer) = (format!("veth{i}"), format!("veth{i}-br"));
            let ip = format!("{SUBNET}.{i}");
            run(Command::new("ip").args(["netns", "add", &name]))?;
            run(Command::new("ip").args([
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ]))?;
            run(Command::new("ip").args(["link", "set", &inner, "netns", &name]))?;
            run(Command::new("ip").args(["link", "set", &outer, "master", BRIDGE, "up"]))?;
            let address = format!("{ip}/24");
            run(Command::new("ip").args(["-n", &name, "addr", "add", &address, "dev", &inner]))?;
            run(Command::new("ip").args(["-n", &name, "link", "set", &inner, "up"]))?;
            run(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]))?;
            network.names.push(name);
            network.ips.push(ip);
        }
        Ok(network)
    }

    /// `ip netns exec NAME`: runs a command inside namespace `i`.
    pub fn wrapper(&self, i: usize) -> [&str; 4] {
        ["ip", "netns", "exec", &self.names[i]]
    }

    /// Drops every packet between namespace `i` and namespaces `others`, both ways (an `nft`
    /// table in namespace `i`): a partition. The bridge (the test's clients) still reaches it.
    pub fn cut(&self, i: usize, others: &[usize]) -> anyhow::Result<()> {
        let peers: Vec<&str> = others.iter().map(|&j| self.ips[j].as_str()).collect();
        let peers = peers.join(", ");
        let rules = format!(
            "table inet nemesis {{\n\
               chain input {{ type filter hook input priority 0; ip saddr {{ {peers} }} drop; }}\n\
               chain output {{ type filter hook output priority 0; ip daddr {{ {peers} }} drop; }}\n\
             }}\n"
        );
        let path = std::env::temp_dir().join(format!("nemesis-{}.nft", self.names[i]));
        std::fs::write(&path, rules)?;
        let path = path.display().to_string();
        run(Command::new("ip").args(["netns", "exec", &self.names[i], "nft", "-f", &path]))
            .with_context(|| format!("cannot cut {} off from {peers}", self.names[i]))
    }

    /// Removes the cut of namespace `i`.
    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        run(Command::new("ip").args([
            "netns",
            "exec",
            &self.names[i],
            "nft",
            "delete",
            "table",
            "inet",
            "nemesis",
        ]))
        .with_context(|| format!("cannot heal {}", self.names[i]))
    }
}

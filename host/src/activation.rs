//! Socket activation: listening sockets handed down by a parent (systemd, or anything that
//! speaks its protocol) instead of bound by the host, and readiness told back to systemd.
//!
//! The protocol: the parent binds and listens, then starts the host with the sockets as
//! descriptors 3, 4, ... and the environment `LISTEN_FDS` (how many), `LISTEN_PID` (the process
//! they are for) and optionally `LISTEN_FDNAMES` (a `:`-separated name per descriptor, from the
//! socket unit's `FileDescriptorName=`). The socket stays open in the parent while the host
//! comes and goes, so a connection made while no host runs waits in its queue instead of being
//! refused, and several hosts given the same socket share one accept queue (a host that stops
//! leaves its queued connections to the others).
//!
//! The `listenfd` crate takes ownership of the descriptors (that needs `unsafe`, which this crate
//! denies); everything it does not check, this module checks before anything listens: that
//! `LISTEN_PID` is this process, that the names match the count, and that each descriptor is a
//! listening TCP socket. `sd-notify` sends `READY=1` and `STOPPING=1` when `NOTIFY_SOCKET` is set
//! (a `Type=notify` service), and nothing otherwise.

use std::net::TcpListener;

use anyhow::{Context, bail};

/// The name that marks the admin socket (`FileDescriptorName=admin`); any other name is the
/// HTTP socket.
pub const ADMIN_NAME: &str = "admin";

/// The sockets a parent handed down.
#[derive(Debug)]
pub struct Inherited {
    /// Where requests come in.
    pub http: TcpListener,
    /// Where the admin routes are served, when a descriptor was named `admin`.
    pub admin: Option<TcpListener>,
}

/// What the environment says was handed down.
#[derive(Debug, PartialEq, Eq)]
struct Announced {
    /// One name per descriptor, in order (the first is descriptor 3); `None` without
    /// `LISTEN_FDNAMES`.
    names: Option<Vec<String>>,
    count: usize,
}

/// The sockets handed down to this process, if any: `Ok(None)` when `LISTEN_FDS` is not set
/// (the host binds `--listen` itself). Call it before any other thread starts: `listenfd`
/// removes `LISTEN_FDS` and `LISTEN_PID` from the environment.
pub fn inherited() -> anyhow::Result<Option<Inherited>> {
    let var = |name: &str| std::env::var(name).ok();
    let Some(announced) = announced(
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?
    else {
        return Ok(None);
    };
    let roles = roles(&announced)?;
    let mut fds = listenfd::ListenFd::from_env();
    let mut http = None;
    let mut admin = None;
    for (index, role) in roles.into_iter().enumerate() {
        let what = describe_descriptor(index, &announced);
        let listener = fds
            .take_tcp_listener(index)
            .with_context(|| format!("{what} is not a TCP socket"))?
            .with_context(|| format!("{what} was already taken"))?;
        let listening = rustix::net::sockopt::socket_acceptconn(&listener)
            .with_context(|| format!("cannot ask whether {what} is listening"))?;
        if !listening {
            let state = match listener.local_addr() {
                Ok(addr) => format!("bound to {addr}"),
                Err(_) => "unbound".to_string(),
            };
            bail!(
                "{what} is a TCP socket that is not listening ({state}): the parent must call \
                 listen() before passing it (a systemd .socket unit with ListenStream= does)"
            );
        }
        match role {
            Role::Http => http = Some(listener),
            Role::Admin => admin = Some(listener),
        }
    }
    let http =
        http.context("no inherited socket is for HTTP: only one named 'admin' was passed")?;
    Ok(Some(Inherited { http, admin }))
}

/// Checks the three variables: `Ok(None)` when `LISTEN_FDS` is absent; an error naming what was
/// found when they are malformed or meant for another process.
fn announced(
    fds: Option<&str>,
    pid: Option<&str>,
    names: Option<&str>,
    our_pid: u32,
) -> anyhow::Result<Option<Announced>> {
    let Some(fds) = fds else {
        return Ok(None);
    };
    let count: usize = match fds.trim().parse() {
        Ok(count) if count >= 1 => count,
        _ => bail!("LISTEN_FDS is '{fds}': expected a count of inherited sockets, 1 or more"),
    };
    // systemd always sets LISTEN_PID; a parent that cannot know the pid before exec (a plain
    // fork-exec wrapper) may leave it out, as the `listenfd` crate allows.
    if let Some(pid) = pid.filter(|pid| !pid.is_empty())
        && pid.trim().parse::<u32>().ok() != Some(our_pid)
    {
        bail!(
            "LISTEN_PID is '{pid}' but this process is {our_pid}: the inherited sockets were \
             meant for another process (a wrapper between the parent and todo-host must exec it, \
             not start it as a child)"
        );
    }
    let names = match names {
        None => None,
        Some(names) => {
            let names: Vec<String> = names.split(':').map(str::to_string).collect();
            if names.len() != count {
                bail!(
                    "LISTEN_FDNAMES is '{}', {} name(s), but LISTEN_FDS is {count}: every \
                     inherited socket needs one name",
                    names.join(":"),
                    names.len()
                );
            }
            Some(names)
        }
    };
    Ok(Some(Announced { names, count }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Http,
    Admin,
}

/// Which descriptor serves what: the one named `admin` serves the admin routes, the other the
/// API. Unnamed, only one socket is accepted: nothing would say which of two is which.
fn roles(announced: &Announced) -> anyhow::Result<Vec<Role>> {
    let roles: Vec<Role> = match &announced.names {
        None if announced.count == 1 => vec![Role::Http],
        None => bail!(
            "LISTEN_FDS is {} but LISTEN_FDNAMES is not set: with more than one inherited \
             socket, name the admin one 'admin' (FileDescriptorName=admin) and the other 'http'",
            announced.count
        ),
        Some(names) => names
            .iter()
            .map(|name| {
                if name == ADMIN_NAME {
                    Role::Admin
                } else {
                    Role::Http
                }
            })
            .collect(),
    };
    for role in [Role::Http, Role::Admin] {
        let named: Vec<String> = (0..announced.count)
            .filter(|&index| roles[index] == role)
            .map(|index| describe_descriptor(index, announced))
            .collect();
        if named.len() > 1 {
            bail!(
                "{} inherited sockets are for {}: {}; pass one (name the admin socket 'admin')",
                named.len(),
                if role == Role::Http { "HTTP" } else { "admin" },
                named.join(", ")
            );
        }
    }
    Ok(roles)
}

/// "inherited descriptor 3 ('http')", for messages.
fn describe_descriptor(index: usize, announced: &Announced) -> String {
    let fd = index + 3;
    match announced.names.as_ref().and_then(|names| names.get(index)) {
        Some(name) => format!("inherited descriptor {fd} ('{name}')"),
        None => format!("inherited descriptor {fd}"),
    }
}

/// Tells systemd the host is ready to serve (`READY=1`), with `status` as its status line; does
/// nothing outside a `Type=notify` service.
pub fn notify_ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells systemd the host is stopping (`STOPPING=1`), with `status` saying why.
pub fn notify_stopping(status: &str) {
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status(status),
    ]);
}

fn notify(states: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(err) = sd_notify::notify(false, states) {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(fds: &str, pid: Option<&str>, names: Option<&str>) -> anyhow::Result<Vec<Role>> {
        let announced = announced(Some(fds), pid, names, 42)?.expect("announced");
        roles(&announced)
    }

    #[test]
    fn no_listen_fds_means_bind_as_usual() {
        assert_eq!(announced(None, Some("42"), None, 42).unwrap(), None);
    }

    #[test]
    fn one_socket_is_http_named_or_not() {
        assert_eq!(check("1", Some("42"), None).unwrap(), vec![Role::Http]);
        assert_eq!(check("1", None, Some("http")).unwrap(), vec![Role::Http]);
        assert_eq!(
            check("1", Some("42"), Some("todo-host.socket")).unwrap(),
            vec![Role::Http]
        );
    }

    #[test]
    fn the_socket_named_admin_serves_the_admin_routes() {
        assert_eq!(
            check("2", Some("42"), Some("admin:http")).unwrap(),
            vec![Role::Admin, Role::Http]
        );
    }

    #[test]
    fn malformed_or_foreign_announcements_are_refused_naming_what_was_found() {
        let message = |fds, pid, names| format!("{:#}", check(fds, pid, names).unwrap_err());
        assert!(message("two", None, None).contains("LISTEN_FDS is 'two'"));
        assert!(message("0", None, None).contains("LISTEN_FDS is '0'"));
        let foreign = message("1", Some("7"), None);
        assert!(
            foreign.contains("LISTEN_PID is '7' but this process is 42"),
            "{foreign}"
        );
        let mismatch = message("2", Some("42"), Some("http"));
        assert!(
            mismatch.contains("LISTEN_FDNAMES is 'http', 1 name(s), but LISTEN_FDS is 2"),
            "{mismatch}"
        );
        let unnamed = message("2", Some("42"), None);
        assert!(unnamed.contains("LISTEN_FDNAMES is not set"), "{unnamed}");
        let two_http = message("2", Some("42"), Some("http:web"));
        assert!(
            two_http.contains("inherited descriptor 3 ('http'), inherited descriptor 4 ('web')"),
            "{two_http}"
        );
        let two_admin = message("2", Some("42"), Some("admin:admin"));
        assert!(two_admin.contains("are for admin"), "{two_admin}");
    }
}

//! The `nats://` store URL: which servers to connect to, how many replicas a new bucket keeps,
//! and the prefix of every NATS bucket name. Checked here, before anything connects.
//!
//! * Servers: one or more `HOST:PORT` (`HOST` alone means port 4222), comma-separated. Naming
//!   several does not require naming all: the servers tell the client about the rest.
//! * `replicas=N` (1 to 5): how many copies a bucket this host creates keeps. Default: 3 when
//!   three or more servers are named, else 1 (two servers cannot outvote a lost one).
//! * `bucket-prefix=P` (`[A-Za-z0-9_-]`, at most 32 characters, default none): put in front of
//!   every NATS bucket name, so that several apps can share one cluster.

use anyhow::{Context as _, bail};

use super::REGISTRATION;

/// The port of a server named without one: NATS's own default.
const DEFAULT_PORT: u16 = 4222;
/// JetStream allows at most 5 replicas of a stream.
const MAX_REPLICAS: usize = 5;
/// Long enough for a namespace, short enough to leave room for the bucket name.
const MAX_PREFIX: usize = 32;

/// A checked `nats://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NatsUrl {
    /// `HOST:PORT` of each named server.
    pub(super) servers: Vec<String>,
    pub(super) bucket_prefix: String,
    pub(super) replicas: usize,
}

impl NatsUrl {
    pub(super) fn parse(url: &str) -> anyhow::Result<Self> {
        let shape = REGISTRATION.url_shape;
        let Some(rest) = url.strip_prefix("nats://") else {
            bail!("store URL '{url}' is not a NATS URL: use {shape}");
        };
        let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
        let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
        if hosts.is_empty() {
            bail!("store URL '{url}' names no NATS server: use {shape}");
        }
        let mut servers: Vec<String> = Vec::new();
        for server in hosts.split(',') {
            let server = parse_server(server)
                .with_context(|| format!("store URL '{url}': server '{server}'"))?;
            if servers.contains(&server) {
                bail!("store URL '{url}' names server '{server}' twice");
            }
            servers.push(server);
        }
        let mut bucket_prefix = None;
        let mut replicas = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "bucket-prefix" if bucket_prefix.is_none() => {
                    let valid = value.len() <= MAX_PREFIX
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
                    if !valid {
                        bail!(
                            "store URL '{url}': bucket-prefix '{value}' is not a valid NATS bucket \
                             name prefix (at most {MAX_PREFIX} of A-Z a-z 0-9 _ -)"
                        );
                    }
                    bucket_prefix = Some(value.to_string());
                }
                "replicas" if replicas.is_none() => {
                    let count = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_REPLICAS).contains(n));
                    let Some(count) = count else {
                        bail!(
                            "store URL '{url}': replicas '{value}' is not a number from 1 to \
                             {MAX_REPLICAS}"
                        );
                    };
                    replicas = Some(count);
                }
                "bucket-prefix" | "replicas" => {
                    bail!("store URL '{url}' sets '{name}' twice")
                }
                other => bail!(
                    "store URL '{url}' has unknown parameter '{other}': use bucket-prefix or replicas"
                ),
            }
        }
        let replicas = replicas.unwrap_or(if servers.len() >= 3 { 3 } else { 1 });
        Ok(Self {
            servers,
            bucket_prefix: bucket_prefix.unwrap_or_default(),
            replicas,
        })
    }

    /// What the start-up line says.
    pub(super) fn summary(&self) -> String {
        let mut summary = format!(
            "NATS JetStream at {} (replicas {}",
            self.servers.join(","),
            self.replicas
        );
        if !self.bucket_prefix.is_empty() {
            summary.push_str(&format!(", bucket prefix '{}'", self.bucket_prefix));
        }
        summary.push(')');
        summary
    }
}

/// `HOST[:PORT]` → `HOST:PORT`.
fn parse_server(server: &str) -> anyhow::Result<String> {
    if server.contains(['@', '/', ' ']) {
        bail!("not HOST:PORT (credentials and paths are not supported)");
    }
    let (host, port) = match server.rsplit_once(':') {
        // `[::1]:4222`, `host:4222`; a bare IPv6 address needs its brackets.
        Some((host, port)) if !host.is_empty() && (!host.contains(':') || host.ends_with(']')) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .with_context(|| format!("port '{port}' is not a number from 1 to 65535"))?;
            (host, port)
        }
        None if !server.is_empty() => (server, DEFAULT_PORT),
        _ => bail!("not HOST:PORT"),
    };
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::BackendConfig;

    #[test]
    fn urls_name_servers_a_prefix_and_replicas() -> anyhow::Result<()> {
        let one = NatsUrl::parse("nats://127.0.0.1:4222")?;
        assert_eq!(one.servers, ["127.0.0.1:4222"]);
        assert_eq!((one.replicas, one.bucket_prefix.as_str()), (1, ""));
        let three = NatsUrl::parse("nats://a:1,b:2,c?bucket-prefix=app_1")?;
        assert_eq!(three.servers, ["a:1", "b:2", "c:4222"]);
        assert_eq!(three.replicas, 3, "three servers: three replicas");
        assert_eq!(three.bucket_prefix, "app_1");
        assert_eq!(NatsUrl::parse("nats://a:1,b:2")?.replicas, 1);
        assert_eq!(NatsUrl::parse("nats://a:1/?replicas=5")?.replicas, 5);
        assert_eq!(NatsUrl::parse("nats://[::1]:4222")?.servers, ["[::1]:4222"]);
        assert_eq!(
            three.summary(),
            "NATS JetStream at a:1,b:2,c:4222 (replicas 3, bucket prefix 'app_1')"
        );
        Ok(())
    }

    #[test]
    fn runtime_config_entries_of_type_nats_take_a_url() -> anyhow::Result<()> {
        let entry: toml::Table = toml::from_str("type = \"nats\"\nurl = \"nats://a:1,b:2,c:3\"")?;
        BackendConfig::from_runtime_config("orders", entry, std::path::Path::new("/"))?;
        let bad: toml::Table = toml::from_str("type = \"nats\"\nurl = \"nats://a:1?replicas=9\"")?;
        let err = format!(
            "{:#}",
            BackendConfig::from_runtime_config("orders", bad, std::path::Path::new("/"))
                .unwrap_err()
        );
        assert!(
            err.contains("'orders'") && err.contains("replicas '9'"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn bad_urls_are_refused_naming_the_bad_part() {
        let cases = [
            ("nats://", "names no NATS server"),
            ("nats://host:port", "'port'"),
            ("nats://host:0", "'0'"),
            ("nats://a:1,,b:2", "server ''"),
            ("nats://a:1,a:1", "twice"),
            ("nats://user:pw@a:1", "credentials"),
            ("nats://a:1?replicas=0", "replicas '0'"),
            ("nats://a:1?replicas=six", "replicas 'six'"),
            ("nats://a:1?replicas=1&replicas=3", "twice"),
            (
                "nats://a:1?bucket-prefix=has.dot",
                "bucket-prefix 'has.dot'",
            ),
            ("nats://a:1?bucket=x", "unknown parameter 'bucket'"),
        ];
        for (url, named) in cases {
            let err = format!("{:#}", NatsUrl::parse(url).unwrap_err());
            assert!(err.contains(named), "{url}: {err}");
        }
    }
}

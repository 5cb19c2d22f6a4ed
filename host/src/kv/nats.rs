//! A replicated store: NATS JetStream key-value,
//! `--store nats://HOST:PORT[,HOST:PORT...][?bucket-prefix=P&replicas=N]`.
//!
//! Every host process pointed at the same NATS cluster sees the same data, and with three
//! replicas the data survives the loss of any one server: JetStream keeps each bucket as a
//! stream replicated by RAFT, and a write is acknowledged only once a majority of the replicas
//! hold it. The client connects to any named server and moves to a live one by itself.
//!
//! # The URL
//! * Servers: one or more `HOST:PORT` (`HOST` alone means port 4222), comma-separated. Naming
//!   several does not require naming all: the servers tell the client about the rest.
//! * `replicas=N` (1 to 5): how many copies a bucket this host creates keeps. Default: 3 when
//!   three or more servers are named, else 1 (two servers cannot outvote a lost one).
//! * `bucket-prefix=P` (`[A-Za-z0-9_-]`, at most 32 characters, default none): put in front of
//!   every NATS bucket name, so that several apps can share one cluster.
//!
//! # Buckets
//! The host allows bucket names of `[A-Za-z0-9_.-]`; NATS allows `[A-Za-z0-9_-]`. A host bucket
//! becomes the NATS bucket `P` + its name with `_` written `__` and every other character NATS
//! refuses written `_` + the two hex digits of each of its UTF-8 bytes (`.` → `_2e`): `default` is
//! `default`, `todo.v2` is `todo_2ev2`, `my_app` is `my__app`. The mapping is one-to-one, so two
//! host buckets never share a NATS bucket. A bucket is created on first use (history 1, file
//! storage, the URL's replica count); one that exists already is used as it is, with a warning
//! when its settings differ from those.
//!
//! # Keys
//! NATS keys allow `[-/_=.A-Za-z0-9]`, and a key is part of a subject, which the protocol caps
//! (a 4 KiB control line by default). So a key is stored as one of three tokens:
//! * itself, when it is 1 to 256 characters of `[-/_=A-Za-z0-9]` and does not start with `=`
//!   (the todo app's `todo/12` and `meta/next-id`; `nats kv get default todo/12` works);
//! * `=` + base64url (no padding) of its UTF-8 bytes when that is at most 256 characters (empty,
//!   Unicode, spaces, dots, ...);
//! * `==` + base64url of its SHA-256 otherwise, with the key itself (base64url) in the message's
//!   `Todo-Kv-Key` header, where listing finds it and reads check it.
//!
//! `=` never starts a plain token, and base64url never contains `=`: the three forms never meet.
//!
//! # Reads, writes, atomics
//! Reads ask the stream leader (`$JS.API.STREAM.MSG.GET`), not any replica (direct get): a
//! replica may lag, and a todo created through one host must be readable through another at
//! once. Writes are JetStream publishes, acknowledged after the RAFT quorum stored them.
//! `increment` and draft2 compare-and-swap write with `Nats-Expected-Last-Subject-Sequence` set
//! to the revision (stream sequence) they read: the leader refuses the write if anyone wrote the
//! key in between, and the loop reads again. Never read-then-write. Within one process the
//! increments of one key queue behind each other and reuse the last revision they wrote, so one
//! increment usually costs one round trip, and only different hosts race. Batches are pipelined
//! single operations (at most [`IN_FLIGHT`] at a time), not transactions.
//!
//! # Listing and its cursor
//! A bucket created here keeps one message per key (history 1): the latest put or the delete
//! marker. Its stream is thus, in sequence order, exactly the bucket's current keys (plus
//! markers), and the cursor is a **stream sequence**: the last one the previous page covered.
//! A page is one batched direct get, `{"seq": cursor + 1, "next_by_subj": "$KV.B.>", "batch":
//! 1000}`, answered by one replica with up to 1000 messages and an end-of-batch note saying how
//! many follow; delete markers are skipped, so a page holds at most [`LIST_PAGE_SIZE`] keys.
//!
//! A replica may lag. A page cut short by the batch size has no hole (the replica applied
//! everything up to its last message, in order); only a *last* page may miss the newest writes.
//! So, alongside each page, the leader is asked for the stream's last sequence, and a last page
//! must reach it; if it does not, the rest is read from the leader, one message per request.
//! Hence a listing returns every key written (and not deleted) before it started.
//!
//! A write during paging moves its key to the end of the stream: a key not yet listed is listed
//! once (or not at all, if deleted); a key already listed is listed again if it is rewritten (as
//! with Redis `SCAN`, a caller that must not see a key twice keeps one of each). Keys nobody
//! touches appear exactly once.
//!
//! A bucket made elsewhere with history above 1 also holds older revisions; listing then keeps
//! a message only if the leader says it is the key's latest (one more request per key). One
//! without direct get is listed from the leader alone, [`LEADER_PAGE`] messages a page.
//!
//! # Failures
//! Every request waits at most [`ATTEMPT_TIMEOUT`] for its answer, and a whole operation at most
//! [`OPERATION_TIMEOUT`]. Within that deadline, a request that failed in a way that may pass (no
//! answer in time, no server listening on the stream's subjects, "cluster not available", a
//! connection lost) is sent again after a short pause: when a stream's leader dies, its followers
//! elect another only after their RAFT election timeout (4 to 9 s, fixed in nats-server), and an
//! operation caught in that gap succeeds as soon as the new leader answers instead of failing.
//! Sending a write again is safe: every write carries a `Nats-Msg-Id` unique to it, so a clustered
//! stream that stored the first attempt (its acknowledgement lost) acknowledges the second as a
//! duplicate of it; and a conditional write refused as raced after an attempt without answer
//! checks whether the key's last message is its own. With the cluster gone (the client connected
//! to no server for `RECONNECT_GRACE`) or without quorum, the guest gets an error within that
//! bound, and the todo component answers 503. The client reconnects by itself (backoff capped at
//! [`MAX_RECONNECT_DELAY`]), so the host recovers when the cluster is back.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{
    self,
    context::PublishErrorKind,
    stream::{LastRawMessageError, LastRawMessageErrorKind, Stream},
};
use async_nats::{HeaderMap, StatusCode};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::future::join_all;
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

use super::{
    BackendConfig, BackendSettings, KeyPage, KvBackend, KvError, LIST_PAGE_SIZE, OpenOptions,
    Registration, Values, add_to_counter, parse_counter, url_entry,
};

/// `--store nats://HOST:PORT[,HOST:PORT...][?bucket-prefix=P&replicas=N]`; runtime config
/// `type = "nats"`, `url = "nats://..."`.
pub const REGISTRATION: Registration = Registration {
    scheme: "nats",
    url_shape: "nats://HOST:PORT[,HOST:PORT...][?bucket-prefix=P&replicas=N]",
    about: "NATS JetStream, replicated",
    runtime_config_types: &["nats"],
    from_url: |url| NatsUrl::parse(url).map(BackendConfig::new),
    from_runtime_config: |label, entry, _base| url_entry(label, entry, REGISTRATION.from_url),
};

/// The port of a server named without one: NATS's own default.
const DEFAULT_PORT: u16 = 4222;
/// JetStream allows at most 5 replicas of a stream.
const MAX_REPLICAS: usize = 5;
/// Long enough for a namespace, short enough to leave room for the bucket name.
const MAX_PREFIX: usize = 32;
/// The longest key token in a subject: far below the 4 KiB protocol line that carries it.
const MAX_KEY_TOKEN: usize = 256;
/// Where the key of a hashed token is kept.
const KEY_HEADER: &str = "Todo-Kv-Key";
/// The KV convention's header for delete and purge markers.
const OPERATION_HEADER: &str = "KV-Operation";

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one attempt of a request to the cluster (a read, a write's acknowledgement, a page)
/// waits for its answer before it is sent again. A live leader answers in milliseconds; a request
/// sent to a dead one (or during an election) gets no answer at all, and this bounds how long
/// the host keeps waiting for that answer after a new leader could already take a new request.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(750);
/// How long one operation may take, its retries included: what a store without quorum costs a
/// request at most (the todo component then answers 503), and how long an operation rides out a
/// stream leader's election.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause between two attempts of a request that failed at once (nobody listening on
/// the stream's subjects while it has no leader): short, because the new leader answers within
/// milliseconds of its election.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// While the client is between servers, an operation waits this long for it to reconnect
/// (moving to another server of a cluster takes milliseconds) before it fails.
const RECONNECT_GRACE: Duration = Duration::from_millis(500);
/// How long opening a bucket just created waits for its stream to elect its first leader.
const FIRST_LEADER_WAIT: Duration = Duration::from_secs(2);
/// The reconnect backoff's ceiling: after an outage, the host is back this soon after the cluster.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Single requests a batch keeps in flight at once.
pub const IN_FLIGHT: usize = 64;
/// Messages the leader is asked for one by one when a replica's last page fell short.
pub const LEADER_PAGE: usize = 100;
/// Value bytes one listing page may carry (a batched direct get returns whole messages).
const PAGE_BYTES: usize = 4 << 20;

/// A checked `nats://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NatsUrl {
    /// `HOST:PORT` of each named server.
    servers: Vec<String>,
    bucket_prefix: String,
    replicas: usize,
}

impl NatsUrl {
    fn parse(url: &str) -> anyhow::Result<Self> {
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
    fn summary(&self) -> String {
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

#[async_trait]
impl BackendSettings for NatsUrl {
    async fn open(&self, _: &OpenOptions) -> anyhow::Result<Arc<dyn KvBackend>> {
        Ok(Arc::new(NatsBackend::connect(self.clone()).await?))
    }
}

/// The NATS bucket of host bucket `bucket`: `prefix` + the name, `_` doubled, other characters
/// NATS refuses as `_` + hex bytes.
fn nats_bucket_name(prefix: &str, bucket: &str) -> String {
    let mut name = String::from(prefix);
    for c in bucket.chars() {
        match c {
            '_' => name.push_str("__"),
            c if c.is_ascii_alphanumeric() || c == '-' => name.push(c),
            c => {
                let mut utf8 = [0; 4];
                for byte in c.encode_utf8(&mut utf8).bytes() {
                    name.push_str(&format!("_{byte:02x}"));
                }
            }
        }
    }
    name
}

/// How a key is written in a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyToken {
    /// The key itself, or `=` + its base64url.
    Plain(String),
    /// `==` + base64url of its SHA-256; the key travels in [`KEY_HEADER`].
    Hashed(String),
}

impl KeyToken {
    fn of(key: &str) -> Self {
        let verbatim = !key.is_empty()
            && key.len() <= MAX_KEY_TOKEN
            && !key.starts_with('=')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b));
        if verbatim {
            return Self::Plain(key.to_string());
        }
        let encoded = format!("={}", URL_SAFE_NO_PAD.encode(key));
        if encoded.len() <= MAX_KEY_TOKEN {
            return Self::Plain(encoded);
        }
        Self::Hashed(format!(
            "=={}",
            URL_SAFE_NO_PAD.encode(Sha256::digest(key.as_bytes()))
        ))
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Plain(token) | Self::Hashed(token) => token,
        }
    }

    /// The key a stored message's token (and headers) stand for; `None` for a message this host
    /// did not write and cannot name.
    fn decode(token: &str, headers: Option<&HeaderMap>) -> Option<String> {
        let bytes = if token.starts_with("==") {
            let header = headers?.get(KEY_HEADER)?;
            URL_SAFE_NO_PAD.decode(header.as_str()).ok()?
        } else if let Some(encoded) = token.strip_prefix('=') {
            URL_SAFE_NO_PAD.decode(encoded).ok()?
        } else {
            return Some(token.to_string());
        };
        String::from_utf8(bytes).ok()
    }
}

/// One open bucket: its stream and subjects.
struct Bucket {
    /// The host's name for it, for messages.
    name: String,
    stream: Stream,
    /// `$KV.<nats bucket>.`
    subject_prefix: String,
    /// More than one message per key: listing must check each is the latest.
    keeps_history: bool,
    /// Replicas answer direct gets (every bucket made by a NATS KV client).
    direct: bool,
}

impl Bucket {
    fn subject(&self, token: &KeyToken) -> String {
        format!("{}{}", self.subject_prefix, token.as_str())
    }

    fn filter(&self) -> String {
        format!("{}>", self.subject_prefix)
    }

    fn stream_name(&self) -> &str {
        &self.stream.cached_info().config.name
    }
}

/// The current state of a key, as the stream leader has it.
struct Current {
    value: Bytes,
    /// The stream sequence of the key's last message: what a conditional write expects.
    revision: u64,
    /// A put, not a delete or purge marker.
    live: bool,
}

/// A message a listing page met.
#[derive(Clone)]
struct Listed {
    sequence: u64,
    subject: String,
    headers: Option<HeaderMap>,
}

impl Listed {
    /// The key this message stands for; `None` for one this host did not write.
    fn key(&self, subject_prefix: &str) -> Option<String> {
        let token = self.subject.strip_prefix(subject_prefix)?;
        KeyToken::decode(token, self.headers.as_ref())
    }

    fn is_marker(&self) -> bool {
        self.headers
            .as_ref()
            .and_then(|headers| headers.get(OPERATION_HEADER))
            .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE")
    }
}

/// One page as one source returned it.
struct Batch {
    messages: Vec<Listed>,
    /// The source says more messages follow.
    more: bool,
}

/// Why a conditional write did not happen.
enum WriteFailure {
    /// Someone wrote the key after the revision this write expected.
    Raced,
    Failed(KvError),
}

/// The last counter value this process wrote to a key, and its revision.
type CounterSlot = Arc<tokio::sync::Mutex<Option<(i64, u64)>>>;

/// A NATS JetStream cluster (or single server) shared by every host process.
pub struct NatsBackend {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    url: NatsUrl,
    summary: String,
    buckets: Mutex<HashMap<String, Arc<OnceCell<Arc<Bucket>>>>>,
    counters: Mutex<HashMap<(String, String), CounterSlot>>,
    /// Random per process: with [`Self::writes`], makes each write's `Nats-Msg-Id` unique.
    writer: u64,
    writes: AtomicU64,
}

tokio::task_local! {
    /// When the operation running on this task must be done; set by [`NatsBackend::bounded`].
    static DEADLINE: Instant;
}

/// A failed attempt of a request.
enum Attempt {
    /// It may pass: no answer in time, nobody listening on the stream's subjects, no stream
    /// leader yet, a connection lost. Worth sending again within the operation's deadline.
    Transient(String),
    /// A refusal that sending again would only repeat.
    Failed(KvError),
}

/// Whether a JetStream error says the stream (or the cluster) has no leader right now.
fn is_leaderless(err: &jetstream::Error) -> bool {
    matches!(
        err.error_code(),
        jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE | jetstream::ErrorCode::CLUSTER_NOT_LEADER
    )
}

/// A failed read of a stream message as an [`Attempt`]: a request that got no answer (or no
/// responder), or a stream without leader, may pass.
fn read_attempt(err: &LastRawMessageError) -> Attempt {
    let transient = match err.kind() {
        LastRawMessageErrorKind::Other => true,
        LastRawMessageErrorKind::JetStream(source) => is_leaderless(&source),
        _ => false,
    };
    if transient {
        Attempt::Transient(error_chain(err))
    } else {
        Attempt::Failed(KvError(error_chain(err)))
    }
}

/// The pause before attempt `tries + 1` of a request that failed: 10, 20, 40, ... ms up to
/// [`RETRY_PAUSE`], plus a little jitter so that many waiting requests do not arrive together.
fn retry_pause(tries: u32) -> Duration {
    (Duration::from_millis(10) * 2u32.pow(tries.min(4))).min(RETRY_PAUSE) + jitter(tries.min(3))
}

/// Counters whose last revision a process remembers; past this, idle ones are forgotten.
const MAX_COUNTER_SLOTS: usize = 1024;

impl NatsBackend {
    /// Connects to the URL's servers and checks that JetStream answers.
    async fn connect(url: NatsUrl) -> anyhow::Result<Self> {
        let summary = url.summary();
        let servers = url.servers.join(",");
        let client = async_nats::ConnectOptions::new()
            .name("todo-host")
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(ATTEMPT_TIMEOUT))
            .reconnect_delay_callback(|attempts| {
                let exponent = u32::try_from(attempts).unwrap_or(u32::MAX).min(10);
                (Duration::from_millis(10) * 2u32.pow(exponent)).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS: connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS: disconnected; reconnecting")
                    }
                    other => tracing::warn!("NATS: {other}"),
                }
            })
            .connect(url.servers.clone())
            .await
            .with_context(|| format!("cannot connect to any NATS server of '{servers}'"))?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(ATTEMPT_TIMEOUT);
        jetstream.query_account().await.with_context(|| {
            format!("JetStream does not answer at '{servers}' (is it enabled, with -js?)")
        })?;
        Ok(Self {
            client,
            jetstream,
            url,
            summary,
            buckets: Mutex::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
            writer: std::collections::hash_map::RandomState::new().hash_one(std::process::id()),
            writes: AtomicU64::new(0),
        })
    }

    /// The open bucket `name`, created on first use.
    async fn bucket(&self, name: &str) -> Result<Arc<Bucket>, KvError> {
        let cell = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            buckets.entry(name.to_string()).or_default().clone()
        };
        cell.get_or_try_init(|| self.open_bucket(name))
            .await
            .cloned()
    }

    async fn open_bucket(&self, name: &str) -> Result<Arc<Bucket>, KvError> {
        let nats_name = nats_bucket_name(&self.url.bucket_prefix, name);
        let context = || format!("NATS bucket '{nats_name}' (bucket '{name}')");
        let stream_name = format!("KV_{nats_name}");
        // STREAM.INFO is answered by the stream's leader: during an election, by nobody.
        let found = self
            .retrying(|| async {
                match self.jetstream.get_stream(&stream_name).await {
                    Err(err)
                        if matches!(
                            err.kind(),
                            jetstream::context::GetStreamErrorKind::Request
                        ) || matches!(
                            err.kind(),
                            jetstream::context::GetStreamErrorKind::JetStream(source)
                                if is_leaderless(&source)
                        ) =>
                    {
                        Err(Attempt::Transient(error_chain(&err)))
                    }
                    found => Ok(found),
                }
            })
            .await;
        let found = match found {
            Ok(found) => found,
            Err(err) => {
                return Err(KvError::new(format!("cannot open {}", context()), err));
            }
        };
        let stream = match found {
            Ok(stream) => {
                self.warn_if_different(&nats_name, &stream);
                stream
            }
            Err(err) if is_stream_not_found(&err) => {
                let config = jetstream::kv::Config {
                    bucket: nats_name.clone(),
                    description: format!("todo-host bucket '{name}'"),
                    history: 1,
                    num_replicas: self.url.replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                };
                match self.jetstream.create_key_value(config).await {
                    Ok(store) => {
                        tracing::info!("created {} with {} replicas", context(), self.url.replicas);
                        let mut stream = store.stream;
                        wait_for_leader(&mut stream).await;
                        stream
                    }
                    // Another host may have created it meanwhile, perhaps with other settings.
                    Err(create_err) => match self.jetstream.get_stream(&stream_name).await {
                        Ok(stream) => {
                            self.warn_if_different(&nats_name, &stream);
                            stream
                        }
                        Err(_) => {
                            return Err(KvError::new(
                                format!("cannot create {}", context()),
                                error_chain(&create_err),
                            ));
                        }
                    },
                }
            }
            Err(err) => {
                return Err(KvError::new(
                    format!("cannot open {}", context()),
                    error_chain(&err),
                ));
            }
        };
        let config = &stream.cached_info().config;
        Ok(Arc::new(Bucket {
            name: name.to_string(),
            subject_prefix: format!("$KV.{nats_name}."),
            keeps_history: config.max_messages_per_subject != 1,
            direct: config.allow_direct,
            stream,
        }))
    }

    /// Says so when an existing bucket is not what this host would have created.
    fn warn_if_different(&self, nats_name: &str, stream: &Stream) {
        let config = &stream.cached_info().config;
        let mut differences = Vec::new();
        if config.num_replicas != self.url.replicas {
            differences.push(format!(
                "{} replicas (not {})",
                config.num_replicas, self.url.replicas
            ));
        }
        if config.max_messages_per_subject != 1 {
            differences.push(format!(
                "history {} (not 1: listing checks each key with the leader)",
                config.max_messages_per_subject
            ));
        }
        if !config.allow_direct {
            differences.push("no direct get (listing reads from the leader)".to_string());
        }
        if !differences.is_empty() {
            tracing::warn!(
                "NATS bucket '{nats_name}' exists with {}; using it as it is",
                differences.join(", ")
            );
        }
    }

    /// Waits briefly for the client to be connected: between two servers of a cluster it is
    /// back within milliseconds; with no server at all, the operation fails now.
    async fn ensure_connected(&self) -> Result<(), KvError> {
        let until = Instant::now() + RECONNECT_GRACE;
        while self.client.connection_state() != async_nats::connection::State::Connected {
            if Instant::now() >= until {
                return Err(KvError(format!(
                    "not connected to any NATS server of '{}' (reconnecting)",
                    self.url.servers.join(",")
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Runs one whole operation within [`OPERATION_TIMEOUT`]; [`Self::retrying`] within it
    /// sends a request again until then.
    async fn bounded<T>(
        &self,
        what: impl FnOnce() -> String,
        operation: impl Future<Output = Result<T, KvError>>,
    ) -> Result<T, KvError> {
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        let run = DEADLINE.scope(deadline, async {
            self.ensure_connected().await?;
            operation.await
        });
        match tokio::time::timeout(OPERATION_TIMEOUT, run).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(KvError::new(what(), err)),
            Err(_) => Err(KvError::new(
                what(),
                format!("no answer within {OPERATION_TIMEOUT:?}"),
            )),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the operation's deadline (set by
    /// [`Self::bounded`]) comes; then the last failure is the error. Between two attempts, a
    /// client that lost its server must be connected again within [`RECONNECT_GRACE`]: with no
    /// server left, the operation fails then, not at its deadline.
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, KvError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Attempt>>,
    {
        let deadline = DEADLINE
            .try_with(|deadline| *deadline)
            .unwrap_or_else(|_| Instant::now() + OPERATION_TIMEOUT);
        let deadline = tokio::time::Instant::from_std(deadline);
        let mut last = None;
        for tries in 0u32.. {
            match tokio::time::timeout_at(deadline, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(Attempt::Failed(err))) => return Err(err),
                Ok(Err(Attempt::Transient(why))) => last = Some(why),
                Err(_) => break,
            }
            let pause = retry_pause(tries);
            if tokio::time::Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            self.ensure_connected().await?;
        }
        Err(KvError(match last {
            Some(why) => format!("{why} (sent again until {OPERATION_TIMEOUT:?} had passed)"),
            None => format!("no answer within {OPERATION_TIMEOUT:?}"),
        }))
    }

    /// The last message on `subject`, from the stream leader.
    async fn last_message(
        &self,
        bucket: &Bucket,
        subject: &str,
    ) -> Result<Option<jetstream::message::StreamMessage>, KvError> {
        self.retrying(|| async {
            match bucket.stream.get_last_raw_message_by_subject(subject).await {
                Ok(message) => Ok(Some(message)),
                Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(err) => {
                    if let LastRawMessageErrorKind::JetStream(source) = err.kind()
                        && source.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                    {
                        // Deleted behind this host's back: open (create) it again next time.
                        self.forget_bucket(&bucket.name);
                    }
                    Err(read_attempt(&err))
                }
            }
        })
        .await
    }

    /// The key's last message, from the stream leader.
    async fn read(&self, bucket: &Bucket, key: &str) -> Result<Option<Current>, KvError> {
        let token = KeyToken::of(key);
        let Some(message) = self.last_message(bucket, &bucket.subject(&token)).await? else {
            return Ok(None);
        };
        let listed = Listed {
            sequence: message.sequence,
            subject: message.subject.to_string(),
            headers: Some(message.headers),
        };
        if let KeyToken::Hashed(_) = token
            && !listed.is_marker()
            && listed.key(&bucket.subject_prefix).as_deref() != Some(key)
        {
            return Err(KvError(format!(
                "the message at '{}' belongs to another key",
                listed.subject
            )));
        }
        Ok(Some(Current {
            live: !listed.is_marker(),
            value: message.payload,
            revision: listed.sequence,
        }))
    }

    /// Publishes `value` (or a delete marker) at `key`, expecting revision `expected` when set;
    /// returns the new revision once the stream's quorum has it. Sent again while it may pass
    /// (see [`Self::retrying`]), always with the same `Nats-Msg-Id`: a clustered stream that
    /// stored an earlier attempt answers a later one with that attempt's sequence.
    async fn write(
        &self,
        bucket: &Bucket,
        key: &str,
        value: Option<Bytes>,
        expected: Option<u64>,
    ) -> Result<u64, WriteFailure> {
        let token = KeyToken::of(key);
        let mut headers = HeaderMap::new();
        if let KeyToken::Hashed(_) = token {
            headers.insert(KEY_HEADER, URL_SAFE_NO_PAD.encode(key));
        }
        if value.is_none() {
            headers.insert(OPERATION_HEADER, "DEL");
        }
        if let Some(revision) = expected {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                async_nats::HeaderValue::from(revision),
            );
        }
        let message_id = format!(
            "todo-host-{:016x}-{}",
            self.writer,
            self.writes.fetch_add(1, Ordering::Relaxed)
        );
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id.as_str());
        let subject = bucket.subject(&token);
        let payload = value.unwrap_or_default();
        // An attempt went unanswered: the stream may have stored it.
        let unanswered = AtomicBool::new(false);
        let outcome = self
            .retrying(|| async {
                let ack = self
                    .jetstream
                    .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                    .await
                    // Not sent (the connection is gone): nothing stored.
                    .map_err(|err| Attempt::Transient(error_chain(&err)))?;
                match ack.await {
                    Ok(ack) => Ok(Ok(ack.sequence)),
                    Err(err) if is_wrong_last_sequence(&err) => Ok(Err(())),
                    Err(err) => Err(match err.kind() {
                        // Nobody took the message, so nothing was stored: no stream leader
                        // (an election), or a stream whose subjects have not reached this
                        // server yet (created a moment ago).
                        PublishErrorKind::StreamNotFound => Attempt::Transient(error_chain(&err)),
                        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                            unanswered.store(true, Ordering::Relaxed);
                            Attempt::Transient(error_chain(&err))
                        }
                        PublishErrorKind::Other
                            if std::error::Error::source(&err)
                                .and_then(|source| source.downcast_ref::<jetstream::Error>())
                                .is_some_and(is_leaderless) =>
                        {
                            Attempt::Transient(error_chain(&err))
                        }
                        _ => Attempt::Failed(KvError(error_chain(&err))),
                    }),
                }
            })
            .await
            .map_err(WriteFailure::Failed)?;
        match outcome {
            Ok(revision) => Ok(revision),
            // A single server checks the expected revision before duplicates: an attempt that
            // went unanswered may be the very write that now makes this one look raced.
            Err(()) if unanswered.load(Ordering::Relaxed) => {
                match self.last_message(bucket, &subject).await {
                    Ok(Some(last))
                        if last
                            .headers
                            .get(async_nats::header::NATS_MESSAGE_ID)
                            .is_some_and(|id| id.as_str() == message_id) =>
                    {
                        Ok(last.sequence)
                    }
                    Ok(_) => Err(WriteFailure::Raced),
                    Err(err) => Err(WriteFailure::Failed(err)),
                }
            }
            Err(()) => Err(WriteFailure::Raced),
        }
    }

    fn forget_bucket(&self, name: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.remove(name);
    }

    async fn write_unconditionally(
        &self,
        bucket: &Bucket,
        key: &str,
        value: Option<Bytes>,
    ) -> Result<(), KvError> {
        match self.write(bucket, key, value, None).await {
            Ok(_) => Ok(()),
            Err(WriteFailure::Failed(err)) => Err(err),
            Err(WriteFailure::Raced) => Err(KvError(
                "the stream refused an unconditional write as raced".to_string(),
            )),
        }
    }

    /// `key`'s live value, for a batch: the error names the key.
    async fn read_live(
        &self,
        bucket: &Bucket,
        key: &str,
    ) -> Result<Option<(String, Vec<u8>)>, KvError> {
        let current = self
            .read(bucket, key)
            .await
            .map_err(|err| KvError::new(format!("get of '{key}'"), err))?;
        Ok(current
            .filter(|current| current.live)
            .map(|current| (key.to_string(), current.value.to_vec())))
    }

    /// A batch's write (a put, or a delete marker for `None`): the error names the key.
    async fn write_named(
        &self,
        bucket: &Bucket,
        key: &str,
        value: Option<Bytes>,
    ) -> Result<(), KvError> {
        let what = if value.is_some() { "put" } else { "delete" };
        self.write_unconditionally(bucket, key, value)
            .await
            .map_err(|err| KvError::new(format!("{what} of '{key}'"), err))
    }

    fn counter_slot(&self, bucket: &str, key: &str) -> CounterSlot {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if counters.len() >= MAX_COUNTER_SLOTS {
            // Forget the slots nobody is using; a forgotten one only costs a read.
            counters.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        counters
            .entry((bucket.to_string(), key.to_string()))
            .or_default()
            .clone()
    }

    async fn increment_in(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        let open = self.bucket(bucket).await?;
        let slot = self.counter_slot(bucket, key);
        // Increments of one key from this process go one at a time: they would only race each
        // other. The slot remembers what the last one wrote, so the next skips the read.
        let mut last = slot.lock().await;
        for attempt in 0u32.. {
            let (current, revision) = match *last {
                Some(known) => known,
                None => match self.read(&open, key).await? {
                    Some(current) if current.live => (
                        parse_counter(bucket, key, &current.value)?,
                        current.revision,
                    ),
                    Some(marker) => (0, marker.revision),
                    None => (0, 0),
                },
            };
            let next = add_to_counter(bucket, key, current, delta)?;
            match self
                .write(
                    &open,
                    key,
                    Some(Bytes::from(next.to_string())),
                    Some(revision),
                )
                .await
            {
                Ok(revision) => {
                    *last = Some((next, revision));
                    return Ok(next);
                }
                Err(WriteFailure::Raced) => {
                    // Another host wrote it: read again, after a short random pause so that
                    // hosts racing for one counter spread out.
                    *last = None;
                    tokio::time::sleep(jitter(attempt)).await;
                }
                Err(WriteFailure::Failed(err)) => {
                    *last = None;
                    return Err(err);
                }
            }
        }
        unreachable!("the loop only ends by returning")
    }

    async fn compare_and_swap_in(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        let open = self.bucket(bucket).await?;
        for attempt in 0u32.. {
            let current = self.read(&open, key).await?;
            let (matches, revision) = match (&current, expected) {
                (Some(current), Some(expected)) if current.live => {
                    (current.value.as_ref() == expected, current.revision)
                }
                (Some(current), None) => (!current.live, current.revision),
                (Some(_), Some(_)) | (None, Some(_)) => (false, 0),
                (None, None) => (true, 0),
            };
            if !matches {
                return Ok(false);
            }
            match self
                .write(
                    &open,
                    key,
                    Some(Bytes::copy_from_slice(value)),
                    Some(revision),
                )
                .await
            {
                Ok(_) => return Ok(true),
                // Written meanwhile: swap only if it still holds what the caller saw.
                Err(WriteFailure::Raced) => tokio::time::sleep(jitter(attempt)).await,
                Err(WriteFailure::Failed(err)) => return Err(err),
            }
        }
        unreachable!("the loop only ends by returning")
    }

    async fn list_in(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        let open = self.bucket(bucket).await?;
        let after = cursor.unwrap_or(0);
        let (batch, fence) = if open.direct {
            // The leader's last sequence, asked alongside: a last page must reach it.
            let (batch, fence) =
                tokio::join!(self.direct_batch(&open, after), self.last_sequence(&open));
            (batch?, Some(fence?))
        } else {
            (self.leader_batch(&open, after, LEADER_PAGE).await?, None)
        };
        let mut messages = batch.messages;
        let mut more = batch.more;
        let reached = messages.last().map_or(after, |m| m.sequence);
        if let Some(fence) = fence
            && !more
            && reached < fence
        {
            // The replica that answered lags behind the leader: read the rest from the leader.
            tracing::debug!(
                "NATS bucket '{}': a replica listed up to {reached}, the leader has {fence}",
                open.name
            );
            let room = LIST_PAGE_SIZE
                .saturating_sub(messages.len())
                .min(LEADER_PAGE);
            let tail = self.leader_batch(&open, reached, room).await?;
            messages.extend(tail.messages);
            more = tail.more;
        }
        let next = messages.last().map(|m| m.sequence);
        let live: Vec<Listed> = messages.into_iter().filter(|m| !m.is_marker()).collect();
        let live = if open.keeps_history {
            self.only_latest(&open, live).await?
        } else {
            live
        };
        let keys = live
            .iter()
            .filter_map(|m| m.key(&open.subject_prefix))
            .collect();
        Ok(KeyPage {
            keys,
            cursor: if more { next.or(cursor) } else { None },
        })
    }

    /// Up to [`LIST_PAGE_SIZE`] messages after sequence `after`, from whichever replica answers
    /// the stream's direct get first, in one request (sent again while it may pass).
    async fn direct_batch(&self, bucket: &Bucket, after: u64) -> Result<Batch, KvError> {
        self.retrying(|| self.direct_batch_once(bucket, after))
            .await
    }

    async fn direct_batch_once(&self, bucket: &Bucket, after: u64) -> Result<Batch, Attempt> {
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|err| Attempt::Transient(error_chain(&err)))?;
        let request = serde_json::json!({
            "seq": after + 1,
            "next_by_subj": bucket.filter(),
            "batch": LIST_PAGE_SIZE,
            "max_bytes": PAGE_BYTES,
        });
        self.client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{}", bucket.stream_name()),
                inbox,
                Bytes::from(request.to_string()),
            )
            .await
            .map_err(|err| Attempt::Transient(error_chain(&err)))?;
        let mut messages = Vec::new();
        loop {
            let reply = tokio::time::timeout(ATTEMPT_TIMEOUT, replies.next())
                .await
                .map_err(|_| {
                    Attempt::Transient(format!(
                        "listing page after sequence {after}: no answer within {ATTEMPT_TIMEOUT:?}"
                    ))
                })?
                .ok_or_else(|| Attempt::Transient("the reply subscription closed".to_string()))?;
            match reply.status.map(|status| status.as_u16()) {
                None => {
                    let header = |name: &str| {
                        reply
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(name))
                            .map(|v| v.as_str().to_string())
                    };
                    let (Some(subject), Some(sequence)) = (
                        header("Nats-Subject"),
                        header("Nats-Sequence").and_then(|s| s.parse().ok()),
                    ) else {
                        return Err(Attempt::Failed(KvError(
                            "a listing reply without subject or sequence".to_string(),
                        )));
                    };
                    messages.push(Listed {
                        sequence,
                        subject,
                        headers: reply.headers,
                    });
                }
                // End of batch: says how many matching messages follow.
                Some(204) => {
                    let pending = reply
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Num-Pending"))
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                        .unwrap_or(0);
                    return Ok(Batch {
                        messages,
                        more: pending > 0,
                    });
                }
                // Nothing at or after the start.
                Some(404) => {
                    return Ok(Batch {
                        messages,
                        more: false,
                    });
                }
                Some(_) if reply.status == Some(StatusCode::NO_RESPONDERS) => {
                    return Err(Attempt::Transient(format!(
                        "no replica of stream '{}' answers (no quorum, or the stream is gone)",
                        bucket.stream_name()
                    )));
                }
                Some(status) => {
                    return Err(Attempt::Failed(KvError(format!(
                        "listing page after sequence {after}: status {status} {}",
                        reply.description.unwrap_or_default()
                    ))));
                }
            }
        }
    }

    /// Up to `limit` messages after sequence `after`, from the stream leader, one request each.
    async fn leader_batch(
        &self,
        bucket: &Bucket,
        after: u64,
        limit: usize,
    ) -> Result<Batch, KvError> {
        let mut messages = Vec::new();
        let mut next = after + 1;
        while messages.len() < limit {
            let found = self
                .retrying(|| async {
                    match bucket
                        .stream
                        .raw_message_builder()
                        .sequence(next)
                        .next_by_subject(bucket.filter())
                        .send()
                        .await
                    {
                        Ok(message) => Ok(Some(message)),
                        Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => {
                            Ok(None)
                        }
                        Err(err) => Err(read_attempt(&err)),
                    }
                })
                .await?;
            let Some(message) = found else {
                return Ok(Batch {
                    messages,
                    more: false,
                });
            };
            next = message.sequence + 1;
            messages.push(Listed {
                sequence: message.sequence,
                subject: message.subject.to_string(),
                headers: Some(message.headers),
            });
        }
        Ok(Batch {
            messages,
            more: true,
        })
    }

    /// The stream's last sequence, as its leader has it (0: empty).
    async fn last_sequence(&self, bucket: &Bucket) -> Result<u64, KvError> {
        let last = self.last_message(bucket, ">").await?;
        Ok(last.map_or(0, |message| message.sequence))
    }

    /// Of messages from a bucket with history, those that are their key's latest.
    async fn only_latest(
        &self,
        bucket: &Bucket,
        messages: Vec<Listed>,
    ) -> Result<Vec<Listed>, KvError> {
        let mut latest = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(IN_FLIGHT) {
            let checks = chunk.iter().map(|message| self.is_latest(bucket, message));
            let answers = join_all(checks).await;
            for (message, answer) in chunk.iter().zip(answers) {
                if answer? {
                    latest.push(message.clone());
                }
            }
        }
        Ok(latest)
    }

    async fn is_latest(&self, bucket: &Bucket, message: &Listed) -> Result<bool, KvError> {
        let last = self.last_message(bucket, &message.subject).await?;
        Ok(last.is_some_and(|last| last.sequence == message.sequence))
    }
}

/// Waits (a little) until a stream just created has elected its leader, so that the first
/// operations on it do not meet a stream that cannot answer yet.
async fn wait_for_leader(stream: &mut Stream) {
    let until = Instant::now() + FIRST_LEADER_WAIT;
    while Instant::now() < until {
        match stream.info().await {
            Ok(info) if info.cluster.as_ref().is_none_or(|c| c.leader.is_some()) => return,
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// Whether a `get_stream` failure says the stream does not exist.
fn is_stream_not_found(err: &jetstream::context::GetStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(err)
            if err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Whether a write was refused because the key moved past the revision it expected. A clustered
/// stream says so with error code 10164, a single server with 10071 (which async-nats knows).
fn is_wrong_last_sequence(err: &jetstream::context::PublishError) -> bool {
    err.kind() == PublishErrorKind::WrongLastSequence
        || std::error::Error::source(err)
            .and_then(|source| source.downcast_ref::<jetstream::Error>())
            .is_some_and(|source| matches!(source.error_code().0, 10071 | 10164))
}

/// An error and its causes on one line: async-nats's own messages are terse.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// A random pause before retry `attempt` of a raced write: up to 1, 2, 4, ... 32 ms.
fn jitter(attempt: u32) -> Duration {
    static STATE: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    // One xorshift step over a shared state mixed with the clock: spread, not secrecy.
    let mut x = STATE.fetch_add(nanos | 1, Ordering::Relaxed) ^ nanos;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let ceiling_us = 1000u64 << attempt.min(5);
    Duration::from_micros(x % ceiling_us)
}

#[async_trait]
impl KvBackend for NatsBackend {
    fn summary(&self) -> String {
        self.summary.clone()
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.bounded(
            || format!("NATS get of '{key}' in bucket '{bucket}'"),
            async {
                let open = self.bucket(bucket).await?;
                Ok(self
                    .read(&open, key)
                    .await?
                    .filter(|current| current.live)
                    .map(|current| current.value.to_vec()))
            },
        )
        .await
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        Ok(self.get(bucket, key).await?.is_some())
    }

    async fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.bounded(
            || format!("NATS put of '{key}' in bucket '{bucket}'"),
            async {
                let open = self.bucket(bucket).await?;
                self.write_unconditionally(&open, key, Some(Bytes::copy_from_slice(value)))
                    .await
            },
        )
        .await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        self.bounded(
            || format!("NATS delete of '{key}' in bucket '{bucket}'"),
            async {
                let open = self.bucket(bucket).await?;
                self.write_unconditionally(&open, key, None).await
            },
        )
        .await
    }

    async fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        self.bounded(
            || format!("NATS listing of bucket '{bucket}'"),
            self.list_in(bucket, cursor),
        )
        .await
    }

    async fn increment(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        self.bounded(
            || format!("NATS increment of '{key}' in bucket '{bucket}'"),
            self.increment_in(bucket, key, delta),
        )
        .await
    }

    async fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        self.bounded(
            || format!("NATS compare-and-swap of '{key}' in bucket '{bucket}'"),
            self.compare_and_swap_in(bucket, key, expected, value),
        )
        .await
    }

    async fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Values, KvError> {
        self.bounded(
            || format!("NATS get of {} keys in bucket '{bucket}'", keys.len()),
            async {
                let open = self.bucket(bucket).await?;
                let mut values = Vec::with_capacity(keys.len());
                for chunk in keys.chunks(IN_FLIGHT) {
                    let reads = chunk.iter().map(|key| self.read_live(&open, key));
                    for value in join_all(reads).await {
                        values.push(value?);
                    }
                }
                Ok(values)
            },
        )
        .await
    }

    async fn set_many(&self, bucket: &str, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        self.bounded(
            || format!("NATS put of {} keys in bucket '{bucket}'", entries.len()),
            async {
                let open = self.bucket(bucket).await?;
                for chunk in entries.chunks(IN_FLIGHT) {
                    let writes = chunk.iter().map(|(key, value)| {
                        self.write_named(&open, key, Some(Bytes::copy_from_slice(value)))
                    });
                    join_all(writes)
                        .await
                        .into_iter()
                        .collect::<Result<(), _>>()?;
                }
                Ok(())
            },
        )
        .await
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        self.bounded(
            || format!("NATS delete of {} keys in bucket '{bucket}'", keys.len()),
            async {
                let open = self.bucket(bucket).await?;
                for chunk in keys.chunks(IN_FLIGHT) {
                    let writes = chunk.iter().map(|key| self.write_named(&open, key, None));
                    join_all(writes)
                        .await
                        .into_iter()
                        .collect::<Result<(), _>>()?;
                }
                Ok(())
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn bucket_names_map_one_to_one_onto_what_nats_allows() {
        assert_eq!(nats_bucket_name("", "default"), "default");
        assert_eq!(nats_bucket_name("", "todo.v2"), "todo_2ev2");
        assert_eq!(nats_bucket_name("", "my_app"), "my__app");
        assert_eq!(nats_bucket_name("p-", "a-b"), "p-a-b");
        // `_2e` could be a dot or an underscore followed by "2e": escaping `_` keeps them apart.
        assert_ne!(nats_bucket_name("", "a.b"), nats_bucket_name("", "a_2eb"));
        for name in ["a.b", "a_2eb", "x__y", "ü", "-_.-"] {
            let mapped = nats_bucket_name("", name);
            assert!(
                mapped
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)),
                "{mapped}"
            );
        }
    }

    #[test]
    fn keys_are_stored_plain_encoded_or_hashed_and_decode_back() {
        assert_eq!(KeyToken::of("todo/12"), KeyToken::Plain("todo/12".into()));
        assert_eq!(
            KeyToken::of("meta/next-id"),
            KeyToken::Plain("meta/next-id".into())
        );
        for key in ["", "has space", "a.b", "=starts", "todo/ünïcødé ✓", "x*>"] {
            let token = KeyToken::of(key);
            let KeyToken::Plain(text) = &token else {
                panic!("{key:?} was hashed");
            };
            assert!(text.starts_with('=') && !text.starts_with("=="), "{text}");
            assert_eq!(KeyToken::decode(text, None).as_deref(), Some(key));
        }
        let long = format!("long/{}", "k".repeat(4000));
        let token = KeyToken::of(&long);
        assert!(matches!(token, KeyToken::Hashed(_)));
        assert!(token.as_str().len() <= MAX_KEY_TOKEN);
        let mut headers = HeaderMap::new();
        headers.insert(KEY_HEADER, URL_SAFE_NO_PAD.encode(&long));
        assert_eq!(
            KeyToken::decode(token.as_str(), Some(&headers)).as_deref(),
            Some(long.as_str())
        );
        assert_eq!(KeyToken::decode(token.as_str(), None), None);
        // Every token is a valid NATS key: no dots, no wildcards, no spaces.
        for key in ["", "a b", &long, "todo/1", "ü"] {
            let token = KeyToken::of(key);
            assert!(
                token
                    .as_str()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b)),
                "{key:?}: {token:?}"
            );
        }
    }

    #[test]
    fn retry_pauses_stay_short() {
        for attempt in 0..40 {
            assert!(jitter(attempt) < Duration::from_millis(33));
        }
    }
}

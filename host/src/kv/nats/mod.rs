//! A replicated store: NATS JetStream key-value,
//! `--store nats://HOST:PORT[,HOST:PORT...][?bucket-prefix=P&replicas=N]`.
//!
//! Every host process pointed at the same NATS cluster sees the same data, and with three
//! replicas the data survives the loss of any one server: JetStream keeps each bucket as a
//! stream replicated by RAFT, and a write is acknowledged only once a majority of the replicas
//! hold it. The client connects to any named server and moves to a live one by itself.
//!
//! # Layout
//! * this file: the backend: opening buckets, reads, writes, atomics and batches;
//! * `url.rs`: the `nats://` URL (servers, `replicas=N`, `bucket-prefix=P`);
//! * `keys.rs`: how host bucket names and keys are written in NATS names and subjects;
//! * `listing.rs`: listing keys page by page, with a stream sequence as the cursor;
//! * `retry.rs`: timeouts, which failed requests are sent again, and the pauses between them.
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

mod keys;
mod listing;
mod retry;
mod url;

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::{
    self,
    stream::{LastRawMessageErrorKind, Stream},
};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::{TryStreamExt as _, stream};
use tokio::sync::OnceCell;

use super::{
    BackendConfig, BackendSettings, KeyPage, KvBackend, KvError, OpenOptions, Registration, Values,
    add_to_counter, parse_counter, url_entry,
};
use keys::{KEY_HEADER, KeyToken, nats_bucket_name};
pub use listing::LEADER_PAGE;
use listing::Listed;
pub use retry::{ATTEMPT_TIMEOUT, MAX_RECONNECT_DELAY, OPERATION_TIMEOUT};
use retry::{
    Attempt, is_leaderless, is_wrong_last_sequence, publish_attempt, race_pauses, read_attempt,
};
use url::NatsUrl;

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

/// The KV convention's header for delete and purge markers.
const OPERATION_HEADER: &str = "KV-Operation";
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long opening a bucket just created waits for its stream to elect its first leader.
const FIRST_LEADER_WAIT: Duration = Duration::from_secs(2);
/// Single requests a batch keeps in flight at once.
pub const IN_FLIGHT: usize = 64;

/// `request` for every item of a batch, [`IN_FLIGHT`] at a time: each answer starts the next
/// request (no waves that wait for their slowest member), and the answers come back in order.
/// A batch is one round trip for the guest; this keeps it close to one for the store too.
async fn in_flight<R, F>(requests: Vec<F>) -> Result<Vec<R>, KvError>
where
    F: Future<Output = Result<R, KvError>>,
{
    stream::iter(requests)
        .buffered(IN_FLIGHT)
        .try_collect()
        .await
}

#[async_trait]
impl BackendSettings for NatsUrl {
    async fn open(&self, _: &OpenOptions) -> anyhow::Result<Arc<dyn KvBackend>> {
        Ok(Arc::new(NatsBackend::connect(self.clone()).await?))
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
            .reconnect_delay_callback(retry::reconnect_delay)
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
                    // Or the create got no answer in time and the cluster is still making it (a
                    // stream of three replicas elects its leader first, slowly on a busy
                    // machine): then it is looked for again until the operation's deadline.
                    Err(create_err) => {
                        let timed_out = matches!(
                            create_err.kind(),
                            jetstream::context::CreateKeyValueErrorKind::TimedOut
                        );
                        let found = self
                            .retrying(|| async {
                                self.jetstream
                                    .get_stream(&stream_name)
                                    .await
                                    .map_err(|err| match timed_out {
                                        true => Attempt::Transient(error_chain(&err)),
                                        false => Attempt::Failed(KvError::new(
                                            "not there after the failed create",
                                            error_chain(&err),
                                        )),
                                    })
                            })
                            .await;
                        match found {
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
                        }
                    }
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
        if let Some(key) = token.key_header(key) {
            headers.insert(KEY_HEADER, key);
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
                    Err(err) => Err(publish_attempt(&err, &unanswered)),
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
        let mut pauses = race_pauses();
        loop {
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
                    tokio::time::sleep(pauses.next().unwrap_or_default()).await;
                }
                Err(WriteFailure::Failed(err)) => {
                    *last = None;
                    return Err(err);
                }
            }
        }
    }

    async fn compare_and_swap_in(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        let open = self.bucket(bucket).await?;
        let mut pauses = race_pauses();
        loop {
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
                Err(WriteFailure::Raced) => {
                    tokio::time::sleep(pauses.next().unwrap_or_default()).await;
                }
                Err(WriteFailure::Failed(err)) => return Err(err),
            }
        }
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
                let reads = keys.iter().map(|key| self.read_live(&open, key));
                in_flight(reads.collect()).await
            },
        )
        .await
    }

    async fn set_many(&self, bucket: &str, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        self.bounded(
            || format!("NATS put of {} keys in bucket '{bucket}'", entries.len()),
            async {
                let open = self.bucket(bucket).await?;
                let writes = entries.iter().map(|(key, value)| {
                    self.write_named(&open, key, Some(Bytes::copy_from_slice(value)))
                });
                in_flight(writes.collect()).await.map(drop)
            },
        )
        .await
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        self.bounded(
            || format!("NATS delete of {} keys in bucket '{bucket}'", keys.len()),
            async {
                let open = self.bucket(bucket).await?;
                let writes = keys.iter().map(|key| self.write_named(&open, key, None));
                in_flight(writes.collect()).await.map(drop)
            },
        )
        .await
    }
}

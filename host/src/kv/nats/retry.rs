//! How the NATS backend rides out failures: how long a request and an operation may take, which
//! failed requests are sent again, and the pauses between attempts.
//!
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
//! to no server for [`RECONNECT_GRACE`]) or without quorum, the guest gets an error within that
//! bound, and the todo component answers 503. The client reconnects by itself (backoff capped at
//! [`MAX_RECONNECT_DELAY`]), so the host recovers when the cluster is back.
//!
//! A conditional write that lost a race is not a failure to send again: the caller reads the key
//! again and decides, after a short random pause ([`jitter`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    context::{PublishError, PublishErrorKind},
    stream::{LastRawMessageError, LastRawMessageErrorKind},
};

use super::{NatsBackend, error_chain};
use crate::kv::KvError;

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
/// The reconnect backoff's ceiling: after an outage, the host is back this soon after the cluster.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

tokio::task_local! {
    /// When the operation running on this task must be done; set by [`NatsBackend::bounded`].
    static DEADLINE: Instant;
}

/// A failed attempt of a request.
pub(super) enum Attempt {
    /// It may pass: no answer in time, nobody listening on the stream's subjects, no stream
    /// leader yet, a connection lost. Worth sending again within the operation's deadline.
    Transient(String),
    /// A refusal that sending again would only repeat.
    Failed(KvError),
}

/// Whether a JetStream error says the stream (or the cluster) has no leader right now.
pub(super) fn is_leaderless(err: &jetstream::Error) -> bool {
    matches!(
        err.error_code(),
        jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE | jetstream::ErrorCode::CLUSTER_NOT_LEADER
    )
}

/// A failed read of a stream message as an [`Attempt`]: a request that got no answer (or no
/// responder), or a stream without leader, may pass.
pub(super) fn read_attempt(err: &LastRawMessageError) -> Attempt {
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

/// A publish whose acknowledgement was an error (other than a lost race, see
/// [`is_wrong_last_sequence`]) as an [`Attempt`]; sets `unanswered` when the stream may have
/// stored it nonetheless.
pub(super) fn publish_attempt(err: &PublishError, unanswered: &AtomicBool) -> Attempt {
    match err.kind() {
        // Nobody took the message, so nothing was stored: no stream leader (an election), or a
        // stream whose subjects have not reached this server yet (created a moment ago).
        PublishErrorKind::StreamNotFound => Attempt::Transient(error_chain(err)),
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            unanswered.store(true, Ordering::Relaxed);
            Attempt::Transient(error_chain(err))
        }
        PublishErrorKind::Other
            if std::error::Error::source(err)
                .and_then(|source| source.downcast_ref::<jetstream::Error>())
                .is_some_and(is_leaderless) =>
        {
            Attempt::Transient(error_chain(err))
        }
        _ => Attempt::Failed(KvError(error_chain(err))),
    }
}

/// Whether a write was refused because the key moved past the revision it expected. A clustered
/// stream says so with error code 10164, a single server with 10071 (which async-nats knows).
pub(super) fn is_wrong_last_sequence(err: &PublishError) -> bool {
    err.kind() == PublishErrorKind::WrongLastSequence
        || std::error::Error::source(err)
            .and_then(|source| source.downcast_ref::<jetstream::Error>())
            .is_some_and(|source| matches!(source.error_code().0, 10071 | 10164))
}

/// The pause before attempt `tries + 1` of a request that failed: 10, 20, 40, ... ms up to
/// [`RETRY_PAUSE`], plus a little jitter so that many waiting requests do not arrive together.
fn retry_pause(tries: u32) -> Duration {
    (Duration::from_millis(10) * 2u32.pow(tries.min(4))).min(RETRY_PAUSE) + jitter(tries.min(3))
}

/// A random pause before retry `attempt` of a raced write: up to 1, 2, 4, ... 32 ms.
pub(super) fn jitter(attempt: u32) -> Duration {
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

/// The client's pause before its reconnection attempt `attempts`: 10 ms doubled each time, up
/// to [`MAX_RECONNECT_DELAY`].
pub(super) fn reconnect_delay(attempts: usize) -> Duration {
    let exponent = u32::try_from(attempts).unwrap_or(u32::MAX).min(10);
    (Duration::from_millis(10) * 2u32.pow(exponent)).min(MAX_RECONNECT_DELAY)
}

impl NatsBackend {
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
    pub(super) async fn bounded<T>(
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
    pub(super) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, KvError>
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pauses_stay_short() {
        for attempt in 0..40 {
            assert!(jitter(attempt) < Duration::from_millis(33));
        }
    }
}

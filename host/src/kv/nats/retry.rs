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
//! again and decides, after a short random pause ([`RACE_PAUSES`]).
//!
//! The retries and their pauses are backon's: the note above [`REQUEST_PAUSES`] says why.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    context::{PublishError, PublishErrorKind},
    stream::{LastRawMessageError, LastRawMessageErrorKind},
};
use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder, Retryable as _};

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

// Retries, backoff and jitter are backon's (`Retryable`, `ExponentialBuilder`). backon is
// maintained, and compiled in already (redis-rs reconnects with it), so asking it here adds no
// crate and no feature; `backoff` is unmaintained (RUSTSEC-2025-0012), and tokio-retry has had
// no release since 2021. Its cost on the request path, measured (release build, 2 busy cores):
// an attempt that succeeds at once goes through `retrying` in ~0.2 µs against ~0.06 µs for the
// hand-written loop it replaced, and a get from a local nats-server took 180 to 470 µs with
// either: the difference is far below the noise of one round trip. backon is built without its
// `std` feature (redis-rs does not ask it), which would seed every backoff's jitter alike: each
// backoff gets a seed of its own (`jittered`).

/// The pauses between attempts of a request that failed: 10, 20, 40, then 50 ms, each stretched
/// by a random 0 to 100 % so that many waiting requests do not arrive together: from 10 ms, and
/// never longer than [`RETRY_PAUSE`]. As many as the operation's deadline leaves room for.
const REQUEST_PAUSES: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(10))
    .with_max_delay(RETRY_PAUSE.checked_div(2).unwrap())
    .with_jitter()
    .without_max_times();

/// The pauses before a conditional write that lost a race reads the key again, so that hosts
/// racing for one counter spread out: 0.5 to 1 ms, then 1 to 2, ... up to 16 to 32 ms.
const RACE_PAUSES: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_micros(500))
    .with_max_delay(Duration::from_millis(16))
    .with_jitter()
    .without_max_times();

/// The client's pauses between reconnection attempts: 10 ms doubled each time up to
/// [`MAX_RECONNECT_DELAY`], without jitter.
const RECONNECT_DELAYS: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(10))
    .with_max_delay(MAX_RECONNECT_DELAY)
    .without_max_times();

/// `pauses` with a jitter seed of its own (see the note on backon above).
fn jittered(pauses: ExponentialBuilder) -> ExponentialBuilder {
    pauses.with_jitter_seed(fastrand::u64(..))
}

/// One conditional write's pauses between its races ([`RACE_PAUSES`]); they never run out.
pub(super) fn race_pauses() -> ExponentialBackoff {
    jittered(RACE_PAUSES).build()
}

/// The client's pause before its connection attempt `attempts` (the first is 1): none before
/// the first, whether at start-up or after a disconnection (a pause there delayed every cold
/// start on NATS by 20 ms), then 40 ms, doubled each time.
pub(super) fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    // Past ten doublings the ceiling holds: no need to step further.
    RECONNECT_DELAYS
        .build()
        .nth(attempts.min(10))
        .unwrap_or(MAX_RECONNECT_DELAY)
}

/// Why [`retrying`] stopped without a value.
enum Stop {
    /// A failure that sending again would not mend, or no server to send to.
    Refused(KvError),
    /// A failure that may pass, with no time left to pause and send again.
    Transient(String),
    /// The operation's deadline came during an attempt.
    Deadline,
}

/// Runs `attempt` until it succeeds, fails for good, or the operation's deadline (set by
/// [`NatsBackend::bounded`]) comes; then the last failure is the error. Before each attempt but
/// the first, `reconnected` must succeed: its error ends the operation then. `attempt` must only
/// make its future (an `async` block or fn), which does nothing until polled: it is made before
/// `reconnected` has answered.
async fn retrying<T, F, Fut, R, RFut>(mut reconnected: R, mut attempt: F) -> Result<T, KvError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
    R: FnMut() -> RFut,
    RFut: Future<Output = Result<(), KvError>>,
{
    let deadline = DEADLINE
        .try_with(|deadline| *deadline)
        .unwrap_or_else(|_| Instant::now() + OPERATION_TIMEOUT);
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut first = true;
    let mut last = None;
    let outcome = (|| {
        // Both futures are only made here (futures do nothing until polled): they run in order
        // below.
        let reconnect = (!std::mem::take(&mut first)).then(&mut reconnected);
        let sent = attempt();
        async move {
            if let Some(reconnect) = reconnect {
                reconnect.await.map_err(Stop::Refused)?;
            }
            match tokio::time::timeout_at(deadline, sent).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(Attempt::Failed(err))) => Err(Stop::Refused(err)),
                Ok(Err(Attempt::Transient(why))) => Err(Stop::Transient(why)),
                Err(_) => Err(Stop::Deadline),
            }
        }
    })
    .retry(jittered(REQUEST_PAUSES))
    .sleep(tokio::time::sleep)
    .when(|stop| matches!(stop, Stop::Transient(_)))
    // A pause that would end at or past the deadline is not taken: the operation fails now.
    .adjust(|_, pause| pause.filter(|pause| tokio::time::Instant::now() + *pause < deadline))
    .notify(|stop, _| {
        if let Stop::Transient(why) = stop {
            last = Some(why.clone());
        }
    })
    .await;
    let sent_again = |why| format!("{why} (sent again until {OPERATION_TIMEOUT:?} had passed)");
    match outcome {
        Ok(value) => Ok(value),
        Err(Stop::Refused(err)) => Err(err),
        Err(Stop::Transient(why)) => Err(KvError(sent_again(why))),
        Err(Stop::Deadline) => Err(KvError(match last {
            Some(why) => sent_again(why),
            None => format!("no answer within {OPERATION_TIMEOUT:?}"),
        })),
    }
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
    /// [`Self::bounded`]) comes, pausing [`REQUEST_PAUSES`] between attempts; then the last
    /// failure is the error. Between two attempts, a client that lost its server must be
    /// connected again within [`RECONNECT_GRACE`]: with no server left, the operation fails
    /// then, not at its deadline.
    pub(super) async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T, KvError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Attempt>>,
    {
        retrying(|| self.ensure_connected(), attempt).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::AtomicU32;

    #[test]
    fn request_pauses_start_at_10_ms_grow_and_never_pass_retry_pause() {
        for _ in 0..100 {
            let pauses: Vec<Duration> = jittered(REQUEST_PAUSES).build().take(20).collect();
            assert!(pauses[0] >= Duration::from_millis(10), "{pauses:?}");
            assert!(pauses[0] < Duration::from_millis(20), "{pauses:?}");
            assert!(
                pauses[4..].iter().all(|p| *p >= RETRY_PAUSE / 2),
                "{pauses:?}"
            );
            assert!(pauses.iter().all(|p| *p <= RETRY_PAUSE), "{pauses:?}");
        }
    }

    #[test]
    fn race_pauses_start_below_1_ms_and_stay_within_32_ms() {
        for _ in 0..100 {
            let pauses: Vec<Duration> = race_pauses().take(40).collect();
            assert_eq!(pauses.len(), 40, "race pauses never run out");
            assert!(pauses[0] < Duration::from_millis(1), "{pauses:?}");
            assert!(
                pauses.iter().all(|p| *p <= Duration::from_millis(32)),
                "{pauses:?}"
            );
        }
    }

    /// backon without its `std` feature would seed every backoff alike: requests that failed
    /// together would also pause alike and arrive together again.
    #[test]
    fn each_backoff_draws_its_own_jitter() {
        let firsts: std::collections::HashSet<Duration> =
            (0..20).filter_map(|_| race_pauses().next()).collect();
        assert!(firsts.len() > 1, "{firsts:?}");
    }

    #[test]
    fn the_first_connection_attempt_goes_at_once_then_pauses_double_from_40_ms() {
        let near = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_micros(1);
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        for attempts in 2..100 {
            let doubled = Duration::from_millis(10) * 2u32.pow(attempts.min(10) as u32);
            let delay = reconnect_delay(attempts);
            assert!(
                near(delay, doubled.min(MAX_RECONNECT_DELAY)),
                "{attempts}: {delay:?}"
            );
        }
        assert!(near(reconnect_delay(2), Duration::from_millis(40)));
        assert_eq!(reconnect_delay(usize::MAX), MAX_RECONNECT_DELAY);
    }

    /// Runs `retrying` within a deadline `within` from now, the client always connected;
    /// answers its outcome, how many attempts it made, and how long it took.
    async fn retry_within<T>(
        within: Duration,
        mut attempt: impl FnMut(u32) -> Result<T, Attempt>,
    ) -> (Result<T, KvError>, u32, Duration) {
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let outcome = DEADLINE
            .scope(
                started + within,
                retrying(
                    || async { Ok(()) },
                    || std::future::ready(attempt(attempts.fetch_add(1, Ordering::Relaxed))),
                ),
            )
            .await;
        (outcome, attempts.into_inner(), started.elapsed())
    }

    #[tokio::test]
    async fn a_failure_that_may_pass_is_sent_again_until_it_does() {
        let (outcome, attempts, _) = retry_within(OPERATION_TIMEOUT, |n| match n {
            0 | 1 => Err(Attempt::Transient("no responders".into())),
            n => Ok(n),
        })
        .await;
        assert_eq!((outcome.ok(), attempts), (Some(2), 3));
    }

    #[tokio::test]
    async fn a_refusal_is_not_sent_again() {
        let (outcome, attempts, _) = retry_within(OPERATION_TIMEOUT, |_| {
            Err::<(), _>(Attempt::Failed(KvError("maximum payload exceeded".into())))
        })
        .await;
        let err = outcome.unwrap_err().0;
        assert_eq!((err.as_str(), attempts), ("maximum payload exceeded", 1));
    }

    #[tokio::test]
    async fn failures_that_persist_end_at_the_deadline_naming_the_last() {
        let within = Duration::from_millis(400);
        let (outcome, attempts, took) = retry_within(within, |n| {
            Err::<(), _>(Attempt::Transient(format!("no responders ({n})")))
        })
        .await;
        let err = outcome.unwrap_err().0;
        assert!(
            err.starts_with(&format!("no responders ({})", attempts - 1)),
            "{err}"
        );
        assert!(err.contains("sent again until"), "{err}");
        assert!(attempts >= 3, "{attempts} attempts in {took:?}");
        // No pause past the deadline; a timer may wake a little late on a busy machine.
        assert!(took < within + Duration::from_millis(200), "{took:?}");
    }

    #[tokio::test]
    async fn an_attempt_without_answer_ends_at_the_deadline_naming_the_last_failure() {
        let within = Duration::from_millis(300);
        let attempts = AtomicU32::new(0);
        let started = Instant::now();
        let outcome = DEADLINE
            .scope(
                started + within,
                retrying(
                    || async { Ok(()) },
                    || {
                        let n = attempts.fetch_add(1, Ordering::Relaxed);
                        async move {
                            if n == 0 {
                                return Err(Attempt::Transient("cluster not available".into()));
                            }
                            std::future::pending::<Result<(), Attempt>>().await
                        }
                    },
                ),
            )
            .await;
        let err = outcome.unwrap_err().0;
        assert!(
            err.starts_with("cluster not available (sent again"),
            "{err}"
        );
        assert!(started.elapsed() >= within, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_client_without_server_between_attempts_ends_the_operation() {
        let sent = AtomicU32::new(0);
        let outcome = retrying(
            || async { Err(KvError("not connected to any NATS server".into())) },
            || async {
                sent.fetch_add(1, Ordering::Relaxed);
                Err::<(), _>(Attempt::Transient("connection lost".into()))
            },
        )
        .await;
        assert_eq!(outcome.unwrap_err().0, "not connected to any NATS server");
        assert_eq!(sent.into_inner(), 1, "sent again without a server");
    }
}

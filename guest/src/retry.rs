//! Retrying an `increment` that lost a race.
//!
//! `wasi:keyvalue` promises an atomic increment, and our host keeps that promise. Some hosts do
//! not: wasmCloud's NATS store increments with one compare-and-set on the key's revision and
//! answers an error (`wrong last sequence`) when another writer got there first, instead of
//! trying again. Such an error means the increment did not happen, so trying again is safe and
//! is what the host should have done: [`with_race_retries`] does, a few times, with jittered
//! exponential backoff, and only for errors that say a race was lost. Any other error (the store
//! is down), or a race lost [`INCREMENT_ATTEMPTS`] times, still reaches the client as a 503.
//!
//! What no retry can fix: on such a host an increment of a *missing* key is not atomic either
//! (two first increments can both answer 1). `wasi:keyvalue@0.2.0-draft` gives a guest no
//! compare-and-swap to guard against it, so that stays a limit of the host (see the README).

use std::time::Duration;

use crate::kv::KvError;

/// Tries of one increment: the first and up to five more.
pub const INCREMENT_ATTEMPTS: u32 = 6;
/// The first pause before a retry; each retry doubles it, plus up to as much again of jitter.
const FIRST_PAUSE: Duration = Duration::from_millis(2);

/// Whether `err` says a compare-and-set lost to another writer (NATS JetStream: `wrong last
/// sequence`; other stores: a revision or version conflict), so that nothing was written.
pub fn is_lost_race(err: &KvError) -> bool {
    let message = err.0.to_ascii_lowercase();
    message.contains("wrong last sequence")
        || message.contains("wrong last revision")
        || message.contains("revision mismatch")
        || message.contains("version conflict")
}

/// Runs `attempt` until it succeeds, fails with an error that is not a lost race, or has lost
/// [`INCREMENT_ATTEMPTS`] races; `pause` waits between attempts (`jitter` picks a fraction of
/// the backoff to add, in `0.0..1.0`).
pub fn with_race_retries<T>(
    mut attempt: impl FnMut() -> Result<T, KvError>,
    mut pause: impl FnMut(Duration),
    mut jitter: impl FnMut() -> f64,
) -> Result<T, KvError> {
    let mut backoff = FIRST_PAUSE;
    for tried in 1.. {
        match attempt() {
            Err(err) if is_lost_race(&err) => {
                if tried >= INCREMENT_ATTEMPTS {
                    return Err(KvError(format!(
                        "an increment lost {tried} races in a row to other writers: {err}"
                    )));
                }
                pause(backoff.mul_f64(1.0 + jitter().clamp(0.0, 1.0)));
                backoff = backoff.saturating_mul(2);
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_race_is_tried_again_and_other_errors_are_not() {
        let mut calls = 0;
        let mut pauses = Vec::new();
        let answer = with_race_retries(
            || {
                calls += 1;
                if calls < 3 {
                    Err(KvError("nats: wrong last sequence: 7".into()))
                } else {
                    Ok(42)
                }
            },
            |pause| pauses.push(pause),
            || 0.5,
        );
        assert_eq!(answer, Ok(42));
        assert_eq!(calls, 3);
        assert_eq!(pauses, [Duration::from_millis(3), Duration::from_millis(6)]);

        let mut calls = 0;
        let down = with_race_retries(
            || -> Result<u64, KvError> {
                calls += 1;
                Err(KvError("connection refused".into()))
            },
            |_| {},
            || 0.0,
        );
        assert_eq!(calls, 1, "an outage is not retried");
        assert_eq!(down, Err(KvError("connection refused".into())));
    }

    #[test]
    fn it_gives_up_after_the_last_attempt_and_says_so() {
        let mut calls = 0;
        let lost = with_race_retries(
            || -> Result<u64, KvError> {
                calls += 1;
                Err(KvError("wrong last sequence".into()))
            },
            |_| {},
            || 0.0,
        );
        assert_eq!(calls, INCREMENT_ATTEMPTS);
        assert!(lost.is_err_and(|err| err.0.contains("lost 6 races")));
    }
}

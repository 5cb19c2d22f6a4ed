//! Retrying an `increment` that lost a race.
//!
//! `wasi:keyvalue` promises an atomic increment, and our host keeps that promise. Some hosts do
//! not: wasmCloud's NATS store increments with one compare-and-set on the key's revision and
//! answers an error (`wrong last sequence`) when another writer got there first, instead of
//! trying again. Such an error means the increment did not happen, so trying again is safe and
//! is what the host should have done: [`with_race_retries`] does, for errors that say a race was
//! lost and for nothing else. Any other error (the store is down) reaches the client at once as
//! a 503.
//!
//! # How long, and how often
//!
//! A create increments the id counter and then three fences twice ([`crate::index`]), and every
//! concurrent create contends for the same few keys: with 20 clients, an increment can lose many
//! races in a row through no fault of its own. A fixed number of quick tries gives up on exactly
//! those (6 tries within about 100 ms lost a third of 200 concurrent creates under wash + NATS;
//! a second per increment still lost one now and then, after 25 races), so what bounds the
//! retrying is time: [`REQUEST_BUDGET`] for all the increments of one request together, which
//! keeps a request that loses every race inside its deadline however many increments it makes.
//! The pauses are exponential backoff with full jitter: drawn uniformly from zero to a ceiling
//! that starts at [`FIRST_CEILING`] for each increment and doubles per lost race up to
//! [`MAX_CEILING`]. Full jitter spreads the contenders out instead of sending them back in step,
//! which is what lets the store's compare-and-set succeed for one of them each round.
//!
//! The budget is kept in a thread-local of this instance, and that is the request's: the host
//! makes a fresh instance for every request (the module doc of `component.rs` says so; tests
//! check it on every platform). A host that reused an instance would share one budget between
//! the requests it served, so late lost races would give up sooner: a 503, never a wrong answer.
//!
//! What no retry can fix: on such a host an increment of a *missing* key is not atomic either
//! (two first increments can both answer 1). `wasi:keyvalue@0.2.0-draft` gives a guest no
//! compare-and-swap to guard against it, so that stays a limit of the host (see the README).

use std::cell::Cell;
use std::time::Duration;

use crate::kv::KvError;

/// How long the increments of one request may take together, lost races and pauses included,
/// before a lost race gives up with a 503.
///
/// Half of todo-host's default request deadline (10 s): a request that loses every race answers
/// a clear 503 naming the lost races after about 5 s, with the other half left for its own
/// work, rather than a 504. Under wash + NATS, 200 creates from 20 clients at once take about
/// 3 s in all; a single increment needed up to a second.
pub const REQUEST_BUDGET: Duration = Duration::from_secs(5);
/// The ceiling of the pause after the first lost race: about the time of one compare-and-set
/// round trip to a local store, so that a light race costs little.
pub const FIRST_CEILING: Duration = Duration::from_millis(2);
/// The highest ceiling of a pause: with 20 contenders on one key and a round trip of a
/// millisecond or two, pauses of up to 64 ms spread them over enough rounds for each to win one,
/// while leaving an increment dozens of tries within [`REQUEST_BUDGET`].
pub const MAX_CEILING: Duration = Duration::from_millis(64);

/// Whether `err` says a compare-and-set lost to another writer (NATS JetStream: `wrong last
/// sequence`; other stores: a revision or version conflict), so that nothing was written.
pub fn is_lost_race(err: &KvError) -> bool {
    let message = err.0.to_ascii_lowercase();
    message.contains("wrong last sequence")
        || message.contains("wrong last revision")
        || message.contains("revision mismatch")
        || message.contains("version conflict")
}

thread_local! {
    /// The time this instance, and so this request, has spent in increments.
    static SPENT_ON_INCREMENTS: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Opens a new request's account: its increments get the whole [`REQUEST_BUDGET`]. Called at the
/// start of every request, so that the account is the request's even on a host that reuses an
/// instance (every host this project runs on makes a fresh one).
pub fn new_request() {
    SPENT_ON_INCREMENTS.with(|spent| spent.set(Duration::ZERO));
}

/// Runs `attempt` until it succeeds, fails with an error that is not a lost race, or loses a
/// race once this request's increments have taken [`REQUEST_BUDGET`]; `pause` waits between
/// attempts, for the pause drawn with `jitter` (a random fraction in `0.0..1.0`). `now` is a
/// monotonic clock (time since any fixed origin): the component reads the host's, since
/// `std::time::Instant` has no clock to read on `wasm32-unknown-unknown`.
pub fn with_race_retries<T>(
    attempt: impl FnMut() -> Result<T, KvError>,
    now: impl Fn() -> Duration,
    pause: impl FnMut(Duration),
    jitter: impl FnMut() -> f64,
) -> Result<T, KvError> {
    let started = now();
    SPENT_ON_INCREMENTS.with(|spent| {
        retry_on_budget(
            spent,
            attempt,
            || now().saturating_sub(started),
            pause,
            jitter,
        )
    })
}

/// [`with_race_retries`] with the request's account `spent` and a clock: `elapsed` is the time
/// since this increment's first attempt, and `pause` is expected to let that much of it pass.
fn retry_on_budget<T>(
    spent: &Cell<Duration>,
    attempt: impl FnMut() -> Result<T, KvError>,
    elapsed: impl Fn() -> Duration,
    pause: impl FnMut(Duration),
    jitter: impl FnMut() -> f64,
) -> Result<T, KvError> {
    let before = spent.get();
    let result = retry_within(
        before,
        REQUEST_BUDGET.saturating_sub(before),
        attempt,
        &elapsed,
        pause,
        jitter,
    );
    spent.set(before + elapsed());
    result
}

/// Tries `attempt` until it succeeds, fails otherwise than by a lost race, or loses one with
/// nothing left of `budget`; `earlier` is what the request's increments took before this one,
/// for the message.
fn retry_within<T>(
    earlier: Duration,
    budget: Duration,
    mut attempt: impl FnMut() -> Result<T, KvError>,
    elapsed: impl Fn() -> Duration,
    mut pause: impl FnMut(Duration),
    mut jitter: impl FnMut() -> f64,
) -> Result<T, KvError> {
    let mut ceiling = FIRST_CEILING;
    let mut lost = 0u32;
    loop {
        match attempt() {
            Err(err) if is_lost_race(&err) => {
                lost += 1;
                let Some(left) = budget.checked_sub(elapsed()).filter(|left| !left.is_zero())
                else {
                    return Err(KvError(format!(
                        "an increment lost {lost} races in a row to other writers, and this \
                         request's increments have taken {} ms, their budget is {} ms; the \
                         last: {err}",
                        (earlier + elapsed()).as_millis(),
                        REQUEST_BUDGET.as_millis()
                    )));
                };
                // The last try comes at the end of the budget, not after it.
                pause(ceiling.mul_f64(jitter().clamp(0.0, 1.0)).min(left));
                ceiling = ceiling.saturating_mul(2).min(MAX_CEILING);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A clock that only moves when paused, and the pauses it was asked for.
    #[derive(Default)]
    struct FakeClock {
        now: Cell<Duration>,
        pauses: std::cell::RefCell<Vec<Duration>>,
    }

    impl FakeClock {
        fn pause(&self, wait: Duration) {
            self.now.set(self.now.get() + wait);
            self.pauses.borrow_mut().push(wait);
        }
    }

    fn lost_race() -> KvError {
        KvError("JetStream error: nats: wrong last sequence: 7".into())
    }

    #[test]
    fn a_lost_race_is_tried_again_after_a_fully_jittered_pause() {
        let clock = FakeClock::default();
        let mut calls = 0;
        let answer = retry_within(
            Duration::ZERO,
            REQUEST_BUDGET,
            || {
                calls += 1;
                if calls < 4 { Err(lost_race()) } else { Ok(42) }
            },
            || clock.now.get(),
            |wait| clock.pause(wait),
            || 0.5,
        );
        assert_eq!(answer, Ok(42));
        assert_eq!(calls, 4);
        // Half of a ceiling of 2, 4, then 8 ms.
        let ms = Duration::from_millis;
        assert_eq!(*clock.pauses.borrow(), [ms(1), ms(2), ms(4)]);
    }

    #[test]
    fn the_ceiling_doubles_up_to_its_maximum_and_a_pause_can_be_zero() {
        let clock = FakeClock::default();
        let mut calls = 0;
        let _ = retry_within(
            Duration::ZERO,
            REQUEST_BUDGET,
            || -> Result<u64, KvError> {
                calls += 1;
                if calls <= 10 { Err(lost_race()) } else { Ok(1) }
            },
            || clock.now.get(),
            |wait| clock.pause(wait),
            || 0.999_999,
        );
        let pauses = clock.pauses.borrow();
        assert_eq!(pauses.len(), 10);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
        assert!(pauses.iter().all(|p| *p < MAX_CEILING), "{pauses:?}");
        assert!(pauses[9] > MAX_CEILING.mul_f64(0.99), "{pauses:?}");

        let clock = FakeClock::default();
        let mut first = true;
        let _ = retry_within(
            Duration::ZERO,
            REQUEST_BUDGET,
            || -> Result<u64, KvError> {
                if std::mem::take(&mut first) {
                    Err(lost_race())
                } else {
                    Ok(1)
                }
            },
            || clock.now.get(),
            |wait| clock.pause(wait),
            || 0.0,
        );
        assert_eq!(*clock.pauses.borrow(), [Duration::ZERO]);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut calls = 0;
        let down = retry_within(
            Duration::ZERO,
            REQUEST_BUDGET,
            || -> Result<u64, KvError> {
                calls += 1;
                Err(KvError("connection refused".into()))
            },
            || Duration::ZERO,
            |_| panic!("an outage is not waited out"),
            || 0.5,
        );
        assert_eq!(calls, 1, "an outage is not retried");
        assert_eq!(down, Err(KvError("connection refused".into())));
    }

    #[test]
    fn it_gives_up_when_the_budget_is_spent_and_says_so() {
        let clock = FakeClock::default();
        let mut calls = 0u32;
        let lost = retry_within(
            Duration::ZERO,
            REQUEST_BUDGET,
            || -> Result<u64, KvError> {
                calls += 1;
                Err(lost_race())
            },
            || clock.now.get(),
            |wait| clock.pause(wait),
            || 0.75,
        );
        let message = lost.expect_err("it gave up").0;
        assert!(
            message.contains(&format!("lost {calls} races"))
                && message.contains("have taken 5000 ms, their budget is 5000 ms")
                && message.contains("wrong last sequence"),
            "{message}"
        );
        // Waiting stopped at the budget, never past it, and the last try came at its end.
        assert_eq!(clock.now.get(), REQUEST_BUDGET);
        assert!(calls > 50, "only {calls} tries in the budget");
    }

    #[test]
    fn the_increments_of_one_request_share_one_budget() {
        let spent = Cell::new(Duration::ZERO);
        let clock = FakeClock::default();
        let losing = || -> Result<u64, KvError> { Err(lost_race()) };
        // A first increment takes 2 s to win.
        let mut calls = 0;
        let won = retry_on_budget(
            &spent,
            || {
                calls += 1;
                if clock.now.get() < Duration::from_secs(2) {
                    Err(lost_race())
                } else {
                    Ok(calls)
                }
            },
            || clock.now.get(),
            |wait| clock.pause(wait),
            || 1.0,
        );
        assert!(won.is_ok(), "{won:?}");
        let first_took = clock.now.get();
        assert!(first_took >= Duration::from_secs(2));
        assert_eq!(spent.get(), first_took);
        // The next one that never wins has only what is left of the budget.
        let clock = FakeClock::default();
        let gave_up = retry_on_budget(
            &spent,
            losing,
            || clock.now.get(),
            |wait| clock.pause(wait),
            || 1.0,
        );
        assert!(gave_up.is_err());
        assert_eq!(spent.get(), REQUEST_BUDGET);
        assert_eq!(first_took + clock.now.get(), REQUEST_BUDGET);
        // Then a lost race gives up at once, and an increment that wins at once still does.
        let clock = FakeClock::default();
        let mut calls = 0;
        let at_once = retry_on_budget(
            &spent,
            || -> Result<u64, KvError> {
                calls += 1;
                Err(lost_race())
            },
            || clock.now.get(),
            |wait| clock.pause(wait),
            || 1.0,
        );
        assert_eq!((calls, clock.now.get()), (1, Duration::ZERO), "{at_once:?}");
        let winning = retry_on_budget(&spent, || Ok(7), || Duration::ZERO, |_| {}, || 1.0);
        assert_eq!(winning, Ok(7));
    }

    #[test]
    fn only_errors_that_say_a_race_was_lost_count_as_lost_races() {
        for raced in [
            "JetStream error: nats: wrong last sequence: 12",
            "wrong last revision",
            "etcd: revision mismatch",
            "Version conflict on key",
        ] {
            assert!(is_lost_race(&KvError(raced.into())), "{raced}");
        }
        for other in [
            "JetStream error: timed out",
            "connection refused",
            "the host has no store 'default'",
        ] {
            assert!(!is_lost_race(&KvError(other.into())), "{other}");
        }
    }
}

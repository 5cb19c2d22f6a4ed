//! The history of a nemesis test and the checker that judges it, Jepsen's way: clients record
//! every operation (when it was sent, when its answer came, what the answer was), and the checker,
//! a pure function over that record and the final reads, says afterwards what went wrong. Kept
//! apart from the clients and the faults so that it can be tested on hand-made histories (the
//! tests at the bottom: a history that loses a write must fail).
//!
//! The rules (issue #27):
//! * every create answered 201 is in the final list, read through every host (else: lost);
//! * no id is acknowledged twice;
//! * real-time order: if create A's 201 came before create B was sent, A's id is smaller;
//! * a read of an acknowledged id, sent after its 201 came, never answers 404 (else: stale);
//! * a 503, a timeout or a broken connection is indeterminate: the write may or may not be
//!   there; it is neither acknowledged nor lost, and a read so answered is not stale.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// What a client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `POST /todos`.
    Create,
    /// `GET /todos/{id}` of an id acknowledged before the read was sent.
    Read(u64),
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 201, with the new todo's id.
    Created(u64),
    /// 200.
    Found,
    /// 404.
    NotFound,
    /// Anything else: a 503, another status, a timeout, a broken connection. The operation may
    /// or may not have taken effect.
    Indeterminate(String),
}

/// One operation, as its client saw it.
#[derive(Debug, Clone)]
pub struct Op {
    /// Which host it went through (an index into the test's hosts).
    pub host: usize,
    pub request: Request,
    /// When it was sent and when its answer came, from the start of the test.
    pub sent: Duration,
    pub answered: Duration,
    pub answer: Answer,
}

/// What the checker found in one history.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Creates answered 201.
    pub acknowledged: usize,
    /// Acknowledged ids present in the final list of every host.
    pub found: usize,
    /// Acknowledged ids missing from the final list of at least one host.
    pub lost: Vec<u64>,
    /// Ids given to two or more acknowledged creates.
    pub duplicates: Vec<u64>,
    /// Creates acknowledged with an id smaller than that of a create acknowledged before they
    /// were sent.
    pub order_violations: usize,
    /// Reads answered 404 for an id whose create was acknowledged before the read was sent:
    /// when each was sent.
    pub stale_reads: Vec<Duration>,
    /// Creates and reads that were indeterminate.
    pub indeterminate_creates: usize,
    pub indeterminate_reads: usize,
    /// The longest stretch in which creates failed (see [`failure_window`]).
    pub create_window: Duration,
    /// The same for reads (a stale 404 counts as failed here too).
    pub read_window: Duration,
}

impl Verdict {
    /// Everything the rules forbid, one sentence each; empty when the history passes. A stale
    /// read is allowed only when sent within one of `stale_allowed` (`from`, `to`): the windows
    /// the caller documents for its fault.
    pub fn violations(&self, stale_allowed: &[(Duration, Duration)]) -> Vec<String> {
        let mut found = Vec::new();
        if !self.lost.is_empty() {
            found.push(format!(
                "{} acknowledged creates lost: {:?}",
                self.lost.len(),
                &self.lost[..self.lost.len().min(20)]
            ));
        }
        if !self.duplicates.is_empty() {
            found.push(format!("ids acknowledged twice: {:?}", self.duplicates));
        }
        let outside: Vec<Duration> = self
            .stale_reads
            .iter()
            .copied()
            .filter(|&sent| {
                !stale_allowed
                    .iter()
                    .any(|&(from, to)| from <= sent && sent <= to)
            })
            .collect();
        if !outside.is_empty() {
            found.push(format!(
                "{} stale reads (404 for an acknowledged id) sent outside the allowed windows \
                 {stale_allowed:?}, at {outside:?}",
                outside.len()
            ));
        }
        if self.order_violations > 0 {
            found.push(format!(
                "{} creates got an id smaller than one acknowledged before they were sent",
                self.order_violations
            ));
        }
        found
    }

    /// The table's header, to go with [`Verdict::row`].
    pub fn header() -> String {
        format!(
            "| {:<11} | {:>5} | {:>5} | {:>4} | {:>4} | {:>9} | {:>5} | {:>7} | {:>7} | {:>14} | {:>12} |\n\
             |---|---|---|---|---|---|---|---|---|---|---|",
            "nemesis",
            "acked",
            "found",
            "lost",
            "dups",
            "rt-order",
            "stale",
            "create",
            "read",
            "indet. c/r",
            "converged"
        )
    }

    /// One row of the table (`converged`: how long after healing every node held the same data).
    pub fn row(&self, nemesis: &str, converged: Duration) -> String {
        format!(
            "| {:<11} | {:>5} | {:>5} | {:>4} | {:>4} | {:>9} | {:>5} | {:>6.2}s | {:>6.2}s | {:>14} | {:>11.1}s |",
            nemesis,
            self.acknowledged,
            self.found,
            self.lost.len(),
            self.duplicates.len(),
            self.order_violations,
            self.stale_reads.len(),
            self.create_window.as_secs_f64(),
            self.read_window.as_secs_f64(),
            format!(
                "{}/{}",
                self.indeterminate_creates, self.indeterminate_reads
            ),
            converged.as_secs_f64(),
        )
    }
}

/// Judges `history` against the final lists of ids read through each host.
pub fn check(history: &[Op], final_lists: &[Vec<u64>]) -> Verdict {
    let mut verdict = Verdict::default();
    // Acknowledged creates: (sent, answered, id).
    let mut creates: Vec<(Duration, Duration, u64)> = Vec::new();
    let mut acknowledged_at: HashMap<u64, Duration> = HashMap::new();
    let mut seen = HashSet::new();
    for op in history {
        match (&op.request, &op.answer) {
            (Request::Create, Answer::Created(id)) => {
                creates.push((op.sent, op.answered, *id));
                if !seen.insert(*id) && !verdict.duplicates.contains(id) {
                    verdict.duplicates.push(*id);
                }
                acknowledged_at
                    .entry(*id)
                    .and_modify(|at| *at = (*at).min(op.answered))
                    .or_insert(op.answered);
            }
            (Request::Create, Answer::Indeterminate(_)) => verdict.indeterminate_creates += 1,
            (Request::Read(_), Answer::Indeterminate(_)) => verdict.indeterminate_reads += 1,
            _ => {}
        }
    }
    verdict.acknowledged = creates.len();

    let listed: Vec<HashSet<u64>> = final_lists
        .iter()
        .map(|list| list.iter().copied().collect())
        .collect();
    let mut lost: Vec<u64> = seen
        .iter()
        .copied()
        .filter(|id| listed.is_empty() || listed.iter().any(|list| !list.contains(id)))
        .collect();
    lost.sort_unstable();
    verdict.found = seen.len() - lost.len();
    verdict.lost = lost;

    // Real-time order: sweep the creates by the time they were sent, keeping the largest id of
    // those whose 201 came before.
    let mut by_answer = creates.clone();
    by_answer.sort_by_key(|&(_, answered, _)| answered);
    let mut by_sending = creates;
    by_sending.sort_by_key(|&(sent, _, _)| sent);
    let mut largest_before = None;
    let mut next = 0;
    for &(sent, _, id) in &by_sending {
        while next < by_answer.len() && by_answer[next].1 < sent {
            largest_before = largest_before.max(Some(by_answer[next].2));
            next += 1;
        }
        if largest_before.is_some_and(|largest| largest > id) {
            verdict.order_violations += 1;
        }
    }

    for op in history {
        if let (Request::Read(id), Answer::NotFound) = (&op.request, &op.answer)
            && acknowledged_at.get(id).is_some_and(|&at| at < op.sent)
        {
            verdict.stale_reads.push(op.sent);
        }
    }

    let create_outcomes: Vec<(Duration, bool)> = history
        .iter()
        .filter(|op| op.request == Request::Create)
        .map(|op| (op.answered, matches!(op.answer, Answer::Created(_))))
        .collect();
    verdict.create_window = failure_window(create_outcomes);
    let read_outcomes: Vec<(Duration, bool)> = history
        .iter()
        .filter(|op| matches!(op.request, Request::Read(_)))
        .map(|op| (op.answered, op.answer == Answer::Found))
        .collect();
    verdict.read_window = failure_window(read_outcomes);
    verdict
}

/// The longest stretch in which operations failed, by the time their answers came: from the
/// last success before a run of failures to the first success after it (or to the last failure,
/// if none followed). Zero when nothing failed.
pub fn failure_window(mut outcomes: Vec<(Duration, bool)>) -> Duration {
    outcomes.sort_by_key(|&(at, _)| at);
    let mut longest = Duration::ZERO;
    let mut last_success = outcomes.first().map_or(Duration::ZERO, |&(at, _)| at);
    let mut failing_since: Option<Duration> = None;
    for &(at, ok) in &outcomes {
        if ok {
            if failing_since.take().is_some() {
                longest = longest.max(at - last_success);
            }
            last_success = at;
        } else {
            failing_since.get_or_insert(at);
            longest = longest.max(at - last_success);
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn create(sent: u64, answered: u64, answer: Answer) -> Op {
        Op {
            host: 0,
            request: Request::Create,
            sent: ms(sent),
            answered: ms(answered),
            answer,
        }
    }

    fn read(id: u64, sent: u64, answered: u64, answer: Answer) -> Op {
        Op {
            host: 1,
            request: Request::Read(id),
            sent: ms(sent),
            answered: ms(answered),
            answer,
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let history = [
            create(0, 10, Answer::Created(1)),
            create(5, 20, Answer::Created(2)),
            read(1, 30, 31, Answer::Found),
            create(40, 50, Answer::Indeterminate("503".into())),
        ];
        let verdict = check(&history, &[vec![1, 2, 3], vec![1, 2]]);
        assert!(verdict.violations(&[]).is_empty(), "{verdict:?}");
        assert_eq!((verdict.acknowledged, verdict.found), (2, 2));
        assert_eq!(verdict.indeterminate_creates, 1);
        assert!(verdict.stale_reads.is_empty());
    }

    #[test]
    fn an_acknowledged_create_missing_from_one_host_is_lost() {
        let history = [
            create(0, 10, Answer::Created(1)),
            create(0, 10, Answer::Created(2)),
        ];
        let verdict = check(&history, &[vec![1, 2], vec![1]]);
        assert_eq!(verdict.lost, vec![2]);
        assert_eq!(verdict.found, 1);
        assert_eq!(verdict.violations(&[]).len(), 1);
    }

    #[test]
    fn an_indeterminate_create_missing_everywhere_is_not_lost() {
        let history = [create(0, 10, Answer::Indeterminate("timeout".into()))];
        let verdict = check(&history, &[vec![]]);
        assert!(verdict.violations(&[]).is_empty());
        assert!(verdict.lost.is_empty());
    }

    #[test]
    fn an_id_acknowledged_twice_is_a_duplicate() {
        let history = [
            create(0, 10, Answer::Created(7)),
            create(0, 12, Answer::Created(7)),
        ];
        let verdict = check(&history, &[vec![7]]);
        assert_eq!(verdict.duplicates, vec![7]);
        assert!(!verdict.violations(&[]).is_empty());
    }

    #[test]
    fn a_smaller_id_for_a_create_sent_after_an_acknowledged_one_breaks_real_time_order() {
        // 5 was acknowledged at 10; the create sent at 20 got 3.
        let history = [
            create(0, 10, Answer::Created(5)),
            create(20, 30, Answer::Created(3)),
        ];
        let verdict = check(&history, &[vec![3, 5]]);
        assert_eq!(verdict.order_violations, 1);
        // Concurrent creates may get their ids in any order.
        let history = [
            create(0, 30, Answer::Created(5)),
            create(20, 25, Answer::Created(3)),
        ];
        assert_eq!(check(&history, &[vec![3, 5]]).order_violations, 0);
    }

    #[test]
    fn a_404_for_an_id_acknowledged_before_the_read_was_sent_is_stale() {
        let history = [
            create(0, 10, Answer::Created(1)),
            read(1, 5, 12, Answer::NotFound), // sent before the 201: allowed
            read(1, 20, 21, Answer::NotFound),
            read(1, 30, 31, Answer::Indeterminate("503".into())),
        ];
        let verdict = check(&history, &[vec![1]]);
        assert_eq!(verdict.stale_reads, vec![ms(20)]);
        // A violation, unless sent within a window the caller allows.
        assert_eq!(verdict.violations(&[]).len(), 1);
        assert_eq!(verdict.violations(&[(ms(25), ms(40))]).len(), 1);
        assert!(verdict.violations(&[(ms(15), ms(20))]).is_empty());
    }

    #[test]
    fn the_failure_window_runs_from_the_last_success_to_the_next() {
        let outcomes = vec![
            (ms(0), true),
            (ms(100), true),
            (ms(150), false),
            (ms(900), false),
            (ms(1100), true),
            (ms(1200), false),
            (ms(1300), true),
        ];
        assert_eq!(failure_window(outcomes), ms(1000));
        // Failures to the end count up to the last of them.
        assert_eq!(
            failure_window(vec![(ms(0), true), (ms(500), false), (ms(2500), false)]),
            ms(2500)
        );
        assert_eq!(failure_window(vec![(ms(0), true), (ms(10), true)]), ms(0));
    }
}

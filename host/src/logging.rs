//! Where the host's log lines go: stderr (or any writer), with the access log written in batches.
//!
//! An access-log line written straight to stderr is one `write` system call per request: under
//! load, about 2% of the host's CPU went to those calls alone (`perf record` of `todo-host` under
//! `wrk`, 2026-11-30). Access lines are appended to a buffer in memory instead and written out
//! together: by a flusher thread every [`FLUSH_EVERY`], or sooner when [`FLUSH_AT`] bytes wait.
//! No thread is woken per line (a channel per line, as `tracing-appender` does, measured slower
//! here: the wake costs more than the write).
//!
//! Every other line (start-up, warnings, errors) first writes out the access lines waiting and
//! then itself, at once: lines keep their order, and a warning is never late. The price: a
//! process killed with `SIGKILL` loses at most [`FLUSH_EVERY`] of access lines; a clean exit
//! (SIGINT, SIGTERM, an error) writes every line, when [`LogGuard`] is dropped.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::Metadata;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The target of the access log's lines ([`crate::runtime::Runtime::handle`]).
pub const ACCESS_TARGET: &str = "todo_host::access";

/// How long an access line may wait in memory: short enough for `tail -f`.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// How many waiting bytes wake the flusher early (about 250 lines).
pub const FLUSH_AT: usize = 64 * 1024;

/// How many waiting bytes make a writer write them itself: the output is not keeping up (a pipe
/// nobody reads), and the request waits as it would on a direct write rather than memory grow.
const WAIT_AT_MOST: usize = 4 * 1024 * 1024;

/// Installs the host's log subscriber: the level from `RUST_LOG` (default `info`), lines to
/// stderr, colours only on a terminal. Keep the guard until the process ends: dropping it writes
/// out the waiting access lines.
pub fn init() -> LogGuard {
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    init_with(Box::new(io::stderr()), ansi)
}

/// [`init`] with lines to `out` (a file, for a benchmark), without colours.
pub fn init_to(out: Box<dyn Write + Send>) -> LogGuard {
    init_with(out, false)
}

fn init_with(out: Box<dyn Write + Send>, ansi: bool) -> LogGuard {
    let lines = BatchedLines::new(out);
    let guard = lines.start_flusher();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(lines)
        .with_ansi(ansi)
        .init();
    guard
}

/// The log output, shared by every thread that logs and the flusher.
#[derive(Clone)]
pub struct BatchedLines {
    shared: Arc<Shared>,
}

struct Shared {
    /// Access lines not yet written.
    waiting: Mutex<Vec<u8>>,
    /// The output. Taken before `waiting` by whoever writes, so that what is taken from
    /// `waiting` is written in the order it was taken.
    out: Mutex<Box<dyn Write + Send>>,
    /// Wakes the flusher early: [`FLUSH_AT`] bytes wait, or the guard is dropped.
    wake: Condvar,
    /// Set when the guard is dropped: from then on every line is written at once.
    closed: AtomicBool,
}

impl BatchedLines {
    /// Lines to `out`; access lines wait until [`Self::flush_waiting`] (or the flusher) runs.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            shared: Arc::new(Shared {
                waiting: Mutex::new(Vec::with_capacity(FLUSH_AT)),
                out: Mutex::new(out),
                wake: Condvar::new(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Starts the thread that writes the waiting lines every [`FLUSH_EVERY`].
    pub fn start_flusher(&self) -> LogGuard {
        let shared = self.shared.clone();
        let flusher = std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || {
                while !shared.closed.load(Ordering::Acquire) {
                    let waiting = shared
                        .waiting
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    let (waiting, _) = shared
                        .wake
                        .wait_timeout(waiting, FLUSH_EVERY)
                        .unwrap_or_else(PoisonError::into_inner);
                    drop(waiting);
                    // Nowhere to report a failed log write: the next line tries again.
                    let _ = shared.write_out(&[]);
                }
            })
            .ok();
        LogGuard {
            lines: self.clone(),
            flusher,
        }
    }

    /// Writes out the waiting lines now.
    pub fn flush_waiting(&self) -> io::Result<()> {
        self.shared.write_out(&[])
    }

    /// Appends an access line to the waiting ones.
    fn append(&self, line: &[u8]) -> io::Result<()> {
        let mut waiting = self
            .shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        waiting.extend_from_slice(line);
        let waiting_bytes = waiting.len();
        drop(waiting);
        if waiting_bytes >= WAIT_AT_MOST {
            return self.shared.write_out(&[]);
        }
        if waiting_bytes >= FLUSH_AT {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

impl Shared {
    /// Writes the waiting lines, then `line`, in that order.
    fn write_out(&self, line: &[u8]) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        // Swapped with an empty buffer of the same capacity, so appenders wait only for this,
        // not for the write, and the buffer is not reallocated at every flush.
        let batch = std::mem::replace(&mut *waiting, Vec::with_capacity(FLUSH_AT));
        drop(waiting);
        if !batch.is_empty() {
            out.write_all(&batch)?;
        }
        if !line.is_empty() {
            out.write_all(line)?;
        }
        out.flush()
    }
}

impl<'a> MakeWriter<'a> for BatchedLines {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            lines: self,
            batched: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            lines: self,
            batched: meta.target() == ACCESS_TARGET && *meta.level() >= tracing::Level::INFO,
        }
    }
}

/// Writes one formatted line: an access line to the waiting ones, any other at once.
pub struct LineWriter<'a> {
    lines: &'a BatchedLines,
    batched: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.batched && !self.lines.shared.closed.load(Ordering::Acquire) {
            self.lines.append(buf)?;
        } else {
            self.lines.shared.write_out(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps the flusher running; dropped, it stops it and writes out every waiting line.
pub struct LogGuard {
    lines: BatchedLines,
    flusher: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.lines.shared.closed.store(true, Ordering::Release);
        self.lines.shared.wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        let _ = self.lines.flush_waiting();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn write(lines: &BatchedLines, batched: bool, text: &str) {
        let mut writer = LineWriter { lines, batched };
        writer.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn access_lines_wait_and_other_lines_write_them_first_in_order() {
        let out = Captured::default();
        let lines = BatchedLines::new(Box::new(out.clone()));
        write(&lines, true, "access 1\n");
        write(&lines, true, "access 2\n");
        assert_eq!(out.text(), "", "access lines wait for a flush");
        write(&lines, false, "warning\n");
        assert_eq!(out.text(), "access 1\naccess 2\nwarning\n");
        write(&lines, true, "access 3\n");
        lines.flush_waiting().unwrap();
        assert_eq!(out.text(), "access 1\naccess 2\nwarning\naccess 3\n");
    }

    #[test]
    fn the_flusher_writes_waiting_lines_within_its_period_and_the_guard_writes_the_rest() {
        let out = Captured::default();
        let lines = BatchedLines::new(Box::new(out.clone()));
        let guard = lines.start_flusher();
        write(&lines, true, "access 1\n");
        let deadline = std::time::Instant::now() + FLUSH_EVERY * 20;
        while out.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(FLUSH_EVERY / 10);
        }
        assert_eq!(out.text(), "access 1\n", "the flusher wrote the line");
        write(&lines, true, "access 2\n");
        drop(guard);
        assert_eq!(
            out.text(),
            "access 1\naccess 2\n",
            "dropping the guard flushed"
        );
        write(&lines, true, "access 3\n");
        assert_eq!(
            out.text(),
            "access 1\naccess 2\naccess 3\n",
            "after the guard, lines are written at once"
        );
    }

    #[test]
    fn through_a_subscriber_only_access_lines_at_info_wait() {
        let out = Captured::default();
        let lines = BatchedLines::new(Box::new(out.clone()));
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "todo_host::access", path = "/todos/1", "served");
            assert_eq!(out.text(), "", "an access line at info waits");
            tracing::warn!(target: "todo_host::access", "odd");
            let text = out.text();
            assert!(
                text.contains("/todos/1"),
                "a warning wrote the waiting line: {text}"
            );
            assert!(
                text.contains("odd"),
                "an access warning is written at once: {text}"
            );
            tracing::info!(target: "todo_host::server", "started");
            assert!(
                out.text().contains("started"),
                "other targets are written at once"
            );
        });
    }
}

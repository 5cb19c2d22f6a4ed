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
//!
//! The access line itself ([`AccessLine`]) is formatted by hand ([`AccessLineFormat`]), in the
//! same bytes as `tracing_subscriber`'s general format, in about half its time.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

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
        .event_format(AccessLineFormat::default())
        .init();
    guard
}

/// What one request's access-log line says.
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub status: u16,
    pub total_us: u64,
    pub instantiate_us: u64,
    pub guest_us: u64,
    pub kv_calls: u32,
    /// The content hash of the component that served it (empty if none did).
    pub component: &'a str,
}

impl AccessLine<'_> {
    /// Logs the line (target [`ACCESS_TARGET`], level info).
    pub fn log(&self) {
        tracing::info!(
            target: ACCESS_TARGET,
            method = %self.method,
            path = self.path,
            status = self.status,
            total_us = self.total_us,
            instantiate_us = self.instantiate_us,
            guest_us = self.guest_us,
            kv_calls = self.kv_calls,
            component = self.component,
        );
    }
}

/// The default line format (`tracing_subscriber`'s full format), with the access line written
/// by hand in the same bytes. The general formatter took 1.4-2.0 µs per access line here (its
/// styles, padding and `fmt` machinery; two runs), most of what the whole observability layer
/// cost a request; this takes 0.55-0.97 µs (loops of 200,000 lines to a file, nine runs,
/// 2026-11-30). Lines in a span, or with colours (a terminal), go through the general formatter.
#[derive(Default)]
pub struct AccessLineFormat {
    general: Format<Full, SystemTime>,
}

impl<S, N> FormatEvent<S, N> for AccessLineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        if meta.target() != ACCESS_TARGET
            || *meta.level() != tracing::Level::INFO
            || writer.has_ansi_escapes()
            || ctx.lookup_current().is_some()
        {
            return self.general.format_event(ctx, writer, event);
        }
        SystemTime.format_time(&mut writer)?;
        writer.write_str("  INFO ")?;
        writer.write_str(ACCESS_TARGET)?;
        writer.write_char(':')?;
        let mut fields = AccessFields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// Writes ` name=value` for each field of an access line, as the default formatter does:
/// numbers bare, strings quoted and escaped, `%value`s as displayed.
struct AccessFields<'w, 'a> {
    writer: &'w mut Writer<'a>,
    result: std::fmt::Result,
}

impl AccessFields<'_, '_> {
    fn name(&mut self, field: &Field) -> std::fmt::Result {
        self.writer.write_char(' ')?;
        if field.name() != "message" {
            self.writer.write_str(field.name())?;
            self.writer.write_char('=')?;
        }
        Ok(())
    }

    fn number(&mut self, field: &Field, value: u64) -> std::fmt::Result {
        self.name(field)?;
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        // Only ASCII digits were written.
        self.writer
            .write_str(std::str::from_utf8(&digits[at..]).unwrap_or_default())
    }
}

impl Visit for AccessFields<'_, '_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_ok() {
            self.result = self.number(field, value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        self.result = self.name(field).and_then(|()| {
            // What `{:?}` would write, without its machinery when nothing needs escaping.
            if value
                .chars()
                .all(|c| c != '"' && c != '\\' && !c.is_control())
            {
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            } else {
                write!(self.writer, "{value:?}")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.result.is_ok() {
            self.result = self
                .name(field)
                .and_then(|()| write!(self.writer, "{value:?}"));
        }
    }
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
    out: Mutex<Output>,
    /// Wakes the flusher: a first line waits, [`FLUSH_AT`] bytes wait, or the guard is dropped.
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
                out: Mutex::new(Output {
                    out,
                    batch: Vec::with_capacity(FLUSH_AT),
                }),
                wake: Condvar::new(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Starts the thread that writes the waiting lines [`FLUSH_EVERY`] after the first of them
    /// came, and sleeps while none waits.
    pub fn start_flusher(&self) -> LogGuard {
        let shared = self.shared.clone();
        let flusher = std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || {
                while !shared.closed.load(Ordering::Acquire) {
                    let mut waiting = shared
                        .waiting
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    // Nothing to write: sleep until a line comes, so an idle host does not
                    // wake ten times a second.
                    while waiting.is_empty() && !shared.closed.load(Ordering::Acquire) {
                        waiting = shared
                            .wake
                            .wait(waiting)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                    // A line waits: others may join it for FLUSH_EVERY (FLUSH_AT bytes, or the
                    // guard's drop, wake this earlier). Closed: the guard writes what waits.
                    if shared.closed.load(Ordering::Acquire) {
                        break;
                    }
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
        let first = waiting.is_empty();
        waiting.extend_from_slice(line);
        let waiting_bytes = waiting.len();
        drop(waiting);
        if waiting_bytes >= WAIT_AT_MOST {
            return self.shared.write_out(&[]);
        }
        // The first line wakes the flusher from its idle sleep; FLUSH_AT bytes, from its
        // FLUSH_EVERY wait.
        if first || waiting_bytes >= FLUSH_AT {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

/// The output and the buffer the waiting lines are swapped into while they are written.
struct Output {
    out: Box<dyn Write + Send>,
    batch: Vec<u8>,
}

impl Shared {
    /// Writes the waiting lines, then `line`, in that order.
    fn write_out(&self, line: &[u8]) -> io::Result<()> {
        let mut output = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let Output { out, batch } = &mut *output;
        // Swapped with the emptied buffer of the last write: appenders wait only for the swap,
        // not for the write, and neither buffer is reallocated.
        std::mem::swap(
            &mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner),
            batch,
        );
        let written = out.write_all(batch).and_then(|()| out.write_all(line));
        batch.clear();
        written?;
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
        {
            // Set under the lock the flusher checks it under, so that it cannot miss the wake-up
            // between its check and its wait.
            let _waiting = self
                .lines
                .shared
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.lines.shared.closed.store(true, Ordering::Release);
        }
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

    /// The lines a subscriber with `format` writes for the same access events.
    fn access_lines_formatted_by<F>(format: F) -> String
    where
        F: FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::DefaultFields,
            > + Send
            + Sync
            + 'static,
    {
        let out = Captured::default();
        let lines = BatchedLines::new(Box::new(out.clone()));
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .with_ansi(false)
            .event_format(format)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let method = http::Method::PATCH;
            for (path, status) in [("/todos/1", 200u16), ("/odd \"path\"\\x\u{7}", 404)] {
                tracing::info!(
                    target: ACCESS_TARGET,
                    %method,
                    path,
                    status,
                    total_us = 18_446_744_073_709_551_615u64,
                    kv_calls = 0u32,
                    component = "eba6172be3a08a18",
                );
            }
            tracing::info!(target: ACCESS_TARGET, extra = 1u64, "a message and a field {}", 7);
        });
        lines.flush_waiting().unwrap();
        // The timestamps differ; the rest of every line must not.
        out.text()
            .lines()
            .map(|line| line.split_once(' ').map_or(line, |(_, rest)| rest))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_hand_written_access_line_is_the_general_formatters_byte_for_byte() {
        let general = access_lines_formatted_by(Format::<Full, SystemTime>::default());
        let fast = access_lines_formatted_by(AccessLineFormat::default());
        assert!(general.contains("path=\"/todos/1\""), "{general}");
        assert_eq!(fast, general);
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

//! Where log lines go: stderr, except while the full-screen `watch` owns the
//! terminal, when they are kept in memory (the screen shows the latest ones)
//! instead of being written across the table.
use std::{
    collections::VecDeque,
    io::{self, Write},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tracing_subscriber::fmt::MakeWriter;

/// Lines kept while capturing; older ones are dropped.
pub(crate) const KEEP: usize = 100;

static CAPTURING: AtomicBool = AtomicBool::new(false);
static LINES: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// Sends log lines to memory (`true`) or to stderr (`false`).
pub(crate) fn capture(on: bool) {
    CAPTURING.store(on, Ordering::SeqCst);
}

/// Takes the lines captured so far.
pub(crate) fn drain() -> Vec<String> {
    LINES
        .lock()
        .map(|mut l| l.drain(..).collect())
        .unwrap_or_default()
}

/// The `MakeWriter` for the tracing subscriber.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Sink;

    fn make_writer(&'a self) -> Sink {
        if CAPTURING.load(Ordering::SeqCst) {
            Sink::Memory(Vec::new())
        } else {
            Sink::Stderr(io::stderr())
        }
    }
}

/// One event's output: straight to stderr, or buffered and stored as lines
/// when dropped (the formatter writes one event per writer).
pub enum Sink {
    Stderr(io::Stderr),
    Memory(Vec<u8>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stderr(e) => e.write(buf),
            Sink::Memory(m) => {
                m.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stderr(e) => e.flush(),
            Sink::Memory(_) => Ok(()),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let Sink::Memory(bytes) = self else { return };
        let text = strip_ansi(&String::from_utf8_lossy(bytes));
        let Ok(mut lines) = LINES.lock() else { return };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if lines.len() == KEEP {
                lines.pop_front();
            }
            lines.push_back(line.trim_end().to_string());
        }
    }
}

/// A captured line without the formatter's leading timestamp (the screen
/// shows its own clock).
pub(crate) fn without_timestamp(line: &str) -> &str {
    let line = line.trim();
    match line.split_once(char::is_whitespace) {
        Some((first, rest))
            if first.len() >= 20
                && first.as_bytes()[..4].iter().all(u8::is_ascii_digit)
                && first.as_bytes()[4] == b'-'
                && first.contains('T') =>
        {
            rest.trim_start()
        }
        _ => line,
    }
}

/// Removes terminal escape sequences (`ESC [ ... final`) from `s`.
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('\x40'..='\x7e').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(
            strip_ansi("\x1b[33m WARN\x1b[0m the overlay device disappeared"),
            " WARN the overlay device disappeared"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn timestamps_are_dropped() {
        assert_eq!(
            without_timestamp("2026-11-26T14:15:09.513311Z  WARN the overlay device disappeared"),
            "WARN the overlay device disappeared"
        );
        assert_eq!(
            without_timestamp(" WARN no stamp here"),
            "WARN no stamp here"
        );
        assert_eq!(without_timestamp("2026"), "2026");
    }

    #[test]
    fn captured_lines_are_kept_and_bounded() {
        // The only test touching the global state.
        capture(true);
        for i in 0..KEEP + 5 {
            let mut w = LogWriter.make_writer();
            writeln!(w, "line {i}").unwrap();
        }
        capture(false);
        let lines = drain();
        assert_eq!(lines.len(), KEEP);
        assert_eq!(lines[0], "line 5");
        assert!(drain().is_empty());
    }
}

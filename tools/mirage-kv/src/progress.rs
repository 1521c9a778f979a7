//! Progress of long work on an image, on stderr: a line every few seconds
//! (`--progress SECS`) with the bytes done and the total, so that checking
//! a multi-gigabyte image does not look hung. Nothing is printed for work
//! shorter than the interval.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::time::{Duration, Instant};

/// Counts the bytes of the current phase of work and prints a line when
/// `interval` has passed since the last one (or since the phase began).
pub struct Progress {
    /// What the whole command does, e.g. "fsck site.img".
    what: String,
    /// `None`: never print.
    interval: Option<Duration>,
    phase: RefCell<Phase>,
    /// Whether any line was printed, so the end of the work is said too.
    printed: Cell<bool>,
}

struct Phase {
    name: String,
    /// What `done` counts: bytes read, or the furthest byte reached.
    measure: Measure,
    done: u64,
    total: u64,
    /// `total` is an estimate ("of about").
    estimate: bool,
    started: Instant,
    last: Instant,
    /// Its last line was printed.
    finished: bool,
}

/// How a phase measures its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Bytes read by the phase (hashing values, scanning a log).
    BytesRead,
    /// The furthest byte of the image read so far (a walk through the image
    /// that skips what it does not need, such as a tar's file contents).
    Position,
}

impl Progress {
    /// A meter that prints every `interval` (`None`: never).
    pub fn new(what: String, interval: Option<Duration>) -> Progress {
        let now = Instant::now();
        Progress {
            what,
            interval,
            phase: RefCell::new(Phase {
                name: String::new(),
                measure: Measure::BytesRead,
                done: 0,
                total: 0,
                estimate: false,
                started: now,
                last: now,
                finished: true,
            }),
            printed: Cell::new(false),
        }
    }

    /// Starts a phase of `total` bytes (0: unknown; an estimate if
    /// `estimate`), measured as `measure`.
    pub fn phase(&self, name: &str, measure: Measure, total: u64, estimate: bool) {
        self.finish_phase();
        let now = Instant::now();
        *self.phase.borrow_mut() = Phase {
            name: name.to_string(),
            measure,
            done: 0,
            total,
            estimate,
            started: now,
            last: now,
            finished: false,
        };
    }

    /// Records a read of `len` bytes at byte `at` of the image, and prints
    /// a line if it is time to.
    pub fn read(&self, at: u64, len: u64) {
        let Some(interval) = self.interval else { return };
        let line = {
            let mut phase = self.phase.borrow_mut();
            // Reads outside a phase (the superblock probe, `cat`'s value) are
            // not reported.
            if phase.finished {
                return;
            }
            phase.done = match phase.measure {
                Measure::BytesRead => phase.done.saturating_add(len),
                Measure::Position => phase.done.max(at.saturating_add(len)),
            };
            let now = Instant::now();
            if now.duration_since(phase.last) < interval {
                return;
            }
            phase.last = now;
            self.line(&phase, now)
        };
        self.print(&line);
    }

    /// Says where the current phase ended, if progress of it was printed.
    pub fn finish_phase(&self) {
        let line = {
            let mut phase = self.phase.borrow_mut();
            if phase.finished {
                return;
            }
            phase.finished = true;
            if !self.printed.get() || phase.last == phase.started {
                return;
            }
            format!("{} (done)", self.line(&phase, Instant::now()))
        };
        self.print(&line);
    }

    fn line(&self, phase: &Phase, now: Instant) -> String {
        let secs = now.duration_since(phase.started).as_secs_f64();
        let verb = match phase.measure {
            Measure::BytesRead => "read",
            Measure::Position => "reached",
        };
        let amount = if phase.total == 0 {
            format!("{verb} {}", bytes(phase.done))
        } else {
            let percent = (phase.done.min(phase.total) as f64 * 100.0 / phase.total as f64).floor();
            let about = if phase.estimate { "about " } else { "" };
            format!("{verb} {} of {about}{} ({percent:.0}%)", bytes(phase.done), bytes(phase.total))
        };
        format!("mirage-kv: {}: {}: {amount}, {secs:.1} s", self.what, phase.name)
    }

    fn print(&self, line: &str) {
        self.printed.set(true);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

/// `n` bytes, with the exact count and a binary-prefixed size.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut size = n as f64;
    let mut unit = None;
    for u in UNITS {
        if size < 1024.0 {
            break;
        }
        size /= 1024.0;
        unit = Some(u);
    }
    match unit {
        Some(u) => format!("{n} bytes ({size:.1} {u})"),
        None => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_bytes_and_binary_units() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(3 << 29), "1610612736 bytes (1.5 GiB)");
    }

    #[test]
    fn reads_after_a_phase_ended_are_not_reported_under_its_name() {
        let p = Progress::new("cat x.img".into(), Some(Duration::ZERO));
        p.phase("mounting", Measure::BytesRead, 4096, false);
        p.read(0, 512);
        p.finish_phase();
        p.read(512, 512);
        assert_eq!(p.phase.borrow().done, 512);
    }

    #[test]
    fn lines_say_phase_done_total_and_percent() {
        let p = Progress::new("fsck x.img".into(), Some(Duration::ZERO));
        p.phase("hashing values", Measure::BytesRead, 4096, false);
        p.read(0, 1024);
        let line = p.line(&p.phase.borrow(), Instant::now());
        assert!(
            line.starts_with("mirage-kv: fsck x.img: hashing values: read 1024 bytes (1.0 KiB) of 4096 bytes"),
            "{line}"
        );
        assert!(line.contains("(25%)"), "{line}");
        p.phase("reading the archive's headers", Measure::Position, 1 << 20, true);
        p.read(4096, 512);
        p.read(1024, 512);
        let line = p.line(&p.phase.borrow(), Instant::now());
        assert!(line.contains("reached 4608 bytes (4.5 KiB) of about 1048576 bytes (1.0 MiB) (0%)"), "{line}");
    }
}

//! Progress of the CLI's long work, on stderr. On a terminal: a bar with the
//! rate and the time left (indicatif). Otherwise (CI logs, tests, `2> file`):
//! plain lines, one per tenth of the work and one at the end, in a fixed form a
//! script can read: `kpl: encoding images: 120/500`.
//!
//! One bar at a time; lines written meanwhile go through [`note`], so that they
//! do not tear the bar.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// The bar on screen, if any, so that [`note`] can print above it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Prints one line on stderr, above the progress bar when one is shown.
pub fn note(line: &str) {
    let active = ACTIVE.lock().ok().and_then(|a| a.clone());
    match active {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// The plain form of a progress line (no trailing newline).
pub fn line(label: &str, done: usize, total: usize) -> String {
    format!("kpl: {label}: {done}/{total}")
}

enum Sink {
    Bar(ProgressBar),
    Lines { out: Box<dyn Write + Send>, printed_tenth: Option<usize>, printed_end: bool },
}

/// Progress over `total` units of work named by `label` ("encoding images").
pub struct Progress {
    label: String,
    total: usize,
    sink: Sink,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines on stderr otherwise.
    pub fn new(label: &str, total: usize) -> Self {
        if std::io::stderr().is_terminal() {
            Self::bar(label, total)
        } else {
            Self::lines(label, total, Box::new(std::io::stderr()))
        }
    }

    /// Plain lines written to `out`: the first update of each new tenth of
    /// `total`, and `total/total` once at the end (so a run of n ≤ 10 units
    /// prints every unit).
    pub fn lines(label: &str, total: usize, out: Box<dyn Write + Send>) -> Self {
        Self { label: label.to_string(), total, sink: Sink::Lines { out, printed_tenth: None, printed_end: false } }
    }

    fn bar(label: &str, total: usize) -> Self {
        let bar = ProgressBar::new(total as u64);
        let style = ProgressStyle::with_template("kpl: {msg} [{bar:30}] {pos}/{len}  {per_sec}  {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(250));
        if let Ok(mut active) = ACTIVE.lock() {
            *active = Some(bar.clone());
        }
        Self { label: label.to_string(), total, sink: Sink::Bar(bar) }
    }

    /// Sets the units done so far (clamped to `total`).
    pub fn set(&mut self, done: usize) {
        let done = done.min(self.total);
        match &mut self.sink {
            Sink::Bar(bar) => bar.set_position(done as u64),
            Sink::Lines { out, printed_tenth, printed_end } => {
                if self.total == 0 || *printed_end {
                    return;
                }
                let tenth = done * 10 / self.total;
                let end = done == self.total;
                if end || (done > 0 && printed_tenth.is_none_or(|t| tenth > t)) {
                    *printed_tenth = Some(tenth);
                    *printed_end = end;
                    // Progress is a courtesy: a closed stderr must not stop the work.
                    let _ = writeln!(out, "{}", line(&self.label, done, self.total));
                }
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Sink::Bar(bar) = &self.sink {
            // Leaves the final state on screen, with the elapsed time.
            bar.finish();
            if let Ok(mut active) = ACTIVE.lock() {
                *active = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test reads back after the progress is dropped.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run(total: usize, updates: impl IntoIterator<Item = usize>) -> Vec<String> {
        let out = Shared::default();
        {
            let mut progress = Progress::lines("encoding images", total, Box::new(out.clone()));
            for done in updates {
                progress.set(done);
            }
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn one_line_per_tenth_and_one_at_the_end() {
        // Batches of 8 over 500 images, as PreparedImages::embed reports them.
        let updates: Vec<usize> = (1..=63).map(|b| (b * 8).min(500)).collect();
        let lines = run(500, updates);
        let expected: Vec<String> =
            [8, 56, 104, 152, 200, 256, 304, 352, 400, 456, 500].iter().map(|d| format!("kpl: encoding images: {d}/500")).collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn small_runs_print_every_unit_and_the_end_once() {
        assert_eq!(run(3, [1, 2, 3, 3]), ["kpl: encoding images: 1/3", "kpl: encoding images: 2/3", "kpl: encoding images: 3/3"]);
    }

    #[test]
    fn nothing_for_empty_work_or_no_progress() {
        assert!(run(0, [0, 0]).is_empty());
        assert!(run(10, [0]).is_empty());
    }

    #[test]
    fn overshoot_is_clamped() {
        assert_eq!(run(4, [9]), ["kpl: encoding images: 4/4"]);
    }
}

//! Progress of a run on stderr: an indicatif bar on a terminal, one plain line per step otherwise (CI
//! logs stay readable).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress through a known number of steps (e.g. rounds × scenarios).
///
/// `step(label)` announces the step that starts now; the bar counts the steps completed before it.
/// Lines for stdout should go through [`Progress::println`] so they do not tear the bar.
pub struct Progress {
    bar: ProgressBar,
    /// Whether the bar is drawn (stderr is a terminal); otherwise each step prints one line.
    drawn: bool,
    /// Steps begun so far: the completed ones plus the running one.
    begun: AtomicU64,
    started: Instant,
}

impl Progress {
    /// A bar of `total_steps` steps on stderr, hidden when stderr is not a terminal.
    pub fn new(total_steps: usize) -> Progress {
        Progress::with_target(total_steps, std::io::stderr().is_terminal())
    }

    /// A bar drawn on stderr or not drawn at all (then one line per step).
    fn with_target(total_steps: usize, drawn: bool) -> Progress {
        let target = if drawn {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total_steps as u64), target);
        // A fixed template: a parse error would be a bug here, and the default style still works.
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} (ETA {eta}) {wide_msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        if drawn {
            bar.enable_steady_tick(Duration::from_millis(250));
        }
        Progress {
            bar,
            drawn,
            begun: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Marks the previous step done and starts the step `label`.
    pub fn step(&self, label: impl Into<String>) {
        let label = label.into();
        let begun = self.begun.fetch_add(1, Ordering::Relaxed) + 1;
        if begun > 1 {
            self.bar.inc(1);
        }
        let total = self.bar.length().unwrap_or(0).max(begun);
        self.bar.set_length(total);
        if !self.drawn {
            eprintln!("[{begun}/{total} {}] {label}", clock(self.started.elapsed()));
        }
        self.bar.set_message(label);
    }

    /// Prints a line on stdout above the bar.
    pub fn println(&self, line: impl AsRef<str>) {
        self.bar.suspend(|| println!("{}", line.as_ref()));
    }

    /// Marks every step done and leaves the full bar (or a final line) behind.
    pub fn finish(&self) {
        if self.bar.is_finished() {
            return;
        }
        let total = self.bar.length().unwrap_or(0);
        self.bar.set_position(total);
        let elapsed = clock(self.started.elapsed());
        if self.drawn {
            self.bar.finish_with_message(format!("done in {elapsed}"));
        } else {
            self.bar.finish();
            eprintln!("[{total}/{total} {elapsed}] done");
        }
    }
}

impl Drop for Progress {
    /// A run that fails leaves the bar where it stopped, not cleared.
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.abandon();
        }
    }
}

/// m:ss (or h:mm:ss) of a duration.
fn clock(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    if seconds >= 3600 {
        format!("{}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
    } else {
        format!("{}:{:02}", seconds / 60, seconds % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_count_completed_work_and_finish_fills_the_bar() {
        let progress = Progress::with_target(3, false);
        assert_eq!(progress.bar.position(), 0);
        progress.step("round 1: ceiling");
        assert_eq!(progress.bar.position(), 0, "the first step is running, none done");
        assert_eq!(progress.bar.message(), "round 1: ceiling");
        progress.step("round 1: penguin");
        progress.step("round 1: postfix");
        assert_eq!(progress.bar.position(), 2);
        // More steps than announced grow the bar instead of overflowing it.
        progress.step("one more");
        assert_eq!(progress.bar.position(), 3);
        assert_eq!(progress.bar.length(), Some(4));
        progress.finish();
        assert_eq!(progress.bar.position(), 4);
        assert!(progress.bar.is_finished());
        progress.finish();
    }

    #[test]
    fn new_is_hidden_off_a_terminal() {
        let progress = Progress::new(2);
        // Under `cargo test` stderr is captured or a pipe in CI; a drawn bar must agree with it.
        assert_eq!(progress.drawn, std::io::stderr().is_terminal());
        progress.step("only step");
        progress.println("a line on stdout");
        progress.finish();
    }

    #[test]
    fn clock_format() {
        assert_eq!(clock(Duration::from_secs(41)), "0:41");
        assert_eq!(clock(Duration::from_secs(3 * 60 + 5)), "3:05");
        assert_eq!(clock(Duration::from_secs(3600 + 61)), "1:01:01");
    }
}

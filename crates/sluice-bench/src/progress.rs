//! How far a benchmark is, on stderr. On a terminal, a bar per phase with
//! its name, and its rate and ETA where its size is known (jobs, requests,
//! rows, or its length in time); a spinner where it is not. Otherwise
//! plain lines, one when a phase starts and one when it ends, and never an
//! escape code. Every other line on stderr (messages, logs) goes through
//! here too, so that it lands above the bars instead of through them.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often a followed count is read into its bar.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// How big a phase is, when that is known.
#[derive(Clone, Copy, Debug)]
pub enum Size {
    /// Not known: a spinner and the time so far.
    Unknown,
    /// This many things (jobs, requests, rows, messages).
    Items(u64),
    /// This long.
    Time(Duration),
}

/// Where stderr goes: through the bars on a terminal, plain otherwise.
enum Output {
    Bars(MultiProgress),
    Plain,
}

fn output() -> &'static Output {
    static OUTPUT: OnceLock<Output> = OnceLock::new();
    OUTPUT.get_or_init(|| {
        if std::io::stderr().is_terminal() {
            Output::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Output::Plain
        }
    })
}

/// Runs `f` with the bars off the screen (writes to stdout or stderr that
/// must not go through them).
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match output() {
        Output::Bars(bars) => bars.suspend(f),
        Output::Plain => f(),
    }
}

/// A line on stderr.
pub fn line(text: &str) {
    suspend(|| {
        let _ = writeln!(std::io::stderr(), "{text}");
    });
}

/// Stderr for the log subscriber: each write lands above the bars.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The bar's look for a phase of `size`.
fn template(size: Size) -> &'static str {
    match size {
        Size::Unknown => "{spinner} {msg} ({elapsed})",
        Size::Items(_) => "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} ({rate}, ETA {eta})",
        Size::Time(_) => "{spinner} {msg} [{bar:30}] {elapsed} (ETA {eta})",
    }
}

fn style(size: Size) -> ProgressStyle {
    ProgressStyle::with_template(template(size))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        )
        .progress_chars("=> ")
}

/// The line a phase ends with.
fn done_line(name: &str, took: Duration) -> String {
    format!("bench: {name}: done in {:.1} s", took.as_secs_f64())
}

/// One phase of a benchmark; [`Phase::done`] ends it.
pub struct Phase {
    name: String,
    size: Size,
    started: Instant,
    bar: Option<ProgressBar>,
}

/// Starts a phase: its bar, or its plain line `bench: NAME`.
pub fn phase(name: impl Into<String>, size: Size) -> Phase {
    let name = name.into();
    let bar = match output() {
        Output::Bars(bars) => {
            let len = match size {
                Size::Unknown => None,
                Size::Items(n) => Some(n),
                Size::Time(d) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            let bar = bars.add(ProgressBar::with_draw_target(
                len,
                ProgressDrawTarget::hidden(),
            ));
            bar.set_style(style(size));
            bar.set_message(name.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        }
        Output::Plain => {
            line(&format!("bench: {name}"));
            None
        }
    };
    Phase {
        name,
        size,
        started: Instant::now(),
        bar,
    }
}

impl Phase {
    /// So many done so far.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// So many more done.
    pub fn inc(&self, more: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(more);
        }
    }

    /// Runs `work`, reading `count` into the bar as it goes (for a phase
    /// of [`Size::Time`], the time so far instead).
    pub async fn follow<T>(&self, count: impl Fn() -> u64, work: impl Future<Output = T>) -> T {
        let Some(bar) = &self.bar else {
            return work.await;
        };
        let position = || match self.size {
            Size::Time(_) => u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            _ => count(),
        };
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => {
                    bar.set_position(position());
                    return out;
                }
                () = tokio::time::sleep(FOLLOW_EVERY) => bar.set_position(position()),
            }
        }
    }

    /// Ends the phase: its bar goes, `bench: NAME: done in S s` stays.
    pub fn done(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        line(&done_line(&self.name, self.started.elapsed()));
    }
}

impl Drop for Phase {
    /// A phase left without [`Phase::done`] (an error) leaves its bar as it
    /// was, so that one sees where the bench stopped.
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_ends_with_its_name_and_how_long_it_took() {
        assert_eq!(
            done_line("steady phase", Duration::from_millis(12_340)),
            "bench: steady phase: done in 12.3 s"
        );
    }

    #[test]
    fn every_size_has_a_template_that_parses() {
        for size in [
            Size::Unknown,
            Size::Items(10),
            Size::Time(Duration::from_secs(1)),
        ] {
            assert!(
                ProgressStyle::with_template(template(size)).is_ok(),
                "{size:?}"
            );
        }
    }

    #[tokio::test]
    async fn following_without_bars_runs_the_work() {
        let phase = Phase {
            name: "x".into(),
            size: Size::Items(3),
            started: Instant::now(),
            bar: None,
        };
        assert_eq!(phase.follow(|| 1, async { 7 }).await, 7);
    }
}

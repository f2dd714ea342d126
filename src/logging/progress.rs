//! The live progress display: on a terminal with human logs, each run of cells being written
//! is a bar (cells done of total, rate, time left) instead of a `fragment.written` line per
//! fragment. Log lines are printed above the bars ([`SuspendingStderr`]). Anywhere else
//! (JSON logs, stderr not a terminal, `--quiet`) nothing here draws and the events are logged.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars on stderr, when the display is on.
static DISPLAY: OnceLock<MultiProgress> = OnceLock::new();

/// Turn the display on (logging's init, for human logs on a terminal).
pub(super) fn enable() {
    let _ = DISPLAY.set(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
}

/// A bar for one run of cells; does nothing when the display is off.
#[derive(Debug)]
pub struct CellProgress {
    bar: Option<ProgressBar>,
}

impl CellProgress {
    /// Start a bar labelled `label` over `total` cells.
    pub fn start(label: String, total: u64) -> Self {
        let bar = DISPLAY.get().map(|display| {
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {human_pos}/{human_len} cells, {per_sec}, {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bar = display.add(ProgressBar::new(total).with_style(style).with_prefix(label));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        CellProgress { bar }
    }

    /// Whether a bar shows the progress (then the per-fragment log line is not needed).
    pub fn is_shown(&self) -> bool {
        self.bar.is_some()
    }

    /// `done` cells of the total are written.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }
}

impl Drop for CellProgress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// stderr for log lines: while bars are drawn, each line is written with the bars lifted, so
/// lines and bars never overwrite each other. tracing makes one writer per event.
#[derive(Debug, Default)]
pub struct SuspendingStderr(Vec<u8>);

impl Write for SuspendingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.0);
        match DISPLAY.get() {
            Some(display) => display.suspend(|| std::io::stderr().write_all(&line)),
            None => std::io::stderr().write_all(&line),
        }
    }
}

impl Drop for SuspendingStderr {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

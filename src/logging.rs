//! Log output: human lines on a terminal, JSON lines otherwise, always on stderr.
//!
//! Every event carries a stable `event` field (`input.opened`, `input.scanned`,
//! `chunk.written`, `convert.done`) so workflow engines and tests can follow progress;
//! stdout is kept for results only.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON lines when stderr is not a terminal, human lines when it is.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Human,
}

/// Install the global subscriber. `verbosity` counts `-v` flags; `quiet` keeps warnings only.
pub fn init(format: LogFormat, verbosity: u8, quiet: bool) {
    let level = match (quiet, verbosity) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // Our own events at `level`; dependencies (lance, datafusion) only when they warn.
    let filter = EnvFilter::try_from_env("SLAF_CONVERT_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,slaf_convert={level}")));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(!json && std::io::stderr().is_terminal());
    // A second init (tests calling the library twice) is harmless: keep the first.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

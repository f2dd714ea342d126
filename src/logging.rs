//! Log output: human lines on a terminal, JSON lines otherwise, always on stderr.
//!
//! Every event carries a stable `event` field (`input.scanned`, `shard.started`,
//! `fragment.written`, `convert.done`) so workflow engines and tests can follow progress;
//! stdout is kept for results only. JSON lines are flat: the fields of the spans an event is
//! in (`plan_hash`, `shard`) sit beside its own, so `jq .plan_hash` works on every line of a
//! shard or commit. Human lines ([`human`]) carry the message alone, and on a terminal a live
//! [`progress`] display replaces the per-fragment lines.

mod human;
pub mod progress;

use std::fmt;

use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    // Our own events at `level`; dependencies (lance, datafusion) only when they warn. But
    // lance_io's object store module warns each time a store is made through a provider
    // outside its built-in registry ("Guessing that object store prefix is ..."), which is
    // how every store URI reaches Lance here (src/store/lance.rs): errors only from it.
    let filter = EnvFilter::try_from_env("SLAF_CONVERT_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,lance_io::object_store=error,slaf_convert={level}"
        ))
    });
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !terminal,
    };
    if !json && terminal && !quiet {
        progress::enable();
    }
    // Span fields are recorded as JSON for both formats: each picks what it shows.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::SuspendingStderr::default)
        .fmt_fields(JsonFields::new());
    // A second init (tests calling the library twice) is harmless: keep the first.
    let _ = if json {
        builder.event_format(FlatJson).try_init()
    } else {
        builder
            .event_format(human::HumanLines {
                color: terminal && std::env::var_os("NO_COLOR").is_none(),
            })
            .try_init()
    };
}

/// The fields of every span enclosing `event` (outermost first), then the event's own.
fn event_fields<S, N>(ctx: &FmtContext<'_, S, N>, event: &Event<'_>) -> Map<String, Value>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let mut map = Map::new();
    if let Some(scope) = ctx.event_scope() {
        for span in scope.from_root() {
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(&fields.fields) {
                    map.extend(o);
                }
            }
        }
    }
    event.record(&mut JsonVisitor(&mut map));
    map
}

/// One JSON object per event: timestamp, level, the fields of every enclosing span (outermost
/// first), then the event's own fields and message.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut map = Map::new();
        map.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        map.insert("level".into(), event.metadata().level().to_string().into());
        map.extend(event_fields(ctx, event));
        map.entry("message").or_insert_with(|| Value::from(""));
        writeln!(writer, "{}", Value::Object(map))
    }
}

/// Records an event's fields into a JSON map with their natural JSON types.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

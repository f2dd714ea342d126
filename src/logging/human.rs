//! Human log lines: what a person reads on a terminal. The message (which says what happened
//! in words and numbers), prefixed by the shard it concerns and, for anything but progress,
//! its level; the machine fields (`event`, `plan_hash`, rates) stay in the JSON lines.

use std::fmt;

use serde_json::Value;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `shard 3: warning: message`, coloured on a terminal.
pub(super) struct HumanLines {
    /// Colour the level (a terminal, and `NO_COLOR` unset).
    pub color: bool,
}

impl<S, N> FormatEvent<S, N> for HumanLines
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
        let fields = super::event_fields(ctx, event);
        let message = match fields.get("message") {
            Some(Value::String(m)) => m.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        if let Some(shard) = fields.get("shard") {
            if !message.starts_with("shard ") {
                write!(writer, "shard {shard}: ")?;
            }
        }
        let level = *event.metadata().level();
        let (name, color) = match level {
            Level::ERROR => ("error", "31"),
            Level::WARN => ("warning", "33"),
            Level::INFO => ("", ""),
            Level::DEBUG => ("debug", "2"),
            Level::TRACE => ("trace", "2"),
        };
        if !name.is_empty() {
            if self.color {
                write!(writer, "\x1b[{color}m{name}\x1b[0m: ")?;
            } else {
                write!(writer, "{name}: ")?;
            }
        }
        writeln!(writer, "{message}")
    }
}

//! JSON Schemas of everything slaf-convert reads or writes for workflow engines: the manifest,
//! the plan, shard receipts, the completion marker (generated from the Rust types with
//! schemars) and log events (hand-written: events are tracing fields, not a type).
//!
//! `slaf-convert schema NAME` prints one; the files in `schemas/` are these, and a test fails
//! when they are stale (`SLAF_CONVERT_UPDATE_SCHEMAS=1 cargo test` rewrites them).

use crate::workflow::commit::CompletionMarker;
use crate::workflow::manifest::Manifest;
use crate::workflow::plan::Plan;
use crate::workflow::shard::Receipt;

/// Schema names, as `slaf-convert schema NAME` takes them.
pub const NAMES: [&str; 5] = [
    "manifest",
    "plan",
    "receipt",
    "completion-marker",
    "log-event",
];

const LOG_EVENT: &str = include_str!("../../schemas/log-event.schema.json");

/// The schema called `name`, pretty JSON; `None` for an unknown name.
pub fn schema(name: &str) -> Option<String> {
    let generated = match name {
        "manifest" => schemars::schema_for!(Manifest),
        "plan" => schemars::schema_for!(Plan),
        "receipt" => schemars::schema_for!(Receipt),
        "completion-marker" => schemars::schema_for!(CompletionMarker),
        "log-event" => return Some(LOG_EVENT.to_string()),
        _ => return None,
    };
    Some(serde_json::to_string_pretty(&generated).expect("a schema serialises") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_schema_files_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        for name in NAMES {
            let want = schema(name).unwrap();
            let path = dir.join(format!("{name}.schema.json"));
            if std::env::var_os("SLAF_CONVERT_UPDATE_SCHEMAS").is_some() {
                std::fs::write(&path, &want).unwrap();
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                have == want,
                "{} is stale: run SLAF_CONVERT_UPDATE_SCHEMAS=1 cargo test",
                path.display()
            );
        }
    }
}

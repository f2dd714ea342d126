//! `validate`: checks a finished dataset's invariants and reports every violation found, not
//! just the first, for datasets of ours and of upstream's converter alike.
//!
//! What is checked (docs/slaf-format.md §3 and Appendix A): `config.json` has the keys the
//! reader needs and its counts and statistics equal the data; the tables it names exist;
//! cell and gene ids run 0..n-1 in row order and their names are unique; expression (and
//! layers) rows are grouped by cell in id order, genes ascending within a cell, no cell split
//! across fragments; `cell_start_index` is each cell's global first row (upstream's
//! multi-file conversions restart it per file, defect B2); `multi_file` adds up and names the
//! cells' `source_file`; vector columns have no missing rows; the completion marker is there
//! and describes these tables and the plan they were committed from. The scans
//! ([`scan`]) keep a few numbers per cell, never a table.

mod scan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::slaf::config_json::CONFIG_FILE;
use crate::slaf::value_stats::ValueStats;
use crate::store::lance::open_dataset;
use crate::workflow::commit::{read_marker, COMMITTED_PLAN_FILE, MARKER_FILE};

/// Examples kept per kind of violation (all are counted).
const EXAMPLES: usize = 5;

/// What `validate` found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The dataset checked.
    pub dataset: PathBuf,
    /// No violations.
    pub ok: bool,
    /// Every kind of violation found, in the order first found.
    pub violations: Vec<Violation>,
    /// What the reader copes with but a user should know ([`WARNINGS`]).
    pub warnings: Vec<Violation>,
}

/// Kinds that do not make a dataset invalid: duplicate names are the data's (Cell Ranger
/// repeats gene symbols; upstream keeps them too, docs/slaf-format.md §4.3), but the reader's
/// name lookups resolve a repeated name to its last row.
const WARNINGS: [&str; 2] = ["genes.duplicate_id", "cells.duplicate_id"];

/// One kind of violation, with how often it occurred.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Stable name, e.g. `cells.start_index`.
    pub code: &'static str,
    /// The table or file it is in.
    pub place: String,
    /// What is wrong.
    pub message: String,
    /// Occurrences (rows, keys or files).
    pub count: u64,
    /// The first few occurrences.
    pub examples: Vec<String>,
}

/// Violations as they are found, one entry per code and place.
#[derive(Default)]
pub(crate) struct Findings {
    order: Vec<(&'static str, String)>,
    by_key: BTreeMap<(&'static str, String), Violation>,
}

impl Findings {
    /// Record one occurrence of `code` in `place`; `message` describes the kind (the first
    /// occurrence's wording is kept), `example` this occurrence.
    pub(crate) fn add(
        &mut self,
        code: &'static str,
        place: &str,
        message: impl Into<String>,
        example: impl FnOnce() -> String,
    ) {
        let key = (code, place.to_string());
        let entry = self.by_key.entry(key.clone()).or_insert_with(|| {
            self.order.push(key);
            Violation {
                code,
                place: place.to_string(),
                message: message.into(),
                count: 0,
                examples: Vec::new(),
            }
        });
        entry.count += 1;
        if entry.examples.len() < EXAMPLES {
            entry.examples.push(example());
        }
    }

    /// Record a violation that is one fact, not a count of rows.
    pub(crate) fn fact(&mut self, code: &'static str, place: &str, message: impl Into<String>) {
        self.add(code, place, message, String::new);
        if let Some(v) = self.by_key.get_mut(&(code, place.to_string())) {
            v.examples.retain(|e| !e.is_empty());
        }
    }

    fn into_report(mut self, dataset: &Path) -> Report {
        let (warnings, violations): (Vec<Violation>, Vec<Violation>) = (self.order.iter())
            .filter_map(|k| self.by_key.remove(k))
            .partition(|v| WARNINGS.contains(&v.code));
        Report {
            dataset: dataset.to_path_buf(),
            ok: violations.is_empty(),
            violations,
            warnings,
        }
    }
}

/// Check the dataset at `dir` (a local `.slaf` directory). An `Err` means it could not be
/// read at all (no such directory); everything wrong with what is there is in the report.
pub async fn validate(dir: &Path) -> Result<Report> {
    if !dir.is_dir() {
        return Err(Error::InputMissing {
            path: dir.to_path_buf(),
            what: "no such dataset directory".into(),
        });
    }
    let mut found = Findings::default();
    let config = read_config(dir, &mut found);
    let tables = table_paths(config.as_ref(), &mut found);

    let mut versions = BTreeMap::new();
    let mut opened = BTreeMap::new();
    for (name, rel) in &tables {
        let path = dir.join(rel);
        if !path.is_dir() {
            found.fact(
                "table.missing",
                rel,
                format!("config.json names table {name}, but {rel} does not exist"),
            );
            continue;
        }
        match open_dataset(&path.to_string_lossy()).await {
            Ok(ds) => {
                versions.insert(rel.clone(), ds.version().version);
                opened.insert(name.clone(), ds);
            }
            Err(e) => found.fact(
                "table.unreadable",
                rel,
                format!("not a readable Lance table: {e}"),
            ),
        }
    }

    let genes = match opened.get("genes") {
        Some(ds) => Some(scan::genes(ds, &mut found).await?),
        None => None,
    };
    let cells = match opened.get("cells") {
        Some(ds) => Some(scan::cells(ds, &mut found).await?),
        None => None,
    };
    let n_cells = cells.as_ref().map(|c| c.start_index.len() as u64);
    let n_genes = genes;
    let mut entries = None;
    if let (Some(ds), Some(nc), Some(ng)) = (opened.get("expression"), n_cells, n_genes) {
        entries = Some(scan::entries(ds, "expression.lance", nc, ng, true, &mut found).await?);
    }
    if let (Some(ds), Some(nc), Some(ng)) = (opened.get("layers"), n_cells, n_genes) {
        // Ordered as expression; cell_start_index points into expression only.
        scan::entries(ds, "layers.lance", nc, ng, false, &mut found).await?;
    }
    if let (Some(cells), Some(entries)) = (&cells, &entries) {
        let multi_file = config.as_ref().map(|c| &c["multi_file"]);
        scan::check_start_index(cells, entries, multi_file, &mut found);
    }
    if let Some(config) = &config {
        check_config(
            config,
            n_cells,
            n_genes,
            entries.as_ref(),
            cells.as_ref(),
            &mut found,
        );
    }
    check_marker(
        dir,
        &versions,
        n_cells,
        n_genes,
        entries.as_ref(),
        &mut found,
    );
    Ok(found.into_report(dir))
}

fn read_config(dir: &Path, found: &mut Findings) -> Option<Value> {
    let text = match std::fs::read_to_string(dir.join(CONFIG_FILE)) {
        Ok(t) => t,
        Err(e) => {
            found.fact(
                "config.missing",
                CONFIG_FILE,
                format!("cannot be read: {e}"),
            );
            return None;
        }
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(v) if v.is_object() => Some(v),
        Ok(_) => {
            found.fact("config.invalid", CONFIG_FILE, "is not a JSON object");
            None
        }
        Err(e) => {
            found.fact(
                "config.invalid",
                CONFIG_FILE,
                format!("is not valid JSON: {e}"),
            );
            None
        }
    }
}

/// The tables to check: those config.json names, or (no config) the three required ones.
fn table_paths(config: Option<&Value>, found: &mut Findings) -> Vec<(String, String)> {
    let required = ["expression", "cells", "genes"];
    let Some(tables) = config.map(|c| &c["tables"]) else {
        return required
            .iter()
            .map(|t| (t.to_string(), format!("{t}.lance")))
            .collect();
    };
    let mut out = Vec::new();
    for t in required {
        match tables[t].as_str() {
            Some(rel) => out.push((t.to_string(), rel.to_string())),
            None => found.fact(
                "config.missing_key",
                CONFIG_FILE,
                format!("tables.{t} is missing: the reader needs it"),
            ),
        }
    }
    for (name, rel) in tables.as_object().into_iter().flatten() {
        if let (false, Some(rel)) = (required.contains(&name.as_str()), rel.as_str()) {
            out.push((name.clone(), rel.to_string()));
        }
    }
    out
}

/// Does `found` (from the config) equal `want` (from the data)? Exact for counts.
fn config_u64(found: &mut Findings, key: &str, value: &Value, want: u64) {
    match value.as_u64() {
        Some(v) if v == want => {}
        Some(v) => found.fact(
            "config.count",
            CONFIG_FILE,
            format!("{key} is {v}, the data has {want}"),
        ),
        None => found.fact(
            "config.missing_key",
            CONFIG_FILE,
            format!("{key} is missing or not a count"),
        ),
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

fn check_config(
    config: &Value,
    n_cells: Option<u64>,
    n_genes: Option<u64>,
    entries: Option<&scan::Entries>,
    cells: Option<&scan::Cells>,
    found: &mut Findings,
) {
    if !config["format_version"].is_string() {
        found.fact(
            "config.missing_key",
            CONFIG_FILE,
            "format_version is missing or not a string",
        );
    }
    if let Some(n) = n_cells {
        config_u64(found, "array_shape[0]", &config["array_shape"][0], n);
    }
    if let Some(m) = n_genes {
        config_u64(found, "array_shape[1]", &config["array_shape"][1], m);
    }
    let meta = &config["metadata"];
    let Some(entries) = entries else { return };
    config_u64(
        found,
        "metadata.expression_count",
        &meta["expression_count"],
        entries.rows,
    );
    if let (Some(n), Some(m)) = (n_cells, n_genes) {
        config_u64(
            found,
            "metadata.total_possible_elements",
            &meta["total_possible_elements"],
            n * m,
        );
        let density = if n * m > 0 {
            entries.rows as f64 / (n * m) as f64
        } else {
            0.0
        };
        match meta["density"].as_f64() {
            Some(d) if close(d, density, 1e-9) => {}
            d => found.fact(
                "config.statistics",
                CONFIG_FILE,
                format!("metadata.density is {d:?}, the data gives {density}"),
            ),
        }
    }
    check_stats(&meta["expression_stats"], &entries.stats, found);
    if let Some(cells) = cells {
        scan::check_multi_file(&config["multi_file"], cells, found);
    }
}

fn check_stats(stats: &Value, data: &ValueStats, found: &mut Findings) {
    if stats.is_null() {
        found.fact(
            "config.missing_key",
            CONFIG_FILE,
            "metadata.expression_stats is missing",
        );
        return;
    }
    let empty = data.finite() == 0;
    let want = [
        ("min_value", if empty { 0.0 } else { data.min }, 0.0),
        ("max_value", if empty { 0.0 } else { data.max }, 0.0),
        ("mean_value", if empty { 0.0 } else { data.mean }, 1e-9),
        ("std_value", if empty { 0.0 } else { data.std() }, 1e-6),
    ];
    for (key, value, rel) in want {
        match stats[key].as_f64() {
            Some(v) if close(v, value, rel) => {}
            v => found.fact(
                "config.statistics",
                CONFIG_FILE,
                format!("metadata.expression_stats.{key} is {v:?}, the data gives {value}"),
            ),
        }
    }
}

fn check_marker(
    dir: &Path,
    versions: &BTreeMap<String, u64>,
    n_cells: Option<u64>,
    n_genes: Option<u64>,
    entries: Option<&scan::Entries>,
    found: &mut Findings,
) {
    let marker = match read_marker(dir) {
        Ok(Some(m)) => m,
        Ok(None) => {
            found.fact("marker.missing", MARKER_FILE, "no completion marker: the dataset is not marked complete (upstream's converter writes none)");
            return;
        }
        Err(e) => {
            found.fact("marker.invalid", MARKER_FILE, e.to_string());
            return;
        }
    };
    for (name, version) in versions {
        match marker.tables.get(name) {
            Some(v) if v == version => {}
            v => found.fact(
                "marker.tables",
                MARKER_FILE,
                format!("names {name} at Lance version {v:?}, the table is at {version}"),
            ),
        }
    }
    let counts = [
        ("n_cells", marker.n_cells, n_cells),
        ("n_genes", marker.n_genes, n_genes),
        (
            "expression_rows",
            marker.expression_rows,
            entries.map(|e| e.rows),
        ),
    ];
    for (key, said, data) in counts {
        if let Some(data) = data.filter(|d| *d != said) {
            found.fact(
                "marker.counts",
                MARKER_FILE,
                format!("{key} is {said}, the data has {data}"),
            );
        }
    }
    match crate::workflow::commit::state::committed_plan(dir) {
        Some(hash) if hash == marker.plan_hash => {}
        Some(hash) => found.fact(
            "marker.plan",
            MARKER_FILE,
            format!(
                "names plan {}, the tables were committed from plan {hash} ({COMMITTED_PLAN_FILE})",
                marker.plan_hash
            ),
        ),
        None => found.fact(
            "marker.plan",
            COMMITTED_PLAN_FILE,
            "missing or unreadable: which plan the tables hold is unknown",
        ),
    }
}

/// The report as the lines `validate` prints without `--json`: one per kind of violation,
/// then one per kind of warning; "valid" when there is no violation.
pub fn describe(report: &Report) -> String {
    let shown = report.dataset.display();
    let mut out = String::new();
    if report.ok {
        out.push_str(&format!("{shown}: valid\n"));
    }
    let lines = (report.violations.iter().map(|v| ("", v)))
        .chain(report.warnings.iter().map(|v| ("warning: ", v)));
    for (kind, v) in lines {
        let times = if v.count > 1 {
            format!(" ({} times)", v.count)
        } else {
            String::new()
        };
        let examples = if v.examples.is_empty() {
            String::new()
        } else {
            format!("; e.g. {}", v.examples.join(", "))
        };
        out.push_str(&format!(
            "{shown}: {kind}{}: {}: {}{times}{examples}\n",
            v.place, v.code, v.message
        ));
    }
    out
}

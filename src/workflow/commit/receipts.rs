//! Finding and checking the shards' receipts: one per shard of the plan, each from this plan,
//! with the rows the plan expects, and every data file it names present where commit will
//! take it from.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::workflow::plan::Plan;
use crate::workflow::shard::{shared_receipts_dir, Placement, Receipt, RECEIPT_FILE};

/// A receipt and the directory its staged files are in now.
pub struct Located {
    /// The receipt.
    pub receipt: Receipt,
    /// Where its staged data files are (`None`: in the dataset, a shared target).
    pub staged_dir: Option<PathBuf>,
}

/// Find, load and check every shard's receipt.
pub fn collect(plan: &Plan, sources: &[PathBuf]) -> Result<Vec<Located>> {
    let mut located = Vec::new();
    for (file, dir) in receipt_files(plan, sources) {
        let found = check_receipt(plan, &file, dir)?;
        located.push((file, found));
    }
    by_shard(plan, located)
}

/// The checked receipts (each with the file it came from) in shard order: one for every
/// shard of the plan, no more.
pub fn by_shard(plan: &Plan, located: Vec<(PathBuf, Located)>) -> Result<Vec<Located>> {
    let mut by_index: BTreeMap<usize, Located> = BTreeMap::new();
    for (file, located) in located {
        if by_index.insert(located.receipt.shard, located).is_some() {
            return Err(Error::Receipts {
                path: file,
                what: "two receipts for the same shard".into(),
            });
        }
    }
    let missing: Vec<usize> = (0..plan.shards.len())
        .filter(|i| !by_index.contains_key(i))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Receipts {
            path: plan.output.clone(),
            what: format!(
                "missing receipts for shards {missing:?} of {}",
                plan.shards.len()
            ),
        });
    }
    Ok(by_index.into_values().collect())
}

/// The receipt files to read, each with the directory it was staged in (if any): those
/// `sources` name (a shard directory or a receipt), or, given none, the dataset's own.
fn receipt_files(plan: &Plan, sources: &[PathBuf]) -> Vec<(PathBuf, Option<PathBuf>)> {
    let mut files = Vec::new();
    if sources.is_empty() {
        let dir = shared_receipts_dir(&plan.output, &plan.plan_hash);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "json") {
                    files.push((e.path(), None));
                }
            }
        }
    }
    for s in sources {
        if s.is_dir() {
            files.push((s.join(RECEIPT_FILE), Some(s.clone())));
        } else {
            files.push((s.clone(), s.parent().map(Path::to_path_buf)));
        }
    }
    files
}

/// Load one receipt and check it against the plan: its plan, its shard, its row count, and
/// that every data file it names is there.
fn check_receipt(plan: &Plan, file: &Path, dir: Option<PathBuf>) -> Result<Located> {
    let receipt = Receipt::load(file)?;
    check_against_plan(plan, &receipt, file)?;
    let staged_dir = match receipt.placement {
        Placement::Staged { .. } => dir,
        Placement::SharedTarget | Placement::Discard => None,
    };
    if let Some(widened) = super::widen::recorded(plan, &receipt) {
        // An earlier commit rewrote this shard's fragments (and cleanup took the originals).
        return Ok(Located {
            receipt: widened,
            staged_dir: None,
        });
    }
    let root = staged_dir.as_deref().unwrap_or(&plan.output);
    if let Some(missing) = receipt.missing_file(root) {
        return Err(missing_file(file, &receipt, &missing.display()));
    }
    Ok(Located {
        receipt,
        staged_dir,
    })
}

/// The error for a receipt (in `file`) whose data file `missing` is gone.
pub fn missing_file(file: &Path, receipt: &Receipt, missing: &dyn std::fmt::Display) -> Error {
    Error::Receipts {
        path: file.to_path_buf(),
        what: format!(
            "shard {}'s data file {missing} is missing (removed since the shard ran?): run the shard again",
            receipt.shard
        ),
    }
}

/// Check a receipt (read from `file`) against the plan: its plan, its shard, its row count.
pub fn check_against_plan(plan: &Plan, receipt: &Receipt, file: &Path) -> Result<()> {
    let refuse = |what: String| Error::Receipts {
        path: file.to_path_buf(),
        what,
    };
    if receipt.plan_hash != plan.plan_hash {
        return Err(refuse(format!(
            "belongs to plan {}, not {}",
            receipt.plan_hash, plan.plan_hash
        )));
    }
    let shard = plan
        .shards
        .get(receipt.shard)
        .ok_or_else(|| refuse(format!("shard {} is not in the plan", receipt.shard)))?;
    if receipt.rows_written != shard.rows {
        return Err(refuse(format!(
            "shard {} wrote {} rows, the plan expects {}",
            receipt.shard, receipt.rows_written, shard.rows
        )));
    }
    Ok(())
}

/// Whether the tables in `output` hold exactly the data files `receipts` name (the commit
/// of these receipts got that far), table by table.
pub async fn tables_hold(output: &Path, receipts: &[Located]) -> Result<bool> {
    let mut wanted: BTreeMap<&str, HashSet<String>> = BTreeMap::new();
    for r in receipts {
        for (table, file) in r.receipt.data_files() {
            wanted.entry(table).or_default().insert(file.to_string());
        }
    }
    for (table, files) in wanted {
        let dir = output.join(table);
        if !dir.join("_versions").exists() {
            return Ok(false);
        }
        let ds = crate::store::lance::open_table(&dir).await?;
        let held: HashSet<String> = ds
            .get_fragments()
            .iter()
            .flat_map(|f| f.metadata().files.iter().map(|d| d.path.clone()))
            .collect();
        if held != files {
            return Ok(false);
        }
    }
    Ok(true)
}

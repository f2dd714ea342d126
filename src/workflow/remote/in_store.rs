//! A dataset built in its object store prefix itself: `convert` into a new or unfinished
//! prefix runs the steps below in one process; `shard` with the shared target at a URI
//! writes its fragments there with Lance (and its receipt beside them, unless the task
//! names a local `--receipt`), and `commit` commits every table there in one Lance
//! transaction each, then writes `config.json` and, last, the completion marker as whole
//! objects. Nothing of the dataset passes through local disk.
//!
//! The same guarantees as a local shared target ([`crate::workflow::commit`]): shards of a
//! plan may run in any order, again, or killed (their unreferenced files are deleted by the
//! commit's cleanup); a commit checks every receipt against the plan and every data file it
//! names before it writes anything; the marker goes before the rebuild starts and comes back
//! last, so a reader never trusts a dataset that is not whole; a commit killed at any point
//! is completed by running it again. A prefix that holds objects but no marker, claim or
//! receipts of ours is refused, as in [`super`]. One commit at a time: the commit writes
//! its claim first, and one whose claim was taken over stops before the marker.

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use tracing::Instrument;

use super::{check_apart, check_claim, check_target, claim, write_marker, Target, CLAIM_FILE};
use crate::error::{Error, Result};
use crate::json_file::json_bytes;
use crate::pipeline::blocking;
use crate::readers::ValueScan;
use crate::slaf::config_json::{CONFIG_FILE, UNS_FILE};
use crate::slaf::schema::{CELLSXCELLS_TABLE, GENESXGENES_TABLE, LAYERS_TABLE};
use crate::store::Store;
use crate::values::ValueType;
use crate::workflow::commit::receipts::{by_shard, check_against_plan, missing_file};
use crate::workflow::commit::state::clean_table;
use crate::workflow::commit::widen::{self, record_for, record_rel, Records};
use crate::workflow::commit::{
    commit_tables, config_for, marker_for, table_schemas, with_profile, CompletionMarker, Located,
    MARKER_FILE,
};
use crate::workflow::convert::{convert_shards, ConvertReport};
use crate::workflow::fetch::{open, FetchedInputs};
use crate::workflow::manifest::Manifest;
use crate::workflow::plan::Plan;
use crate::workflow::shard::{
    run_shard, Placement, Receipt, ShardTask, RECEIPT_FILE, RUNNING_SUFFIX, SHARED_RECEIPTS_DIR,
};

/// Suffix of the object a shard leaves beside its receipt when it starts writing into a
/// store, and never removes.
const STARTED_SUFFIX: &str = ".started";

/// Data files checked for presence at once.
const PARALLEL_CHECKS: usize = 16;

/// A shard writing into a dataset's prefix: the object that says so beside its receipt.
/// [`SharedTargetMark::finish`] removes it when the shard is done or has failed; a killed
/// shard leaves it (a commit of another plan then leaves unreferenced files alone).
pub struct SharedTargetMark {
    store: Store,
    rel: String,
}

impl SharedTargetMark {
    /// The shard is done (its receipt written) or has failed: remove the mark.
    pub async fn finish(self) -> Result<()> {
        self.store.delete(&self.rel).await
    }
}

/// Where plan `plan_hash`'s receipts go, relative to the dataset.
fn receipts_rel(plan_hash: &str) -> String {
    format!("{SHARED_RECEIPTS_DIR}/{plan_hash}")
}

/// Before shard `index` of `plan` writes into the dataset's prefix: refuse a prefix that is
/// not ours (objects, but no marker, claim or receipts), and mark the shard as writing.
pub async fn prepare_shared_target(plan: &Plan, index: usize) -> Result<SharedTargetMark> {
    let store = open(&plan.output)?;
    check_apart(&store, plan.inputs.iter().map(|i| i.path.clone()))?;
    // A complete dataset may be replaced by this plan's commit, as a local one is.
    check_target(&store, Some(&plan.plan_hash), true).await?;
    let shard = format!("{}/shard-{index:06}", receipts_rel(&plan.plan_hash));
    // Kept: what makes the prefix ours before any data file is there, so that a retry of a
    // shard that failed finds it ours (the running mark goes when the shard ends).
    store
        .write(&format!("{shard}{STARTED_SUFFIX}"), Vec::new())
        .await?;
    let rel = format!("{shard}{RUNNING_SUFFIX}");
    store.write(&rel, Vec::new()).await?;
    Ok(SharedTargetMark { store, rel })
}

/// `convert` of `manifest` (its inputs fetched: `fetched`) into a new or unfinished prefix:
/// the plan, every shard written into the store, and the commit there. The shards whose
/// receipts an earlier run left (with all their files) are kept, as a local conversion
/// resumes.
pub(super) async fn convert_in_store(
    manifest: &Manifest,
    fetched: &FetchedInputs,
) -> Result<ConvertReport> {
    let started = Instant::now();
    let plan_manifest = manifest.clone();
    let mut plan = blocking(move || {
        let size = convert_shards(&plan_manifest);
        Plan::build_scanning(&plan_manifest, size, ValueScan::RowsOnly)
    })
    .await?;
    fetched.name_in(&mut plan);
    let store = open(&plan.output)?;
    let mut kept = Vec::new();
    let mut value_type = plan.profile.value_type;
    for shard in &plan.shards {
        let receipt = match finished_shard(&plan, &store, shard.index).await? {
            Some(receipt) => {
                kept.push(shard.index);
                receipt
            }
            None => {
                let mark = prepare_shared_target(&plan, shard.index).await?;
                let task = ShardTask {
                    index: shard.index,
                    placement: Placement::SharedTarget,
                    receipt: None,
                    inputs: None,
                    fetched: Some(fetched),
                };
                let ran = run_shard(&plan, &task).await;
                let finished = mark.finish().await;
                let (receipt, _) = ran?;
                finished?;
                receipt
            }
        };
        if receipt.written_profile(&plan).value_type == ValueType::Float32 {
            value_type = ValueType::Float32;
        }
    }
    if !kept.is_empty() {
        tracing::info!(event = "convert.resumed", kept_shards = ?kept, shards = plan.shards.len(), "resumed: kept {} of {} shards an earlier run finished", kept.len(), plan.shards.len());
    }
    let marker = commit_in_store(&plan, &[]).await?;
    Ok(ConvertReport::finished(
        PathBuf::from(store.shown()),
        marker,
        value_type,
        plan.shards.len(),
        started,
    ))
}

/// The receipt an earlier run left for shard `index` of `plan`, if it is this plan's and
/// every data file it names is in the store.
async fn finished_shard(plan: &Plan, store: &Store, index: usize) -> Result<Option<Receipt>> {
    let rel = format!("{}/shard-{index:06}.json", receipts_rel(&plan.plan_hash));
    let Some(bytes) = store.read(&rel).await? else {
        return Ok(None);
    };
    let shown = PathBuf::from(store.shown_child(&rel));
    let Ok(receipt) = Receipt::parse(&bytes, &shown) else {
        return Ok(None);
    };
    if receipt.shard != index || check_against_plan(plan, &receipt, &shown).is_err() {
        return Ok(None);
    }
    // An earlier commit may have rewritten its fragments (and cleaned the originals up).
    if let Some(bytes) = store.read(&record_rel(plan, index)).await? {
        if let Some(widened) = record_for(&bytes, &receipt) {
            if first_missing(store, &widened).await?.is_none() {
                return Ok(Some(widened));
            }
        }
    }
    Ok(first_missing(store, &receipt)
        .await?
        .is_none()
        .then_some(receipt))
}

/// `commit` of `plan` into its output URI from the receipts of shards that wrote there:
/// those in `sources` (receipt files a workflow engine collected), or, given none, those
/// under the dataset's prefix.
pub async fn commit_in_store(plan: &Plan, sources: &[PathBuf]) -> Result<CompletionMarker> {
    let span = tracing::info_span!("commit", plan_hash = %plan.plan_hash);
    commit_in_span(plan, sources).instrument(span).await
}

async fn commit_in_span(plan: &Plan, sources: &[PathBuf]) -> Result<CompletionMarker> {
    let started = Instant::now();
    let store = open(&plan.output)?;
    check_apart(&store, plan.inputs.iter().map(|i| i.path.clone()))?;
    if let Target::Done(done) = check_target(&store, Some(&plan.plan_hash), true).await? {
        tracing::info!(
            event = "commit.done",
            dataset = store.shown(),
            "already committed: nothing to do"
        );
        return Ok(*done);
    }
    // Receipts are read and checked before anything is written: a commit refused for want
    // of a shard leaves the prefix as it was.
    let mut receipts = collect(plan, &store, sources).await?;
    let claimed = claim(&store, &plan.plan_hash).await?;
    let rows: u64 = receipts.iter().map(|r| r.receipt.rows_written).sum();
    // From here the prefix is being rebuilt: nothing may say it is complete.
    for name in [MARKER_FILE, CONFIG_FILE] {
        store.delete(name).await?;
    }
    let profile = widen::dataset_profile(plan, &receipts);
    widen::widen_receipts(plan, &profile, &mut receipts, Records::Store(&store)).await?;
    let plan = &with_profile(plan, profile);
    let (cells_schema, genes_schema) = table_schemas(plan)?;
    let written = commit_tables(plan, &receipts, &cells_schema, &genes_schema).await?;
    if plan.indices {
        crate::slaf::indices::create_indices(&plan.output).await?;
    }
    match &plan.uns_document {
        Some(uns) if plan.uns => store.write(UNS_FILE, json_bytes(uns)?).await?,
        _ => store.delete(UNS_FILE).await?,
    }
    for table in [LAYERS_TABLE, CELLSXCELLS_TABLE, GENESXGENES_TABLE] {
        if !written.contains(&table) {
            remove_all(&store.child(table)).await?;
        }
    }
    clean_tables(plan, &store, &written).await?;
    let config = config_for(plan, &receipts, &cells_schema, &genes_schema);
    check_claim(&store, &claimed.claim).await?;
    store.write(CONFIG_FILE, json_bytes(&config)?).await?;
    let marker = marker_for(plan, &receipts, rows, started, written.iter().copied()).await?;
    // Last write of the commit: its presence means complete.
    write_marker(&store, &claimed.claim, &marker).await?;
    if let Err(e) = store.delete(CLAIM_FILE).await {
        tracing::warn!(event = "output.claim_left", output = store.shown(), error = %e, "complete, but the commit's claim could not be removed: {e}");
    }
    // Marks killed shards of this plan left: no shard of a committed plan writes any more,
    // and a mark left would make later commits of other plans leave their garbage.
    let receipts_dir = store.child(&receipts_rel(&plan.plan_hash));
    for mark in receipts_dir.list().await? {
        if mark.rel.ends_with(RUNNING_SUFFIX) {
            receipts_dir.delete_listed(&mark).await?;
        }
    }
    tracing::info!(
        event = "commit.done",
        output = store.shown(),
        n_cells = plan.n_cells,
        expression_rows = rows,
        "committed {}",
        store.shown()
    );
    Ok(marker)
}

/// Every shard's receipt, checked against the plan, with every data file it names present
/// in the store (or the record of an earlier commit's rewrite of them).
async fn collect(plan: &Plan, store: &Store, sources: &[PathBuf]) -> Result<Vec<Located>> {
    let mut found: Vec<(PathBuf, Receipt)> = Vec::new();
    if sources.is_empty() {
        let dir = store.child(&receipts_rel(&plan.plan_hash));
        for listed in dir.list().await? {
            if listed.rel.contains('/') || !listed.rel.ends_with(".json") {
                continue; // running marks, the records of rewrites
            }
            let shown = PathBuf::from(dir.shown_child(&listed.rel));
            let bytes = dir
                .read(&listed.rel)
                .await?
                .ok_or_else(|| Error::Receipts {
                    path: shown.clone(),
                    what: "listed, then gone: another commit is cleaning up; run again".into(),
                })?;
            found.push((shown.clone(), Receipt::parse(&bytes, &shown)?));
        }
    }
    for source in sources {
        let file = match source.is_dir() {
            true => source.join(RECEIPT_FILE),
            false => source.clone(),
        };
        found.push((file.clone(), Receipt::load(&file)?));
    }
    let mut located = Vec::with_capacity(found.len());
    for (file, receipt) in found {
        check_against_plan(plan, &receipt, &file)?;
        if receipt.placement != Placement::SharedTarget {
            return Err(Error::Receipts {
                path: file,
                what: "a staged shard's receipt: give its directory (commit uploads staged \
                       shards)"
                    .into(),
            });
        }
        let widened = match store.read(&record_rel(plan, receipt.shard)).await? {
            Some(bytes) => record_for(&bytes, &receipt),
            None => None,
        };
        let receipt = match widened {
            // An earlier commit rewrote this shard's fragments (cleanup took the originals).
            Some(widened) if first_missing(store, &widened).await?.is_none() => widened,
            _ => {
                if let Some(missing) = first_missing(store, &receipt).await? {
                    return Err(missing_file(&file, &receipt, &store.shown_child(&missing)));
                }
                receipt
            }
        };
        located.push((
            file,
            Located {
                receipt,
                staged_dir: None,
            },
        ));
    }
    by_shard(plan, located)
}

/// The first data file `receipt` names that the store does not hold, relative to the dataset.
async fn first_missing(store: &Store, receipt: &Receipt) -> Result<Option<String>> {
    let rels: Vec<String> = receipt
        .data_files()
        .into_iter()
        .map(|(table, file)| format!("{table}/data/{file}"))
        .collect();
    let mut checks = futures::stream::iter(rels)
        .map(|rel| async move { store.modified(&rel).await.map(|m| (rel, m.is_some())) })
        .buffered(PARALLEL_CHECKS);
    while let Some((rel, present)) = checks.try_next().await? {
        if !present {
            return Ok(Some(rel));
        }
    }
    Ok(None)
}

/// Delete every object under `store` (a table this plan does not have).
async fn remove_all(store: &Store) -> Result<()> {
    let listed = store.list().await?;
    if !listed.is_empty() {
        tracing::info!(
            event = "commit.stale_removed",
            table = store.shown(),
            "removing {}: the plan has none",
            store.shown()
        );
    }
    for object in &listed {
        store.delete_listed(object).await?;
    }
    Ok(())
}

/// Leave each written table with its newest version only, as a local commit does
/// ([`crate::workflow::commit`]); files never committed are left alone while a shard of
/// another plan may still be writing here (its running mark is under the receipts).
async fn clean_tables(plan: &Plan, store: &Store, tables: &[&str]) -> Result<()> {
    let others = store
        .child(SHARED_RECEIPTS_DIR)
        .list()
        .await?
        .iter()
        .any(|o| o.rel.ends_with(RUNNING_SUFFIX) && !o.rel.starts_with(&plan.plan_hash));
    if others {
        tracing::warn!(event = "commit.cleanup_deferred", "shards of another plan are writing into this dataset: unreferenced files are left to a later commit");
    }
    for table in tables {
        clean_table(Path::new(&store.shown_child(table)), table, !others).await?;
    }
    Ok(())
}

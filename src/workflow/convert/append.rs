//! `convert --append`: the one-process append. Plans the inputs onto the dataset, stages
//! the shards in the append's working directory ([`crate::workflow::commit::append`]) and
//! commits, which swaps the appended copy in. A re-run after a kill keeps the shards that
//! finished; one after the append finished has nothing to do.

use std::path::Path;
use std::time::Instant;

use super::{convert_shards, run_unfinished_shards, ConvertReport, ShardSlot};
use crate::error::{Error, Result};
use crate::pipeline::blocking;
use crate::readers::ValueScan;
use crate::workflow::commit::append;
use crate::workflow::commit::state::CommitLock;
use crate::workflow::commit::{read_marker, CompletionMarker};
use crate::workflow::fetch::FetchedInputs;
use crate::workflow::manifest::Manifest;
use crate::workflow::plan::{Fingerprint, Plan};
use crate::workflow::shard::{Placement, RECEIPT_FILE};

/// Append the inputs of `manifest` (mode append) to the dataset at its output.
pub(super) async fn convert_append(
    manifest: &Manifest,
    fetched: &FetchedInputs,
    started: Instant,
) -> Result<ConvertReport> {
    let existing = append::read_existing(&manifest.output).await?;
    let live = existing.base.dataset.clone();
    let work = append::work_dir(&live);
    let inputs = (manifest.inputs.iter())
        .map(|i| Fingerprint::of(&i.path).map(|f| (i.path.clone(), f)))
        .collect::<Result<Vec<_>>>()?;
    if append::already_appended(&existing, &inputs) {
        // A kill after the swap may have left the replaced dataset beside it: removed under
        // the dataset's lock, never while a commit builds there.
        let _lock = CommitLock::acquire(&live).await?;
        let marker = read_marker(&live)?.ok_or_else(|| Error::Internal("marker gone".into()))?;
        append::release_work_dir(&work, &marker.plan_hash)?;
        tracing::info!(event = "append.done", output = %live.display(), "{} already holds these inputs (appended by plan {}): nothing to do", live.display(), marker.plan_hash);
        let value_type = existing.base.record.profile.value_type;
        return Ok(ConvertReport::finished(
            live, marker, value_type, 0, started,
        ));
    }
    let mut build = manifest.clone();
    build.output = live.clone();
    let plan_manifest = build.clone();
    let mut plan = blocking(move || {
        Plan::build_onto(
            &plan_manifest,
            convert_shards(&plan_manifest),
            ValueScan::RowsOnly,
            Some(&existing),
        )
    })
    .await?;
    fetched.name_in(&mut plan);
    append::make_work_dir(&work)?;
    let value_type = plan.profile.value_type;
    let marker = match stage_and_commit(&plan, &work, fetched).await {
        Ok(marker) => marker,
        Err(e) => {
            // This run's shards and copy go (the dataset's tables, config and marker were
            // never touched); the working directory too once nothing else is staged there.
            if let Err(cleanup) = append::abandon(&live, &work, &plan.plan_hash).await {
                tracing::warn!(event = "convert.cleanup_failed", output = %work.display(), error = %cleanup, "could not remove {}: {cleanup}", work.display());
            }
            return Err(e);
        }
    };
    Ok(ConvertReport::finished(
        live,
        marker,
        value_type,
        plan.shards.len(),
        started,
    ))
}

/// Run every shard of the append `plan` staged under `work` that has no finished attempt
/// there, then commit them.
async fn stage_and_commit(
    plan: &Plan,
    work: &Path,
    fetched: &FetchedInputs,
) -> Result<CompletionMarker> {
    run_unfinished_shards(plan, fetched, |index| {
        let dir = append::staged_shard_dir(work, &plan.plan_hash, index);
        ShardSlot {
            placement: Placement::Staged { dir: dir.clone() },
            receipt: dir.join(RECEIPT_FILE),
            files: dir.clone(),
            source: dir,
        }
    })
    .await
}

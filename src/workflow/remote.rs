//! `convert` and `commit` with inputs or outputs in object stores (s3://, gs://, az://).
//!
//! Inputs in stores are fetched ([`crate::workflow::fetch`]): once for a whole `convert`.
//! `convert` into a new or unfinished prefix, shards with the shared target at a URI, and
//! `commit` of those are built in the store by Lance itself ([`in_store`]). `convert` over
//! a complete dataset (`--overwrite`) and `commit` of staged shard directories build the
//! dataset in a local temporary directory exactly as a local one (plan, shards, commit,
//! marker), then publish it to its prefix ([`publish`]): a claim object first, the tables'
//! data files, then their manifests, stale objects of an earlier attempt removed,
//! `config.json`, every table opened by Lance in the store and checked against the build,
//! and the completion marker last, so a reader never sees a marker before the dataset is
//! whole, and a complete dataset being replaced stays whole until the new one is uploaded.
//! The temporary directory is removed when the task ends, on failure too.
//!
//! Kill and retry: a publish killed part-way leaves the claim and no marker; the re-run
//! builds again and publishes over it (objects are rewritten whole; what the new build does
//! not hold is deleted before the marker). A prefix that holds objects but neither our
//! marker nor our claim is refused: nothing a user put there is deleted. One publisher at
//! a time: the last claim wins, and a run whose claim was taken over stops before deleting
//! anything or writing the marker.

mod in_store;

use self::in_store::convert_in_store;
pub use self::in_store::{commit_in_store, prepare_shared_target, SharedTargetMark};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::json_file::json_bytes;
use crate::slaf::config_json::{CONFIG_FILE, UNS_FILE};
use crate::store::lance::open_dataset;
use crate::store::Store;
use crate::workflow::commit::{commit, read_marker, CompletionMarker, MARKER_FILE};
use crate::workflow::convert::{convert_fetched, ConvertReport};
use crate::workflow::fetch::{fetch_inputs, is_store, open, scratch, Hdf5Inputs};
use crate::workflow::manifest::Manifest;
use crate::workflow::plan::Plan;
use crate::workflow::shard::SHARED_RECEIPTS_DIR;

/// The object that marks a prefix as being published by slaf-convert.
pub const CLAIM_FILE: &str = "_slaf_convert_upload.json";

/// Files of a local build that stay local (the commit's lock).
const LOCAL_ONLY: [&str; 1] = ["_slaf_commit.lock"];

/// Uploads at once (each holds at most 30 MiB, `store::transfer`).
const PARALLEL_UPLOADS: usize = 4;

/// How often a long upload logs its progress.
const UPLOAD_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The claim's content: who is publishing which plan.
#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    tool: String,
    plan_hash: String,
    /// This run's own: whoever wrote the claim last owns the prefix.
    #[serde(default)]
    id: String,
}

/// Convert `manifest` (plan, every shard, commit) where its inputs or its output may be
/// URIs; `temp_dir` holds what is fetched and built (default: the system's temporary
/// directory). Inputs are fetched once for the whole conversion.
pub async fn convert_via_stores(
    manifest: &Manifest,
    overwrite: bool,
    temp_dir: Option<&Path>,
) -> Result<ConvertReport> {
    let output = manifest.output.clone();
    // A missing local input is named before any request goes to a store.
    for input in manifest.inputs.iter().filter(|i| !is_store(&i.path)) {
        crate::readers::format::input_metadata(&input.path)?;
    }
    let output_store = is_store(&output).then(|| open(&output)).transpose()?;
    let target = match &output_store {
        // Refuse before fetching or converting anything.
        Some(store) => {
            check_apart(store, manifest.inputs.iter().map(|i| i.path.clone()))?;
            Some(check_target(store, None, overwrite).await?)
        }
        None => None,
    };
    let scratch = scratch(temp_dir)?;
    let inputs = scratch.path().join("inputs");
    // convert reads every byte of its inputs: one download each beats ranged reads.
    let (mut local, fetched) = fetch_inputs(manifest, &inputs, Hdf5Inputs::Fetched).await?;
    let Some(store) = output_store else {
        return convert_fetched(&local, overwrite, &fetched).await;
    };
    // Into a new or unfinished prefix, Lance writes the dataset there itself; over a
    // complete dataset (--overwrite) nothing is touched until the new one is built.
    if let Some(Target::Open) = target {
        return convert_in_store(&local, &fetched).await;
    }
    local.output = scratch.path().join("dataset.slaf");
    let mut report = convert_fetched(&local, false, &fetched).await?;
    report.marker = publish(&local.output, &store, overwrite).await?;
    report.output = PathBuf::from(store.shown());
    Ok(report)
}

/// A claim written to a prefix, and when (the store's clock).
struct Claimed {
    claim: Claim,
    at: chrono::DateTime<chrono::Utc>,
}

/// Claim `store`'s prefix for this run: what an earlier attempt left is older than the
/// claim; what a run started after it writes is newer, and that run owns the claim then.
async fn claim(store: &Store, plan_hash: &str) -> Result<Claimed> {
    let claim = Claim {
        tool: "slaf-convert".into(),
        plan_hash: plan_hash.to_string(),
        id: format!(
            "{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ),
    };
    store.write(CLAIM_FILE, json_bytes(&claim)?).await?;
    let at = store
        .modified(CLAIM_FILE)
        .await?
        .ok_or_else(|| Error::Store {
            uri: store.shown_child(CLAIM_FILE),
            what: "written, then not found: another run is publishing here".into(),
            transient: true,
        })?;
    Ok(Claimed { claim, at })
}

/// `commit --dataset URI`: commit `plan` from the staged shards `sources` into a local
/// temporary directory, then publish it. A dataset there of this plan is left as it is; one
/// of another plan is replaced, as a local commit rebuilds it.
pub async fn commit_to_store(
    plan: &Plan,
    sources: &[PathBuf],
    dataset: &Path,
    temp_dir: Option<&Path>,
) -> Result<CompletionMarker> {
    let store = open(dataset)?;
    if sources.is_empty() {
        return Err(Error::Usage(format!(
            "{}: a dataset in an object store is committed from staged shards: give the \
             shard directories (shard --output DIR)",
            store.shown()
        )));
    }
    check_apart(&store, plan.inputs.iter().map(|i| i.path.clone()))?;
    if let Target::Done(done) = check_target(&store, Some(&plan.plan_hash), true).await? {
        tracing::info!(
            event = "commit.done",
            dataset = store.shown(),
            "already committed: nothing to do"
        );
        return Ok(*done);
    }
    let scratch = scratch(temp_dir)?;
    let local = Plan {
        output: scratch.path().join("dataset.slaf"),
        ..plan.clone()
    };
    commit(&local, sources).await?;
    publish(&local.output, &store, true).await
}

/// What a target prefix holds, as far as a run may use it.
enum Target {
    /// No dataset: empty, or a partial upload of ours (its claim is there).
    Open,
    /// A complete dataset (or an unreadable marker) of another plan, which may be replaced.
    Replaceable,
    /// A complete dataset of this very plan.
    Done(Box<CompletionMarker>),
}

/// What is at the target prefix, checked before any work; an error if it holds a complete
/// dataset that may not be replaced (`replace` false), or objects that are not a dataset of
/// ours.
async fn check_target(store: &Store, plan_hash: Option<&str>, replace: bool) -> Result<Target> {
    if let Some(bytes) = store.read(MARKER_FILE).await? {
        // An unreadable marker proves nothing complete: a dataset of ours to replace.
        let marker = serde_json::from_slice::<CompletionMarker>(&bytes).ok();
        if let Some(marker) = marker.filter(|m| plan_hash == Some(m.plan_hash.as_str())) {
            return Ok(Target::Done(Box::new(marker)));
        }
        if !replace {
            return Err(Error::OutputExists {
                path: PathBuf::from(store.shown()),
            });
        }
        return Ok(Target::Replaceable);
    }
    // Empty (listed no further than one object), or ours: our claim or shards' receipts are
    // there. Asked in this order, because shards starting together on an empty prefix each
    // write a mark under the receipts before any data: whoever sees an object sees a mark.
    if !store.holds_other_than(Some(CLAIM_FILE)).await? {
        return Ok(Target::Open);
    }
    let ours = store.modified(CLAIM_FILE).await?.is_some()
        || store
            .child(SHARED_RECEIPTS_DIR)
            .holds_other_than(None)
            .await?;
    if !ours {
        return Err(Error::OutputNotOurs {
            path: PathBuf::from(store.shown()),
            what: "holds objects and is not a dataset of slaf-convert's (no completion marker, \
                   upload claim or shard receipts): name a new or empty prefix"
                .into(),
        });
    }
    Ok(Target::Open)
}

/// Refuse an output prefix that is, or holds, one of the inputs: publishing deletes what
/// the dataset does not hold.
fn check_apart(output: &Store, inputs: impl Iterator<Item = PathBuf>) -> Result<()> {
    let out = output.shown();
    for input in inputs.filter(|p| is_store(p)) {
        let input = open(&input)?;
        let inside = input
            .shown()
            .strip_prefix(out)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if inside {
            return Err(Error::OutputNotOurs {
                path: PathBuf::from(out),
                what: format!(
                    "holds the input {}: name a prefix apart from the inputs",
                    input.shown()
                ),
            });
        }
    }
    Ok(())
}

/// Fail unless the claim in `store` is still `ours`: another run took the prefix over.
async fn check_claim(store: &Store, ours: &Claim) -> Result<()> {
    let current = store.read(CLAIM_FILE).await?;
    let theirs = current.and_then(|bytes| serde_json::from_slice::<Claim>(&bytes).ok());
    match theirs.is_some_and(|c| c.id == ours.id) {
        true => Ok(()),
        false => Err(Error::Store {
            uri: store.shown().to_string(),
            what: "another slaf-convert started publishing to this prefix; this one stops \
                   (run one conversion of a dataset at a time)"
                .into(),
            transient: true,
        }),
    }
}

/// Write the completion marker into `store` while `ours` is the claim there. A run that took
/// the claim over between the check and the write is rebuilding the dataset: the marker is
/// taken back (that run writes its own when it is done).
async fn write_marker(store: &Store, ours: &Claim, marker: &CompletionMarker) -> Result<()> {
    check_claim(store, ours).await?;
    store.write(MARKER_FILE, json_bytes(marker)?).await?;
    if let Err(lost) = check_claim(store, ours).await {
        store.delete(MARKER_FILE).await?;
        return Err(lost);
    }
    Ok(())
}

/// Upload the complete dataset built in `local` to `store`, the completion marker last, and
/// return the marker. A complete dataset of the same plan there is kept as it is; one of
/// another plan is replaced only if `replace`.
async fn publish(local: &Path, store: &Store, replace: bool) -> Result<CompletionMarker> {
    let marker = read_marker(local)?
        .ok_or_else(|| Error::Internal(format!("{}: built without a marker", local.display())))?;
    if let Target::Done(done) = check_target(store, Some(&marker.plan_hash), replace).await? {
        return Ok(*done);
    }
    let started = std::time::Instant::now();
    let claimed = claim(store, &marker.plan_hash).await?;
    // From here the prefix is incomplete: the marker goes first, so no reader trusts it.
    store.delete(MARKER_FILE).await?;
    let files = local_files(local)?;
    let last = [CONFIG_FILE, UNS_FILE, MARKER_FILE];
    // Data files before the manifests that name them, so a listed version is whole.
    let (manifests, data): (Vec<&String>, Vec<&String>) = files
        .iter()
        .filter(|f| !last.contains(&f.as_str()))
        .partition(|f| f.contains("/_versions/"));
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(local.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let mut bytes: u64 = 0;
    let mut reported = std::time::Instant::now();
    for group in [data, manifests] {
        let mut uploads = futures::stream::iter(group)
            .map(|rel| async move { store.upload(&local.join(rel), rel).await })
            .buffer_unordered(PARALLEL_UPLOADS);
        while let Some(sent) = uploads.try_next().await? {
            bytes += sent;
            // Progress on long uploads, every few seconds.
            if reported.elapsed() >= UPLOAD_PROGRESS_EVERY {
                reported = std::time::Instant::now();
                tracing::info!(
                    event = "output.uploading",
                    output = store.shown(),
                    bytes,
                    total,
                    "uploading {}: {} of {} MB",
                    store.shown(),
                    bytes / 1_000_000,
                    total / 1_000_000
                );
            }
        }
    }
    check_claim(store, &claimed.claim).await?;
    let keep: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    for stale in store.list().await? {
        let ours = [CLAIM_FILE, MARKER_FILE].contains(&stale.rel.as_str());
        // Left by an earlier attempt (newer: another run's, which took the claim over).
        let old = stale.modified <= claimed.at;
        if !keep.contains(stale.rel.as_str()) && !ours && old {
            store.delete_listed(&stale).await?;
        }
    }
    for name in [UNS_FILE, CONFIG_FILE] {
        if keep.contains(name) {
            bytes += store.upload(&local.join(name), name).await?;
        }
    }
    verify_tables(local, store).await?;
    write_marker(store, &claimed.claim, &marker).await?;
    // The dataset is complete: a claim left behind only makes a later run treat the prefix
    // as ours, which it is.
    if let Err(e) = store.delete(CLAIM_FILE).await {
        tracing::warn!(event = "output.claim_left", output = store.shown(), error = %e, "complete, but the upload claim could not be removed: {e}");
    }
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        event = "output.uploaded",
        output = store.shown(),
        objects = files.len(),
        bytes,
        seconds,
        "uploaded {} ({} objects, {bytes} bytes, {seconds:.1} s after the build)",
        store.shown(),
        files.len()
    );
    Ok(marker)
}

/// Before the marker: every table, opened by Lance in the store, is the version with the
/// rows the local build has (so the upload is whole and nothing else changed it).
async fn verify_tables(local: &Path, store: &Store) -> Result<()> {
    let entries = std::fs::read_dir(local).map_err(|e| Error::io(local, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".lance") {
            continue;
        }
        let here = entry.path();
        let there = store.shown_child(&name);
        let local_ds = open_dataset(&here.to_string_lossy())
            .await
            .map_err(|e| Error::lance(&here, e))?;
        let stored = open_dataset(&there)
            .await
            .map_err(|e| Error::lance(&there, e))?;
        let rows = |ds: lance::Dataset| async move {
            ds.count_rows(None).await.map(|n| (ds.version().version, n))
        };
        let want = rows(local_ds).await.map_err(|e| Error::lance(&here, e))?;
        let got = rows(stored).await.map_err(|e| Error::lance(&there, e))?;
        if got != want {
            return Err(Error::Store {
                uri: there,
                what: format!(
                    "after the upload it reads as version {} with {} rows, not version {} with \
                     {} rows as built: run the same command again",
                    got.0, got.1, want.0, want.1
                ),
                transient: true,
            });
        }
    }
    Ok(())
}

/// Every file under `root`, as '/'-separated paths relative to it, but the local-only ones.
fn local_files(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if kind.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let rel = rel.join("/");
            if !LOCAL_ONLY.contains(&rel.as_str()) {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

//! The working directory of an append, beside the dataset (`NAME.slaf-convert-append`,
//! ours by its tag): the fresh copy of the dataset a commit appends in (`dataset/`: small
//! files copied, Lance's immutable data files hard-linked) and `convert --append`'s staged
//! shards (`shards/<plan hash>/`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::slaf::config_json::CONFIG_FILE;
use crate::workflow::commit::state::{exchange_at_once, CommitLock, COMMITTED_PLAN_FILE};
use crate::workflow::commit::MARKER_FILE;
use crate::workflow::shard::SHARED_RECEIPTS_DIR;

/// Suffix of the working directory an append builds in, beside the dataset.
pub const WORK_SUFFIX: &str = ".slaf-convert-append";
/// File that marks a working directory as ours (removed with it).
pub(super) const WORK_TAG: &str = ".slaf-convert-append";
/// The copy of the dataset inside the working directory.
const COPY_DIR: &str = "dataset";
/// `convert --append`'s staged shards inside the working directory.
const SHARDS_DIR: &str = "shards";

/// The working directory of an append to `dataset`, beside it.
pub fn work_dir(dataset: &Path) -> PathBuf {
    let mut name = dataset.as_os_str().to_owned();
    name.push(WORK_SUFFIX);
    PathBuf::from(name)
}

/// The working directory `work` (created and tagged if new: ours to remove), with a fresh
/// copy of the dataset `live` in it to append in: directories and small files copied,
/// immutable data files (Lance's `data/`, `_indices/`, `_deletions/`) hard-linked; without
/// its marker, commit record, config and receipts. Returns the copy.
pub(crate) fn make_copy(live: &Path, work: &Path) -> Result<PathBuf> {
    make_work_dir(work)?;
    check_swappable(work)?;
    let copy = work.join(COPY_DIR);
    if copy.exists() {
        std::fs::remove_dir_all(&copy).map_err(|e| Error::io(&copy, e))?;
    }
    std::fs::create_dir(&copy).map_err(|e| Error::io(&copy, e))?;
    // The lock file is copied (empty): the dataset keeps one after the swap, so a later
    // commit that fails leaves no new file behind.
    let skip = [
        MARKER_FILE,
        COMMITTED_PLAN_FILE,
        SHARED_RECEIPTS_DIR,
        CONFIG_FILE,
    ];
    for entry in std::fs::read_dir(live).map_err(|e| Error::io(live, e))? {
        let entry = entry.map_err(|e| Error::io(live, e))?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        copy_tree(&entry.path(), &copy.join(&name), false)?;
    }
    Ok(copy)
}

/// Create the working directory `work` and its tag, or find it ours (tagged, or empty);
/// anything else there is refused.
pub(crate) fn make_work_dir(work: &Path) -> Result<()> {
    // Empty: made by a run killed before it wrote the tag (nothing there to lose).
    let empty = std::fs::read_dir(work).is_ok_and(|mut d| d.next().is_none());
    if work.exists() && !empty && !work.join(WORK_TAG).is_file() {
        return Err(Error::OutputNotOurs {
            path: work.to_path_buf(),
            what: "an append builds here, and it holds something else: move it away".into(),
        });
    }
    std::fs::create_dir_all(work).map_err(|e| Error::io(work, e))?;
    let tag = work.join(WORK_TAG);
    if !tag.exists() {
        std::fs::write(
            &tag,
            b"slaf-convert append in progress: removed when it ends\n",
        )
        .map_err(|e| Error::io(&tag, e))?;
    }
    Ok(())
}

/// Where `convert --append` stages shard `index` of plan `plan_hash`.
pub fn staged_shard_dir(work: &Path, plan_hash: &str, index: usize) -> PathBuf {
    work.join(SHARDS_DIR)
        .join(plan_hash)
        .join(format!("shard-{index:06}"))
}

/// Copy `from` to `to`: directories recursively, files under an immutable Lance directory
/// (`immutable`) linked, others copied.
fn copy_tree(from: &Path, to: &Path, immutable: bool) -> Result<()> {
    let meta = std::fs::metadata(from).map_err(|e| Error::io(from, e))?;
    if meta.is_dir() {
        std::fs::create_dir(to).map_err(|e| Error::io(to, e))?;
        for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
            let entry = entry.map_err(|e| Error::io(from, e))?;
            let name = entry.file_name();
            let linked = immutable
                || ["data", "_indices", "_deletions"]
                    .iter()
                    .any(|d| name == *d);
            copy_tree(&entry.path(), &to.join(&name), linked)?;
        }
        return Ok(());
    }
    if immutable && std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(|e| Error::io(to, e))?;
    Ok(())
}

/// After a failed `convert --append` of plan `plan_hash`: what it left in the working
/// directory `work` of the dataset `live` goes ([`release_work_dir`], under the lock).
pub async fn abandon(live: &Path, work: &Path, plan_hash: &str) -> Result<()> {
    let _lock = CommitLock::acquire(live).await?;
    release_work_dir(work, plan_hash)
}

/// What an append of plan `plan_hash` leaves in the working directory `work` once it is
/// done or abandoned: the copy (after the swap, the replaced dataset) and the plan's staged
/// shards; the directory itself once no other plan's shards are staged there. Called under
/// the dataset's lock.
pub(crate) fn release_work_dir(work: &Path, plan_hash: &str) -> Result<()> {
    if !work.join(WORK_TAG).is_file() {
        return remove_work_dir(work); // at most an empty directory of a killed start
    }
    let shards = work.join(SHARDS_DIR);
    for dir in [work.join(COPY_DIR), shards.join(plan_hash)] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
    }
    if std::fs::read_dir(&shards).is_ok_and(|mut d| d.next().is_none()) {
        std::fs::remove_dir(&shards).map_err(|e| Error::io(&shards, e))?;
    }
    if shards.exists() {
        return Ok(()); // another plan's shards, staged by a convert --append still running
    }
    remove_work_dir(work)
}

/// Whether this filesystem swaps two directories in one step (`RENAME_EXCHANGE`), tried on
/// two empty ones inside `work` before an append copies anything.
fn check_swappable(work: &Path) -> Result<()> {
    let (a, b) = (work.join(".swap-probe-a"), work.join(".swap-probe-b"));
    for d in [&a, &b] {
        if !d.exists() {
            std::fs::create_dir(d).map_err(|e| Error::io(d, e))?;
        }
    }
    let swapped = exchange_at_once(&a, &b);
    for d in [&a, &b] {
        std::fs::remove_dir(d).map_err(|e| Error::io(d, e))?;
    }
    swapped.map_err(|e| Error::OutputNotOurs {
        path: work.to_path_buf(),
        what: format!("this filesystem cannot swap two directories in one step ({e}): an append needs renameat2 RENAME_EXCHANGE (local disks; not NFS or FUSE mounts)"),
    })
}

/// Remove the working directory `work` if it is ours (tagged, or empty).
fn remove_work_dir(work: &Path) -> Result<()> {
    let tag = work.join(WORK_TAG);
    if tag.is_file() {
        // The tag goes last: a kill part-way leaves a directory still known as ours.
        for entry in std::fs::read_dir(work).map_err(|e| Error::io(work, e))? {
            let path = entry.map_err(|e| Error::io(work, e))?.path();
            if path == tag {
                continue;
            }
            let removed = match path.is_dir() {
                true => std::fs::remove_dir_all(&path),
                false => std::fs::remove_file(&path),
            };
            removed.map_err(|e| Error::io(&path, e))?;
        }
        std::fs::remove_file(&tag).map_err(|e| Error::io(&tag, e))?;
    }
    if std::fs::read_dir(work).is_ok_and(|mut d| d.next().is_none()) {
        std::fs::remove_dir(work).map_err(|e| Error::io(work, e))?;
    }
    Ok(())
}

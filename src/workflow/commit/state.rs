//! What makes a commit safe to repeat, kill and run twice at once: the dataset's lock, the
//! record of the plan its tables were built from, read-only adoption of staged data files,
//! the cleanup that leaves each table with only its newest version's files, and the swap
//! that puts a dataset built beside another in its place ([`exchange_at_once`], or
//! [`exchange`], which falls back to two renames where the filesystem cannot).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::json_file::write_json;
use crate::pipeline::blocking;
use crate::slaf::config_json::{CONFIG_FILE, UNS_FILE};
use crate::slaf::schema::{
    CELLSXCELLS_TABLE, CELLS_TABLE, EXPRESSION_TABLE, GENESXGENES_TABLE, GENES_TABLE, LAYERS_TABLE,
};
use crate::workflow::shard::{Receipt, RUNNING_SUFFIX, SHARED_RECEIPTS_DIR};

use super::MARKER_FILE;

/// Lock file inside the dataset: one commit at a time.
const LOCK_FILE: &str = "_slaf_commit.lock";
/// Which plan the tables beside it were committed from; written before `config.json`.
pub const COMMITTED_PLAN_FILE: &str = "_slaf_committed.json";

/// Every Lance table a dataset can hold.
pub const ALL_TABLES: [&str; 6] = [
    EXPRESSION_TABLE,
    CELLS_TABLE,
    GENES_TABLE,
    LAYERS_TABLE,
    CELLSXCELLS_TABLE,
    GENESXGENES_TABLE,
];

/// Holds the dataset's commit lock until dropped (the kernel releases it if we are killed).
/// The lock is the file at the dataset's path when taken; an append's swap brings a new one,
/// which the appending commit takes before the swap.
pub struct CommitLock {
    _file: File,
}

impl CommitLock {
    /// Wait for, then take, the lock of the dataset `output` (created if missing). A second
    /// commit of the same plan waits here and then finds the first one's marker.
    pub async fn acquire(output: &Path) -> Result<CommitLock> {
        std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
        let path = output.join(LOCK_FILE);
        blocking(move || loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    tracing::info!(event = "commit.waiting", lock = %path.display(), "another commit of this dataset is running: waiting for it");
                    file.lock().map_err(|e| Error::io(&path, e))?;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    // Some shared filesystems (Lustre without flock, FUSE mounts) have none.
                    tracing::warn!(event = "commit.unlocked", lock = %path.display(), error = %e, "file locks do not work on {} ({e}): run one commit of a dataset at a time", path.display());
                    return Ok(CommitLock { _file: file });
                }
            }
            // An append swaps the whole dataset, lock file included, while others wait on the
            // old one: the lock held must be the file at the path now, else take that one.
            if same_file(&file, &path) {
                return Ok(CommitLock { _file: file });
            }
        })
        .await
    }
}

/// Whether the open `file` is the file at `path` (device and inode).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Refuse to build a dataset in a non-empty directory that shows no sign of being one of
/// ours (completion marker, commit record, lock, shard receipts): a commit rewrites and
/// cleans what it finds there.
pub fn check_ours(output: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(output) else {
        return Ok(()); // missing: created by the commit
    };
    // One listing answers both questions: a concurrent commit that has just created the
    // directory creates its lock file next, so "empty" and "holds our lock" must be read at
    // the same moment, not one after the other.
    let names: Vec<std::ffi::OsString> = entries.flatten().map(|e| e.file_name()).collect();
    let ours = [
        MARKER_FILE,
        COMMITTED_PLAN_FILE,
        LOCK_FILE,
        SHARED_RECEIPTS_DIR,
    ]
    .iter()
    .any(|name| names.iter().any(|n| n == *name));
    if ours || names.is_empty() {
        return Ok(());
    }
    Err(Error::OutputNotOurs {
        path: output.to_path_buf(),
        what: "exists and is not a dataset of slaf-convert's (no completion marker, commit record or shard receipts): give a new or empty directory".into(),
    })
}

/// The plan a dataset's tables were committed from.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommittedPlan {
    plan_hash: String,
}

/// The plan hash the tables in `output` were committed from, if a commit got that far.
pub fn committed_plan(output: &Path) -> Option<String> {
    let text = std::fs::read_to_string(output.join(COMMITTED_PLAN_FILE)).ok()?;
    serde_json::from_str::<CommittedPlan>(&text)
        .ok()
        .map(|c| c.plan_hash)
}

/// Record that the tables in `output` now hold plan `plan_hash`.
pub fn record_committed_plan(output: &Path, plan_hash: &str) -> Result<()> {
    write_json(
        output,
        COMMITTED_PLAN_FILE,
        &CommittedPlan {
            plan_hash: plan_hash.to_string(),
        },
    )
}

/// Before (re)building the tables: remove what says the dataset is complete or describes
/// other tables (marker, plan record, config.json, in that order), so a dataset being built
/// never looks finished.
pub fn start_rebuild(output: &Path) -> Result<()> {
    for name in [MARKER_FILE, COMMITTED_PLAN_FILE, CONFIG_FILE] {
        remove_file_if_exists(&output.join(name))?;
    }
    Ok(())
}

/// Remove the optional parts this commit did not write (left by a commit of another plan).
pub fn remove_stale_parts(output: &Path, written: &[&str], uns_written: bool) -> Result<()> {
    for table in [LAYERS_TABLE, CELLSXCELLS_TABLE, GENESXGENES_TABLE] {
        let dir = output.join(table);
        if !written.contains(&table) && dir.exists() {
            tracing::info!(
                event = "commit.stale_removed",
                table,
                "removing {table}: the plan has none"
            );
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
    }
    if !uns_written {
        remove_file_if_exists(&output.join(UNS_FILE))?;
    }
    Ok(())
}

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Link (or copy) a staged shard's data files into the output's tables. The staged files are
/// never moved or changed, so the same staged directories can be committed again.
pub fn adopt(dir: &Path, output: &Path, receipt: &Receipt) -> Result<()> {
    for (table, fragments) in receipt.tables() {
        if fragments.is_empty() {
            continue;
        }
        let target = output.join(table).join("data");
        std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        for file in fragments.iter().flat_map(|f| &f.files) {
            let src = dir.join(table).join("data").join(&file.path);
            let dst = target.join(&file.path);
            if dst.exists() {
                // Only ever created whole (a link, or a rename after the copy).
                continue;
            }
            if let Err(link) = std::fs::hard_link(&src, &dst) {
                if !src.is_file() {
                    return Err(Error::Receipts {
                        path: src,
                        what: format!("staged data file missing: {link}"),
                    });
                }
                // Another filesystem (each staged input its own bind mount): copy.
                copy_whole(&src, &dst)?;
            }
        }
    }
    Ok(())
}

/// Copy `src` to `dst` so that `dst` either does not exist or is complete: a temporary name
/// beside it, fsync, rename.
fn copy_whole(src: &Path, dst: &Path) -> Result<()> {
    let dir = dst.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".adopting.")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let mut from = File::open(src).map_err(|e| Error::Receipts {
        path: src.to_path_buf(),
        what: format!("cannot adopt staged data file: {e}"),
    })?;
    std::io::copy(&mut from, tmp.as_file_mut())
        .and_then(|_| tmp.as_file_mut().flush())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(dst).map_err(|e| Error::io(dst, e.error))?;
    Ok(())
}

/// Leave every table of `output` with its newest version only: older versions and every data
/// file no kept version references (killed shard attempts, an earlier plan's tables, copies
/// a killed commit left half-made) are deleted by Lance's own cleanup.
pub async fn clean_tables(output: &Path, plan_hash: &str) -> Result<()> {
    // Files never committed may belong to a shard of another plan still writing here: then
    // only what old versions referenced goes (Lance deletes the rest once a week old).
    let others = other_plans_running(output, plan_hash);
    if others {
        tracing::warn!(event = "commit.cleanup_deferred", "shards of another plan are writing into this dataset: unreferenced files are left to a later commit");
    }
    for table in ALL_TABLES {
        let dir = output.join(table);
        if !dir.join("_versions").exists() {
            continue;
        }
        clean_table(&dir, table, !others).await?;
        if !others {
            remove_leftovers(&dir.join("data"))?;
        }
    }
    Ok(())
}

/// Leave the table `table` at `dir` (a local directory or a store URI) with its newest
/// version only: Lance's cleanup deletes older versions, and (`unreferenced`) every data file
/// no kept version references, however new.
pub(crate) async fn clean_table(dir: &Path, table: &str, unreferenced: bool) -> Result<()> {
    let ds = crate::store::lance::open_table(dir).await?;
    let removed = ds
        .cleanup_old_versions(chrono::TimeDelta::zero(), Some(unreferenced), Some(false))
        .await
        .map_err(|e| Error::lance(dir, e))?;
    if removed.old_versions > 0 || removed.bytes_removed > 0 {
        tracing::info!(
            event = "commit.cleaned",
            table,
            old_versions = removed.old_versions,
            bytes_removed = removed.bytes_removed,
            "removed {} old versions and {} bytes of unreferenced files from {table}",
            removed.old_versions,
            removed.bytes_removed
        );
    }
    Ok(())
}

/// Whether a shared-target shard of a plan other than `plan_hash` is running (or was killed)
/// in `output`: its running mark is there.
fn other_plans_running(output: &Path, plan_hash: &str) -> bool {
    let Ok(plans) = std::fs::read_dir(output.join(SHARED_RECEIPTS_DIR)) else {
        return false;
    };
    plans
        .flatten()
        .filter(|p| p.file_name().to_str() != Some(plan_hash))
        .filter_map(|p| std::fs::read_dir(p.path()).ok())
        .flatten()
        .flatten()
        .any(|f| f.file_name().to_string_lossy().ends_with(RUNNING_SUFFIX))
}

/// Half-written files of killed writers, which Lance's cleanup never sees: copies a killed
/// commit left (`.adopting.*`) and object_store's staging files (`<name>#<digits>`), which
/// its listing skips.
fn remove_leftovers(data: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(data) else {
        return Ok(());
    };
    let leftovers: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".adopting.") || is_staging_name(n))
        })
        .collect();
    for p in leftovers {
        remove_file_if_exists(&p)?;
    }
    Ok(())
}

/// object_store's local staging name for an upload in progress: `<name>#<digits>`.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

/// Swap `new` and `old` in one step where the filesystem can (Linux `RENAME_EXCHANGE`), else
/// in two renames; afterwards `old` holds the new dataset and `new` the old one.
pub fn exchange(new: &Path, old: &Path) -> Result<()> {
    match exchange_at_once(new, old) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::io(old, e)),
        Err(_) => {}
    }
    let mut aside = old.as_os_str().to_owned();
    aside.push(format!(".DELETING-{}", std::process::id()));
    let aside = PathBuf::from(aside);
    std::fs::rename(old, &aside).map_err(|e| Error::io(old, e))?;
    if let Err(e) = std::fs::rename(new, old) {
        // Put the old output back: it stays as it was.
        let _ = std::fs::rename(&aside, old);
        return Err(Error::io(new, e));
    }
    std::fs::rename(&aside, new).map_err(|e| Error::io(&aside, e))
}

/// Swap `new` and `old` in one step (Linux `renameat2(RENAME_EXCHANGE)`), or fail as the
/// system does (unsupported by the filesystem: `EINVAL`).
pub fn exchange_at_once(new: &Path, old: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        };
        let (a, b) = (c(new)?, c(old)?);
        // SAFETY: two valid NUL-terminated paths; renameat2 reads them and nothing else.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        match rc {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (new, old);
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_staging_names() {
        assert!(is_staging_name("0101abc.lance#1"));
        assert!(is_staging_name("x.lance#23"));
        assert!(!is_staging_name("x.lance"));
        assert!(!is_staging_name("x.lance#"));
        assert!(!is_staging_name("x#a1"));
    }
}

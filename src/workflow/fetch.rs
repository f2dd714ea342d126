//! Inputs in object stores (s3://, gs://, az://), fetched for the task that reads them.
//!
//! An input URI (`convert`'s INPUT, a manifest's input) is fetched into a local temporary
//! directory (a single object, or the objects directly under a prefix for a 10x directory)
//! and read from there: HDF5 files are read at random offsets, which the direct chunk
//! reader does on local files. A 10x directory's matrix is not fetched but streamed from
//! the store as its reader reads it ([`crate::readers::streamed`]); a stand-in stays in its
//! place. `plan` scans fetched copies and names the inputs by their
//! URIs; each shard task fetches its own copy and checks its fingerprint against the plan.
//! Copies go to `<temp>/<scheme>/<bucket>/<key>`, so inputs of the same name in different
//! places stay apart; the temporary directory is removed when its guard is dropped (on
//! failure too).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::location::store_uri;
use crate::store::Store;
use crate::workflow::manifest::Manifest;
use crate::workflow::plan::{source_names, Plan};

/// `path` is a URI, not a local path (the checks where paths are given let only s3://, gs://
/// and az:// through, and [`Store::open`] refuses any other).
pub fn is_store(path: &Path) -> bool {
    store_uri(path.as_os_str()).is_some()
}

/// A local directory for one task's fetched inputs and built dataset (in `temp_dir`, else
/// `$TMPDIR`), removed when dropped.
pub fn scratch(temp_dir: Option<&Path>) -> Result<tempfile::TempDir> {
    let parent = temp_dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    tempfile::Builder::new()
        .prefix("slaf-convert-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))
}

/// The store and prefix `path` names.
pub(crate) fn open(path: &Path) -> Result<Store> {
    Store::open(&path.to_string_lossy())
}

/// Inputs fetched from object stores for one task: each local copy with the URI it came from.
#[derive(Debug, Clone, Default)]
pub struct FetchedInputs {
    /// (local copy, URI), in manifest order.
    pub copies: Vec<(PathBuf, PathBuf)>,
}

impl FetchedInputs {
    /// The local copy of the input `uri`, if it was fetched.
    pub fn copy_of(&self, uri: &Path) -> Option<&Path> {
        self.copies
            .iter()
            .find(|(_, u)| u == uri)
            .map(|(copy, _)| copy.as_path())
    }

    /// A plan built from these copies, made to name those inputs by their URIs (paths and
    /// source names; the copies carry their objects' modification times): the plan, its hash
    /// (recomputed), and the config and marker made from it do not depend on where or when
    /// they were fetched, and a shard task without the copies fetches its own.
    pub fn name_in(&self, plan: &mut Plan) {
        if self.copies.is_empty() {
            return;
        }
        for input in &mut plan.inputs {
            if let Some((_, uri)) = self.copies.iter().find(|(copy, _)| *copy == input.path) {
                input.path = uri.clone();
                input.relative = uri.clone();
            }
        }
        // Names that had to tell inputs of one file name apart came from the copies' paths.
        let paths: Vec<&Path> = plan.inputs.iter().map(|i| i.path.as_path()).collect();
        let names = source_names(&paths);
        for (input, name) in plan.inputs.iter_mut().zip(names) {
            input.source_name = name;
        }
        plan.plan_hash = plan.content_hash();
    }
}

/// `manifest` with each input URI replaced by a local copy fetched into
/// `dir/<scheme>/<bucket>/<key>`, and the copies.
pub async fn fetch_inputs(manifest: &Manifest, dir: &Path) -> Result<(Manifest, FetchedInputs)> {
    let mut local = manifest.clone();
    let mut fetched = FetchedInputs::default();
    for input in &mut local.inputs {
        if !is_store(&input.path) {
            continue;
        }
        let copy = fetch_to(&input.path, dir).await?;
        let uri = std::mem::replace(&mut input.path, copy.clone());
        fetched.copies.push((copy, uri));
    }
    Ok((local, fetched))
}

/// Fetch the input `uri` into `dir/<scheme>/<bucket>/<key>`; the local copy's path.
async fn fetch_to(uri: &Path, dir: &Path) -> Result<PathBuf> {
    let store = open(uri)?;
    // scheme://bucket/a/b/name: the copy goes to dir/scheme/bucket/a/b/name, so inputs of
    // the same name in different places stay apart and keep telling names.
    let local = dir.join(store.local_path());
    let parent = local.parent().unwrap_or(dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    Ok(store.download(&parent).await?.path)
}

/// A task's own copy of the input `uri`, in a temporary directory (under `$TMPDIR`) that is
/// removed when the returned guard is dropped.
pub async fn fetch_for_task(uri: &Path) -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = scratch(None)?;
    let path = fetch_to(uri, dir.path()).await?;
    Ok((dir, path))
}

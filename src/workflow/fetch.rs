//! Inputs in object stores (s3://, gs://, az://), fetched for the task that reads them.
//!
//! An input URI (`convert`'s INPUT, a manifest's input) is fetched into a local temporary
//! directory (a single object, the objects directly under a prefix for a 10x directory, or
//! the tree below a prefix for a TileDB-SOMA experiment)
//! and read from there, except where reading it in the store costs less: an HDF5 file read
//! by a task that needs part of it ([`Hdf5Inputs::InPlace`]: a shard, a plan) is read at the
//! offsets its reader asks for ([`crate::readers::ranged`]), and a 10x directory's matrix is
//! streamed from the store as its reader reads it ([`crate::readers::streamed`]); a stand-in
//! stays in the place of each. `plan` scans these and names the inputs by their URIs; each
//! shard task reaches its own the same way and checks its fingerprint against the plan.
//! Copies go to `<temp>/<scheme>/<bucket>/<key>`, so inputs of the same name in different
//! places stay apart; the temporary directory is removed when its guard is dropped (on
//! failure too).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::location::store_uri;
use crate::store::Store;
use crate::workflow::manifest::Manifest;
use crate::workflow::plan::{source_names, Plan};

/// How an HDF5 input in a store (`.h5ad`, Cell Ranger `.h5`) reaches its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hdf5Inputs {
    /// Fetched whole, one download: for a task that reads every byte (`convert`, a plan's
    /// full value pass), where one stream beats hundreds of ranged requests.
    Fetched,
    /// Left in the store and read at the offsets the reader asks for
    /// ([`crate::readers::ranged`]): for a task that reads part of the file (a shard's cell
    /// range, a plan's indptr and sample).
    InPlace,
}

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
    /// they were fetched, and a shard task without the copies reaches its own.
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
pub async fn fetch_inputs(
    manifest: &Manifest,
    dir: &Path,
    hdf5: Hdf5Inputs,
) -> Result<(Manifest, FetchedInputs)> {
    let mut local = manifest.clone();
    let mut fetched = FetchedInputs::default();
    for input in &mut local.inputs {
        if !is_store(&input.path) {
            continue;
        }
        let copy = fetch_to(&input.path, dir, hdf5).await?;
        let uri = std::mem::replace(&mut input.path, copy.clone());
        fetched.copies.push((copy, uri));
    }
    Ok((local, fetched))
}

/// Fetch the input `uri` into `dir/<scheme>/<bucket>/<key>`; the local copy's path.
async fn fetch_to(uri: &Path, dir: &Path, hdf5: Hdf5Inputs) -> Result<PathBuf> {
    let store = open(uri)?;
    // scheme://bucket/a/b/name: the copy goes to dir/scheme/bucket/a/b/name, so inputs of
    // the same name in different places stay apart and keep telling names.
    let local = dir.join(store.local_path());
    let parent = local.parent().unwrap_or(dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let in_place = hdf5 == Hdf5Inputs::InPlace;
    Ok(store.download(&parent, in_place).await?.path)
}

/// A task's own copy of the input `uri`, in a temporary directory (under `$TMPDIR`) that is
/// removed when the returned guard is dropped.
pub async fn fetch_for_task(uri: &Path, hdf5: Hdf5Inputs) -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = scratch(None)?;
    let path = fetch_to(uri, dir.path(), hdf5).await?;
    Ok((dir, path))
}

//! A conversion's data files uploaded while it runs, so that most of the upload to an
//! object store overlaps the conversion instead of following it.
//!
//! Lance writes each data file under a temporary name and renames it when complete, and
//! never changes it afterwards: every `<table>.lance/data/*.lance` file under its final name
//! is safe to upload at once. The commit may still delete some (fragments rewritten when
//! widening, files of killed attempts); one gone before its upload is skipped, and what was
//! uploaded but is not in the final dataset is deleted by [`super::publish`]. One upload at a
//! time (at most 30 MiB of memory beside the conversion's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::Store;

/// Uploaded objects (paths relative to the dataset) and their sizes.
pub(super) type Uploaded = BTreeMap<String, u64>;

/// How often the local dataset is looked at for new data files.
const POLL: Duration = Duration::from_millis(250);

/// The running uploader.
pub(super) struct EarlyUpload {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Uploaded>>,
}

impl EarlyUpload {
    /// Start uploading the finished data files of the dataset being built in `local`.
    pub(super) fn start(store: Store, local: PathBuf) -> EarlyUpload {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut uploaded = Uploaded::new();
            loop {
                for rel in finished_data_files(&local) {
                    if flag.load(Ordering::Acquire) {
                        break; // asked to stop: the rest goes with the publish
                    }
                    if uploaded.contains_key(&rel) {
                        continue;
                    }
                    match store.upload(&local.join(&rel), &rel).await {
                        Ok(bytes) => {
                            uploaded.insert(rel, bytes);
                        }
                        // Deleted by the commit meanwhile: not part of the dataset.
                        Err(Error::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                if flag.load(Ordering::Acquire) {
                    return Ok(uploaded);
                }
                tokio::time::sleep(POLL).await;
            }
        });
        EarlyUpload { stop, task }
    }

    /// Stop after the upload under way; what was uploaded.
    pub(super) async fn finish(self) -> Result<Uploaded> {
        self.stop.store(true, Ordering::Release);
        self.task
            .await
            .map_err(|e| Error::Internal(format!("early upload: {e}")))?
    }
}

/// `<table>.lance/data/<name>.lance` files under their final names, relative to `local`.
fn finished_data_files(local: &Path) -> Vec<String> {
    let Ok(tables) = std::fs::read_dir(local) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for table in tables.flatten() {
        let table = table.file_name().to_string_lossy().into_owned();
        if !table.ends_with(".lance") {
            continue;
        }
        let Ok(data) = std::fs::read_dir(local.join(&table).join("data")) else {
            continue;
        };
        for file in data.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            // Temporary names (Lance's `.tmp*`, ours `.adopting.*`, `name#N`) are unfinished.
            if name.ends_with(".lance") && !name.starts_with('.') && !name.contains('#') {
                files.push(format!("{table}/data/{name}"));
            }
        }
    }
    files.sort();
    files
}

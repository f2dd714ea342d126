//! A staged shard's directory: new, empty, or an earlier attempt of a shard (tagged with
//! [`ATTEMPT_TAG`]), which a retry clears; anything else is refused.

use std::path::Path;

use super::ATTEMPT_TAG;
use crate::error::{Error, Result};

/// Make `dir` an empty directory tagged as our shard attempt. A directory that holds an
/// earlier attempt (tagged) is replaced; an empty one is used; anything else is refused, so
/// `-o .` or `-o ~/data` never deletes what the user put there.
pub(super) fn prepare_staged_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let tagged = dir.join(ATTEMPT_TAG).is_file();
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .next()
                .is_none();
        if tagged {
            // A retry replaces the earlier attempt entirely; the tag goes last, so a retry
            // killed while clearing it can still be retried.
            clear_attempt(dir)?;
        } else if !empty {
            return Err(Error::OutputNotOurs {
                path: dir.to_path_buf(),
                what: "exists and is not an earlier shard attempt: give a new or empty directory"
                    .into(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tag = dir.join(ATTEMPT_TAG);
    if tag.exists() {
        return Ok(());
    }
    std::fs::write(
        &tag,
        b"slaf-convert shard attempt: this directory may be replaced\n",
    )
    .map_err(|e| Error::io(&tag, e))
}

/// Remove everything in a tagged attempt directory but the tag.
fn clear_attempt(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.file_name().is_some_and(|n| n == ATTEMPT_TAG) {
            continue;
        }
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

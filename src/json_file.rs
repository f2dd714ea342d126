//! Atomic JSON files: a temporary file beside the target, synced, renamed over it, so a
//! reader (or a killed run) sees the old document or the new one, never half of one; and the
//! bytes of such a file, for objects written whole to a store.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

/// Write `doc` as pretty JSON to the file `path` atomically, creating its directory.
pub fn write_json_file(path: &Path, doc: &impl Serialize) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Usage(format!("{}: not a file name", path.display())))?;
    write_json(dir, name, doc)
}

/// Write `doc` as pretty JSON to `dir/name` atomically (temporary file, fsync, rename).
pub fn write_json(dir: &Path, name: &str, doc: &impl Serialize) -> Result<()> {
    let target = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let bytes = json_bytes(doc)?;
    tmp.write_all(&bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(&target)
        .map_err(|e| Error::io(&target, e.error))?;
    Ok(())
}

/// `doc` as the bytes of a JSON file: pretty, newline-terminated (what [`write_json`] writes,
/// and what goes to an object store as a whole object).
pub fn json_bytes(doc: &impl Serialize) -> Result<Vec<u8>> {
    let mut bytes =
        serde_json::to_vec_pretty(doc).map_err(|e| Error::Internal(format!("serialising: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

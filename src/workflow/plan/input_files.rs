//! Where a task finds a planned input, and how it knows the file is the one planned.
//!
//! Each planned input keeps its path relative to the manifest's directory, so a task that
//! sees only what its engine staged (`--inputs DIR`: `DIR/<relative path>`) finds it, and a
//! fingerprint (size, plus a blake3 hash of the first and last 64 KiB; of every file, at any
//! depth, for a directory: a 10x directory, a SOMA experiment) so that a different file at
//! that path is refused instead of converted.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::PlannedInput;

/// Bytes hashed at each end of a file.
const EDGE: u64 = 64 * 1024;

/// What identifies an input's content, cheaply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Fingerprint {
    /// Size in bytes (a directory: the sum of its files).
    pub bytes: u64,
    /// Modification time, seconds since the epoch (a directory: its newest file); recorded,
    /// not compared (staging may change it).
    pub modified: u64,
    /// blake3 (hex) of each file's path below the directory, size, first and last 64 KiB.
    pub content: String,
}

impl Fingerprint {
    /// The fingerprint of the file or directory at `path`.
    pub fn of(path: &Path) -> Result<Fingerprint> {
        let meta = crate::readers::format::input_metadata(path)?;
        let mut hasher = blake3::Hasher::new();
        let (mut bytes, mut modified) = (0, 0);
        let files: Vec<(PathBuf, std::fs::Metadata)> = if meta.is_dir() {
            let mut entries = Vec::new();
            files_below(path, &mut entries)?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries
        } else if meta.is_file() {
            vec![(path.to_path_buf(), meta)]
        } else {
            return Err(Error::invalid(path, "not a regular file or a directory"));
        };
        for (file, meta) in files {
            // A file inside a directory is known by its path below it: for the files of a
            // flat directory (10x), their names, so those fingerprints are what they were
            // before nested files counted.
            if let Some(name) = file.strip_prefix(path).ok().filter(|_| file != path) {
                hasher.update(name.as_os_str().as_encoded_bytes());
            }
            hash_edges(&mut hasher, &file, meta.len()).map_err(|e| Error::io(&file, e))?;
            bytes += meta.len();
            modified = modified.max(seconds(&meta));
        }
        Ok(Fingerprint {
            bytes,
            modified,
            content: hasher.finalize().to_hex().to_string(),
        })
    }

    /// Same size and content hash (the modification time may differ).
    pub fn same_content(&self, other: &Fingerprint) -> bool {
        self.bytes == other.bytes && self.content == other.content
    }
}

/// Every regular file below `dir`, at any depth, leaving out names starting with '.'.
fn files_below(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) -> Result<()> {
    for entry in std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let p = entry.path();
        // Real subdirectories only: a symbolic link to a directory could loop. A link to a
        // file counts as the file.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            files_below(&p, out)?;
        } else if let Some(m) = std::fs::metadata(&p).ok().filter(|m| m.is_file()) {
            out.push((p, m));
        }
    }
    Ok(())
}

fn seconds(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn hash_edges(hasher: &mut blake3::Hasher, path: &Path, len: u64) -> std::io::Result<()> {
    hasher.update(&len.to_le_bytes());
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; EDGE.min(len) as usize];
    file.read_exact(&mut buf)?;
    hasher.update(&buf);
    if len > EDGE {
        let tail = EDGE.min(len - EDGE);
        file.seek(SeekFrom::Start(len - tail))?;
        buf.resize(tail as usize, 0);
        file.read_exact(&mut buf)?;
        hasher.update(&buf);
    }
    Ok(())
}

/// Where `path` is found below `--inputs DIR`: its path relative to `base` (both absolute)
/// when it lies inside `base` with no `..` in between; otherwise `path` itself (absolute, so
/// `DIR/<it>` is `path`: a file outside the manifest's directory is read where it is, since
/// `..` after symbolic links does not lead back to where it did when planning).
pub fn relative_to(path: &Path, base: &Path) -> PathBuf {
    match path.strip_prefix(base) {
        Ok(rel) if rel.components().all(|c| matches!(c, Component::Normal(_))) => rel.to_path_buf(),
        _ => path.to_path_buf(),
    }
}

/// Where a task reads `input`: `inputs_dir/<relative path>` when the engine staged the inputs
/// there, else the path the plan saw; refused unless its fingerprint is the planned one.
pub fn locate(input: &PlannedInput, inputs_dir: Option<&Path>) -> Result<PathBuf> {
    let path = match inputs_dir {
        Some(dir) => dir.join(&input.relative),
        None => input.path.clone(),
    };
    if std::fs::metadata(&path).is_err() {
        let hint = match inputs_dir {
            Some(_) => "the planned input is not staged there".to_string(),
            None => format!(
                "the planned input is not there (stage the inputs and pass --inputs DIR to find it as DIR/{})",
                input.relative.display()
            ),
        };
        return Err(Error::InputMissing { path, what: hint });
    }
    check_planned(input, path)
}

/// `path` if it holds the content `input` was planned from (its fingerprint), else an error.
pub fn check_planned(input: &PlannedInput, path: PathBuf) -> Result<PathBuf> {
    let found = Fingerprint::of(&path)?;
    if !found.same_content(&input.fingerprint) {
        return Err(Error::invalid(
            &path,
            format!(
                "not the input that was planned ({} bytes, content {}; the plan has {} bytes, content {}): stage the planned file or plan again",
                found.bytes,
                &found.content[..12],
                input.fingerprint.bytes,
                &input.fingerprint.content[..12]
            ),
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_relative_to() {
        let base = Path::new("/a/b");
        assert_eq!(
            relative_to(Path::new("/a/b/c/x.h5ad"), base),
            Path::new("c/x.h5ad")
        );
        assert_eq!(
            relative_to(Path::new("/a/b/../y.h5ad"), base),
            Path::new("/a/b/../y.h5ad")
        );
        // Outside the manifest's directory: DIR/<it> is the path itself.
        let outside = relative_to(Path::new("/z/y.h5ad"), base);
        assert_eq!(Path::new("/staged").join(outside), Path::new("/z/y.h5ad"));
    }

    #[test]
    fn test_fingerprint_sees_edges_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let mut data = vec![7u8; 300_000];
        std::fs::write(&p, &data).unwrap();
        let a = Fingerprint::of(&p).unwrap();
        data[299_999] = 8;
        std::fs::write(&p, &data).unwrap();
        let b = Fingerprint::of(&p).unwrap();
        assert!(!a.same_content(&b));
        data.push(0);
        std::fs::write(&p, &data).unwrap();
        assert_ne!(Fingerprint::of(&p).unwrap().bytes, a.bytes);
        assert!(Fingerprint::of(dir.path()).unwrap().bytes == 300_001);
        // A file changed two levels down (a SOMA experiment's fragment) changes it.
        let nested = dir.path().join("ms/X");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("f"), b"one").unwrap();
        let before = Fingerprint::of(dir.path()).unwrap();
        std::fs::write(nested.join("f"), b"two").unwrap();
        assert!(!Fingerprint::of(dir.path()).unwrap().same_content(&before));
    }
}

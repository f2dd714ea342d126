//! Whole objects between a store and local files: an input fetched to a local directory (one
//! object; the objects directly under a prefix, as a 10x directory is; or every object below
//! a prefix that is a TileDB group, a SOMA experiment), and a local file
//! uploaded (multipart past 10 MiB, in bounded memory). Two kinds of input object stay in the
//! store behind a local stand-in: a 10x directory's matrix, streamed ([`super::stream`]), and
//! an HDF5 file, read at offsets ([`super::ranged`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

use super::ranged::ObjectRanges;
use super::stream::ObjectStream;
use super::{store_error, Store};

/// Objects of a directory input that are streamed from the store, not fetched: a 10x
/// directory's matrix, which its reader reads in order, twice.
const STREAMED_NAMES: [&str; 2] = ["matrix.mtx", "matrix.mtx.gz"];

/// The first bytes of an HDF5 file (with no user block, as every h5ad and Cell Ranger file).
const HDF5_SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";

/// The bytes at each end of an object an input's fingerprint reads
/// (`workflow::plan::input_files`).
const EDGE: u64 = 64 * 1024;

/// How often a long download logs its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Part size of uploads.
const UPLOAD_PART: usize = 10 * 1024 * 1024;

/// Parts of one upload in flight at once: an upload holds at most this many parts plus the
/// one being filled (30 MiB), so a few uploads at once stay well under the 256 MiB a
/// conversion is bounded by.
const UPLOAD_PARTS_IN_FLIGHT: usize = 2;

/// What [`Store::download`] fetched.
#[derive(Debug, Clone)]
pub struct DownloadReport {
    /// The local file, or directory of files.
    pub path: PathBuf,
    /// Objects fetched.
    pub objects: usize,
    /// Bytes fetched.
    pub bytes: u64,
}

impl Store {
    /// Fetch the object at the prefix into `dir` under its own name; if there is no such
    /// object, every object directly under the prefix into `dir/<name>/` (a directory input),
    /// or every object below it at its path when the prefix is a TileDB group.
    /// Logs `input.fetching` before and `input.fetched` after, with bytes and seconds.
    /// An HDF5 object is left in the store ([`Store::single_object`]) when `hdf5_in_place`.
    pub async fn download(&self, dir: &Path, hdf5_in_place: bool) -> Result<DownloadReport> {
        let name = self
            .name()
            .ok_or_else(|| Error::Usage(format!("{}: names a bucket, not an input", self.shown)))?;
        let started = Instant::now();
        let single = match self.client.head(&self.root).await {
            Ok(meta) => Some(meta),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(store_error(&self.shown, &e)),
        };
        let is_directory = single.is_none();
        let (path, objects) = match single {
            Some(meta) => (dir.join(&name), vec![(meta, dir.join(&name))]),
            None => {
                let listed = self
                    .client
                    .list_with_delimiter(Some(&self.root))
                    .await
                    .map_err(|e| store_error(&self.shown, &e))?;
                let local = dir.join(&name);
                // A TileDB group (a SOMA experiment) is a tree: every object below the
                // prefix, at its path below it. Other directories: the objects directly under.
                let tiledb_group = listed
                    .objects
                    .iter()
                    .any(|m| m.location.filename() == Some("__tiledb_group.tdb"))
                    || listed
                        .common_prefixes
                        .iter()
                        .any(|p| p.filename() == Some("__group"));
                let below = match tiledb_group {
                    true => self
                        .client
                        .list(Some(&self.root))
                        .collect::<Vec<_>>()
                        .await
                        .into_iter()
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| store_error(&self.shown, &e))?,
                    false => listed.objects,
                };
                // Folder markers ("a/" objects some tools leave) are ancestors of other
                // objects: they name no file.
                let ancestors: std::collections::HashSet<String> = below
                    .iter()
                    .flat_map(|m| {
                        let path = m.location.as_ref();
                        path.match_indices('/')
                            .map(move |(i, _)| path[..i].to_string())
                    })
                    .collect();
                if let Some(clash) = below
                    .iter()
                    .find(|m| m.size > 0 && ancestors.contains(m.location.as_ref()))
                {
                    return Err(Error::invalid(
                        &self.shown,
                        format!("{}: both an object and a prefix of other objects: it cannot be fetched as a directory tree", clash.location),
                    ));
                }
                let objects: Vec<_> = below
                    .into_iter()
                    // S3's "folder" marker is the prefix itself: not a file of the directory.
                    .filter(|m| {
                        m.location != self.root
                            && !(m.size == 0 && ancestors.contains(m.location.as_ref()))
                    })
                    .filter_map(|m| {
                        let file = m
                            .location
                            .prefix_match(&self.root)?
                            .fold(local.clone(), |f, p| f.join(p.as_ref()));
                        (file != local).then_some((m, file))
                    })
                    .collect();
                if objects.is_empty() {
                    let below: Vec<&str> = listed
                        .common_prefixes
                        .iter()
                        .filter_map(|p| p.filename())
                        .take(5)
                        .collect();
                    let what = match below.is_empty() {
                        true => "no such object, and no objects under it".to_string(),
                        false => format!(
                            "no such object, and only prefixes under it ({}): name the \
                             file, or the directory that holds the input's files",
                            below.join(", ")
                        ),
                    };
                    return Err(Error::InputMissing {
                        path: PathBuf::from(&self.shown),
                        what,
                    });
                }
                std::fs::create_dir_all(&local).map_err(|e| Error::io(&local, e))?;
                (local, objects)
            }
        };
        tracing::info!(event = "input.fetching", input = %self.shown, objects = objects.len(), "fetching {} to {}", self.shown, path.display());
        let mut bytes = 0;
        for (meta, file) in &objects {
            if let Some(parent) = file.parent().filter(|p| !p.exists()) {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            let name = meta.location.filename().unwrap_or_default();
            bytes += match is_directory {
                true if STREAMED_NAMES.contains(&name) => self.stream_in_place(meta, file).await?,
                true => self.fetch_object(meta, file).await?,
                false if hdf5_in_place => self.single_object(meta, file).await?,
                false => self.fetch_object(meta, file).await?,
            };
        }
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(event = "input.fetched", input = %self.shown, bytes, seconds, "fetched {} ({bytes} bytes in {seconds:.1} s)", self.shown);
        Ok(DownloadReport {
            path,
            objects: objects.len(),
            bytes,
        })
    }

    /// Leave `file` standing in for the object `meta`: a sparse file of the object's size and
    /// modification time holding its first and last 64 KiB, which is all an input's
    /// fingerprint reads, so a plan and its shards see the object's own. Its first bytes, and
    /// the bytes fetched.
    async fn stand_in(
        &self,
        meta: &object_store::ObjectMeta,
        file: &Path,
        shown: &str,
    ) -> Result<(bytes::Bytes, u64)> {
        let size = meta.size;
        let head = 0..size.min(EDGE);
        let tail = (size > EDGE).then(|| size - EDGE.min(size - EDGE)..size);
        let out = std::fs::File::create(file).map_err(|e| Error::io(file, e))?;
        out.set_len(size).map_err(|e| Error::io(file, e))?;
        let (mut first, mut bytes) = (bytes::Bytes::new(), 0);
        for range in std::iter::once(head).chain(tail) {
            let start = range.start;
            let got = self
                .client
                .get_range(&meta.location, range)
                .await
                .map_err(|e| store_error(shown, &e))?;
            std::os::unix::fs::FileExt::write_all_at(&out, &got, start)
                .map_err(|e| Error::io(file, e))?;
            bytes += got.len() as u64;
            if start == 0 {
                first = got;
            }
        }
        if let Ok(seconds) = u64::try_from(meta.last_modified.timestamp()) {
            let modified = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
            out.set_modified(modified).map_err(|e| Error::io(file, e))?;
        }
        Ok((first, bytes))
    }

    /// A directory's matrix: left in the store behind a stand-in, and streamed by its reader
    /// ([`crate::readers::streamed`]). The bytes fetched.
    async fn stream_in_place(&self, meta: &object_store::ObjectMeta, file: &Path) -> Result<u64> {
        let shown = self.shown_child(meta.location.filename().unwrap_or_default());
        let (_, bytes) = self.stand_in(meta, file, &shown).await?;
        let size = meta.size;
        tracing::info!(event = "input.streaming", input = %shown, bytes = size, "streaming {shown} from the store as it is read, not fetching it");
        let stream = ObjectStream {
            uri: shown,
            size,
            e_tag: meta.e_tag.clone(),
        };
        crate::readers::streamed::stream_instead(file.to_path_buf(), std::sync::Arc::new(stream));
        Ok(bytes)
    }

    /// A single-object input: an HDF5 file (`.h5ad`, Cell Ranger `.h5`) is left in the store
    /// behind a stand-in and read at the offsets its reader asks for
    /// ([`crate::readers::ranged`]), so a shard fetches the metadata and its own cell range,
    /// not the file; anything else is fetched whole. The bytes fetched.
    async fn single_object(&self, meta: &object_store::ObjectMeta, file: &Path) -> Result<u64> {
        let shown = self.shown.clone();
        let (head, bytes) = self.stand_in(meta, file, &shown).await?;
        if !head.starts_with(HDF5_SIGNATURE) {
            return self.fetch_object(meta, file).await;
        }
        let size = meta.size;
        tracing::info!(event = "input.in_place", input = %shown, bytes = size, "reading {shown} in place, in ranged requests, not fetching it");
        let ranges = ObjectRanges::new(shown, size, meta.e_tag.clone(), head)
            .map_err(|e| Error::io(file, e))?;
        crate::readers::ranged::read_instead(file.to_path_buf(), std::sync::Arc::new(ranges));
        Ok(bytes)
    }

    /// Stream one object into `file`, which gets the object's modification time (a plan
    /// records it: the same object fetched again must look the same).
    async fn fetch_object(&self, meta: &object_store::ObjectMeta, file: &Path) -> Result<u64> {
        let object = &meta.location;
        let shown = match *object == self.root {
            true => self.shown.clone(),
            false => self.shown_child(object.filename().unwrap_or_default()),
        };
        let got = self
            .client
            .get(object)
            .await
            .map_err(|e| store_error(&shown, &e))?;
        let mut out = tokio::fs::File::create(file)
            .await
            .map_err(|e| Error::io(file, e))?;
        let total = got.meta.size;
        let mut stream = got.into_stream();
        let mut bytes = 0;
        let mut reported = Instant::now();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| store_error(&shown, &e))?;
            bytes += chunk.len() as u64;
            out.write_all(&chunk)
                .await
                .map_err(|e| Error::io(file, e))?;
            // Progress on long downloads, every few seconds.
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                tracing::info!(event = "input.fetching", input = %shown, bytes, total, "fetching {shown}: {} of {} MB", bytes / 1_000_000, total / 1_000_000);
            }
        }
        out.flush().await.map_err(|e| Error::io(file, e))?;
        let out = out.into_std().await;
        if let Ok(seconds) = u64::try_from(meta.last_modified.timestamp()) {
            let modified = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
            out.set_modified(modified).map_err(|e| Error::io(file, e))?;
        }
        Ok(bytes)
    }

    /// Upload the local `file` as the object `rel`: one PUT, or a multipart upload that only
    /// becomes visible once complete.
    pub async fn upload(&self, file: &Path, rel: &str) -> Result<u64> {
        let shown = self.shown_child(rel);
        let mut input = tokio::fs::File::open(file)
            .await
            .map_err(|e| Error::io(file, e))?;
        let mut writer = object_store::buffered::BufWriter::with_capacity(
            self.client.clone(),
            self.path(rel),
            UPLOAD_PART,
        )
        .with_max_concurrency(UPLOAD_PARTS_IN_FLIGHT);
        let copied = tokio::io::copy(&mut input, &mut writer).await;
        let copied = match copied {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(io_or_store(file, &shown, e));
            }
        };
        writer
            .shutdown()
            .await
            .map_err(|e| io_or_store(file, &shown, e))?;
        Ok(copied)
    }
}

/// An error of a copy from a local file into the store: the store's, or the file's.
fn io_or_store(file: &Path, shown: &str, e: std::io::Error) -> Error {
    let from_store = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<object_store::Error>())
        .map(|store| store_error(shown, store));
    from_store.unwrap_or_else(|| Error::io(file, e))
}

//! Files of an input that stay where they are (an object in a store) and are read as a
//! stream each time a reader opens them, start to end: the matrix of a 10x MTX directory,
//! which its reader reads twice, in order, and never seeks in. Whoever fetches the rest of
//! the input registers the stream under the local path the reader sees (a placeholder of
//! the object's size); the reader asks here before it opens a local file. The registry
//! lives as long as the process: a placeholder's path lies in a temporary directory of its
//! own, never reused.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::StandIns;

/// Where a streamed file's bytes come from.
pub trait StreamSource: Send + Sync {
    /// A new stream of the file's bytes from the start.
    fn open(&self) -> std::io::Result<Box<dyn Read + Send>>;
}

static STREAMED: StandIns<dyn StreamSource> = StandIns::new();

/// Read `path` from `source` instead of from local disk.
pub fn stream_instead(path: PathBuf, source: Arc<dyn StreamSource>) {
    STREAMED.insert(path, source);
}

/// The stream registered for `path`, if any.
pub fn source(path: &Path) -> Option<Arc<dyn StreamSource>> {
    STREAMED.get(path)
}

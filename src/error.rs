//! The library's one error type and its mapping to process exit codes.
//!
//! Every variant names what the user can act on and carries the path it is about (input file,
//! HDF5 object, output directory). Foreign errors (HDF5, Lance, I/O) are translated here or at
//! the one call site that knows the path, never passed through bare.

use std::path::PathBuf;

#[cfg(feature = "writer")]
mod store_failure;
#[cfg(feature = "writer")]
pub(crate) use self::store_failure::{config_error, store_error};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while converting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input exists but is not valid for its format (corrupt, truncated, missing a required
    /// part, or using an encoding we do not read).
    #[error("{}: {what}", path.display())]
    InvalidInput {
        /// The input file or directory.
        path: PathBuf,
        /// What is wrong, naming the object or field inside the input.
        what: String,
        /// What the library that found it said, outermost first (HDF5's error stack);
        /// printed under `--verbose`.
        causes: Vec<String>,
    },
    /// The input does not exist or cannot be opened for reading.
    #[error("{}: {what}", path.display())]
    InputMissing {
        /// The path that was asked for.
        path: PathBuf,
        /// Why it could not be opened.
        what: String,
    },
    /// A library an input needs at run time is not there (libtiledb for TileDB-SOMA).
    #[error("{}: {what}", path.display())]
    LibraryMissing {
        /// The input that needs it.
        path: PathBuf,
        /// Which library, where it was looked for, and how to provide it.
        what: String,
    },
    /// The manifest is not valid (syntax, unknown key, bad value).
    #[error("{}: {what}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong, with the key and line where known.
        what: String,
    },
    /// Inputs that cannot go into one dataset together.
    #[error("{}: {what}", path.display())]
    IncompatibleInputs {
        /// The input that does not fit with the ones before it.
        path: PathBuf,
        /// How it differs, naming the other input where there is one.
        what: String,
    },
    /// Shard receipts missing, from another plan, or not matching what they claim.
    #[error("{}: {what}", path.display())]
    Receipts {
        /// The plan or receipt concerned.
        path: PathBuf,
        /// What is wrong (lists missing shard indices).
        what: String,
    },
    /// The output already exists and `--overwrite` was not given.
    #[error("{}: output already exists (pass --overwrite to replace it)", path.display())]
    OutputExists {
        /// The output directory.
        path: PathBuf,
    },
    /// An output path that slaf-convert refuses to write to, since doing so would delete or
    /// change something it did not create (a directory that is not a shard attempt, an input).
    #[error("{}: {what}", path.display())]
    OutputNotOurs {
        /// The output path.
        path: PathBuf,
        /// Why it is refused.
        what: String,
    },
    /// The dataset an append was planned against changed before the append committed
    /// (another append or conversion came first): retry from the plan.
    #[error("{}: {what}", path.display())]
    DatasetMoved {
        /// The dataset.
        path: PathBuf,
        /// What changed.
        what: String,
    },
    /// Invalid arguments that clap could not catch (for example a chunk size of zero).
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An object store (s3://, gs://, az://) refused or failed a request.
    #[error("{uri}: {what}")]
    Store {
        /// The object, as it may be shown (no credentials).
        uri: String,
        /// What failed, in the store's words.
        what: String,
        /// A retry of the same command can succeed (timeouts, 5xx, throttling, connection).
        transient: bool,
    },
    /// The Lance library failed while writing or committing a table.
    #[cfg(feature = "writer")]
    #[error("{}: lance: {source}", path.display())]
    Lance {
        /// The table directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<lance::Error>,
    },
    /// A value the plan's uint16 value type cannot hold: the plan guessed the type from a
    /// sample (the shard then writes that part as float32, see `workflow::shard`), or the
    /// input changed since it was planned.
    #[error("{}: value {value} of {} in the cells from {first_cell} on is not a count in 0..=65535, but the plan stores uint16 values (has the input changed since it was planned?)", path.display(), layer.map_or("X".to_string(), |i| format!("layer {i}")))]
    ValueTypeTooNarrow {
        /// The input.
        path: PathBuf,
        /// The value.
        value: f32,
        /// First cell of the batch holding it.
        first_cell: u64,
        /// Where it is: a layer (its index among the plan's layers), or X (`None`).
        layer: Option<usize>,
    },
    /// A broken invariant of our own: a bug, never bad input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::InvalidInput {
            path: path.into(),
            what: what.into(),
            causes: Vec::new(),
        }
    }

    /// An input that is not the one its plan describes: planned facts (cell order, row counts)
    /// no longer hold. An input error, not a bug.
    pub fn changed_since_plan(path: impl Into<PathBuf>, what: impl std::fmt::Display) -> Self {
        Error::invalid(
            path,
            format!("{what}: the input changed since it was planned (plan again)"),
        )
    }

    /// An input error raised where the input's path was not known (an empty path), given it.
    pub fn about_input(self, input: &std::path::Path) -> Self {
        match self {
            Error::InvalidInput { path, what, causes } if path.as_os_str().is_empty() => {
                Error::InvalidInput {
                    path: input.to_path_buf(),
                    what,
                    causes,
                }
            }
            other => other,
        }
    }

    /// The chain of causes under this error, outermost first: the library's own messages
    /// (`--verbose` prints them one per line).
    pub fn causes(&self) -> Vec<String> {
        if let Error::InvalidInput { causes, .. } = self {
            return causes.clone();
        }
        // The first source is already part of this error's own line.
        let mut out = Vec::new();
        let mut next = std::error::Error::source(self).and_then(|s| s.source());
        while let Some(e) = next {
            out.push(e.to_string());
            next = e.source();
        }
        out
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::Lance`]; a Lance error about a table at a store URI that an
    /// object store's error caused is that store's error, classified and worded as the
    /// store's own ([`Error::Store`]: one line, transient or not). Lance's own transient
    /// errors (commit conflicts) stay Lance's.
    #[cfg(feature = "writer")]
    pub fn lance(path: impl Into<PathBuf>, source: lance::Error) -> Self {
        let path = path.into();
        // Local tables go through object_store's local backend too: its errors stay Lance's.
        let in_store = crate::location::store_uri(path.as_os_str()).is_some();
        let mut cause: Option<&(dyn std::error::Error + 'static)> =
            (in_store && !is_transient(&source)).then_some(&source);
        while let Some(e) = cause {
            if let Some(store) = e.downcast_ref::<object_store::Error>() {
                return store_error(&path.display().to_string(), store);
            }
            cause = e.source();
        }
        Error::Lance {
            path,
            source: Box::new(source),
        }
    }

    /// The documented process exit code for this error (see README, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit_code::USAGE,
            Error::Manifest { .. } => exit_code::MANIFEST,
            Error::IncompatibleInputs { .. } => exit_code::INCOMPATIBLE_INPUTS,
            Error::Receipts { .. } => exit_code::RECEIPTS,
            Error::InvalidInput { .. } | Error::ValueTypeTooNarrow { .. } => {
                exit_code::INVALID_INPUT
            }
            Error::InputMissing { .. } => exit_code::INPUT_MISSING,
            Error::LibraryMissing { .. } => exit_code::UNAVAILABLE,
            Error::OutputExists { .. } | Error::OutputNotOurs { .. } => exit_code::OUTPUT_EXISTS,
            Error::DatasetMoved { .. } => exit_code::TRANSIENT,
            #[cfg(feature = "writer")]
            Error::Lance { source, .. } if is_transient(source) => exit_code::TRANSIENT,
            #[cfg(feature = "writer")]
            Error::Lance { .. } => exit_code::IO,
            Error::Store {
                transient: true, ..
            } => exit_code::TRANSIENT,
            Error::Store { .. } => exit_code::IO,
            Error::Io { source, .. } if is_transient_io(source) => exit_code::TRANSIENT,
            Error::Io { .. } => exit_code::IO,
            Error::Internal(_) => exit_code::INTERNAL,
        }
    }
}

/// Lance errors a retry can fix: another writer committed first, or the store timed out.
#[cfg(feature = "writer")]
fn is_transient(e: &lance::Error) -> bool {
    match e {
        lance::Error::CommitConflict { .. }
        | lance::Error::RetryableCommitConflict { .. }
        | lance::Error::TooMuchWriteContention { .. } => true,
        lance::Error::IO { source, .. } => source
            .downcast_ref::<std::io::Error>()
            .is_some_and(is_transient_io),
        _ => false,
    }
}

/// I/O errors that are about the moment, not the data.
fn is_transient_io(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        TimedOut | Interrupted | ConnectionReset | ConnectionAborted | WouldBlock
    )
}

/// Process exit codes. Bad input never uses 104, 130–145 or 175, which nf-core retries.
pub mod exit_code {
    /// Conversion finished.
    pub const SUCCESS: u8 = 0;
    /// Bad command-line arguments.
    pub const USAGE: u8 = 2;
    /// The manifest is invalid.
    pub const MANIFEST: u8 = 64;
    /// The input is invalid, corrupt or uses an unsupported encoding.
    pub const INVALID_INPUT: u8 = 65;
    /// The input does not exist or cannot be opened.
    pub const INPUT_MISSING: u8 = 66;
    /// Inputs that cannot be combined (genes, obs columns, layers differ).
    pub const INCOMPATIBLE_INPUTS: u8 = 67;
    /// Shard receipts missing or not matching the plan.
    pub const RECEIPTS: u8 = 68;
    /// A library the input needs at run time is not there (libtiledb, for TileDB-SOMA).
    pub const UNAVAILABLE: u8 = 69;
    /// A bug in slaf-convert.
    pub const INTERNAL: u8 = 70;
    /// The output exists and `--overwrite` was not given, or is a path slaf-convert will not
    /// write to (an input, inside an input, or a directory that is not a shard attempt).
    pub const OUTPUT_EXISTS: u8 = 73;
    /// Reading or writing files failed (disk full, permissions, Lance I/O), or an object
    /// store refused a request (credentials, missing bucket).
    pub const IO: u8 = 74;
    /// A transient storage failure (commit conflict, timeout, an object store's 5xx or
    /// throttling after its retries, a connection that failed): the same command may be
    /// retried as it is. Also an append whose dataset changed after it was planned: plan
    /// again (`convert --append` does so itself when re-run).
    pub const TRANSIENT: u8 = 75;
}

//! slaf-convert: single-cell expression data into SLAF datasets.
//!
//! Data flows one way:
//!
//! ```text
//! manifest ─▶ plan ─▶ shard: input file ──readers──▶ CellBatch (obs rows + cell-major entries)
//!                             ──pipeline──▶ slaf::tables: Arrow record batches
//!                             ──slaf::writer──▶ uncommitted Lance fragments + receipt
//!          ─▶ commit: one transaction per table ─▶ config.json ─▶ completion marker
//! ```
//!
//! The modules follow that graph and no import goes back up it (tests/it/architecture.rs):
//!
//! - [`workflow`]: the steps (manifest, plan, shard, commit; `convert` runs all in one
//!   process). They drive the [`pipeline`], which is where readers and the SLAF side meet.
//! - [`readers`]: one module per input format behind [`readers::InputReader`]; they know
//!   nothing of Lance or SLAF tables.
//! - [`slaf`]: table schemas, record batches, statistics, `config.json`, the Lance writer;
//!   it knows nothing of input formats.
//! - [`store`]: object stores (s3://, gs://, az://) from the environment's credentials:
//!   fetch, upload, read, write, list; it knows nothing of datasets.
//! - The vocabulary both sides share, owned by neither: [`cells`] (cell ranges and batches),
//!   [`values`] (value types), [`columns`] (column names), [`location`] (path or URI); and
//!   [`error`], [`logging`],
//!   [`json_file`], [`crash_report`].
//!
//! Everything on the Lance side sits behind the default `writer` feature; without it the
//! crate is the readers and the manifest and plan loaders (what `fuzz/` builds). Command-line
//! parsing is the binary's (`src/cli`), not the library's.
//!
//! ```no_run
//! # async fn example() -> slaf_convert::Result<()> {
//! use slaf_convert::workflow::convert::{convert, ConvertOptions};
//! let report = convert("pbmc.h5ad".as_ref(), "pbmc.slaf".as_ref(), &ConvertOptions::default()).await?;
//! println!("{} cells", report.marker.n_cells);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod cells;
pub mod columns;
#[cfg(feature = "writer")]
pub mod compact;
pub mod crash_report;
pub mod error;
pub mod json_file;
pub mod location;
pub mod logging;
#[cfg(feature = "writer")]
pub mod pipeline;
pub mod readers;
pub mod slaf;
#[cfg(feature = "writer")]
pub mod store;
#[cfg(feature = "writer")]
pub mod validate;
pub mod values;
pub mod workflow;

pub use error::{exit_code, Error, Result};

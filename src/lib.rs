//! slaf-convert: single-cell expression data into SLAF datasets.
//!
//! Data flows one way:
//!
//! ```text
//! input file ──readers──▶ CellChunk (obs rows + cell-major entries)
//!            ──tables───▶ Arrow record batches (cells, expression, genes)
//!            ──writer───▶ uncommitted Lance fragments ──commit──▶ tables ──▶ config.json
//! ```
//!
//! Readers (one module per format under [`readers`]) know nothing of Lance; the
//! [`writer`] knows nothing of input formats; they meet in Arrow and [`schema`].
//! Everything on the Lance side sits behind the default `writer` feature; without it the
//! crate is the readers and the manifest and plan loaders (what `fuzz/` builds).
//! A workflow runs the same flow as separate tasks: [`plan`] (manifest → `plan.json`),
//! [`shard`] (one cell range → uncommitted fragments + receipt), [`commit`] (receipts → one
//! transaction per table → `config.json` → completion marker). [`convert::convert`] runs
//! exactly these steps in one process.
//!
//! ```no_run
//! # async fn example() -> slaf_convert::Result<()> {
//! use slaf_convert::convert::{convert, ConvertOptions};
//! let report = convert("pbmc.h5ad".as_ref(), "pbmc.slaf".as_ref(), &ConvertOptions::default()).await?;
//! println!("{} cells", report.marker.n_cells);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

#[cfg(feature = "writer")]
pub mod commit;
pub mod config_json;
#[cfg(feature = "writer")]
pub mod convert;
pub mod crash_report;
pub mod error;
#[cfg(feature = "writer")]
pub mod inspect;
pub mod json_file;
pub mod logging;
pub mod manifest;
#[cfg(feature = "writer")]
pub mod pairwise;
#[cfg(feature = "writer")]
pub mod pipeline;
pub mod plan;
pub mod readers;
pub mod schema;
#[cfg(feature = "writer")]
pub mod schemas;
#[cfg(feature = "writer")]
pub mod shard;
pub mod tables;
pub mod value_stats;
#[cfg(feature = "writer")]
pub mod writer;

pub use error::{exit_code, Error, Result};

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

pub mod cli;
pub mod commit;
pub mod config_json;
pub mod convert;
pub mod error;
pub mod inspect;
pub mod logging;
pub mod manifest;
pub mod pairwise;
pub mod pipeline;
pub mod plan;
pub mod readers;
pub mod schema;
pub mod schemas;
pub mod shard;
pub mod tables;
pub mod writer;

pub use error::{exit_code, Error, Result};

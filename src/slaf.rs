//! The SLAF side: what a dataset is made of, knowing nothing of input formats. Table
//! schemas and Lance encoding choices ([`schema`]), Arrow record batches from cell batches
//! ([`tables`]), the stored form of column types ([`column_type`]), value statistics
//! ([`value_stats`]) and `config.json` ([`config_json`]); with the `writer` feature, Lance
//! fragments and commits (`writer`, fed by `pieces`), scalar indices (`indices`) and `inspect`.

pub mod column_type;
pub mod config_json;
#[cfg(feature = "writer")]
pub mod indices;
#[cfg(feature = "writer")]
pub mod inspect;
#[cfg(feature = "writer")]
pub mod pieces;
pub mod schema;
pub mod tables;
pub mod value_stats;
#[cfg(feature = "writer")]
pub mod writer;

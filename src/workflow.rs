//! The workflow steps: a YAML [`manifest`] becomes a [`plan`] (cell-range shards); each
//! [`shard`] writes uncommitted fragments and a receipt; one [`commit`] makes them the
//! dataset, or appends them to a complete one ([`commit::append`]). [`convert`] runs the
//! three in one process; [`fetch`] brings inputs from object
//! stores to the task that reads them, and [`remote`] runs `convert` and `commit` with
//! outputs in object stores; [`schemas`] publishes the JSON
//! schemas of the files they exchange. Without the `writer` feature only the manifest and
//! plan loaders are built (what `fuzz/` exercises).

#[cfg(feature = "writer")]
pub mod commit;
#[cfg(feature = "writer")]
pub mod convert;
#[cfg(feature = "writer")]
pub mod fetch;
pub mod manifest;
pub mod plan;
#[cfg(feature = "writer")]
pub mod remote;
#[cfg(feature = "writer")]
pub mod schemas;
#[cfg(feature = "writer")]
pub mod shard;

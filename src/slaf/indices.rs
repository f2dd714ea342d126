//! The scalar indices a dataset gets with `--create-indices` (manifest `options.indices`):
//! which column of which table, and of which kind. Built at commit, once for the whole
//! dataset after its tables are committed, never per shard.
//!
//! The columns are upstream's (its converter's `create_indices`, docs/slaf-format.md §5.1):
//! the id columns of cells and genes, and both id columns of expression. Every one is a
//! BTREE, as upstream builds, except `expression.cell_integer_id`: that column is sorted, so
//! a zone map (the value range of each block of rows) answers the same lookups from a few
//! kilobytes, where a BTREE over every row is as large as the column's data. The gene id
//! BTREE is what makes `get_gene_expression` fast (bench/RESULTS.md).

use std::path::Path;
use std::time::Instant;

use lance::index::DatasetIndexExt;
use lance_index::scalar::ScalarIndexParams;
use lance_index::IndexType;

use super::schema::{CELLS_TABLE, EXPRESSION_TABLE, GENES_TABLE};
use crate::columns;
use crate::error::{Error, Result};

/// One scalar index of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalarIndex {
    /// The table's directory name (`expression.lance`).
    pub table: &'static str,
    /// The indexed column.
    pub column: &'static str,
    /// Lance's index type.
    pub kind: IndexKind,
}

/// The index types used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// A B-tree over every value: exact lookups on unsorted columns.
    BTree,
    /// Each block's value range: lookups on a sorted column, a few kilobytes.
    ZoneMap,
}

impl IndexKind {
    fn lance(self) -> IndexType {
        match self {
            IndexKind::BTree => IndexType::BTree,
            IndexKind::ZoneMap => IndexType::ZoneMap,
        }
    }

    /// The name Lance gives the index type ("BTREE", "ZONEMAP").
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::BTree => "BTREE",
            IndexKind::ZoneMap => "ZONEMAP",
        }
    }
}

/// Every index `--create-indices` builds, in build order.
pub const DATASET_INDICES: [ScalarIndex; 6] = [
    ScalarIndex {
        table: CELLS_TABLE,
        column: columns::CELL_ID,
        kind: IndexKind::BTree,
    },
    ScalarIndex {
        table: CELLS_TABLE,
        column: columns::CELL_INTEGER_ID,
        kind: IndexKind::BTree,
    },
    ScalarIndex {
        table: GENES_TABLE,
        column: columns::GENE_ID,
        kind: IndexKind::BTree,
    },
    ScalarIndex {
        table: GENES_TABLE,
        column: columns::GENE_INTEGER_ID,
        kind: IndexKind::BTree,
    },
    ScalarIndex {
        table: EXPRESSION_TABLE,
        column: columns::CELL_INTEGER_ID,
        kind: IndexKind::ZoneMap,
    },
    ScalarIndex {
        table: EXPRESSION_TABLE,
        column: columns::GENE_INTEGER_ID,
        kind: IndexKind::BTree,
    },
];

/// Build (or rebuild: an index of the same name is replaced) every index of
/// [`DATASET_INDICES`] on the committed tables under `output`. A table without rows gets none
/// (there is nothing to look up). Each index is a new version of its table; a kill part-way
/// leaves the tables readable, and the commit that runs again rebuilds them all.
pub async fn create_indices(output: &Path) -> Result<()> {
    release_freed_memory();
    for index in DATASET_INDICES {
        let dir = output.join(index.table);
        let uri = dir.to_string_lossy().into_owned();
        let mut dataset = crate::store::lance::open_dataset(&uri)
            .await
            .map_err(|e| Error::lance(&dir, e))?;
        let rows = dataset
            .count_rows(None)
            .await
            .map_err(|e| Error::lance(&dir, e))?;
        if rows == 0 {
            continue;
        }
        let started = Instant::now();
        let params = ScalarIndexParams::new(index.kind.name().to_lowercase());
        let name = format!("{}_idx", index.column);
        dataset
            .create_index(
                &[index.column],
                index.kind.lance(),
                Some(name),
                &params,
                true,
            )
            .await
            .map_err(|e| Error::lance(&dir, e))?;
        tracing::info!(
            event = "commit.indexed",
            table = index.table,
            column = index.column,
            index = index.kind.name(),
            seconds = started.elapsed().as_secs_f64(),
            "{} index on {}.{}",
            index.kind.name(),
            index.table,
            index.column
        );
    }
    Ok(())
}

/// Hand the conversion's freed buffers back to the system before the index build grows the
/// heap again: the process keeps freed memory for reuse (`main.rs` raises glibc's trim
/// threshold for the conversion's steady churn), and the index build's sort buffers would
/// otherwise come on top of it. 100,000 cells: the RSS held after the conversion, 218 MiB,
/// plus the gene id index's growth put the peak at 253-304 MiB.
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the system; it is thread safe.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

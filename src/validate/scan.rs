//! The table scans of `validate`: one ordered pass over each table, fragment by fragment,
//! keeping per cell only its first row and its `cell_start_index` (16 bytes a cell), and per
//! gene nothing but the names' uniqueness.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Int64Type};
use futures::TryStreamExt;
use lance::Dataset;
use serde_json::Value;

use super::Findings;
use crate::error::{Error, Result};
use crate::slaf::value_stats::ValueStats;

/// What the cells table holds that other checks need.
pub(crate) struct Cells {
    /// `cell_start_index` of every cell, in row order.
    pub start_index: Vec<i64>,
    /// Runs of equal `source_file` values: (value, first cell, cells); empty without the column.
    pub source_runs: Vec<(String, u64, u64)>,
}

/// What an expression (or layers) scan found.
pub(crate) struct Entries {
    /// Rows.
    pub rows: u64,
    /// Each cell's first row in scan order (`u64::MAX`: none; cells out of range left out).
    pub first_row: Vec<u64>,
    /// Statistics of the values (expression only).
    pub stats: ValueStats,
}

/// Scan `columns` of `ds` fragment by fragment in row order; `each` gets every batch and
/// whether it is its fragment's first.
async fn scan_fragments(
    ds: &Dataset,
    place: &str,
    columns: &[&str],
    mut each: impl FnMut(&RecordBatch, bool) -> Result<()>,
) -> Result<()> {
    let lance_err = |e| Error::lance(place, e);
    for fragment in ds.get_fragments() {
        let mut scan = ds.scan();
        scan.project(columns).map_err(lance_err)?;
        scan.with_fragments(vec![fragment.metadata().clone()])
            .scan_in_order(true);
        let mut stream = scan.try_into_stream().await.map_err(lance_err)?;
        let mut first = true;
        while let Some(batch) = stream.try_next().await.map_err(lance_err)? {
            each(&batch, first)?;
            first = first && batch.num_rows() == 0;
        }
    }
    Ok(())
}

/// The column `name` of `ds`, if it has one, with its type.
fn column_type(ds: &Dataset, name: &str) -> Option<DataType> {
    let schema = arrow::datatypes::Schema::from(ds.schema());
    schema
        .field_with_name(name)
        .ok()
        .map(|f| f.data_type().clone())
}

/// `column` as int64 (ids of any integer type).
fn as_i64(column: &ArrayRef) -> Result<ArrayRef> {
    arrow::compute::cast(column, &DataType::Int64).map_err(|e| Error::Internal(e.to_string()))
}

/// Require `name` in `ds` with one of `types`; `None` (and a violation) otherwise.
fn require(
    ds: &Dataset,
    place: &str,
    name: &str,
    types: &[DataType],
    found: &mut Findings,
) -> Option<DataType> {
    match column_type(ds, name) {
        None => {
            found.fact("table.column", place, format!("has no column {name}"));
            None
        }
        Some(t) if types.contains(&t) => Some(t),
        Some(t) => {
            let want: Vec<String> = types.iter().map(|t| t.to_string()).collect();
            found.fact(
                "table.column_type",
                place,
                format!(
                    "column {name} is {t}, the reader needs {}",
                    want.join(" or ")
                ),
            );
            Some(t)
        }
    }
}

/// Check genes.lance; its row count.
pub(crate) async fn genes(ds: &Dataset, found: &mut Findings) -> Result<u64> {
    let place = "genes.lance";
    require(ds, place, "gene_id", &[DataType::Utf8], found);
    require(ds, place, "gene_integer_id", &[DataType::Int64], found);
    if column_type(ds, "gene_id").is_none() || column_type(ds, "gene_integer_id").is_none() {
        return ds
            .count_rows(None)
            .await
            .map(|n| n as u64)
            .map_err(|e| Error::lance(place, e));
    }
    let mut row = 0u64;
    let mut names = HashSet::new();
    scan_fragments(ds, place, &["gene_id", "gene_integer_id"], |batch, _| {
        let ids = as_i64(batch.column(1))?;
        let ids = ids.as_primitive::<Int64Type>();
        let names_col = arrow::compute::cast(batch.column(0), &DataType::Utf8)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let names_col = names_col.as_string::<i32>();
        for i in 0..batch.num_rows() {
            if ids.is_null(i) || ids.value(i) != row as i64 {
                found.add(
                    "genes.ids",
                    place,
                    "gene_integer_id is not the row number",
                    || format!("row {row}: {:?}", (!ids.is_null(i)).then(|| ids.value(i))),
                );
            }
            let name = names_col.is_valid(i).then(|| names_col.value(i));
            if !names.insert(name.map(str::to_string)) {
                found.add("genes.duplicate_id", place, "gene_id is not unique", || {
                    format!("{name:?} at row {row}")
                });
            }
            row += 1;
        }
        Ok(())
    })
    .await?;
    Ok(row)
}

fn hash_of(s: Option<&str>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Check cells.lance; what other checks need of it.
pub(crate) async fn cells(ds: &Dataset, found: &mut Findings) -> Result<Cells> {
    let place = "cells.lance";
    let has_all = [
        require(ds, place, "cell_id", &[DataType::Utf8], found),
        require(ds, place, "cell_integer_id", &[DataType::Int64], found),
        // Any other integer type crashes upstream's reader (docs/slaf-format.md §3.1).
        require(ds, place, "cell_start_index", &[DataType::Int64], found),
    ]
    .iter()
    .all(Option::is_some);
    let source = column_type(ds, "source_file").is_some();
    let mut out = Cells {
        start_index: Vec::new(),
        source_runs: Vec::new(),
    };
    if !has_all {
        let n = ds
            .count_rows(None)
            .await
            .map_err(|e| Error::lance(place, e))?;
        out.start_index = vec![0; n];
        return Ok(out);
    }
    let mut columns = vec!["cell_id", "cell_integer_id", "cell_start_index"];
    if source {
        columns.push("source_file");
    }
    // Names by hash (8 bytes a cell); names whose hash repeats are compared in a second pass.
    let mut hashes: HashSet<u64> = HashSet::new();
    let mut repeated: HashSet<u64> = HashSet::new();
    let mut row = 0u64;
    scan_fragments(ds, place, &columns, |batch, _| {
        let names = batch.column(0).as_string::<i32>();
        let ids = as_i64(batch.column(1))?;
        let ids = ids.as_primitive::<Int64Type>();
        let starts = as_i64(batch.column(2))?;
        let starts = starts.as_primitive::<Int64Type>();
        let sources = if source {
            Some(
                arrow::compute::cast(batch.column(3), &DataType::Utf8)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            )
        } else {
            None
        };
        for i in 0..batch.num_rows() {
            if ids.is_null(i) || ids.value(i) != row as i64 {
                found.add(
                    "cells.ids",
                    place,
                    "cell_integer_id is not the row number",
                    || format!("row {row}: {:?}", (!ids.is_null(i)).then(|| ids.value(i))),
                );
            }
            let h = hash_of(names.is_valid(i).then(|| names.value(i)));
            if !hashes.insert(h) {
                repeated.insert(h);
            }
            out.start_index.push(if starts.is_null(i) {
                -1
            } else {
                starts.value(i)
            });
            if let Some(sources) = &sources {
                let s = sources.as_string::<i32>();
                let value = if s.is_valid(i) { s.value(i) } else { "" };
                match out.source_runs.last_mut() {
                    Some((v, _, n)) if v == value => *n += 1,
                    _ => out.source_runs.push((value.to_string(), row, 1)),
                }
            }
            row += 1;
        }
        Ok(())
    })
    .await?;
    drop(hashes);
    if !repeated.is_empty() {
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut row = 0u64;
        scan_fragments(ds, place, &["cell_id"], |batch, _| {
            let names = batch.column(0).as_string::<i32>();
            for i in 0..batch.num_rows() {
                let name = names.is_valid(i).then(|| names.value(i));
                if repeated.contains(&hash_of(name)) {
                    let key = name.unwrap_or("<null>").to_string();
                    if let Some(first) = seen.get(&key) {
                        found.add("cells.duplicate_id", place, "cell_id is not unique", || {
                            format!("{key:?} at rows {first} and {row}")
                        });
                    } else {
                        seen.insert(key, row);
                    }
                }
                row += 1;
            }
            Ok(())
        })
        .await?;
    }
    Ok(out)
}

/// The id and value columns of an expression or layers table, checked; `None` if one is
/// missing (reported).
fn entry_columns(ds: &Dataset, place: &str, with_values: bool, found: &mut Findings) -> bool {
    let ints = [
        DataType::Int64,
        DataType::Int32,
        DataType::UInt32,
        DataType::UInt16,
    ];
    let cell = require(ds, place, "cell_integer_id", &ints, found);
    let gene = require(ds, place, "gene_integer_id", &ints, found);
    let value = !with_values
        || require(
            ds,
            place,
            "value",
            &[DataType::UInt16, DataType::Float32],
            found,
        )
        .is_some();
    cell.is_some() && gene.is_some() && value
}

/// Check the rows of expression (`with_values`) or layers: ids in range, grouped by cell in
/// id order with genes ascending, no cell across fragments.
pub(crate) async fn entries(
    ds: &Dataset,
    place: &str,
    n_cells: u64,
    n_genes: u64,
    with_values: bool,
    found: &mut Findings,
) -> Result<Entries> {
    let mut out = Entries {
        rows: 0,
        first_row: vec![u64::MAX; n_cells as usize],
        stats: ValueStats::default(),
    };
    if !entry_columns(ds, place, with_values, found) {
        out.rows = ds
            .count_rows(None)
            .await
            .map_err(|e| Error::lance(place, e))? as u64;
        return Ok(out);
    }
    let mut columns = vec!["cell_integer_id", "gene_integer_id"];
    if with_values {
        columns.push("value");
    }
    let mut last: Option<(i64, i64)> = None;
    scan_fragments(ds, place, &columns, |batch, fragment_start| {
        let cells = as_i64(batch.column(0))?;
        let cells = cells.as_primitive::<Int64Type>();
        let genes = as_i64(batch.column(1))?;
        let genes = genes.as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let row = out.rows;
            out.rows += 1;
            let (c, g) = (cells.value(i), genes.value(i));
            if cells.is_null(i) || c < 0 || c as u64 >= n_cells {
                found.add(
                    "entries.cell_id_range",
                    place,
                    format!("cell_integer_id outside 0..{n_cells}"),
                    || format!("row {row}: {c}"),
                );
            } else {
                let first = &mut out.first_row[c as usize];
                *first = (*first).min(row);
            }
            if genes.is_null(i) || g < 0 || g as u64 >= n_genes {
                found.add(
                    "entries.gene_id_range",
                    place,
                    format!("gene_integer_id outside 0..{n_genes}"),
                    || format!("row {row}: {g}"),
                );
            }
            if let Some((pc, pg)) = last {
                if i == 0 && fragment_start && c == pc {
                    found.add(
                        "entries.cell_split",
                        place,
                        "a cell's rows span two fragments",
                        || format!("cell {c} at row {row}"),
                    );
                }
                if c < pc {
                    found.add(
                        "entries.cell_order",
                        place,
                        "rows are not grouped by cell in id order",
                        || format!("row {row}: cell {c} after cell {pc}"),
                    );
                } else if c == pc && g <= pg {
                    found.add(
                        "entries.gene_order",
                        place,
                        "a cell's genes are not strictly ascending",
                        || format!("row {row}: cell {c} gene {g} after gene {pg}"),
                    );
                }
            }
            last = Some((c, g));
        }
        if with_values {
            let values = arrow::compute::cast(batch.column(2), &DataType::Float32)
                .map_err(|e| Error::Internal(e.to_string()))?;
            let values = values.as_primitive::<Float32Type>();
            if values.null_count() > 0 {
                found.add("entries.null_value", place, "value has nulls", || {
                    format!("{} in a batch", values.null_count())
                });
            }
            out.stats.merge(&ValueStats::of_f32(values.values()));
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

/// `cell_start_index` against expression's rows: each cell's first row in scan order, or for
/// a cell without rows the next cell's (the row count after the last). Upstream's
/// multi-file conversions restart it at 0 for every input (defect B2): reported as such when
/// that is what happened.
pub(crate) fn check_start_index(
    cells: &Cells,
    entries: &Entries,
    multi_file: Option<&Value>,
    found: &mut Findings,
) {
    let place = "cells.lance";
    let mut next = entries.rows;
    let mut expected = vec![0u64; entries.first_row.len()];
    for (c, &first) in entries.first_row.iter().enumerate().rev() {
        if first != u64::MAX {
            next = first;
        }
        expected[c] = next;
    }
    for (cell, (&start, &want)) in cells.start_index.iter().zip(&expected).enumerate() {
        if start != want as i64 {
            found.add(
                "cells.start_index",
                place,
                "cell_start_index is not the cell's first row in expression.lance",
                || format!("cell {cell}: {start}, expected {want}"),
            );
        }
    }
    let files = multi_file.and_then(|m| m["source_files"].as_array());
    let restarts = files.into_iter().flatten().filter(|f| {
        let offset = f["cell_offset"].as_u64().unwrap_or(0);
        offset > 0 && cells.start_index.get(offset as usize) == Some(&0)
    });
    if restarts.count() > 0 {
        found.fact("cells.start_index_per_file", place, "cell_start_index restarts at 0 for each input file, as upstream's multi-file conversion writes it (defect B2): the reader returns the wrong rows for every cell after the first file");
    }
}

/// The `multi_file` block against the cells: totals add up, offsets follow each other, and
/// each file's cells carry its name in `source_file`.
pub(crate) fn check_multi_file(block: &Value, cells: &Cells, found: &mut Findings) {
    let place = crate::slaf::config_json::CONFIG_FILE;
    if block.is_null() {
        return;
    }
    let Some(files) = block["source_files"].as_array() else {
        found.fact(
            "config.multi_file",
            place,
            "multi_file.source_files is missing",
        );
        return;
    };
    let n_cells = cells.start_index.len() as u64;
    if block["total_files"].as_u64() != Some(files.len() as u64) {
        found.fact(
            "config.multi_file",
            place,
            format!(
                "multi_file.total_files is {}, source_files lists {}",
                block["total_files"],
                files.len()
            ),
        );
    }
    if block["total_cells_from_files"].as_u64() != Some(n_cells) {
        found.fact(
            "config.multi_file",
            place,
            format!(
                "multi_file.total_cells_from_files is {}, cells.lance has {n_cells}",
                block["total_cells_from_files"]
            ),
        );
    }
    let mut offset = 0u64;
    for f in files {
        let (n, at, name) = (
            f["n_cells"].as_u64().unwrap_or(0),
            f["cell_offset"].as_u64(),
            f["file_name"].as_str().unwrap_or(""),
        );
        if at != Some(offset) {
            found.add(
                "config.multi_file",
                place,
                "multi_file.source_files offsets do not follow each other",
                || format!("{name}: cell_offset {at:?}, expected {offset}"),
            );
        }
        if !cells.source_runs.is_empty()
            && !cells.source_runs.contains(&(name.to_string(), offset, n))
            && n > 0
        {
            found.add(
                "cells.source_file",
                "cells.lance",
                "source_file does not name each input's cells as multi_file lists them",
                || format!("{name}: cells {offset}..{}", offset + n),
            );
        }
        offset += n;
    }
}

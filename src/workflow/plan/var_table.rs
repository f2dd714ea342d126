//! The var columns of `genes.lance`, decided when planning: each dataset gene's row from the
//! first input that has it, in dataset order. The plan carries them as a base64 Arrow IPC
//! stream, so commit builds the genes table without opening any input.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use base64::Engine;

use crate::error::{Error, Result};
use crate::slaf::tables::project_columns;

/// One input's var columns and gene names, as its reader gave them.
pub struct InputVar<'a> {
    /// The input (for messages).
    pub path: &'a Path,
    /// Its var columns.
    pub var: &'a RecordBatch,
    /// Its gene names, in row order.
    pub names: &'a [String],
}

/// The dataset's var columns (`fields`) for `genes`: each gene's row from the first input
/// that has it. The first input's genes lead the dataset's by position, duplicates included
/// (10x gene symbols repeat); other inputs are matched by (unique) name.
pub fn dataset_var(genes: &[String], fields: &[Field], inputs: &[InputVar]) -> Result<RecordBatch> {
    let fields: Vec<FieldRef> = fields.iter().cloned().map(Arc::new).collect();
    let schema = Arc::new(Schema::new(fields.clone()));
    let index: HashMap<&str, usize> = genes
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let mut rows: Vec<Option<(usize, usize)>> = vec![None; genes.len()];
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut missing = genes.len();
    for input in inputs {
        if missing == 0 {
            break;
        }
        let columns = project_columns(input.var, &fields).map_err(|e| e.about_input(input.path))?;
        let projected = RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(input.var.num_rows())),
        )
        .map_err(|e| Error::Internal(format!("var batch: {e}")))?;
        let positional = genes.starts_with(input.names);
        for (local, name) in input.names.iter().enumerate() {
            let g = if positional {
                Some(local)
            } else {
                index.get(name.as_str()).copied()
            };
            if let Some(g) = g.filter(|&g| rows[g].is_none()) {
                rows[g] = Some((batches.len(), local));
                missing -= 1;
            }
        }
        batches.push(projected);
    }
    let picks: Vec<(usize, usize)> = rows
        .into_iter()
        .enumerate()
        .map(|(g, r)| {
            r.ok_or_else(|| Error::Internal(format!("gene '{}' is in no input", genes[g])))
        })
        .collect::<Result<_>>()?;
    // By hand rather than `interleave_record_batch`, which cannot build a batch without columns.
    // No genes (an input without features, as anndata allows): nothing to interleave from.
    let columns = (0..schema.fields().len())
        .map(|c| {
            if picks.is_empty() {
                return Ok(arrow::array::new_empty_array(schema.field(c).data_type()));
            }
            let arrays: Vec<&dyn arrow::array::Array> =
                batches.iter().map(|b| b.column(c).as_ref()).collect();
            arrow::compute::interleave(&arrays, &picks)
                .map_err(|e| Error::Internal(format!("var column: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(picks.len())),
    )
    .map_err(|e| Error::Internal(format!("var batch: {e}")))
}

/// `batch` as base64 of an Arrow IPC stream; empty when it has no columns.
pub fn encode(batch: &RecordBatch) -> Result<String> {
    if batch.num_columns() == 0 {
        return Ok(String::new());
    }
    let mut bytes = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema())
        .map_err(|e| Error::Internal(format!("var table: {e}")))?;
    writer
        .write(batch)
        .and_then(|()| writer.finish())
        .map_err(|e| Error::Internal(format!("var table: {e}")))?;
    drop(writer);
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The batch [`encode`] wrote, with `schema` and `rows` rows; `plan` names the plan file.
pub fn decode(text: &str, schema: SchemaRef, rows: usize, plan: &Path) -> Result<RecordBatch> {
    let bad = |what: String| Error::invalid(plan, format!("var_table: {what}"));
    if text.is_empty() {
        return RecordBatch::try_new_with_options(
            schema,
            Vec::new(),
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| bad(e.to_string()));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| bad(e.to_string()))?;
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| bad(e.to_string()))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let batch =
        arrow::compute::concat_batches(&schema, &batches).map_err(|e| bad(e.to_string()))?;
    if batch.num_rows() != rows {
        return Err(bad(format!("{} rows for {rows} genes", batch.num_rows())));
    }
    Ok(batch)
}

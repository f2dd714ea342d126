//! A value type the plan guessed too narrow. The plan guesses uint16 from a sample of the
//! values; a shard that meets a value uint16 cannot hold writes that part (X or a layer) as
//! float32 and says so in its receipt ([`Receipt::profile`]). The dataset then stores float32
//! there in every shard, as a plan that had read every value would have made it: here the
//! fragments of the shards that wrote uint16 are rewritten as float32 (the same values, the
//! same fragment boundaries) before the tables are committed.
//!
//! Each rewrite is recorded under the plan's receipts directory (`widened/shard-N.json`, with
//! the files it replaces), so that a later commit of the same receipts (a re-run after a
//! kill, or after Snakemake removed the marker) or a resumed `convert` finds the rewritten
//! files once cleanup has removed the narrow ones ([`recorded`]), instead of failing or
//! running the shards again for want of them. In an object store the records go under the
//! dataset's prefix the same way ([`Records`]).

use std::path::Path;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use lance::table::format::Fragment;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::json_file::{json_bytes, write_json_file};
use crate::slaf::pieces::LANCE_BREAK_ROWS;
use crate::slaf::schema::{
    expression_schema, layers_schema, CellTablesProfile, Pages, EXPRESSION_TABLE, LAYERS_TABLE,
};
use crate::slaf::writer::TableWriter;
use crate::store::Store;
use crate::values::ValueType;
use crate::workflow::plan::Plan;
use crate::workflow::shard::{Receipt, SHARED_RECEIPTS_DIR};

use super::receipts::Located;

/// A shard's receipt with its fragments rewritten in the dataset's value types.
#[derive(Debug, Serialize, Deserialize)]
struct WidenedRecord {
    /// The data files (`table/file`) of the receipt it replaces.
    replaces: Vec<String>,
    /// The receipt, with the rewritten fragments.
    receipt: Receipt,
}

/// The dataset's types: the plan's, widened to float32 wherever any shard wrote float32.
pub fn dataset_profile(plan: &Plan, receipts: &[Located]) -> CellTablesProfile {
    let mut profile = plan.profile.clone();
    for r in receipts {
        let written = r.receipt.written_profile(plan);
        if written.value_type == ValueType::Float32 {
            profile.value_type = ValueType::Float32;
        }
        for (t, w) in profile.layer_types.iter_mut().zip(&written.layer_types) {
            if *w == ValueType::Float32 {
                *t = ValueType::Float32;
            }
        }
    }
    profile
}

/// The record of an earlier rewrite of `receipt`'s fragments, if one names exactly the
/// receipt's files and its own files are all in the dataset: what a commit takes in place of
/// the receipt (whose narrow files cleanup has removed from a shared target).
pub fn recorded(plan: &Plan, receipt: &Receipt) -> Option<Receipt> {
    let text = std::fs::read(plan.output.join(record_rel(plan, receipt.shard))).ok()?;
    record_for(&text, receipt).filter(|r| r.missing_file(&plan.output).is_none())
}

/// The rewritten receipt a record (its bytes) holds, if it replaces exactly `receipt`'s files.
pub fn record_for(bytes: &[u8], receipt: &Receipt) -> Option<Receipt> {
    // Records are written whole: one that does not parse is not ours, and is ignored.
    let record = serde_json::from_slice::<WidenedRecord>(bytes).ok()?;
    (record.replaces == file_names(receipt)).then_some(record.receipt)
}

/// Where the records of rewrites go: under a local dataset, or under a dataset's prefix in
/// an object store.
pub enum Records<'a> {
    /// The local dataset directory.
    Local(&'a Path),
    /// The dataset's prefix.
    Store(&'a Store),
}

impl Records<'_> {
    async fn save(&self, rel: &str, record: &WidenedRecord) -> Result<()> {
        match self {
            Records::Local(root) => write_json_file(&root.join(rel), record),
            Records::Store(store) => store.write(rel, json_bytes(record)?).await,
        }
    }
}

/// Rewrite the expression and layers fragments of every receipt whose types differ from
/// `profile` (staged files already adopted into the dataset), and record each rewrite.
pub async fn widen_receipts(
    plan: &Plan,
    profile: &CellTablesProfile,
    receipts: &mut [Located],
    records: Records<'_>,
) -> Result<()> {
    let output = &plan.output;
    let narrow: Vec<usize> = (0..receipts.len())
        .filter(|&i| !same_types(receipts[i].receipt.written_profile(plan), profile))
        .collect();
    if narrow.is_empty() {
        return Ok(());
    }
    tracing::info!(
        event = "commit.widened",
        shards = narrow.len(),
        value_type = ?profile.value_type,
        "rewriting {} shards' fragments in the types another shard had to widen to",
        narrow.len()
    );
    let wide_expression =
        expression_schema(profile.ids.clone(), profile.value_type, profile.compression);
    let wide_layers = layers_schema(
        &profile.ids,
        &plan.parts.layers,
        &profile.layer_types,
        profile.compression,
    );
    for i in narrow {
        let replaces = file_names(&receipts[i].receipt);
        let receipt = &mut receipts[i].receipt;
        let written = receipt.written_profile(plan).clone();
        if written.value_type != profile.value_type {
            let schema =
                expression_schema(written.ids.clone(), written.value_type, written.compression);
            receipt.expression = rewrite(
                &output.join(EXPRESSION_TABLE),
                schema,
                &wide_expression,
                &receipt.expression,
                profile.pages,
            )
            .await?;
        }
        if written.layer_types != profile.layer_types && !receipt.layers.is_empty() {
            let schema = layers_schema(
                &written.ids,
                &plan.parts.layers,
                &written.layer_types,
                written.compression,
            );
            receipt.layers = rewrite(
                &output.join(LAYERS_TABLE),
                schema,
                &wide_layers,
                &receipt.layers,
                Pages::Lance,
            )
            .await?;
        }
        receipt.profile = Some(profile.clone());
        receipts[i].staged_dir = None;
        let record = WidenedRecord {
            replaces,
            receipt: receipt.clone(),
        };
        records
            .save(&record_rel(plan, record.receipt.shard), &record)
            .await?;
    }
    Ok(())
}

/// `fragments` of the table at `dir`, written as `narrow`, as new fragments of `wide`.
///
/// Lance reads fragments only through a dataset: they are committed first as a version of
/// their own (the dataset is not complete, and the final commit replaces it).
async fn rewrite(
    dir: &Path,
    narrow: SchemaRef,
    wide: &SchemaRef,
    fragments: &[Fragment],
    pages: Pages,
) -> Result<Vec<Fragment>> {
    if fragments.is_empty() {
        return Ok(Vec::new());
    }
    TableWriter::new(dir, narrow)?
        .commit(fragments.to_vec())
        .await?;
    let rewritten = rewrite_table(dir, wide, pages).await?;
    let rows = |f: &[Fragment]| f.iter().map(|f| f.physical_rows).collect::<Vec<_>>();
    if rows(&rewritten) != rows(fragments) {
        return Err(Error::Internal(format!(
            "{}: rewrote fragments of {:?} rows from fragments of {:?}",
            dir.display(),
            rows(&rewritten),
            rows(fragments)
        )));
    }
    Ok(rewritten)
}

/// Every fragment of the committed table at `dir`, in order, rewritten as an uncommitted
/// fragment of `wide` (the same rows and boundaries, each column cast).
pub(crate) async fn rewrite_table(
    dir: &Path,
    wide: &SchemaRef,
    pages: Pages,
) -> Result<Vec<Fragment>> {
    let uri = dir.to_string_lossy();
    let dataset = crate::store::lance::open_dataset(&uri)
        .await
        .map_err(|e| Error::lance(dir, e))?;
    let writer = TableWriter::new(dir, wide.clone())?.with_pages(pages);
    let mut rewritten = Vec::new();
    for fragment in dataset.get_fragments() {
        let mut scanner = fragment.scan();
        scanner.batch_size(LANCE_BREAK_ROWS);
        let mut batches = scanner
            .try_into_stream()
            .await
            .map_err(|e| Error::lance(dir, e))?;
        let (sender, task) = writer.start_fragment();
        let fed: Result<()> = async {
            while let Some(batch) = batches.next().await {
                let batch = batch.map_err(|e| Error::lance(dir, e))?;
                if sender.send(Ok(cast_to(&batch, wide, dir)?)).await.is_err() {
                    break; // the writer stopped: its task says why
                }
            }
            Ok(())
        }
        .await;
        drop(sender);
        if let Err(e) = fed {
            // No writer outlives the error (it would go on writing after the lock is gone).
            task.abort();
            let _ = task.await;
            return Err(e);
        }
        let written = task
            .await
            .map_err(|e| Error::Internal(format!("Lance writer task: {e}")))??;
        rewritten.extend(written);
    }
    Ok(rewritten)
}

/// `batch` with each column cast to its type in `schema` (uint16 values to float32: exact).
fn cast_to(batch: &RecordBatch, schema: &SchemaRef, dir: &Path) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .and_then(|columns| RecordBatch::try_new(schema.clone(), columns))
        .map_err(|e| Error::Internal(format!("{}: widening a batch: {e}", dir.display())))?;
    Ok(columns)
}

fn same_types(a: &CellTablesProfile, b: &CellTablesProfile) -> bool {
    a.value_type == b.value_type && a.layer_types == b.layer_types
}

fn file_names(receipt: &Receipt) -> Vec<String> {
    receipt
        .data_files()
        .into_iter()
        .map(|(table, file)| format!("{table}/{file}"))
        .collect()
}

/// Where the record of shard `shard`'s rewrite goes, relative to the dataset.
pub fn record_rel(plan: &Plan, shard: usize) -> String {
    format!(
        "{SHARED_RECEIPTS_DIR}/{}/widened/shard-{shard:06}.json",
        plan.plan_hash
    )
}

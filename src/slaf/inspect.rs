//! `inspect`: what a `.slaf` directory holds, read back through Lance.
//!
//! Prints the config summary, then for every table in `config.json`: its schema, row and
//! fragment counts and its first rows. Used by the README's example and by people checking an
//! output without Python, local or in an object store (Lance reads it there through
//! [`crate::store::lance`]).

use std::fmt::Write as _;
use std::path::Path;

use futures::TryStreamExt;

use crate::error::{Error, Result};
use crate::location::store_uri;
use crate::slaf::config_json::CONFIG_FILE;
use crate::store::lance::open_dataset;
use crate::store::Store;

/// Render a description of the dataset at `dir` (a local path, or an s3://, gs:// or az://
/// URI), showing `rows` rows per table.
pub async fn describe(dir: &Path, rows: usize) -> Result<String> {
    let config_path = dir.join(CONFIG_FILE);
    let text = match store_uri(dir.as_os_str()) {
        Some(_) => {
            let store = Store::open(&dir.to_string_lossy())?;
            let bytes = store.read(CONFIG_FILE).await?.ok_or_else(|| {
                Error::invalid(store.shown(), "no config.json: not a finished SLAF dataset")
            })?;
            String::from_utf8(bytes)
                .map_err(|_| Error::invalid(store.shown_child(CONFIG_FILE), "not UTF-8"))?
        }
        None => std::fs::read_to_string(&config_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::invalid(dir, "no config.json: not a finished SLAF dataset")
            } else {
                Error::io(&config_path, e)
            }
        })?,
    };
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(&config_path, format!("not valid JSON: {e}")))?;
    let mut out = String::new();
    let meta = &config["metadata"];
    let _ = writeln!(
        out,
        "{}: SLAF format {}, shape {} (cells x genes), {} expression rows, density {:.4}",
        dir.display(),
        config["format_version"].as_str().unwrap_or("?"),
        config["array_shape"],
        meta["expression_count"],
        meta["density"].as_f64().unwrap_or(f64::NAN),
    );
    let stats = &meta["expression_stats"];
    let _ = writeln!(
        out,
        "values: min {} max {} mean {:.4} std {:.4}",
        stats["min_value"],
        stats["max_value"],
        stats["mean_value"].as_f64().unwrap_or(f64::NAN),
        stats["std_value"].as_f64().unwrap_or(f64::NAN),
    );
    let tables = config["tables"].as_object().cloned().unwrap_or_default();
    for (name, rel) in tables {
        let Some(rel) = rel.as_str() else { continue };
        let table_dir = dir.join(rel);
        let uri = table_dir.to_string_lossy().to_string();
        let ds = open_dataset(&uri)
            .await
            .map_err(|e| Error::lance(&table_dir, e))?;
        let n = ds
            .count_rows(None)
            .await
            .map_err(|e| Error::lance(&table_dir, e))?;
        let _ = writeln!(
            out,
            "\n{name} ({rel}): {n} rows in {} fragments, Lance version {}",
            ds.get_fragments().len(),
            ds.version().version
        );
        let arrow_schema = arrow::datatypes::Schema::from(ds.schema());
        for f in arrow_schema.fields() {
            let _ = writeln!(out, "  {}: {}", f.name(), f.data_type());
        }
        if rows == 0 || n == 0 {
            continue;
        }
        let mut scan = ds.scan();
        scan.limit(Some(rows as i64), None)
            .map_err(|e| Error::lance(&table_dir, e))?;
        let batches: Vec<arrow::array::RecordBatch> = scan
            .try_into_stream()
            .await
            .map_err(|e| Error::lance(&table_dir, e))?
            .try_collect()
            .await
            .map_err(|e| Error::lance(&table_dir, e))?;
        let shown = arrow::util::pretty::pretty_format_batches(&batches)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let _ = writeln!(out, "{shown}");
    }
    Ok(out)
}

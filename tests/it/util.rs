//! Test helpers: an h5ad writer on the hdf5 crate (anndata's on-disk layout), a command
//! around the built binary, and readers of the written Lance tables.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::RwLock;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Int64Type};
use futures::TryStreamExt;
use hdf5::types::VarLenUnicode;
use hdf5::{Group, Location};

/// Held (shared) while a test has an HDF5 file open, and (exclusively) while a child process
/// is spawned: a child inherits every open descriptor, and with it HDF5's lock on another
/// test's file, which then stays locked for the child's lifetime.
static HDF5_OPEN: RwLock<()> = RwLock::new(());

/// Spawn `cmd` while no test holds an HDF5 file open, then wait for it.
pub fn run(cmd: &mut std::process::Command) -> Output {
    let child = {
        let _no_open_files = HDF5_OPEN.write().unwrap_or_else(|e| e.into_inner());
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    child.wait_with_output().expect("wait")
}

/// Run `slaf-convert ARGS...`.
pub fn slaf_convert(args: &[&str]) -> Output {
    run(
        std::process::Command::new(env!("CARGO_BIN_EXE_slaf-convert"))
            .args(args)
            .env("SLAF_CONVERT_LOG", "warn"),
    )
}

/// Create the HDF5 file `path` and fill it with `fill`; every handle is closed on return.
pub fn h5_file(path: &Path, fill: impl FnOnce(&hdf5::File)) {
    let _open = HDF5_OPEN.read().unwrap_or_else(|e| e.into_inner());
    let file = hdf5::File::create(path).unwrap();
    fill(&file);
}

/// Convert `input` to `output`, asserting success.
pub fn convert_ok(input: &Path, output: &Path, extra: &[&str]) {
    let mut args = vec!["convert", input.to_str().unwrap(), output.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = slaf_convert(&args);
    assert!(
        out.status.success(),
        "convert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn vlen(s: &str) -> VarLenUnicode {
    VarLenUnicode::from_str(s).unwrap()
}

/// Scalar string attribute.
pub fn str_attr(loc: &Location, name: &str, value: &str) {
    loc.new_attr::<VarLenUnicode>()
        .create(name)
        .unwrap()
        .write_scalar(&vlen(value))
        .unwrap();
}

/// String-array attribute.
pub fn str_array_attr(loc: &Location, name: &str, values: &[&str]) {
    let v: Vec<VarLenUnicode> = values.iter().map(|s| vlen(s)).collect();
    loc.new_attr::<VarLenUnicode>()
        .shape(v.len())
        .create(name)
        .unwrap()
        .write(&v)
        .unwrap();
}

/// A `string-array` dataset.
pub fn strings(group: &Group, name: &str, values: &[String]) {
    let v: Vec<VarLenUnicode> = values.iter().map(|s| vlen(s)).collect();
    let ds = group
        .new_dataset::<VarLenUnicode>()
        .shape(v.len())
        .create(name)
        .unwrap();
    if !v.is_empty() {
        ds.write(&v).unwrap();
    }
    str_attr(&ds, "encoding-type", "string-array");
    str_attr(&ds, "encoding-version", "0.2.0");
}

/// A numeric dataset.
pub fn numbers<T: hdf5::H5Type + Clone>(group: &Group, name: &str, values: &[T]) -> hdf5::Dataset {
    let ds = group
        .new_dataset::<T>()
        .shape(values.len())
        .create(name)
        .unwrap();
    if !values.is_empty() {
        ds.write(values).unwrap();
    }
    str_attr(&ds, "encoding-type", "array");
    str_attr(&ds, "encoding-version", "0.2.0");
    ds
}

/// A dataframe group with an index and no columns yet (`columns` names the column order).
pub fn dataframe(root: &Group, name: &str, index: &[String], columns: &[&str]) -> Group {
    let g = root.create_group(name).unwrap();
    str_attr(&g, "encoding-type", "dataframe");
    str_attr(&g, "encoding-version", "0.2.0");
    str_attr(&g, "_index", "_index");
    str_array_attr(&g, "column-order", columns);
    strings(&g, "_index", index);
    g
}

/// How X is stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Storage {
    Csr,
    Csc,
    Dense,
}

/// A dense cells × genes matrix with names, written as an h5ad in any storage.
pub struct Matrix {
    pub rows: Vec<Vec<f64>>,
    pub n_genes: usize,
}

impl Matrix {
    pub fn cell_names(&self) -> Vec<String> {
        (0..self.rows.len()).map(|i| format!("cell{i}")).collect()
    }
    pub fn gene_names(&self) -> Vec<String> {
        (0..self.n_genes).map(|j| format!("gene{j}")).collect()
    }
    /// (cell, gene, value) of the non-zeros, cell-major.
    pub fn triplets(&self) -> Vec<(i64, i64, f64)> {
        let mut out = Vec::new();
        for (i, row) in self.rows.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    out.push((i as i64, j as i64, v));
                }
            }
        }
        out
    }
}

/// Write `m` as `path` with X in `storage` and plain obs/var (index only); `extra` may then
/// change the file.
pub fn write_h5ad_with(path: &Path, m: &Matrix, storage: Storage, extra: impl FnOnce(&hdf5::File)) {
    h5_file(path, |file| {
        str_attr(file, "encoding-type", "anndata");
        str_attr(file, "encoding-version", "0.1.0");
        write_x(file, m, storage);
        dataframe(file, "obs", &m.cell_names(), &[]);
        dataframe(file, "var", &m.gene_names(), &[]);
        extra(file);
    });
}

/// Write `m` as `path` with X in `storage` and plain obs/var (index only).
pub fn write_h5ad(path: &Path, m: &Matrix, storage: Storage) {
    write_h5ad_with(path, m, storage, |_| {});
}

/// Write X of `m` into `root`.
pub fn write_x(root: &Group, m: &Matrix, storage: Storage) {
    let (n, g) = (m.rows.len(), m.n_genes);
    if storage == Storage::Dense {
        let flat: Vec<f32> = m.rows.iter().flatten().map(|&v| v as f32).collect();
        let ds = root.new_dataset::<f32>().shape((n, g)).create("X").unwrap();
        if !flat.is_empty() {
            ds.write_raw(&flat).unwrap();
        }
        str_attr(&ds, "encoding-type", "array");
        str_attr(&ds, "encoding-version", "0.2.0");
        return;
    }
    let (major, minor) = if storage == Storage::Csr {
        (n, g)
    } else {
        (g, n)
    };
    let mut data = Vec::new();
    let mut indices = Vec::new();
    let mut indptr = vec![0i32];
    for a in 0..major {
        for b in 0..minor {
            let v = if storage == Storage::Csr {
                m.rows[a][b]
            } else {
                m.rows[b][a]
            };
            if v != 0.0 {
                data.push(v as f32);
                indices.push(b as i32);
            }
        }
        indptr.push(data.len() as i32);
    }
    let x = root.create_group("X").unwrap();
    let enc = if storage == Storage::Csr {
        "csr_matrix"
    } else {
        "csc_matrix"
    };
    str_attr(&x, "encoding-type", enc);
    str_attr(&x, "encoding-version", "0.1.0");
    x.new_attr::<i64>()
        .shape(2)
        .create("shape")
        .unwrap()
        .write(&[n as i64, g as i64])
        .unwrap();
    numbers(&x, "data", &data);
    numbers(&x, "indices", &indices);
    numbers(&x, "indptr", &indptr);
}

/// 80 cells x 1000 genes of counts, except 2.5 in the last cell: past the 65,536 values the
/// plan samples for the value type, so only the shard that writes it finds it.
pub fn late_fraction_matrix() -> Matrix {
    let mut m = Matrix {
        rows: (0..80)
            .map(|i| (0..1000).map(|j| ((i + j) % 7 + 1) as f64).collect())
            .collect(),
        n_genes: 1000,
    };
    m.rows[79][999] = 2.5;
    m
}

/// A small seeded matrix with empty cells and genes, integer counts.
pub fn sample_matrix(n: usize, g: usize, seed: u64) -> Matrix {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let rows = (0..n)
        .map(|i| {
            (0..g)
                .map(|_| {
                    let r = next();
                    if i % 5 == 3 || r % 4 != 0 {
                        0.0
                    } else {
                        (r % 37 + 1) as f64
                    }
                })
                .collect()
        })
        .collect();
    Matrix { rows, n_genes: g }
}

/// All rows of a Lance table as one batch.
pub fn read_table(dir: &Path) -> RecordBatch {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ds = lance::Dataset::open(dir.to_str().unwrap()).await.unwrap();
        let batches: Vec<RecordBatch> = ds
            .scan()
            .try_into_stream()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::from(ds.schema()));
        concat_batches(&schema, &batches).unwrap()
    })
}

/// Number of fragments of a Lance table.
pub fn fragment_count(dir: &Path) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        lance::Dataset::open(dir.to_str().unwrap())
            .await
            .unwrap()
            .get_fragments()
            .len()
    })
}

/// A column as i64, whatever its integer type.
pub fn ints(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let cast = arrow::compute::cast(col, &DataType::Int64).unwrap();
    cast.as_primitive::<Int64Type>().values().to_vec()
}

/// A column as f64.
pub fn floats(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let col = batch.column_by_name(name).unwrap();
    let cast = arrow::compute::cast(col, &DataType::Float64).unwrap();
    let a = cast.as_primitive::<arrow::datatypes::Float64Type>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect()
}

/// A string column.
pub fn texts(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = batch.column_by_name(name).unwrap().as_string::<i32>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect()
}

/// A temporary directory for one test.
pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `dir/name`.
pub fn at(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

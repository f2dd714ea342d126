//! h5ad → SLAF, table by table: values, ids, order, start indices, config keys.

use crate::util::*;

fn check_dataset(out: &std::path::Path, m: &Matrix) {
    let expr = read_table(&out.join("expression.lance"));
    let cells = ints(&expr, "cell_integer_id");
    let genes = ints(&expr, "gene_integer_id");
    let values: Vec<f64> = floats(&expr, "value")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let got: Vec<(i64, i64, f64)> = cells
        .iter()
        .zip(&genes)
        .zip(&values)
        .map(|((&c, &g), &v)| (c, g, v))
        .collect();
    assert_eq!(
        got,
        m.triplets(),
        "expression rows, cell-major, genes ascending"
    );

    let cell_table = read_table(&out.join("cells.lance"));
    let names: Vec<String> = texts(&cell_table, "cell_id")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(names, m.cell_names());
    let n = m.rows.len() as i64;
    assert_eq!(
        ints(&cell_table, "cell_integer_id"),
        (0..n).collect::<Vec<_>>()
    );
    // cell_start_index: the global row of each cell's first entry.
    let mut expected = Vec::new();
    let mut acc = 0i64;
    for row in &m.rows {
        expected.push(acc);
        acc += row.iter().filter(|&&v| v != 0.0).count() as i64;
    }
    assert_eq!(ints(&cell_table, "cell_start_index"), expected);
    assert_eq!(
        cell_table
            .schema()
            .field_with_name("cell_start_index")
            .unwrap()
            .data_type(),
        &arrow::datatypes::DataType::Int64
    );

    let gene_table = read_table(&out.join("genes.lance"));
    let gnames: Vec<String> = texts(&gene_table, "gene_id")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(gnames, m.gene_names());
    assert_eq!(
        ints(&gene_table, "gene_integer_id"),
        (0..m.n_genes as i64).collect::<Vec<_>>()
    );

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["format_version"], "0.5");
    assert_eq!(
        config["array_shape"],
        serde_json::json!([m.rows.len(), m.n_genes])
    );
    assert_eq!(config["n_cells"], m.rows.len());
    assert_eq!(config["tables"]["expression"], "expression.lance");
    let triplets = m.triplets();
    assert_eq!(config["metadata"]["expression_count"], triplets.len());
    let vals: Vec<f64> = triplets.iter().map(|t| t.2).collect();
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (vals.len() - 1) as f64;
    let stats = &config["metadata"]["expression_stats"];
    assert!((stats["mean_value"].as_f64().unwrap() - mean).abs() < 1e-9);
    assert!((stats["std_value"].as_f64().unwrap() - var.sqrt()).abs() < 1e-9);
    assert_eq!(
        stats["max_value"].as_f64().unwrap(),
        vals.iter().cloned().fold(f64::MIN, f64::max)
    );
}

#[test]
fn test_csr_roundtrip() {
    let dir = tmp();
    let m = sample_matrix(23, 11, 1);
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    convert_ok(
        &at(&dir, "x.h5ad"),
        &at(&dir, "x.slaf"),
        &["--chunk-size", "5"],
    );
    check_dataset(&at(&dir, "x.slaf"), &m);
    let expr = read_table(&at(&dir, "x.slaf").join("expression.lance"));
    // Integral counts within [0, 65535]: uint16 values; default int32 ids.
    let schema = expr.schema();
    assert_eq!(
        schema.field_with_name("value").unwrap().data_type(),
        &arrow::datatypes::DataType::UInt16
    );
    assert_eq!(
        schema
            .field_with_name("cell_integer_id")
            .unwrap()
            .data_type(),
        &arrow::datatypes::DataType::Int32
    );
    // One fragment per non-empty chunk of 5 cells.
    assert_eq!(
        fragment_count(&at(&dir, "x.slaf").join("expression.lance")),
        5
    );
}

#[test]
fn test_csc_roundtrip_is_cell_major() {
    let dir = tmp();
    let m = sample_matrix(31, 9, 2);
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csc);
    convert_ok(
        &at(&dir, "x.h5ad"),
        &at(&dir, "x.slaf"),
        &["--chunk-size", "4"],
    );
    check_dataset(&at(&dir, "x.slaf"), &m);
}

#[test]
fn test_dense_roundtrip_keeps_nonzeros() {
    let dir = tmp();
    let m = sample_matrix(17, 13, 3);
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Dense);
    convert_ok(
        &at(&dir, "x.h5ad"),
        &at(&dir, "x.slaf"),
        &["--chunk-size", "6"],
    );
    check_dataset(&at(&dir, "x.slaf"), &m);
}

#[test]
fn test_fractional_values_are_float32() {
    let dir = tmp();
    let mut m = sample_matrix(8, 5, 4);
    for row in &mut m.rows {
        for v in row.iter_mut() {
            if *v != 0.0 {
                *v += 0.25;
            }
        }
    }
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    convert_ok(&at(&dir, "x.h5ad"), &at(&dir, "x.slaf"), &[]);
    check_dataset(&at(&dir, "x.slaf"), &m);
    let expr = read_table(&at(&dir, "x.slaf").join("expression.lance"));
    assert_eq!(
        expr.schema().field_with_name("value").unwrap().data_type(),
        &arrow::datatypes::DataType::Float32
    );
}

#[test]
fn test_obs_encodings() {
    use hdf5::types::VarLenUnicode;
    use std::str::FromStr;
    let dir = tmp();
    let m = sample_matrix(4, 3, 5);
    // Every handle is closed before the converter opens the file (HDF5 file locking).
    h5_file(&at(&dir, "x.h5ad"), |file| {
        str_attr(file, "encoding-type", "anndata");
        write_x(file, &m, Storage::Csr);
        dataframe(file, "var", &m.gene_names(), &[]);
        let obs = dataframe(
            file,
            "obs",
            &m.cell_names(),
            &["pct.mt", "kind", "count", "flag", "maybe", "label", "total"],
        );
        numbers(&obs, "pct.mt", &[0.5f32, f32::NAN, 1.5, 2.0]);
        let cat = obs.create_group("kind").unwrap();
        str_attr(&cat, "encoding-type", "categorical");
        let cats: Vec<VarLenUnicode> = ["B", "T"]
            .iter()
            .map(|s| VarLenUnicode::from_str(s).unwrap())
            .collect();
        let ds = cat
            .new_dataset::<VarLenUnicode>()
            .shape(2)
            .create("categories")
            .unwrap();
        ds.write(&cats).unwrap();
        numbers(&cat, "codes", &[0i8, -1, 1, 0]);
        let nint = obs.create_group("count").unwrap();
        str_attr(&nint, "encoding-type", "nullable-integer");
        numbers(&nint, "values", &[1i64, 2, 3, 4]);
        numbers(&nint, "mask", &[false, true, false, false]);
        numbers(&obs, "flag", &[true, false, true, true]);
        let nbool = obs.create_group("maybe").unwrap();
        str_attr(&nbool, "encoding-type", "nullable-boolean");
        numbers(&nbool, "values", &[true, false, true, false]);
        numbers(&nbool, "mask", &[false, false, true, false]);
        let nstr = obs.create_group("label").unwrap();
        str_attr(&nstr, "encoding-type", "nullable-string-array");
        strings(
            &nstr,
            "values",
            &["a".into(), "b".into(), "".into(), "d".into()],
        );
        numbers(&nstr, "mask", &[false, false, true, false]);
        numbers(&obs, "total", &[10u32, 20, 30, 40]);
    });

    convert_ok(
        &at(&dir, "x.h5ad"),
        &at(&dir, "x.slaf"),
        &["--chunk-size", "3"],
    );
    let cells = read_table(&at(&dir, "x.slaf").join("cells.lance"));
    let names: Vec<String> = cells
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "pct_mt",
            "kind",
            "count",
            "flag",
            "maybe",
            "label",
            "total",
            "cell_id",
            "cell_integer_id",
            "cell_start_index"
        ]
    );
    assert_eq!(
        floats(&cells, "pct_mt"),
        vec![Some(0.5), None, Some(1.5), Some(2.0)]
    );
    assert_eq!(
        texts(&cells, "kind"),
        vec![Some("B".into()), None, Some("T".into()), Some("B".into())]
    );
    assert_eq!(
        floats(&cells, "count"),
        vec![Some(1.0), None, Some(3.0), Some(4.0)]
    );
    let flag = cells.column_by_name("flag").unwrap();
    assert_eq!(flag.data_type(), &arrow::datatypes::DataType::Boolean);
    let maybe =
        arrow::array::AsArray::as_boolean(cells.column_by_name("maybe").unwrap().as_ref()).clone();
    assert_eq!(
        maybe.iter().collect::<Vec<_>>(),
        vec![Some(true), Some(false), None, Some(false)]
    );
    assert_eq!(
        texts(&cells, "label"),
        vec![Some("a".into()), Some("b".into()), None, Some("d".into())]
    );
    assert_eq!(
        cells.schema().field_with_name("total").unwrap().data_type(),
        &arrow::datatypes::DataType::UInt32
    );
}

#[test]
fn test_compact_ids() {
    let dir = tmp();
    let m = sample_matrix(6, 4, 6);
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    convert_ok(
        &at(&dir, "x.h5ad"),
        &at(&dir, "x.slaf"),
        &["--id-types", "compact"],
    );
    let expr = read_table(&at(&dir, "x.slaf").join("expression.lance"));
    let schema = expr.schema();
    assert_eq!(
        schema
            .field_with_name("cell_integer_id")
            .unwrap()
            .data_type(),
        &arrow::datatypes::DataType::UInt32
    );
    assert_eq!(
        schema
            .field_with_name("gene_integer_id")
            .unwrap()
            .data_type(),
        &arrow::datatypes::DataType::UInt16
    );
    check_dataset(&at(&dir, "x.slaf"), &m);
}

#[test]
fn test_zero_cells() {
    let dir = tmp();
    let m = Matrix {
        rows: vec![],
        n_genes: 5,
    };
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    convert_ok(&at(&dir, "x.h5ad"), &at(&dir, "x.slaf"), &[]);
    assert_eq!(
        read_table(&at(&dir, "x.slaf").join("expression.lance")).num_rows(),
        0
    );
    assert_eq!(
        read_table(&at(&dir, "x.slaf").join("cells.lance")).num_rows(),
        0
    );
    assert_eq!(
        read_table(&at(&dir, "x.slaf").join("genes.lance")).num_rows(),
        5
    );
}

/// Re-create `X/<name>` of `file` with `build`'s storage (chunking, filters), same values.
fn restore_x_array<T: hdf5::H5Type + Clone>(
    file: &hdf5::File,
    name: &str,
    build: impl Fn(hdf5::DatasetBuilder) -> hdf5::DatasetBuilder,
) {
    let x = file.group("X").unwrap();
    let values: Vec<T> = x.dataset(name).unwrap().read_raw().unwrap();
    x.unlink(name).unwrap();
    let ds = build(x.new_dataset_builder())
        .with_data(&values)
        .create(name)
        .unwrap();
    drop(ds);
}

/// Run convert with info-level JSON logs; returns stderr.
fn convert_logged(input: &std::path::Path, output: &std::path::Path, extra: &[&str]) -> String {
    let out = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_slaf-convert"))
            .args(["--log-format", "json", "convert"])
            .arg(input)
            .arg(output)
            .args(extra)
            .env("SLAF_CONVERT_LOG", "info"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "convert failed: {stderr}");
    stderr
}

/// X's arrays stored as HDF5 files in the wild store them: gzip'd chunks (anndata's
/// compression="gzip"), shuffle + gzip, chunks that do not divide the length, no filter, and
/// lzf, which the direct chunk reader leaves to the HDF5 library (and says so). Every storage
/// converts to the same rows.
#[test]
fn test_x_storage_variants() {
    let m = sample_matrix(57, 40, 11);
    type Build = fn(hdf5::DatasetBuilder) -> hdf5::DatasetBuilder;
    let variants: [(&str, Build, bool); 5] = [
        ("deflate", |b| b.chunk(48).deflate(4), false),
        (
            "shuffle-deflate",
            |b| b.chunk(50).shuffle().deflate(6),
            false,
        ),
        ("odd-chunks", |b| b.chunk(7).deflate(1), false),
        ("chunked-plain", |b| b.chunk(33), false),
        ("lzf", |b| b.chunk(48).lzf(), true),
    ];
    for (name, build, library) in variants {
        let dir = tmp();
        let input = at(&dir, "x.h5ad");
        write_h5ad_with(&input, &m, Storage::Csr, |file| {
            restore_x_array::<f32>(file, "data", build);
            restore_x_array::<i32>(file, "indices", build);
            restore_x_array::<i32>(file, "indptr", build);
        });
        let logs = convert_logged(&input, &at(&dir, "x.slaf"), &["--chunk-size", "9"]);
        check_dataset(&at(&dir, "x.slaf"), &m);
        assert_eq!(
            logs.contains("\"event\":\"read.library\""),
            library,
            "{name}: library fallback logged only for lzf: {logs}"
        );
    }
}

/// A chunk of X's `data` that was never written reads as zeros (HDF5's default fill value),
/// exactly as h5py reads it: the file converts to what the same file with those zeros written
/// out converts to. The direct reader lists the chunks in one walk of the chunk index, so a
/// missing chunk is one the walk did not report.
#[test]
fn test_unwritten_x_chunk_reads_as_zeros() {
    let m = sample_matrix(57, 40, 12);
    let chunk = 16;
    let dir = tmp();
    let (sparse, dense) = (at(&dir, "sparse.h5ad"), at(&dir, "dense.h5ad"));
    for (input, write_hole) in [(&sparse, false), (&dense, true)] {
        write_h5ad_with(input, &m, Storage::Csr, |file| {
            let x = file.group("X").unwrap();
            let mut values: Vec<f32> = x.dataset("data").unwrap().read_raw().unwrap();
            assert!(
                values.len() > 3 * chunk,
                "the matrix spans more than three chunks"
            );
            values[chunk..2 * chunk].iter_mut().for_each(|v| *v = 0.0);
            x.unlink("data").unwrap();
            let ds = x
                .new_dataset::<f32>()
                .chunk(chunk)
                .deflate(4)
                .shape(values.len())
                .create("data")
                .unwrap();
            if write_hole {
                ds.write(&values).unwrap();
            } else {
                ds.write_slice(&values[..chunk], ..chunk).unwrap();
                ds.write_slice(&values[2 * chunk..], 2 * chunk..).unwrap();
            }
        });
    }
    let stored_chunks = |input: &std::path::Path| {
        let file = hdf5::File::open(input).unwrap();
        file.dataset("X/data").unwrap().num_chunks().unwrap()
    };
    assert_eq!(
        stored_chunks(&sparse) + 1,
        stored_chunks(&dense),
        "one chunk never written"
    );
    for name in ["sparse", "dense"] {
        let logs = convert_logged(
            &at(&dir, &format!("{name}.h5ad")),
            &at(&dir, &format!("{name}.slaf")),
            &[],
        );
        assert!(
            !logs.contains("\"event\":\"read.library\""),
            "{name}: read directly, not by the library: {logs}"
        );
    }
    let table = |name: &str| read_table(&at(&dir, name).join("expression.lance"));
    assert_eq!(table("sparse.slaf"), table("dense.slaf"));
}

/// convert reads X once: the value type comes from a sample of the values and every value is
/// checked as it is written. A fraction past the sample makes the shard write float32 from the
/// start again, and nothing of the first attempt is left in the output.
#[test]
fn test_value_type_guess_is_checked() {
    let dir = tmp();
    let m = late_fraction_matrix();
    let input = at(&dir, "x.h5ad");
    write_h5ad(&input, &m, Storage::Csr);
    let logs = convert_logged(&input, &at(&dir, "x.slaf"), &["--chunk-size", "10"]);
    assert!(logs.contains("\"event\":\"shard.widened\""), "{logs}");
    check_dataset(&at(&dir, "x.slaf"), &m);
    let expression = at(&dir, "x.slaf").join("expression.lance");
    let expr = read_table(&expression);
    assert_eq!(
        expr.schema().field_with_name("value").unwrap().data_type(),
        &arrow::datatypes::DataType::Float32
    );
    let data_files = std::fs::read_dir(expression.join("data")).unwrap().count();
    assert_eq!(
        data_files,
        fragment_count(&expression),
        "no files of the first attempt"
    );
    assert_eq!(data_files, 8);
    // What convert reports is what it stored.
    let again = at(&dir, "again.slaf");
    let out = slaf_convert(&[
        "convert",
        input.to_str().unwrap(),
        again.to_str().unwrap(),
        "--chunk-size",
        "10",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(Float32 values)"), "{stdout}");
}

//! One test per upstream defect we must not copy (docs/slaf-format.md §5.5).

use crate::util::*;

/// B9: CSC input gave gene-major rows, so cell lookups returned the wrong cells.
#[test]
fn b09_csc_input_is_cell_major() {
    let dir = tmp();
    let m = sample_matrix(40, 7, 9);
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csc);
    convert_ok(
        &at(&dir, "x.h5ad"),
        &at(&dir, "x.slaf"),
        &["--chunk-size", "3"],
    );
    let expr = read_table(&at(&dir, "x.slaf").join("expression.lance"));
    let cells = ints(&expr, "cell_integer_id");
    assert!(cells.windows(2).all(|w| w[0] <= w[1]), "cells ascending");
    assert_eq!(cells.len(), m.triplets().len());
}

/// B7: value type decided from a 10,000-value prefix; a later fractional value was truncated.
#[test]
fn b07_value_type_checks_every_value() {
    let dir = tmp();
    let mut m = sample_matrix(30, 700, 10);
    let last = m.rows.len() - 1;
    m.rows[last][699] = 2.5;
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    convert_ok(&at(&dir, "x.h5ad"), &at(&dir, "x.slaf"), &[]);
    let expr = read_table(&at(&dir, "x.slaf").join("expression.lance"));
    let values = floats(&expr, "value");
    assert_eq!(values.last().copied().flatten(), Some(2.5));
}

/// B17: std computed with squares in uint16 wrapped past 255.
#[test]
fn b17_std_of_large_counts() {
    let dir = tmp();
    let m = Matrix {
        rows: vec![vec![1000.0, 3000.0]],
        n_genes: 2,
    };
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    convert_ok(&at(&dir, "x.h5ad"), &at(&dir, "x.slaf"), &[]);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(at(&dir, "x.slaf").join("config.json")).unwrap(),
    )
    .unwrap();
    let std = config["metadata"]["expression_stats"]["std_value"]
        .as_f64()
        .unwrap();
    assert!((std - 2_000_000f64.sqrt()).abs() < 1e-9, "std {std}");
}

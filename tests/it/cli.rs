//! The command line: help, exit codes and one-line errors for bad input.

use crate::util::*;

fn assert_fails(input: &std::path::Path, code: i32, needle: &str) {
    let dir = tmp();
    let out_dir = at(&dir, "out.slaf");
    let out = slaf_convert(&[
        "convert",
        input.to_str().unwrap(),
        out_dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    assert!(
        lines[0].contains(input.to_str().unwrap()),
        "names the file: {stderr}"
    );
    assert!(
        lines[0].contains(needle),
        "says what is wrong ({needle}): {stderr}"
    );
    assert!(!out_dir.join("config.json").exists());
    assert!(!out_dir.exists(), "no output left behind");
}

#[test]
fn test_help_lists_exit_codes() {
    let out = slaf_convert(&["convert", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--chunk-size"));
    let out = slaf_convert(&["--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("65"));
}

#[test]
fn test_not_hdf5() {
    let dir = tmp();
    let p = at(&dir, "bad.h5ad");
    std::fs::write(&p, b"this is not an hdf5 file at all").unwrap();
    assert_fails(&p, 65, "HDF5");
}

#[test]
fn test_truncated() {
    let dir = tmp();
    let m = sample_matrix(50, 40, 1);
    let p = at(&dir, "full.h5ad");
    write_h5ad(&p, &m, Storage::Csr);
    let bytes = std::fs::read(&p).unwrap();
    let cut = at(&dir, "cut.h5ad");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = slaf_convert(&[
        "convert",
        cut.to_str().unwrap(),
        at(&dir, "o.slaf").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("cut.h5ad"));
    assert!(!at(&dir, "o.slaf").join("config.json").exists());
}

#[test]
fn test_missing_x() {
    let dir = tmp();
    let p = at(&dir, "nox.h5ad");
    h5_file(&p, |file| {
        str_attr(file, "encoding-type", "anndata");
        dataframe(file, "obs", &["a".into()], &[]);
        dataframe(file, "var", &["g".into()], &[]);
    });
    assert_fails(&p, 65, "/X: missing");
}

#[test]
fn test_unsupported_matrix_encoding() {
    let dir = tmp();
    let p = at(&dir, "coo.h5ad");
    let m = sample_matrix(3, 3, 1);
    write_h5ad_with(&p, &m, Storage::Csr, |file| {
        let x = file.group("X").unwrap();
        x.delete_attr("encoding-type").unwrap();
        str_attr(&x, "encoding-type", "coo_matrix");
    });
    assert_fails(&p, 65, "unsupported matrix encoding 'coo_matrix'");
}

#[test]
fn test_unsupported_column_encoding() {
    let dir = tmp();
    let p = at(&dir, "awk.h5ad");
    let m = sample_matrix(3, 3, 1);
    h5_file(&p, |file| {
        str_attr(file, "encoding-type", "anndata");
        write_x(file, &m, Storage::Csr);
        dataframe(file, "var", &m.gene_names(), &[]);
        let obs = dataframe(file, "obs", &m.cell_names(), &["weird"]);
        let g = obs.create_group("weird").unwrap();
        str_attr(&g, "encoding-type", "awkward-array");
    });
    assert_fails(&p, 65, "unsupported column encoding 'awkward-array'");
}

#[test]
fn test_missing_input() {
    let dir = tmp();
    let p = at(&dir, "nothere.h5ad");
    assert_fails(&p, 66, "no such file");
}

#[test]
fn test_output_exists_and_overwrite() {
    let dir = tmp();
    let m = sample_matrix(5, 4, 2);
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    std::fs::create_dir(at(&dir, "x.slaf")).unwrap();
    std::fs::write(at(&dir, "x.slaf").join("stale"), b"old").unwrap();
    let out = slaf_convert(&[
        "convert",
        at(&dir, "x.h5ad").to_str().unwrap(),
        at(&dir, "x.slaf").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(73));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite"));
    convert_ok(&at(&dir, "x.h5ad"), &at(&dir, "x.slaf"), &["--overwrite"]);
    assert!(!at(&dir, "x.slaf").join("stale").exists());
    assert!(at(&dir, "x.slaf").join("config.json").exists());
}

#[test]
fn test_logs_are_json_lines() {
    let dir = tmp();
    let m = sample_matrix(5, 4, 2);
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slaf-convert"))
        .args([
            "convert",
            at(&dir, "x.h5ad").to_str().unwrap(),
            at(&dir, "x.slaf").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<String> = stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .map(|v| v["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(events.contains(&"convert.done".to_string()), "{events:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 cells x 4 genes"));
}

/// `convert --read-only` reads and builds everything, writes nothing, and reports the rows.
#[test]
fn test_read_only_writes_nothing() {
    let dir = tmp();
    let m = sample_matrix(25, 9, 12);
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let out = slaf_convert(&[
        "convert",
        "--read-only",
        at(&dir, "x.h5ad").to_str().unwrap(),
        "--chunk-size",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("25 cells, {} expression rows", m.triplets().len())),
        "{stdout}"
    );
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        before.len(),
        after.len(),
        "nothing written next to the input"
    );
}

/// Every --compression gives the same rows back; the choice is recorded as Lance field
/// hints on the gene id and value columns only.
#[test]
fn test_compression_choices() {
    let dir = tmp();
    let m = sample_matrix(40, 30, 13);
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    for c in ["none", "lz4", "zstd"] {
        let out = at(&dir, &format!("{c}.slaf"));
        convert_ok(&at(&dir, "x.h5ad"), &out, &["--compression", c]);
        let expr = read_table(&out.join("expression.lance"));
        let rows: Vec<(i64, i64)> = ints(&expr, "cell_integer_id")
            .into_iter()
            .zip(ints(&expr, "gene_integer_id"))
            .collect();
        let want: Vec<(i64, i64)> = m.triplets().iter().map(|t| (t.0, t.1)).collect();
        assert_eq!(rows, want, "{c}");
        let schema = expr.schema();
        let hint = |col: &str| {
            schema
                .field_with_name(col)
                .unwrap()
                .metadata()
                .get("lance-encoding:compression")
                .cloned()
        };
        let want_hint = (c != "none").then(|| c.to_string());
        assert_eq!(hint("value"), want_hint, "{c}");
        assert_eq!(hint("gene_integer_id"), want_hint, "{c}");
        assert_eq!(hint("cell_integer_id"), None, "{c}");
    }
}

/// An object-store URI anywhere a path goes is refused, never taken as a local path: before,
/// `plan`, `shard` and `commit` created a directory named `s3:` and exited 0. The secret of a
/// URI carrying credentials appears nowhere in what the run prints.
#[test]
fn test_uris_are_refused_never_local_paths() {
    const SECRET: &str = "wJalrXUtnFEMIxK7MDENG";
    let dir = tmp();
    let m = sample_matrix(6, 4, 3);
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    std::fs::write(
        at(&dir, "local.yaml"),
        "output: local.slaf\ninputs:\n  - path: x.h5ad\n",
    )
    .unwrap();
    std::fs::write(
        at(&dir, "remote.yaml"),
        "output: hdfs://bench/m.slaf\ninputs:\n  - path: x.h5ad\n",
    )
    .unwrap();
    std::fs::write(
        at(&dir, "remote-input.yaml"),
        "output: m.slaf\ninputs:\n  - path: x.h5ad\n  - path: hdfs://bench/y.h5ad\n",
    )
    .unwrap();
    std::fs::write(
        at(&dir, "bucket-input.yaml"),
        "output: m.slaf\ninputs:\n  - path: s3://bench\n",
    )
    .unwrap();
    let in_dir = |args: &[&str]| {
        run(
            std::process::Command::new(env!("CARGO_BIN_EXE_slaf-convert"))
                .current_dir(dir.path())
                .args(args)
                .env("SLAF_CONVERT_LOG", "warn"),
        )
    };
    let planned = in_dir(&["plan", "local.yaml", "--output", "plan.json"]);
    assert!(planned.status.success(), "{planned:?}");
    let with_secret = format!("s3://AKIAEXAMPLE:{SECRET}/x+y@bench/x.slaf");
    let presigned = format!("s3://bench/x.slaf?X-Amz-Signature={SECRET}");
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["convert", "x.h5ad", "hdfs://bench/x.slaf"],
            2,
            "OUTPUT hdfs://bench/x.slaf: hdfs:// is not an object store",
        ),
        (
            &["convert", "--manifest", "gs://bench/m.yaml"],
            2,
            "--manifest gs://bench/m.yaml: must be a local path here",
        ),
        (
            &[
                "convert",
                "x.h5ad",
                "x.slaf",
                "--temp-dir",
                "s3://bench/tmp",
            ],
            2,
            "--temp-dir s3://bench/tmp",
        ),
        // A store output is taken, but a missing local input is named before any request.
        (
            &["convert", "missing.h5ad", "s3://bench/x.slaf"],
            66,
            "missing.h5ad: no such file",
        ),
        (&["convert", "x.h5ad", &with_secret], 2, "credentials"),
        (&["convert", "x.h5ad", &presigned], 2, "credentials"),
        (
            &["plan", "remote.yaml", "--output", "p.json"],
            64,
            "output hdfs://bench/m.slaf",
        ),
        (
            &["plan", "remote-input.yaml", "--output", "p.json"],
            64,
            "inputs[1].path hdfs://",
        ),
        (
            &["plan", "bucket-input.yaml", "--output", "p.json"],
            64,
            "inputs[0].path s3://bench: names a bucket",
        ),
        (
            &[
                "shard",
                "plan.json",
                "--index",
                "0",
                "--receipt",
                "s3://b/r.json",
            ],
            2,
            "--receipt",
        ),
        (
            &[
                "plan",
                "local.yaml",
                "--output",
                "p.json",
                "--dataset",
                "hdfs://c/d.slaf",
            ],
            2,
            "hdfs://",
        ),
        (
            &[
                "shard",
                "plan.json",
                "--index",
                "0",
                "--output",
                "s3://bench/s0",
            ],
            2,
            "s3://",
        ),
        (
            &["commit", "plan.json", "--dataset", "gopher://bench/d.slaf"],
            2,
            "gopher:// is not an object store",
        ),
    ];
    for (args, code, says) in cases {
        let out = in_dir(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            !stderr.contains(SECRET) && !stdout.contains(SECRET),
            "{args:?}: {stderr}"
        );
    }
    // A dataset at a store URI is planned (shards write into it): the plan names the URI.
    let planned = in_dir(&[
        "plan",
        "local.yaml",
        "--output",
        "az-plan.json",
        "--dataset",
        "az://c/d.slaf",
    ]);
    assert!(planned.status.success(), "{planned:?}");
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(at(&dir, "az-plan.json")).unwrap()).unwrap();
    assert_eq!(plan["output"], "az://c/d.slaf");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(':') || name.ends_with(".slaf") || name == "p.json")
        .collect();
    assert!(left.is_empty(), "written: {left:?}");
}

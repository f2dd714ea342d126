//! plan → shards (separate processes, shuffled, one retried) → commit equals `convert`, and
//! every log line and the completion marker validate against their JSON Schemas.

use std::path::Path;

use crate::util::*;

fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(format!("{name}.schema.json"));
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&value).unwrap()
}

/// Run the binary with info-level JSON logs; panics on failure; returns its stderr lines.
fn run_logged(args: &[&str]) -> Vec<String> {
    let out = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_slaf-convert"))
            .args(["--log-format", "json"])
            .args(args)
            .env_remove("SLAF_CONVERT_LOG"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?}: {stderr}");
    stderr.lines().map(str::to_string).collect()
}

#[test]
fn test_sharded_run_equals_convert_and_logs_validate() {
    let dir = tmp();
    for (k, n) in [7usize, 4, 9].iter().enumerate() {
        write_h5ad(
            &at(&dir, &format!("part{k}.h5ad")),
            &sample_matrix(*n, 6, k as u64 + 1),
            Storage::Csr,
        );
    }
    let manifest = |out: &str| {
        let text = format!(
            "output: {out}\ninputs:\n  - path: part0.h5ad\n  - path: part1.h5ad\n  - path: part2.h5ad\noptions:\n  chunk_size: 2\nsharding:\n  cells_per_shard: 4\n"
        );
        let p = at(&dir, &format!("{out}.yaml"));
        std::fs::write(&p, text).unwrap();
        p
    };
    let (m_ref, m) = (manifest("ref.slaf"), manifest("out.slaf"));
    let mut lines = run_logged(&["convert", "--manifest", m_ref.to_str().unwrap()]);
    let plan = at(&dir, "plan.json");
    let plan_s = plan.to_str().unwrap();
    lines.extend(run_logged(&["plan", m.to_str().unwrap(), "-o", plan_s]));
    let plan_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let hash = plan_json["plan_hash"].as_str().unwrap().to_string();
    let n = plan_json["shards"].as_array().unwrap().len();
    assert_eq!(n, 2 + 1 + 3, "shards of 4 cells never spanning inputs");
    let mut order: Vec<usize> = (0..n).rev().collect();
    order.push(order[0]); // a retry replaces its attempt
    let dirs: Vec<String> = (0..n)
        .map(|i| at(&dir, &format!("s{i}")).to_str().unwrap().to_string())
        .collect();
    for &i in &order {
        let shard = format!("{}-of-{n}", i + 1);
        lines.extend(run_logged(&[
            "shard", plan_s, "--shard", &shard, "-o", &dirs[i],
        ]));
    }
    let mut commit = vec!["commit", plan_s];
    commit.extend(dirs.iter().map(String::as_str));
    lines.extend(run_logged(&commit));

    let log_schema = schema("log-event");
    let mut shard_lines = 0;
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if let Err(e) = log_schema.validate(&v) {
            panic!("{line}: {e}");
        }
        if v["event"] == "fragment.written" && v["plan_hash"] == hash.as_str() {
            assert!(v["shard"].is_u64(), "{line}");
            shard_lines += 1;
        }
    }
    assert!(
        shard_lines >= 9,
        "every chunk of every shard is logged with its shard"
    );

    let marker_path = at(&dir, "out.slaf").join("_SLAF_COMPLETE.json");
    let marker: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&marker_path).unwrap()).unwrap();
    if let Err(e) = schema("completion-marker").validate(&marker) {
        panic!("marker: {e}");
    }
    assert_eq!(marker["plan_hash"], hash.as_str());
    assert_eq!(marker["n_cells"], 20);

    for table in ["expression.lance", "cells.lance", "genes.lance"] {
        let a = read_table(&at(&dir, "out.slaf").join(table));
        let b = read_table(&at(&dir, "ref.slaf").join(table));
        assert_eq!(a, b, "{table}");
    }
    let cells = read_table(&at(&dir, "out.slaf").join("cells.lance"));
    assert_eq!(ints(&cells, "cell_integer_id"), (0..20).collect::<Vec<_>>());
    let sources = texts(&cells, "source_file");
    assert_eq!(sources[7].as_deref(), Some("part1.h5ad"));
    let starts = ints(&cells, "cell_start_index");
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "global, never restarting: {starts:?}"
    );
}

/// `plan` guesses uint16 values from a sample; the last shard meets a fraction past it and
/// writes float32, and commit rewrites the other shards as float32: the dataset equals what
/// `convert` makes (config.json's statistics too), no narrow file is left, and a commit run again
/// without the marker (Snakemake's forced re-run) finds the rewrite instead of the files
/// cleanup removed.
#[test]
fn test_guessed_value_type_widens_across_shards() {
    let dir = tmp();
    let m = late_fraction_matrix();
    write_h5ad(&at(&dir, "x.h5ad"), &m, Storage::Csr);
    let manifest = |out: &str| {
        let text = format!(
            "output: {out}\ninputs:\n  - path: x.h5ad\noptions:\n  chunk_size: 10\nsharding:\n  cells_per_shard: 20\n"
        );
        let p = at(&dir, &format!("{out}.yaml"));
        std::fs::write(&p, text).unwrap();
        p
    };
    let (m_ref, m_out) = (manifest("ref.slaf"), manifest("out.slaf"));
    let convert_logs = run_logged(&["convert", "--manifest", m_ref.to_str().unwrap()]);
    let plan = at(&dir, "plan.json");
    let plan_s = plan.to_str().unwrap();
    run_logged(&["plan", m_out.to_str().unwrap(), "-o", plan_s]);
    let plan_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(
        plan_json["types_guessed"], true,
        "the plan read a sample only"
    );
    assert_eq!(plan_json["shards"].as_array().unwrap().len(), 4);
    let dirs: Vec<String> = (0..4)
        .map(|i| at(&dir, &format!("s{i}")).to_str().unwrap().to_string())
        .collect();
    let mut lines = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let shard = format!("{}-of-4", i + 1);
        lines.extend(run_logged(&["shard", plan_s, "--shard", &shard, "-o", d]));
    }
    let widened: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"event\":\"shard.widened\""))
        .collect();
    assert_eq!(widened.len(), 1, "only the last shard meets the fraction");
    assert!(widened[0].contains("\"shard\":3"), "{}", widened[0]);
    let mut commit = vec!["commit", plan_s];
    commit.extend(dirs.iter().map(String::as_str));
    let commit_lines = run_logged(&commit);
    let log_schema = schema("log-event");
    for line in lines.iter().chain(&commit_lines).chain(&convert_logs) {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if let Err(e) = log_schema.validate(&v) {
            panic!("{line}: {e}");
        }
    }
    let commit_logs = commit_lines.join("\n");
    assert!(
        commit_logs.contains("\"event\":\"commit.widened\""),
        "{commit_logs}"
    );
    assert!(commit_logs.contains("\"shards\":3"), "{commit_logs}");

    let out = at(&dir, "out.slaf");
    for table in ["expression.lance", "cells.lance", "genes.lance"] {
        let a = read_table(&out.join(table));
        let b = read_table(&at(&dir, "ref.slaf").join(table));
        assert_eq!(a, b, "{table}: the same as convert's");
    }
    let expression = read_table(&out.join("expression.lance"));
    assert_eq!(
        expression
            .schema()
            .field_with_name("value")
            .unwrap()
            .data_type(),
        &arrow::datatypes::DataType::Float32
    );
    let values = floats(&expression, "value");
    assert_eq!(values.last().copied().flatten(), Some(2.5));
    assert_eq!(values.len(), 80_000);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let ref_config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(at(&dir, "ref.slaf").join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["metadata"], ref_config["metadata"]);
    let data = out.join("expression.lance").join("data");
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        fragment_count(&out.join("expression.lance")),
        "no narrow file left"
    );
    assert!(
        convert_logs
            .iter()
            .any(|l| l.contains("\"event\":\"shard.widened\"")),
        "convert fails over the same way"
    );

    // Snakemake removes the marker before a forced re-run: the commit finds the rewrite.
    std::fs::remove_file(out.join("_SLAF_COMPLETE.json")).unwrap();
    let again = run_logged(&commit).join("\n");
    assert!(!again.contains("commit.widened"), "{again}");
    assert!(out.join("_SLAF_COMPLETE.json").exists());
    assert_eq!(read_table(&out.join("expression.lance")), expression);

    // Shared target: the narrow files are the dataset's own, and cleanup removes them; the
    // record still serves a commit run again without the marker.
    let shared = at(&dir, "shared.slaf");
    let plan2 = at(&dir, "plan2.json");
    let plan2_s = plan2.to_str().unwrap();
    let m_shared = manifest("shared.slaf");
    run_logged(&["plan", m_shared.to_str().unwrap(), "-o", plan2_s]);
    for i in 0..4 {
        let index = i.to_string();
        run_logged(&["shard", plan2_s, "--index", &index, "--shared-target"]);
    }
    assert!(run_logged(&["commit", plan2_s])
        .join("\n")
        .contains("commit.widened"));
    std::fs::remove_file(shared.join("_SLAF_COMPLETE.json")).unwrap();
    let again = run_logged(&["commit", plan2_s]).join("\n");
    assert!(!again.contains("commit.widened"), "{again}");
    assert!(shared.join("_SLAF_COMPLETE.json").exists());
    assert_eq!(read_table(&shared.join("expression.lance")), expression);
}

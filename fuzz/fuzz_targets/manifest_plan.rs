//! The manifest (YAML) and plan (JSON) loaders. First byte even: the rest is a manifest;
//! odd: a plan, loaded as written and again with its hash made to match, so the checks
//! behind the hash (var table, shards) are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slaf_convert::workflow::manifest::Manifest;
use slaf_convert::workflow::plan::Plan;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Inputs a manifest may name, so loading goes past "no such file".
    std::fs::write(dir.path().join("a.h5ad"), b"\x89HDF\r\n\x1a\n").unwrap();
    std::fs::create_dir(dir.path().join("mtx")).unwrap();
    if which % 2 == 0 {
        let path = dir.path().join("manifest.yaml");
        std::fs::write(&path, rest).unwrap();
        if let Ok(m) = Manifest::load(&path) {
            let _ = m.check_output_apart();
        }
        return;
    }
    let path = dir.path().join("plan.json");
    std::fs::write(&path, rest).unwrap();
    let _ = Plan::load(&path);
    let Ok(mut plan) = serde_json::from_slice::<Plan>(rest) else {
        return;
    };
    plan.plan_hash = plan.content_hash();
    if plan.save(&path).is_err() {
        return;
    }
    if let Ok(plan) = Plan::load(&path) {
        let _ = plan.var_batch(&path);
        for i in 0..plan.shards.len().min(1000) {
            let _ = plan.shard(i);
        }
    }
});

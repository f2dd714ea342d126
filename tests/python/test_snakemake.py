"""The Snakemake rules for real: a 3-file manifest in 4 shards with --cores 2 gives what
`convert` gives; deleting one receipt re-runs only that shard and commit; --lint is clean;
the rules also work imported as a module."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from test_workflow import assert_same, tables, three_files

BIN = os.environ.get("SLAF_CONVERT_BIN")
ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflows" / "snakemake"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def setup_workdir(d):
    files = three_files(d, n=(40, 40, 80))
    manifest = d / "atlas.yaml"
    manifest.write_text(
        "output: unused.slaf\ninputs:\n"
        + "".join(f"  - path: {p.name}\n" for p, _ in files)
        + "options:\n  chunk_size: 20\n"
    )
    (d / "config").mkdir()
    (d / "config" / "config.yaml").write_text(
        "slaf:\n"
        f"  datasets:\n    atlas: {manifest}\n"
        f"  binary: {BIN}\n"
        "  container: docker://example.invalid/slaf-convert:test\n"
        "  extra: ''\n"
        "  plan_args: '--cells-per-shard 40'\n"
    )
    return manifest


def snakemake(d, *args, snakefile=WORKFLOW / "workflow" / "Snakefile"):
    proc = subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(snakefile), "--directory", str(d), "--cores", "2", *args],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_snakemake_end_to_end_and_rerun(tmp_path):
    manifest = setup_workdir(tmp_path)
    subprocess.run([BIN, "convert", "--manifest", manifest], check=True, capture_output=True)
    snakemake(tmp_path)
    out = tmp_path / "results" / "slaf" / "atlas.slaf"
    receipts = sorted((tmp_path / "results" / "slaf" / "atlas.receipts").iterdir())
    assert [r.name for r in receipts] == [f"{i}-of-4.json" for i in range(1, 5)]
    assert (out / "_SLAF_COMPLETE.json").exists()
    # The same manifest converted in one process.
    ref_out = tmp_path / "unused.slaf"
    assert_same(tables(out), tables(ref_out))

    before = {r.name: r.stat().st_mtime_ns for r in receipts}
    receipts[2].unlink()
    # Snakemake does not rebuild a missing intermediate file on its own: ask for it and the
    # marker (whose input it now is, newer than the marker).
    proc = snakemake(tmp_path, str(receipts[2].relative_to(tmp_path)), "results/slaf/atlas.slaf/_SLAF_COMPLETE.json")
    log = proc.stdout + proc.stderr
    jobs = dict(re.findall(r"^(slaf_\w+)\s+(\d+)\s*$", log, re.M))
    assert jobs == {"slaf_shard": "1", "slaf_commit": "1"}, log
    after = {r.name: r.stat().st_mtime_ns for r in sorted((tmp_path / "results" / "slaf" / "atlas.receipts").iterdir())}
    changed = [k for k in after if after[k] != before.get(k)]
    assert changed == ["3-of-4.json"]
    assert_same(tables(out), tables(ref_out))
    import lance
    ds = lance.dataset(str(out / "expression.lance"))
    used = {f.data_files()[0].path for f in ds.get_fragments()}
    assert set(os.listdir(out / "expression.lance" / "data")) == used  # no orphans


def test_snakemake_lint(tmp_path):
    setup_workdir(tmp_path)
    proc = subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(WORKFLOW / "workflow" / "Snakefile"), "--directory", str(tmp_path), "--lint"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_rules_are_snakefmt_clean():
    """The Snakefile and rules as snakefmt formats them (the Snakemake catalog's check)."""
    proc = subprocess.run([str(Path(sys.executable).parent / "snakefmt"), "--check", "--diff", str(WORKFLOW)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_module_import(tmp_path):
    setup_workdir(tmp_path)
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(
        'configfile: "config/config.yaml"\n\n'
        "module slaf:\n"
        f'    snakefile: "{WORKFLOW / "workflow" / "Snakefile"}"\n'
        "    config: config\n\n"
        "use rule * from slaf exclude all as slaf_*\n\n"
        "rule all:\n"
        '    input: "results/slaf/atlas.slaf/_SLAF_COMPLETE.json"\n'
        "    default_target: True\n"
    )
    snakemake(tmp_path, snakefile=snakefile)
    assert (tmp_path / "results" / "slaf" / "atlas.slaf" / "_SLAF_COMPLETE.json").exists()


def test_snakemake_manifest_inputs_in_s3(tmp_path):
    """Inputs named by s3:// URIs in the manifest: the rules declare only the local ones and
    slaf-convert fetches the others (moto's S3 server on 127.0.0.1); the dataset equals the
    one converted from local copies."""
    from store_servers import Moto
    server = Moto(tmp_path)
    try:
        server.create_bucket("atlas")
        manifest = setup_workdir(tmp_path)
        local = tmp_path / "local"
        local.mkdir()
        files = sorted(tmp_path.glob("part*.h5ad"))
        for p in files[1:]:
            server.put("atlas", f"raw/{p.name}", p.read_bytes())
            p.rename(local / p.name)  # only the bucket has them now
        manifest.write_text(
            "output: unused.slaf\ninputs:\n"
            f"  - path: {files[0].name}\n"
            + "".join(f"  - path: s3://atlas/raw/{p.name}\n" for p in files[1:])
            + "options:\n  chunk_size: 20\n")
        reference = local / "ref.yaml"
        reference.write_text(
            "output: ref.slaf\ninputs:\n"
            f"  - path: {files[0]}\n"
            + "".join(f"  - path: {p.name}\n" for p in files[1:])
            + "options:\n  chunk_size: 20\n")
        subprocess.run([BIN, "convert", "--manifest", reference], check=True,
                       capture_output=True)
        proc = subprocess.run(
            [str(SNAKEMAKE), "--snakefile", str(WORKFLOW / "workflow" / "Snakefile"),
             "--directory", str(tmp_path), "--cores", "2"],
            capture_output=True, text=True, env=server.env())
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = tables(tmp_path / "results" / "slaf" / "atlas.slaf")
        want = tables(local / "ref.slaf")
        assert_same(got, want)
    finally:
        server.stop()


def test_snakemake_dataset_in_s3(tmp_path):
    """dataset_prefix an s3:// URI (moto's S3 server on 127.0.0.1): the shard jobs write into
    the bucket, commit commits there, and the dataset read back from the bucket equals the
    one converted locally; nothing of it is written under results/."""
    from store_servers import Moto
    from test_object_store import store_tables
    (tmp_path / "moto").mkdir()
    server = Moto(tmp_path / "moto")
    try:
        server.create_bucket("atlas")
        manifest = setup_workdir(tmp_path)
        config = tmp_path / "config" / "config.yaml"
        config.write_text(config.read_text() + "  dataset_prefix: s3://atlas/slaf/\n")
        subprocess.run([BIN, "convert", "--manifest", manifest], check=True,
                       capture_output=True)
        proc = subprocess.run(
            [str(SNAKEMAKE), "--snakefile", str(WORKFLOW / "workflow" / "Snakefile"),
             "--directory", str(tmp_path), "--cores", "2"],
            capture_output=True, text=True, env=server.env())
        assert proc.returncode == 0, proc.stdout + proc.stderr
        done = tmp_path / "results" / "slaf" / "atlas.committed.txt"
        assert "s3://atlas/slaf/atlas.slaf: committed 160 cells" in done.read_text()
        assert not (tmp_path / "results" / "slaf" / "atlas.slaf").exists()
        assert "slaf/atlas.slaf/_SLAF_COMPLETE.json" in server.objects("atlas", "slaf/")
        got = store_tables(server, "s3://atlas/slaf/atlas.slaf")
        for f in got["config"].get("multi_file", {}).get("source_files", []):
            f.pop("file_path")
        got["config"].pop("created_at")
        assert_same(got, tables(tmp_path / "unused.slaf"))
    finally:
        server.stop()


def test_snakemake_config_is_validated(tmp_path):
    """A misspelt key in the config stops the workflow before any job, naming the key."""
    setup_workdir(tmp_path)
    config = tmp_path / "config" / "config.yaml"
    config.write_text(config.read_text().replace("plan_args:", "plan_arg:"))
    proc = subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(WORKFLOW / "workflow" / "Snakefile"),
         "--directory", str(tmp_path), "--cores", "1", "--dry-run"],
        capture_output=True, text=True)
    assert proc.returncode != 0
    assert "'plan_arg' was unexpected" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_snakemake_dot_test_config(tmp_path):
    """The rules' own `.test/` config (the bundled example in 2 shards) runs as documented,
    `slaf-convert` taken from PATH, in a copy of the workflow beside a copy of examples/."""
    import shutil
    shutil.copytree(WORKFLOW, tmp_path / "workflows" / "snakemake")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    here = tmp_path / "workflows" / "snakemake"
    env = dict(os.environ, PATH=f"{Path(BIN).parent}:{os.environ['PATH']}")
    proc = subprocess.run(
        [str(SNAKEMAKE), "--snakefile", "workflow/Snakefile", "--directory", ".test",
         "--cores", "2"],
        cwd=here, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = here / ".test" / "results" / "slaf" / "example.slaf"
    assert (out / "_SLAF_COMPLETE.json").exists()
    receipts = sorted((here / ".test" / "results" / "slaf" / "example.receipts").iterdir())
    assert [r.name for r in receipts] == ["1-of-2.json", "2-of-2.json"]
    subprocess.run([BIN, "convert", tmp_path / "examples" / "pbmc-like.h5ad",
                    tmp_path / "ref.slaf", "--chunk-size", "100"], check=True,
                   capture_output=True)
    got, want = tables(out), tables(tmp_path / "ref.slaf")
    for t in ["expression", "cells", "genes"]:
        pd.testing.assert_frame_equal(got[t], want[t])


def test_snakemake_replan_rebuilds_and_a_failed_shard_is_retried(tmp_path):
    """Changed manifest options re-run the plan, every shard and commit: the dataset is the
    new plan's (no file of the old one left). Under --retries 1 a shard that fails once
    (a wrapper exits 75 on its first call for shard 2) is run again and the dataset is whole."""
    manifest = setup_workdir(tmp_path)
    snakemake(tmp_path)
    out = tmp_path / "results" / "slaf" / "atlas.slaf"
    first = json.loads((out / "_SLAF_COMPLETE.json").read_text())["plan_hash"]
    # A re-plan: another chunk size (a manifest option, so another plan hash).
    manifest.write_text(manifest.read_text().replace("chunk_size: 20", "chunk_size: 10"))
    wrapper = tmp_path / "flaky-slaf-convert"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = shard ] && echo "$*" | grep -q -- "--shard 2-of-" '
        f'&& [ ! -e "{tmp_path}/failed-once" ]; then\n'
        f'  touch "{tmp_path}/failed-once"; echo "transient failure" >&2; exit 75\n'
        "fi\n"
        f'exec "{BIN}" "$@"\n')
    wrapper.chmod(0o755)
    config = tmp_path / "config" / "config.yaml"
    config.write_text(config.read_text().replace(f"binary: {BIN}", f"binary: {wrapper}"))
    proc = snakemake(tmp_path, "--retries", "1")
    assert (tmp_path / "failed-once").exists(), proc.stdout + proc.stderr
    marker = json.loads((out / "_SLAF_COMPLETE.json").read_text())
    plan = json.loads((tmp_path / "results" / "slaf" / "atlas.plan.json").read_text())
    assert marker["plan_hash"] == plan["plan_hash"] != first
    ref = tmp_path / "ref.yaml"
    ref.write_text(manifest.read_text().replace("output: unused.slaf", "output: ref.slaf"))
    subprocess.run([BIN, "convert", "--manifest", ref], check=True, capture_output=True)
    assert_same(tables(out), tables(tmp_path / "ref.slaf"))
    import lance
    ds = lance.dataset(str(out / "expression.lance"))
    used = {f.data_files()[0].path for f in ds.get_fragments()}
    assert set(os.listdir(out / "expression.lance" / "data")) == used  # no orphans

"""The Nextflow modules without Nextflow (its runtime is not on the registries this project
builds from): each main.nf has the parts the nf-core checklist requires, and each process's
`script:` rendered for a sample meta, ext.args and shard runs against the real binary, chained
plan -> 2 staged shards -> commit in separate task directories, giving what `convert` gives."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_workflow import assert_same, tables, three_files

BIN = os.environ.get("SLAF_CONVERT_BIN")
ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "workflows" / "nextflow" / "modules" / "slafconvert"


def module(name):
    return (MODULES / name / "main.nf").read_text()


@pytest.mark.parametrize("name", ["plan", "shard", "commit", "convert"])
def test_module_has_required_parts(name):
    text = module(name)
    assert re.search(r"input:\s*\n\s*tuple val\(meta\)", text)
    assert "topic: versions, emit: versions_slafconvert" in text
    assert 'eval("slaf-convert --version' in text
    assert "task.ext.when == null || task.ext.when" in text
    assert "stub:" in text and "echo ${args}" in text
    # One image reference (README, Snakemake config, every module): Singularity/Apptainer
    # pull it as docker://, a local SIF replaces it by withName.
    assert "container 'ghcr.io/slaf-convert/slaf-convert:0.1.0'" in text
    assert "task.ext.args" in text and "task.ext.prefix" in text
    assert "--threads ${task.cpus}" in text
    assert "publishDir" not in text
    for f in ["meta.yml", "tests/main.nf.test"]:
        assert (MODULES / name / f).exists(), f
    # No conda package exists: no conda directive, and conda profiles are refused by name.
    assert "conda " not in text.split("script:")[0] and not (MODULES / name / "environment.yml").exists()
    assert "intersect(['conda', 'mamba'])" in text and "does not support Conda" in text
    if name == "plan":
        assert "echo 2 > ${prefix}.n_shards" in text  # stub runs fan out
    if name == "shard":
        assert "val(shard)" in text


def ext_values(name, ext, values):
    """The variables the module's `script:` block sets from `task.ext` (`x = task.ext.k ?: "d"`
    and `x = task.ext.k ? "a" : "b"`), evaluated for `ext` as Groovy would."""
    block = module(name).split("script:")[1].split('"""')[0]

    def fill(template):
        return re.sub(r"\$\{([\w.]+)\}", lambda m: str(values[m.group(1)]), template)
    out = {}
    for var, key, yes, no in re.findall(
            r'(?:def )?(\w+) = task\.ext\.(\w+) \?\s*"([^"]*)"\s*:\s*"([^"]*)"', block):
        out[var] = fill(yes if ext.get(key) else no)
    for var, key, default in re.findall(r'(?:def )?(\w+) = task\.ext\.(\w+) \?: "([^"]*)"', block):
        out[var] = ext.get(key) or fill(default)
    return out


def render(name, ext=None, **values):
    """The script block as the task's shell would get it; `ext`: the task's `task.ext`
    settings the block reads (values given by name win)."""
    script = module(name).split("script:")[1].split('"""')[1]
    script = script.replace("\\\\\n", "\\\n")
    binary = values.pop("binary")
    values = {**ext_values(name, ext or {}, values), **values}

    def sub(m):
        key = m.group(1)
        return str(values[key])
    script = re.sub(r"\$\{([\w.]+)\}", sub, script)
    return script.replace("slaf-convert ", f"{binary} ", 1)


def run_task(workdir, name, **values):
    script = render(name, binary=BIN, **values)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0, script + proc.stderr
    return proc


class Executor:
    """Runs rendered module scripts as a Nextflow executor stages them: each task in a new
    directory that holds only its declared inputs (symlinks, as the local executor makes;
    nothing else of the host's files), its declared outputs carried out to where later tasks
    are staged from, and the task directory then removed, as on a cloud executor, where a
    later task never sees an earlier one's directory."""

    def __init__(self, root):
        self.root = root
        self.count = 0

    def run(self, name, staged, outputs, **values):
        self.count += 1
        d = self.root / "work" / f"{self.count:02d}-{name}"
        d.mkdir(parents=True)
        for rel, src in staged.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(src, d / rel)
        run_task(d, name, **values)
        kept = self.root / "outputs" / d.name
        kept.mkdir(parents=True)
        for o in outputs:
            shutil.move(d / o, kept / o)
        shutil.rmtree(d)
        return [kept / o for o in outputs]


def stage_list(files):
    """`path(inputs, stageAs: 'inputs/?/*')`: each item in a directory numbered by its place
    in the list, under its own name (Nextflow's TaskInputResolver.expandWildcards)."""
    return {f"inputs/{i}/{f.name}": f for i, f in enumerate(files, 1)}


def two_samples(d):
    """Two 10x MTX directories of the same name, different cells (as Cell Ranger names
    every sample's output)."""
    from tenx_fixtures import write_mtx
    dirs = []
    for k, sample in enumerate(["sampleA", "sampleB"]):
        out = d / sample / "filtered_feature_bc_matrix"
        write_mtx(out, seed=k, gz=False)
        barcodes = (out / "barcodes.tsv").read_text().replace("-1\n", f"-{k + 1}\n")
        (out / "barcodes.tsv").write_text(barcodes)
        dirs.append(out)
    return dirs


def test_rendered_scripts_chain_plan_shards_commit(tmp_path):
    """plan -> 2 shards -> commit, each task staged alone; two inputs of the same name."""
    src = tmp_path / "src"
    src.mkdir()
    inputs = two_samples(src)
    manifest = src / "m.yaml"
    manifest.write_text(
        "output: ref.slaf\ninputs:\n"
        "  - path: inputs/1/filtered_feature_bc_matrix\n"
        "  - path: inputs/2/filtered_feature_bc_matrix\n"
        "options:\n  chunk_size: 10\nsharding:\n  shards: 2\n")
    # The reference: convert in one process, the inputs laid out as the tasks see them.
    ref = tmp_path / "ref"
    for rel, f in stage_list(inputs).items():
        (ref / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f, ref / rel)
    shutil.copy(manifest, ref / "m.yaml")
    subprocess.run([BIN, "convert", "--manifest", ref / "m.yaml"], check=True, capture_output=True)
    # No task.ext.dataset: plan names test.slaf, shards stage, commit builds test.slaf.
    common = {"prefix": "test", "args": "--log-format json", "task.cpus": 2, "meta.id": "test"}
    nf = Executor(tmp_path)

    plan, n_shards = nf.run("plan", {"m.yaml": manifest, **stage_list(inputs)},
                            ["test.plan.json", "test.n_shards"], manifest="m.yaml", **common)
    n = int(n_shards.read_text())
    assert n == 2
    shards = []
    for i in range(1, n + 1):
        [out] = nf.run("shard", {"test.plan.json": plan, **stage_list(inputs)},
                       [f"test.shard-{i}-of-{n}"], plan="test.plan.json", shard=f"{i}-of-{n}", **common)
        assert (out / "receipt.json").exists()
        shards.append(out)
    # Commit reads no input: they are gone before it runs.
    shutil.move(src / "sampleA", tmp_path / "moved-sampleA")
    shutil.move(src / "sampleB", tmp_path / "moved-sampleB")
    staged = {"test.plan.json": plan, **{f"shards/{s.name}": s for s in shards}}
    [out] = nf.run("commit", staged, ["test.slaf"], plan="test.plan.json",
                   fragments=" ".join(f"shards/{s.name}" for s in shards), **common)
    assert (out / "_SLAF_COMPLETE.json").exists()
    assert_same(tables(out), tables(ref / "ref.slaf"))
    # Only what the tasks declared is left: the task directories are gone.
    assert not any((tmp_path / "work").iterdir())

    (tmp_path / "single").mkdir()
    input_file = three_files(tmp_path / "single", n=(40,))[0][0]
    [out] = nf.run("convert", {"part0.h5ad": input_file}, ["test.slaf"], input="part0.h5ad", **common)
    assert (out / "_SLAF_COMPLETE.json").exists()


def test_inputs_of_the_same_name_stage_apart():
    """The plan and shard modules stage inputs numbered (inputs/1/NAME, inputs/2/NAME): with
    'inputs/*' two 10x directories of one name collide; the example manifest names them so."""
    for name in ["plan", "shard"]:
        assert "path(inputs, stageAs: 'inputs/?/*')" in module(name), name
    example = (ROOT / "workflows" / "nextflow" / "example.manifest.yaml").read_text()
    assert "path: inputs/1/pbmc-like.h5ad" in example


def test_commit_and_convert_modules_write_to_an_object_store(tmp_path):
    """task.ext.dataset = 's3://...': the rendered commit and convert scripts put the dataset
    in the bucket (a moto S3 server on 127.0.0.1), equal to the local conversion."""
    from store_servers import Moto
    from test_object_store import local_tables, store_tables
    from test_object_store import assert_same as assert_same_tables
    server = Moto(tmp_path)
    try:
        server.create_bucket("results")
        env = server.env()
        src = tmp_path / "src"
        src.mkdir()
        files = three_files(src, n=(70,))
        (src / "m.yaml").write_text(
            "output: ref.slaf\ninputs:\n  - path: part0.h5ad\noptions:\n  chunk_size: 20\n"
            "sharding:\n  shards: 2\n")
        subprocess.run([BIN, "convert", "--manifest", src / "m.yaml"], check=True,
                       capture_output=True)
        subprocess.run([BIN, "plan", src / "m.yaml", "--output", tmp_path / "plan.json"],
                       check=True, capture_output=True)
        shards = []
        for i in (1, 2):
            out = tmp_path / f"test.shard-{i}-of-2"
            subprocess.run([BIN, "shard", tmp_path / "plan.json", "--shard", f"{i}-of-2",
                            "--output", out], check=True, capture_output=True)
            shards.append(out)
        common = {"prefix": "test", "args": "--log-format json", "task.cpus": 2,
                  "meta.id": "test"}
        commit_dir = tmp_path / "work" / "commit"
        (commit_dir / "shards").mkdir(parents=True)
        for s in shards:
            os.symlink(s, commit_dir / "shards" / s.name)
        shutil.copy(tmp_path / "plan.json", commit_dir / "test.plan.json")
        script = render("commit", binary=BIN, plan="test.plan.json",
                        fragments=" ".join(f"shards/{s.name}" for s in shards),
                        ext={"dataset": "s3://results/atlas.slaf"}, **common)
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=commit_dir,
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, script + proc.stderr
        assert not (commit_dir / "test.slaf").exists()  # nothing of it in the task directory
        want = local_tables(src / "ref.slaf")
        assert_same_tables(store_tables(server, "s3://results/atlas.slaf"), want)

        convert_dir = tmp_path / "work" / "convert"
        convert_dir.mkdir()
        os.symlink(files[0][0], convert_dir / "part0.h5ad")
        script = render("convert", binary=BIN, input="part0.h5ad",
                        ext={"dataset": "s3://results/convert.slaf"}, **common)
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=convert_dir,
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, script + proc.stderr
        assert list(convert_dir.iterdir()) == [convert_dir / "part0.h5ad"]
        server.get("results", "convert.slaf/_SLAF_COMPLETE.json")
    finally:
        server.stop()


def test_modules_build_the_dataset_in_an_object_store(tmp_path):
    """ext.dataset = 's3://...' on plan, shard and commit: the rendered shard scripts write
    their fragments into the bucket (moto's S3 server on 127.0.0.1) and emit only their
    receipts, and commit commits there: nothing of the dataset in any task directory, and
    the dataset equals the local conversion."""
    from store_servers import Moto
    from test_object_store import local_tables, store_tables
    from test_object_store import assert_same as assert_same_tables
    server = Moto(tmp_path)
    try:
        server.create_bucket("results")
        env = server.env()
        uri = "s3://results/native.slaf"
        src = tmp_path / "src"
        src.mkdir()
        files = three_files(src, n=(70,))
        (src / "m.yaml").write_text(
            "output: ref.slaf\ninputs:\n  - path: inputs/1/part0.h5ad\noptions:\n"
            "  chunk_size: 20\nsharding:\n  shards: 2\n")
        (src / "inputs" / "1").mkdir(parents=True)
        shutil.copy(files[0][0], src / "inputs" / "1" / "part0.h5ad")
        subprocess.run([BIN, "convert", "--manifest", src / "m.yaml"], check=True,
                       capture_output=True)
        common = {"prefix": "test", "args": "--log-format json", "task.cpus": 2,
                  "meta.id": "test"}

        def task(d, name, **values):
            # withName: 'SLAFCONVERT_(PLAN|SHARD|COMMIT)' { ext.dataset = uri }
            script = render(name, binary=BIN, ext={"dataset": uri}, **common, **values)
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=d,
                                  capture_output=True, text=True, env=env)
            assert proc.returncode == 0, script + proc.stderr

        plan_dir = tmp_path / "work" / "plan"
        (plan_dir / "inputs" / "1").mkdir(parents=True)
        shutil.copy(src / "m.yaml", plan_dir / "m.yaml")
        shutil.copy(src / "inputs" / "1" / "part0.h5ad", plan_dir / "inputs" / "1" / "part0.h5ad")
        task(plan_dir, "plan", manifest="m.yaml")
        n = int((plan_dir / "test.n_shards").read_text())
        shard_outputs = []
        for i in range(1, n + 1):
            d = tmp_path / "work" / f"shard{i}"
            (d / "inputs" / "1").mkdir(parents=True)
            shutil.copy(plan_dir / "test.plan.json", d / "test.plan.json")
            shutil.copy(src / "inputs" / "1" / "part0.h5ad", d / "inputs" / "1" / "part0.h5ad")
            out = f"test.shard-{i}-of-{n}"
            task(d, "shard", plan="test.plan.json", shard=f"{i}-of-{n}")
            assert [p.name for p in (d / out).iterdir()] == ["receipt.json"]
            shard_outputs.append(d / out)
        commit_dir = tmp_path / "work" / "commit"
        (commit_dir / "shards").mkdir(parents=True)
        for s in shard_outputs:
            shutil.copytree(s, commit_dir / "shards" / s.name)
        shutil.copy(plan_dir / "test.plan.json", commit_dir / "test.plan.json")
        task(commit_dir, "commit", plan="test.plan.json",
             fragments=" ".join(f"shards/{s.name}" for s in shard_outputs))
        assert sorted(p.name for p in commit_dir.iterdir()) == ["shards", "test.plan.json"]
        assert_same_tables(store_tables(server, uri), local_tables(src / "ref.slaf"))
        assert "native.slaf/_SLAF_COMPLETE.json" in server.objects("results", "native.slaf/")
    finally:
        server.stop()


def test_example_config_publishes_the_dataset_only():
    """outdir gets the dataset directory (its marker inside), never the marker on its own."""
    config = (ROOT / "workflows" / "nextflow" / "nextflow.config").read_text()
    publish = re.search(r"withName: 'SLAFCONVERT_COMMIT' \{ publishDir = \[(.*?)\] \}", config)
    assert publish and "pattern: '*.slaf'" in publish.group(1), config


def test_one_licence_everywhere():
    """Cargo.toml's licence is the LICENSE file's, the image label's and every meta.yml's."""
    cargo = (ROOT / "Cargo.toml").read_text()
    assert 'license = "Apache-2.0"' in cargo
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert 'licenses="Apache-2.0"' in (ROOT / "containers" / "Dockerfile").read_text()
    for meta in (ROOT / "workflows" / "nextflow" / "modules").glob("*/*/meta.yml"):
        assert 'licence: ["Apache-2.0"]' in meta.read_text(), meta

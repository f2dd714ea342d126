"""The workflow contract under real engines' behaviour: commits repeat from the same staged
shards and never change them, re-plans rebuild, kills at any point converge on a re-run,
concurrent commits never mix, and nothing the user handed over is deleted or overwritten.

The kill harness runs SLAF_KILL_POINTS seeded kill points (default 12; 50+ locally, e.g.
`SLAF_KILL_POINTS=60 pytest tests/python/test_resilience.py -k kill`)."""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import fixtures
from test_workflow import BIN, assert_same, manifest, run, tables, three_files

KILL_POINTS = int(os.environ.get("SLAF_KILL_POINTS", "12"))
MARKER = "_SLAF_COMPLETE.json"


def checksums(root):
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def data_files_all_referenced(root):
    """Every data file of every table is used by its (single, newest) version."""
    import lance
    for t in root.glob("*.lance"):
        ds = lance.dataset(str(t))
        used = {f.path for frag in ds.get_fragments() for f in frag.data_files()}
        data = t / "data"
        on_disk = set(os.listdir(data)) if data.exists() else set()
        assert on_disk == used, (t, sorted(on_disk - used))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Three seeded h5ad files and the tables a clean `convert --manifest` makes of them."""
    d = tmp_path_factory.mktemp("inputs")
    files = three_files(d, n=(700, 450, 900), m=120)
    m = manifest(d, files, out="ref.slaf", chunk=50, per_shard=200)
    run("convert", "--manifest", m)
    return d, files, tables(d / "ref.slaf")


def workdir(tmp_path, inputs, out="out.slaf", **kw):
    """A task directory with a manifest over the shared inputs."""
    d, files, ref = inputs
    text = f"output: {tmp_path / out}\ninputs:\n" + "".join(f"  - path: {p}\n" for p, _ in files)
    text += "options:\n  chunk_size: 50\nsharding:\n  cells_per_shard: 200\n"
    for k, v in kw.items():
        text = text.replace("options:\n", f"options:\n  {k}: {v}\n")
    (tmp_path / "m.yaml").write_text(text)
    return tmp_path / "m.yaml"


def staged_shards(tmp_path, m, *plan_flags):
    run("plan", m, "-o", tmp_path / "plan.json", *plan_flags)
    n = len(json.loads((tmp_path / "plan.json").read_text())["shards"])
    dirs = [tmp_path / f"s{i}" for i in range(n)]
    for i, s in enumerate(dirs):
        run("shard", tmp_path / "plan.json", "--index", i, "-o", s)
    return dirs


def test_commit_twice_from_same_staged_dirs(tmp_path, inputs):
    ref = inputs[2]
    dirs = staged_shards(tmp_path, workdir(tmp_path, inputs))
    before = {s: checksums(s) for s in dirs}
    for name in ["a.slaf", "b.slaf", "a.slaf"]:  # the last one: a no-op on a complete dataset
        run("commit", tmp_path / "plan.json", *dirs, "--dataset", tmp_path / name)
    for s in dirs:
        assert checksums(s) == before[s], f"{s} changed"
    assert_same(tables(tmp_path / "a.slaf"), ref)
    assert_same(tables(tmp_path / "b.slaf"), ref)
    data_files_all_referenced(tmp_path / "a.slaf")


def test_commit_copies_across_filesystems(tmp_path, inputs):
    """Staged shards on another filesystem (each staged input its own bind mount under
    Docker/Apptainer): no hard link is possible, so commit copies through a temporary name;
    the staged files stay as they were and no half-made copy is left."""
    ref = inputs[2]
    assert os.stat("/dev/shm").st_dev != os.stat(tmp_path).st_dev, "needs /dev/shm on its own filesystem"
    other_fs = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        dirs = staged_shards(other_fs, workdir(other_fs, inputs))
        before = {s: checksums(s) for s in dirs}
        run("commit", other_fs / "plan.json", *dirs, "--dataset", tmp_path / "a.slaf")
        assert {s: checksums(s) for s in dirs} == before
        assert_same(tables(tmp_path / "a.slaf"), ref)
        assert not list((tmp_path / "a.slaf").rglob(".adopting.*"))
        data = tmp_path / "a.slaf" / "expression.lance" / "data"
        assert all(p.stat().st_nlink == 1 for p in data.iterdir())  # copies, not links
    finally:
        shutil.rmtree(other_fs)


def test_concurrent_commits_never_mix(tmp_path, inputs):
    ref = inputs[2]
    dirs = staged_shards(tmp_path, workdir(tmp_path, inputs))
    procs = [subprocess.Popen([BIN, "commit", str(tmp_path / "plan.json"), *map(str, dirs)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert all(c in (0, 75) for c in codes) and 0 in codes, errs
    assert_same(tables(tmp_path / "out.slaf"), ref)
    data_files_all_referenced(tmp_path / "out.slaf")


@pytest.mark.parametrize("change", [
    {"id_types": "compact"},
    {"compression": "zstd"},
    {"chunk_size": 30},
    {"genes": "union"},
])
def test_replan_rebuilds_shared_target(tmp_path, inputs, change):
    """Shards + commit into a shared target, then the manifest changes and plan, shards and
    commit run again (Snakemake): the dataset equals a fresh conversion of the new manifest."""
    m = workdir(tmp_path, inputs)
    for round in range(2):
        run("plan", m, "-o", tmp_path / "plan.json")
        plan = json.loads((tmp_path / "plan.json").read_text())
        for i in range(len(plan["shards"])):
            run("shard", tmp_path / "plan.json", "--index", i, "--shared-target")
        (tmp_path / "out.slaf" / MARKER).unlink(missing_ok=True)  # Snakemake removes outputs
        run("commit", tmp_path / "plan.json")
        if round == 1:
            break
        text = m.read_text()
        for k, v in change.items():
            if k == "chunk_size":
                text = text.replace("chunk_size: 50", f"chunk_size: {v}")
            else:
                text = text.replace("options:\n", f"options:\n  {k}: {v}\n")
        m.write_text(text)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    m2 = workdir(fresh, inputs, out="fresh.slaf")
    m2.write_text(m.read_text().replace(str(tmp_path / "out.slaf"), str(fresh / "fresh.slaf")))
    run("convert", "--manifest", m2)
    assert_same(tables(tmp_path / "out.slaf"), tables(fresh / "fresh.slaf"))
    marker = json.loads((tmp_path / "out.slaf" / MARKER).read_text())
    assert marker["plan_hash"] == plan["plan_hash"]
    data_files_all_referenced(tmp_path / "out.slaf")
    import lance
    assert len(lance.dataset(str(tmp_path / "out.slaf" / "expression.lance")).versions()) == 1


def test_commit_leaves_files_of_another_plans_running_shards(tmp_path, inputs):
    m = workdir(tmp_path, inputs)
    run("plan", m, "-o", tmp_path / "plan.json")
    n = len(json.loads((tmp_path / "plan.json").read_text())["shards"])
    for i in range(n):
        run("shard", tmp_path / "plan.json", "--index", i, "--shared-target")
    out = tmp_path / "out.slaf"
    assert not list(out.glob("_slaf_receipts/*/*.running"))  # finished shards leave no mark
    # A shard of another plan writing into the same target right now.
    (out / "_slaf_receipts" / ("0" * 64)).mkdir()
    mark = out / "_slaf_receipts" / ("0" * 64) / "shard-000000.running"
    mark.write_text("")
    in_flight = out / "expression.lance" / "data" / "in-flight.lance"
    in_flight.write_bytes(b"x")
    proc = run("commit", tmp_path / "plan.json", "--log-format", "json")
    assert '"commit.cleanup_deferred"' in proc.stderr and in_flight.exists()
    assert_same(tables(out), inputs[2])
    mark.unlink()  # that shard finished (or was given up)
    (out / MARKER).unlink()
    run("commit", tmp_path / "plan.json")
    assert not in_flight.exists()
    data_files_all_referenced(out)


def test_commit_into_a_foreign_directory_is_refused(tmp_path, inputs):
    dirs = staged_shards(tmp_path, workdir(tmp_path, inputs))
    mine = tmp_path / "mine"
    (mine / "layers.lance").mkdir(parents=True)
    (mine / "config.json").write_text("{}")
    before = checksums(mine)
    proc = run("commit", tmp_path / "plan.json", *dirs, "--dataset", mine, check=False)
    assert proc.returncode == 73 and "not a dataset of slaf-convert's" in proc.stderr, proc.stderr
    assert checksums(mine) == before and (mine / "layers.lance").is_dir()


def test_shard_output_not_ours_is_refused(tmp_path, inputs):
    m = workdir(tmp_path, inputs)
    run("plan", m, "-o", tmp_path / "plan.json")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    proc = run("shard", tmp_path / "plan.json", "--index", 0, "-o", mine, check=False)
    assert proc.returncode == 73 and "not an earlier shard attempt" in proc.stderr, proc.stderr
    assert (mine / "notes.txt").read_text() == "keep me"
    proc = subprocess.run([BIN, "shard", "plan.json", "--index", "0", "-o", "."], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 73, proc.stderr
    assert (tmp_path / "plan.json").exists() and (tmp_path / "m.yaml").exists()
    # An earlier attempt (and an empty directory) may be replaced.
    run("shard", tmp_path / "plan.json", "--index", 0, "-o", tmp_path / "s0")
    run("shard", tmp_path / "plan.json", "--index", 0, "-o", tmp_path / "s0")
    (tmp_path / "empty").mkdir()
    run("shard", tmp_path / "plan.json", "--index", 0, "-o", tmp_path / "empty")


def test_tasks_read_only_staged_inputs(tmp_path, inputs):
    """Plan in one place; shards in a directory holding only the plan, reading inputs staged
    elsewhere (--inputs); the inputs deleted before commit; a different file is refused."""
    _, files, ref = inputs
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    for p, _ in files:
        shutil.copy(p, src / "data" / p.name)
    (src / "m.yaml").write_text(
        "output: out.slaf\ninputs:\n" + "".join(f"  - path: data/{p.name}\n" for p, _ in files)
        + "options:\n  chunk_size: 50\nsharding:\n  cells_per_shard: 200\n")
    run("plan", src / "m.yaml", "-o", src / "plan.json")
    task = tmp_path / "task"
    task.mkdir()
    shutil.move(src / "plan.json", task / "plan.json")
    staged = tmp_path / "staged"
    shutil.move(src / "data", staged / "data")
    shutil.rmtree(src)
    proc = run("shard", task / "plan.json", "--index", 0, "-o", task / "s0", check=False)
    assert proc.returncode == 66 and "--inputs" in proc.stderr and "part0.h5ad" in proc.stderr, proc.stderr
    n = len(json.loads((task / "plan.json").read_text())["shards"])
    for i in range(n):
        run("shard", task / "plan.json", "--index", i, "-o", task / f"s{i}", "--inputs", staged)
    # Another file under a planned name is refused, naming it.
    other = fixtures._adata(fixtures._counts(700, 120, np.random.default_rng(9)), np.random.default_rng(9))
    other.write_h5ad(staged / "data" / "part0.h5ad")
    proc = run("shard", task / "plan.json", "--index", 0, "-o", task / "again", "--inputs", staged, check=False)
    assert proc.returncode == 65 and "not the input that was planned" in proc.stderr, proc.stderr
    assert "part0.h5ad" in proc.stderr
    shutil.rmtree(staged)
    run("commit", task / "plan.json", *[task / f"s{i}" for i in range(n)], "--dataset", task / "out.slaf")
    assert_same(tables(task / "out.slaf"), ref)


def corrupt_last_x_chunk(path):
    """Rewrite X/data gzip-chunked and spoil its last chunk: the plan (which reads indptr and
    a sample of the first values) succeeds, the conversion fails near its end."""
    import h5py
    with h5py.File(path, "r+") as f:
        data = f["X/data"][:]
        del f["X/data"]
        f.create_dataset("X/data", data=data, chunks=(5000,), compression="gzip")
    with h5py.File(path, "r") as f:
        ds = f["X/data"]
        info = ds.id.get_chunk_info(ds.id.get_num_chunks() - 1)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 2)
        fh.write(b"\xff" * (info.size - 4))


def test_overwrite_with_failing_input_keeps_old_dataset(tmp_path):
    import anndata as ad
    rng = np.random.default_rng(3)
    good = fixtures._adata(fixtures._counts(2000, 200, rng, density=0.3), rng)
    good.write_h5ad(tmp_path / "good.h5ad")
    shutil.copy(tmp_path / "good.h5ad", tmp_path / "bad.h5ad")
    corrupt_last_x_chunk(tmp_path / "bad.h5ad")
    out = tmp_path / "out.slaf"
    run("convert", tmp_path / "good.h5ad", out)
    before = checksums(out)
    proc = run("convert", tmp_path / "bad.h5ad", out, "--overwrite", "--chunk-size", 100, check=False)
    assert proc.returncode not in (0, 70, 101) and "bad.h5ad" in proc.stderr, proc.stderr
    assert checksums(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5ad", "good.h5ad", "out.slaf"]
    # And a working --overwrite replaces it.
    run("convert", tmp_path / "good.h5ad", out, "--overwrite", "--chunk-size", 100)
    assert (out / MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5ad", "good.h5ad", "out.slaf"]


def test_convert_killed_after_a_shard_resumes_keeping_it(tmp_path):
    """`convert IN OUT`: killed once a shard has its receipt, the same command keeps that
    shard, redoes the rest, and equals a clean run. (Shards of `convert` have at least 100,000
    cells: enough to show here as 240,000 cells of 20 genes, 3 shards.)"""
    rng = np.random.default_rng(6)
    a = fixtures._adata(fixtures._counts(240_000, 20, rng, density=0.05), rng)
    a.write_h5ad(tmp_path / "in.h5ad")
    run("convert", tmp_path / "in.h5ad", tmp_path / "clean.slaf", "--chunk-size", 20000)
    out = tmp_path / "out.slaf"
    proc = subprocess.Popen([BIN, "convert", str(tmp_path / "in.h5ad"), str(out), "--chunk-size", "20000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob("_slaf_receipts/*/shard-*.json")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / MARKER).exists()
    kept = len(list(out.glob("_slaf_receipts/*/shard-*.json")))
    assert kept >= 1
    again = run("convert", tmp_path / "in.h5ad", out, "--chunk-size", 20000, "--log-format", "json")
    resumed = [json.loads(line) for line in again.stderr.splitlines() if '"convert.resumed"' in line]
    assert len(resumed) == 1 and resumed[0]["shards"] == 3, again.stderr
    assert len(json.loads(resumed[0]["kept_shards"])) >= kept
    assert not (out / "_slaf_receipts").exists()
    assert_same(tables(out), tables(tmp_path / "clean.slaf"))
    data_files_all_referenced(out)


def test_varp_of_an_input_without_cells(tmp_path):
    """varp rows are written by shard 0: an input with no cells still gets that shard."""
    import lance
    import scipy.sparse as sp
    rng = np.random.default_rng(10)
    a = fixtures._adata(sp.csr_matrix((0, 30), dtype=np.float32), rng)
    a.varp["correlation"] = sp.random(30, 30, density=0.2, format="csr", random_state=11)
    a.write_h5ad(tmp_path / "empty.h5ad")
    run("convert", tmp_path / "empty.h5ad", tmp_path / "out.slaf")
    t = lance.dataset(str(tmp_path / "out.slaf" / "genesxgenes.lance")).to_table().to_pandas()
    assert len(t) == a.varp["correlation"].nnz
    got = sp.coo_matrix((t["correlation"], (t["gene_integer_id_i"], t["gene_integer_id_j"])), shape=(30, 30))
    assert np.array_equal(got.toarray(), a.varp["correlation"].toarray().astype(np.float32))


def test_output_over_an_input_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    a = fixtures._adata(fixtures._counts(20, 10, rng), rng)
    a.write_h5ad(tmp_path / "x.h5ad")
    (tmp_path / "sub").mkdir()
    a.write_h5ad(tmp_path / "sub" / "y.h5ad")
    for args in [("x.h5ad", "x.h5ad", "--overwrite"), ("sub/y.h5ad", "sub", "--overwrite"),
                 ("sub", "sub/out.slaf")]:
        before = checksums(tmp_path)
        proc = subprocess.run([BIN, "convert", *args], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 73, (args, proc.stderr)
        assert "input" in proc.stderr
        assert checksums(tmp_path) == before, args
        assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["y.h5ad"]


# ---- the kill harness -------------------------------------------------------------------

def timed(args, cwd):
    started = time.monotonic()
    proc = subprocess.run([BIN, *map(str, args)], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return time.monotonic() - started


def kill_at(args, cwd, delay):
    """Start the command and SIGKILL it after `delay` seconds (if still running)."""
    proc = subprocess.Popen([BIN, *map(str, args)], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
    return False


def check_converged(root, ref):
    assert (root / MARKER).exists()
    assert_same(tables(root), ref)
    data_files_all_referenced(root)
    marker = json.loads((root / MARKER).read_text())
    assert marker["n_cells"] == 2050 and marker["expression_rows"] == len(ref["expression"])


def check_marker_honest(root, ref):
    """Right after a kill: a marker may only sit beside complete tables."""
    if (root / MARKER).exists():
        assert_same(tables(root), ref)


def scenario(kind, d, m, ref, rng, durations):
    """One kill point of `kind`; returns whether the kill landed before the step ended."""
    plan = d / "plan.json"
    out = d / "out.slaf"
    if kind == "convert":
        args = ["convert", "--manifest", m]
        landed = kill_at(args, d, rng.uniform(0, durations[kind]))
        check_marker_honest(out, ref)
        if landed and not ((out / MARKER).exists() and not (out / "_slaf_receipts").exists()):
            timed(args, d)  # the same command again (a finished output is left as it is)
        return landed
    if kind == "convert-overwrite":
        # A complete old dataset of other content (compact ids) is replaced: killed at any
        # point, the output is the old dataset or the new one, never neither or a mix.
        old = d / "old.yaml"
        old.write_text(m.read_text().replace("options:\n", "options:\n  id_types: compact\n"))
        run("convert", "--manifest", old)
        old_tables = tables(out)
        args = ["convert", "--manifest", m, "--overwrite"]
        landed = kill_at(args, d, rng.uniform(0, durations["convert"]))
        now = tables(out)
        try:
            assert_same(now, old_tables)
        except AssertionError:
            assert_same(now, ref)
        timed(args, d)
        return landed
    run("plan", m, "-o", plan)
    n = len(json.loads(plan.read_text())["shards"])
    staged = kind.endswith("staged")
    place = (lambda i: ["-o", d / f"s{i}"]) if staged else (lambda i: ["--shared-target"])
    commit = ["commit", plan, *[d / f"s{i}" for i in range(n)]] if staged else ["commit", plan]
    victim = rng.randrange(n)
    landed = False
    for i in range(n):
        args = ["shard", plan, "--index", i, *place(i)]
        if kind.startswith("shard") and i == victim:
            landed = kill_at(args, d, rng.uniform(0, durations["shard"]))
        timed(args, d)  # the engine's retry
    if kind.startswith("commit"):
        landed = kill_at(commit, d, rng.uniform(0, durations["commit"]))
        check_marker_honest(out, ref)
    timed(commit, d)
    return landed


def test_kill_anywhere_then_rerun_converges(tmp_path, inputs):
    ref = inputs[2]
    # Clean durations of each step, to spread kill points over their whole run.
    probe = tmp_path / "probe"
    probe.mkdir()
    m = workdir(probe, inputs)
    durations = {"convert": timed(["convert", "--manifest", m], probe)}
    shutil.rmtree(probe / "out.slaf")
    durations["plan"] = timed(["plan", m, "-o", probe / "plan.json"], probe)
    durations["shard"] = timed(["shard", probe / "plan.json", "--index", 0, "-o", probe / "s"], probe)
    n = len(json.loads((probe / "plan.json").read_text())["shards"])
    for i in range(1, n):
        timed(["shard", probe / "plan.json", "--index", i, "-o", probe / f"s{i}"], probe)
    os.rename(probe / "s", probe / "s0")
    durations["commit"] = timed(["commit", probe / "plan.json", *[probe / f"s{i}" for i in range(n)]], probe)
    durations = {k: v * 1.1 for k, v in durations.items()}

    kinds = ["convert", "shard-staged", "shard-shared", "commit-staged", "commit-shared",
             "convert-overwrite"]
    rng = random.Random(20261129)
    landed = 0
    for point in range(KILL_POINTS):
        kind = kinds[point % len(kinds)]
        d = tmp_path / f"k{point:03d}"
        d.mkdir()
        m = workdir(d, inputs)
        print(f"kill point {point}: {kind}")
        landed += scenario(kind, d, m, ref, rng, durations)
        check_converged(d / "out.slaf", ref)
        shutil.rmtree(d)
    print(f"kill harness: {KILL_POINTS} points, {landed} killed mid-run, all converged")
    assert landed >= KILL_POINTS // 2  # most kills must land inside the run


def test_commit_with_indices_killed_anywhere_converges(tmp_path, inputs):
    """The commit that builds scalar indices (options.indices), killed at seeded points while
    it commits or indexes: the re-run converges on the clean tables, with every index, and no
    marker ever sits beside an unfinished dataset."""
    import lance
    ref = inputs[2]
    probe = tmp_path / "probe"
    probe.mkdir()
    dirs = staged_shards(probe, workdir(probe, inputs, indices="true"))
    commit_time = timed(["commit", probe / "plan.json", *dirs], probe)
    rng = random.Random(20261130)
    for point in range(4):
        d = tmp_path / f"k{point}"
        d.mkdir()
        dirs = staged_shards(d, workdir(d, inputs, indices="true"))
        commit = ["commit", d / "plan.json", *dirs]
        kill_at(commit, d, rng.uniform(0, commit_time * 1.1))
        check_marker_honest(d / "out.slaf", ref)
        timed(commit, d)
        check_converged(d / "out.slaf", ref)
        built = [(t, i["fields"][0]) for t in ["cells", "genes", "expression"]
                 for i in lance.dataset(str(d / "out.slaf" / f"{t}.lance")).list_indices()]
        assert len(built) == 6, built
        shutil.rmtree(d)

"""The workflow steps: plan -> shards (separate processes, any order, retried) -> commit give
exactly what `convert` gives; receipts are checked; commit is idempotent; multi-file datasets
have global cell ids and start indices."""
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import fixtures

BIN = os.environ.get("SLAF_CONVERT_BIN")
ROOT = Path(__file__).resolve().parents[2]


def run(*args, check=True):
    proc = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def three_files(d, n=(70, 45, 90), m=30):
    """Three h5ad files with the same genes and obs columns, different cells."""
    import anndata as ad
    paths = []
    for k, n_cells in enumerate(n):
        rng = np.random.default_rng(100 + k)
        x = fixtures._counts(n_cells, m, rng, density=0.2)
        a = ad.AnnData(X=x, obs=fixtures._obs(n_cells, rng), var=fixtures._var(m, np.random.default_rng(0)))
        a.obs_names = [f"f{k}_{i}" for i in range(n_cells)]
        p = d / f"part{k}.h5ad"
        a.write_h5ad(p)
        paths.append((p, a))
    return paths


def manifest(d, files, out="out.slaf", chunk=20, per_shard=40):
    text = f"output: {out}\ninputs:\n" + "".join(f"  - path: {p.name}\n" for p, _ in files)
    text += f"options:\n  chunk_size: {chunk}\nsharding:\n  cells_per_shard: {per_shard}\n"
    (d / "m.yaml").write_text(text)
    return d / "m.yaml"


def tables(root):
    """The dataset's tables and config, read back; first checked by `validate`, which must
    find nothing wrong with any dataset the tests compare."""
    import lance
    check = subprocess.run([BIN, "validate", str(root)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    out = {}
    for t in ["expression", "cells", "genes"]:
        out[t] = lance.dataset(str(root / f"{t}.lance")).to_table().to_pandas()
    cfg = json.loads((root / "config.json").read_text())
    cfg.pop("created_at")
    for f in cfg.get("multi_file", {}).get("source_files", []):
        f.pop("file_path")  # each test has its own directory
    out["config"] = cfg
    return out


def assert_same(a, b):
    for t in ["expression", "cells", "genes"]:
        pd.testing.assert_frame_equal(a[t], b[t])
    assert a["config"] == b["config"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    files = three_files(d)
    m = manifest(d, files)
    run("convert", "--manifest", m)
    return d, files, tables(d / "out.slaf")


def test_staged_shards_any_order_equal_convert(tmp_path, reference):
    _, _, ref = reference
    files = three_files(tmp_path)
    m = manifest(tmp_path, files)
    n = int(run("plan", m, "-o", tmp_path / "plan.json", "--print-shards").stdout)
    assert n == 2 + 2 + 3  # 70, 45, 90 cells in shards of 40 (never spanning files)
    order = list(range(n))
    random.Random(1).shuffle(order)
    for i in order + [order[0]]:  # one shard twice: a retry replaces its attempt
        run("shard", tmp_path / "plan.json", "--shard", f"{i + 1}-of-{n}", "-o", tmp_path / f"s{i}")
    run("commit", tmp_path / "plan.json", *[tmp_path / f"s{i}" for i in range(n)])
    assert (tmp_path / "out.slaf" / "_SLAF_COMPLETE.json").exists()
    assert_same(tables(tmp_path / "out.slaf"), ref)


def test_shared_target_equals_staged(tmp_path, reference):
    _, _, ref = reference
    files = three_files(tmp_path)
    m = manifest(tmp_path, files)
    run("plan", m, "-o", tmp_path / "plan.json")
    plan = json.loads((tmp_path / "plan.json").read_text())
    for i in reversed(range(len(plan["shards"]))):
        run("shard", tmp_path / "plan.json", "--index", i, "--shared-target")
    run("commit", tmp_path / "plan.json")
    assert_same(tables(tmp_path / "out.slaf"), ref)


def test_commit_checks_receipts_and_is_idempotent(tmp_path):
    files = three_files(tmp_path)
    m = manifest(tmp_path, files)
    run("plan", m, "-o", tmp_path / "plan.json")
    n = len(json.loads((tmp_path / "plan.json").read_text())["shards"])
    for i in range(n):
        if i != 2:
            run("shard", tmp_path / "plan.json", "--index", i, "-o", tmp_path / f"s{i}")
    proc = run("commit", tmp_path / "plan.json", *[tmp_path / f"s{i}" for i in range(n) if i != 2], check=False)
    assert proc.returncode == 68 and "missing receipts for shards [2]" in proc.stderr
    assert not (tmp_path / "out.slaf" / "config.json").exists()
    run("shard", tmp_path / "plan.json", "--index", 2, "-o", tmp_path / "s2")
    dirs = [tmp_path / f"s{i}" for i in range(n)]
    run("commit", tmp_path / "plan.json", *dirs)
    marker = tmp_path / "out.slaf" / "_SLAF_COMPLETE.json"
    first = json.loads(marker.read_text())
    before = tables(tmp_path / "out.slaf")
    run("commit", tmp_path / "plan.json", *dirs)  # no-op
    assert json.loads(marker.read_text()) == first
    marker.unlink()  # Snakemake removes outputs before a forced re-run
    run("commit", tmp_path / "plan.json", *dirs)
    again = json.loads(marker.read_text())
    assert again["tables"] == first["tables"] and again["expression_rows"] == first["expression_rows"]
    assert_same(tables(tmp_path / "out.slaf"), before)


def test_killed_shard_rerun_leaves_no_orphans(tmp_path):
    files = three_files(tmp_path, n=(3000,), m=400)
    m = manifest(tmp_path, files, chunk=100, per_shard=3000)
    run("plan", m, "-o", tmp_path / "plan.json")
    proc = subprocess.Popen([BIN, "shard", str(tmp_path / "plan.json"), "--index", "0", "--shared-target"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = tmp_path / "out.slaf" / "expression.lance" / "data"
    deadline = time.time() + 30
    while time.time() < deadline and not (data.exists() and any(data.iterdir())):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run("shard", tmp_path / "plan.json", "--index", "0", "--shared-target")
    run("commit", tmp_path / "plan.json")
    import lance
    ds = lance.dataset(str(tmp_path / "out.slaf" / "expression.lance"))
    used = {f.data_files()[0].path for f in ds.get_fragments()}
    assert set(os.listdir(data)) == used  # the killed attempt's files are gone
    assert ds.count_rows() == files[0][1].X.nnz


def test_multi_file_reader_queries(reference):
    d, files, ref = reference
    from slaf import SLAFArray
    sa = SLAFArray(str(d / "out.slaf"))
    assert sa.shape == (205, 30)
    last_path, last = files[-1]
    x = last.X.toarray()
    for i in [0, last.n_obs - 1]:
        df = sa.get_cell_expression(last.obs_names[i]).to_pandas()
        got = {g: float(v) for g, v in zip(df["gene_id"], df["value"])}
        want = {last.var_names[g]: float(x[i, g]) for g in np.nonzero(x[i])[0]}
        assert got == want
    starts = ref["cells"]["cell_start_index"].to_numpy()
    assert starts[0] == 0 and np.all(np.diff(starts) >= 0)  # global, never restarting per file (B2)


def test_incompatible_genes_are_refused(tmp_path):
    import anndata as ad
    files = three_files(tmp_path, n=(10, 10))
    rng = np.random.default_rng(5)
    other = ad.AnnData(X=fixtures._counts(10, 30, rng), obs=fixtures._obs(10, rng), var=fixtures._var(30, rng))
    other.var_names = [f"OTHER{j}" for j in range(30)]
    other.write_h5ad(tmp_path / "part1.h5ad")
    m = manifest(tmp_path, files)
    proc = run("plan", m, "-o", tmp_path / "plan.json", check=False)
    assert proc.returncode == 67, proc.stderr
    assert "different genes" in proc.stderr and "OTHER0" in proc.stderr


def test_manifest_unknown_key(tmp_path):
    (tmp_path / "m.yaml").write_text("output: o.slaf\ninputs:\n  - path: a.h5ad\n    colour: red\n")
    proc = run("plan", tmp_path / "m.yaml", check=False)
    assert proc.returncode == 64 and "colour" in proc.stderr and "line 4" in proc.stderr


def gene_files(d, gene_lists, n_cells=25):
    """h5ad files with the given var names (each gene's counts follow it wherever it sits)."""
    import anndata as ad
    files = []
    for k, genes in enumerate(gene_lists):
        rng = np.random.default_rng(200 + k)
        x = fixtures._counts(n_cells, len(genes), rng, density=0.3)
        var = pd.DataFrame({"gene_symbol": [f"SYM_{g}" for g in genes]}, index=genes)
        a = ad.AnnData(X=x, obs=fixtures._obs(n_cells, rng), var=var)
        a.obs_names = [f"f{k}_{i}" for i in range(n_cells)]
        p = d / f"part{k}.h5ad"
        a.write_h5ad(p)
        files.append((p, a))
    return files


def dense_from_dataset(root, n_cells, n_genes):
    import lance
    t = lance.dataset(str(root / "expression.lance")).to_table()
    cells = t.column("cell_integer_id").to_numpy().astype(np.int64)
    genes = t.column("gene_integer_id").to_numpy().astype(np.int64)
    order = np.lexsort((genes, cells))
    assert np.array_equal(order, np.arange(len(order)))  # cell-major, genes ascending
    values = t.column("value").to_numpy().astype(np.float64)
    return sp.coo_matrix((values, (cells, genes)), shape=(n_cells, n_genes)).toarray()


def expected_dense(files, dataset_genes):
    """Each file's cells with its columns moved to the dataset's gene order (absent = 0)."""
    blocks = []
    for _, a in files:
        local = {g: j for j, g in enumerate(a.var_names)}
        x = a.X.toarray()
        block = np.zeros((a.n_obs, len(dataset_genes)))
        for j, g in enumerate(dataset_genes):
            if g in local:
                block[:, j] = x[:, local[g]]
        blocks.append(block)
    return np.vstack(blocks)


GENES = [f"G{j:02d}" for j in range(30)]


@pytest.mark.parametrize("mode", ["exact", "union", "intersection"])
def test_multi_file_genes_remapped(tmp_path, mode):
    rng = random.Random(7)
    second = GENES[5:] + ([f"NEW{j}" for j in range(4)] if mode != "exact" else GENES[:5])
    rng.shuffle(second)
    third = list(GENES)
    rng.shuffle(third)
    files = gene_files(tmp_path, [GENES, second, third])
    m = manifest(tmp_path, files, chunk=10, per_shard=20)
    m.write_text(m.read_text().replace("options:\n", f"options:\n  genes: {mode}\n"))
    proc = run("convert", "--manifest", m)
    root = tmp_path / "out.slaf"
    import lance
    genes = lance.dataset(str(root / "genes.lance")).to_table().to_pandas()
    want_genes = {
        "exact": GENES,
        "union": GENES + sorted([g for g in second if g.startswith("NEW")], key=second.index),
        "intersection": GENES[5:],
    }[mode]
    assert list(genes["gene_id"]) == want_genes
    assert list(genes["gene_symbol"]) == [f"SYM_{g}" for g in want_genes]
    n = sum(a.n_obs for _, a in files)
    want = expected_dense(files, want_genes)
    assert np.array_equal(dense_from_dataset(root, n, len(want_genes)), want)
    if mode == "intersection":
        assert "genes.dropped" in proc.stderr
    # Through the upstream reader: the whole matrix and cells of the last file (B16, B2).
    from slaf import SLAFArray
    from slaf.integrations.anndata import LazyAnnData
    sa = SLAFArray(str(root))
    x = LazyAnnData(sa).X.compute()
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    assert np.array_equal(x.astype(np.float64), want)
    last = files[-1][1]
    for i in [0, last.n_obs - 1]:
        df = sa.get_cell_expression(last.obs_names[i]).to_pandas()
        got = {g: float(v) for g, v in zip(df["gene_id"], df["value"])}
        row = want[n - last.n_obs + i]
        assert got == {want_genes[j]: float(row[j]) for j in np.nonzero(row)[0]}


def test_missing_obs_column(tmp_path):
    files = three_files(tmp_path, n=(12, 8))
    p, a = files[1]
    a.obs = a.obs.drop(columns=["donor"])
    a.write_h5ad(p)
    m = manifest(tmp_path, files)
    proc = run("plan", m, "-o", tmp_path / "plan.json", check=False)
    assert proc.returncode == 67 and "'donor'" in proc.stderr and "part1.h5ad" in proc.stderr, proc.stderr
    m.write_text(m.read_text().replace("options:\n", "options:\n  missing_obs_columns: null\n"))
    run("convert", "--manifest", m)
    import lance
    cells = lance.dataset(str(tmp_path / "out.slaf" / "cells.lance")).to_table().to_pandas()
    assert cells["donor"][:12].notna().sum() == 11  # one NA in the fixture
    assert cells["donor"][12:].isna().all()
    assert list(cells["source_file"]) == ["part0.h5ad"] * 12 + ["part1.h5ad"] * 8


def test_obs_type_mismatch_names_file_column_and_types(tmp_path):
    files = three_files(tmp_path, n=(12, 8))
    p, a = files[1]
    a.obs["n_counts"] = a.obs["n_counts"].astype(np.float32)
    a.write_h5ad(p)
    proc = run("plan", manifest(tmp_path, files), "-o", tmp_path / "plan.json", check=False)
    assert proc.returncode == 67
    assert "part1.h5ad" in proc.stderr and "'n_counts'" in proc.stderr
    assert "Float32" in proc.stderr and "Int64" in proc.stderr


def test_source_file_and_multi_file_block(reference):
    d, files, ref = reference
    assert list(ref["cells"]["source_file"].unique()) == [p.name for p, _ in files]
    mf = ref["config"]["multi_file"]
    assert mf["total_files"] == 3 and mf["total_cells_from_files"] == 205
    assert [(s["file_name"], s["n_cells"], s["cell_offset"]) for s in mf["source_files"]] == [
        ("part0.h5ad", 70, 0), ("part1.h5ad", 45, 70), ("part2.h5ad", 90, 115)]
    cols = list(ref["cells"].columns)
    assert cols[-4:] == ["cell_id", "cell_integer_id", "source_file", "cell_start_index"]

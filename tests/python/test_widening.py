"""A value type the plan guessed too narrow, under the workflow contract.

`plan` guesses uint16 values from the first 65,536 values of a matrix; here the last cell
holds 2.5, past that sample. Its shard writes float32, commit rewrites the other shards as
float32, and the dataset is the one `plan --read-all-values` (which never guesses) makes,
read back through upstream's reader too. Killed anywhere in that commit, the re-run
converges; a commit run again without the marker (Snakemake's forced re-run) finds the
rewritten files it recorded, after cleanup removed the narrow ones."""
import json
import random
import shutil

import numpy as np
import pytest
import scipy.sparse as sp

from test_resilience import MARKER, data_files_all_referenced, kill_at, staged_shards, timed
from test_workflow import assert_same, run, tables

CELLS, GENES = 600, 200  # 120,000 stored values: the sample ends in cell 327


@pytest.fixture(scope="module")
def late_fraction(tmp_path_factory):
    """The input, and the tables of the exact plan's dataset."""
    import anndata as ad
    import pandas as pd
    d = tmp_path_factory.mktemp("late")
    rng = np.random.default_rng(7)
    x = rng.integers(1, 40, size=(CELLS, GENES)).astype(np.float32)
    x[-1, -1] = 2.5
    spliced = x.copy()
    spliced[-1, -1] = 3.0
    spliced[-2, 0] = 0.25  # a layer widens too, in the same shard: two restarts
    obs = pd.DataFrame(index=[f"c{i}" for i in range(CELLS)])
    var = pd.DataFrame(index=[f"g{j}" for j in range(GENES)])
    ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=var,
               layers={"spliced": sp.csr_matrix(spliced)}).write_h5ad(d / "x.h5ad")
    ref = d / "ref"
    ref.mkdir()
    dirs = staged_shards(ref, manifest(ref, d / "x.h5ad"), "--read-all-values")
    run("commit", ref / "plan.json", *dirs)
    return d / "x.h5ad", tables(ref / "out.slaf")


def ref_root(late_fraction):
    return late_fraction[0].parent / "ref" / "out.slaf"


def assert_same_layers(a, b):
    import lance
    ta = lance.dataset(str(a / "layers.lance")).to_table()
    tb = lance.dataset(str(b / "layers.lance")).to_table()
    assert ta.schema == tb.schema and str(ta.schema.field("spliced").type) == "float"
    assert ta.equals(tb)


def manifest(d, h5ad):
    m = d / "m.yaml"
    m.write_text(f"output: {d / 'out.slaf'}\ninputs:\n  - path: {h5ad}\n"
                 "options:\n  chunk_size: 50\nsharding:\n  cells_per_shard: 200\n")
    return m


def test_guessed_plan_commits_the_exact_dataset(tmp_path, late_fraction):
    from slaf import SLAFArray
    h5ad, ref = late_fraction
    dirs = staged_shards(tmp_path, manifest(tmp_path, h5ad))
    assert json.loads((tmp_path / "plan.json").read_text())["types_guessed"] is True
    receipts = [json.loads((s / "receipt.json").read_text()) for s in dirs]
    assert [r.get("profile", {}).get("value_type") for r in receipts] == [None, None, "Float32"]
    assert receipts[2]["profile"]["layer_types"] == ["Float32"]
    commit = run("commit", tmp_path / "plan.json", *dirs).stderr
    assert "commit.widened" in commit
    out = tmp_path / "out.slaf"
    assert_same(tables(out), ref)
    assert_same_layers(out, ref_root(late_fraction))
    data_files_all_referenced(out)
    x = SLAFArray(str(out)).get_cell_expression(["c599"])
    assert x.filter(x["gene_id"] == "g199")["value"].to_list() == [2.5]
    # Snakemake's forced re-run: no marker, the narrow files are gone; the record serves.
    (out / MARKER).unlink()
    again = run("commit", tmp_path / "plan.json", *dirs).stderr
    assert "commit.widened" not in again
    assert_same(tables(out), ref)


def test_widening_commit_killed_anywhere_converges(tmp_path, late_fraction):
    h5ad, ref = late_fraction
    probe = tmp_path / "probe"
    probe.mkdir()
    dirs = staged_shards(probe, manifest(probe, h5ad))
    commit_time = timed(["commit", probe / "plan.json", *dirs], probe)
    rng = random.Random(20261130)
    for point in range(5):
        d = tmp_path / f"k{point}"
        d.mkdir()
        dirs = staged_shards(d, manifest(d, h5ad))
        commit = ["commit", d / "plan.json", *dirs]
        kill_at(commit, d, rng.uniform(0, commit_time * 1.1))
        if (d / "out.slaf" / MARKER).exists():
            assert_same(tables(d / "out.slaf"), ref)
        timed(commit, d)
        assert_same(tables(d / "out.slaf"), ref)
        assert_same_layers(d / "out.slaf", ref_root(late_fraction))
        data_files_all_referenced(d / "out.slaf")
        shutil.rmtree(d)

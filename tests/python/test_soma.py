"""TileDB-SOMA experiments, written by tiledbsoma from AnnData objects: the conversion read
back through upstream's reader equals the AnnData, and every table equals converting the
same data's .h5ad; 4 shards equal 1; joinids are mapped, not taken as positions; without
libtiledb a SOMA input fails cleanly (exit 69) and everything else still works."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import soma_fixtures as sf
from anndata_equality import assert_same_as_anndata, dense

BIN = os.environ.get("SLAF_CONVERT_BIN")
ROOT = Path(__file__).resolve().parents[2]
TABLES = ["cells", "genes", "expression", "layers", "cellsxcells", "genesxgenes"]


def run(*args, libtiledb=True, check=True, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "SLAF_CONVERT_LIBTILEDB"}
    if libtiledb is True:
        env["SLAF_CONVERT_LIBTILEDB"] = sf.libtiledb()
    elif libtiledb:
        env["SLAF_CONVERT_LIBTILEDB"] = str(libtiledb)
    proc = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def tables(root):
    """Every table present (validated first) and the config without its time and paths."""
    import lance
    check = run("validate", root, libtiledb=False, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    out = {t: lance.dataset(str(root / f"{t}.lance")).to_table()
           for t in TABLES if (root / f"{t}.lance").exists()}
    cfg = json.loads((root / "config.json").read_text())
    cfg.pop("created_at")
    out["config"] = cfg
    return out


def assert_same_tables(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        if name == "config":
            assert a[name] == b[name]
        else:
            assert a[name].equals(b[name]), name


@pytest.fixture(scope="module")
def everything(tmp_path_factory):
    """The experiment (measurement 'rna_custom'), its .h5ad, and the .h5ad converted."""
    d = tmp_path_factory.mktemp("soma")
    h5ad, exp = sf.write(sf.counts_with_everything(), d, measurement="rna_custom")
    run("convert", h5ad, d / "from_h5ad.slaf", "--chunk-size", "25")
    return d, Path(h5ad), Path(exp), tables(d / "from_h5ad.slaf")


def test_counts_equal_anndata_and_h5ad(tmp_path, everything):
    _, h5ad, exp, ref = everything
    out = tmp_path / "o.slaf"
    proc = run("--log-format", "json", "convert", exp, out, "--chunk-size", "25",
               "--measurement", "rna_custom")
    import jsonschema
    schema = json.loads((ROOT / "schemas" / "log-event.schema.json").read_text())
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    for line in lines:
        jsonschema.validate(line, schema)
    events = [line.get("event") for line in lines]
    assert "input.tiledb" in events and events[-1] == "convert.done", events
    assert_same_as_anndata(h5ad, out)
    got = tables(out)
    assert_same_tables(got, ref)
    # Cells named by obs_id, genes by var_id: not row numbers (upstream's reader does that).
    assert got["cells"]["cell_id"].to_pylist()[:2] == ["cell_00000", "cell_00001"]
    assert got["genes"]["gene_id"].to_pylist()[0] == "ENSG00000000000"
    assert got["expression"].schema.field("value").type == "uint16"


def test_four_shards_equal_one(tmp_path, everything):
    _, _, exp, _ = everything
    staged = tmp_path / "staged"
    staged.mkdir()
    shutil.copytree(exp, staged / "experiment")
    (staged / "m.yaml").write_text(
        "output: out.slaf\ninputs:\n  - path: experiment\n    measurement: rna_custom\n"
        "options:\n  chunk_size: 5\nsharding:\n  cells_per_shard: 25\n")
    n = int(run("plan", staged / "m.yaml", "-o", tmp_path / "plan.json", "--print-shards").stdout)
    assert n == 4  # 90 cells in shards of 25
    for i in [3, 1, 0, 2]:
        # Each shard in a directory of its own, reading the staged experiment only.
        task = tmp_path / f"task{i}"
        task.mkdir()
        run("shard", tmp_path / "plan.json", "--index", i, "--inputs", staged, "-o", task / "s", cwd=task)
    run("commit", tmp_path / "plan.json", *[tmp_path / f"task{i}" / "s" for i in range(n)])
    one = tmp_path / "one.slaf"
    run("convert", exp, one, "--chunk-size", "5", "--measurement", "rna_custom")
    sharded, single = tables(staged / "out.slaf"), tables(one)
    for t in ["cells", "genes", "expression", "layers", "cellsxcells", "genesxgenes"]:
        assert sharded[t].equals(single[t]), t
    assert sharded["cells"].num_rows == 90  # no cell twice at a shard boundary


def test_float_values(tmp_path):
    adata = sf.float_values()
    h5ad, exp = sf.write(adata, tmp_path)
    run("convert", exp, tmp_path / "s.slaf", "--chunk-size", "16")
    run("convert", h5ad, tmp_path / "h.slaf", "--chunk-size", "16")
    assert_same_as_anndata(h5ad, tmp_path / "s.slaf")
    got = tables(tmp_path / "s.slaf")
    assert got["expression"].schema.field("value").type == "float"
    assert_same_tables(got, tables(tmp_path / "h.slaf"))


def test_joinids_are_mapped(tmp_path):
    adata, exp = sf.write_sparse_joinids(tmp_path)
    out = tmp_path / "o.slaf"
    proc = run("convert", exp, out, "--chunk-size", "7")
    assert "skipping ms/RNA/obsm/X_dense: a dense array" in proc.stderr, proc.stderr
    from slaf import SLAFArray
    from slaf.integrations.anndata import LazyAnnData
    lazy = LazyAnnData(SLAFArray(str(out)))
    assert np.array_equal(dense(lazy.X), adata.X.toarray())
    got = tables(out)
    assert got["cells"]["cell_id"].to_pylist() == list(adata.obs_names)
    assert got["cells"]["cell_integer_id"].to_pylist() == list(range(adata.n_obs))
    assert got["cells"]["barcode"].to_pylist() == list(adata.obs["barcode"])
    assert got["cells"]["score"].to_pylist() == list(adata.obs["score"])
    assert got["genes"]["gene_id"].to_pylist() == list(adata.var_names)
    assert got["genes"]["symbol"].to_pylist() == list(adata.var["symbol"])
    assert "X_dense" not in got["cells"].column_names


def test_id_columns_chosen(tmp_path):
    adata, exp = sf.write_sparse_joinids(tmp_path)
    out = tmp_path / "o.slaf"
    run("convert", exp, out, "--chunk-size", "7", "--obs-id-column", "barcode",
        "--var-id-column", "symbol")
    got = tables(out)
    assert got["cells"]["cell_id"].to_pylist() == list(adata.obs["barcode"])
    assert got["cells"]["obs_id"].to_pylist() == list(adata.obs_names)
    assert got["genes"]["gene_id"].to_pylist() == list(adata.var["symbol"])
    assert got["genes"]["var_id"].to_pylist() == list(adata.var_names)
    from slaf import SLAFArray
    sa = SLAFArray(str(out))
    # Upstream's reader looks the cell up by its barcode and names genes by symbol.
    row = sa.get_cell_expression(adata.obs["barcode"].iloc[3])
    want = adata.X[3].tocoo()
    assert dict(zip(row["gene_id"].to_list(), row["value"].to_list())) == {
        adata.var["symbol"].iloc[j]: v for j, v in zip(want.col, want.data)}


def test_choices_listed_when_missing(tmp_path, everything):
    _, _, exp, _ = everything
    proc = run("convert", exp, tmp_path / "o.slaf", check=False)
    assert proc.returncode == 65, proc.stderr
    assert "no 'RNA' (it holds: rna_custom)" in proc.stderr and "--measurement" in proc.stderr
    proc = run("convert", exp, tmp_path / "o.slaf", "--measurement", "rna_custom",
               "--x-layer", "counts", check=False)
    assert proc.returncode == 65
    assert "no layer 'counts' (it holds: data, spliced, unspliced)" in proc.stderr
    proc = run("convert", exp, tmp_path / "o.slaf", "--measurement", "rna_custom",
               "--obs-id-column", "barcode", check=False)
    assert proc.returncode == 65 and "no id column 'barcode'" in proc.stderr
    assert not (tmp_path / "o.slaf").exists()


def test_other_x_layer_as_expression(tmp_path, everything):
    d, h5ad, exp, _ = everything
    out = tmp_path / "o.slaf"
    run("convert", exp, out, "--measurement", "rna_custom", "--x-layer", "unspliced")
    import anndata
    want = anndata.read_h5ad(h5ad)
    from slaf import SLAFArray
    from slaf.integrations.anndata import LazyAnnData
    lazy = LazyAnnData(SLAFArray(str(out)))
    assert np.array_equal(dense(lazy.X), dense(want.layers["unspliced"]).astype(np.float32))
    assert np.array_equal(dense(lazy.layers["data"]), dense(want.X).astype(np.float32))


@pytest.mark.parametrize("library", ["missing-file", "not-a-library", "unset"])
def test_without_libtiledb(tmp_path, everything, library):
    _, h5ad, exp, ref = everything
    given = {"missing-file": tmp_path / "nowhere" / "libtiledb.so",
             "not-a-library": h5ad, "unset": None}[library]
    out = tmp_path / "o.slaf"
    proc = run("convert", exp, out, "--measurement", "rna_custom", libtiledb=given, check=False)
    assert proc.returncode == 69, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith(f"slaf-convert: error: {exp}: a TileDB-SOMA experiment: it needs the TileDB library"), last
    assert "SLAF_CONVERT_LIBTILEDB" in last and "--libtiledb" in last
    assert not (out / "_SLAF_COMPLETE.json").exists()
    # Everything else works without it.
    run("convert", h5ad, tmp_path / "h.slaf", "--chunk-size", "25", libtiledb=given)
    assert_same_tables(tables(tmp_path / "h.slaf"), ref)


@pytest.mark.parametrize("damage", ["truncated-fragment", "missing-obs", "not-an-experiment"])
def test_damaged_experiment_is_refused(tmp_path, everything, damage):
    _, _, exp, _ = everything
    broken = tmp_path / "experiment"
    shutil.copytree(exp, broken)
    if damage == "truncated-fragment":
        data = broken / "ms" / "rna_custom" / "X" / "data" / "__fragments"
        biggest = max((p for p in data.rglob("*.tdb")), key=lambda p: p.stat().st_size)
        with open(biggest, "r+b") as f:
            f.truncate(100)
    elif damage == "missing-obs":
        shutil.rmtree(broken / "obs")
    else:
        shutil.rmtree(broken)
        broken.mkdir()
        (broken / "__tiledb_group.tdb").write_bytes(b"")
    out = tmp_path / "o.slaf"
    proc = run("convert", broken, out, "--measurement", "rna_custom", check=False)
    assert proc.returncode == 65, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith(f"slaf-convert: error: {broken}: "), last
    assert not (out / "_SLAF_COMPLETE.json").exists()

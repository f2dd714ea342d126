"""Interop suite: convert anndata-written fixtures with slaf-convert and read them back with
upstream's reader (slafdb 0.5.2's `slaf.SLAFArray`), asserting exact equality.

Needs SLAF_CONVERT_BIN (the built binary). When ../shared/tools/verify_slaf.py is present
beside the clone, its verdict is checked too.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import fixtures

BIN = os.environ.get("SLAF_CONVERT_BIN")
ROOT = Path(__file__).resolve().parents[2]
VERIFIER = ROOT.parent / "shared" / "tools" / "verify_slaf.py"



def run_convert(src, dst, *extra):
    return subprocess.run([BIN, "convert", str(src), str(dst), *extra],
                          capture_output=True, text=True)


@pytest.fixture(scope="module", params=sorted(fixtures.CASES))
def converted(request, tmp_path_factory):
    name = request.param
    d = tmp_path_factory.mktemp(name)
    src, dst = d / f"{name}.h5ad", d / f"{name}.slaf"
    adata, opts = fixtures.write(name, src)
    extra = ["--chunk-size", str(opts.get("chunk_size", 50))]
    proc = run_convert(src, dst, *extra)
    assert proc.returncode == 0, proc.stderr
    return name, adata, src, dst


def open_slaf(path):
    from slaf import SLAFArray
    return SLAFArray(str(path))


def x_dense(adata):
    x = adata.X
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def test_config_and_shape(converted):
    _, adata, _, dst = converted
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["format_version"] == "0.5"
    assert cfg["array_shape"] == list(adata.shape)
    x = adata.X
    nnz = x.nnz if sp.issparse(x) else int(np.count_nonzero(x))
    assert cfg["metadata"]["expression_count"] == nnz
    sa = open_slaf(dst)
    assert tuple(sa.shape) == adata.shape


def test_full_matrix_exact(converted):
    _, adata, _, dst = converted
    import lance
    ds = lance.dataset(str(dst / "expression.lance"))
    t = ds.to_table()
    cells = t.column("cell_integer_id").to_numpy().astype(np.int64)
    genes = t.column("gene_integer_id").to_numpy().astype(np.int64)
    values = t.column("value").to_numpy().astype(np.float64)
    # Rows grouped by cell, ascending; genes ascending within a cell.
    order = np.lexsort((genes, cells))
    assert np.array_equal(order, np.arange(len(order)))
    got = sp.coo_matrix((values, (cells, genes)), shape=adata.shape).toarray()
    want = x_dense(adata).astype(np.float32).astype(np.float64)
    assert np.array_equal(got, want)
    # Through the upstream reader's own matrix path as well.
    if adata.n_obs:
        from slaf.integrations.anndata import LazyAnnData
        lazy = LazyAnnData(open_slaf(dst))
        m = lazy.X.compute()
        m = m.toarray() if sp.issparse(m) else np.asarray(m)
        assert np.array_equal(m.astype(np.float64), want)


def _norm(v):
    if v is None:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    if v is pd.NA:
        return None
    if isinstance(v, (np.generic,)):
        v = v.item()
    return v


def test_obs_var_columns(converted):
    _, adata, _, dst = converted
    import lance
    for table, frame, id_col in [("cells", adata.obs, "cell_id"), ("genes", adata.var, "gene_id")]:
        got = lance.dataset(str(dst / f"{table}.lance")).to_table().to_pandas()
        assert list(got[id_col]) == list(frame.index)
        for col in frame.columns:
            out = col.replace(".", "_")
            assert out in got.columns, (table, col)
            want = [_norm(v) for v in frame[col].astype(object)]
            have = [_norm(v) for v in got[out].astype(object)]
            if frame[col].dtype == np.float32:
                want = [None if w is None else float(np.float32(w)) for w in want]
            assert have == want, (table, col)
            # Missing is null, never the text "nan".
            assert "nan" not in [str(h) for h in have if isinstance(h, str)]


def test_cell_and_gene_queries(converted):
    _, adata, _, dst = converted
    if adata.n_obs == 0:
        return
    sa = open_slaf(dst)
    x = x_dense(adata).astype(np.float32).astype(np.float64)
    # The reader answers with names: cell_id, gene_id, value.
    for i in sorted({0, adata.n_obs // 2, adata.n_obs - 1}):
        df = sa.get_cell_expression(adata.obs_names[i]).to_pandas()
        assert set(df["cell_id"]) <= {adata.obs_names[i]}
        got = {g: float(v) for g, v in zip(df["gene_id"], df["value"])}
        want = {adata.var_names[g]: x[i, g] for g in np.nonzero(x[i])[0]}
        assert got == want, i
    for j in sorted({0, adata.n_vars // 2, adata.n_vars - 1}):
        df = sa.get_gene_expression(adata.var_names[j]).to_pandas()
        assert set(df["gene_id"]) <= {adata.var_names[j]}
        got = {c: float(v) for c, v in zip(df["cell_id"], df["value"])}
        want = {adata.obs_names[c]: x[c, j] for c in np.nonzero(x[:, j])[0]}
        assert got == want, j


# ../shared is beside the project on our machines and in CI (never in a user's clone).
@pytest.mark.skipif(not VERIFIER.exists() and not os.environ.get("CI"), reason="shared verifier not present")
def test_shared_verifier(converted):
    _, _, src, dst = converted
    proc = subprocess.run([sys.executable, str(VERIFIER), str(src), str(dst), "--quiet"],
                          capture_output=True, text=True)
    verdict = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    assert verdict, proc.stderr[-2000:]
    failed = {k: v for k, v in verdict.get("checks", {}).items() if v.get("status") == "fail"}
    # uns.json is strict JSON on purpose (issue 4): NaN and +-Inf are written as null, which the
    # verifier reports as "nan != None". Any other difference fails.
    uns = failed.get("uns", {}).get("detail", [])
    if uns and all(d.endswith(("nan != None", "inf != None", "-inf != None")) for d in uns):
        failed.pop("uns")
    assert not failed, failed


def test_compact_ids_70k_genes_widen(tmp_path):
    adata, _ = fixtures.write("genes_70k", tmp_path / "g.h5ad")
    proc = run_convert(tmp_path / "g.h5ad", tmp_path / "g.slaf", "--id-types", "compact")
    assert proc.returncode == 0, proc.stderr
    import lance
    schema = lance.dataset(str(tmp_path / "g.slaf" / "expression.lance")).schema
    assert str(schema.field("gene_integer_id").type) == "int32"
    genes = lance.dataset(str(tmp_path / "g.slaf" / "expression.lance")).to_table()["gene_integer_id"]
    assert max(genes.to_pylist()) == 69_999


def test_compact_ids_small(tmp_path):
    fixtures.write("csr_int_counts", tmp_path / "c.h5ad")
    proc = run_convert(tmp_path / "c.h5ad", tmp_path / "c.slaf", "--id-types", "compact")
    assert proc.returncode == 0, proc.stderr
    import lance
    schema = lance.dataset(str(tmp_path / "c.slaf" / "expression.lance")).schema
    assert str(schema.field("cell_integer_id").type) == "uint32"
    assert str(schema.field("gene_integer_id").type) == "uint16"
    assert str(schema.field("value").type) == "uint16"
    sa = open_slaf(tmp_path / "c.slaf")
    assert sa.get_cell_expression("cell_00000").height > 0


def test_value_types(tmp_path):
    import lance
    for name, want in [("csr_int_counts", "uint16"), ("float_normalised", "float"),
                       ("int64_indptr", "uint16"), ("large_counts", "float")]:
        fixtures.write(name, tmp_path / f"{name}.h5ad")
        proc = run_convert(tmp_path / f"{name}.h5ad", tmp_path / f"{name}.slaf")
        assert proc.returncode == 0, proc.stderr
        schema = lance.dataset(str(tmp_path / f"{name}.slaf" / "expression.lance")).schema
        assert str(schema.field("value").type) == want, name


def test_dotted_collision_is_an_error(tmp_path):
    import anndata as ad
    adata = ad.AnnData(X=sp.csr_matrix(np.eye(3, dtype=np.float32)),
                       obs=pd.DataFrame({"a.b": [1, 2, 3], "a_b": [4, 5, 6]},
                                        index=["x", "y", "z"]))
    adata.write_h5ad(tmp_path / "dup.h5ad")
    proc = run_convert(tmp_path / "dup.h5ad", tmp_path / "dup.slaf")
    assert proc.returncode == 65
    assert "dup.h5ad" in proc.stderr and "'a.b' and 'a_b'" in proc.stderr
    assert not (tmp_path / "dup.slaf" / "config.json").exists()


def test_log_lines_validate_against_schema(tmp_path):
    import jsonschema
    schema = json.loads((ROOT / "schemas" / "log-event.schema.json").read_text())
    fixtures.write("empty_cell", tmp_path / "e.h5ad")
    proc = subprocess.run([BIN, "--log-format", "json", "convert", str(tmp_path / "e.h5ad"),
                           str(tmp_path / "e.slaf"), "--chunk-size", "10"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(l) for l in proc.stderr.splitlines() if l.strip()]
    events = [l.get("event") for l in lines]
    assert events.count("fragment.written") == 6 and events[-1] == "convert.done", events
    for line in lines:
        jsonschema.validate(line, schema)


@pytest.fixture(scope="module")
def everything(tmp_path_factory):
    d = tmp_path_factory.mktemp("everything")
    src, dst = d / "everything.h5ad", d / "everything.slaf"
    adata, _ = fixtures.write("everything", src)
    proc = run_convert(src, dst, "--chunk-size", "25", "--raw", "as-layer")
    assert proc.returncode == 0, proc.stderr
    from slaf.integrations.anndata import LazyAnnData
    return adata, dst, LazyAnnData(open_slaf(dst))


def dense(m):
    m = m.compute() if hasattr(m, "compute") else m
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def test_layers_union_exact(everything):
    adata, dst, lazy = everything
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["tables"]["layers"] == "layers.lance"
    assert cfg["layers"]["available"] == ["spliced", "unspliced", "raw"]
    import lance
    t = lance.dataset(str(dst / "layers.lance")).to_table()
    assert str(t.schema.field("spliced").type) == "uint16"      # integral counts
    assert str(t.schema.field("unspliced").type) == "float"     # float64 input
    cells = t.column("cell_integer_id").to_numpy()
    genes = t.column("gene_integer_id").to_numpy()
    assert np.array_equal(np.lexsort((genes, cells)), np.arange(len(cells)))
    # Rows = union of stored positions (never the Cartesian product).
    union = (abs(adata.layers["spliced"]) + abs(adata.layers["unspliced"]) + abs(adata.raw.X)).nnz
    assert t.num_rows == union
    for k in ["spliced", "unspliced"]:
        want = dense(adata.layers[k]).astype(np.float32)
        assert np.array_equal(dense(lazy.layers[k]).astype(np.float32), want), k
    assert np.array_equal(dense(lazy.layers["raw"]), dense(adata.raw.X))


def test_obsm_varm_exact(everything):
    adata, dst, lazy = everything
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["obsm"]["dimensions"] == {"X_pca": 5, "X_umap": 2}
    assert cfg["varm"]["available"] == ["PCs"]
    # float64 embeddings are stored as float32: the format's vector type (docs §2.6).
    assert np.array_equal(np.asarray(lazy.obsm["X_pca"]), adata.obsm["X_pca"].astype(np.float32))
    assert np.array_equal(np.asarray(lazy.obsm["X_umap"]), adata.obsm["X_umap"])
    assert np.array_equal(np.asarray(lazy.varm["PCs"]), adata.varm["PCs"].astype(np.float32))


def test_obsp_varp_exact(everything):
    adata, dst, lazy = everything
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["tables"]["cellsxcells"] == "cellsxcells.lance"
    assert cfg["obsp"]["dimensions"] == {"connectivities": adata.n_obs, "distances": adata.n_obs}
    for k in ["connectivities", "distances"]:
        assert np.array_equal(dense(lazy.obsp[k]), dense(adata.obsp[k]).astype(np.float32)), k
    assert np.array_equal(dense(lazy.varp["correlation"]),
                          dense(adata.varp["correlation"]).astype(np.float32))


def test_uns_strict_json(everything):
    adata, dst, lazy = everything
    text = (dst / "uns.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    uns = json.loads(text)
    assert uns["neighbors"]["params"] == {"n_neighbors": 15, "method": "umap", "use_rep": "X_pca"}
    assert uns["cell_type_colors"] == ["#1f77b4", "#ff7f0e", "#2ca02c"]
    assert uns["flags"] == {"done": True, "scaled": False}
    assert uns["values"] == [1.5, None, None, -2.0]
    assert uns["matrix"] == [[0, 1, 2], [3, 4, 5]]
    assert uns["version"] == "1.2.3" and uns["count"] == 42
    assert uns["table"] == {"a": [1, 2, 3], "b": ["x", "y", "z"]}
    assert dict(lazy.uns)["version"] == "1.2.3"


def test_raw_ignored_by_default(tmp_path):
    fixtures.write("everything", tmp_path / "e.h5ad")
    proc = run_convert(tmp_path / "e.h5ad", tmp_path / "e.slaf")
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads((tmp_path / "e.slaf" / "config.json").read_text())
    assert "raw" not in cfg["layers"]["available"]
    assert "ignoring /raw" in proc.stderr


def test_dataframe_obsm_is_skipped_with_a_warning(tmp_path):
    import anndata as ad
    rng = np.random.default_rng(3)
    adata = ad.AnnData(X=sp.random(6, 4, density=0.5, format="csr", random_state=rng,
                                   dtype=np.float32))
    adata.obsm["spatial.xy"] = rng.normal(size=(6, 2))
    adata.obsm["meta"] = pd.DataFrame({"a": np.arange(6)}, index=adata.obs_names)
    adata.write_h5ad(tmp_path / "o.h5ad")
    proc = run_convert(tmp_path / "o.h5ad", tmp_path / "o.slaf")
    assert proc.returncode == 0, proc.stderr
    assert "skipping /obsm/meta" in proc.stderr
    cfg = json.loads((tmp_path / "o.slaf" / "config.json").read_text())
    assert cfg["obsm"]["available"] == ["spatial_xy"]   # '.' -> '_' as for columns

"""Compare a converted dataset with what `anndata.read_h5ad` makes of its input: X, obs and
var (categoricals as their labels, missing as null), obsm/varm, obsp/varp, raw (as the layer
"raw"), layers and uns, read back through upstream's reader (`slaf.SLAFArray`) and the Lance tables."""
import json

import numpy as np
import pandas as pd
import scipy.sparse as sp


def dense(m):
    m = m.compute() if hasattr(m, "compute") else m
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def plain(v):
    """One cell of a frame as a comparable Python value (missing as None)."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def column(series):
    values = [plain(v) for v in series.astype(object)]
    if series.dtype == np.float32:
        values = [None if v is None else float(np.float32(v)) for v in values]
    return values


def uns_json(value):
    """anndata's uns in uns.json's form: record arrays as objects of named columns, NaN as
    null, sparse matrices left out (they have no JSON form)."""
    if isinstance(value, dict):
        out = {k: uns_json(v) for k, v in value.items() if not sp.issparse(v)}
        return out
    if isinstance(value, np.ndarray) and value.dtype.names:
        return {k: uns_json(value[k]) for k in value.dtype.names}
    if isinstance(value, np.ndarray):
        return [uns_json(v) for v in value.tolist()] if value.ndim else uns_json(value.item())
    if isinstance(value, list):
        return [uns_json(v) for v in value]
    if isinstance(value, bytes):
        return value.decode()
    return plain(value)


def assert_same_as_anndata(src, dst, *, raw=False):
    import anndata
    import lance
    from slaf import SLAFArray
    from slaf.integrations.anndata import LazyAnnData

    adata = anndata.read_h5ad(src)
    cfg = json.loads((dst / "config.json").read_text())
    lazy = LazyAnnData(SLAFArray(str(dst)))
    assert tuple(lazy.shape) == adata.shape
    want_x = dense(adata.X).astype(np.float32)
    assert np.array_equal(dense(lazy.X).astype(np.float32), want_x)

    for table, frame, id_col in [("cells", adata.obs, "cell_id"), ("genes", adata.var, "gene_id")]:
        got = lance.dataset(str(dst / f"{table}.lance")).to_table().to_pandas()
        assert list(got[id_col]) == list(frame.index), table
        renamed = cfg.get("renamed_columns", {}).get("obs" if table == "cells" else "var", {})
        for col in frame.columns:
            out = renamed.get(col, col)
            assert out in got.columns, (table, col, list(got.columns))
            assert column(got[out]) == column(frame[col]), (table, col)

    for axis, want, got in [("obsm", adata.obsm, lazy.obsm), ("varm", adata.varm, lazy.varm)]:
        renamed = cfg.get(axis, {}).get("renamed", {})
        assert sorted(cfg.get(axis, {}).get("available", [])) == sorted(
            renamed.get(k, k) for k in want.keys()), axis
        for key, values in want.items():
            values = np.asarray(values).reshape(len(values), -1).astype(np.float32)
            assert np.array_equal(np.asarray(got[renamed.get(key, key)]), values, equal_nan=True), (axis, key)

    for axis, want, got in [("obsp", adata.obsp, lazy.obsp), ("varp", adata.varp, lazy.varp)]:
        assert sorted(cfg.get(axis, {}).get("available", [])) == sorted(want.keys()), axis
        for key, matrix in want.items():
            assert np.array_equal(dense(got[key]), dense(matrix).astype(np.float32)), (axis, key)

    for key, layer in adata.layers.items():
        assert np.array_equal(dense(lazy.layers[key]).astype(np.float32),
                              dense(layer).astype(np.float32)), key
    if raw:
        assert np.array_equal(dense(lazy.layers["raw"]).astype(np.float32),
                              dense(adata.raw.X).astype(np.float32))

    uns_file = dst / "uns.json"
    got_uns = json.loads(uns_file.read_text()) if uns_file.exists() else {}
    assert got_uns == uns_json(dict(adata.uns))
    return adata, cfg

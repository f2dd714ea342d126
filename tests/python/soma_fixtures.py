"""Seeded TileDB-SOMA experiments for the SOMA reader's tests, written by tiledbsoma itself
from AnnData objects (`tiledbsoma.io.from_anndata`), each beside the same data as .h5ad.

`libtiledb()` finds the TileDB library the tiledbsoma wheel ships, which slaf-convert loads
at run time (SLAF_CONVERT_LIBTILEDB)."""
import glob
import os

import numpy as np
import pandas as pd
import scipy.sparse as sp
import anndata as ad

import fixtures


def libtiledb():
    import tiledbsoma
    site = os.path.dirname(os.path.dirname(tiledbsoma.__file__))
    found = sorted(glob.glob(os.path.join(site, "tiledbsoma.libs", "libtiledb-*.so*")))
    assert found, f"no libtiledb in {site}/tiledbsoma.libs: is tiledbsoma installed?"
    return found[0]


def counts_with_everything(n=90, m=40, seed=21):
    """Integer counts in X; an integer and a float layer; obs with categorical (one missing),
    nullable integer, boolean and string columns and a float NaN; var columns; obsm (float64
    and float32), varm, obsp, varp. No uns or raw: SOMA's are not converted."""
    rng = np.random.default_rng(seed)
    x = fixtures._counts(n, m, rng)
    adata = fixtures._adata(x, rng)
    adata.layers["spliced"] = fixtures._counts(n, m, rng, density=0.15)
    adata.layers["unspliced"] = sp.random(n, m, density=0.05, format="csr", random_state=rng,
                                          dtype=np.float64)
    adata.obsm["X_pca"] = rng.normal(size=(n, 5))
    adata.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
    adata.varm["PCs"] = rng.normal(size=(m, 3))
    adata.obsp["connectivities"] = sp.random(n, n, density=0.05, format="csr",
                                             random_state=rng, dtype=np.float32)
    adata.varp["correlation"] = sp.random(m, m, density=0.1, format="csr", random_state=rng)
    return adata


def float_values(n=60, m=25, seed=22):
    """Normalised (fractional) values in X."""
    rng = np.random.default_rng(seed)
    x = sp.random(n, m, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    return fixtures._adata(x, rng)


def write(adata, directory, measurement="RNA"):
    """`directory`/input.h5ad and the experiment `directory`/experiment; their paths."""
    import tiledbsoma.io
    os.makedirs(directory, exist_ok=True)
    h5ad = os.path.join(directory, "input.h5ad")
    exp = os.path.join(directory, "experiment")
    adata.write_h5ad(h5ad)
    tiledbsoma.io.from_anndata(exp, adata, measurement_name=measurement)
    return h5ad, exp


def write_sparse_joinids(directory, n=30, m=12, seed=23):
    """An experiment built with tiledbsoma's own API: obs soma_joinids 5, 12, 19, ... and var
    soma_joinids 3, 5, 7, ... (not 0..n-1), each dataframe written in reverse order; X
    written in three fragments (rows by their remainder mod 3, so reads come back out of row
    order); obs ids and a `barcode` column of 45-character strings (longer than a read
    buffer's first guess: reads come back in parts); a dense obsm array (as tiledbsoma 1.x
    wrote them; skipped). Returns the AnnData it holds, rows by ascending joinid, with
    `barcode` in obs and `symbol` in var, and the experiment's path."""
    import pyarrow as pa
    import tiledbsoma as soma
    rng = np.random.default_rng(seed)
    x = fixtures._counts(n, m, rng, density=0.3).tocoo()
    obs_join = 5 + 7 * np.arange(n)
    var_join = 3 + 2 * np.arange(m)
    obs = pd.DataFrame({"obs_id": [f"c{i}" for i in range(n)],
                        "barcode": [f"BC-{i:04d}-" + "ACGT" * 9 for i in range(n)],
                        "score": rng.random(n)})
    var = pd.DataFrame({"var_id": [f"g{j}" for j in range(m)],
                        "symbol": [f"SYM{j}" for j in range(m)]})
    exp_path = os.path.join(directory, "experiment")
    with soma.Experiment.create(exp_path) as exp:
        table = pa.Table.from_pandas(obs.assign(soma_joinid=obs_join).iloc[::-1], preserve_index=False)
        exp.add_new_dataframe("obs", schema=table.schema,
                              domain=[(0, int(obs_join.max()))]).write(table)
        ms = exp.add_new_collection("ms")
        rna = ms.add_new_collection("RNA", soma.Measurement)
        vt = pa.Table.from_pandas(var.assign(soma_joinid=var_join).iloc[::-1], preserve_index=False)
        rna.add_new_dataframe("var", schema=vt.schema, domain=[(0, int(var_join.max()))]).write(vt)
        xs = rna.add_new_collection("X")
        arr = xs.add_new_sparse_ndarray("data", type=pa.float32(),
                                        shape=(int(obs_join.max()) + 1, int(var_join.max()) + 1))
        dense = rna.add_new_collection("obsm").add_new_dense_ndarray(
            "X_dense", type=pa.float32(), shape=(int(obs_join.max()) + 1, 2))
        dense.write((slice(None), slice(None)),
                    pa.Tensor.from_numpy(np.ones((int(obs_join.max()) + 1, 2), dtype=np.float32)))
        for part in range(3):
            pick = x.row % 3 == part
            arr.write(pa.Table.from_pydict({
                "soma_dim_0": obs_join[x.row[pick]].astype(np.int64),
                "soma_dim_1": var_join[x.col[pick]].astype(np.int64),
                "soma_data": x.data[pick].astype(np.float32)}))
    adata = ad.AnnData(X=x.tocsr().astype(np.float32),
                       obs=obs.set_index("obs_id").rename_axis(None),
                       var=var.set_index("var_id").rename_axis(None))
    return adata, exp_path

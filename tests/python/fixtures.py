"""Seeded, small AnnData fixtures for the interop suite, written by anndata itself.

Each builder returns an AnnData; `write(name, path)` writes it as .h5ad with the storage the
case is about (CSR, CSC, dense, int64 index arrays). Names are the test ids.
"""
import numpy as np
import pandas as pd
import scipy.sparse as sp
import anndata as ad

anndata_settings = ad.settings
# Missing strings as a real nullable-string-array encoding (anndata >= 0.11).
anndata_settings.allow_write_nullable_strings = True


def _obs(n, rng):
    cats = pd.Categorical(rng.choice(["T cell", "B cell", "NK"], size=n))
    if n > 2:
        cats[1] = np.nan  # categorical code -1
    nullable_int = pd.array(rng.integers(0, 100, size=n), dtype="Int64")
    nullable_bool = pd.array(rng.random(n) > 0.5, dtype="boolean")
    nullable_str = pd.array([f"donor{i % 3}" for i in range(n)], dtype="string")
    floats = rng.random(n)
    if n > 3:
        nullable_int[2] = pd.NA
        nullable_bool[0] = pd.NA
        nullable_str[3] = pd.NA
        floats[2] = np.nan
    return pd.DataFrame(
        {
            "cell_type": cats,
            "n_counts": rng.integers(0, 10_000, size=n).astype(np.int64),
            "pct.mt": floats.astype(np.float32),
            "score": floats,
            "is_doublet": rng.random(n) > 0.8,
            "batch_size": nullable_int,
            "passed_qc": nullable_bool,
            "donor": nullable_str,
        },
        index=[f"cell_{i:05d}" for i in range(n)],
    )


def _var(m, rng):
    return pd.DataFrame(
        {
            "gene_symbol": [f"SYM{j}" for j in range(m)],
            "highly_variable": rng.random(m) > 0.7,
            "means": rng.random(m),
            "feature_types": pd.Categorical(["Gene Expression"] * m),
        },
        index=[f"ENSG{j:011d}" for j in range(m)],
    )


def _counts(n, m, rng, density=0.1, high=50):
    x = sp.random(n, m, density=density, format="csr", random_state=rng,
                  data_rvs=lambda k: rng.integers(1, high, size=k)).astype(np.int32)
    return x


def _adata(x, rng):
    n, m = x.shape
    return ad.AnnData(X=x, obs=_obs(n, rng), var=_var(m, rng))


def csr_int_counts():
    rng = np.random.default_rng(1)
    return _adata(_counts(300, 200, rng), rng), {}


def csc_float():
    rng = np.random.default_rng(2)
    x = sp.random(250, 120, density=0.15, format="csc", random_state=rng, dtype=np.float32)
    return _adata(x, rng), {}


def dense_ints():
    rng = np.random.default_rng(3)
    x = _counts(120, 80, rng, density=0.2).toarray().astype(np.int64)
    return _adata(x, rng), {}


def float_normalised():
    rng = np.random.default_rng(4)
    x = _counts(200, 150, rng).astype(np.float32)
    x.data = np.log1p(x.data / 7.0).astype(np.float32)
    return _adata(x, rng), {}


def int64_indptr():
    rng = np.random.default_rng(5)
    x = _counts(150, 90, rng)
    x.indptr = x.indptr.astype(np.int64)
    x.indices = x.indices.astype(np.int64)
    x.data = x.data.astype(np.float64)  # integral floats -> uint16 values
    return _adata(x, rng), {}


def genes_70k():
    rng = np.random.default_rng(6)
    x = _counts(40, 70_000, rng, density=0.002)
    # Make sure the highest gene ids are present (they wrap in upstream's uint16, B1).
    x = x.tolil()
    x[0, 69_999] = 7
    x[1, 65_536] = 3
    return _adata(x.tocsr(), rng), {}


def zero_cells():
    rng = np.random.default_rng(7)
    x = sp.csr_matrix((0, 30), dtype=np.float32)
    return _adata(x, rng), {}


def empty_cell():
    rng = np.random.default_rng(8)
    x = _counts(60, 40, rng).tolil()
    x[0, :] = 0
    x[17, :] = 0
    x[59, :] = 0
    x = x.tocsr()
    x.eliminate_zeros()
    return _adata(x, rng), {"chunk_size": 7}


def large_counts():
    rng = np.random.default_rng(9)
    x = _counts(80, 60, rng)
    x.data[5] = 70_000  # beyond uint16: must not wrap
    return _adata(x, rng), {}


CASES = {
    f.__name__: f
    for f in [csr_int_counts, csc_float, dense_ints, float_normalised, int64_indptr,
              genes_70k, zero_cells, empty_cell, large_counts]
}


def write(name, path):
    adata, opts = CASES[name]()
    adata.write_h5ad(path)
    return adata, opts


def everything():
    """Layers with positions outside X's pattern (an integer and a float layer), obsm
    (X_pca float64, X_umap), varm PCs, sparse obsp, varp, a deep uns, and raw."""
    rng = np.random.default_rng(10)
    n, m = 90, 40
    x = _counts(n, m, rng)
    adata = _adata(x, rng)
    spliced = _counts(n, m, rng, density=0.15)          # its own pattern, not X's
    adata.layers["spliced"] = spliced
    unspliced = sp.random(n, m, density=0.05, format="csc", random_state=rng, dtype=np.float64)
    adata.layers["unspliced"] = unspliced               # float, CSC
    adata.obsm["X_pca"] = rng.normal(size=(n, 5))       # float64
    adata.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
    adata.varm["PCs"] = rng.normal(size=(m, 5))
    conn = sp.random(n, n, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    adata.obsp["connectivities"] = conn
    adata.obsp["distances"] = (conn * 3.0).tocsr()
    adata.varp["correlation"] = sp.random(m, m, density=0.1, format="csr", random_state=rng)
    adata.uns["neighbors"] = {"params": {"n_neighbors": 15, "method": "umap", "use_rep": "X_pca"},
                              "connectivities_key": "connectivities"}
    adata.uns["cell_type_colors"] = np.array(["#1f77b4", "#ff7f0e", "#2ca02c"], dtype=object)
    adata.uns["flags"] = {"done": True, "scaled": np.bool_(False)}
    adata.uns["values"] = np.array([1.5, np.nan, np.inf, -2.0])
    adata.uns["matrix"] = np.arange(6, dtype=np.int64).reshape(2, 3)
    adata.uns["version"] = "1.2.3"
    adata.uns["count"] = 42
    adata.uns["table"] = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]},
                                      index=["r0", "r1", "r2"])
    adata.raw = adata.copy()
    return adata, {"chunk_size": 25}


CASES["everything"] = everything

"""Write a large seeded CSR .h5ad without holding it in memory (h5py, block by block).

usage: make_large_csr.py OUT.h5ad [N_CELLS] [N_GENES] [MEAN_GENES_PER_CELL]
Defaults: 200,000 cells x 20,000 genes, about 1,000 stored counts per cell (5%).
"""
import sys

import anndata as ad
import h5py
import numpy as np
import pandas as pd

out = sys.argv[1]
n_cells = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
n_genes = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000
per_cell = int(sys.argv[4]) if len(sys.argv) > 4 else 1_000
rng = np.random.default_rng(42)
counts = rng.poisson(per_cell, size=n_cells).clip(0, n_genes).astype(np.int64)
indptr = np.concatenate([[0], np.cumsum(counts)])
nnz = int(indptr[-1])

obs = pd.DataFrame(
    {"cell_type": pd.Categorical(rng.choice(["T", "B", "NK", "Mono"], size=n_cells)),
     "n_genes": counts},
    index=[f"cell{i}" for i in range(n_cells)])
var = pd.DataFrame({"symbol": [f"S{j}" for j in range(n_genes)]},
                   index=[f"gene{j}" for j in range(n_genes)])

with h5py.File(out, "w") as f:
    f.attrs["encoding-type"] = "anndata"
    f.attrs["encoding-version"] = "0.1.0"
    ad.io.write_elem(f, "obs", obs)
    ad.io.write_elem(f, "var", var)
    x = f.create_group("X")
    x.attrs["encoding-type"] = "csr_matrix"
    x.attrs["encoding-version"] = "0.1.0"
    x.attrs["shape"] = np.array([n_cells, n_genes], dtype=np.int64)
    x.create_dataset("indptr", data=indptr)
    data = x.create_dataset("data", shape=(nnz,), dtype=np.int32)
    indices = x.create_dataset("indices", shape=(nnz,), dtype=np.int32)
    block = 10_000
    for start in range(0, n_cells, block):
        end = min(start + block, n_cells)
        lo, hi = indptr[start], indptr[end]
        idx = np.empty(hi - lo, dtype=np.int32)
        for i in range(start, end):
            k = counts[i]
            a, b = indptr[i] - lo, indptr[i] - lo + k
            idx[a:b] = np.sort(rng.choice(n_genes, size=k, replace=False))
        indices[lo:hi] = idx
        data[lo:hi] = rng.integers(1, 200, size=hi - lo, dtype=np.int32)
print(f"{out}: {n_cells} x {n_genes}, {nnz} stored values")

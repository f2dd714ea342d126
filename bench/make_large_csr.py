"""Write a large seeded CSR .h5ad without holding it in memory (h5py, block by block).

usage: make_large_csr.py OUT.h5ad [N_CELLS] [N_GENES] [MEAN_GENES_PER_CELL] [N_LAYERS]
Defaults: 200,000 cells x 20,000 genes, about 1,000 stored counts per cell (5%), no layers.
Layers share X's pattern: layer 0 holds integer counts, the others float32 values.
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
n_layers = int(sys.argv[5]) if len(sys.argv) > 5 else 0
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
    def csr_group(parent, name, dtype):
        g = parent.create_group(name)
        g.attrs["encoding-type"] = "csr_matrix"
        g.attrs["encoding-version"] = "0.1.0"
        g.attrs["shape"] = np.array([n_cells, n_genes], dtype=np.int64)
        g.create_dataset("indptr", data=indptr)
        return (g.create_dataset("data", shape=(nnz,), dtype=dtype),
                g.create_dataset("indices", shape=(nnz,), dtype=np.int32))

    data, indices = csr_group(f, "X", np.int32)
    layers = []
    if n_layers:
        lg = f.create_group("layers")
        lg.attrs["encoding-type"] = "dict"
        lg.attrs["encoding-version"] = "0.1.0"
        for k in range(n_layers):
            layers.append(csr_group(lg, f"layer{k}", np.int32 if k == 0 else np.float32))
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
        for k, (ldata, lindices) in enumerate(layers):
            lindices[lo:hi] = idx
            ldata[lo:hi] = (rng.integers(1, 50, size=hi - lo) if k == 0
                            else rng.random(hi - lo).astype(np.float32))
print(f"{out}: {n_cells} x {n_genes}, {nnz} stored values")

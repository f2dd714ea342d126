"""Write the benchmark's seeded CSR .h5ad: integer counts stored as float32, 5.98 % dense.

usage: make_bench_h5ad.py OUT.h5ad N_CELLS [N_GENES] [--uncompressed]

Written block by block with h5py (so the 1,000,000-cell file never sits in memory) exactly as
anndata's write_h5ad(compression="gzip") lays it out: obs/var through anndata's own
write_elem, X/data and X/indices as gzip level-4 datasets with h5py's automatic chunking
(anndata passes compression to h5py the same way), indptr as int64. --uncompressed stores
data and indices contiguously, as write_h5ad() without compression does.
"""
import sys

import anndata as ad
import h5py
import numpy as np
import pandas as pd

DENSITY = 0.0598
BLOCK = 2_000  # cells generated at once: 2,000 x 20,000 float32 draws, 160 MB

args = [a for a in sys.argv[1:] if not a.startswith("--")]
compressed = "--uncompressed" not in sys.argv
out, n_cells = args[0], int(args[1])
n_genes = int(args[2]) if len(args) > 2 else 20_000
rng = np.random.default_rng(20261124)


def block_pattern(n):
    """Sorted stored positions of n cells and their counts (geometric: mostly 1s and 2s)."""
    mask = rng.random((n, n_genes), dtype=np.float32) < DENSITY
    rows, cols = np.nonzero(mask)
    per_cell = np.bincount(rows, minlength=n)
    counts = rng.geometric(0.45, size=cols.size).clip(1, 65535).astype(np.float32)
    return per_cell, cols.astype(np.int32), counts


# First pass: the pattern's row counts (cheap to redo, so the indptr can be written up front
# from the same seed: the second pass replays the generator).
state = rng.bit_generator.state
per_cell = np.empty(n_cells, dtype=np.int64)
for start in range(0, n_cells, BLOCK):
    n = min(BLOCK, n_cells - start)
    per_cell[start:start + n] = block_pattern(n)[0]
indptr = np.concatenate([[0], np.cumsum(per_cell)]).astype(np.int64)
nnz = int(indptr[-1])
rng.bit_generator.state = state

obs_rng = np.random.default_rng(7)
obs = pd.DataFrame(
    {"cell_type": pd.Categorical(obs_rng.choice(["T", "B", "NK", "Mono", "DC"], size=n_cells)),
     "n_genes_by_counts": per_cell.astype(np.int32),
     "batch": pd.Categorical(obs_rng.choice(["b1", "b2", "b3"], size=n_cells))},
    index=pd.Index([f"cell_{i}" for i in range(n_cells)]))
var = pd.DataFrame({"gene_symbol": [f"SYM{j}" for j in range(n_genes)]},
                   index=pd.Index([f"ENSG{j:011d}" for j in range(n_genes)]))

kwargs = {"compression": "gzip", "chunks": True} if compressed else {}
with h5py.File(out, "w") as f:
    f.attrs["encoding-type"] = "anndata"
    f.attrs["encoding-version"] = "0.1.0"
    ad.io.write_elem(f, "obs", obs)
    ad.io.write_elem(f, "var", var)
    for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
        ad.io.write_elem(f, key, {})
    x = f.create_group("X")
    x.attrs["encoding-type"] = "csr_matrix"
    x.attrs["encoding-version"] = "0.1.0"
    x.attrs["shape"] = np.array([n_cells, n_genes], dtype=np.int64)
    x.create_dataset("indptr", data=indptr, **kwargs)
    data = x.create_dataset("data", shape=(nnz,), dtype=np.float32, **kwargs)
    indices = x.create_dataset("indices", shape=(nnz,), dtype=np.int32, **kwargs)
    for start in range(0, n_cells, BLOCK):
        n = min(BLOCK, n_cells - start)
        _, cols, counts = block_pattern(n)
        lo, hi = indptr[start], indptr[start + n]
        indices[lo:hi] = cols
        data[lo:hi] = counts
print(f"{out}: {n_cells} x {n_genes}, {nnz} stored values ({nnz / n_cells / n_genes:.4%})")

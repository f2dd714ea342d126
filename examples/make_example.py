"""Regenerate examples/pbmc-like.h5ad: a small seeded AnnData with the things real files have
(integer counts in CSR, categorical cell types with a missing value, a dotted column name,
nullable columns, gene symbols). Run with the interop venv:
    ~/.cache/slaf-convert/venv/bin/python examples/make_example.py
"""
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

ad.settings.allow_write_nullable_strings = True
rng = np.random.default_rng(2026)
n_cells, n_genes = 400, 250
x = sp.random(n_cells, n_genes, density=0.08, format="csr", random_state=rng,
              data_rvs=lambda k: rng.integers(1, 30, size=k)).astype(np.int32)
cell_type = pd.Categorical(rng.choice(["CD4 T", "CD8 T", "B", "NK", "Mono"], size=n_cells))
cell_type[5] = np.nan
obs = pd.DataFrame(
    {
        "cell_type": cell_type,
        "n_genes_by_counts": np.diff(x.indptr).astype(np.int64),
        "pct.mt": rng.random(n_cells).astype(np.float32) * 10,
        "doublet": pd.array(rng.random(n_cells) > 0.9, dtype="boolean"),
        "sample": pd.array([f"donor{i % 4}" for i in range(n_cells)], dtype="string"),
    },
    index=[f"AAACCTG{i:05d}-1" for i in range(n_cells)],
)
var = pd.DataFrame(
    {"gene_ids": [f"ENSG{j:011d}" for j in range(n_genes)],
     "highly_variable": rng.random(n_genes) > 0.8},
    index=[f"GENE{j}" for j in range(n_genes)],
)
out = Path(__file__).with_name("pbmc-like.h5ad")
ad.AnnData(X=x, obs=obs, var=var).write_h5ad(out, compression="gzip")
print(out, out.stat().st_size, "bytes")

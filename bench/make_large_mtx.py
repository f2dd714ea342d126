"""Write a large seeded 10x MTX directory (v3 layout) block by block, entries sorted by cell.

usage: make_large_mtx.py OUT_DIR [N_CELLS] [N_GENES] [MEAN_GENES_PER_CELL]
Defaults: 500,000 cells x 20,000 genes, about 100 counts per cell. matrix.mtx is plain text
(gzip would dominate the generation time); barcodes and features are gzipped.
"""
import gzip
import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1])
n_cells = int(sys.argv[2]) if len(sys.argv) > 2 else 500_000
n_genes = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000
per_cell = int(sys.argv[4]) if len(sys.argv) > 4 else 100
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(7)
counts = rng.poisson(per_cell, size=n_cells).clip(0, n_genes)
nnz = int(counts.sum())
with gzip.open(out / "barcodes.tsv.gz", "wt") as f:
    f.writelines(f"CELL{i:07d}-1\n" for i in range(n_cells))
with gzip.open(out / "features.tsv.gz", "wt") as f:
    f.writelines(f"ENSG{j:011d}\tGENE{j}\tGene Expression\n" for j in range(n_genes))
with open(out / "matrix.mtx", "w") as f:
    f.write("%%MatrixMarket matrix coordinate integer general\n%metadata_json: {}\n")
    f.write(f"{n_genes} {n_cells} {nnz}\n")
    block = 20_000
    for start in range(0, n_cells, block):
        end = min(start + block, n_cells)
        rows, cols = [], []
        for i in range(start, end):
            g = np.sort(rng.choice(n_genes, size=counts[i], replace=False))
            rows.append(g + 1)
            cols.append(np.full(counts[i], i + 1))
        r = np.concatenate(rows)
        c = np.concatenate(cols)
        v = rng.integers(1, 30, size=len(r))
        f.write("\n".join(f"{a} {b} {x}" for a, b, x in zip(r.tolist(), c.tolist(), v.tolist())))
        f.write("\n")
print(f"{out}: {n_cells} cells x {n_genes} genes, {nnz} entries")

"""Time upstream's reader (slafdb 0.5.2) on a converted dataset: the queries a user runs first.

usage: query_time.py DATASET.slaf [REPEATS]

Prints one JSON object: seconds per query kind (best of REPEATS), so that Lance write
parameters can be compared by what they cost the reader, not only by output size.
"""
import json
import sys
import time

import numpy as np
from slaf import SLAFArray

path = sys.argv[1]
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
sa = SLAFArray(path)
rng = np.random.default_rng(0)
n_cells, n_genes = sa.shape
cell_ids = sa.obs["cell_id"].to_list()
gene_ids = sa.var["gene_id"].to_list()
cells = [cell_ids[i] for i in rng.choice(n_cells, 20, replace=False)]
genes = [gene_ids[j] for j in rng.choice(n_genes, 3, replace=False)]


def best(f):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


result = {
    "open": best(lambda: SLAFArray(path)),
    "20 cells (get_cell_expression)": best(lambda: sa.get_cell_expression(cells)),
    "3 genes (get_gene_expression)": best(lambda: sa.get_gene_expression(genes)),
    "sum of all values (SQL)": best(
        lambda: sa.query("SELECT SUM(value) AS s FROM expression")),
}
print(json.dumps(result))

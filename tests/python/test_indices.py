"""Every layout offered (--compression none/lz4/zstd, --create-indices, --pages): upstream's
reader answers exactly the same on each; the scalar indices are built at commit; one page a
fragment column is what --pages one-per-fragment writes."""
import os
import subprocess

import numpy as np
import pytest
import scipy.sparse as sp

BIN = os.environ.get("SLAF_CONVERT_BIN")


def write_h5ad(path, n_cells=300, n_genes=40, density=0.2):
    import anndata
    import pandas as pd
    rng = np.random.default_rng(9)
    x = sp.random(n_cells, n_genes, density=density, format="csr", random_state=rng,
                  data_rvs=lambda k: rng.integers(1, 9, size=k)).astype(np.float32)
    adata = anndata.AnnData(
        X=x,
        obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]),
    )
    adata.write_h5ad(path)
    return adata


def indices(path):
    import lance
    return sorted((t, i["fields"][0], i["type"])
                  for t in ["cells", "genes", "expression"]
                  for i in lance.dataset(str(path / f"{t}.lance")).list_indices())


def test_indices_built_and_answers_unchanged(tmp_path):
    from slaf import SLAFArray
    src = tmp_path / "in.h5ad"
    write_h5ad(src)
    plain, indexed = tmp_path / "plain.slaf", tmp_path / "indexed.slaf"
    for dst, extra in [(plain, []), (indexed, ["--create-indices"])]:
        proc = subprocess.run([BIN, "convert", str(src), str(dst), "--chunk-size", "100", *extra],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert indices(plain) == []
    got = indices(indexed)
    assert [(t, f) for t, f, _ in got] == sorted([
        ("cells", "cell_id"), ("cells", "cell_integer_id"), ("genes", "gene_id"),
        ("genes", "gene_integer_id"), ("expression", "cell_integer_id"),
        ("expression", "gene_integer_id")]), got
    kinds = {(t, f): k.lower() for t, f, k in got}
    assert "btree" in kinds[("expression", "gene_integer_id")]
    assert "zone" in kinds[("expression", "cell_integer_id")]
    a, b = SLAFArray(str(plain)), SLAFArray(str(indexed))
    for genes in (["g0"], ["g3", "g17", "g39"]):
        want = a.get_gene_expression(genes).sort(["cell_id", "gene_id"])
        have = b.get_gene_expression(genes).sort(["cell_id", "gene_id"])
        assert have.height > 0 and have.equals(want), genes
    cells = ["c0", "c150", "c299"]
    assert b.get_cell_expression(cells).sort(["cell_id", "gene_id"]).equals(
        a.get_cell_expression(cells).sort(["cell_id", "gene_id"]))


def test_manifest_option_indices(tmp_path):
    """`options.indices: true` in a manifest: plan, shards and commit build them once."""
    src = tmp_path / "in.h5ad"
    write_h5ad(src, n_cells=120)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output: {tmp_path / 'out.slaf'}\ninputs:\n  - path: {src}\n"
                        "options:\n  chunk_size: 50\n  indices: true\nsharding:\n  cells_per_shard: 60\n")
    proc = subprocess.run([BIN, "convert", "--manifest", str(manifest)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(indices(tmp_path / "out.slaf")) == 6
    built = [l for l in proc.stderr.splitlines() if '"commit.indexed"' in l]
    assert len(built) == 6, proc.stderr


@pytest.mark.parametrize("layout", [["--compression", "none"], ["--compression", "lz4"],
                                    ["--compression", "zstd"], ["--create-indices"],
                                    ["--pages", "one-per-fragment"]],
                         ids=["none", "lz4", "zstd", "indices", "one-page"])
def test_every_layout_reads_back_exactly(tmp_path, layout):
    """Whatever the layout, the reader's matrix, slices and queries are the input's."""
    from slaf import SLAFArray
    from slaf.integrations.anndata import LazyAnnData
    src, dst = tmp_path / "in.h5ad", tmp_path / "out.slaf"
    adata = write_h5ad(src)
    proc = subprocess.run([BIN, "convert", str(src), str(dst), "--chunk-size", "100", *layout],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    x = adata.X.toarray()
    lazy = LazyAnnData(SLAFArray(str(dst)))

    def dense(m):
        m = m.compute() if hasattr(m, "compute") else m
        return m.toarray() if sp.issparse(m) else np.asarray(m)

    assert np.array_equal(dense(lazy.X), x)
    assert np.array_equal(dense(lazy[120:180].X), x[120:180])
    assert np.array_equal(dense(lazy[:, 5:15].X), x[:, 5:15])
    genes = lazy.slaf.get_gene_expression(["g7"])
    got = {c: v for c, v in zip(genes["cell_id"].to_list(), genes["value"].to_list())}
    want = {f"c{i}": x[i, 7] for i in np.nonzero(x[:, 7])[0]}
    assert got == want


def pages_per_column(dataset):
    """Pages of each column in each data file of expression.lance."""
    import lance
    from lance.file import LanceFileReader
    table = dataset / "expression.lance"
    return [[len(c.pages) for c in LanceFileReader(str(table / "data" / f.data_files()[0].path))
             .metadata().columns]
            for f in lance.dataset(str(table)).get_fragments()]


def test_one_page_per_fragment_column(tmp_path):
    """A fragment of 2.4M stored values: Lance's 8 MiB page buffer cuts its int32 gene ids
    into 2 pages; --pages one-per-fragment writes one page a column, and the data is the
    same."""
    import lance
    from slaf import SLAFArray
    src = tmp_path / "big.h5ad"
    adata = write_h5ad(src, n_cells=4000, n_genes=1500, density=0.4)
    default, one = tmp_path / "default.slaf", tmp_path / "one.slaf"
    for dst, extra in [(default, []), (one, ["--pages", "one-per-fragment"])]:
        proc = subprocess.run([BIN, "convert", str(src), str(dst), "--chunk-size", "4000", *extra],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert pages_per_column(default)[0][1] >= 2, pages_per_column(default)
    assert pages_per_column(one) == [[1, 1, 1]], pages_per_column(one)
    tables = [lance.dataset(str(d / "expression.lance")).to_table() for d in (default, one)]
    assert tables[0].equals(tables[1])
    x = SLAFArray(str(one)).get_cell_expression(["c0", "c3999"]).sort(["cell_id", "gene_id"])
    want = sorted((f"c{i}", f"g{j}", adata.X[i, j]) for i in (0, 3999)
                  for j in adata.X[i].nonzero()[1])
    assert list(zip(x["cell_id"], x["gene_id"], x["value"])) == want

"""h5ad files older anndata versions wrote: converted with the meaning anndata gives them."""
import os
import subprocess

import numpy as np
import pandas as pd

import legacy_h5ad

BIN = os.environ.get("SLAF_CONVERT_BIN")


def as_list(series):
    return [None if (v is None or (isinstance(v, float) and np.isnan(v))) else v
            for v in series.astype(object)]


def test_anndata_07_categoricals_are_labels(tmp_path):
    """anndata 0.7 kept a categorical's labels in `__categories`: the output holds the labels
    (missing as null), as anndata.read_h5ad gives them, not the integer codes."""
    import anndata
    import lance
    from slaf import SLAFArray
    src, dst = tmp_path / "old.h5ad", tmp_path / "old.slaf"
    legacy_h5ad.write_anndata_07(src)
    adata = anndata.read_h5ad(src)
    assert isinstance(adata.obs["cell_type"].dtype, pd.CategoricalDtype)
    proc = subprocess.run([BIN, "convert", str(src), str(dst)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    cells = lance.dataset(str(dst / "cells.lance")).to_table().to_pandas()
    genes = lance.dataset(str(dst / "genes.lance")).to_table().to_pandas()
    assert as_list(cells["cell_type"]) == as_list(adata.obs["cell_type"]) == ["T", "B", None, "NK"]
    assert list(cells["n_genes"]) == list(adata.obs["n_genes"])
    assert as_list(genes["gene_kind"]) == as_list(adata.var["gene_kind"])
    # Upstream's reader sees the labels too.
    obs = SLAFArray(str(dst)).obs  # a polars frame
    assert [None if v is None else str(v) for v in obs["cell_type"].to_list()] == [
        "T", "B", None, "NK"]


def test_anndata_07_categories_missing_is_refused(tmp_path):
    """Codes that point at categories the file does not hold: one line naming the column."""
    import h5py
    src = tmp_path / "broken.h5ad"
    legacy_h5ad.write_anndata_07(src)
    with h5py.File(src, "a") as f:
        del f["obs/__categories"]
    proc = subprocess.run([BIN, "convert", str(src), str(tmp_path / "out.slaf")],
                          capture_output=True, text=True)
    assert proc.returncode == 65, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("slaf-convert: error:")]
    assert len(errors) == 1 and "broken.h5ad" in errors[0] and "/obs/cell_type" in errors[0], errors
    assert not (tmp_path / "out.slaf" / "config.json").exists()


def test_h5sparse_matrix(tmp_path):
    """X in the h5sparse layout (h5sparse_format/h5sparse_shape), CSR and CSC: the values
    anndata reads."""
    import anndata
    import lance
    for fmt in ["csr", "csc"]:
        src, dst = tmp_path / f"{fmt}.h5ad", tmp_path / f"{fmt}.slaf"
        dense = legacy_h5ad.write_h5sparse_x(src, fmt)
        assert np.array_equal(anndata.read_h5ad(src).X.toarray(), dense)
        proc = subprocess.run([BIN, "convert", str(src), str(dst)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        got = np.zeros_like(dense)
        rows = lance.dataset(str(dst / "expression.lance")).to_table().to_pydict()
        for c, g, v in zip(rows["cell_integer_id"], rows["gene_integer_id"], rows["value"]):
            got[c, g] = v
        assert np.array_equal(got, dense), fmt


def test_anndata_06_dataframe_is_refused_clearly(tmp_path):
    """obs as a compound dataset (anndata before 0.7): one line saying so, not an HDF5
    library message."""
    src = tmp_path / "old06.h5ad"
    legacy_h5ad.write_anndata_06_obs(src)
    proc = subprocess.run([BIN, "convert", str(src), str(tmp_path / "out.slaf")],
                          capture_output=True, text=True)
    assert proc.returncode == 65, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("slaf-convert: error:")]
    assert len(errors) == 1 and "old06.h5ad: /obs: a compound dataset" in errors[0], errors
    assert "H5" not in errors[0], errors


def test_scanpy_pbmc68k_reduced_is_refused_clearly(tmp_path):
    """scanpy's own example file (anndata 0.6 layout, shipped in scanpy's wheel): until that
    layout is read (issue 16), a one-line refusal naming the part, not an HDF5 message."""
    from pathlib import Path

    import scanpy
    src = Path(scanpy.__file__).parent / "datasets" / "10x_pbmc68k_reduced.h5ad"
    assert src.exists(), src
    proc = subprocess.run([BIN, "convert", str(src), str(tmp_path / "out.slaf")],
                          capture_output=True, text=True)
    assert proc.returncode == 65, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("slaf-convert: error:")]
    assert len(errors) == 1 and "10x_pbmc68k_reduced.h5ad: /obs: a compound dataset" in errors[0]
    assert not (tmp_path / "out.slaf").exists()

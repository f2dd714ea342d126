"""h5ad files older anndata versions wrote: converted with the meaning anndata gives them."""
import json
import os
import subprocess

import numpy as np
import pandas as pd

import anndata_equality
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


def convert(src, dst, *extra):
    proc = subprocess.run([BIN, "convert", str(src), str(dst), *extra],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_anndata_06_every_part(tmp_path):
    """The anndata 0.6 layout, every part: what the output holds, read back through upstream's
    reader, equals what anndata.read_h5ad gives."""
    src, dst = tmp_path / "old06.h5ad", tmp_path / "old06.slaf"
    legacy_h5ad.write_anndata_06(src)
    convert(src, dst, "--raw", "as-layer")
    adata, cfg = anndata_equality.assert_same_as_anndata(src, dst, raw=True)
    # The meaning anndata gives the layout, spelled out on what we wrote.
    import lance
    cells = lance.dataset(str(dst / "cells.lance")).to_table()
    genes = lance.dataset(str(dst / "genes.lance")).to_table()
    assert cells.column("cell_type").to_pylist()[:4] == ["B", "NK", "T", None]
    assert cells.column("grade").to_pylist()[:3] == ["low", "mid", "high"]
    assert str(cells.schema.field("batch").type) == "int64"  # codes beyond its categories
    assert cells.column("cell_id").to_pylist()[1] == "cell1 "
    assert genes.column("gene_kind").to_pylist() == ["coding", "mito", "coding", "coding", "mito"]
    assert cfg["obsm"]["dimensions"]["flag"] == 1
    uns = json.loads((dst / "uns.json").read_text())
    assert uns["neighbors"]["params"] == {"method": "umap", "n_neighbors": [10]}
    assert uns["label"] == ["hé"]
    assert sorted(k for k in uns if k.endswith("_categories")) == [
        "batch_categories", "grade_categories"]
    assert "connectivities" not in uns["neighbors"] and cfg["obsp"]["available"] == ["connectivities"]
    # Keys renamed to become columns are recorded.
    assert cfg["obsm"]["renamed"] == {"spatial.xy": "spatial_xy"}
    assert cfg["renamed_columns"] == {"obs": {"qc.pass": "qc_pass"}}
    assert uns["rank_genes_groups"]["names"] == {"B": ["gene0", "gene3"], "T": ["gene1", "gene2"]}
    assert uns["rank_genes_groups"]["scores"] == {"B": [2.5, 1.0], "T": [3.0, None]}


def test_anndata_07_every_part(tmp_path):
    """anndata 0.7 files (with the `ordered` attribute of ordered categoricals) equal what
    anndata reads, through upstream's reader."""
    import h5py
    src, dst = tmp_path / "old07.h5ad", tmp_path / "old07.slaf"
    legacy_h5ad.write_anndata_07(src)
    with h5py.File(src, "a") as f:
        f["obs/__categories/cell_type"].attrs["ordered"] = True   # where anndata 0.7 put it
    convert(src, dst)
    adata, _ = anndata_equality.assert_same_as_anndata(src, dst)
    assert adata.obs["cell_type"].cat.ordered     # the fixture is what it claims
    import lance
    cells = lance.dataset(str(dst / "cells.lance")).to_table()
    assert cells.column("cell_type").to_pylist() == ["T", "B", None, "NK"]


def test_raw_layouts_as_anndata_takes_them(tmp_path):
    """An empty raw group beside raw.X: anndata reads raw.X, and so do we."""
    import h5py
    src, dst = tmp_path / "empty_raw.h5ad", tmp_path / "empty_raw.slaf"
    legacy_h5ad.write_anndata_06(src)
    with h5py.File(src, "a") as f:
        f.create_group("raw")
    convert(src, dst, "--raw", "as-layer")
    anndata_equality.assert_same_as_anndata(src, dst, raw=True)


def test_both_raw_layouts_are_refused(tmp_path):
    """raw/X and raw.X together: anndata refuses the file, and so do we, in one line."""
    import h5py
    src = tmp_path / "both.h5ad"
    legacy_h5ad.write_anndata_06(src)
    with h5py.File(src, "a") as f:
        f.create_group("raw")
        f.copy(f["raw.X"], "raw/X")
    proc = subprocess.run([BIN, "convert", str(src), str(tmp_path / "out.slaf"), "--raw", "as-layer"],
                          capture_output=True, text=True)
    assert proc.returncode == 65, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("slaf-convert: error:")]
    assert len(errors) == 1 and "both.h5ad: /raw: the file has both raw" in errors[0], errors
    assert not (tmp_path / "out.slaf" / "config.json").exists()


def test_anndata_06_unreadable_field_is_refused(tmp_path):
    """A dataframe field no column can hold (a fixed array in obs): one line naming the
    field, no HDF5 library message."""
    import h5py
    src = tmp_path / "odd.h5ad"
    legacy_h5ad.write_anndata_06(src)
    with h5py.File(src, "a") as f:
        obs = f["obs"][()]
        del f["obs"]
        odd = np.zeros(len(obs), dtype=[("index", "S8"), ("pair", "<f8", (2,))])
        odd["index"] = obs["index"]
        f.create_dataset("obs", data=odd)
    proc = subprocess.run([BIN, "convert", str(src), str(tmp_path / "out.slaf")],
                          capture_output=True, text=True)
    assert proc.returncode == 65, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("slaf-convert: error:")]
    assert len(errors) == 1 and "odd.h5ad: /obs field 'pair': unsupported column type" in errors[0]
    assert "H5" not in errors[0], errors


def test_scanpy_pbmc68k_reduced(tmp_path):
    """scanpy's own example file (anndata 0.6 layout, shipped in scanpy's wheel) converts to
    what anndata reads: X, obs with its categoricals as labels, var, obsm, varm, raw, uns."""
    from pathlib import Path

    import scanpy
    src = Path(scanpy.__file__).parent / "datasets" / "10x_pbmc68k_reduced.h5ad"
    assert src.exists(), src
    dst = tmp_path / "pbmc.slaf"
    convert(src, dst, "--raw", "as-layer")
    adata, cfg = anndata_equality.assert_same_as_anndata(src, dst, raw=True)
    assert isinstance(adata.obs["bulk_labels"].dtype, pd.CategoricalDtype)
    assert cfg["obsm"]["dimensions"] == {"X_pca": 50, "X_umap": 2}
    assert cfg["obsp"]["available"] == ["connectivities", "distances"]
    import lance
    cells = lance.dataset(str(dst / "cells.lance")).to_table()
    assert str(cells.schema.field("bulk_labels").type) == "string"
    assert set(cells.column("bulk_labels").to_pylist()) == set(adata.obs["bulk_labels"].cat.categories)


def test_unwritten_compound_dataframe_reads_as_zeros(tmp_path):
    """A compound obs whose storage was never written (fill time "never": HDF5 then leaves the
    read buffer as it was): its values read as zeros and empty strings, never as whatever
    memory held; the conversion ends normally or with a one-line refusal, never a crash."""
    import h5py
    src = tmp_path / "unwritten.h5ad"
    legacy_h5ad.write_anndata_06(src)
    with h5py.File(src, "a") as f:
        n = f["obs"].shape[0]
        del f["obs"]
        dtype = np.dtype([("index", "S8"), ("value", "<f8"), ("label", "S4")])
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_LATE)
        space = h5py.h5s.create_simple((n,))
        h5py.h5d.create(f.id, b"obs", h5py.h5t.py_create(dtype, logical=True), space, dcpl=dcpl)
        assert f["obs"].id.get_storage_size() == 0
    dst = tmp_path / "out.slaf"
    proc = subprocess.run([BIN, "convert", str(src), str(dst)], capture_output=True, text=True)
    assert proc.returncode in (0, 65), proc.stderr         # never a signal
    if proc.returncode == 0:
        import lance
        cells = lance.dataset(str(dst / "cells.lance")).to_table()
        assert cells.column("value").to_pylist() == [0.0] * n
        assert cells.column("label").to_pylist() == [""] * n
    else:
        errors = [l for l in proc.stderr.splitlines() if l.startswith("slaf-convert: error:")]
        assert len(errors) == 1 and "unwritten.h5ad" in errors[0], proc.stderr

"""10x inputs: converted output read back with upstream's reader equals scanpy's own
readers (with matching options) exactly; bad inputs fail cleanly."""
import gzip
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import tenx_fixtures as tf

VERIFIER = Path(__file__).resolve().parents[3] / "shared" / "tools" / "verify_slaf.py"

BIN = os.environ.get("SLAF_CONVERT_BIN")


def convert(src, dst, *extra):
    return subprocess.run([BIN, "convert", str(src), str(dst), "--chunk-size", "7", *extra],
                          capture_output=True, text=True)


def read_back(dst):
    import lance
    from slaf import SLAFArray
    from slaf.integrations.anndata import LazyAnnData
    lazy = LazyAnnData(SLAFArray(str(dst)))
    x = lazy.X.compute()
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    genes = lance.dataset(str(dst / "genes.lance")).to_table().to_pandas()
    cells = lance.dataset(str(dst / "cells.lance")).to_table().to_pandas()
    return x, genes, cells


def assert_same(dst, ref, var_cols):
    x, genes, cells = read_back(dst)
    assert np.array_equal(x.astype(np.float64), ref.X.toarray().astype(np.float32).astype(np.float64))
    assert list(cells["cell_id"]) == list(ref.obs_names)
    assert list(genes["gene_id"]) == list(ref.var_names)
    for col in var_cols:
        assert list(genes[col]) == list(ref.var[col]), col


@pytest.mark.parametrize("version,gz,real,order,field", [
    (3, True, False, "sorted", None),
    (3, True, True, "shuffled", None),
    (2, False, False, "sorted", None),
    (2, False, True, "shuffled", None),
    (3, True, False, "sorted", "pattern"),
])
def test_mtx_equals_scanpy(tmp_path, version, gz, real, order, field):
    import scanpy as sc
    d = tmp_path / "mtx"
    tf.write_mtx(d, version=version, gz=gz, real=real, order=order, field=field)
    proc = convert(d, tmp_path / "o.slaf")
    assert proc.returncode == 0, proc.stderr
    ref = sc.read_10x_mtx(d, var_names="gene_symbols", make_unique=False, gex_only=False)
    assert_same(tmp_path / "o.slaf", ref, ["gene_ids"] + (["feature_types"] if version == 3 else []))
    vt = str(__import__("lance").dataset(str(tmp_path / "o.slaf" / "expression.lance")).schema.field("value").type)
    assert vt == ("float" if real else "uint16")


def test_mtx_scanpy_defaults(tmp_path):
    """gex_only + make_unique, scanpy's defaults, via --feature-types and --make-unique."""
    import scanpy as sc
    d = tmp_path / "mtx"
    tf.write_mtx(d, version=3)
    proc = convert(d, tmp_path / "o.slaf", "--feature-types", "Gene Expression", "--make-unique")
    assert proc.returncode == 0, proc.stderr
    ref = sc.read_10x_mtx(d)
    assert "GENE2-1" in list(ref.var_names)
    assert_same(tmp_path / "o.slaf", ref, ["gene_ids", "feature_types"])


def test_mtx_gene_ids_as_names(tmp_path):
    import scanpy as sc
    d = tmp_path / "mtx"
    tf.write_mtx(d, version=3)
    proc = convert(d, tmp_path / "o.slaf", "--var-names", "gene-ids")
    assert proc.returncode == 0, proc.stderr
    ref = sc.read_10x_mtx(d, var_names="gene_ids", gex_only=False)
    assert_same(tmp_path / "o.slaf", ref, ["gene_symbols", "feature_types"])


def test_h5_v3_equals_scanpy(tmp_path):
    import scanpy as sc
    tf.write_h5_v3(tmp_path / "m.h5")
    proc = convert(tmp_path / "m.h5", tmp_path / "o.slaf")
    assert proc.returncode == 0, proc.stderr
    ref = sc.read_10x_h5(tmp_path / "m.h5", gex_only=False)
    assert_same(tmp_path / "o.slaf", ref, ["gene_ids", "feature_types", "genome"])
    proc = convert(tmp_path / "m.h5", tmp_path / "g.slaf", "--feature-types", "Gene Expression")
    assert proc.returncode == 0, proc.stderr
    assert_same(tmp_path / "g.slaf", sc.read_10x_h5(tmp_path / "m.h5"), ["gene_ids"])


def test_h5_v2_two_genomes(tmp_path):
    import scanpy as sc
    tf.write_h5_v2(tmp_path / "v2.h5")
    proc = convert(tmp_path / "v2.h5", tmp_path / "o.slaf")
    assert proc.returncode == 65
    assert "hg19, mm10" in proc.stderr and "--genome" in proc.stderr
    proc = convert(tmp_path / "v2.h5", tmp_path / "o.slaf", "--genome", "mm10")
    assert proc.returncode == 0, proc.stderr
    ref = sc.read_10x_h5(tmp_path / "v2.h5", genome="mm10")
    assert_same(tmp_path / "o.slaf", ref, ["gene_ids"])


def test_h5ad_named_h5_is_detected(tmp_path):
    import anndata as ad
    a = ad.AnnData(X=sp.random(5, 4, density=0.5, format="csr", dtype=np.float32, random_state=1))
    a.write_h5ad(tmp_path / "really_anndata.h5")
    proc = convert(tmp_path / "really_anndata.h5", tmp_path / "o.slaf")
    assert proc.returncode == 0, proc.stderr


def _fails(tmp_path, src, needle, code=65):
    proc = convert(src, tmp_path / "bad.slaf")
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr, proc.stderr
    assert len([l for l in proc.stderr.splitlines() if "error" in l]) == 1, proc.stderr
    assert not (tmp_path / "bad.slaf" / "config.json").exists()


def test_bad_mtx_inputs(tmp_path):
    d = tmp_path / "count"
    tf.write_mtx(d, version=2, gz=False)
    (d / "barcodes.tsv").write_text("only-one\n")
    _fails(tmp_path, d, "but ")  # header/count mismatch names both numbers

    d = tmp_path / "nobarcodes"
    tf.write_mtx(d, version=3)
    (d / "barcodes.tsv.gz").unlink()
    _fails(tmp_path, d, "no barcodes.tsv")

    d = tmp_path / "nonnumeric"
    tf.write_mtx(d, version=2, gz=False)
    text = (d / "matrix.mtx").read_text().splitlines()
    text[-1] = text[-1].rsplit(" ", 1)[0] + " abc"
    (d / "matrix.mtx").write_text("\n".join(text) + "\n")
    _fails(tmp_path, d, "expected an integer value")

    d = tmp_path / "range"
    tf.write_mtx(d, version=2, gz=False)
    text = (d / "matrix.mtx").read_text().splitlines()
    text[-1] = "999 1 5"
    (d / "matrix.mtx").write_text("\n".join(text) + "\n")
    _fails(tmp_path, d, "index outside")

    d = tmp_path / "truncated"
    tf.write_mtx(d, version=3)
    data = (d / "matrix.mtx.gz").read_bytes()
    (d / "matrix.mtx.gz").write_bytes(data[: len(data) // 2])
    _fails(tmp_path, d, "matrix.mtx.gz")


# ../shared is beside the project on our machines and in CI (never in a user's clone).
@pytest.mark.skipif(not VERIFIER.exists() and not os.environ.get("CI"), reason="shared verifier not present")
def test_shared_verifier_on_10x(tmp_path):
    import sys
    tf.write_mtx(tmp_path / "mtx", version=3, order="shuffled")
    tf.write_h5_v3(tmp_path / "v3.h5")
    tf.write_h5_v2(tmp_path / "v2.h5")
    for src, extra in [("mtx", []), ("v3.h5", []), ("v2.h5", ["--genome", "hg19"])]:
        dst = tmp_path / f"{src}.slaf"
        proc = convert(tmp_path / src, dst, *extra)
        assert proc.returncode == 0, proc.stderr
        v = subprocess.run([sys.executable, str(VERIFIER), str(tmp_path / src), str(dst), "--quiet", *extra],
                           capture_output=True, text=True)
        verdict = json.loads(v.stdout)
        failed = {k: c for k, c in verdict["checks"].items() if c["status"] == "fail"}
        assert verdict["ok"] and not failed, (src, failed)


@pytest.mark.parametrize("column", ["name", "feature_type", "genome"])
def test_h5_short_feature_column_is_refused(tmp_path, column):
    """A feature column shorter than /matrix/features/id: a clear error, never a panic."""
    import h5py
    p = tmp_path / "short.h5"
    tf.write_h5_v3(p)
    with h5py.File(p, "r+") as f:
        g = f["matrix/features"]
        values = g[column][:] if column in g else np.array([b"GRCh38"] * len(g["id"]))
        if column in g:
            del g[column]
        g[column] = values[:-1]
    proc = subprocess.run([BIN, "convert", str(p), str(tmp_path / "out.slaf")], capture_output=True, text=True)
    assert proc.returncode == 65, proc.stderr
    assert f"/matrix/features/{column} lists" in proc.stderr and "short.h5" in proc.stderr
    assert not (tmp_path / "out.slaf").exists()

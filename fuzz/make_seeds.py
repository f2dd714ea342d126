"""Write the fuzz targets' seed corpora: small, seeded, valid inputs of every encoding the
readers take, so libFuzzer starts from the parsers' happy paths and mutates from there.

    python fuzz/make_seeds.py OUT_DIR [SLAF_CONVERT_BIN]

OUT_DIR gets one folder per target (mtx/, manifest_plan/, hdf5_inputs/). With the binary,
a real plan.json is made as a manifest_plan seed too. Needs the project's venv (anndata, h5py).
"""
import gzip
import io
import os
import subprocess
import sys
import tempfile

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

SEP = b"\n--8<--\n"


def seed(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def mtx_seeds(out):
    features3 = b"E1\tG1\tGene Expression\nE2\tG2\tGene Expression\nE3\tG2\tAntibody Capture\n"
    barcodes = b"AAAC-1\nAAAG-1\nAAAT-1\nAACA-1\n"
    mats = {
        "int": b"%%MatrixMarket matrix coordinate integer general\n% c\n3 4 5\n1 1 5\n2 1 6\n1 3 7\n3 4 1\n2 2 9\n",
        "real": b"%%MatrixMarket matrix coordinate real general\n3 4 3\n1 1 0.5\n2 3 1e-3\n3 4 -2.25\n",
        "pattern": b"%%MatrixMarket matrix coordinate pattern general\n3 4 2\n1 1\n3 4\n",
        "crlf": b"%%MatrixMarket matrix coordinate integer general\r\n3 4 2\r\n1 1 3\r\n2 2 4\r\n",
        "empty": b"%%MatrixMarket matrix coordinate integer general\n3 4 0\n",
        "unsorted": b"%%MatrixMarket matrix coordinate integer general\n3 4 3\n1 4 2\n2 1 3\n1 1 4\n",
    }
    for name, m in mats.items():
        for flags in (0, 0b111, 0b11000, 0b100000):
            seed(out, "mtx", f"{name}-{flags}", bytes([flags]) + m + SEP + barcodes + SEP + features3)
    # v2: two-column genes file
    seed(out, "mtx", "v2", b"\x00" + mats["int"] + SEP + barcodes + SEP + b"E1\tG1\nE2\tG2\nE3\tG3\n")


def manifest_seeds(out, binary):
    manifests = [
        b"output: out.slaf\ninputs:\n  - path: a.h5ad\n",
        b"output: out.slaf\ninputs:\n  - path: a.h5ad\n    format: h5ad\n    raw: as-layer\n"
        b"  - path: mtx\n    format: 10x-mtx\n    var_names: gene-ids\n    feature_types: [Gene Expression]\n"
        b"options:\n  chunk_size: 100\n  genes: union\n  value_type: float32\nsharding:\n  shards: 2\n",
        b"output: out.slaf\ninputs:\n  - path: a.h5ad\nsharding:\n  cells_per_shard: 1000\n",
    ]
    for i, m in enumerate(manifests):
        seed(out, "manifest_plan", f"manifest-{i}", b"\x00" + m)
    if not binary:
        return
    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        a = ad.AnnData(X=sp.random(20, 6, density=0.3, format="csr", random_state=rng,
                                   data_rvs=lambda k: rng.integers(1, 9, size=k)).astype(np.float32))
        a.obs["kind"] = pd.Categorical(rng.choice(["x", "y"], size=20))
        a.var["sym"] = [f"S{i}" for i in range(6)]
        a.write_h5ad(os.path.join(d, "a.h5ad"))
        with open(os.path.join(d, "m.yaml"), "w") as f:
            f.write("output: out.slaf\ninputs:\n  - path: a.h5ad\nsharding:\n  shards: 2\n")
        subprocess.run([binary, "--quiet", "plan", os.path.join(d, "m.yaml"), "-o",
                        os.path.join(d, "plan.json")], check=True)
        with open(os.path.join(d, "plan.json"), "rb") as f:
            seed(out, "manifest_plan", "plan", b"\x01" + f.read())


def h5(write):
    """Bytes of an HDF5 file made by `write(path)`."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "f.h5")
        write(p)
        with open(p, "rb") as f:
            return f.read()


def small_adata(rng, n=6, m=4, fmt="csr", dtype=np.float32):
    x = sp.random(n, m, density=0.5, format=fmt, random_state=rng,
                  data_rvs=lambda k: rng.integers(1, 9, size=k)).astype(dtype)
    obs = pd.DataFrame({
        "ct": pd.Categorical(rng.choice(["a", "b"], size=n)),
        "score": rng.random(n),
        "ok": rng.random(n) > 0.5,
        "nint": pd.array(rng.integers(0, 5, size=n), dtype="Int64"),
    }, index=[f"c{i}" for i in range(n)])
    var = pd.DataFrame({"sym": [f"S{j}" for j in range(m)]}, index=[f"G{j}" for j in range(m)])
    return ad.AnnData(X=x, obs=obs, var=var)


def hdf5_files():
    """The HDF5 seed files by name, as bytes (deterministic: tests patch them)."""
    rng = np.random.default_rng(3)
    files = {}
    a = small_adata(rng)
    files["csr"] = h5(a.write_h5ad)
    files["csc"] = h5(small_adata(rng, fmt="csc").write_h5ad)
    dense = small_adata(rng)
    dense.X = dense.X.toarray()
    files["dense"] = h5(dense.write_h5ad)
    files["gzip-chunked"] = h5(lambda p: small_adata(rng, dtype=np.int32).write_h5ad(p, compression="gzip"))
    b = small_adata(rng)
    b.layers["spliced"] = b.X.copy()
    b.obsm["X_pca"] = rng.normal(size=(b.n_obs, 2))
    b.obsp["conn"] = sp.random(b.n_obs, b.n_obs, density=0.3, format="csr", random_state=rng)
    b.varp["corr"] = sp.random(b.n_vars, b.n_vars, density=0.3, format="csr", random_state=rng)
    b.uns["nested"] = {"a": {"b": [1, 2, 3], "s": "x"}, "f": 1.5}
    b.raw = b.copy()
    files["everything"] = h5(b.write_h5ad)

    def fixed_strings(p):
        small_adata(rng).write_h5ad(p)
        with h5py.File(p, "r+") as f:
            idx = f["obs/_index"][...].astype("S8")
            attrs = dict(f["obs/_index"].attrs)
            del f["obs/_index"]
            f["obs/_index"] = idx
            for k, v in attrs.items():
                f["obs/_index"].attrs[k] = v
    files["fixed-strings"] = h5(fixed_strings)

    def cellranger_v3(p):
        n, m = 5, 4
        x = sp.random(m, n, density=0.5, format="csc", random_state=rng,
                      data_rvs=lambda k: rng.integers(1, 9, size=k)).astype(np.int32)
        with h5py.File(p, "w") as f:
            g = f.create_group("matrix")
            g["barcodes"] = np.array([f"AC{i}-1".encode() for i in range(n)])
            g["data"], g["indices"], g["indptr"] = x.data, x.indices.astype(np.int64), x.indptr.astype(np.int64)
            g["shape"] = np.array([m, n], dtype=np.int32)
            ft = g.create_group("features")
            ft["id"] = np.array([f"E{j}".encode() for j in range(m)])
            ft["name"] = np.array([f"G{j}".encode() for j in range(m)])
            ft["feature_type"] = np.array([b"Gene Expression"] * (m - 1) + [b"Antibody Capture"])
            ft["genome"] = np.array([b"GRCh38"] * m)
    files["cellranger-v3"] = h5(cellranger_v3)

    def cellranger_v2(p):
        n, m = 5, 3
        x = sp.random(m, n, density=0.5, format="csc", random_state=rng,
                      data_rvs=lambda k: rng.integers(1, 9, size=k)).astype(np.int32)
        with h5py.File(p, "w") as f:
            g = f.create_group("hg19")
            g["barcodes"] = np.array([f"AC{i}-1".encode() for i in range(n)])
            g["data"], g["indices"], g["indptr"] = x.data, x.indices.astype(np.int64), x.indptr.astype(np.int64)
            g["shape"] = np.array([m, n], dtype=np.int32)
            g["genes"] = np.array([f"E{j}".encode() for j in range(m)])
            g["gene_names"] = np.array([f"G{j}".encode() for j in range(m)])
    files["cellranger-v2"] = h5(cellranger_v2)
    # The layouts of anndata 0.6 (compound dataframes, obsm, uns record arrays) and 0.7, as
    # the legacy tests write them.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
    import legacy_h5ad
    files["anndata-06"] = h5(lambda p: legacy_h5ad.write_anndata_06(p, n_cells=5))
    files["anndata-07"] = h5(legacy_h5ad.write_anndata_07)
    return files


def hdf5_seeds(out):
    for name, data in hdf5_files().items():
        reader = 1 if name.startswith("cellranger") else 0
        for extra in (0, 2, 4):
            seed(out, "hdf5_inputs", f"{name}-{extra}", bytes([reader | extra]) + data)


if __name__ == "__main__":
    out = sys.argv[1]
    binary = sys.argv[2] if len(sys.argv) > 2 else None
    mtx_seeds(out)
    manifest_seeds(out, binary)
    hdf5_seeds(out)

"""Seeded 10x Genomics fixtures written by independent tools: scipy.io.mmwrite for MTX
directories, h5py following Cell Ranger's documented .h5 layout (v2 and v3)."""
import gzip
import shutil
from pathlib import Path

import h5py
import numpy as np
import scipy.io
import scipy.sparse as sp


def _features(m, rng, antibody=True, duplicate=True):
    ids = [f"ENSG{j:011d}" for j in range(m)]
    names = [f"GENE{j}" for j in range(m)]
    types = ["Gene Expression"] * m
    if duplicate:
        names[3] = names[2]  # a duplicate symbol
    if antibody:
        ids[-1], names[-1], types[-1] = "CD3_TotalSeqB", "CD3", "Antibody Capture"
    return ids, names, types


def _matrix(n_cells, m, rng, real=False):
    x = sp.random(m, n_cells, density=0.2, format="csc", random_state=rng,
                  data_rvs=lambda k: rng.integers(1, 40, size=k)).astype(np.float64)
    if real:
        x.data = x.data / 3.0
    return x  # genes x cells, CSC: entries sorted by cell


def _gz(path):
    with open(path, "rb") as src, gzip.open(str(path) + ".gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    Path(path).unlink()


def write_mtx(d, version=3, gz=True, real=False, order="sorted", field=None, seed=0):
    """Write a 10x MTX directory; returns (genes x cells matrix, barcodes, ids, names, types)."""
    rng = np.random.default_rng(seed)
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    n_cells, m = 30, 12
    x = _matrix(n_cells, m, rng, real)
    ids, names, types = _features(m, rng, antibody=version == 3)
    barcodes = [f"AAAC{i:04d}-1" for i in range(n_cells)]
    coo = x.tocoo()
    if order == "shuffled":
        perm = rng.permutation(coo.nnz)
        coo = sp.coo_matrix((coo.data[perm], (coo.row[perm], coo.col[perm])), shape=coo.shape)
    if field == "pattern":
        coo.data[:] = 1
        x = coo.tocsc()
    scipy.io.mmwrite(str(d / "matrix.mtx"), coo, field=field or ("real" if real else "integer"))
    (d / "barcodes.tsv").write_text("".join(b + "\n" for b in barcodes))
    if version == 3:
        (d / "features.tsv").write_text("".join(f"{i}\t{n}\t{t}\n" for i, n, t in zip(ids, names, types)))
        feats = "features.tsv"
    else:
        (d / "genes.tsv").write_text("".join(f"{i}\t{n}\n" for i, n in zip(ids, names)))
        feats = "genes.tsv"
    if gz:
        for f in ["matrix.mtx", "barcodes.tsv", feats]:
            _gz(d / f)
    return x, barcodes, ids, names, types


def write_h5_v3(path, seed=0):
    rng = np.random.default_rng(seed)
    n_cells, m = 40, 15
    x = _matrix(n_cells, m, rng)
    ids, names, types = _features(m, rng)
    barcodes = [f"TTTG{i:04d}-1" for i in range(n_cells)]
    csr = x.T.tocsr()  # cells x genes CSR == genes x cells CSC
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array(barcodes, dtype="S")
        g["data"] = csr.data.astype(np.int32)
        g["indices"] = csr.indices.astype(np.int64)
        g["indptr"] = csr.indptr.astype(np.int64)
        g["shape"] = np.array([m, n_cells], dtype=np.int32)
        fg = g.create_group("features")
        fg["id"] = np.array(ids, dtype="S")
        fg["name"] = np.array(names, dtype="S")
        fg["feature_type"] = np.array(types, dtype="S")
        fg["genome"] = np.array(["GRCh38"] * m, dtype="S")
        fg["_all_tag_keys"] = np.array([b"genome"])
    return x


def write_h5_v2(path, genomes=("hg19", "mm10"), seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    with h5py.File(path, "w") as f:
        for k, genome in enumerate(genomes):
            n_cells, m = 25, 10 + k
            x = _matrix(n_cells, m, rng)
            csr = x.T.tocsr()
            g = f.create_group(genome)
            g["barcodes"] = np.array([f"CGTA{i:04d}-1" for i in range(n_cells)], dtype="S")
            g["data"] = csr.data.astype(np.int32)
            g["indices"] = csr.indices.astype(np.int64)
            g["indptr"] = csr.indptr.astype(np.int64)
            g["shape"] = np.array([m, n_cells], dtype=np.int32)
            g["genes"] = np.array([f"{genome}_ENSG{j:05d}" for j in range(m)], dtype="S")
            g["gene_names"] = np.array([f"{genome}_G{j}" for j in range(m)], dtype="S")
            out[genome] = x
    return out

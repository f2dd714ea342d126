"""The malformed-input corpus: seeded, small files built from valid ones and then broken the
way files from the wild are. Each builder writes its input under `d` and returns a Case.

A case is either refused (`codes`: the documented exit codes it may get, `names`: what the
one-line error must mention besides the file) or converted (`check(dst, src)` asserts the
dataset equals what anndata/scanpy read).
"""
import gzip
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

INVALID, MISSING, MANIFEST = 65, 66, 64


@dataclass
class Case:
    src: Path
    codes: tuple = ()                 # refused with one of these
    names: tuple = ()                 # ...and the message mentions these
    check: Optional[Callable] = None  # converted: check(dst, src)
    args: tuple = ()
    warns: tuple = ()                 # converted with these in stderr
    command: str = "convert"
    timeout: int = 120
    file: Optional[str] = None        # the file the error names, when not src


def small(n=8, m=5, seed=0, dtype=np.float32, fmt="csr"):
    rng = np.random.default_rng(seed)
    x = sp.random(n, m, density=0.5, format=fmt, random_state=rng,
                  data_rvs=lambda k: rng.integers(1, 9, size=k)).astype(dtype)
    obs = pd.DataFrame({"ct": pd.Categorical(rng.choice(["a", "b"], size=n))},
                       index=[f"c{i}" for i in range(n)])
    var = pd.DataFrame(index=[f"G{j}" for j in range(m)])
    return ad.AnnData(X=x, obs=obs, var=var)


def h5ad(d, name, adata=None, mutate=None):
    p = Path(d) / f"{name}.h5ad"
    (adata if adata is not None else small()).write_h5ad(p)
    if mutate:
        with h5py.File(p, "r+") as f:
            mutate(f)
    return p


def replace(f, path, data, keep_attrs=True):
    attrs = dict(f[path].attrs) if keep_attrs else {}
    del f[path]
    f[path] = data
    for k, v in attrs.items():
        f[path].attrs[k] = v


def read_matrix(dst):
    import lance
    t = lance.dataset(str(dst / "expression.lance")).to_table()
    return (t.column("cell_integer_id").to_numpy().astype(np.int64),
            t.column("gene_integer_id").to_numpy().astype(np.int64),
            t.column("value").to_numpy().astype(np.float64))


def same_as_anndata(dst, src):
    """Every stored entry equals anndata's, NaN and infinities included; names equal."""
    import lance
    a = ad.read_h5ad(src)
    x = a.X if sp.issparse(a.X) else sp.csr_matrix(np.asarray(a.X))
    x = sp.csr_matrix(x)
    cells, genes, values = read_matrix(dst)
    coo = x.tocoo()
    want = sorted(zip(coo.row.tolist(), coo.col.tolist(),
                      coo.data.astype(np.float32).astype(np.float64).tolist()))
    got = sorted(zip(cells.tolist(), genes.tolist(), values.tolist()))
    assert len(got) == len(want)
    for (r1, c1, v1), (r2, c2, v2) in zip(got, want):
        assert (r1, c1) == (r2, c2)
        assert v1 == v2 or (np.isnan(v1) and np.isnan(v2)), (r1, c1, v1, v2)
    cell_ids = lance.dataset(str(dst / "cells.lance")).to_table().column("cell_id").to_pylist()
    assert cell_ids == list(a.obs_names)


def same_without(part):
    """For files anndata itself cannot read (its uns walk recurses without end): the
    dataset equals anndata's reading of the file with `part` removed."""
    def check(dst, src):
        import shutil
        import tempfile
        with tempfile.TemporaryDirectory() as t:
            copy = Path(t) / src.name
            shutil.copy(src, copy)
            with h5py.File(copy, "r+") as f:
                del f[part]
            same_as_anndata(dst, copy)
    return check


# ---------------------------------------------------------------- h5ad: refused

def h5ad_2d_fixed_index(d):
    def m(f):
        replace(f, "obs/_index", np.array([[b"c%d" % i, b"x"] for i in range(8)], dtype="S4"))
    return Case(h5ad(d, "fixed2d", mutate=m), (INVALID,), ("obs/_index", "1-D"))


def h5ad_2d_fixed_categories(d):
    def m(f):
        replace(f, "obs/ct/categories", np.array([[b"a", b"b"], [b"c", b"d"]], dtype="S2"))
    return Case(h5ad(d, "fixedcat2d", mutate=m), (INVALID,), ("obs/ct/categories",))


def h5ad_indptr_not_monotonic(d):
    def m(f):
        ip = f["X/indptr"][...]
        ip[3], ip[4] = ip[4], ip[3] + 100
        replace(f, "X/indptr", ip)
    return Case(h5ad(d, "indptr", mutate=m), (INVALID,), ("X/indptr",))


def h5ad_indptr_not_starting_at_zero(d):
    def m(f):
        replace(f, "X/indptr", f["X/indptr"][...] + 1)
    return Case(h5ad(d, "indptr0", mutate=m), (INVALID,), ("X/indptr",))


def h5ad_indptr_short(d):
    def m(f):
        replace(f, "X/indptr", f["X/indptr"][:-2])
    return Case(h5ad(d, "indptrshort", mutate=m), (INVALID,), ("X/indptr",))


def h5ad_index_out_of_range(d):
    def m(f):
        ix = f["X/indices"][...]
        ix[2] = 5
        replace(f, "X/indices", ix)
    return Case(h5ad(d, "ixrange", mutate=m), (INVALID,), ("X/indices",))


def h5ad_index_negative(d):
    def m(f):
        ix = f["X/indices"][...].astype(np.int32)
        ix[1] = -3
        replace(f, "X/indices", ix)
    return Case(h5ad(d, "ixneg", mutate=m), (INVALID,), ("X/indices",))


def h5ad_data_short(d):
    def m(f):
        replace(f, "X/data", f["X/data"][:-3])
    return Case(h5ad(d, "datashort", mutate=m), (INVALID,), ("X/",))


def h5ad_shape_lies_huge(d):
    def m(f):
        f["X"].attrs["shape"] = np.array([10**12, 5], dtype=np.int64)
    return Case(h5ad(d, "shapehuge", mutate=m), (INVALID,), ("X",))


def h5ad_shape_lies_negative(d):
    def m(f):
        f["X"].attrs["shape"] = np.array([-8, 5], dtype=np.int64)
    return Case(h5ad(d, "shapeneg", mutate=m), (INVALID,), ("X",))


def h5ad_dims_lie(d):
    """A dataset whose header claims 2^40 elements with no storage behind them."""
    def m(f):
        attrs = dict(f["X/indices"].attrs)
        del f["X/indices"]
        ds = f.create_dataset("X/indices", shape=(2**40,), dtype="i4", chunks=(1024,))
        for k, v in attrs.items():
            ds.attrs[k] = v
    return Case(h5ad(d, "dimslie", mutate=m), (INVALID,), ("X/indices",))


def h5ad_consistent_lies(d):
    """Shape, obs index and indptr all claim 2^40 cells, with no storage behind them: refused
    before any buffer is sized by them (and the run is under a 4 GiB address-space limit)."""
    n = 2**40
    def m(f):
        f["X"].attrs["shape"] = np.array([n, 5], dtype=np.int64)
        for name, dtype, length in (("X/indptr", "i8", n + 1), ("obs/_index", "S4", n),
                                    ("obs/ct/codes", "i1", n)):
            attrs = dict(f[name].attrs)
            del f[name]
            ds = f.create_dataset(name, shape=(length,), dtype=dtype, chunks=(4096,))
            for k, v in attrs.items():
                ds.attrs[k] = v
    return Case(h5ad(d, "lies", mutate=m), (INVALID,), ("claimed",))


def h5ad_dense_3d(d):
    a = small()
    a.X = a.X.toarray()
    def m(f):
        replace(f, "X", np.zeros((8, 5, 2), dtype=np.float32))
    return Case(h5ad(d, "dense3d", a, m), (INVALID,), ("X",))


def h5ad_unknown_encoding(d):
    def m(f):
        f["X"].attrs["encoding-type"] = "coo_matrix"
    return Case(h5ad(d, "unknownenc", mutate=m), (INVALID,), ("X", "coo_matrix"))


def h5ad_unknown_encoding_version(d):
    def m(f):
        f["X"].attrs["encoding-version"] = "9.9.9"
    return Case(h5ad(d, "encver", mutate=m), (INVALID,), ("X", "9.9.9"))


def h5ad_uns_cycle(d):
    a = small()
    a.uns["a"] = {"b": {"c": 1}}
    def m(f):
        f["uns/a/b/loop"] = f["uns/a"]  # hard link: a group inside itself
    return Case(h5ad(d, "unscycle", a, m), check=same_without("uns/a/b/loop"),
                warns=("uns.skipped", "cycle"))


def h5ad_uns_deep(d):
    def m(f):
        g = f["uns"]
        for i in range(3000):
            g = g.create_group("n")
        g["leaf"] = 1
    return Case(h5ad(d, "unsdeep", mutate=m), check=same_without("uns/n"),
                warns=("uns.skipped", "deep"))


def h5ad_bad_utf8_index(d):
    """anndata decodes with h5py's strict asstr(): invalid UTF-8 is an error there too."""
    def m(f):
        names = [f"c{i}".encode() for i in range(8)]
        names[3] = b"c\xff\xfe"
        attrs = dict(f["obs/_index"].attrs)
        del f["obs/_index"]
        f.create_dataset("obs/_index", data=np.array(names, dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        for k, v in attrs.items():
            f["obs/_index"].attrs[k] = v
    return Case(h5ad(d, "badutf8", mutate=m), (INVALID,), ("obs/_index", "UTF-8"))


def h5ad_codes_out_of_range(d):
    def m(f):
        codes = f["obs/ct/codes"][...]
        codes[0] = 7
        replace(f, "obs/ct/codes", codes)
    return Case(h5ad(d, "codes", mutate=m), (INVALID,), ("obs/ct",))


def h5ad_obs_column_short(d):
    a = small()
    a.obs["score"] = np.arange(8.0)
    def m(f):
        replace(f, "obs/score", np.arange(5.0))
    return Case(h5ad(d, "obsshort", a, m), (INVALID,), ("obs/score",))


def h5ad_obsm_wrong_rows(d):
    a = small()
    a.obsm["X_pca"] = np.zeros((8, 2))
    def m(f):
        replace(f, "obsm/X_pca", np.zeros((3, 2)))
    return Case(h5ad(d, "obsmrows", a, m), (INVALID,), ("obsm/X_pca",))


def h5ad_layer_wrong_shape(d):
    a = small()
    a.layers["s"] = a.X.copy()
    def m(f):
        f["layers/s"].attrs["shape"] = np.array([8, 9])
    return Case(h5ad(d, "layershape", a, m), (INVALID,), ("layers/s",))


def h5ad_data_strings(d):
    def m(f):
        replace(f, "X/data", np.array([b"x"] * f["X/data"].shape[0]))
    return Case(h5ad(d, "datastr", mutate=m), (INVALID,), ("X/data",))


def zero_genes_check(dst, src):
    """anndata reads an X without genes; so does upstream's reader on ours."""
    import json
    import lance
    from slaf import SLAFArray
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["array_shape"] == [4, 0]
    assert tuple(SLAFArray(str(dst)).shape) == (4, 0)
    ids = lance.dataset(str(dst / "cells.lance")).to_table().column("cell_id").to_pylist()
    assert ids == [f"c{i}" for i in range(4)] or ids == [f"AC{i}-1" for i in range(4)]


def h5ad_zero_genes(d):
    obs = pd.DataFrame(index=[f"c{i}" for i in range(4)])
    a = ad.AnnData(X=sp.csc_matrix((4, 0), dtype=np.float32), obs=obs)
    return Case(h5ad(d, "zerogenes", a), check=zero_genes_check)


def h5ad_zero_genes_dense(d):
    obs = pd.DataFrame(index=[f"c{i}" for i in range(4)])
    a = ad.AnnData(X=np.zeros((4, 0), dtype=np.float32), obs=obs)
    return Case(h5ad(d, "zerogenesdense", a), check=zero_genes_check)


def h5ad_truncated(d):
    p = h5ad(d, "trunc")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return Case(p, (INVALID,), ())


def h5ad_garbage(d):
    p = Path(d) / "garbage.h5ad"
    p.write_bytes(np.random.default_rng(5).bytes(4096))
    return Case(p, (INVALID,), ())


def h5ad_empty_file(d):
    p = Path(d) / "empty.h5ad"
    p.write_bytes(b"")
    return Case(p, (INVALID,), ())


def fifo_input(d):
    p = Path(d) / "pipe.h5ad"
    os.mkfifo(p)
    return Case(p, (INVALID, MISSING), ("not a regular file",), timeout=30)


# ---------------------------------------------------------------- h5ad: converted

def hi_values(src):
    return ad.read_h5ad(src).X.data.astype(np.float64)


def h5ad_nan_inf(d):
    a = small(dtype=np.float32)
    a.X.data[0] = np.nan
    a.X.data[1] = np.inf
    a.X.data[2] = -np.inf
    a.obsm["X_pca"] = np.array([[np.nan, 1.0]] * 8)
    a.layers["counts"] = a.X.copy()
    a.obsp["conn"] = sp.csr_matrix(np.diag([np.nan, np.inf, 1.0, 2.0, 0.5, 1.0, 1.0, 1.0]).astype(np.float32))
    def check(dst, src):
        same_as_anndata(dst, src)
        import json
        cfg = json.loads((dst / "config.json").read_text())
        stats = cfg["metadata"]["expression_stats"]
        assert all(np.isfinite(stats[k]) for k in ("min_value", "max_value", "mean_value", "std_value"))
        assert stats["non_finite"] == {"nan": 1, "pos_inf": 1, "neg_inf": 1}
        finite = [v for v in hi_values(src) if np.isfinite(v)]
        assert stats["min_value"] == min(finite) and stats["max_value"] == max(finite)
        assert abs(stats["mean_value"] - np.mean(finite)) < 1e-9
        import lance
        layer = lance.dataset(str(dst / "layers.lance")).to_table().column("counts").to_numpy()
        assert np.isnan(layer).sum() == 1 and np.isposinf(layer).sum() == 1
        obsm = lance.dataset(str(dst / "cells.lance")).to_table().column("X_pca").to_pylist()
        assert all(np.isnan(r[0]) and r[1] == 1.0 for r in obsm)
        conn = lance.dataset(str(dst / "cellsxcells.lance")).to_table().column("conn").to_numpy()
        assert np.isnan(conn).sum() == 1 and np.isposinf(conn).sum() == 1
    return Case(h5ad(d, "naninf", a), check=check)


def h5ad_f64_narrowing(d):
    a = small(dtype=np.float64)
    a.X.data[:] = np.linspace(0.1, 0.9, a.X.nnz)
    changed = int(np.sum(a.X.data.astype(np.float32).astype(np.float64) != a.X.data))
    assert changed > 0
    return Case(h5ad(d, "narrow", a), check=same_as_anndata,
                warns=('"event":"input.narrowed"', '"stored":"float64"', f'"values":{changed}'))


def h5ad_large_integers(d):
    a = small(dtype=np.int64)
    a.X.data[0] = 2**24 + 1
    return Case(h5ad(d, "bigint", a), check=same_as_anndata,
                warns=('"event":"input.narrowed"', '"stored":"int64"', '"values":1'))


def h5ad_external_link(d):
    """X's arrays live in another file behind external links: read through them, correctly."""
    p = h5ad(d, "extlink")
    other = Path(d) / "extlink-data.h5"
    with h5py.File(p, "r+") as f, h5py.File(other, "w") as o:
        for name in ("data", "indices"):
            arr = f[f"X/{name}"][...]
            # Chunked and padded so the direct chunk reader's offsets would be wrong in `p`.
            o.create_dataset("pad", data=np.arange(10000, dtype=np.int64)) if name == "data" else None
            o.create_dataset(name, data=arr, chunks=(4,), compression="gzip")
            del f[f"X/{name}"]
            f[f"X/{name}"] = h5py.ExternalLink(other.name, name)
    return Case(p, check=same_as_anndata)


def h5ad_crlf_free_strings(d):
    """Fixed-length (1-D) string index and categories: read as anndata reads them."""
    def m(f):
        replace(f, "obs/_index", np.array([b"c%d" % i for i in range(8)], dtype="S4"))
    return Case(h5ad(d, "fixed1d", mutate=m), check=same_as_anndata)


H5AD = [h5ad_2d_fixed_index, h5ad_2d_fixed_categories, h5ad_indptr_not_monotonic,
        h5ad_indptr_not_starting_at_zero, h5ad_indptr_short, h5ad_index_out_of_range,
        h5ad_index_negative, h5ad_data_short, h5ad_shape_lies_huge, h5ad_shape_lies_negative,
        h5ad_dims_lie, h5ad_consistent_lies, h5ad_dense_3d, h5ad_unknown_encoding, h5ad_unknown_encoding_version,
        h5ad_uns_cycle, h5ad_uns_deep, h5ad_bad_utf8_index, h5ad_codes_out_of_range,
        h5ad_obs_column_short, h5ad_obsm_wrong_rows, h5ad_layer_wrong_shape, h5ad_data_strings,
        h5ad_zero_genes, h5ad_zero_genes_dense, h5ad_truncated, h5ad_garbage, h5ad_empty_file, fifo_input,
        h5ad_nan_inf, h5ad_f64_narrowing, h5ad_large_integers, h5ad_external_link,
        h5ad_crlf_free_strings]


# ---------------------------------------------------------------- 10x MTX

BANNER = "%%MatrixMarket matrix coordinate integer general\n"
BARCODES = "".join(f"AAC{i}-1\n" for i in range(4))
FEATURES = "".join(f"E{j}\tG{j}\tGene Expression\n" for j in range(3))


def mtx_dir(d, name, matrix, barcodes=BARCODES, features=FEATURES, gz=True, raw=None):
    p = Path(d) / name
    p.mkdir()
    files = {"matrix.mtx": matrix, "barcodes.tsv": barcodes, "features.tsv": features}
    for fname, text in files.items():
        data = text if isinstance(text, bytes) else text.encode()
        if raw and fname in raw:
            (p / (fname + ".gz")).write_bytes(raw[fname])
        elif gz:
            (p / (fname + ".gz")).write_bytes(gzip.compress(data))
        else:
            (p / fname).write_bytes(data)
    return p


def same_as_scanpy(dst, src):
    import lance
    import scanpy as sc
    a = sc.read_10x_mtx(src, var_names="gene_symbols", make_unique=True)
    cells, genes, values = read_matrix(dst)
    pairs = set(zip(cells.tolist(), genes.tolist()))
    assert len(pairs) == len(cells), "one row per (cell, gene)"
    got = sp.coo_matrix((values, (cells, genes)), shape=a.shape).toarray()
    assert np.array_equal(got, a.X.toarray().astype(np.float32).astype(np.float64))
    cell_ids = lance.dataset(str(dst / "cells.lance")).to_table().column("cell_id").to_pylist()
    assert cell_ids == list(a.obs_names)


def mtx_gene_out_of_range(d):
    return Case(mtx_dir(d, "generange", BANNER + "3 4 2\n1 1 5\n4 2 1\n"), (INVALID,), ("matrix.mtx", "line 4"))


def mtx_cell_out_of_range(d):
    return Case(mtx_dir(d, "cellrange", BANNER + "3 4 2\n1 1 5\n2 9 1\n"), (INVALID,), ("matrix.mtx",))


def mtx_zero_index(d):
    return Case(mtx_dir(d, "zeroidx", BANNER + "3 4 1\n0 1 5\n"), (INVALID,), ("matrix.mtx",))


def mtx_negative_index(d):
    return Case(mtx_dir(d, "negidx", BANNER + "3 4 1\n-1 1 5\n"), (INVALID,), ("matrix.mtx",))


def mtx_fewer_entries(d):
    return Case(mtx_dir(d, "fewer", BANNER + "3 4 3\n1 1 5\n"), (INVALID,), ("matrix.mtx",))


def mtx_more_entries(d):
    return Case(mtx_dir(d, "more", BANNER + "3 4 1\n1 1 5\n2 2 2\n"), (INVALID,), ("matrix.mtx",))


def mtx_lying_size(d):
    return Case(mtx_dir(d, "hugesize", BANNER + "1000000000000 1000000000000 1\n1 1 5\n"),
                (INVALID,), ("matrix.mtx",))


def mtx_barcodes_mismatch(d):
    return Case(mtx_dir(d, "barcodes", BANNER + "3 5 1\n1 1 5\n"), (INVALID,), ("barcodes",))


def mtx_not_a_number(d):
    return Case(mtx_dir(d, "nan-text", BANNER + "3 4 1\n1 1 five\n"), (INVALID,), ("matrix.mtx", "line 3"))


def mtx_array_format(d):
    return Case(mtx_dir(d, "arrayfmt", "%%MatrixMarket matrix array integer general\n3 4\n1\n"),
                (INVALID,), ("matrix.mtx",))


def mtx_bad_banner(d):
    return Case(mtx_dir(d, "banner", "hello world\n3 4 1\n1 1 5\n"), (INVALID,), ("matrix.mtx",))


def mtx_truncated_gzip(d):
    data = gzip.compress((BANNER + "3 4 2\n1 1 5\n2 2 7\n").encode())
    return Case(mtx_dir(d, "truncgz", "", raw={"matrix.mtx": data[:-12]}), (INVALID,), ("matrix.mtx",))


def mtx_garbage_gzip(d):
    return Case(mtx_dir(d, "garbagegz", "", raw={"matrix.mtx": b"\x1f\x8b" + b"\x00" * 40}),
                (INVALID,), ("matrix.mtx",))


def mtx_bad_utf8_barcode(d):
    return Case(mtx_dir(d, "badutf8", BANNER + "3 4 1\n1 1 5\n",
                        barcodes=b"AAC0-1\nAA\xffC1-1\nAAC2-1\nAAC3-1\n"), (INVALID,), ("barcodes", "UTF-8"))


def mtx_no_features(d):
    p = mtx_dir(d, "nofeatures", BANNER + "3 4 1\n1 1 5\n")
    (p / "features.tsv.gz").unlink()
    return Case(p, (INVALID, MISSING), ("features",))


def mtx_feature_types_none_kept(d):
    return Case(mtx_dir(d, "ftypes", BANNER + "3 4 1\n1 1 5\n"), (INVALID,),
                ("Gene Expresion", "Gene Expression"), args=("--feature-types", "Gene Expresion"))


def mtx_feature_types_v2(d):
    return Case(mtx_dir(d, "ftypesv2", BANNER + "3 4 1\n1 1 5\n",
                        features="E0\tG0\nE1\tG1\nE2\tG2\n"), (INVALID,),
                ("feature", "type"), args=("--feature-types", "Gene Expression"))


def mtx_zero_features(d):
    return Case(mtx_dir(d, "zerofeatures", BANNER + "0 4 0\n", barcodes=BARCODES.replace("AAC", "AC"),
                        features=""), check=zero_genes_check)


def mtx_crlf(d):
    m = (BANNER + "% comment\n3 4 3\n1 1 5\n2 1 6\n3 4 1\n").replace("\n", "\r\n")
    return Case(mtx_dir(d, "crlf", m, barcodes=BARCODES.replace("\n", "\r\n"),
                        features=FEATURES.replace("\n", "\r\n")), check=same_as_scanpy)


def mtx_duplicates(d):
    # scipy's mmread + tocsr (scanpy) sums duplicate entries.
    return Case(mtx_dir(d, "dups", BANNER + "3 4 3\n1 1 5\n1 1 2\n2 3 7\n"), check=same_as_scanpy)


def mtx_duplicates_sum_beyond_uint16(d):
    # Each value fits uint16, their sum does not: the value type follows the sums.
    return Case(mtx_dir(d, "dupsbig", BANNER + "3 4 3\n1 1 40000\n1 1 40000\n2 3 7\n"),
                check=same_as_scanpy)


def mtx_duplicates_unsorted(d):
    return Case(mtx_dir(d, "dupsunsorted", BANNER + "3 4 3\n1 2 5\n1 1 2\n1 2 7\n"),
                (INVALID,), ("matrix.mtx", "sorted by cell"))


def mtx_multimember_gzip(d):
    body = BANNER + "3 4 3\n1 1 5\n2 1 6\n3 4 1\n"
    data = gzip.compress(body[:40].encode()) + gzip.compress(body[40:].encode())
    return Case(mtx_dir(d, "multigz", "", raw={"matrix.mtx": data}), check=same_as_scanpy)


MTX = [mtx_gene_out_of_range, mtx_cell_out_of_range, mtx_zero_index, mtx_negative_index,
       mtx_fewer_entries, mtx_more_entries, mtx_lying_size, mtx_barcodes_mismatch,
       mtx_not_a_number, mtx_array_format, mtx_bad_banner, mtx_truncated_gzip, mtx_garbage_gzip,
       mtx_bad_utf8_barcode, mtx_no_features, mtx_feature_types_none_kept, mtx_feature_types_v2,
       mtx_zero_features, mtx_crlf, mtx_duplicates, mtx_duplicates_sum_beyond_uint16,
       mtx_duplicates_unsorted, mtx_multimember_gzip]


# ---------------------------------------------------------------- Cell Ranger .h5

def cellranger(d, name, mutate=None, n=5, m=4):
    p = Path(d) / f"{name}.h5"
    rng = np.random.default_rng(2)
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
        ft["feature_type"] = np.array([b"Gene Expression"] * m)
        ft["genome"] = np.array([b"GRCh38"] * m)
        if mutate:
            mutate(f)
    return p


def cr_shape_lies(d):
    def m(f):
        replace(f, "matrix/shape", np.array([4, 10**11], dtype=np.int64))
    return Case(cellranger(d, "crshape", m), (INVALID,), ("matrix/",))


def cr_index_out_of_range(d):
    def m(f):
        ix = f["matrix/indices"][...]
        ix[0] = 99
        replace(f, "matrix/indices", ix)
    return Case(cellranger(d, "crindex", m), (INVALID,), ("matrix/indices",))


def cr_barcodes_2d(d):
    def m(f):
        replace(f, "matrix/barcodes", np.array([[b"A", b"B"]] * 5, dtype="S2"))
    return Case(cellranger(d, "crbarcodes2d", m), (INVALID,), ("matrix/barcodes",))


def cr_indptr_decreasing(d):
    def m(f):
        ip = f["matrix/indptr"][...]
        ip[2] = ip[-1] + 1
        replace(f, "matrix/indptr", ip)
    return Case(cellranger(d, "crindptr", m), (INVALID,), ("matrix/indptr",))


def cr_feature_types_none_kept(d):
    return Case(cellranger(d, "crftypes"), (INVALID,), ("Antibody",),
                args=("--feature-types", "Antibody Capture"))


def cr_no_matrix(d):
    def m(f):
        del f["matrix"]
        f["other"] = 1
    return Case(cellranger(d, "crnomatrix", m), (INVALID,), ("matrix",))


CELLRANGER = [cr_shape_lies, cr_index_out_of_range, cr_barcodes_2d, cr_indptr_decreasing,
              cr_feature_types_none_kept, cr_no_matrix]


# ---------------------------------------------------------------- manifests

def manifest(d, name, text):
    p = Path(d) / f"{name}.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return Case(p, (MANIFEST,), (p.name,), command="plan")


def manifest_empty(d):
    return manifest(d, "empty", "")


def manifest_list(d):
    return manifest(d, "list", "- a\n- b\n")


def manifest_unknown_key(d):
    return manifest(d, "unknown", "output: o.slaf\ninputs:\n  - path: a.h5ad\nbogus: 1\n")


def manifest_no_inputs(d):
    return manifest(d, "noinputs", "output: o.slaf\ninputs: []\n")


def manifest_binary(d):
    return manifest(d, "binary", np.random.default_rng(9).bytes(2000))


def manifest_alias_bomb(d):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    return manifest(d, "bomb", "\n".join(lines) + "\noutput: o.slaf\ninputs: []\n")


def manifest_deep(d):
    return manifest(d, "deep", "output: o.slaf\ninputs: " + "[" * 5000 + "]" * 5000 + "\n")


def manifest_huge(d):
    text = "output: o.slaf\ninputs:\n" + "".join(f"  - path: missing-{i}.h5ad\n" for i in range(100_000))
    c = manifest(d, "huge", text)
    c.codes = (MANIFEST, MISSING)
    c.file = "missing-0.h5ad"
    c.names = ()
    return c


def manifest_oversized(d):
    c = manifest(d, "oversized", "")
    with open(c.src, "wb") as f:
        f.truncate(300 * 1024 * 1024)   # sparse: refused by its size, never read
    c.names = ("bytes",)
    return c


def manifest_bad_utf8(d):
    return manifest(d, "badutf8", b"output: o\xff.slaf\ninputs:\n  - path: a.h5ad\n")


def manifest_negative_shards(d):
    return manifest(d, "negshards", "output: o.slaf\ninputs:\n  - path: a.h5ad\nsharding:\n  shards: -1\n")


MANIFESTS = [manifest_empty, manifest_list, manifest_unknown_key, manifest_no_inputs,
             manifest_binary, manifest_alias_bomb, manifest_deep, manifest_huge, manifest_oversized,
             manifest_bad_utf8, manifest_negative_shards]

ALL = H5AD + MTX + CELLRANGER + MANIFESTS

"""h5ad files in the layouts older anndata versions wrote, built with h5py the way those
versions wrote them (anndata's own legacy readers are the reference for what they mean)."""
import h5py
import numpy as np


def write_anndata_07(path):
    """anndata 0.7: dataframe columns are plain datasets; a categorical column holds the codes
    (-1: missing) with a `categories` object reference to `<dataframe>/__categories/<col>`."""
    s = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        x = f.create_group("X")
        x.attrs["encoding-type"] = "csr_matrix"
        x.attrs["encoding-version"] = "0.1.0"
        x.attrs["shape"] = (4, 3)
        x["data"] = np.array([1, 2, 3, 4], dtype=np.float32)
        x["indices"] = np.array([0, 1, 2, 0], dtype=np.int32)
        x["indptr"] = np.array([0, 1, 2, 3, 4], dtype=np.int64)
        frames = {
            "obs": (["c0", "c1", "c2", "c3"],
                    {"cell_type": (["B", "T", "NK"], [1, 0, -1, 2])},
                    {"n_genes": np.array([3, 1, 4, 1], dtype=np.int64)}),
            "var": (["g0", "g1", "g2"],
                    {"gene_kind": (["coding", "mito"], [0, 1, 0])},
                    {}),
        }
        for name, (index, categorical, plain) in frames.items():
            g = f.create_group(name)
            g.attrs["encoding-type"] = "dataframe"
            g.attrs["encoding-version"] = "0.1.0"
            g.attrs["_index"] = "index"
            g.create_dataset("index", data=np.array(index, dtype=object), dtype=s)
            g.attrs["column-order"] = np.array([*categorical, *plain], dtype=object).astype(s)
            holder = g.create_group("__categories")
            for col, (categories, codes) in categorical.items():
                holder.create_dataset(col, data=np.array(categories, dtype=object), dtype=s)
                ds = g.create_dataset(col, data=np.array(codes, dtype=np.int8))
                ds.attrs["categories"] = holder[col].ref
            for col, values in plain.items():
                g[col] = values


def write_h5sparse_x(path, fmt):
    """anndata 0.7's file with X in the h5sparse layout: no encoding-type or shape, but
    `h5sparse_format` ("csr" or "csc", as fixed-length bytes) and `h5sparse_shape`."""
    import scipy.sparse as sp
    write_anndata_07(path)
    dense = np.array([[1, 0, 2], [0, 3, 0], [4, 0, 0], [0, 5, 6]], dtype=np.float32)
    m = sp.csr_matrix(dense) if fmt == "csr" else sp.csc_matrix(dense)
    with h5py.File(path, "a") as f:
        del f["X"]
        x = f.create_group("X")
        x.attrs["h5sparse_format"] = np.bytes_(fmt)
        x.attrs["h5sparse_shape"] = np.array(dense.shape, dtype=np.int64)
        x["data"], x["indices"], x["indptr"] = m.data, m.indices, m.indptr
    return dense


def write_anndata_06(path, n_cells=7):
    """Every part of the anndata 0.6 layout, as anndata 0.6 wrote it (fixed-length byte
    strings throughout): obs/var/obsm/varm compound datasets (the first field of a dataframe
    is its index), categoricals as integer fields with labels in `uns/<column>_categories`,
    X and raw.X as h5sparse groups, raw.var at the top, record arrays and one-element byte
    strings in uns. Returns nothing: anndata.read_h5ad is the reference for what it means."""
    import scipy.sparse as sp
    rng = np.random.default_rng(6)
    n_genes = 5
    dense = rng.poisson(0.8, size=(n_cells, n_genes)).astype(np.float32)
    with h5py.File(path, "w") as f:
        def h5sparse(name, m, parent=f):
            g = parent.create_group(name)
            g.attrs["h5sparse_format"] = np.bytes_("csr")
            g.attrs["h5sparse_shape"] = np.array(m.shape, dtype=np.int64)
            g["data"], g["indices"], g["indptr"] = m.data, m.indices, m.indptr

        h5sparse("X", sp.csr_matrix(dense))
        h5sparse("raw.X", sp.csr_matrix(dense * 2))
        cell_codes = np.array([0, 1, 2, -1, 1, 0, 2][:n_cells], dtype=np.int8)
        obs = np.zeros(n_cells, dtype=[
            ("index", "S8"), ("cell_type", "i1"), ("n_genes", "<i8"), ("score", "<f4"),
            ("is_doublet", "?"), ("batch", "<i8"), ("qc.pass", "<f8"), ("grade", "<i4")])
        # numpy keeps a byte string's trailing spaces (only trailing NULs go).
        obs["index"] = [f"cell{i}".encode() + (b" " if i == 1 else b"") for i in range(n_cells)]
        obs["grade"] = np.arange(n_cells) % 3       # fits grade_categories_categories only
        obs["cell_type"] = cell_codes
        obs["n_genes"] = np.count_nonzero(dense, axis=1)
        obs["score"] = rng.normal(size=n_cells).astype(np.float32)
        obs["score"][1] = np.nan
        obs["is_doublet"] = np.arange(n_cells) % 3 == 0
        obs["batch"] = np.arange(n_cells) % 4          # codes beyond batch_categories: stays int
        obs["qc.pass"] = rng.random(n_cells)
        f.create_dataset("obs", data=obs)
        var = np.zeros(n_genes, dtype=[
            ("index", "S6"), ("gene_kind", "i1"), ("means", "<f8"), ("highly_variable", "?")])
        var["index"] = [f"gene{j}".encode() for j in range(n_genes)]
        var["gene_kind"] = [0, 1, 0, 0, 1]
        var["means"] = dense.mean(axis=0)
        var["highly_variable"] = [True, False, True, False, False]
        f.create_dataset("var", data=var)
        f.create_dataset("raw.var", data=var[["index"]].astype([("index", "S6")]))
        obsm = np.zeros(n_cells, dtype=[
            ("X_pca", "<f4", (3,)), ("X_umap", "<f8", (2,)), ("spatial.xy", "<f8", (2,)),
            ("flag", "?")])
        for k in ["X_pca", "X_umap", "spatial.xy"]:
            obsm[k] = rng.normal(size=obsm[k].shape)
        obsm["flag"] = np.arange(n_cells) % 2 == 1
        f.create_dataset("obsm", data=obsm)
        varm = np.zeros(n_genes, dtype=[("PCs", "<f8", (3,))])
        varm["PCs"] = rng.normal(size=(n_genes, 3))
        f.create_dataset("varm", data=varm)
        layers = f.create_group("layers")
        layers["spliced"] = dense + 1
        uns = f.create_group("uns")
        uns["cell_type_categories"] = np.array([b"B", b"NK", b"T"])
        uns["gene_kind_categories"] = np.array([b"coding", b"mito"])
        uns["batch_categories"] = np.array([b"a", b"b"])
        # Two keys name the column grade: the first is too short for its codes, so anndata
        # takes the second (and keeps the first in uns).
        uns["grade_categories"] = np.array([b"lo", b"hi"])
        uns["grade_categories_categories"] = np.array([b"low", b"mid", b"high"])
        # Fixed-length UTF-8: anndata decodes it into an array, not a string.
        label = uns.create_dataset("label", shape=(1,), dtype=h5py.string_dtype("utf-8", 3))
        label[0] = "hé".encode()
        uns["cell_type_colors"] = np.array([b"#1f77b4", b"#ff7f0e", b"#2ca02c"])
        params = uns.create_group("neighbors").create_group("params")
        params["method"] = np.array([b"umap"])                 # a string, to anndata
        params["n_neighbors"] = np.array([10])                 # stays a one-element array
        h5sparse("connectivities", sp.csr_matrix(np.eye(n_cells)), uns["neighbors"])
        rgg = uns.create_group("rank_genes_groups")
        names = np.zeros(2, dtype=[("B", "S6"), ("T", "S6")])
        names["B"], names["T"] = [b"gene0", b"gene3"], [b"gene1", b"gene2"]
        rgg["names"] = names
        scores = np.zeros(2, dtype=[("B", "<f4"), ("T", "<f4")])
        scores["B"], scores["T"] = [2.5, 1.0], [3.0, np.nan]
        rgg["scores"] = scores

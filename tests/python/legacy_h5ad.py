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


def write_anndata_06_obs(path):
    """The layout before anndata 0.7: obs as a compound dataset with an `index` field."""
    write_anndata_07(path)
    with h5py.File(path, "a") as f:
        del f["obs"]
        rec = np.array([(b"c0", 1), (b"c1", 2), (b"c2", 3), (b"c3", 4)],
                       dtype=[("index", "S2"), ("n_genes", "<i8")])
        f.create_dataset("obs", data=rec)

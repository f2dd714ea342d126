//! Input format detection: by content first, by name only to break ties.
//!
//! An HDF5 file holding `/X` is AnnData whatever its extension (an h5ad saved as `.h5`); one
//! holding `/matrix` or a genome group with a matrix is Cell Ranger; a directory with
//! `matrix.mtx[.gz]` is a 10x MTX directory, one that is a TileDB group a SOMA experiment. `--format` overrides detection.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Formats slaf-convert reads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub enum InputFormat {
    /// AnnData `.h5ad`.
    #[serde(rename = "h5ad")]
    H5ad,
    /// 10x Genomics MTX directory.
    #[serde(rename = "10x-mtx")]
    TenxMtx,
    /// Cell Ranger feature-barcode matrix `.h5` (v2 or v3).
    #[serde(rename = "10x-h5")]
    TenxH5,
    /// TileDB-SOMA experiment (a directory; read with libtiledb).
    #[serde(rename = "tiledb-soma")]
    Soma,
}

const SUPPORTED: &str = "supported: AnnData .h5ad, 10x MTX directory (matrix.mtx[.gz] + barcodes + features/genes), Cell Ranger .h5 (v2, v3), TileDB-SOMA experiment directory";

/// HDF5's signature, at offset 0 or a power-of-two userblock offset from 512.
fn is_hdf5(path: &Path) -> bool {
    const SIG: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = vec![0u8; 8];
    let mut offset = 0u64;
    loop {
        use std::io::Seek;
        if f.seek(std::io::SeekFrom::Start(offset)).is_err() || f.read_exact(&mut buf).is_err() {
            return false;
        }
        if buf == SIG {
            return true;
        }
        offset = if offset == 0 { 512 } else { offset * 2 };
        if offset > 1 << 20 {
            return false;
        }
    }
}

/// The metadata of the input at `path`; a path that is not there is [`Error::InputMissing`].
pub fn input_metadata(path: &Path) -> Result<std::fs::Metadata> {
    std::fs::metadata(path).map_err(|e| Error::InputMissing {
        path: path.to_path_buf(),
        what: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".into(),
            _ => format!("cannot open: {e}"),
        },
    })
}

/// Refuse what is neither a regular file nor a directory before anything reads it: reading a
/// FIFO or a terminal blocks until a writer appears, which may be never.
pub fn check_kind(path: &Path) -> Result<()> {
    let meta = input_metadata(path)?;
    if meta.is_file() || meta.is_dir() {
        Ok(())
    } else {
        Err(Error::invalid(
            path,
            "not a regular file or a directory (a FIFO, socket or device?): give the file itself",
        ))
    }
}

/// Detect the format of `path`.
pub fn detect(path: &Path) -> Result<InputFormat> {
    check_kind(path)?;
    if path.is_dir() {
        if ["matrix.mtx", "matrix.mtx.gz"]
            .iter()
            .any(|m| path.join(m).is_file())
        {
            return Ok(InputFormat::TenxMtx);
        }
        if crate::readers::soma::is_tiledb_group(path) {
            return Ok(InputFormat::Soma);
        }
        return Err(Error::invalid(
            path,
            format!("directory with neither matrix.mtx[.gz] nor a TileDB group: cannot tell its format ({SUPPORTED})"),
        ));
    }
    if !is_hdf5(path) {
        let name = path.to_string_lossy().to_lowercase();
        if name.ends_with(".h5ad") || name.ends_with(".h5") {
            // Let the HDF5 reader say precisely what is wrong with it.
            return Ok(if name.ends_with(".h5ad") {
                InputFormat::H5ad
            } else {
                InputFormat::TenxH5
            });
        }
        return Err(Error::invalid(
            path,
            format!("not an HDF5 file or a 10x MTX directory ({SUPPORTED})"),
        ));
    }
    let file = crate::readers::hdf5_util::open_file(path)?;
    if file.link_exists("X") {
        return Ok(InputFormat::H5ad);
    }
    if file.link_exists("matrix") || !crate::readers::cellranger_h5::v2_genomes(&file).is_empty() {
        return Ok(InputFormat::TenxH5);
    }
    if path.to_string_lossy().to_lowercase().ends_with(".h5ad") {
        // The AnnData reader names what is missing.
        return Ok(InputFormat::H5ad);
    }
    Err(Error::invalid(path, format!("HDF5 file with neither /X (AnnData) nor /matrix or a genome group (Cell Ranger) ({SUPPORTED})")))
}

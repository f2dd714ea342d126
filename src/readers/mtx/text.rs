//! The MatrixMarket text of `matrix.mtx[.gz]` (and the TSVs beside it): plain or gzip by
//! content, the banner and size line, and the stream of entries checked against them.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The value field of the MatrixMarket banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field_ {
    Integer,
    Real,
    Pattern,
}

/// A failed read of `path`: the store's own error when the file is streamed from one and the
/// store failed ([`crate::readers::streamed`]: exit 75 when a retry can succeed), else the
/// file's content is at fault (`what` says how).
fn read_error(
    path: &Path,
    e: std::io::Error,
    what: impl FnOnce(&std::io::Error) -> String,
) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Some(Ok(failure)) = e.into_inner().map(|inner| inner.downcast::<Error>()) {
            return *failure;
        }
        return Error::Internal(format!("{}: a stream's failure was lost", path.display()));
    }
    Error::invalid(path, what(&e))
}

/// Open `path` as plain text or gzip, by content; a file streamed from where it is
/// ([`crate::readers::streamed`]) is read from there.
pub(super) fn open_text(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    if let Some(source) = crate::readers::streamed::source(path) {
        let stream = source.open().map_err(|e| Error::io(path, e))?;
        let mut reader = BufReader::with_capacity(1 << 20, stream);
        // The first chunk is a whole ranged GET (64 KiB, or the object): enough to tell gzip.
        let gzip = reader
            .fill_buf()
            .map_err(|e| read_error(path, e, |e| format!("line 1: {e}")))?
            .starts_with(&[0x1f, 0x8b]);
        return Ok(match gzip {
            true => Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::bufread::MultiGzDecoder::new(reader),
            )),
            false => Box::new(reader),
        });
    }
    crate::readers::format::check_kind(path)?;
    let mut f = File::open(path).map_err(|e| Error::InputMissing {
        path: path.to_path_buf(),
        what: e.to_string(),
    })?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(f),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
    }
}

/// Banner and size line: (field, rows, columns, entries).
pub(super) fn read_header(path: &Path) -> Result<(Field_, u64, u64, u64)> {
    let mut reader = open_text(path)?;
    let mut banner = String::new();
    reader
        .read_line(&mut banner)
        .map_err(|e| read_error(path, e, |e| format!("line 1: {e} (truncated or not gzip?)")))?;
    let words: Vec<String> = banner.split_whitespace().map(str::to_lowercase).collect();
    if words.len() < 5 || words[0] != "%%matrixmarket" || words[1] != "matrix" {
        return Err(Error::invalid(
            path,
            "line 1: not a MatrixMarket file (expected '%%MatrixMarket matrix coordinate ...')",
        ));
    }
    if words[2] != "coordinate" {
        return Err(Error::invalid(
            path,
            format!(
                "line 1: '{}' format is not supported (only 'coordinate')",
                words[2]
            ),
        ));
    }
    let field = match words[3].as_str() {
        "integer" => Field_::Integer,
        "real" | "double" => Field_::Real,
        "pattern" => Field_::Pattern,
        other => {
            return Err(Error::invalid(
                path,
                format!(
                    "line 1: value field '{other}' is not supported (integer, real or pattern)"
                ),
            ))
        }
    };
    if words[4] != "general" {
        return Err(Error::invalid(
            path,
            format!(
                "line 1: symmetry '{}' is not supported (only 'general')",
                words[4]
            ),
        ));
    }
    let mut line = String::new();
    let mut line_no = 1;
    loop {
        line.clear();
        line_no += 1;
        let n = reader
            .read_line(&mut line)
            .map_err(|e| read_error(path, e, |e| format!("line {line_no}: {e}")))?;
        if n == 0 {
            return Err(Error::invalid(path, "no size line (truncated?)"));
        }
        if !line.starts_with('%') && !line.trim().is_empty() {
            break;
        }
    }
    let dims: Vec<u64> = line
        .split_whitespace()
        .map(|w| w.parse::<u64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            Error::invalid(
                path,
                format!(
                    "line {line_no}: size line '{}' is not three integers",
                    line.trim()
                ),
            )
        })?;
    if dims.len() != 3 {
        return Err(Error::invalid(
            path,
            format!(
                "line {line_no}: size line '{}' is not three integers",
                line.trim()
            ),
        ));
    }
    Ok((field, dims[0], dims[1], dims[2]))
}

/// A stream of (feature, cell, value) entries of an MTX file.
pub(super) struct Entries {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    line: String,
    line_no: u64,
    field: Field_,
    n_rows: u64,
    n_cols: u64,
    nnz: u64,
    seen: u64,
}

impl Entries {
    /// The matrix file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Stream every entry of the MTX file `path` as (feature, cell, value), 0-based, checked
    /// against its header.
    pub(super) fn open(path: &Path) -> Result<Entries> {
        let (field, n_rows, n_cols, nnz) = read_header(path)?;
        let mut reader = open_text(path)?;
        // Skip to the line after the size line.
        let mut line = String::new();
        let mut line_no = 0u64;
        loop {
            line.clear();
            line_no += 1;
            if reader
                .read_line(&mut line)
                .map_err(|e| read_error(path, e, |e| format!("line {line_no}: {e}")))?
                == 0
            {
                break;
            }
            if !line.starts_with('%') {
                break;
            }
        }
        Ok(Entries {
            path: path.to_path_buf(),
            reader,
            line: String::new(),
            line_no,
            field,
            n_rows,
            n_cols,
            nnz,
            seen: 0,
        })
    }

    /// The next entry, `None` at the end (after checking the header's entry count).
    pub(super) fn next_entry(&mut self) -> Result<Option<(u32, u64, f64)>> {
        loop {
            self.line.clear();
            self.line_no += 1;
            let line_no = self.line_no;
            let n = self.reader.read_line(&mut self.line).map_err(|e| {
                read_error(&self.path, e, |e| {
                    format!("line {line_no}: {e} (truncated?)")
                })
            })?;
            if n == 0 {
                if self.seen != self.nnz {
                    return Err(Error::invalid(
                        &self.path,
                        format!(
                            "header promises {} entries but the file ends after {} (truncated?)",
                            self.nnz, self.seen
                        ),
                    ));
                }
                return Ok(None);
            }
            let t = self.line.trim();
            if t.is_empty() || t.starts_with('%') {
                continue;
            }
            let mut words = t.split_ascii_whitespace();
            let bad = |what: &str| {
                Error::invalid(&self.path, format!("line {}: {what}: '{t}'", self.line_no))
            };
            let row: u64 = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| bad("expected a row index"))?;
            let col: u64 = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| bad("expected a column index"))?;
            let value = match self.field {
                Field_::Pattern => 1.0,
                Field_::Integer => words
                    .next()
                    .and_then(|w| w.parse::<i64>().ok())
                    .ok_or_else(|| bad("expected an integer value"))?
                    as f64,
                Field_::Real => words
                    .next()
                    .and_then(|w| w.parse::<f64>().ok())
                    .ok_or_else(|| bad("expected a numeric value"))?,
            };
            if row == 0 || row > self.n_rows || col == 0 || col > self.n_cols {
                return Err(bad(&format!(
                    "index outside 1..={} x 1..={}",
                    self.n_rows, self.n_cols
                )));
            }
            self.seen += 1;
            if self.seen > self.nnz {
                return Err(bad(&format!(
                    "more entries than the {} the header promises",
                    self.nnz
                )));
            }
            return Ok(Some(((row - 1) as u32, col - 1, value)));
        }
    }
}

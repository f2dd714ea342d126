//! What every fuzz target does with an input once it is on disk: open it as a reader and
//! drive every part of the reader interface, as `plan` and `shard` would. Errors are the
//! expected outcome of most inputs; only a panic, an abort or a sanitizer report is a finding.

use std::path::Path;

use slaf_convert::cells::{Axis, CellRange};
use slaf_convert::readers::{self, InputReader, ReadOptions, ValueScan};

/// Cap on the cells read per input, so one slow input cannot stall the fuzzer.
const MAX_CELLS: u64 = 100_000;

/// Open `path` with `options` and read everything a conversion would.
pub fn exercise(path: &Path, options: &ReadOptions) {
    let Ok(mut reader) = readers::open(path, options) else {
        return;
    };
    let _ = drive(reader.as_mut());
}

fn drive(reader: &mut dyn InputReader) -> slaf_convert::Result<()> {
    let scan = reader.scan(ValueScan::Full)?;
    let _ = reader.genes();
    let _ = reader.uns();
    let n_cells = (scan.row_offsets.len().saturating_sub(1) as u64).min(MAX_CELLS);
    for batch in reader.batches(CellRange::new(0, n_cells), 7)? {
        batch?;
    }
    let (obsp, varp) = {
        let parts = reader.parts();
        (!parts.obsp.is_empty(), !parts.varp.is_empty())
    };
    for (axis, present) in [(Axis::Cells, obsp), (Axis::Genes, varp)] {
        if present {
            let rows = CellRange::new(0, n_cells);
            reader.prepare_pairwise(axis, rows, 7)?;
            reader.read_pairwise(axis, rows)?;
        }
    }
    Ok(())
}

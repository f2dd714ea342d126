//! The batches a Lance fragment writer is handed: re-cut at Lance's own break points into
//! pieces that own exactly their rows, so that Lance sizes pages by the data it buffers.
//!
//! Why: Lance's fragment writer slices every batch at each multiple of 128Ki rows
//! (`write_current_impl`'s `break_stream`), and a column's encoder cuts a page once the
//! arrays it buffered *report* its page budget (`get_array_memory_size`, 8 MiB a column by
//! default). A slice reports its whole parent allocation, so Lance's slices of our ~1M-row
//! batches cut a page every 250k rows: 25 pages a fragment column where upstream's output
//! (one batch per fragment) has one, and the dataloaders' full pass took 1.28x upstream's
//! time. Pieces that are their own allocations, cut where Lance would cut, pass through
//! Lance unsliced and report what they hold.

use std::sync::Arc;

use arrow::array::{make_array, ArrayRef, MutableArrayData, RecordBatch};
use futures::{Stream, StreamExt};

/// Lance's break point: rows per slice its fragment writer hands the column encoders.
pub const LANCE_BREAK_ROWS: usize = 128 * 1024;

/// `batches` re-cut into owned pieces at every multiple of [`LANCE_BREAK_ROWS`] rows of the
/// stream (counted from its first row, as Lance counts them).
pub fn owned_pieces<E: Send + 'static>(
    batches: impl Stream<Item = Result<RecordBatch, E>> + Send + 'static,
) -> impl Stream<Item = Result<RecordBatch, E>> + Send + 'static {
    batches
        .scan(0usize, |rows_seen, batch| {
            let pieces: Vec<Result<RecordBatch, E>> = match batch {
                Ok(batch) => cut(&batch, rows_seen).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            std::future::ready(Some(futures::stream::iter(pieces)))
        })
        .flatten()
}

/// `batch` cut at the break points after `rows_seen` rows, each piece copied into buffers of
/// its own; advances `rows_seen`.
fn cut(batch: &RecordBatch, rows_seen: &mut usize) -> Vec<RecordBatch> {
    let mut pieces = Vec::new();
    let mut offset = 0;
    while offset < batch.num_rows() {
        let room = LANCE_BREAK_ROWS - *rows_seen % LANCE_BREAK_ROWS;
        let len = room.min(batch.num_rows() - offset);
        pieces.push(owned_slice(batch, offset, len));
        offset += len;
        *rows_seen += len;
    }
    pieces
}

/// Rows `offset..offset + len` of `batch` in newly allocated buffers.
fn owned_slice(batch: &RecordBatch, offset: usize, len: usize) -> RecordBatch {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|column| {
            let data = column.to_data();
            let mut copy = MutableArrayData::new(vec![&data], false, len);
            copy.extend(0, offset, offset + len);
            make_array(copy.freeze())
        })
        .collect();
    // The same schema and columns of the same types and lengths: cannot fail.
    RecordBatch::try_new(Arc::clone(batch.schema_ref()), columns)
        .expect("a row range of a valid batch is a valid batch")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, StringArray, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(start: u32, n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::UInt32, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ids = UInt32Array::from_iter((0..n as u32).map(|i| (i % 7 != 3).then_some(start + i)));
        let names = StringArray::from_iter_values((0..n as u32).map(|i| format!("c{}", start + i)));
        RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(names)]).unwrap()
    }

    #[test]
    fn pieces_fall_on_lance_break_points_and_keep_every_row() {
        let sizes = [100_000, 200_000, 31_072, 5];
        let input: Vec<Result<RecordBatch, ()>> = sizes
            .iter()
            .scan(0u32, |start, &n| {
                let b = batch(*start, n);
                *start += n as u32;
                Some(Ok(b))
            })
            .collect();
        let expected = arrow::compute::concat_batches(
            &input[0].as_ref().unwrap().schema(),
            input.iter().map(|b| b.as_ref().unwrap()),
        )
        .unwrap();
        let pieces: Vec<RecordBatch> = futures::executor::block_on(
            owned_pieces(futures::stream::iter(input)).collect::<Vec<_>>(),
        )
        .into_iter()
        .map(Result::unwrap)
        .collect();
        let lens: Vec<usize> = pieces.iter().map(RecordBatch::num_rows).collect();
        // 100,000 | 31,072 + 131,072 + 37,856 | 31,072 (ends a break) | 5
        assert_eq!(lens, [100_000, 31_072, 131_072, 37_856, 31_072, 5]);
        let joined = arrow::compute::concat_batches(&expected.schema(), &pieces).unwrap();
        assert_eq!(joined, expected);
        // Each piece owns exactly its rows: what it reports is what it holds.
        let ids = pieces[2].column(0);
        assert_eq!(ids.offset(), 0);
        assert!(ids.get_array_memory_size() < 131_072 * 4 + 131_072 / 8 + 1024);
    }

    #[test]
    fn errors_pass_through() {
        let input = vec![Ok(batch(0, 3)), Err("broken")];
        let out = futures::executor::block_on(
            owned_pieces(futures::stream::iter(input)).collect::<Vec<_>>(),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], Err("broken"));
    }
}

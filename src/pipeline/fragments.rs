//! The Lance writer tasks of the fragments a cell range is being written into: an expression
//! (and layers) fragment per `--chunk-size` cells fed batch by batch, then closing while Lance
//! finishes its files, and one cells fragment for the whole range. Every task is either
//! joined (its fragment recorded) or aborted and awaited: none outlives the range.

use arrow::array::RecordBatch;
use lance::table::format::Fragment;

use crate::cells::CellRange;
use crate::error::{Error, Result};
use crate::slaf::value_stats::ValueStats;
use crate::slaf::writer::{BatchSender, FragmentTask, TableWriter};

use super::{CellTables, Progress, RangeOutput};

/// The expression and layers fragments of one run of cells (`--chunk-size` of them) being
/// written: each a Lance writer task fed batch by batch, started at its first non-empty batch.
pub(super) struct OpenFragment {
    /// The fragment's cells.
    pub(super) cells: CellRange,
    /// Statistics of its expression values.
    pub(super) stats: ValueStats,
    expression_table: StreamingFragment,
    layers_table: Option<StreamingFragment>,
}

impl OpenFragment {
    pub(super) fn new(tables: &CellTables, cells: CellRange) -> Self {
        let open = |w: &TableWriter| StreamingFragment::new(w, tables.discard);
        OpenFragment {
            cells,
            stats: ValueStats::default(),
            expression_table: open(&tables.expression),
            layers_table: tables.layers.as_ref().map(open),
        }
    }

    pub(super) async fn send(
        &mut self,
        expression: RecordBatch,
        layers: Option<RecordBatch>,
    ) -> Result<()> {
        self.expression_table.send(expression).await?;
        if let (Some(l), Some(batch)) = (&mut self.layers_table, layers) {
            l.send(batch).await?;
        }
        Ok(())
    }

    /// Stop its writer tasks and wait until they have stopped.
    pub(super) async fn abort(self) {
        for table in [Some(self.expression_table), self.layers_table]
            .into_iter()
            .flatten()
        {
            abort_writer(table.close()).await;
        }
    }

    /// End the fragment's streams: Lance finishes its files in the background.
    pub(super) fn close(self, expression_rows: u64) -> ClosingFragment {
        ClosingFragment {
            cells: self.cells,
            stats: self.stats,
            expression_rows,
            expression: self.expression_table.close(),
            layers: self.layers_table.and_then(StreamingFragment::close),
        }
    }
}

/// A fragment whose batches are all sent; its writer tasks are finishing the files.
pub(super) struct ClosingFragment {
    cells: CellRange,
    stats: ValueStats,
    /// Expression rows written up to the fragment's end (for progress).
    expression_rows: u64,
    expression: Option<FragmentTask>,
    layers: Option<FragmentTask>,
}

impl ClosingFragment {
    /// Wait for the files and record the fragments in `out`.
    pub(super) async fn join(
        self,
        out: &mut RangeOutput,
        progress: &Progress,
        n_cells: u64,
    ) -> Result<()> {
        // Both are awaited even when one fails: no writer outlives this call.
        let (e, l) = tokio::join!(join_writer(self.expression), join_writer(self.layers));
        let (e, l) = (e?, l?);
        out.expression.extend(e);
        if self.stats.count > 0 {
            // (An empty fragment's infinite min/max would not survive JSON.)
            out.fragment_stats.push(self.stats);
        }
        out.layers.extend(l);
        progress.fragment_written(self.cells, n_cells, self.expression_rows);
        Ok(())
    }

    /// Stop its writer tasks and wait until they have stopped.
    pub(super) async fn abort(self) {
        for task in [self.expression, self.layers] {
            abort_writer(task).await;
        }
    }
}

async fn abort_writer(task: Option<FragmentTask>) {
    if let Some(task) = task {
        task.abort();
        let _ = task.await;
    }
}

async fn join_writer(task: Option<FragmentTask>) -> Result<Option<Fragment>> {
    match task {
        Some(task) => task
            .await
            .map_err(|e| Error::Internal(format!("Lance writer task: {e}")))?,
        None => Ok(None),
    }
}

/// One table's fragment being written from a stream of batches.
pub(super) struct StreamingFragment {
    writer: Option<TableWriter>,
    sender: Option<BatchSender>,
    task: Option<FragmentTask>,
}

impl StreamingFragment {
    /// A fragment of `writer`'s table, started at its first non-empty batch; none at all when
    /// `discard`.
    pub(super) fn new(writer: &TableWriter, discard: bool) -> Self {
        StreamingFragment {
            writer: (!discard).then(|| writer.clone()),
            sender: None,
            task: None,
        }
    }

    pub(super) async fn send(&mut self, batch: RecordBatch) -> Result<()> {
        let Some(writer) = &self.writer else {
            return Ok(()); // discarding
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.sender.is_none() {
            let (sender, task) = writer.start_fragment();
            self.sender = Some(sender);
            self.task = Some(task);
        }
        let sent = self
            .sender
            .as_ref()
            .expect("started above")
            .send(Ok(batch))
            .await;
        if sent.is_err() {
            // The writer stopped early: its own error says why.
            return Err(self.finish_task().await.err().unwrap_or_else(|| {
                Error::Internal("Lance writer stopped before its last batch".into())
            }));
        }
        Ok(())
    }

    /// Close the stream (the writer finishes its file) and hand over the writer task.
    fn close(mut self) -> Option<FragmentTask> {
        self.sender = None;
        self.task.take()
    }

    /// End the stream and wait for the fragment (`None`: nothing was sent).
    pub(super) async fn finish(mut self) -> Result<Option<Fragment>> {
        self.finish_task().await
    }

    /// Stop the writer task and wait until it has stopped.
    pub(super) async fn abort(self) {
        abort_writer(self.close()).await;
    }

    async fn finish_task(&mut self) -> Result<Option<Fragment>> {
        // Closing the channel ends the stream: the writer finishes the file.
        self.sender = None;
        join_writer(self.task.take()).await
    }
}

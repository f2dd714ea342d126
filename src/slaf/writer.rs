//! The SLAF writer over Lance: write fragments now, commit them all later.
//!
//! Knows nothing of input formats. A [`TableWriter`] writes uncommitted Lance fragments, each
//! from one record batch ([`TableWriter::write_fragment`]) or from the stream of batches sent
//! to it ([`TableWriter::start_fragment`]: the pipeline sends a fragment's cells batch by
//! batch, so a fragment never splits a cell), and [`TableWriter::commit`] makes all of them
//! visible in one transaction, in the order given: that order is the cell order the upstream
//! reader relies on. Until the
//! commit nothing is visible; a killed run leaves only unreferenced data files.
//! Write profile: Lance storage 2.2, v2 manifest paths, nullable fields
//! (docs/slaf-format.md Appendix B); Lance gets its batches as owned pieces cut where it cuts
//! them ([`crate::slaf::pieces`]), so its pages hold the 8 MiB of column data Lance means
//! (2-3 pages a fragment column), not a slice's worth (25); [`TableWriter::with_pages`] and
//! [`TableWriter::with_page_buffer`] set a larger buffer (one page a fragment column).

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use lance::dataset::fragment::write::FragmentCreateBuilder;
use lance::dataset::transaction::{Operation, Transaction};
use lance::dataset::{CommitBuilder, WriteMode, WriteParams};
use lance::datatypes::Schema as LanceSchema;
use lance::deps::datafusion::error::DataFusionError;
use lance::deps::datafusion::execution::SendableRecordBatchStream;
use lance::deps::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use lance::table::format::Fragment;
use lance_file::version::LanceFileVersion;
use lance_file::writer::FileWriterOptions;

use crate::error::{Error, Result};
use crate::slaf::pieces::owned_pieces;
use crate::store::lance::session_for;

/// Lance storage version of every table (format_version "0.5").
pub const STORAGE_VERSION: LanceFileVersion = LanceFileVersion::V2_2;

/// The write parameters shared by every table.
pub fn write_params() -> WriteParams {
    WriteParams {
        mode: WriteMode::Create,
        data_storage_version: Some(STORAGE_VERSION),
        enable_v2_manifest_paths: true,
        enable_stable_row_ids: false,
        // A fragment holds whole cells (the pipeline cuts them); never let Lance split it.
        max_rows_per_file: usize::MAX,
        file_writer_options: Some(FileWriterOptions {
            // What Lance buffers is ours alone: every batch it gets is an owned piece
            // (`owned_pieces`), so it need not copy what it buffers.
            keep_original_array: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Sends the record batches of one fragment to its writer task; dropping it ends the fragment.
pub type BatchSender = tokio::sync::mpsc::Sender<std::result::Result<RecordBatch, DataFusionError>>;

/// A fragment's writer task: the fragment it wrote.
pub type FragmentTask = tokio::task::JoinHandle<Result<Option<Fragment>>>;

/// Batches in flight to one fragment's writer task.
const FRAGMENT_QUEUE: usize = 1;

/// Writes the fragments of one Lance table and commits them.
#[derive(Clone)]
pub struct TableWriter {
    dir: PathBuf,
    uri: String,
    arrow_schema: SchemaRef,
    schema: LanceSchema,
    params: WriteParams,
}

impl TableWriter {
    /// A writer for the table directory `dir` (e.g. `out.slaf/expression.lance`), or the
    /// table at an object store URI (`s3://bucket/out.slaf/expression.lance`), which Lance
    /// writes and commits in the store itself.
    pub fn new(dir: &Path, schema: SchemaRef) -> Result<Self> {
        let lance_schema =
            LanceSchema::try_from(schema.as_ref()).map_err(|e| Error::lance(dir, e))?;
        let uri = dir.to_string_lossy().into_owned();
        let params = WriteParams {
            // A table at an object store URI is reached through our clients.
            session: session_for(&uri),
            ..write_params()
        };
        Ok(TableWriter {
            dir: dir.to_path_buf(),
            uri,
            arrow_schema: schema,
            schema: lance_schema,
            params,
        })
    }

    /// Let Lance buffer at most `bytes` of this table's column data in all before it cuts
    /// pages (its default is 8 MiB a column, however many columns there are).
    pub fn with_page_buffer(mut self, bytes: u64) -> Self {
        let options = self
            .params
            .file_writer_options
            .get_or_insert_with(Default::default);
        options.data_cache_bytes = Some(bytes);
        self
    }

    /// [`Self::with_page_buffer`] where `pages` asks for one (`None`: Lance's default).
    pub fn with_pages(self, pages: crate::slaf::schema::Pages) -> Self {
        match pages.page_buffer(self.arrow_schema.fields().len()) {
            Some(bytes) => self.with_page_buffer(bytes),
            None => self,
        }
    }

    /// The table's directory (or URI).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The table's Arrow schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.arrow_schema
    }

    /// Write `batch` as one uncommitted fragment; `None` for an empty batch (Lance has no
    /// empty fragments, and an empty batch needs none).
    pub async fn write_fragment(&self, batch: RecordBatch) -> Result<Option<Fragment>> {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        if batch.schema() != self.arrow_schema {
            return Err(Error::Internal(format!(
                "{}: batch schema {:?} differs from table schema {:?}",
                self.dir.display(),
                batch.schema(),
                self.arrow_schema
            )));
        }
        let source = Box::pin(RecordBatchStreamAdapter::new(
            self.arrow_schema.clone(),
            owned_pieces(futures::stream::iter([Ok(batch)])),
        ));
        self.create_fragment(source).await.map(Some)
    }

    /// Start writing one uncommitted fragment from the batches sent to the returned sender (all
    /// with the table's schema, at least one non-empty); the task ends with the fragment
    /// once the sender is dropped.
    pub fn start_fragment(&self) -> (BatchSender, FragmentTask) {
        let (sender, receiver) = tokio::sync::mpsc::channel(FRAGMENT_QUEUE);
        let batches = futures::stream::unfold(receiver, |mut r| async move {
            r.recv().await.map(|batch| (batch, r))
        });
        let stream: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            self.arrow_schema.clone(),
            owned_pieces(batches),
        ));
        let writer = self.clone();
        let task = tokio::spawn(async move { writer.create_fragment(stream).await.map(Some) });
        (sender, task)
    }

    /// Write everything `source` yields as one uncommitted fragment.
    async fn create_fragment(&self, source: SendableRecordBatchStream) -> Result<Fragment> {
        FragmentCreateBuilder::new(&self.uri)
            .schema(&self.schema)
            .write_params(&self.params)
            .write(source, None)
            .await
            .map_err(|e| Error::lance(&self.dir, e))
    }

    /// Make `fragments` the table's contents in one transaction, in the given order.
    pub async fn commit(&self, fragments: Vec<Fragment>) -> Result<()> {
        let operation = Operation::Overwrite {
            fragments,
            schema: self.schema.clone(),
            config_upsert_values: None,
            initial_bases: None,
        };
        let transaction = Transaction::new(0, operation, None);
        let builder = match &self.params.session {
            Some(session) => CommitBuilder::new(self.uri.as_str()).with_session(session.clone()),
            None => CommitBuilder::new(self.uri.as_str()),
        };
        builder
            .with_storage_format(STORAGE_VERSION)
            .enable_v2_manifest_paths(true)
            .execute(transaction)
            .await
            .map_err(|e| Error::lance(&self.dir, e))?;
        Ok(())
    }

    /// Add `fragments` after the table's own, in the given order, in one Append transaction
    /// read at the table's current version (nothing to do for none). Lance would rebase it
    /// onto a concurrent Append rather than refuse it: the caller pins the version
    /// (`commit::append` checks every table under the dataset's lock, in a private copy).
    pub async fn append(&self, fragments: Vec<Fragment>) -> Result<()> {
        if fragments.is_empty() {
            return Ok(());
        }
        let current = crate::store::lance::open_table(&self.dir).await?;
        let transaction = Transaction::new(
            current.version().version,
            Operation::Append { fragments },
            None,
        );
        CommitBuilder::new(std::sync::Arc::new(current))
            .execute(transaction)
            .await
            .map_err(|e| Error::lance(&self.dir, e))?;
        Ok(())
    }

    /// Make `batch` the whole table in one fragment, as a new Overwrite version (small tables:
    /// genes), so writing it again after a killed commit replaces it.
    pub async fn replace_all(&self, batch: RecordBatch) -> Result<()> {
        let fragments = self.write_fragment(batch).await?.into_iter().collect();
        self.commit(fragments).await
    }
}

//! `compact`: fewer, larger fragments in a finished dataset's tables, each new fragment made
//! of whole adjacent fragments, so no cell is split across fragments and row order is kept.
//!
//! Lance's own planner sizes fragments by rows alone and cuts a group into equal parts, which
//! would split cells; [`WholeFragments`] instead groups adjacent fragments up to the target
//! row count and asks for one output per group. Groups never mix fragments an index covers
//! with ones it does not, and Lance remaps the indices of the rewritten fragments in the same
//! commit, so indices stay valid. The completion marker is rewritten with the new table
//! versions last; the versions before stay readable (time travel) unless
//! `--remove-old-versions`. Killed midway, a table is either compacted or as it was; a re-run
//! compacts what is left and rewrites the marker.

use std::path::Path;

use lance::dataset::optimize::{
    compact_files_with_planner, CompactionMode, CompactionOptions, CompactionPlan,
    CompactionPlanner, TaskData,
};
use lance::index::DatasetIndexExt;
use lance::table::format::Fragment;
use lance::Dataset;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::json_file::write_json;

use crate::workflow::commit::state::{clean_table, CommitLock, ALL_TABLES};
use crate::workflow::commit::{read_marker, MARKER_FILE};

/// Default rows per compacted fragment: large reads, and fragments a worker can hold.
pub const DEFAULT_TARGET_ROWS: u64 = 10_000_000;

/// What `compact` did to one table.
#[derive(Debug, Serialize)]
pub struct TableCompaction {
    /// The table's directory name.
    pub table: String,
    /// Fragments before.
    pub fragments_before: usize,
    /// Fragments after.
    pub fragments_after: usize,
    /// The table's Lance version after.
    pub version: u64,
}

/// Groups adjacent whole fragments of up to `target_rows` rows into one task each.
struct WholeFragments {
    target_rows: u64,
}

impl WholeFragments {
    /// The groups of `fragments` in order; `covered` says which indices cover a fragment.
    fn groups(
        &self,
        fragments: &[Fragment],
        covered: impl Fn(&Fragment) -> Vec<bool>,
    ) -> Vec<Vec<Fragment>> {
        let mut groups: Vec<Vec<Fragment>> = Vec::new();
        let mut current: Vec<Fragment> = Vec::new();
        let (mut rows, mut key) = (0u64, None);
        for f in fragments {
            let n = f.num_rows().unwrap_or(usize::MAX) as u64;
            let k = covered(f);
            // A fragment with deleted rows is left alone (we never delete; someone did).
            let apart = f.deletion_file.is_some();
            if !current.is_empty()
                && (rows + n > self.target_rows || key.as_ref() != Some(&k) || apart)
            {
                groups.push(std::mem::take(&mut current));
                rows = 0;
            }
            if apart {
                key = None;
                continue;
            }
            current.push(f.clone());
            rows += n;
            key = Some(k);
        }
        groups.push(current);
        groups.retain(|g| g.len() > 1);
        groups
    }
}

#[async_trait::async_trait]
impl CompactionPlanner for WholeFragments {
    async fn plan(&self, dataset: &Dataset) -> lance::Result<CompactionPlan> {
        let indices = dataset.load_indices().await?;
        let covered = |f: &Fragment| -> Vec<bool> {
            (indices.iter())
                .map(|i| {
                    i.fragment_bitmap
                        .as_ref()
                        .is_some_and(|b| b.contains(f.id as u32))
                })
                .collect()
        };
        let tasks = (self.groups(dataset.fragments(), covered).into_iter())
            .map(|fragments| TaskData { fragments })
            .collect();
        Ok(CompactionPlan {
            tasks,
            read_version: dataset.version().version,
            options: CompactionOptions {
                // One output fragment per group: the groups are already the target size.
                target_rows_per_fragment: usize::MAX,
                compaction_mode: Some(CompactionMode::Reencode),
                ..Default::default()
            },
        })
    }
}

/// Compact the tables of the complete dataset at `dir` to fragments of up to `target_rows`
/// rows (whole fragments grouped); with `remove_old_versions`, the versions before go.
pub async fn compact(
    dir: &Path,
    target_rows: u64,
    remove_old_versions: bool,
) -> Result<Vec<TableCompaction>> {
    if target_rows == 0 {
        return Err(Error::Usage("--target-rows must be at least 1".into()));
    }
    // One commit or compaction of a dataset at a time.
    let _lock = CommitLock::acquire(dir).await?;
    let Some(mut marker) = read_marker(dir)? else {
        return Err(Error::invalid(
            dir,
            "not marked complete (no _SLAF_COMPLETE.json): only a finished dataset is compacted",
        ));
    };
    let planner = WholeFragments { target_rows };
    let mut done = Vec::new();
    for table in ALL_TABLES {
        let path = dir.join(table);
        if !path.join("_versions").exists() {
            continue;
        }
        let mut ds = crate::store::lance::open_table(&path).await?;
        let before = ds.fragments().len();
        compact_files_with_planner(&mut ds, None, &planner)
            .await
            .map_err(|e| Error::lance(&path, e))?;
        let ds = crate::store::lance::open_table(&path).await?;
        let version = ds.version().version;
        tracing::info!(
            event = "compact.table",
            table,
            fragments_before = before,
            fragments_after = ds.fragments().len(),
            version,
            "{table}: {before} -> {} fragments",
            ds.fragments().len()
        );
        marker.tables.insert(table.to_string(), version);
        done.push(TableCompaction {
            table: table.to_string(),
            fragments_before: before,
            fragments_after: ds.fragments().len(),
            version,
        });
    }
    // The marker describes the tables beside it: their new versions.
    write_json(dir, MARKER_FILE, &marker)?;
    if remove_old_versions {
        for t in &done {
            clean_table(&dir.join(&t.table), &t.table, false).await?;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(id: u64, rows: usize) -> Fragment {
        let mut f = Fragment::new(id);
        f.physical_rows = Some(rows);
        f
    }

    #[test]
    fn test_groups_are_adjacent_whole_fragments_up_to_the_target() {
        let fragments: Vec<Fragment> = [40, 30, 50, 10, 10, 100, 5]
            .iter()
            .enumerate()
            .map(|(i, &n)| fragment(i as u64, n))
            .collect();
        let planner = WholeFragments { target_rows: 80 };
        let ids = |groups: Vec<Vec<Fragment>>| -> Vec<Vec<u64>> {
            groups
                .iter()
                .map(|g| g.iter().map(|f| f.id).collect())
                .collect()
        };
        // 40+30 (then 50 would pass 80), 50+10+10, 100 alone (over the target: kept whole), 5 alone.
        assert_eq!(
            ids(planner.groups(&fragments, |_| vec![])),
            vec![vec![0, 1], vec![2, 3, 4]]
        );
        // An index covering fragments 0-2 only: no group crosses its edge.
        let covered = |f: &Fragment| vec![f.id <= 2];
        assert_eq!(
            ids(WholeFragments { target_rows: 1000 }.groups(&fragments, covered)),
            vec![vec![0, 1, 2], vec![3, 4, 5, 6]]
        );
    }
}

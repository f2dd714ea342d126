//! Read queries on a sparse array: the cells of some columns within int64 ranges of its
//! dimensions, handed out a buffer's worth at a time (TileDB's incomplete reads), in no
//! particular order (callers sort: TileDB's row-major order on sparse arrays is served by
//! its legacy reader, which buffers far more).

use std::cell::Cell;
use std::ffi::c_void;
use std::path::Path;

use super::array::{Array, Datatype};
use super::values::{split_strings, Values};
use crate::error::{Error, Result};

const TILEDB_READ: i32 = 0;
const TILEDB_UNORDERED: i32 = 3;
const TILEDB_FAILED: i32 = 0;
const TILEDB_COMPLETED: i32 = 1;
const TILEDB_INCOMPLETE: i32 = 3;
/// `tiledb_query_status_details_reason_t`.
const REASON_NONE: i32 = 0;
const REASON_USER_BUFFER_SIZE: i32 = 1;
/// Submits in a row that may return nothing before the read is given up.
const MAX_STALLS: u32 = 64;
/// TileDB's read memory for a read of many fragments: first raised to this, then 4 times
/// more up to the most.
const FIRST_RAISED_BUDGET: u64 = 512 << 20;
const MAX_RAISED_BUDGET: u64 = 8 << 30;
/// A buffer is never grown beyond this (a single string longer is refused).
const MAX_BUFFER: usize = 1 << 30;

/// One column's results of one submit.
#[derive(Debug, Default)]
pub struct ColumnData {
    /// Values, or the bytes of the strings.
    pub data: Vec<u8>,
    /// Byte offsets of each string (variable-length columns).
    pub offsets: Vec<u64>,
    /// 1 where the cell is valid (nullable columns).
    pub validity: Vec<u8>,
    datatype: Option<Datatype>,
    var: bool,
    nullable: bool,
}

impl ColumnData {
    /// Number of cells.
    pub fn cells(&self) -> usize {
        if self.var {
            self.offsets.len()
        } else {
            self.data.len() / self.datatype.map_or(8, Datatype::size)
        }
    }

    /// The values of a fixed-size column.
    pub fn values(&self, input: &Path, object: &str) -> Result<Values> {
        let datatype = self.datatype.unwrap_or(Datatype::Int64);
        Values::decode(datatype, &self.data).ok_or_else(|| {
            Error::invalid(
                input,
                format!("{object}: cells of type {datatype:?} cannot be read"),
            )
        })
    }

    /// The strings of a variable-length column.
    pub fn strings(&self, input: &Path, object: &str) -> Result<Vec<String>> {
        split_strings(&self.data, &self.offsets, input, object)
    }

    /// Per cell, whether it is valid (`None`: not nullable).
    pub fn valid(&self) -> Option<Vec<bool>> {
        self.nullable
            .then(|| self.validity.iter().map(|&v| v != 0).collect())
    }
}

/// What a read asks for.
pub struct Read<'a> {
    /// Column names (dimensions or attributes), in the order results are handed out.
    pub columns: &'a [&'a str],
    /// Inclusive int64 ranges per dimension index; dimensions not listed are read whole.
    pub ranges: &'a [(u32, i64, i64)],
    /// Cells a buffer holds at first.
    pub cells: usize,
}

/// A column's buffers as the query knows them: name, capacities, and the sizes it writes.
struct Slot {
    name: std::ffi::CString,
    data_cap: usize,
    cells_cap: usize,
    /// Cells: TileDB keeps pointers to them and writes through those while we set and
    /// read them between submits.
    sizes: Box<[Cell<u64>; 3]>,
}

/// Run `read` on `array`, handing each submit's results to `sink`, columns in `read`'s order.
/// The buffers are allocated once and handed out in place (cut to what the submit wrote).
pub fn read(
    array: &Array,
    read: &Read,
    mut sink: impl FnMut(&[ColumnData]) -> Result<()>,
) -> Result<()> {
    let mut budget = array.read_budget.get();
    loop {
        let mut delivered = false;
        let outcome = {
            let mut counted = |columns: &[ColumnData]| {
                delivered = true;
                sink(columns)
            };
            read_with(array, read, budget, &mut counted)
        };
        match outcome {
            // TileDB's reader of arrays without duplicates holds a tile of every fragment at
            // once: an array written in many parts needs more than the usual budget. Raised
            // for this read only, before it has handed anything out.
            Err(Error::InvalidInput { what, .. })
                if !delivered
                    && what.contains("Cannot load enough tiles")
                    && budget.is_none_or(|b| b < MAX_RAISED_BUDGET) =>
            {
                let raised = budget.map_or(FIRST_RAISED_BUDGET, |b| b * 4);
                tracing::info!(event = "input.budget_raised", object = %array.object, bytes = raised, "{}: many fragments: TileDB's read memory raised to {} MiB for this read", array.object, raised >> 20);
                budget = Some(raised);
                // The array's later reads (the next batches) start there.
                array.read_budget.set(budget);
            }
            other => return other,
        }
    }
}

/// [`read`] with TileDB's read memory set to `budget` bytes (`None`: the context's).
fn read_with(
    array: &Array,
    read: &Read,
    budget: Option<u64>,
    sink: &mut dyn FnMut(&[ColumnData]) -> Result<()>,
) -> Result<()> {
    let (ctx, api, object) = (&*array.ctx, array.ctx.api, array.object.as_str());
    let mut slots = Vec::with_capacity(read.columns.len());
    let mut columns = Vec::with_capacity(read.columns.len());
    for &name in read.columns {
        let (datatype, var, nullable) = match array.attr(name) {
            Some(a) => (a.datatype, a.var, a.nullable),
            None if array.dims.iter().any(|d| d.name == name) => (Datatype::Int64, false, false),
            None => {
                return Err(Error::invalid(
                    &ctx.input,
                    format!("{object}: no column '{name}'"),
                ))
            }
        };
        let cells = read.cells.max(1);
        let data_cap = if var {
            cells * 16
        } else {
            cells * datatype.size()
        };
        slots.push(Slot {
            name: ctx.c_string(name)?,
            data_cap,
            cells_cap: cells,
            sizes: Box::new([Cell::new(0), Cell::new(0), Cell::new(0)]),
        });
        columns.push(ColumnData {
            datatype: Some(datatype),
            var,
            nullable,
            ..Default::default()
        });
    }
    let mut query = std::ptr::null_mut();
    // SAFETY: the query and subarray are created, used and freed here; every buffer and size
    // the query holds a pointer to lives in `columns` and `slots` (boxed sizes; vectors cut
    // and restored in length between submits, never reallocated, except by `attach`, which
    // gives the query the new pointers) until the query is freed.
    unsafe {
        ctx.check(
            (api.query_alloc)(ctx.raw(), array.handle, TILEDB_READ, &mut query),
            object,
            "starting a read",
        )?;
        let result = (|| {
            if let Some(bytes) = budget {
                ctx.set_query_budget(query, bytes, object)?;
            }
            ctx.check(
                (api.query_set_layout)(ctx.raw(), query, TILEDB_UNORDERED),
                object,
                "starting a read",
            )?;
            if !read.ranges.is_empty() {
                let mut sub = std::ptr::null_mut();
                ctx.check(
                    (api.subarray_alloc)(ctx.raw(), array.handle, &mut sub),
                    object,
                    "starting a read",
                )?;
                let mut rc = 0;
                for &(dim, lo, hi) in read.ranges {
                    rc |= (api.subarray_add_range)(
                        ctx.raw(),
                        sub,
                        dim,
                        &lo as *const i64 as *const c_void,
                        &hi as *const i64 as *const c_void,
                        std::ptr::null(),
                    );
                }
                if rc == 0 {
                    rc = (api.query_set_subarray_t)(ctx.raw(), query, sub);
                }
                (api.subarray_free)(&mut sub);
                ctx.check(rc, object, "selecting cells")?;
            }
            for (slot, column) in slots.iter_mut().zip(&mut columns) {
                attach(array, query, slot, column)?;
            }
            let mut stalled = 0;
            loop {
                for (slot, column) in slots.iter_mut().zip(&mut columns) {
                    // Back to full length: every byte was initialised at allocation.
                    column.data.set_len(slot.data_cap);
                    column
                        .offsets
                        .set_len(if column.var { slot.cells_cap } else { 0 });
                    column
                        .validity
                        .set_len(if column.nullable { slot.cells_cap } else { 0 });
                    slot.sizes[0].set(column.data.len() as u64);
                    slot.sizes[1].set((column.offsets.len() * 8) as u64);
                    slot.sizes[2].set(column.validity.len() as u64);
                }
                ctx.check((api.query_submit)(ctx.raw(), query), object, "reading")?;
                let mut status = TILEDB_FAILED;
                ctx.check(
                    (api.query_get_status)(ctx.raw(), query, &mut status),
                    object,
                    "reading",
                )?;
                for (slot, column) in slots.iter().zip(&mut columns) {
                    column.data.truncate(slot.sizes[0].get() as usize);
                    column.offsets.truncate(slot.sizes[1].get() as usize / 8);
                    column.validity.truncate(slot.sizes[2].get() as usize);
                }
                let n = columns.first().map_or(0, ColumnData::cells);
                let aligned = columns
                    .iter()
                    .all(|c| c.cells() == n && (!c.nullable || c.validity.len() == n));
                if !aligned {
                    return Err(Error::invalid(
                        &ctx.input,
                        format!("{object}: columns of one read came back with different numbers of cells"),
                    ));
                }
                match status {
                    TILEDB_COMPLETED | TILEDB_INCOMPLETE if n > 0 => {
                        stalled = 0;
                        sink(&columns)?
                    }
                    TILEDB_COMPLETED => {}
                    TILEDB_INCOMPLETE => {
                        let mut reason = REASON_NONE;
                        (api.query_get_status_details)(ctx.raw(), query, &mut reason);
                        stalled += 1;
                        if stalled > MAX_STALLS {
                            return Err(Error::invalid(
                                &ctx.input,
                                format!("{object}: the read makes no progress (TileDB returns nothing, reason {reason})"),
                            ));
                        }
                        if reason == REASON_USER_BUFFER_SIZE {
                            // Nothing fitted: a string is longer than its column's buffer
                            // (fixed-size columns always hold a cell).
                            let any_var = columns.iter().any(|c| c.var);
                            for (slot, column) in slots.iter_mut().zip(&columns) {
                                if column.var || !any_var {
                                    slot.data_cap *= 2;
                                }
                            }
                            // Every string column grows (TileDB does not say which was
                            // short): the limit is on all of them together.
                            let total: usize = slots.iter().map(|s| s.data_cap).sum();
                            if total > MAX_BUFFER {
                                return Err(Error::invalid(
                                    &ctx.input,
                                    format!("{object}: a cell of over {} MiB", MAX_BUFFER >> 20),
                                ));
                            }
                            for (slot, column) in slots.iter_mut().zip(&mut columns) {
                                attach(array, query, slot, column)?;
                            }
                        }
                        // Otherwise TileDB's memory budget ended the submit early: the
                        // same buffers go again.
                    }
                    _ => {
                        return Err(Error::invalid(
                            &ctx.input,
                            format!("{object}: the read failed (TileDB status {status})"),
                        ))
                    }
                }
                if status == TILEDB_COMPLETED {
                    return Ok(());
                }
            }
        })();
        (api.query_free)(&mut query);
        result
    }
}

/// Allocate `column`'s buffers at `slot`'s capacities and give them to the query.
unsafe fn attach(
    array: &Array,
    query: *mut c_void,
    slot: &mut Slot,
    column: &mut ColumnData,
) -> Result<()> {
    let (ctx, api) = (&*array.ctx, array.ctx.api);
    column.data = vec![0; slot.data_cap];
    slot.sizes[0].set(slot.data_cap as u64);
    let mut rc = (api.query_set_data_buffer)(
        ctx.raw(),
        query,
        slot.name.as_ptr(),
        column.data.as_mut_ptr() as *mut c_void,
        slot.sizes[0].as_ptr(),
    );
    if column.var {
        column.offsets = vec![0; slot.cells_cap];
        slot.sizes[1].set((slot.cells_cap * 8) as u64);
        rc |= (api.query_set_offsets_buffer)(
            ctx.raw(),
            query,
            slot.name.as_ptr(),
            column.offsets.as_mut_ptr(),
            slot.sizes[1].as_ptr(),
        );
    }
    if column.nullable {
        column.validity = vec![0; slot.cells_cap];
        slot.sizes[2].set(slot.cells_cap as u64);
        rc |= (api.query_set_validity_buffer)(
            ctx.raw(),
            query,
            slot.name.as_ptr(),
            column.validity.as_mut_ptr(),
            slot.sizes[2].as_ptr(),
        );
    }
    ctx.check(rc, &array.object, "setting up a read")
}

/// Run `read` on `array` and concatenate every submit's results (for reads of a bounded
/// number of cells: a dataframe's rows of one batch, its ids).
pub fn read_all(array: &Array, read_spec: &Read) -> Result<Vec<ColumnData>> {
    let mut all: Option<Vec<ColumnData>> = None;
    read(array, read_spec, |chunk| {
        match &mut all {
            None => all = Some(chunk.iter().map(ColumnData::copy).collect()),
            Some(all) => {
                for (into, from) in all.iter_mut().zip(chunk) {
                    into.append(from);
                }
            }
        }
        Ok(())
    })?;
    Ok(all.unwrap_or_else(|| {
        read_spec
            .columns
            .iter()
            .map(|&name| {
                let (datatype, var, nullable) = match array.attr(name) {
                    Some(a) => (a.datatype, a.var, a.nullable),
                    None => (Datatype::Int64, false, false),
                };
                ColumnData {
                    datatype: Some(datatype),
                    var,
                    nullable,
                    ..Default::default()
                }
            })
            .collect()
    }))
}

impl ColumnData {
    fn copy(&self) -> ColumnData {
        ColumnData {
            data: self.data.clone(),
            offsets: self.offsets.clone(),
            validity: self.validity.clone(),
            datatype: self.datatype,
            var: self.var,
            nullable: self.nullable,
        }
    }

    /// Add `other`'s cells after these (string offsets moved past this data).
    fn append(&mut self, other: &ColumnData) {
        let base = self.data.len() as u64;
        self.offsets.extend(other.offsets.iter().map(|o| o + base));
        self.data.extend_from_slice(&other.data);
        self.validity.extend_from_slice(&other.validity);
    }
}

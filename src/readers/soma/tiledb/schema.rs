//! An array's schema read out of libtiledb: whether it is sparse, its dimensions with their
//! current extent, its attributes with their cell types, nullability and the categories of
//! enumerated ones.

use std::ffi::{c_char, c_void, CStr};

use super::Context;
use crate::error::{Error, Result};

const TILEDB_SPARSE: i32 = 1;
/// `TILEDB_VAR_NUM`.
const VAR_NUM: u32 = u32::MAX;

/// The cell types of `tiledb_datatype_t` that SOMA arrays use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Datatype {
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float32,
    Float64,
    Bool,
    /// UTF-8, ASCII or CHAR: bytes read as UTF-8.
    String,
    /// Anything else (dates, times, blobs, geometry, UTF-16/32), by its C value.
    Other(i32),
}

impl Datatype {
    pub(super) fn from_c(value: i32) -> Datatype {
        match value {
            0 => Datatype::Int32,
            1 => Datatype::Int64,
            2 => Datatype::Float32,
            3 => Datatype::Float64,
            4 | 11 | 12 => Datatype::String,
            5 => Datatype::Int8,
            6 => Datatype::UInt8,
            7 => Datatype::Int16,
            8 => Datatype::UInt16,
            9 => Datatype::UInt32,
            10 => Datatype::UInt64,
            41 => Datatype::Bool,
            other => Datatype::Other(other),
        }
    }

    /// Bytes a value takes.
    pub fn size(self) -> usize {
        match self {
            Datatype::Int8 | Datatype::UInt8 | Datatype::Bool | Datatype::String => 1,
            Datatype::Int16 | Datatype::UInt16 => 2,
            Datatype::Int32 | Datatype::UInt32 | Datatype::Float32 => 4,
            Datatype::Int64 | Datatype::UInt64 | Datatype::Float64 => 8,
            // Dates and times are 8 bytes. Nothing of another type is read: dataframes skip
            // such columns, sparse arrays refuse such values, before any read.
            Datatype::Other(_) => 8,
        }
    }
}

/// One dimension.
#[derive(Debug, Clone)]
pub struct Dimension {
    /// Its name.
    pub name: String,
    /// Its cell type (SOMA's are int64).
    pub datatype: Datatype,
    /// Its current extent (inclusive), where it is an int64 dimension.
    pub extent: Option<(i64, i64)>,
}

/// One attribute.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// Its name.
    pub name: String,
    /// Cell type (of the codes, for an enumerated attribute).
    pub datatype: Datatype,
    /// Variable length (strings).
    pub var: bool,
    /// Has a validity buffer.
    pub nullable: bool,
    /// Values a cell holds where that is more than one and not a string's characters (such
    /// an attribute's datatype is [`Datatype::Other`]).
    pub cell_values: Option<u32>,
    /// The values an enumerated (categorical) attribute's codes stand for, as text.
    pub categories: Option<Vec<String>>,
}

/// What [`read`] finds.
pub struct Schema {
    /// Sparse (else dense).
    pub sparse: bool,
    /// Cells may repeat coordinates (SOMA's arrays never do).
    pub allows_dups: bool,
    /// Dimensions, in order.
    pub dims: Vec<Dimension>,
    /// Attributes, in order.
    pub attrs: Vec<Attribute>,
}

/// The schema of the open array `array`.
///
/// # Safety
/// `array` must be an array handle of `ctx`, open for reading.
pub(super) unsafe fn read(ctx: &Context, array: *mut c_void, object: &str) -> Result<Schema> {
    let api = ctx.api;
    let mut out = Schema {
        sparse: true,
        allows_dups: false,
        dims: Vec::new(),
        attrs: Vec::new(),
    };
    let mut schema = std::ptr::null_mut();
    ctx.check(
        (api.array_get_schema)(ctx.raw(), array, &mut schema),
        object,
        "reading the schema",
    )?;
    let result = (|| {
        let mut array_type = 0;
        ctx.check(
            (api.array_schema_get_array_type)(ctx.raw(), schema, &mut array_type),
            object,
            "reading the schema",
        )?;
        out.sparse = array_type == TILEDB_SPARSE;
        if out.sparse {
            let mut dups = 0;
            ctx.check(
                (api.array_schema_get_allows_dups)(ctx.raw(), schema, &mut dups),
                object,
                "reading the schema",
            )?;
            out.allows_dups = dups != 0;
        }
        let current = current_domain(ctx, schema, object)?;
        let mut domain = std::ptr::null_mut();
        ctx.check(
            (api.array_schema_get_domain)(ctx.raw(), schema, &mut domain),
            object,
            "reading the schema",
        )?;
        let dims = (|| {
            let mut ndim = 0u32;
            ctx.check(
                (api.domain_get_ndim)(ctx.raw(), domain, &mut ndim),
                object,
                "reading the schema",
            )?;
            let mut dims = Vec::new();
            for i in 0..ndim {
                let mut dim = std::ptr::null_mut();
                ctx.check(
                    (api.domain_get_dimension_from_index)(ctx.raw(), domain, i, &mut dim),
                    object,
                    "reading the schema",
                )?;
                let (mut name, mut dtype, mut range): (*const c_char, i32, *const c_void) =
                    (std::ptr::null(), 0, std::ptr::null());
                let rc = (api.dimension_get_name)(ctx.raw(), dim, &mut name)
                    | (api.dimension_get_type)(ctx.raw(), dim, &mut dtype)
                    | (api.dimension_get_domain)(ctx.raw(), dim, &mut range);
                let name = c_text(name);
                let core =
                    (Datatype::from_c(dtype) == Datatype::Int64 && !range.is_null()).then(|| {
                        let r = range as *const i64;
                        (r.read_unaligned(), r.add(1).read_unaligned())
                    });
                (api.dimension_free)(&mut dim);
                ctx.check(rc, object, "reading the schema")?;
                let extent = match (&current, core) {
                    (Some(ranges), Some(_)) => ranges.get(i as usize).copied(),
                    (_, core) => core,
                };
                dims.push(Dimension {
                    name: name.unwrap_or_default(),
                    datatype: Datatype::from_c(dtype),
                    extent,
                });
            }
            Ok(dims)
        })();
        (api.domain_free)(&mut domain);
        out.dims = dims?;
        out.attrs = attributes(ctx, array, schema, object)?;
        Ok(out)
    })();
    (api.array_schema_free)(&mut schema);
    result
}

/// The current domain's int64 ranges, one per dimension; `None` when it is not set (arrays
/// written before TileDB 2.25, whose shape is their core domain).
unsafe fn current_domain(
    ctx: &Context,
    schema: *mut c_void,
    object: &str,
) -> Result<Option<Vec<(i64, i64)>>> {
    let api = ctx.api;
    let mut current = std::ptr::null_mut();
    ctx.check(
        (api.array_schema_get_current_domain)(ctx.raw(), schema, &mut current),
        object,
        "reading the shape",
    )?;
    let result = (|| {
        let mut empty = 0u32;
        ctx.check(
            (api.current_domain_get_is_empty)(ctx.raw(), current, &mut empty),
            object,
            "reading the shape",
        )?;
        if empty != 0 {
            return Ok(None);
        }
        let mut rect = std::ptr::null_mut();
        ctx.check(
            (api.current_domain_get_ndrectangle)(ctx.raw(), current, &mut rect),
            object,
            "reading the shape",
        )?;
        let mut ranges = Vec::new();
        let mut ndim = 0u32;
        let mut rc = (api.ndrectangle_get_dim_num)(ctx.raw(), rect, &mut ndim);
        for i in 0..ndim {
            let mut range = super::TdbRange {
                min: std::ptr::null(),
                min_size: 0,
                max: std::ptr::null(),
                max_size: 0,
            };
            rc |= (api.ndrectangle_get_range)(ctx.raw(), rect, i, &mut range);
            if range.min_size == 8
                && range.max_size == 8
                && !range.min.is_null()
                && !range.max.is_null()
            {
                let (lo, hi) = (range.min as *const i64, range.max as *const i64);
                ranges.push((lo.read_unaligned(), hi.read_unaligned()));
            } else {
                // Not an int64 dimension: no extent ([`Dimension::extent`] is None).
                ranges.push((0, -1));
            }
        }
        (api.ndrectangle_free)(&mut rect);
        ctx.check(rc, object, "reading the shape")?;
        Ok(Some(ranges))
    })();
    (api.current_domain_free)(&mut current);
    result
}

/// The schema's attributes, with the categories of enumerated ones.
unsafe fn attributes(
    ctx: &Context,
    array: *mut c_void,
    schema: *mut c_void,
    object: &str,
) -> Result<Vec<Attribute>> {
    let api = ctx.api;
    let mut n = 0u32;
    ctx.check(
        (api.array_schema_get_attribute_num)(ctx.raw(), schema, &mut n),
        object,
        "reading the schema",
    )?;
    let mut out = Vec::new();
    for i in 0..n {
        let mut attr = std::ptr::null_mut();
        ctx.check(
            (api.array_schema_get_attribute_from_index)(ctx.raw(), schema, i, &mut attr),
            object,
            "reading the schema",
        )?;
        let (mut name, mut dtype, mut cvn, mut nullable, mut enum_name): (
            *const c_char,
            i32,
            u32,
            u8,
            *mut c_void,
        ) = (std::ptr::null(), 0, 1, 0, std::ptr::null_mut());
        let rc = (api.attribute_get_name)(ctx.raw(), attr, &mut name)
            | (api.attribute_get_type)(ctx.raw(), attr, &mut dtype)
            | (api.attribute_get_cell_val_num)(ctx.raw(), attr, &mut cvn)
            | (api.attribute_get_nullable)(ctx.raw(), attr, &mut nullable)
            | (api.attribute_get_enumeration_name)(ctx.raw(), attr, &mut enum_name);
        let name = c_text(name).unwrap_or_default();
        (api.attribute_free)(&mut attr);
        let enumeration = ctx.take_string(enum_name);
        ctx.check(rc, object, "reading the schema")?;
        let categories = match enumeration {
            Some(enumeration) => Some(categories(
                ctx,
                array,
                &enumeration,
                &format!("{object}/{name}"),
            )?),
            None => None,
        };
        // Several values a cell (other than a string's characters) fit no SLAF column: such
        // an attribute reads as a type of its own, which readers skip or refuse by name.
        let mut datatype = Datatype::from_c(dtype);
        let several = cvn != 1 && !(cvn == VAR_NUM && datatype == Datatype::String);
        if several {
            datatype = Datatype::Other(dtype);
        }
        out.push(Attribute {
            name,
            datatype,
            var: cvn == VAR_NUM,
            nullable: nullable != 0,
            cell_values: several.then_some(cvn),
            categories,
        });
    }
    Ok(out)
}

/// The values of enumeration `name` of `array`, as text (numbers in their shortest form).
unsafe fn categories(
    ctx: &Context,
    array: *mut c_void,
    name: &str,
    object: &str,
) -> Result<Vec<String>> {
    let api = ctx.api;
    let c_name = ctx.c_string(name)?;
    let mut e = std::ptr::null_mut();
    ctx.check(
        (api.array_get_enumeration)(ctx.raw(), array, c_name.as_ptr(), &mut e),
        object,
        "reading its categories",
    )?;
    let result = (|| {
        let (mut dtype, mut cvn) = (0i32, 1u32);
        let (mut data, mut data_size, mut offsets, mut offsets_size): (
            *const c_void,
            u64,
            *const c_void,
            u64,
        ) = (std::ptr::null(), 0, std::ptr::null(), 0);
        let rc = (api.enumeration_get_type)(ctx.raw(), e, &mut dtype)
            | (api.enumeration_get_cell_val_num)(ctx.raw(), e, &mut cvn)
            | (api.enumeration_get_data)(ctx.raw(), e, &mut data, &mut data_size);
        ctx.check(rc, object, "reading its categories")?;
        let bytes: &[u8] = if data.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(data as *const u8, data_size as usize)
        };
        let datatype = Datatype::from_c(dtype);
        if cvn == VAR_NUM {
            ctx.check(
                (api.enumeration_get_offsets)(ctx.raw(), e, &mut offsets, &mut offsets_size),
                object,
                "reading its categories",
            )?;
            let raw: &[u8] = if offsets.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts(offsets as *const u8, offsets_size as usize)
            };
            // Copied out: the library promises no alignment for u64 reads in place.
            let starts: Vec<u64> = raw
                .chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
                .collect();
            return super::values::split_strings(bytes, &starts, &ctx.input, object);
        }
        let values = super::values::Values::decode(datatype, bytes).ok_or_else(|| {
            Error::invalid(
                &ctx.input,
                format!("{object}: categories of an unsupported type"),
            )
        })?;
        Ok((0..values.len()).map(|i| values.text(i)).collect())
    })();
    (api.enumeration_free)(&mut e);
    result
}

/// A C string the library owns, copied (`None` for null).
///
/// # Safety
/// `text` must be null or a NUL-terminated string that lives for the call.
unsafe fn c_text(text: *const c_char) -> Option<String> {
    (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
}

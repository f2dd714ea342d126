//! TileDB groups and arrays opened for reading: a group's members and metadata, an array's
//! schema (dimensions with their current domain, attributes with their types, nullability
//! and enumerations), as plain Rust values copied out of the library's handles.

use std::ffi::{c_char, c_void, CStr};
use std::sync::Arc;

use super::Context;
use crate::error::{Error, Result};

const TILEDB_READ: i32 = 0;
/// `tiledb_object_t`.
const TILEDB_GROUP: i32 = 1;
const TILEDB_ARRAY: i32 = 2;
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
    fn from_c(value: i32) -> Datatype {
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
            // Dates and times are 8 bytes; the rest is refused before anything is read.
            Datatype::Other(_) => 8,
        }
    }
}

/// One dimension.
#[derive(Debug, Clone)]
pub struct Dimension {
    /// Its name.
    pub name: String,
    /// Its current extent (inclusive), where it is an integer dimension.
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
    /// The values an enumerated (categorical) attribute's codes stand for, as text.
    pub categories: Option<Vec<String>>,
}

/// A member of a group.
#[derive(Debug, Clone)]
pub struct Member {
    /// The name it is listed under.
    pub name: String,
    /// Its URI.
    pub uri: String,
    /// Whether it is a group (else an array).
    pub is_group: bool,
}

/// A group opened for reading.
pub struct Group {
    /// Its URI.
    pub uri: String,
    /// Its members, in listing order.
    pub members: Vec<Member>,
    /// Its `soma_object_type` metadata, if set.
    pub soma_type: Option<String>,
}

impl Group {
    /// Open the group at `uri` (`object` names it in messages) and list its members.
    pub fn open(ctx: &Context, uri: &str, object: &str) -> Result<Group> {
        let api = ctx.api;
        let c_uri = ctx.c_string(uri)?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: handles are created, used and freed here; strings are copied out.
        unsafe {
            ctx.check(
                (api.group_alloc)(ctx.raw(), c_uri.as_ptr(), &mut handle),
                object,
                "opening the group",
            )?;
            let result = (|| {
                ctx.check(
                    (api.group_open)(ctx.raw(), handle, TILEDB_READ),
                    object,
                    "opening the group",
                )?;
                let mut count = 0u64;
                ctx.check(
                    (api.group_get_member_count)(ctx.raw(), handle, &mut count),
                    object,
                    "listing members",
                )?;
                let mut members = Vec::new();
                for i in 0..count {
                    let (mut m_uri, mut m_name, mut kind) =
                        (std::ptr::null_mut(), std::ptr::null_mut(), 0i32);
                    ctx.check(
                        (api.group_get_member_by_index_v2)(
                            ctx.raw(),
                            handle,
                            i,
                            &mut m_uri,
                            &mut kind,
                            &mut m_name,
                        ),
                        object,
                        "listing members",
                    )?;
                    let uri = ctx.take_string(m_uri).unwrap_or_default();
                    let name = ctx.take_string(m_name).unwrap_or_else(|| {
                        uri.trim_end_matches('/')
                            .rsplit('/')
                            .next()
                            .unwrap_or_default()
                            .to_string()
                    });
                    if kind == TILEDB_GROUP || kind == TILEDB_ARRAY {
                        members.push(Member {
                            name,
                            uri,
                            is_group: kind == TILEDB_GROUP,
                        });
                    }
                }
                let soma_type = string_metadata(|key, t, n, v| {
                    (api.group_get_metadata)(ctx.raw(), handle, key, t, n, v)
                });
                (api.group_close)(ctx.raw(), handle);
                Ok(Group {
                    uri: uri.to_string(),
                    members,
                    soma_type,
                })
            })();
            (api.group_free)(&mut handle);
            result
        }
    }

    /// The member called `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// The `soma_object_type` metadata through `get`, if it is a string.
///
/// # Safety
/// `get` must be a TileDB metadata getter of an open object.
unsafe fn string_metadata(
    get: impl Fn(*const c_char, *mut i32, *mut u32, *mut *const c_void) -> i32,
) -> Option<String> {
    let key = c"soma_object_type";
    let (mut dtype, mut num, mut value) = (0i32, 0u32, std::ptr::null());
    if get(key.as_ptr(), &mut dtype, &mut num, &mut value) != 0 || value.is_null() {
        return None;
    }
    matches!(Datatype::from_c(dtype), Datatype::String).then(|| {
        let bytes = std::slice::from_raw_parts(value as *const u8, num as usize);
        String::from_utf8_lossy(bytes).into_owned()
    })
}

/// Whether `uri` is a group, an array, or neither (`None`).
pub fn object_kind(ctx: &Context, uri: &str) -> Result<Option<bool>> {
    let c_uri = ctx.c_string(uri)?;
    let mut kind = 0i32;
    // SAFETY: one out-parameter.
    let rc = unsafe { (ctx.api.object_type)(ctx.raw(), c_uri.as_ptr(), &mut kind) };
    ctx.check(rc, uri, "looking it up")?;
    Ok(match kind {
        TILEDB_GROUP => Some(true),
        TILEDB_ARRAY => Some(false),
        _ => None,
    })
}

/// An array opened for reading, with its schema.
pub struct Array {
    /// The context it was opened in.
    pub ctx: Arc<Context>,
    pub(super) handle: *mut c_void,
    /// What messages call it (its path inside the experiment).
    pub object: String,
    /// Sparse (else dense).
    pub sparse: bool,
    /// Dimensions, in order.
    pub dims: Vec<Dimension>,
    /// Attributes, in order.
    pub attrs: Vec<Attribute>,
    /// Its `soma_object_type` metadata, if set.
    pub soma_type: Option<String>,
}

// SAFETY: the handle is used by one thread at a time (the reader owns it) and freed on drop.
unsafe impl Send for Array {}

impl Array {
    /// Open the array at `uri` and read its schema.
    pub fn open(ctx: &Arc<Context>, uri: &str, object: &str) -> Result<Array> {
        let api = ctx.api;
        let c_uri = ctx.c_string(uri)?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: the handle is owned by the returned Array (freed on drop) or freed here.
        unsafe {
            ctx.check(
                (api.array_alloc)(ctx.raw(), c_uri.as_ptr(), &mut handle),
                object,
                "opening the array",
            )?;
            let mut array = Array {
                ctx: ctx.clone(),
                handle,
                object: object.to_string(),
                sparse: true,
                dims: Vec::new(),
                attrs: Vec::new(),
                soma_type: None,
            };
            ctx.check(
                (api.array_open)(ctx.raw(), handle, TILEDB_READ),
                object,
                "opening the array",
            )?;
            array.read_schema()?;
            array.soma_type = string_metadata(|key, t, n, v| {
                (api.array_get_metadata)(ctx.raw(), handle, key, t, n, v)
            });
            Ok(array)
        }
    }

    unsafe fn read_schema(&mut self) -> Result<()> {
        let (ctx, api, object) = (&*self.ctx, self.ctx.api, self.object.as_str());
        let mut schema = std::ptr::null_mut();
        ctx.check(
            (api.array_get_schema)(ctx.raw(), self.handle, &mut schema),
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
            self.sparse = array_type == TILEDB_SPARSE;
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
                    let name = (!name.is_null())
                        .then(|| CStr::from_ptr(name).to_string_lossy().into_owned());
                    let core = (Datatype::from_c(dtype) == Datatype::Int64 && !range.is_null())
                        .then(|| {
                            let r = range as *const i64;
                            (*r, *r.add(1))
                        });
                    (api.dimension_free)(&mut dim);
                    ctx.check(rc, object, "reading the schema")?;
                    let extent = match (&current, core) {
                        (Some(ranges), Some(_)) => ranges.get(i as usize).copied(),
                        (_, core) => core,
                    };
                    dims.push(Dimension {
                        name: name.unwrap_or_default(),
                        extent,
                    });
                }
                Ok(dims)
            })();
            (api.domain_free)(&mut domain);
            self.dims = dims?;
            self.attrs = attributes(ctx, self.handle, schema, object)?;
            Ok(())
        })();
        (api.array_schema_free)(&mut schema);
        result
    }

    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// The current extent of dimension `i`, or an error naming it.
    pub fn extent(&self, i: usize) -> Result<(i64, i64)> {
        self.dims.get(i).and_then(|d| d.extent).ok_or_else(|| {
            Error::invalid(
                &self.ctx.input,
                format!(
                    "{}: dimension {i} is not an int64 dimension with a domain",
                    self.object
                ),
            )
        })
    }
}

impl Drop for Array {
    fn drop(&mut self) {
        // SAFETY: the handle came from array_alloc and is closed and freed once.
        unsafe {
            (self.ctx.api.array_close)(self.ctx.raw(), self.handle);
            (self.ctx.api.array_free)(&mut self.handle);
        }
    }
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
        let mut i = 0u32;
        loop {
            let mut range = super::TdbRange {
                min: std::ptr::null(),
                min_size: 0,
                max: std::ptr::null(),
                max_size: 0,
            };
            if (api.ndrectangle_get_range)(ctx.raw(), rect, i, &mut range) != 0 {
                break;
            }
            if range.min_size == 8
                && range.max_size == 8
                && !range.min.is_null()
                && !range.max.is_null()
            {
                ranges.push((*(range.min as *const i64), *(range.max as *const i64)));
            } else {
                ranges.push((0, -1));
            }
            i += 1;
        }
        (api.ndrectangle_free)(&mut rect);
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
        let name = (!name.is_null())
            .then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
            .unwrap_or_default();
        (api.attribute_free)(&mut attr);
        ctx.check(rc, object, "reading the schema")?;
        let categories = match ctx.take_string(enum_name) {
            Some(enumeration) => Some(categories(
                ctx,
                array,
                &enumeration,
                &format!("{object}/{name}"),
            )?),
            None => None,
        };
        let datatype = Datatype::from_c(dtype);
        if cvn != 1 && !(cvn == VAR_NUM && datatype == Datatype::String) {
            return Err(Error::invalid(&ctx.input, format!("{object}/{name}: {cvn} values a cell: only one value, or a string, can be a column")));
        }
        out.push(Attribute {
            name,
            datatype,
            var: cvn == VAR_NUM,
            nullable: nullable != 0,
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
            let n = offsets_size as usize / 8;
            let starts: &[u64] = if offsets.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts(offsets as *const u64, n)
            };
            return super::query::split_strings(bytes, starts, &ctx.input, object);
        }
        let values = super::query::Values::decode(datatype, bytes).ok_or_else(|| {
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

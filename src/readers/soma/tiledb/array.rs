//! TileDB groups and arrays opened for reading: a group's members and metadata, an array's
//! handle with its schema ([`super::schema`]) and metadata, as plain Rust values copied out
//! of the library's handles.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

pub use super::schema::{Attribute, Datatype, Dimension};
use super::Context;
use crate::error::{Error, Result};

const TILEDB_READ: i32 = 0;
/// `tiledb_object_t`.
const TILEDB_GROUP: i32 = 1;
const TILEDB_ARRAY: i32 = 2;

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
            let opened = ctx.check(
                (api.group_open)(ctx.raw(), handle, TILEDB_READ),
                object,
                "opening the group",
            );
            let list = || {
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
                let soma_type = string_metadata(ctx, object, |key, t, n, v| {
                    (api.group_get_metadata)(ctx.raw(), handle, key, t, n, v)
                })?;
                Ok(Group {
                    uri: uri.to_string(),
                    members,
                    soma_type,
                })
            };
            // Closed only if opened; freed either way. The listing's error comes first.
            let result = opened.and_then(|()| {
                let group = list();
                let closed = (api.group_close)(ctx.raw(), handle);
                group.and_then(|g| ctx.check(closed, object, "closing the group").map(|()| g))
            });
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
    ctx: &Context,
    object: &str,
    get: impl Fn(*const c_char, *mut i32, *mut u32, *mut *const c_void) -> i32,
) -> Result<Option<String>> {
    let key = c"soma_object_type";
    let (mut dtype, mut num, mut value) = (0i32, 0u32, std::ptr::null());
    let rc = get(key.as_ptr(), &mut dtype, &mut num, &mut value);
    ctx.check(rc, object, "reading its soma_object_type")?;
    if value.is_null() {
        return Ok(None);
    }
    Ok(
        matches!(Datatype::from_c(dtype), Datatype::String).then(|| {
            let bytes = std::slice::from_raw_parts(value as *const u8, num as usize);
            String::from_utf8_lossy(bytes).into_owned()
        }),
    )
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
    /// Cells may repeat coordinates.
    pub allows_dups: bool,
    /// Dimensions, in order.
    pub dims: Vec<Dimension>,
    /// Attributes, in order.
    pub attrs: Vec<Attribute>,
    /// Its `soma_object_type` metadata, if set.
    pub soma_type: Option<String>,
    /// TileDB's read memory its reads need beyond the context's, once one found out.
    pub read_budget: std::cell::Cell<Option<u64>>,
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
                allows_dups: false,
                dims: Vec::new(),
                attrs: Vec::new(),
                soma_type: None,
                read_budget: std::cell::Cell::new(None),
            };
            ctx.check(
                (api.array_open)(ctx.raw(), handle, TILEDB_READ),
                object,
                "opening the array",
            )?;
            let schema = super::schema::read(ctx, handle, object)?;
            (array.sparse, array.allows_dups, array.dims, array.attrs) =
                (schema.sparse, schema.allows_dups, schema.dims, schema.attrs);
            array.soma_type = string_metadata(ctx, object, |key, t, n, v| {
                (api.array_get_metadata)(ctx.raw(), handle, key, t, n, v)
            })?;
            Ok(array)
        }
    }

    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// Refuse the array unless its dimensions are `names`, each int64, and it has no
    /// duplicate coordinates (what SOMA's dataframes and sparse arrays are).
    pub fn check_dims(&self, names: &[&str]) -> Result<()> {
        let found: Vec<String> = self
            .dims
            .iter()
            .map(|d| format!("{} ({:?})", d.name, d.datatype))
            .collect();
        let fits = self.dims.len() == names.len()
            && self
                .dims
                .iter()
                .zip(names)
                .all(|(d, n)| d.name == *n && d.datatype == Datatype::Int64);
        if !fits || !self.sparse {
            return Err(Error::invalid(&self.ctx.input, format!(
                "{}: a {} array with dimensions [{}]: only sparse arrays with int64 dimensions [{}] are read",
                self.object, if self.sparse { "sparse" } else { "dense" }, found.join(", "), names.join(", "))));
        }
        if self.allows_dups {
            return Err(Error::invalid(
                &self.ctx.input,
                format!(
                    "{}: allows duplicate coordinates, which a SOMA array never has",
                    self.object
                ),
            ));
        }
        Ok(())
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

//! The TileDB C library (`libtiledb`), loaded at run time: where it is looked for, the table
//! of the C API functions the SOMA reader calls, and a context that turns the library's
//! errors into messages.
//!
//! Loaded, not linked, so that slaf-convert builds and reads every other format without
//! TileDB; only a SOMA input needs it. The path comes from `--libtiledb` /
//! `SLAF_CONVERT_LIBTILEDB`, else the system's loader is asked for `libtiledb.so` and the
//! versioned names of releases with the API used here (2.26 onwards: enumerations, current
//! domains, `tiledb_group_get_member_by_index_v2`), and last `lib/libtiledb.so` of the
//! prefix the executable is installed in (`/usr/local` in the container image).
//! Declarations: TileDB 2.30's C headers.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};

pub mod array;
pub mod query;
pub mod schema;
pub mod values;

/// Environment variable naming the library file.
pub const LIBRARY_VARIABLE: &str = "SLAF_CONVERT_LIBTILEDB";

/// Return codes of the C API.
const TILEDB_OK: i32 = 0;

/// Opaque handles.
pub type Ctx = c_void;
/// `tiledb_string_t`.
pub type TdbString = c_void;

/// `tiledb_range_t` of an ndrectangle.
#[repr(C)]
pub struct TdbRange {
    /// Lower bound.
    pub min: *const c_void,
    /// Its size in bytes.
    pub min_size: u64,
    /// Upper bound.
    pub max: *const c_void,
    /// Its size in bytes.
    pub max_size: u64,
}

macro_rules! c_api {
    ($($name:ident: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// The C API functions the SOMA reader calls, resolved once from the library.
        #[allow(missing_docs)]
        pub struct Api {
            _library: libloading::Library,
            $(pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
        }

        impl Api {
            /// Resolve every function, naming the first one missing.
            ///
            /// # Safety
            /// `library` must be libtiledb: the symbols are taken to have the declared types.
            unsafe fn resolve(library: libloading::Library) -> std::result::Result<Api, String> {
                $(
                    let $name = *library
                        .get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                            concat!("tiledb_", stringify!($name), "\0").as_bytes(),
                        )
                        .map_err(|e| format!("it lacks tiledb_{} ({e}): TileDB 2.26 or later is needed", stringify!($name)))?;
                )*
                Ok(Api { _library: library, $($name,)* })
            }
        }
    };
}

type P = *mut c_void;
type PP = *mut *mut c_void;

c_api! {
    version: fn(*mut i32, *mut i32, *mut i32);
    config_alloc: fn(PP, PP) -> i32;
    config_set: fn(P, *const c_char, *const c_char, PP) -> i32;
    config_free: fn(PP);
    ctx_alloc: fn(P, PP) -> i32;
    ctx_free: fn(PP);
    ctx_get_last_error: fn(P, PP) -> i32;
    error_message: fn(P, *mut *const c_char) -> i32;
    error_free: fn(PP);
    object_type: fn(P, *const c_char, *mut i32) -> i32;
    group_alloc: fn(P, *const c_char, PP) -> i32;
    group_open: fn(P, P, i32) -> i32;
    group_close: fn(P, P) -> i32;
    group_free: fn(PP);
    group_get_member_count: fn(P, P, *mut u64) -> i32;
    group_get_member_by_index_v2: fn(P, P, u64, PP, *mut i32, PP) -> i32;
    group_get_metadata: fn(P, P, *const c_char, *mut i32, *mut u32, *mut *const c_void) -> i32;
    string_view: fn(P, *mut *const c_char, *mut usize) -> i32;
    string_free: fn(PP) -> i32;
    array_alloc: fn(P, *const c_char, PP) -> i32;
    array_open: fn(P, P, i32) -> i32;
    array_close: fn(P, P) -> i32;
    array_free: fn(PP);
    array_get_schema: fn(P, P, PP) -> i32;
    array_get_metadata: fn(P, P, *const c_char, *mut i32, *mut u32, *mut *const c_void) -> i32;
    array_get_enumeration: fn(P, P, *const c_char, PP) -> i32;
    array_schema_free: fn(PP);
    array_schema_get_array_type: fn(P, P, *mut i32) -> i32;
    array_schema_get_domain: fn(P, P, PP) -> i32;
    array_schema_get_attribute_num: fn(P, P, *mut u32) -> i32;
    array_schema_get_attribute_from_index: fn(P, P, u32, PP) -> i32;
    array_schema_get_allows_dups: fn(P, P, *mut c_int) -> i32;
    array_schema_get_current_domain: fn(P, P, PP) -> i32;
    domain_free: fn(PP);
    domain_get_ndim: fn(P, P, *mut u32) -> i32;
    domain_get_dimension_from_index: fn(P, P, u32, PP) -> i32;
    dimension_free: fn(PP);
    dimension_get_name: fn(P, P, *mut *const c_char) -> i32;
    dimension_get_type: fn(P, P, *mut i32) -> i32;
    dimension_get_domain: fn(P, P, *mut *const c_void) -> i32;
    attribute_free: fn(PP);
    attribute_get_name: fn(P, P, *mut *const c_char) -> i32;
    attribute_get_type: fn(P, P, *mut i32) -> i32;
    attribute_get_cell_val_num: fn(P, P, *mut u32) -> i32;
    attribute_get_nullable: fn(P, P, *mut u8) -> i32;
    attribute_get_enumeration_name: fn(P, P, PP) -> i32;
    enumeration_free: fn(PP);
    enumeration_get_type: fn(P, P, *mut i32) -> i32;
    enumeration_get_cell_val_num: fn(P, P, *mut u32) -> i32;
    enumeration_get_data: fn(P, P, *mut *const c_void, *mut u64) -> i32;
    enumeration_get_offsets: fn(P, P, *mut *const c_void, *mut u64) -> i32;
    current_domain_free: fn(PP) -> i32;
    current_domain_get_is_empty: fn(P, P, *mut u32) -> i32;
    current_domain_get_ndrectangle: fn(P, P, PP) -> i32;
    ndrectangle_free: fn(PP) -> i32;
    ndrectangle_get_range: fn(P, P, u32, *mut TdbRange) -> i32;
    ndrectangle_get_dim_num: fn(P, P, *mut u32) -> i32;
    subarray_alloc: fn(P, P, PP) -> i32;
    subarray_free: fn(PP);
    subarray_add_range: fn(P, P, u32, *const c_void, *const c_void, *const c_void) -> i32;
    query_alloc: fn(P, P, i32, PP) -> i32;
    query_free: fn(PP);
    query_set_layout: fn(P, P, i32) -> i32;
    query_set_subarray_t: fn(P, P, P) -> i32;
    query_set_data_buffer: fn(P, P, *const c_char, P, *mut u64) -> i32;
    query_set_offsets_buffer: fn(P, P, *const c_char, *mut u64, *mut u64) -> i32;
    query_set_validity_buffer: fn(P, P, *const c_char, *mut u8, *mut u64) -> i32;
    query_submit: fn(P, P) -> i32;
    query_set_config: fn(P, P, P) -> i32;
    query_get_status: fn(P, P, *mut i32) -> i32;
    // tiledb_query_status_details_t: a struct of one enum (an int).
    query_get_status_details: fn(P, P, *mut i32) -> i32;
}

/// TileDB settings: its read memory within the process's budget (its default lets a sparse
/// read hold up to 10 GiB: a 30,000-cell experiment's conversion peaked at 688 MB with it,
/// 258 MB with these), and no tile cache (every tile is read once per query).
const CONFIG: &[(&str, &str)] = &[
    ("sm.mem.total_budget", "134217728"),
    ("sm.memory_budget", "67108864"),
    ("sm.memory_budget_var", "67108864"),
    ("sm.tile_cache_size", "0"),
    // TileDB trims the heap after every read by default; the next read faults it all in
    // again (a read per batch and array here).
    ("sm.mem.malloc_trim", "false"),
];

/// Where `--libtiledb` said the library is (set once, by the command line).
static LIBRARY_PATH: OnceLock<PathBuf> = OnceLock::new();
/// The library, loaded on first use; the error says what was tried.
static API: OnceLock<std::result::Result<Api, String>> = OnceLock::new();

/// Use the library at `path` (the command line's `--libtiledb`, which also reads
/// [`LIBRARY_VARIABLE`]); must be called before the first SOMA input is opened.
pub fn set_library_path(path: PathBuf) {
    let _ = LIBRARY_PATH.set(path);
}

/// Names the system's loader is asked for when no path is given, newest first.
const SONAMES: &[&str] = &[
    "libtiledb.so",
    "libtiledb.so.2.30",
    "libtiledb.so.2.29",
    "libtiledb.so.2.28",
    "libtiledb.so.2.27",
    "libtiledb.so.2.26",
];

fn load() -> std::result::Result<Api, String> {
    let given = LIBRARY_PATH
        .get()
        .cloned()
        .or_else(|| std::env::var_os(LIBRARY_VARIABLE).map(PathBuf::from));
    let candidates: Vec<PathBuf> = match given {
        Some(path) => vec![path],
        None => {
            let mut names: Vec<PathBuf> = SONAMES.iter().map(PathBuf::from).collect();
            // An install prefix's own library: bin/slaf-convert beside lib/libtiledb.so
            // (where the container image puts it).
            if let Some(prefix) = std::env::current_exe()
                .ok()
                .as_deref()
                .and_then(|e| e.parent()?.parent())
            {
                names.push(prefix.join("lib").join("libtiledb.so"));
            }
            names
        }
    };
    let (mut not_loaded, mut too_old) = (String::new(), None);
    for candidate in &candidates {
        // SAFETY: loading runs the library's initialisers; libtiledb's only set up its own
        // state. The symbols are checked by name, and their types are TileDB's C API.
        match unsafe { libloading::Library::new(candidate) } {
            Ok(library) => match unsafe { Api::resolve(library) } {
                Ok(api) => return Ok(api),
                // Too old to have every function: the next name may be newer.
                Err(e) => too_old = Some(format!("{} was loaded but {e}", candidate.display())),
            },
            Err(e) => not_loaded = e.to_string(),
        }
    }
    let tried = match too_old {
        Some(too_old) => too_old,
        None if candidates.len() == 1 => not_loaded,
        None => "the system's loader finds no libtiledb.so, nor libtiledb.so.2.26 to 2.30, and there is no lib/libtiledb.so beside the bin/ directory of slaf-convert".into(),
    };
    Err(format!(
        "it needs the TileDB library (libtiledb 2.26 or later), which could not be loaded ({tried}): give its path with --libtiledb PATH or {LIBRARY_VARIABLE}=PATH (`pip install tiledbsoma` ships one as site-packages/tiledbsoma.libs/libtiledb-*.so.2.30)"
    ))
}

/// The loaded library, or [`Error::LibraryMissing`] naming `input`.
pub fn api(input: &Path) -> Result<&'static Api> {
    API.get_or_init(load)
        .as_ref()
        .map_err(|what| Error::LibraryMissing {
            path: input.to_path_buf(),
            what: format!("a TileDB-SOMA experiment: {what}"),
        })
}

/// A new TileDB config holding `settings`, for the caller to free; on failure, what failed
/// (a setting's key and TileDB's error).
///
/// # Safety
/// `api` must be the loaded library's function table.
unsafe fn new_config(
    api: &Api,
    settings: impl IntoIterator<Item = (&'static str, String)>,
) -> std::result::Result<*mut c_void, String> {
    let (mut config, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
    if (api.config_alloc)(&mut config, &mut err) != TILEDB_OK {
        return Err(error_text(api, &mut err));
    }
    for (key, value) in settings {
        let (c_key, c_value) = (
            CString::new(key).expect("keys are literals without NUL"),
            CString::new(value).expect("values are literals or digits, without NUL"),
        );
        if (api.config_set)(config, c_key.as_ptr(), c_value.as_ptr(), &mut err) != TILEDB_OK {
            let why = format!("{key}: {}", error_text(api, &mut err));
            (api.config_free)(&mut config);
            return Err(why);
        }
    }
    Ok(config)
}

/// A TileDB context, with the input it reads for messages.
pub struct Context {
    /// The function table.
    pub api: &'static Api,
    ctx: *mut c_void,
    /// The experiment being read.
    pub input: PathBuf,
}

// SAFETY: a TileDB context is thread-safe (the library's documentation); the handle is only
// freed on drop.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

impl Context {
    /// A context with [`CONFIG`]'s settings.
    pub fn new(input: &Path) -> Result<Context> {
        let api = api(input)?;
        let failed = |why: String| {
            Error::invalid(
                input,
                format!("libtiledb could not create a context: {why}"),
            )
        };
        let mut ctx = std::ptr::null_mut();
        // SAFETY: the config is created here and freed once the context has copied it; `ctx`
        // receives a new handle, owned by the returned Context.
        unsafe {
            let settings = CONFIG.iter().map(|&(k, v)| (k, v.to_string()));
            let mut config = new_config(api, settings).map_err(failed)?;
            let allocated = (api.ctx_alloc)(config, &mut ctx);
            (api.config_free)(&mut config);
            if allocated != TILEDB_OK {
                return Err(failed("tiledb_ctx_alloc failed".into()));
            }
            if ctx.is_null() {
                return Err(failed("no context".into()));
            }
        }
        Ok(Context {
            api,
            ctx,
            input: input.to_path_buf(),
        })
    }

    /// Set TileDB's read memory of `query` to `bytes`.
    ///
    /// # Safety
    /// `query` must be a query of this context that has not been submitted.
    pub unsafe fn set_query_budget(
        &self,
        query: *mut c_void,
        bytes: u64,
        object: &str,
    ) -> Result<()> {
        let api = self.api;
        let settings = std::iter::once(("sm.mem.total_budget", bytes.to_string()));
        let mut config = new_config(api, settings).map_err(|why| {
            Error::invalid(
                &self.input,
                format!("{object}: a TileDB configuration: {why}"),
            )
        })?;
        let rc = (api.query_set_config)(self.ctx, query, config);
        (api.config_free)(&mut config);
        self.check(rc, object, "raising its read memory")
    }

    /// The raw handle.
    pub fn raw(&self) -> *mut c_void {
        self.ctx
    }

    /// The library's version, for logs.
    pub fn version(&self) -> String {
        let (mut major, mut minor, mut patch) = (0, 0, 0);
        // SAFETY: three out-parameters.
        unsafe { (self.api.version)(&mut major, &mut minor, &mut patch) };
        format!("{major}.{minor}.{patch}")
    }

    /// `Ok` if `rc` is success, else the library's last error about `object`.
    pub fn check(&self, rc: i32, object: &str, doing: &str) -> Result<()> {
        if rc == TILEDB_OK {
            return Ok(());
        }
        Err(Error::invalid(
            &self.input,
            format!("{object}: {doing}: {}", self.last_error()),
        ))
    }

    fn last_error(&self) -> String {
        let mut err = std::ptr::null_mut();
        // SAFETY: `err` receives a new error handle or null, read and freed by error_text.
        unsafe {
            if (self.api.ctx_get_last_error)(self.ctx, &mut err) != TILEDB_OK {
                return "libtiledb gave no message".into();
            }
            error_text(self.api, &mut err)
        }
    }

    /// A C string of `s`, refused if it holds a NUL byte.
    pub fn c_string(&self, s: &str) -> Result<CString> {
        CString::new(s).map_err(|_| Error::invalid(&self.input, format!("'{s}': a NUL byte")))
    }

    /// The text of a `tiledb_string_t`, which is freed.
    ///
    /// # Safety
    /// `s` must be a string handle the library returned, or null.
    pub unsafe fn take_string(&self, mut s: *mut c_void) -> Option<String> {
        if s.is_null() {
            return None;
        }
        let (mut data, mut len): (*const c_char, usize) = (std::ptr::null(), 0);
        (self.api.string_view)(s, &mut data, &mut len);
        let text = if data.is_null() {
            String::new()
        } else {
            String::from_utf8_lossy(std::slice::from_raw_parts(data as *const u8, len)).into_owned()
        };
        (self.api.string_free)(&mut s);
        Some(text)
    }
}

/// The message of an error handle a call returned, which is freed.
///
/// # Safety
/// `err` must point to null or an error handle of `api`.
unsafe fn error_text(api: &Api, err: &mut *mut c_void) -> String {
    if err.is_null() {
        return "libtiledb gave no message".into();
    }
    let mut msg: *const c_char = std::ptr::null();
    (api.error_message)(*err, &mut msg);
    let text = if msg.is_null() {
        "libtiledb gave no message".into()
    } else {
        CStr::from_ptr(msg).to_string_lossy().into_owned()
    };
    (api.error_free)(err);
    text
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the handle came from ctx_alloc and is freed once.
        unsafe { (self.api.ctx_free)(&mut self.ctx) };
    }
}

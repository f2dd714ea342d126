//! An HDF5 file driver (a "virtual file driver") that reads a file through its
//! [`RangeSource`]: the library opens the stand-in's path, and every read it makes (the
//! superblock, object headers, B-tree nodes, and whatever data it reads itself) is served by
//! the source (ranged GETs into a store) instead of by local disk. Read-only.
//!
//! The class and file structs mirror `H5FDdevelop.h` of the HDF5 this binary links (2.x,
//! built from the source `hdf5-metno-src` bundles, so the layout cannot drift at run time);
//! `hdf5-metno-sys`'s own copies describe an older layout and are not used. Every callback
//! runs under the library's lock and never unwinds into C.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hdf5_sys::h5::{haddr_t, herr_t, hsize_t};
use hdf5_sys::h5f::{H5Fopen, H5F_ACC_RDONLY};
use hdf5_sys::h5fd::H5FDregister;
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5p::H5Pset_driver;

use crate::readers::ranged::{source, RangeSource, Reading};

/// `H5FD_CLASS_VERSION`.
const CLASS_VERSION: c_uint = 1;
/// A value in the range HDF5 leaves to drivers of applications (256..=65535).
const DRIVER_VALUE: c_int = 60_311;
/// `H5FD_FEAT_DATA_SIEVE`: the library may read raw data in larger sieve-buffer pieces.
const FEAT_DATA_SIEVE: c_ulong = 0x8;
/// `H5F_CLOSE_WEAK`.
const CLOSE_WEAK: c_int = 1;
/// `H5FD_MEM_SUPER`, `H5FD_MEM_DRAW` (the free-list map of `H5FD_FLMAP_DICHOTOMY`).
const MEM_SUPER: c_int = 1;
const MEM_DRAW: c_int = 3;
/// Raw-data reads this large or larger are data, smaller ones are read like metadata (the
/// library's default sieve buffer).
const RAW_RUN: usize = 64 << 10;
/// `HADDR_MAX` (`HADDR_UNDEF - 1`).
const MAX_ADDR: haddr_t = u64::MAX - 1;

type Unused = Option<unsafe extern "C" fn()>;

/// `H5FD_class_t` (HDF5 2.x).
#[repr(C)]
struct DriverClass {
    version: c_uint,
    value: c_int,
    name: *const c_char,
    maxaddr: haddr_t,
    fc_degree: c_int,
    terminate: Unused,
    sb_size: Unused,
    sb_encode: Unused,
    sb_decode: Unused,
    fapl_size: usize,
    fapl_get: Unused,
    fapl_copy: Unused,
    fapl_free: Unused,
    dxpl_size: usize,
    dxpl_copy: Unused,
    dxpl_free: Unused,
    open: Option<unsafe extern "C" fn(*const c_char, c_uint, hid_t, haddr_t) -> *mut PublicFile>,
    close: Option<unsafe extern "C" fn(*mut PublicFile) -> herr_t>,
    cmp: Option<unsafe extern "C" fn(*const PublicFile, *const PublicFile) -> c_int>,
    query: Option<unsafe extern "C" fn(*const PublicFile, *mut c_ulong) -> herr_t>,
    get_type_map: Unused,
    alloc: Unused,
    free: Unused,
    get_eoa: Option<unsafe extern "C" fn(*const PublicFile, c_int) -> haddr_t>,
    set_eoa: Option<unsafe extern "C" fn(*mut PublicFile, c_int, haddr_t) -> herr_t>,
    get_eof: Option<unsafe extern "C" fn(*const PublicFile, c_int) -> haddr_t>,
    get_handle: Unused,
    read: Option<
        unsafe extern "C" fn(*mut PublicFile, c_int, hid_t, haddr_t, usize, *mut c_void) -> herr_t,
    >,
    write: Option<
        unsafe extern "C" fn(
            *mut PublicFile,
            c_int,
            hid_t,
            haddr_t,
            usize,
            *const c_void,
        ) -> herr_t,
    >,
    read_vector: Unused,
    write_vector: Unused,
    read_selection: Unused,
    write_selection: Unused,
    flush: Unused,
    truncate: Unused,
    lock: Unused,
    unlock: Unused,
    del: Unused,
    ctl: Unused,
    fl_map: [c_int; 7],
}

// SAFETY: the class is immutable and its one pointer is to a 'static C string.
unsafe impl Sync for DriverClass {}

/// `struct H5FD_t` (HDF5 2.x): the fields the library fills after `open` returns.
#[repr(C)]
struct PublicFile {
    driver_id: hid_t,
    cls: *const c_void,
    fileno: c_ulong,
    access_flags: c_uint,
    feature_flags: c_ulong,
    maxaddr: haddr_t,
    base_addr: haddr_t,
    threshold: hsize_t,
    alignment: hsize_t,
    paged_aggr: bool,
}

/// One open file of this driver: the library's part first, as HDF5 requires.
#[repr(C)]
struct RangedFile {
    public: PublicFile,
    eoa: haddr_t,
    path: PathBuf,
    source: Arc<dyn RangeSource>,
}

static CLASS: DriverClass = DriverClass {
    version: CLASS_VERSION,
    value: DRIVER_VALUE,
    name: c"slaf-convert-ranged".as_ptr(),
    maxaddr: MAX_ADDR,
    fc_degree: CLOSE_WEAK,
    terminate: None,
    sb_size: None,
    sb_encode: None,
    sb_decode: None,
    fapl_size: 0,
    fapl_get: None,
    fapl_copy: None,
    fapl_free: None,
    dxpl_size: 0,
    dxpl_copy: None,
    dxpl_free: None,
    open: Some(open_file),
    close: Some(close_file),
    cmp: Some(compare_files),
    query: Some(query_features),
    get_type_map: None,
    alloc: None,
    free: None,
    get_eoa: Some(get_eoa),
    set_eoa: Some(set_eoa),
    get_eof: Some(get_eof),
    get_handle: None,
    read: Some(read),
    write: Some(refuse_write),
    read_vector: None,
    write_vector: None,
    read_selection: None,
    write_selection: None,
    flush: None,
    truncate: None,
    lock: None,
    unlock: None,
    del: None,
    ctl: None,
    fl_map: [
        MEM_SUPER, MEM_SUPER, MEM_SUPER, MEM_DRAW, MEM_DRAW, MEM_SUPER, MEM_SUPER,
    ],
};

thread_local! {
    /// Set while this thread reads a chunk's stored bytes through the library.
    static CHUNK_DATA: Cell<bool> = const { Cell::new(false) };
}

/// Run `read` (a read of a chunk's stored bytes through the library) with its raw-data reads
/// fetched as data, however small the chunk: chunks are read in order, so their blocks are
/// read ahead.
pub fn as_chunk_data<R>(read: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CHUNK_DATA.set(false);
        }
    }
    CHUNK_DATA.set(true);
    let _reset = Reset;
    read()
}

/// The driver's id, registered on first use.
fn driver() -> hdf5::Result<hid_t> {
    static DRIVER: OnceLock<hid_t> = OnceLock::new();
    if let Some(id) = DRIVER.get() {
        return Ok(*id);
    }
    let id = hdf5::sync::sync(|| {
        // SAFETY: CLASS is 'static and laid out as the linked library's H5FD_class_t.
        hdf5::h5check(unsafe { H5FDregister((&CLASS as *const DriverClass).cast()) })
    })?;
    Ok(*DRIVER.get_or_init(|| id))
}

/// Open `path`, whose bytes come from its registered [`RangeSource`], read-only.
pub(super) fn open(path: &Path) -> hdf5::Result<hdf5::File> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| hdf5::Error::Internal("a path with a NUL byte".into()))?;
    let driver = driver()?;
    let access = hdf5::plist::FileAccess::build().finish()?;
    hdf5::sync::sync(|| {
        // SAFETY: a valid property list and driver id; the driver takes no settings.
        hdf5::h5check(unsafe { H5Pset_driver(access.id(), driver, std::ptr::null()) })?;
        // SAFETY: a NUL-terminated name and a valid access list.
        let id = hdf5::h5check(unsafe { H5Fopen(name.as_ptr(), H5F_ACC_RDONLY, access.id()) })?;
        // SAFETY: a new file id, owned by the handle from here on.
        unsafe { hdf5::from_id::<hdf5::File>(id) }
    })
}

unsafe extern "C" fn open_file(
    name: *const c_char,
    _flags: c_uint,
    _fapl: hid_t,
    _maxaddr: haddr_t,
) -> *mut PublicFile {
    let opened = std::panic::catch_unwind(|| {
        if name.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: the library passes the NUL-terminated name given to H5Fopen.
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(
            unsafe { CStr::from_ptr(name) }.to_bytes(),
        ));
        let Some(source) = source(&path) else {
            return std::ptr::null_mut();
        };
        let file = Box::new(RangedFile {
            // SAFETY: plain integers, pointers and a bool: all-zero is valid; the library
            // fills them in.
            public: unsafe { std::mem::zeroed() },
            eoa: 0,
            path,
            source,
        });
        Box::into_raw(file).cast::<PublicFile>()
    });
    opened.unwrap_or(std::ptr::null_mut())
}

unsafe extern "C" fn close_file(file: *mut PublicFile) -> herr_t {
    // SAFETY: `file` came from `open_file`'s Box::into_raw and the library closes it once.
    drop(unsafe { Box::from_raw(file.cast::<RangedFile>()) });
    0
}

unsafe extern "C" fn compare_files(a: *const PublicFile, b: *const PublicFile) -> c_int {
    // SAFETY: both were opened by `open_file`.
    let (a, b) = unsafe { (&*a.cast::<RangedFile>(), &*b.cast::<RangedFile>()) };
    match a.path.cmp(&b.path) {
        std::cmp::Ordering::Less => -1,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => 1,
    }
}

unsafe extern "C" fn query_features(_file: *const PublicFile, flags: *mut c_ulong) -> herr_t {
    if !flags.is_null() {
        // SAFETY: the library passes a valid pointer (or none).
        unsafe { *flags = FEAT_DATA_SIEVE };
    }
    0
}

unsafe extern "C" fn get_eoa(file: *const PublicFile, _kind: c_int) -> haddr_t {
    // SAFETY: opened by `open_file`.
    unsafe { (*file.cast::<RangedFile>()).eoa }
}

unsafe extern "C" fn set_eoa(file: *mut PublicFile, _kind: c_int, addr: haddr_t) -> herr_t {
    // SAFETY: opened by `open_file`; the library holds its lock.
    unsafe { (*file.cast::<RangedFile>()).eoa = addr };
    0
}

unsafe extern "C" fn get_eof(file: *const PublicFile, _kind: c_int) -> haddr_t {
    // SAFETY: opened by `open_file`.
    unsafe { (*file.cast::<RangedFile>()).source.size() }
}

unsafe extern "C" fn read(
    file: *mut PublicFile,
    kind: c_int,
    _dxpl: hid_t,
    addr: haddr_t,
    size: usize,
    buffer: *mut c_void,
) -> herr_t {
    // SAFETY: opened by `open_file`.
    let file = unsafe { &*file.cast::<RangedFile>() };
    if size == 0 {
        return 0;
    }
    if buffer.is_null() || addr.checked_add(size as u64).is_none() {
        return -1;
    }
    // SAFETY: the library hands a buffer of `size` writable bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(buffer.cast::<u8>(), size) };
    // The library hands global heap reads (variable-length strings, a few KiB a collection)
    // to the driver as raw data; reads of raw data in long runs come in sieve-buffer pieces
    // (64 KiB) or larger, or are chunks read in order (`as_chunk_data`).
    let reading = match kind {
        MEM_DRAW if size >= RAW_RUN || CHUNK_DATA.get() => Reading::Data,
        _ => Reading::Metadata,
    };
    let len = file.source.size();
    // Past the end of the object reads as zeros, as past a local file's end does.
    let within = len.saturating_sub(addr).min(size as u64) as usize;
    buf[within..].fill(0);
    if within == 0 {
        return 0;
    }
    let source = &file.source;
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        source.read_exact_at(&mut buf[..within], addr, reading)
    }));
    match read {
        Ok(Ok(())) => 0,
        _ => -1,
    }
}

unsafe extern "C" fn refuse_write(
    _file: *mut PublicFile,
    _kind: c_int,
    _dxpl: hid_t,
    _addr: haddr_t,
    _size: usize,
    _buffer: *const c_void,
) -> herr_t {
    -1
}

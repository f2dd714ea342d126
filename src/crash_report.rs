//! A last word when the HDF5 library crashes or hangs on a corrupt file.
//!
//! libhdf5 trusts what a damaged file says in places no check of ours can reach (its global
//! and local heaps, object header messages). The fuzzer finds such files (see fuzz/): with
//! Debian's 1.10 many kill the process with SIGSEGV; with the bundled 2.x we link, some still
//! make one library call loop for ever. Both end here as the usual one-line error naming the
//! file and the invalid-input exit code (65), while an HDF5 input is open (between
//! [`reading_hdf5`] and the drop of the guard it returns):
//!
//! - Crashes: [`install`] puts in a SIGSEGV/SIGBUS/SIGFPE handler. At any other time the
//!   handler that was there before (std's, which reports stack overflows) takes the signal, as
//!   if ours did not exist. Only async-signal-safe calls (write, _exit, sigaction) run in it;
//!   the message is prepared when the input is opened.
//! - Hangs: [`watch_hdf5_calls`] starts a thread that takes the library's global lock now and
//!   then (the hdf5 crate holds it around every call). When it cannot get it for the limit,
//!   one call has run that long: the lock is fair enough that a reader making many short
//!   calls lets a waiter in within about a millisecond.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// What is known of the HDF5 input open now, prepared when it was opened (leaked: one small
/// allocation per input, so a handler or the watchdog can read it while the guard drops).
struct OpenInput {
    /// The whole line the crash handler writes.
    crash_message: Vec<u8>,
    path: PathBuf,
}

/// The HDF5 input open now, or null.
static MESSAGE: AtomicPtr<OpenInput> = AtomicPtr::new(std::ptr::null_mut());

/// The signals handled, and the actions that were installed before ours.
const SIGNALS: [libc::c_int; 3] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE];
static PREVIOUS: OnceLock<[libc::sigaction; 3]> = OnceLock::new();

/// Clears the message when the HDF5 input it names is closed.
#[derive(Debug)]
pub struct ReadingGuard(*mut OpenInput);

// SAFETY: the pointer is only compared, never dereferenced, by the guard.
unsafe impl Send for ReadingGuard {}
// SAFETY: as above.
unsafe impl Sync for ReadingGuard {}

impl Drop for ReadingGuard {
    fn drop(&mut self) {
        // Only if no later input replaced it; the string itself stays leaked (a handler
        // running right now may be reading it).
        let _ = MESSAGE.compare_exchange(
            self.0,
            std::ptr::null_mut(),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

/// Record that the HDF5 file `path` is open; keep the guard as long as the file is.
pub fn reading_hdf5(path: &Path) -> ReadingGuard {
    let text = format!(
        "slaf-convert: error: {}: the HDF5 library crashed reading this file (corrupt or truncated input)\n",
        path.display()
    );
    let message = Box::into_raw(Box::new(OpenInput {
        crash_message: text.into_bytes(),
        path: path.to_path_buf(),
    }));
    MESSAGE.store(message, Ordering::Release);
    ReadingGuard(message)
}

extern "C" fn on_fatal_signal(
    signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    let message = MESSAGE.load(Ordering::Acquire);
    // SAFETY: `message` is null or a leaked OpenInput never freed; write, _exit and
    // sigaction are async-signal-safe. Without a message the previous action is put back and
    // the handler returns: the faulting instruction runs again and that action takes it.
    unsafe {
        if !message.is_null() {
            let bytes: &[u8] = &(*message).crash_message;
            libc::write(2, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(crate::error::exit_code::INVALID_INPUT as libc::c_int);
        }
        let previous = PREVIOUS.get().and_then(|p| {
            SIGNALS
                .iter()
                .position(|&s| s == signal)
                .map(|i| &p[i] as *const libc::sigaction)
        });
        match previous {
            Some(action) => {
                libc::sigaction(signal, action, std::ptr::null_mut());
            }
            None => {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
    }
}

/// Install the handler for SIGSEGV, SIGBUS and SIGFPE (the binary calls this once, first,
/// after std has installed its own).
pub fn install() {
    // SAFETY: zeroed sigactions are valid "no action" values to be filled by sigaction; ours
    // runs on the alternate stack std sets up for every thread it starts (a crash may be a
    // stack overflow, which std's handler then reports).
    unsafe {
        let mut previous: [libc::sigaction; 3] = std::mem::zeroed();
        for (i, &signal) in SIGNALS.iter().enumerate() {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as *const () as usize;
            action.sa_flags = libc::SA_ONSTACK | libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, &mut previous[i]);
        }
        let _ = PREVIOUS.set(previous);
    }
}

/// Start the watchdog thread: when one call into the HDF5 library runs longer than `limit`
/// while an input is open, print the one-line error naming the file and exit with 65.
///
/// The limit is far above any honest call (the longest read whole arrays of strings, seconds
/// per million); a file system that stalls that long ends the same way, and the message says
/// so. Calls made with no input open (none today) are left to run.
pub fn watch_hdf5_calls(limit: Duration) {
    let spawned = std::thread::Builder::new()
        .name("hdf5-watchdog".into())
        .spawn(move || loop {
            match hdf5_sys::LOCK.try_lock_for(limit) {
                Some(lock) => {
                    drop(lock);
                    std::thread::sleep(limit.min(Duration::from_secs(1)));
                }
                None => {
                    let open = MESSAGE.load(Ordering::Acquire);
                    if open.is_null() {
                        continue;
                    }
                    // SAFETY: a non-null pointer is a leaked OpenInput, never freed.
                    let path = unsafe { &(*open).path };
                    eprintln!(
                        "slaf-convert: error: {}: the HDF5 library made no progress for {} s reading this file (a corrupt file can make it loop; if the file system is that slow, raise --hdf5-timeout)",
                        path.display(),
                        limit.as_secs()
                    );
                    // _exit: the reading thread holds the library's lock and may hold others
                    // that exit's handlers would wait for.
                    // SAFETY: ends the process; nothing after it runs.
                    unsafe { libc::_exit(crate::error::exit_code::INVALID_INPUT as libc::c_int) };
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(event = "hdf5.watchdog_unavailable", error = %e, "cannot start the HDF5 watchdog thread; a looping library call will not be stopped");
    }
}

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
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What the handler and the watchdog say, prepared whenever an HDF5 input opens or closes
/// (leaked: one small allocation each time, so a handler can read it while inputs change).
struct OpenInputs {
    /// The whole line the crash handler writes.
    crash_message: Vec<u8>,
    /// The file(s) the watchdog's line names.
    names: String,
    /// "this file" or "one of these files".
    which: &'static str,
}

/// What to say about the HDF5 inputs open now, or null when none is.
static MESSAGE: AtomicPtr<OpenInputs> = AtomicPtr::new(std::ptr::null_mut());

/// The HDF5 inputs open now, by guard id. Planning opens every input before scanning any,
/// so several can be open; a crash or hang then names them all.
static OPEN: Mutex<Vec<(u64, PathBuf)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The signals handled, and the actions that were installed before ours.
const SIGNALS: [libc::c_int; 3] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE];
static PREVIOUS: OnceLock<[libc::sigaction; 3]> = OnceLock::new();

/// Removes its input from the open ones when the HDF5 file is closed.
#[derive(Debug)]
pub struct ReadingGuard(u64);

impl Drop for ReadingGuard {
    fn drop(&mut self) {
        update_open(|open| open.retain(|(id, _)| *id != self.0));
    }
}

/// Record that the HDF5 file `path` is open; keep the guard as long as the file is.
pub fn reading_hdf5(path: &Path) -> ReadingGuard {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    update_open(|open| open.push((id, path.to_path_buf())));
    ReadingGuard(id)
}

/// Change the set of open inputs and prepare what a crash or hang would say about it.
fn update_open(change: impl FnOnce(&mut Vec<(u64, PathBuf)>)) {
    let mut open = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    change(&mut open);
    let prepared = if open.is_empty() {
        std::ptr::null_mut()
    } else {
        let names: Vec<String> = open.iter().map(|(_, p)| p.display().to_string()).collect();
        let names = names.join(", ");
        let which = match open.len() {
            1 => "this file",
            _ => "one of these files",
        };
        Box::into_raw(Box::new(OpenInputs {
            crash_message: format!(
                "slaf-convert: error: {names}: the HDF5 library crashed reading {which} (corrupt or truncated input)\n"
            )
            .into_bytes(),
            names,
            which,
        }))
    };
    // The previous message stays leaked: a handler running right now may be reading it.
    MESSAGE.store(prepared, Ordering::Release);
}

extern "C" fn on_fatal_signal(
    signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    let message = MESSAGE.load(Ordering::Acquire);
    // SAFETY: `message` is null or a leaked OpenInputs never freed; write, _exit and
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

/// Reads waiting on an object store now (`store_wait`).
static STORE_WAITS: AtomicUsize = AtomicUsize::new(0);

/// While the guard lives, a call into the HDF5 library is waiting on an object store (its
/// driver reading a file in a store), not looping: the watchdog leaves it to the store's
/// retry limit, which ends it as the store's error.
pub fn store_wait() -> StoreWaitGuard {
    STORE_WAITS.fetch_add(1, Ordering::AcqRel);
    StoreWaitGuard(())
}

/// See [`store_wait`].
pub struct StoreWaitGuard(());

impl Drop for StoreWaitGuard {
    fn drop(&mut self) {
        STORE_WAITS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Start the watchdog thread: when one call into the HDF5 library runs longer than `limit`
/// while an input is open, print the one-line error naming the file and exit with 65.
///
/// The limit is far above any honest call (the longest read whole arrays of strings, seconds
/// per million); a file system that stalls that long ends the same way, and the message says
/// so. The lock is tried a second at a time: a try that took far longer than asked means the
/// process was stopped (SIGSTOP, a suspended job), and the count starts over. Calls made with
/// no input open (none today) are left to run.
pub fn watch_hdf5_calls(limit: Duration) {
    let spawned = std::thread::Builder::new()
        .name("hdf5-watchdog".into())
        .spawn(move || {
            let step = limit.min(Duration::from_secs(1));
            let mut held = Duration::ZERO;
            loop {
                let tried = Instant::now();
                if let Some(lock) = hdf5_sys::LOCK.try_lock_for(step) {
                    drop(lock);
                    held = Duration::ZERO;
                    std::thread::sleep(step);
                    continue;
                }
                let took = tried.elapsed();
                held = match took > step * 5 || STORE_WAITS.load(Ordering::Acquire) > 0 {
                    // Stopped, or waiting on a store: the store's own retry limit ends that.
                    true => Duration::ZERO,
                    false => held + took,
                };
                if held >= limit {
                    report_hang(limit);
                    held = Duration::ZERO; // no input open: not ours to stop
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(event = "hdf5.watchdog_unavailable", error = %e, "cannot start the HDF5 watchdog thread ({e}): a looping library call will not be stopped");
    }
}

/// If an input is open, write the hang's one-line error and end the process with 65.
fn report_hang(limit: Duration) {
    let open = MESSAGE.load(Ordering::Acquire);
    if open.is_null() {
        return;
    }
    // SAFETY: a non-null pointer is a leaked OpenInputs, never freed.
    let (names, which) = unsafe { (&(*open).names, (*open).which) };
    // A new line first: a progress bar may be drawn on the current one.
    let line = format!(
        "\nslaf-convert: error: {names}: the HDF5 library made no progress for {} s reading {which} (a corrupt file can make it loop; if the file system is that slow, raise --hdf5-timeout)\n",
        limit.as_secs()
    );
    // write and _exit, not eprintln and exit: the reading thread holds the library's lock
    // and may hold others that exit's handlers would wait for, and a failed write to stderr
    // must not end this thread instead of the process.
    // SAFETY: writes bytes that live until _exit, which ends the process.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(crate::error::exit_code::INVALID_INPUT as libc::c_int);
    }
}

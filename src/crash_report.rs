//! A last word when the HDF5 library crashes on a corrupt file.
//!
//! libhdf5 (Debian's 1.10) dereferences what a damaged file says in places no check of ours
//! can reach (its global heap, object header messages): such a file kills the process with
//! SIGSEGV. The fuzzer finds these (see fuzz/). The binary installs a handler that, while an
//! HDF5 input is open (between [`reading_hdf5`] and the drop of the guard it returns), writes
//! the usual one-line error naming that file and exits with the invalid-input code (65)
//! instead of dying by a bare signal. At any other time the handler that was there before
//! (std's, which reports stack overflows) takes the signal, as if ours did not exist. Only
//! async-signal-safe calls (write, _exit, sigaction) run in the handler; the message is
//! prepared when the input is opened.

use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

/// The prepared message for the HDF5 input open now (leaked: one small string per input).
static MESSAGE: AtomicPtr<Vec<u8>> = AtomicPtr::new(std::ptr::null_mut());

/// The signals handled, and the actions that were installed before ours.
const SIGNALS: [libc::c_int; 3] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE];
static PREVIOUS: OnceLock<[libc::sigaction; 3]> = OnceLock::new();

/// Clears the message when the HDF5 input it names is closed.
#[derive(Debug)]
pub struct ReadingGuard(*mut Vec<u8>);

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
    let message = Box::into_raw(Box::new(text.into_bytes()));
    MESSAGE.store(message, Ordering::Release);
    ReadingGuard(message)
}

extern "C" fn on_fatal_signal(
    signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    let message = MESSAGE.load(Ordering::Acquire);
    // SAFETY: `message` is null or a leaked Vec that is never freed; write, _exit and
    // sigaction are async-signal-safe. Without a message the previous action is put back and
    // the handler returns: the faulting instruction runs again and that action takes it.
    unsafe {
        if !message.is_null() {
            let bytes: &[u8] = &*message;
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

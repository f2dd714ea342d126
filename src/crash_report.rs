//! A last word when the HDF5 library crashes on a corrupt file.
//!
//! libhdf5 (Debian's 1.10) dereferences what a damaged file says in places no check of ours
//! can reach (its global heap, B-tree nodes): such a file kills the process with SIGSEGV.
//! The fuzzer finds these (see fuzz/). The binary installs a handler that, while an HDF5
//! input is open, writes the usual one-line error naming that file and exits with the
//! invalid-input code (65) instead of dying by a bare signal; at any other time the signal
//! keeps its default action. Only async-signal-safe calls (write, _exit) run in the handler;
//! the message is prepared when the input is opened.

use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The prepared message for the HDF5 input open now (leaked: one small string per input).
static MESSAGE: AtomicPtr<Vec<u8>> = AtomicPtr::new(std::ptr::null_mut());

/// Record that the HDF5 file `path` is being read.
pub fn reading_hdf5(path: &Path) {
    let text = format!(
        "slaf-convert: error: {}: the HDF5 library crashed reading this file (corrupt or truncated input)\n",
        path.display()
    );
    let message = Box::into_raw(Box::new(text.into_bytes()));
    MESSAGE.store(message, Ordering::Release);
}

extern "C" fn on_fatal_signal(signal: libc::c_int) {
    let message = MESSAGE.load(Ordering::Acquire);
    // SAFETY: `message` is null or a leaked Vec that is never freed; write and _exit are
    // async-signal-safe. Without a message, the default action is restored and the signal
    // raised again, so the process dies as it would have.
    unsafe {
        if !message.is_null() {
            let bytes: &[u8] = &*message;
            libc::write(2, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(crate::error::exit_code::INVALID_INPUT as libc::c_int);
        }
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// Install the handler for SIGSEGV, SIGBUS and SIGFPE (the binary calls this once, first).
pub fn install() {
    for signal in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE] {
        // SAFETY: a zeroed sigaction with our handler, run on the alternate stack std sets up
        // for its own stack-overflow handler (a crash may be a stack overflow).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as *const () as usize;
            action.sa_flags = libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

//! The one raw call of `crate::cases`: installing the `SIGINT`/`SIGTERM` handler that lets
//! `ifpin demo` stop between cases and remove its namespaces instead of dying with them in place.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the signal handler; read by [`interrupted`].
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for `SIGINT` and `SIGTERM` with `SA_RESETHAND`, so a second signal
/// kills the process the usual way.
pub(crate) fn install_interrupt_handler() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; all-zero is a valid (empty) value.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
        // SAFETY: `action` is initialised, the handler only stores to an atomic, and a null
        // old-action pointer is allowed.
        let rc = unsafe { libc::sigaction(signal, &raw const action, std::ptr::null_mut()) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether `SIGINT`/`SIGTERM` arrived since [`install_interrupt_handler`].
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

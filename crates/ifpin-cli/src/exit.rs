//! Exit codes shared by every subcommand, and how errors are printed.

use std::io::Write;
use std::process::ExitCode;

use crate::text::Escaped;

/// Everything went as hoped: reachable, nothing leaked, no violation.
pub const OK: u8 = 0;
/// The command ran and found a problem: a leak, a violation, not reachable.
pub const FOUND: u8 = 1;
/// A usage or system error: bad input, missing privilege, failed syscall.
pub const ERROR: u8 = 2;

/// Prints an error chain (`error: ...` then `  caused by: ...`) and maps it to [`ERROR`].
/// Control characters in the messages (a path, a name) are escaped; a closed stderr is not an
/// error of its own.
pub fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "ifpin: error: {}", Escaped(&err.to_string()));
            for cause in err.chain().skip(1) {
                let _ = writeln!(stderr, "  caused by: {}", Escaped(&cause.to_string()));
            }
            ExitCode::from(ERROR)
        }
    }
}

/// Prints `ifpin: warning: ...` on stderr, escaped, ignoring a closed stderr.
pub fn warn(message: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "ifpin: warning: {}",
        Escaped(message)
    );
}

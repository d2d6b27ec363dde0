//! Exit codes shared by every subcommand, and how errors are printed.

use std::process::ExitCode;

/// Everything went as hoped: reachable, nothing leaked, no violation.
pub const OK: u8 = 0;
/// The command ran and found a problem: a leak, a violation, not reachable.
pub const FOUND: u8 = 1;
/// A usage or system error: bad input, missing privilege, failed syscall.
pub const ERROR: u8 = 2;

/// Prints an error chain (`error: ...` then `  caused by: ...`) and maps it to [`ERROR`].
pub fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ifpin: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(ERROR)
        }
    }
}

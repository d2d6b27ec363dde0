//! Exit codes shared by every subcommand, and how errors are printed.
//!
//! One contract for every command: an error is `ifpin: error: ...` and its causes on stderr,
//! or, with `--json`, one JSON object `{"error": ..., "causes": [...], "exit": 2}` on one line
//! of the stream the command prints its results on (stdout; stderr for `exec`, whose stdout
//! belongs to the program). A closed stdout (`ifpin audit | head -1`) ends the command quietly.

use std::io::{self, Write};
use std::process::ExitCode;

use crate::text::Escaped;

/// Everything went as hoped: reachable, nothing leaked, no violation.
pub const OK: u8 = 0;
/// The command ran and found a problem: a leak, a violation, not reachable.
pub const FOUND: u8 = 1;
/// A usage or system error: bad input, missing privilege, failed syscall.
pub const ERROR: u8 = 2;

/// Where a command's results, and so its `--json` errors, go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error (`exec`: its stdout is the program's).
    Stderr,
}

/// How errors are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorFormat {
    /// Text on stderr.
    Text,
    /// One JSON object on this stream.
    Json(Stream),
}

/// Maps a command's result to its exit code, printing an error as `format` says.
pub fn finish(result: anyhow::Result<ExitCode>, format: ErrorFormat) -> ExitCode {
    let err = match result {
        Ok(code) => return code,
        Err(err) => err,
    };
    if is_broken_pipe(&err) {
        // The reader went away (`| head`): nothing left to say, and no one to say it to.
        return ExitCode::from(OK);
    }
    match format {
        ErrorFormat::Text => {
            // Control characters in the messages (a path, a name) are escaped; a closed
            // stderr is not an error of its own.
            let mut stderr = io::stderr().lock();
            let _ = writeln!(stderr, "ifpin: error: {}", Escaped(&err.to_string()));
            for cause in err.chain().skip(1) {
                let _ = writeln!(stderr, "  caused by: {}", Escaped(&cause.to_string()));
            }
        }
        ErrorFormat::Json(stream) => {
            let line = error_json(&err).to_string();
            let _ = match stream {
                Stream::Stdout => writeln!(io::stdout().lock(), "{line}"),
                Stream::Stderr => writeln!(io::stderr().lock(), "{line}"),
            };
        }
    }
    ExitCode::from(ERROR)
}

/// Prints `ifpin: warning: ...` on stderr, escaped, ignoring a closed stderr.
pub fn warn(message: &str) {
    let _ = writeln!(io::stderr().lock(), "ifpin: warning: {}", Escaped(message));
}

/// The one shape of a `--json` error.
pub fn error_json(err: &anyhow::Error) -> serde_json::Value {
    let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
    serde_json::json!({ "error": err.to_string(), "causes": causes, "exit": ERROR })
}

/// Whether the failure is a write to a closed pipe.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Writes `text` and a newline to stdout; a closed stdout is an `io::Error` of kind
/// `BrokenPipe` (which [`finish`] turns into a quiet end), never a panic.
pub fn print_line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_have_one_shape() {
        let err = anyhow::anyhow!("inner").context("outer");
        let v = error_json(&err);
        assert_eq!(v["error"], "outer");
        assert_eq!(v["causes"], serde_json::json!(["inner"]));
        assert_eq!(v["exit"], 2);
    }

    #[test]
    fn a_closed_pipe_is_a_quiet_end() {
        let err = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("cannot write the report");
        assert_eq!(finish(Err(err), ErrorFormat::Text), ExitCode::from(OK));
    }
}

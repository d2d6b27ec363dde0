//! Shared by the `ifpin audit` black-box tests (`audit_cli.rs`, `audit_netns.rs`): run the built
//! binary, check its exit code, write a policy file, parse a JSON report.

// Each test binary uses some of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Runs the `ifpin` binary under test with `args` in the test's own namespace.
pub fn ifpin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ifpin"))
        .args(args)
        .output()
        .expect("run ifpin")
}

/// Writes `text` as `policy.toml` in `dir` and returns its path.
pub fn write_policy(dir: &Path, text: &str) -> String {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Asserts that `ifpin` exited with `code`, showing what it printed otherwise.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The JSON on `output`'s stdout; panics showing stdout and stderr if it is not JSON.
pub fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "not JSON ({err}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

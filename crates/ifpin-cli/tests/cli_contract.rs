//! The contract every subcommand keeps, tried on the built binary with bad input (no
//! privilege needed): exit code 2, a message naming the input, and with `--json` one JSON
//! object of one shape (`error`, `causes`, `exit`) on the command's result stream, nothing
//! else on it; unknown flags of `exec` are errors that name the flag.

#[path = "support/mod.rs"]
mod support;

use support::run_ifpin as ifpin;

fn one_json_object(stream: &[u8], what: &str) -> serde_json::Value {
    let text = String::from_utf8_lossy(stream);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one line expected, got {text:?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{what}: {e}: {text:?}"))
}

#[test]
fn json_errors_have_one_shape_on_the_result_stream() {
    let too_long = "a-name-of-16-byte";
    let cases: [(&[&str], bool); 3] = [
        (
            &["probe", "-i", too_long, "tcp://192.0.2.1:7", "--json"],
            true,
        ),
        (
            &["audit", "--policy", "/nonexistent/ifpin.toml", "--json"],
            true,
        ),
        (&["exec", "-i", too_long, "--json", "--", "true"], false),
    ];
    for (args, on_stdout) in cases {
        let out = ifpin(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let (results, other) = if on_stdout {
            (&out.stdout, &out.stderr)
        } else {
            (&out.stderr, &out.stdout)
        };
        let v = one_json_object(results, &format!("{args:?}"));
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["causes", "error", "exit"], "{args:?}: {v}");
        assert_eq!(v["exit"], 2);
        assert!(
            other.is_empty(),
            "{args:?}: nothing on the other stream: {}",
            String::from_utf8_lossy(other)
        );
    }
}

#[test]
fn exec_refuses_unknown_flags_by_name() {
    // A typo before `--` is a usage error naming the flag, not a program to run.
    for args in [
        &["exec", "-i", "lo", "--levle", "sealed", "--", "true"][..],
        &["exec", "--levle", "sealed", "-i", "lo", "--", "true"][..],
    ] {
        let out = ifpin(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--levle"), "{args:?}: {stderr}");
        assert!(!stderr.contains("cannot run"), "{args:?}: {stderr}");
    }
    // After `--`, and after the program's name, arguments are the program's own.
    let out = ifpin(&["exec", "--help"]);
    assert_eq!(out.status.code(), Some(0));
}

//! `netlab-escape`: a hostile program for `ifpin exec` tests. Run as uid 0 under `ifpin exec`,
//! it tries one named way of getting traffic out of another interface or out of its
//! confinement, and prints one JSON line saying what the kernel answered to each step:
//!
//! ```text
//! {"attack": NAME, "steps": [{"call": "...", "result": "ok" | "EPERM" | ..., "detail": ...}], ...}
//! ```
//!
//! It counts no frames itself; the test around it does. Some attacks print plain lines first
//! (`pid N`, `ready`) so the test can act while they run; the JSON line is always the last.
//!
//! ```text
//! netlab-escape clone3-cgroup    --dst ADDR --port N
//! netlab-escape write-same       --path FILE              (writes back the current value)
//! netlab-escape open-write       --path FILE              (opens for writing, writes nothing)
//! netlab-escape proc-root-cgroup --pid P --uid U --dst ADDR --port N
//! netlab-escape borrow-fd        --pid P --fd N --uid U --dst ADDR --port N
//! netlab-escape mcast            --index I --group4 G --ssm-group G --ssm-source S --group6 G
//!                                [--iface-addr A --legacy-group G --join-group G --source-group G]
//! netlab-escape errqueue         --port N --wait-ms MS
//! netlab-escape kill-parent
//! netlab-escape int80-bindtodevice --iface NAME
//! netlab-escape nested-cgroup    --dst ADDR --port N
//! netlab-escape bind-port        --port N
//! netlab-escape io-uring
//! netlab-escape bpf
//! ```
//! Exit status 0 whatever the kernel answered (a refusal is an outcome), 2 on bad arguments.
//!
//! The attacks are those of `ifpin_demo::catalogue::escape` (one copy, which `ifpin demo` also
//! runs at each level); this program only parses the arguments and prints the result.

use std::process::ExitCode;

use netlab::vectors::escape::{self, EscapeArgs};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(attack) = args.next() else {
        eprintln!("netlab-escape: usage: netlab-escape ATTACK [--key value]...");
        return ExitCode::from(2);
    };
    let result = EscapeArgs::parse(args).and_then(|parsed| escape::run(&attack, &parsed));
    match result.and_then(|report| serde_json::to_string(&report).map_err(|e| e.to_string())) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netlab-escape: {e}");
            ExitCode::from(2)
        }
    }
}

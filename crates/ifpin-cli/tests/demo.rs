//! `ifpin demo` as a black box: the built binary, its output, its exit code, and what it leaves
//! in `/run/netns` (nothing).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const IFPIN: &str = env!("CARGO_BIN_EXE_ifpin");

/// Namespaces a process with this pid created (netlab names them `nl-<label>-<pid>-<n>`).
fn namespaces_of(pid: u32) -> Vec<String> {
    let marker = format!("-{pid}-");
    std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("nl-") && name.contains(&marker))
                .collect()
        })
        .unwrap_or_default()
}

/// The confinement cgroups a process with this pid made (`<cgroup2>/ifpin/run-<pid>-…`).
fn cgroups_of(pid: u32) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(mount) = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split(' ').nth(4).map(str::to_owned))
            .flatten()
    }) else {
        return Vec::new();
    };
    let prefix = format!("run-{pid}-");
    std::fs::read_dir(format!("{mount}/ifpin"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn run_demo(args: &[&str]) -> (Output, u32) {
    let child = Command::new(IFPIN)
        .arg("demo")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning ifpin demo");
    let pid = child.id();
    (
        child.wait_with_output().expect("waiting for ifpin demo"),
        pid,
    )
}

#[test]
fn demo_exits_0_prints_every_section_and_leaves_nothing_behind() {
    if !netlab::require_privileged() {
        return;
    }
    let (out, pid) = run_demo(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "negative controls",
        "pinned sockets",
        "ingress",
        "kernel findings: why the enforced level exists",
        "LEAKS (as expected)",
        "summary",
        "result: OK",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in:\n{stdout}");
    }
    for case in netlab::cases::plan() {
        let shown = case.id.trim_start_matches("finding-");
        assert!(stdout.contains(shown), "case {shown} not shown:\n{stdout}");
    }
    assert!(namespaces_of(pid).is_empty(), "{:?}", namespaces_of(pid));
    assert!(cgroups_of(pid).is_empty(), "{:?}", cgroups_of(pid));
}

#[test]
fn demo_json_has_every_case_with_frame_counts_and_verdicts() {
    if !netlab::require_privileged() {
        return;
    }
    let (out, pid) = run_demo(&["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["exit_code"], 0);
    assert_eq!(doc["summary"]["ok"], true);
    assert!(doc["kernel"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(
        doc["pinning"]
            .as_str()
            .is_some_and(|p| p.contains("ifpin library")),
        "{}",
        doc["pinning"]
    );
    let cases = doc["cases"].as_array().expect("cases array");
    let ids: Vec<&str> = cases.iter().filter_map(|c| c["id"].as_str()).collect();
    let planned: Vec<String> = netlab::cases::plan().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, planned, "every planned case, in order");
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let front = case["frames"]["front"].as_u64().expect("front count");
        let ctl0 = case["frames"]["ctl0"].as_u64().expect("ctl0 count");
        match case["section"].as_str().unwrap() {
            "negative-control" => {
                assert!(front > 0, "{id}: the negative control must leak: {case}");
                assert_eq!(case["verdict"], "leaked", "{id}");
            }
            "pinned" if id == "pinned-foreign-scope" || id == "pinned-bind-linklocal" => {
                // The library refuses a scope naming another interface before anything is sent.
                assert_eq!(case["verdict"], "refused", "{id}: {case}");
                assert_eq!(front + ctl0, 0, "{id}: nothing sent at all: {case}");
                assert!(
                    case["outcome"]
                        .as_str()
                        .is_some_and(|o| o.contains("refused before anything was sent")),
                    "{id}: {case}"
                );
            }
            "pinned" => {
                assert_eq!(front, 0, "{id}: {case}");
                assert!(ctl0 > 0, "{id}: {case}");
                assert_eq!(case["verdict"], "no-leak", "{id}");
                assert_eq!(case["outcome"], "answered by backplane", "{id}");
            }
            "ingress" => assert_eq!(case["verdict"], "refused", "{id}: {case}"),
            "kernel-finding" | "lifecycle" => {
                // Measured, so only the shape is fixed here: an answer from the kernel, and a
                // verdict that agrees with the front-link count.
                if id != "finding-ifindex-reuse" {
                    assert!(case["attempt"]["answer"].is_string(), "{id}: {case}");
                }
                let leaked = case["verdict"] == "leaked";
                assert_eq!(leaked, front > 0, "{id}: {case}");
                assert!(case["documented"].is_object(), "{id}: {case}");
                assert!(
                    case["documented_in"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("docs/kernel.md#")),
                    "{id}: {case}"
                );
            }
            other => panic!("unknown section {other}"),
        }
    }
    let summary = &doc["summary"];
    let leaking = summary["vectors_leaking"].as_array().unwrap().len();
    let contained = summary["vectors_contained"].as_array().unwrap().len();
    let findings = netlab::cases::plan()
        .into_iter()
        .filter(|c| {
            matches!(
                c.section,
                netlab::cases::Section::KernelFinding | netlab::cases::Section::Lifecycle
            )
        })
        .count();
    assert_eq!(leaking + contained, findings);

    // What each level holds: every override vector that leaked from a pinned socket, run again
    // under `ifpin exec` at enforced and sealed (its pinned cell is the finding), and every
    // escape vector at the three levels.
    let levels = doc["levels"]["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("levels section missing: {}", doc["levels_skipped"]));
    let leaked_vectors: Vec<String> = cases
        .iter()
        .filter(|c| c["section"] == "kernel-finding" && c["verdict"] == "leaked")
        .map(|c| {
            c["id"]
                .as_str()
                .unwrap()
                .trim_start_matches("finding-")
                .to_owned()
        })
        .collect();
    assert!(!leaked_vectors.is_empty());
    let escapes: Vec<&str> = ifpin_demo::catalogue::Escape::ALL
        .iter()
        .map(|e| e.id())
        .collect();
    for level in ["pinned", "enforced", "sealed"] {
        let at: Vec<&serde_json::Value> = levels.iter().filter(|c| c["level"] == level).collect();
        let overrides: Vec<&str> = at
            .iter()
            .filter(|c| c["kind"] == "override")
            .map(|c| c["vector"].as_str().unwrap())
            .collect();
        assert_eq!(
            overrides, leaked_vectors,
            "{level}: the same vectors, in order"
        );
        let escaped: Vec<&str> = at
            .iter()
            .filter(|c| c["kind"] == "escape")
            .map(|c| c["vector"].as_str().unwrap())
            .collect();
        assert_eq!(escaped, escapes, "{level}: every escape vector, in order");
        for case in at {
            let front = case["frames"]["front"].as_u64().unwrap();
            let vector = case["vector"].as_str().unwrap();
            assert_eq!(case["exec"], level != "pinned" || case["kind"] == "escape");
            if front > 0 {
                assert_eq!(case["got_out"], true, "{case}");
            }
            // The levels' promises (README, docs/kernel.md): enforced, no IP packet leaves
            // elsewhere (an AF_PACKET frame is not IP: the filter cannot see it); sealed,
            // nothing at all, and no escape gets out.
            if level == "sealed" {
                assert_eq!(front, 0, "sealed must hold against {vector}: {case}");
                assert_eq!(
                    case["got_out"], false,
                    "sealed must hold against {vector}: {case}"
                );
            }
            if level == "enforced" && case["kind"] == "override" && vector != "packet-btd" {
                assert_eq!(front, 0, "enforced must block {vector}: {case}");
            }
        }
    }
    assert!(namespaces_of(pid).is_empty());
    assert!(cgroups_of(pid).is_empty(), "{:?}", cgroups_of(pid));
}

#[test]
fn demo_without_root_says_so_and_exits_2() {
    // As root, drop to nobody with setpriv; as a normal user, run it directly.
    let mut command = if netlab::privilege_problem().is_none() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            IFPIN,
        ]);
        c
    } else {
        Command::new(IFPIN)
    };
    let json = {
        let mut c = Command::new(command.get_program());
        c.args(command.get_args());
        c
    };
    let out = command
        .arg("demo")
        .output()
        .expect("running ifpin demo unprivileged");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(stderr.contains("sudo ifpin demo"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", out.stdout);

    // With --json the same error is one JSON object on stdout, and nothing on stderr.
    let mut json = json;
    let out = json
        .args(["demo", "--json"])
        .output()
        .expect("running ifpin demo --json unprivileged");
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(v.to_string().contains("needs root"), "{v}");
    assert_eq!(v["exit"], 2);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn demo_interrupted_with_ctrl_c_removes_its_namespaces() {
    if !netlab::require_privileged() {
        return;
    }
    let child = Command::new(IFPIN)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning ifpin demo");
    let pid = child.id();
    // Wait until the chassis exists (three namespaces), then interrupt it mid-run.
    let deadline = Instant::now() + Duration::from_secs(20);
    while namespaces_of(pid).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(namespaces_of(pid).len(), 3, "the chassis was never built");
    let pid_t = libc::pid_t::try_from(pid).expect("pid fits");
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid_t, libc::SIGINT) }, 0);
    let out = child.wait_with_output().expect("waiting for ifpin demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        namespaces_of(pid).is_empty(),
        "left behind: {:?}",
        namespaces_of(pid)
    );
}

#[test]
fn demo_interrupted_during_the_levels_removes_its_cgroup_and_namespaces() {
    if !netlab::require_privileged() {
        return;
    }
    let mut child = Command::new(IFPIN)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning ifpin demo");
    let pid = child.id();
    // The levels section starts with its heading, then runs `ifpin exec` children: wait for
    // the second row (its first `ifpin exec` runs are under way), then interrupt.
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut rows = None;
    for line in lines.by_ref() {
        let line = line.expect("reading the demo's output");
        if line.starts_with("levels:") {
            rows = Some(0);
        } else if let Some(n) = rows.as_mut().filter(|_| line.starts_with("  ")) {
            *n += 1;
            if *n == 2 {
                break;
            }
        }
    }
    assert_eq!(rows, Some(2), "the levels section never started");
    let children = children_of(pid);
    std::thread::spawn(move || lines.for_each(drop));
    let pid_t = libc::pid_t::try_from(pid).expect("pid fits");
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid_t, libc::SIGINT) }, 0);
    let out = child.wait_with_output().expect("waiting for ifpin demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(namespaces_of(pid).is_empty(), "{:?}", namespaces_of(pid));
    for child in children {
        assert!(cgroups_of(child).is_empty(), "{:?}", cgroups_of(child));
    }
}

/// The children of process `pid` (its threads' `children` files).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|c| {
                    c.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

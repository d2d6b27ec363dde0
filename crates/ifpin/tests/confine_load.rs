//! Loading and attaching the confinement programs in a throwaway cgroup (no traffic): every
//! level, with and without loopback, passes the verifier on this kernel, attaches, and is
//! gone without a trace after `close`.

use std::os::fd::AsFd;

use ifpin::bpf::{Asm, Insn, LoadError, Program, Reg};
use ifpin::bpf::{AttachType, ProgType};
use ifpin::confine::{ConfineOptions, Confinement};
use ifpin::{Interface, Level};

fn privileged() -> bool {
    netlab::require_privileged()
}

#[test]
fn every_level_loads_attaches_and_leaves_nothing_behind() {
    if !privileged() {
        return;
    }
    let lo = Interface::loopback().unwrap();
    for level in Level::ALL {
        for allow_loopback in [false, true] {
            let confinement = Confinement::create(ConfineOptions {
                interface: lo.clone(),
                level,
                allow_loopback,
            })
            .unwrap_or_else(|e| panic!("{level} loopback={allow_loopback}: {e}"));
            let path = confinement.cgroup_path().to_owned();
            assert!(path.is_dir());
            // The kernel holds exactly what the level's table says, at the right hooks.
            let mut attached: Vec<AttachType> = Confinement::attached_program_ids(&path)
                .unwrap()
                .into_iter()
                .map(|(attach, _)| attach)
                .collect();
            let mut planned: Vec<AttachType> =
                ifpin::confine::plan::attachments(level, allow_loopback)
                    .iter()
                    .map(|a| a.attach_type)
                    .collect();
            attached.sort_by_key(|a| format!("{a:?}"));
            planned.sort_by_key(|a| format!("{a:?}"));
            assert_eq!(attached, planned, "{level} loopback={allow_loopback}");
            // And the table itself, as the README's level table describes it.
            let expected = match (level, allow_loopback) {
                (Level::Pinned, false) => 1,
                (Level::Enforced, false) => 4,
                (Level::Sealed, false) => 5,
                (Level::Pinned, true) => 6,
                (Level::Enforced, true) => 9,
                (Level::Sealed, true) => 9,
            };
            assert_eq!(planned.len(), expected, "{level} loopback={allow_loopback}");
            assert!(!confinement.is_populated().unwrap());
            let counters = confinement.close().unwrap();
            assert_eq!(counters, ifpin::Counters::default());
            assert!(!path.exists(), "cgroup {} left behind", path.display());
        }
    }
}

#[test]
fn a_dropped_empty_confinement_is_removed() {
    if !privileged() {
        return;
    }
    let confinement = Confinement::create(ConfineOptions {
        interface: Interface::loopback().unwrap(),
        level: Level::Sealed,
        allow_loopback: false,
    })
    .unwrap();
    let path = confinement.cgroup_path().to_owned();
    drop(confinement);
    assert!(!path.exists());
}

#[test]
fn verifier_rejections_carry_the_log() {
    if !privileged() {
        return;
    }
    // Reads r2 before anything wrote it: the verifier must refuse.
    let mut asm = Asm::new();
    asm.push(Insn::mov64_reg(Reg::R0, Reg::R2))
        .push(Insn::exit());
    let err = Program::load(
        "ifpin_bad",
        ProgType::CgroupSkb,
        AttachType::CgroupInetEgress,
        asm.finish(),
    )
    .unwrap_err();
    match &err {
        LoadError::Verifier { log, .. } => assert!(log.contains("R2 !read_ok"), "log: {log}"),
        other => panic!("expected a verifier rejection, got {other:?}"),
    }
    let _ = err.to_string();

    // And a good one loads.
    let mut asm = Asm::new();
    asm.ret(1);
    let program = Program::load(
        "ifpin_ok",
        ProgType::CgroupSkb,
        AttachType::CgroupInetEgress,
        asm.finish(),
    )
    .unwrap();
    let _ = program.as_fd();
}

const OWNER_ENV: &str = "IFPIN_TEST_CONFINE_PID";

/// Run only by `stale_confinements_are_left_while_populated_and_removed_once_empty`, in a
/// child process: confines the pid it is given and exits without closing.
#[test]
#[ignore = "helper: run in a child process by the stale-cleanup test"]
fn confine_and_exit_without_closing() {
    let pid: u32 = std::env::var(OWNER_ENV).unwrap().parse().unwrap();
    let confinement = Confinement::create(ConfineOptions {
        interface: Interface::loopback().unwrap(),
        level: Level::Sealed,
        allow_loopback: true,
    })
    .unwrap();
    confinement.add_process(pid).unwrap();
    println!("cgroup={}", confinement.cgroup_path().display());
    std::process::exit(0);
}

/// Kills a child we started, and removes the stale cgroup, even when the test fails.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = Confinement::cleanup_stale();
    }
}

#[test]
fn stale_confinements_are_left_while_populated_and_removed_once_empty() {
    if !privileged() {
        return;
    }
    let mut sleeper = Sleeper(
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap(),
    );
    // A child process (this test binary again) confines the sleeper and exits without
    // closing: what a killed `ifpin exec` leaves behind.
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "confine_and_exit_without_closing",
            "--ignored",
            "--nocapture",
        ])
        .env(OWNER_ENV, sleeper.0.id().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stale = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cgroup="))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("no cgroup path in {stdout}"));
    assert!(stale.is_dir());
    let attached = Confinement::attached_program_ids(&stale).unwrap();
    assert_eq!(attached.len(), 9);

    let report = Confinement::cleanup_stale().unwrap();
    assert!(report.left_populated.contains(&stale), "{report:?}");
    assert!(!report.removed.contains(&stale));
    assert_eq!(
        Confinement::attached_program_ids(&stale).unwrap(),
        attached,
        "a populated stale cgroup must stay confined"
    );

    sleeper.0.kill().unwrap();
    sleeper.0.wait().unwrap();
    let report = Confinement::cleanup_stale().unwrap();
    assert!(report.removed.contains(&stale), "{report:?}");
    assert!(!stale.exists());
    // The parent goes with the last run out; while it is there, nothing is attached to it.
    let parent = stale.parent().unwrap();
    match Confinement::attached_program_ids(parent) {
        Ok(ids) => assert_eq!(ids, vec![]),
        Err(e) => assert!(!parent.exists(), "{}: {e}", parent.display()),
    }
}

#[test]
fn missing_capabilities_are_named() {
    if !privileged() {
        return;
    }
    // Capabilities are per thread: drop them on a throwaway thread only.
    let err = std::thread::spawn(|| {
        use caps::{CapSet, Capability};
        for cap in [
            Capability::CAP_BPF,
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_NET_ADMIN,
        ] {
            caps::drop(None, CapSet::Effective, cap).unwrap();
        }
        Confinement::create(ConfineOptions {
            interface: Interface::loopback().unwrap(),
            level: Level::Sealed,
            allow_loopback: false,
        })
        .unwrap_err()
    })
    .join()
    .unwrap();
    match &err {
        ifpin::ConfineError::NoPrivilege { missing } => {
            assert_eq!(missing, &["CAP_BPF", "CAP_NET_ADMIN"])
        }
        other => panic!("expected NoPrivilege, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("CAP_BPF") && message.contains("CAP_NET_ADMIN"),
        "{message}"
    );
}

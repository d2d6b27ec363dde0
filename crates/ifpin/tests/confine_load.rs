//! Loading and attaching the confinement programs in a throwaway cgroup (no traffic): every
//! level, with and without loopback, passes the verifier on this kernel, attaches, and is
//! gone without a trace after `close`.

use std::os::fd::AsFd;

use ifpin::bpf::{Asm, Insn, LoadError, Program, Reg};
use ifpin::confine::{ConfineOptions, Confinement};
use ifpin::sys::bpf::{AttachType, ProgType};
use ifpin::{Interface, Level};

fn privileged(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("IFPIN_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
        panic!("{test} needs root and IFPIN_REQUIRE_PRIVILEGED=1 is set");
    }
    eprintln!("!!! SKIPPED {test}: needs root (CAP_BPF, CAP_NET_ADMIN) !!!");
    false
}

#[test]
fn every_level_loads_attaches_and_leaves_nothing_behind() {
    if !privileged("every_level_loads_attaches_and_leaves_nothing_behind") {
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
            let attached = Confinement::attached_program_ids(&path).unwrap();
            let expected = match (level, allow_loopback) {
                (Level::Pinned, false) => 1,
                (Level::Enforced, false) => 3,
                (Level::Sealed, false) => 5,
                (Level::Pinned, true) => 6,
                (Level::Enforced, true) => 8,
                (Level::Sealed, true) => 9,
            };
            assert_eq!(
                attached.len(),
                expected,
                "{level} loopback={allow_loopback}: {attached:?}"
            );
            assert!(!confinement.is_populated().unwrap());
            let counters = confinement.close().unwrap();
            assert_eq!(counters, ifpin::Counters::default());
            assert!(!path.exists(), "cgroup {} left behind", path.display());
        }
    }
}

#[test]
fn a_dropped_empty_confinement_is_removed() {
    if !privileged("a_dropped_empty_confinement_is_removed") {
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
    if !privileged("verifier_rejections_carry_the_log") {
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

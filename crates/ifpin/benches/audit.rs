//! The library's own share of `ifpin audit`: decoding `inet_diag` answers, checking a policy
//! per socket, and parsing a policy with many planes (2,000 and 20,000: linear means the
//! second takes about 10 times the first). (The end-to-end comparison with `ss` is
//! `scripts/bench-audit`; the cost of namespace discovery on a host with 1,000 processes is
//! the `audit_netns` bench.)
//!
//! `cargo bench -p ifpin --bench audit`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ifpin::audit::{Audit, Namespace, NamespaceSnapshot, Socket};
use ifpin::sockdiag::{self, DiagSocket, Protocol, SocketState};
use ifpin::{IfIndex, Policy};

/// Real dump replies (see the `sockdiag` unit tests for what they hold).
const RECORDED: &[u8] = include_bytes!("../tests/fixtures/sockdiag-dump.bin");

/// One `recv` worth of TCP/IPv4 answers (~32 KiB, as the kernel fills them), made of the
/// recorded messages repeated, and the recorded `NLMSG_DONE`.
fn dump_buffer() -> (Vec<u8>, usize) {
    let mut messages = Vec::new();
    let mut done = Vec::new();
    let mut records = RECORDED;
    // The TCP/IPv4 records come first; the kernel may send NLMSG_DONE in a record of its own.
    while done.is_empty() && !records.is_empty() {
        let len = u32::from_ne_bytes(records[2..6].try_into().unwrap()) as usize;
        let mut rest = &records[6..6 + len];
        records = &records[6 + len..];
        while !rest.is_empty() {
            let msg_len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
            let padded = msg_len.next_multiple_of(4).min(rest.len());
            if kind == 3 {
                done = rest[..padded].to_vec();
            } else {
                messages.push(&rest[..padded]);
            }
            rest = &rest[padded..];
        }
    }
    assert!(!done.is_empty() && !messages.is_empty());
    let mut buf = Vec::with_capacity(33 * 1024);
    let mut count = 0;
    while buf.len() < 32 * 1024 {
        for m in &messages {
            buf.extend_from_slice(m);
            count += 1;
        }
    }
    buf.extend_from_slice(&done);
    (buf, count)
}

fn decode(c: &mut Criterion) {
    let (buf, count) = dump_buffer();
    let mut group = c.benchmark_group("sockdiag");
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("decode one recv buffer", |b| {
        let mut out = Vec::with_capacity(count);
        b.iter(|| {
            out.clear();
            let progress = sockdiag::decode(black_box(&buf), Protocol::Tcp, &mut out).unwrap();
            assert_eq!(progress, sockdiag::Progress::Done);
            assert_eq!(out.len(), count);
        })
    });
    group.finish();
}

const POLICY: &str = r#"
[[plane]]
name = "backplane"
interface = "ctl0"
prefixes = ["10.99.0.0/16", "fd99::/16"]
ports = [7500, 7501]
[[plane]]
name = "storage"
interface = "ctl1"
prefixes = ["10.98.0.0/16"]
ports = [3260]
"#;

/// 100,000 sockets: one in ten to a backplane address, a third of those unpinned.
fn synthetic_audit() -> Audit {
    let ns = NamespaceSnapshot {
        namespace: Namespace {
            inode: 1,
            name: Some("host".into()),
            current: true,
            path: "/proc/thread-self/ns/net".into(),
            pid: None,
            found: ifpin::audit::netns::Found::Current,
            handle: None,
        },
        label: "host".into(),
        interfaces: [(1, "lo"), (3, "ctl0"), (4, "eth1"), (5, "ctl1")]
            .into_iter()
            .map(|(i, n)| (IfIndex::new(i).unwrap(), n.to_owned()))
            .collect(),
    };
    let sockets = (0..100_000u32)
        .map(|i| {
            let to_plane = i % 10 == 0;
            let remote = if to_plane {
                Ipv4Addr::new(10, 99, (i >> 8) as u8, i as u8)
            } else {
                Ipv4Addr::new(192, 0, 2, i as u8)
            };
            let bound = if to_plane && i % 30 != 0 { 3 } else { 0 };
            Socket {
                diag: DiagSocket {
                    protocol: Protocol::Tcp,
                    state: SocketState::ESTABLISHED,
                    local: SocketAddr::V4(SocketAddrV4::new(
                        Ipv4Addr::new(10, 10, 0, 1),
                        (i % 60_000) as u16 + 1024,
                    )),
                    remote: SocketAddr::V4(SocketAddrV4::new(remote, 443)),
                    bound_interface: IfIndex::new(bound),
                    uid: 0,
                    inode: u64::from(i) + 1,
                    cgroup_id: None,
                },
                netns: 0,
                interface_name: (bound == 3).then(|| "ctl0".to_owned()),
                pids: vec![1000 + i % 6],
                exec: None,
            }
        })
        .collect();
    Audit::from_parts(vec![ns], sockets, vec![])
}

/// A policy of `planes` planes, as a person would write it (one value per line).
fn policy_text(planes: usize) -> String {
    let mut text = String::with_capacity(planes * 110);
    for i in 0..planes {
        text.push_str(&format!(
            "[[plane]]\nname = \"plane-{i}\"\ninterface = \"ctl{}\"\nprefixes = [\"10.{}.{}.0/24\", \"fd99:{i:x}::/32\"]\nports = [{}]\n\n",
            i % 8,
            (i >> 8) & 255,
            i & 255,
            1 + i % 65_000,
        ));
    }
    text
}

fn parse_policy(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy");
    group.sample_size(10);
    for planes in [2_000, 20_000] {
        let text = policy_text(planes);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("parse {planes} planes"), |b| {
            b.iter(|| {
                let policy = Policy::parse(black_box(&text), "bench.toml").unwrap();
                assert_eq!(policy.planes().len(), planes);
            })
        });
    }
    group.finish();
}

fn check(c: &mut Criterion) {
    let audit = synthetic_audit();
    let policy = Policy::parse(POLICY, "bench.toml").unwrap();
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(audit.sockets().len() as u64));
    group.sample_size(20);
    group.bench_function("check 100k sockets against 2 planes", |b| {
        b.iter(|| {
            let check = black_box(&audit).check(&policy);
            assert_eq!(check.violations.len(), 3_334);
        })
    });
    group.finish();
}

criterion_group!(benches, decode, check, parse_policy);
criterion_main!(benches);

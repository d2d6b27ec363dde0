//! `netlab-vectors`: tries named override vectors (see `netlab::vectors`) from the current
//! network namespace and prints, as JSON lines, what the kernel answered to each.
//!
//! It is a test helper: `ifpin exec` tests run it as the confined program to see which vectors
//! the enforced and sealed levels stop. It counts no frames itself; the test around it does.
//!
//! ```text
//! netlab-vectors [--pin IFACE] --other IFACE --v4 ADDR --v6 ADDR [--peer-ll ADDR]
//!                [--own-ll ADDR] [--port N] [--privilege as-is|documented] VECTOR...|all
//! netlab-vectors --list
//! ```
//! `--pin` binds each socket with `SO_BINDTOIFINDEX` first (leave it out to see what the
//! environment, e.g. a cgroup program, does to fresh sockets). `--own-ll` defaults to the other
//! interface's link-local address from `/proc/net/if_inet6`. Each vector uses port `N + i`.
//! Exit status: 0 when every vector could be tried, 2 on bad arguments or a failed set-up.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::str::FromStr;

use netlab::vectors::{self, LinkIndex, Privilege, Target, Vector};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("netlab-vectors: {message}");
            ExitCode::from(2)
        }
    }
}

struct Options {
    pin: Option<String>,
    other: String,
    v4: Ipv4Addr,
    v6: Ipv6Addr,
    peer_ll: Option<Ipv6Addr>,
    own_ll: Option<Ipv6Addr>,
    port: u16,
    documented_privilege: bool,
    vectors: Vec<Vector>,
}

fn run(args: Vec<String>) -> Result<ExitCode, String> {
    if args.iter().any(|a| a == "--list") {
        for vector in Vector::ALL {
            let info = vector.info();
            println!(
                "{:<24} {:<13} {}",
                info.id,
                info.privilege.to_string(),
                info.title
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let options = parse(args)?;
    let other_index = index_of(&options.other)?;
    let own_ll = match options.own_ll {
        Some(addr) => addr,
        None => link_local_of(&options.other)?,
    };
    let pin = options.pin.as_deref().map(index_of).transpose()?;
    let mut failed = false;
    for (i, vector) in options.vectors.iter().copied().enumerate() {
        let needs_peer = matches!(
            vector,
            Vector::V6ScopeLinkLocal | Vector::Raw6ScopeLinkLocal | Vector::V6ConnectScope
        );
        let peer_ll = match (options.peer_ll, needs_peer) {
            (Some(addr), _) => addr,
            (None, false) => Ipv6Addr::UNSPECIFIED,
            (None, true) => return Err(format!("vector {vector} needs --peer-ll")),
        };
        let offset = u16::try_from(i).map_err(|_| "too many vectors".to_string())?;
        let target = Target {
            other_index,
            other_name: options.other.clone(),
            v4: options.v4,
            v6: options.v6,
            other_peer_link_local: peer_ll,
            other_link_local: own_ll,
            port: options.port.wrapping_add(offset),
        };
        let privilege = if options.documented_privilege {
            Some(vector.info().privilege)
        } else {
            None
        };
        let record = try_one(vector, pin, &target, privilege);
        failed |= record.get("error").is_some();
        println!("{record}");
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn try_one(
    vector: Vector,
    pin: Option<LinkIndex>,
    target: &Target,
    privilege: Option<Privilege>,
) -> serde_json::Value {
    let attempt = || -> Result<vectors::Attempt, String> {
        let socket = vector
            .info()
            .socket
            .open()
            .map_err(|e| format!("socket(): {e}"))?;
        if let Some(index) = pin {
            vectors::pin_to_index(&socket, index).map_err(|e| format!("pinning: {e}"))?;
        }
        vector
            .attempt(socket.as_fd(), target)
            .map_err(|e| format!("{e}: {}", e.source))
    };
    let result = match privilege {
        Some(privilege) => vectors::with_privilege(privilege, attempt)
            .map_err(|e| format!("dropping capabilities: {e}"))
            .and_then(|r| r),
        None => attempt(),
    };
    let mut record = serde_json::json!({
        "vector": vector.id(),
        "port": target.port,
    });
    match result {
        Ok(attempt) => {
            if let (Some(map), Ok(serde_json::Value::Object(fields))) =
                (record.as_object_mut(), serde_json::to_value(&attempt))
            {
                map.extend(fields);
            }
        }
        Err(error) => record["error"] = error.into(),
    }
    record
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut pin = None;
    let mut other = None;
    let mut v4 = None;
    let mut v6 = None;
    let mut peer_ll = None;
    let mut own_ll = None;
    let mut port = 47000;
    let mut documented_privilege = false;
    let mut vectors = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--pin" => pin = Some(value("--pin")?),
            "--other" => other = Some(value("--other")?),
            "--v4" => v4 = Some(parsed(&value("--v4")?, "--v4")?),
            "--v6" => v6 = Some(parsed(&value("--v6")?, "--v6")?),
            "--peer-ll" => peer_ll = Some(parsed(&value("--peer-ll")?, "--peer-ll")?),
            "--own-ll" => own_ll = Some(parsed(&value("--own-ll")?, "--own-ll")?),
            "--port" => port = parsed(&value("--port")?, "--port")?,
            "--privilege" => {
                documented_privilege = match value("--privilege")?.as_str() {
                    "as-is" => false,
                    "documented" => true,
                    other => {
                        return Err(format!("--privilege: `{other}`: use as-is or documented"));
                    }
                }
            }
            "all" => vectors.extend(Vector::ALL),
            id => vectors
                .push(Vector::from_id(id).ok_or(format!("unknown vector `{id}` (see --list)"))?),
        }
    }
    if vectors.is_empty() {
        return Err("name at least one vector, or `all` (see --list)".into());
    }
    Ok(Options {
        pin,
        other: other.ok_or("--other IFACE is required")?,
        v4: v4.ok_or("--v4 ADDR is required")?,
        v6: v6.ok_or("--v6 ADDR is required")?,
        peer_ll,
        own_ll,
        port,
        documented_privilege,
        vectors,
    })
}

fn parsed<T: FromStr>(text: &str, flag: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: cannot parse `{text}`"))
}

/// The interface's index in this network namespace (`if_nametoindex(3)`; `/sys/class/net`
/// would show the namespace `/sys` was mounted in, not ours).
fn index_of(name: &str) -> Result<LinkIndex, String> {
    nix::net::if_::if_nametoindex(name)
        .ok()
        .and_then(LinkIndex::new)
        .ok_or(format!("no interface `{name}` in this network namespace"))
}

/// The interface's `fe80::/10` address from `/proc/net/if_inet6`.
fn link_local_of(name: &str) -> Result<Ipv6Addr, String> {
    let table = std::fs::read_to_string("/proc/net/if_inet6")
        .map_err(|e| format!("/proc/net/if_inet6: {e}"))?;
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (hex, dev) = (fields.first()?, fields.get(5)?);
            let bits = u128::from_str_radix(hex, 16).ok()?;
            (*dev == name).then_some(Ipv6Addr::from(bits))
        })
        .find(|addr| addr.is_unicast_link_local())
        .ok_or(format!(
            "interface `{name}` has no link-local address: give --own-ll"
        ))
}

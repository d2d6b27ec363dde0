//! The TCP clients of the A/B traffic benchmarks: the confined (or guarded) client and the
//! plain one are the very same code, run for `secs` seconds on the client CPU, printing their
//! rate on stdout for the orchestrating process to read.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The CPU the clients run on (the servers run on the other one).
pub const CLIENT_CPU: usize = 0;

/// One TCP stream of 128 KiB writes to `addr`: prints bytes per second.
pub fn stream(addr: SocketAddr, secs: f64) {
    super::stay_on_cpu(CLIENT_CPU);
    let mut conn = TcpStream::connect(addr).expect("connect");
    let chunk = vec![0x5au8; 128 * 1024];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        conn.write_all(&chunk).expect("write");
        bytes += chunk.len() as u64;
    }
    println!("{}", bytes as f64 / start.elapsed().as_secs_f64());
}

/// Connections to `addr` in a loop, each closed with a reset (and, when `greeted`, after
/// reading the server's one-byte greeting): prints connections per second.
pub fn connect(addr: SocketAddr, secs: f64, greeted: bool) {
    super::stay_on_cpu(CLIENT_CPU);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut conn = TcpStream::connect(addr).expect("connect");
        if greeted {
            conn.read_exact(&mut [0u8]).expect("greeting");
        }
        // RST on close: no TIME_WAIT, so the ephemeral ports never run out.
        socket2::SockRef::from(&conn)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(conn);
        n += 1;
    }
    println!("{}", n as f64 / start.elapsed().as_secs_f64());
}

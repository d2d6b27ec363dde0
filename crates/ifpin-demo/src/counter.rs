//! Per-interface frame counters: an `AF_PACKET` capture running in a background thread.
//!
//! A [`FrameCounter`] is opened in a namespace on one interface, normally the *peer* end of a
//! link (the front peer's end of `eth1`, say). Every frame crossing that interface is decoded
//! ([`crate::frame`]) and recorded with its direction. Queries ([`FrameCounter::count`],
//! [`FrameCounter::frames`], [`FrameCounter::frames_involving`]) see by default only what
//! arrived from the far end, i.e. what the host under test sent, minus background noise
//! ([`Frame::is_noise`]); [`FrameCounter::all_frames`] keeps everything.
//!
//! Call [`FrameCounter::settle`] before querying: it waits until the interface has been quiet
//! for a while, so every frame sent before the call has been recorded.
//!
//! The capture is bound to the interface's index: if that interface is deleted (with its
//! link), the counter simply sees nothing more. Open a new counter on a re-created link.
//!
//! A counter does not borrow its [`Netns`]; it may be dropped before or after it. Its socket
//! keeps the namespace's kernel object alive until the counter is dropped (the name is gone
//! from `ip netns list` as soon as the `Netns` is dropped).
//!
//! [`settle_all`] settles several counters at once (in parallel), for multi-link checks.

use std::net::IpAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::frame::{Direction, Frame};
use crate::netns::Netns;
use crate::sys;

/// How often the capture thread wakes up to check whether it must stop.
const POLL: Duration = Duration::from_millis(20);
/// Quiet period [`FrameCounter::settle`] waits for.
pub const SETTLE_QUIET: Duration = Duration::from_millis(100);
/// How many frames a counter keeps. Past this, queries panic rather than return a count that
/// silently misses frames (see [`FrameCounter::overflowed`]); [`FrameCounter::clear`] resets.
pub const MAX_FRAMES: usize = 1_000_000;
/// Upper bound on how long [`FrameCounter::settle`] waits on a busy link.
pub const SETTLE_MAX: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct Shared {
    frames: Mutex<Vec<Frame>>,
    last_frame: Mutex<Instant>,
    /// Last time the capture thread found its socket empty (a receive timed out).
    last_idle: Mutex<Instant>,
    /// Frames the kernel dropped because the socket buffer was full.
    kernel_drops: AtomicUsize,
    stop: AtomicBool,
    error: Mutex<Option<String>>,
    overflow: AtomicUsize,
}

/// Records every frame crossing one interface of one namespace, until dropped.
#[derive(Debug)]
pub struct FrameCounter {
    namespace: String,
    interface: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FrameCounter {
    /// Starts capturing on `ifname` inside `ns`. Returns once the socket is bound, so every
    /// frame sent after this call is seen.
    pub fn open(ns: &Netns, ifname: &str) -> Result<FrameCounter> {
        let context = format!("{ifname} in {}", ns.name());
        // Resolve the name and bind in one visit, so the index cannot change in between.
        let fd = ns.run(|| -> Result<_> {
            let ifindex = nix::net::if_::if_nametoindex(ifname)
                .map_err(|e| Error::sys("if_nametoindex", context.clone(), e.into()))?;
            sys::packet_socket(ifindex, POLL)
                .map_err(|e| Error::sys("socket(AF_PACKET)/bind", context.clone(), e))
        })??;
        let shared = Arc::new(Shared {
            frames: Mutex::new(Vec::new()),
            last_frame: Mutex::new(Instant::now()),
            last_idle: Mutex::new(Instant::now()),
            kernel_drops: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            error: Mutex::new(None),
            overflow: AtomicUsize::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("netlab-capture-{ifname}"))
            .spawn(move || capture_loop(fd, &thread_shared))
            .map_err(|e| Error::sys("thread spawn", context, e))?;
        Ok(FrameCounter {
            namespace: ns.name().to_owned(),
            interface: ifname.to_owned(),
            shared,
            thread: Some(thread),
        })
    }

    /// The interface captured on.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The namespace captured in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Waits until no frame has arrived for [`SETTLE_QUIET`] (and at least that long from
    /// now) and the capture thread has since found its socket empty, at most [`SETTLE_MAX`].
    /// Afterwards every frame sent before the call has been recorded.
    pub fn settle(&self) {
        self.settle_for(SETTLE_QUIET);
    }

    /// [`FrameCounter::settle`] with a custom quiet period.
    pub fn settle_for(&self, quiet: Duration) {
        let start = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let now = Instant::now();
            let quiet_since = (*lock(&self.shared.last_frame)).max(start);
            // The capture thread itself saw an empty queue after the last frame: nothing is
            // waiting unread in the socket (it was scheduled, not just slow).
            let drained = *lock(&self.shared.last_idle) > quiet_since;
            let stopped = self.thread.as_ref().is_none_or(JoinHandle::is_finished);
            if (now.duration_since(quiet_since) >= quiet && (drained || stopped))
                || now.duration_since(start) >= SETTLE_MAX
            {
                return;
            }
        }
    }

    /// Waits until at least one of [`FrameCounter::frames`] matches `pred`, at most
    /// `timeout`; returns whether one did. For positive controls, where the frame is expected
    /// but may come late (a retransmission, a neighbour solicitation before the packet).
    pub fn wait_for(&self, pred: impl Fn(&Frame) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count(&pred) > 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every frame recorded so far, both directions, noise included.
    pub fn all_frames(&self) -> Vec<Frame> {
        self.frames_guard().clone()
    }

    /// Frames that arrived from the far end of the link (sent by the host under test),
    /// background noise excluded. This is what "a leak" means.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames_guard()
            .iter()
            .filter(|f| counts(f))
            .cloned()
            .collect()
    }

    /// Number of [`FrameCounter::frames`] matching `pred`.
    ///
    /// # Panics
    /// If the counter overflowed (see [`MAX_FRAMES`]); so do the other queries.
    pub fn count(&self, pred: impl Fn(&Frame) -> bool) -> usize {
        self.frames_guard()
            .iter()
            .filter(|f| counts(f) && pred(f))
            .count()
    }

    /// Number of [`FrameCounter::frames`].
    pub fn total(&self) -> usize {
        self.count(|_| true)
    }

    /// [`FrameCounter::frames`] in which `ip` appears (IP source/destination, ARP
    /// sender/target, neighbour-discovery target).
    pub fn frames_involving(&self, ip: IpAddr) -> Vec<Frame> {
        self.frames()
            .into_iter()
            .filter(|f| f.involves(ip))
            .collect()
    }

    /// Number of [`FrameCounter::frames_involving`] `ip`.
    pub fn count_involving(&self, ip: IpAddr) -> usize {
        self.count(|f| f.involves(ip))
    }

    /// Removes every recorded frame and returns those [`FrameCounter::frames`] would have
    /// returned (far end, no noise), in one step: no frame can slip between a count and a
    /// [`FrameCounter::clear`].
    pub fn take(&self) -> Vec<Frame> {
        self.take_all().into_iter().filter(counts).collect()
    }

    /// Removes and returns every recorded frame (both directions, noise included).
    ///
    /// # Panics
    /// Like [`FrameCounter::count`], if frames were lost.
    pub fn take_all(&self) -> Vec<Frame> {
        let mut frames = self.frames_guard();
        std::mem::take(&mut *frames)
    }

    /// Forgets every frame recorded so far (call [`FrameCounter::settle`] first so late
    /// frames of the previous step do not count in the next one).
    pub fn clear(&self) {
        let mut frames = lock(&self.shared.frames);
        frames.clear();
        self.shared.overflow.store(0, Ordering::SeqCst);
        self.shared.kernel_drops.store(0, Ordering::SeqCst);
    }

    /// How many frames the kernel dropped before this counter could read them (socket
    /// buffer full). Queries panic while this is not zero.
    pub fn kernel_drops(&self) -> usize {
        self.shared.kernel_drops.load(Ordering::SeqCst)
    }

    /// How many frames were not kept because [`MAX_FRAMES`] were already recorded.
    pub fn overflowed(&self) -> usize {
        self.shared.overflow.load(Ordering::SeqCst)
    }

    /// The recorded frames.
    ///
    /// # Panics
    /// If frames were dropped because of [`MAX_FRAMES`]: a count that misses frames must
    /// not let a leak test pass.
    fn frames_guard(&self) -> MutexGuard<'_, Vec<Frame>> {
        let frames = lock(&self.shared.frames);
        let lost = self.overflowed();
        assert!(
            lost == 0,
            "netlab: frame counter on {} in {} overflowed ({lost} frames past {MAX_FRAMES} not \
             recorded); clear() it between steps",
            self.interface,
            self.namespace
        );
        let dropped = self.kernel_drops();
        assert!(
            dropped == 0,
            "netlab: the kernel dropped {dropped} frames on the capture socket on {} in {} \
             (receive buffer full); counts would be wrong",
            self.interface,
            self.namespace
        );
        frames
    }

    /// A multi-line listing of [`FrameCounter::frames`], for assertion messages.
    pub fn describe(&self) -> String {
        let frames: Vec<Frame> = lock(&self.shared.frames)
            .iter()
            .filter(|f| counts(f))
            .cloned()
            .collect();
        let mut s = format!(
            "{} frame(s) from the far end on {} in {}",
            frames.len(),
            self.interface,
            self.namespace
        );
        let lost = self.overflowed();
        if lost > 0 {
            s.push_str(&format!(" ({lost} more not recorded: overflow)"));
        }
        let dropped = self.kernel_drops();
        if dropped > 0 {
            s.push_str(&format!(" ({dropped} dropped by the kernel)"));
        }
        for f in frames {
            s.push_str("\n  ");
            s.push_str(&f.to_string());
        }
        s
    }

    /// The error that stopped the capture thread early, if any (e.g. the interface was
    /// deleted).
    pub fn error(&self) -> Option<String> {
        lock(&self.shared.error).clone()
    }
}

impl Drop for FrameCounter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// [`FrameCounter::settle`] on every counter at once: returns when all of them are settled, in
/// about the time the slowest one takes rather than the sum.
pub fn settle_all(counters: &[&FrameCounter]) {
    std::thread::scope(|scope| {
        for c in counters {
            scope.spawn(|| c.settle());
        }
    });
}

/// The default filter: arrived from the far end, and not background noise.
fn counts(f: &Frame) -> bool {
    f.direction == Direction::Incoming && !f.is_noise()
}

fn capture_loop(fd: std::os::fd::OwnedFd, shared: &Shared) {
    let mut buf = vec![0u8; 65536];
    let mut since_drop_check = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        match sys::recv_packet(fd.as_fd(), &mut buf) {
            Ok((len, pkttype)) => {
                let frame = Frame::decode(&buf[..len.min(buf.len())], pkttype, len);
                let mut frames = lock(&shared.frames);
                if frames.len() < MAX_FRAMES {
                    frames.push(frame);
                } else {
                    shared.overflow.fetch_add(1, Ordering::SeqCst);
                }
                drop(frames);
                *lock(&shared.last_frame) = Instant::now();
                since_drop_check += 1;
                if since_drop_check >= 256 {
                    since_drop_check = 0;
                    check_drops(&fd, shared);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                check_drops(&fd, shared);
                *lock(&shared.last_idle) = Instant::now();
            }
            Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                // The interface went down or away; keep the thread alive (it may come back
                // up) but do not spin.
                std::thread::sleep(POLL);
                *lock(&shared.last_idle) = Instant::now();
            }
            Err(e) => {
                *lock(&shared.error) = Some(e.to_string());
                return;
            }
        }
    }
}

/// Adds the kernel's drop count for the capture socket to `shared.kernel_drops`.
fn check_drops(fd: &std::os::fd::OwnedFd, shared: &Shared) {
    match sys::packet_drops(fd.as_fd()) {
        Ok(0) => {}
        Ok(n) => {
            shared.kernel_drops.fetch_add(n as usize, Ordering::SeqCst);
        }
        Err(e) => *lock(&shared.error) = Some(format!("PACKET_STATISTICS: {e}")),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

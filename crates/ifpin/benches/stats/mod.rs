//! Helpers for A/B benchmarks on a noisy machine: paired ratios with a confidence interval,
//! and keeping the two ends of a benchmark on their own CPUs.
//!
//! A virtual machine's samples spread by tens of percent, and its load drifts during a run.
//! Measuring A and B back to back in each round and keeping the *ratio* of that round cancels
//! the drift; the median of many such ratios, with a distribution-free confidence interval,
//! tells whether a few-percent effect is there or not ([`Ratios`]).
//!
//! ```text
//! let ratios = Ratios::new((0..101).map(|i| 0.95 + f64::from(i) * 0.001).collect());
//! assert!((ratios.median() - 1.0).abs() < 1e-9);
//! let (low, high) = ratios.ci95();
//! assert!(low < 1.0 && high > 1.0 && high - low < 0.03);
//! ```
//!
//! Shared by the benchmarks of `ifpin` (`mod stats;`) and of `ifpin-cli` (`benches/exec.rs`
//! includes this file with `#[path]`): the statistics live with the benchmarks that use them.

#![allow(dead_code, reason = "each benchmark uses a part")]

pub mod clients;

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// One ratio per round of an interleaved A/B benchmark.
#[derive(Clone, Debug)]
pub struct Ratios {
    sorted: Vec<f64>,
}

impl Ratios {
    /// Takes the ratios of all rounds (in any order). Panics when `ratios` is empty or holds
    /// a NaN: a benchmark without a result is a bug of the benchmark.
    pub fn new(mut ratios: Vec<f64>) -> Ratios {
        assert!(!ratios.is_empty(), "no rounds measured");
        assert!(ratios.iter().all(|r| !r.is_nan()), "NaN ratio: {ratios:?}");
        ratios.sort_by(f64::total_cmp);
        Ratios { sorted: ratios }
    }

    /// Number of rounds.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Always `false` (an empty set is refused by [`Ratios::new`]); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The median ratio.
    pub fn median(&self) -> f64 {
        let n = self.sorted.len();
        if n % 2 == 1 {
            self.sorted[n / 2]
        } else {
            (self.sorted[n / 2 - 1] + self.sorted[n / 2]) / 2.0
        }
    }

    /// A 95 % confidence interval for the median, from order statistics (no assumption about
    /// the distribution): the ranks `n/2 ∓ 1.96·√n/2`, clamped to the samples. With fewer than
    /// about 10 rounds it is simply the whole range.
    pub fn ci95(&self) -> (f64, f64) {
        let n = self.sorted.len() as f64;
        let half = 1.96 * n.sqrt() / 2.0;
        let low = ((n / 2.0 - half).floor().max(0.0)) as usize;
        let high = ((n / 2.0 + half).ceil() as usize).min(self.sorted.len() - 1);
        (self.sorted[low], self.sorted[high])
    }

    /// The smallest and largest ratio.
    pub fn range(&self) -> (f64, f64) {
        (self.sorted[0], self.sorted[self.sorted.len() - 1])
    }

    /// `median [95 % CI low, high] (n rounds, range min–max)`, for a report line.
    pub fn summary(&self) -> String {
        let (low, high) = self.ci95();
        let (min, max) = self.range();
        format!(
            "{:.3} [95% CI {low:.3}, {high:.3}] ({} rounds, range {min:.3}–{max:.3})",
            self.median(),
            self.len()
        )
    }
}

/// Keeps the calling thread on CPU `cpu` (modulo the CPUs this process may use), so that a
/// benchmark's client and server do not compete for one core and are not moved between
/// rounds. Does nothing on a machine with a single usable CPU. Returns the CPU chosen.
pub fn stay_on_cpu(cpu: usize) -> Option<usize> {
    let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
    if usable < 2 {
        return None;
    }
    let cpu = cpu % usable;
    let mut set = CpuSet::new();
    set.set(cpu).ok()?;
    // Pid 0: the calling thread.
    sched_setaffinity(Pid::from_raw(0), &set).ok()?;
    Some(cpu)
}

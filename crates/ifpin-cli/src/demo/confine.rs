//! The demo's [`Confiner`]: the `ifpin` library's confinement engine (a cgroup v2 with BPF
//! programs), used to show what the enforced and sealed levels block.

use std::time::Duration;

use ifpin::{ConfineOptions, Confinement, Interface, Level};
use netlab::cases::PinningError;
use netlab::cases::levels::{Confined, Confiner, Guard};

/// Confines with [`Confinement`], without loopback mode.
#[derive(Debug, Default, Clone, Copy)]
pub struct LibraryConfiner;

impl Confiner for LibraryConfiner {
    fn describe(&self) -> String {
        "ifpin confinement engine (cgroup v2 + BPF; sealed also runs the vector with no capabilities)"
            .into()
    }

    fn confine(&self, interface: &str, guard: Guard) -> Result<Box<dyn Confined>, PinningError> {
        let level = match guard {
            Guard::Enforced => Level::Enforced,
            Guard::Sealed => Level::Sealed,
        };
        let confinement = Confinement::create(ConfineOptions {
            interface: Interface::resolve(interface)?,
            level,
            allow_loopback: false,
        })?;
        Ok(Box::new(Held(confinement)))
    }
}

struct Held(Confinement);

impl Confined for Held {
    fn add_process(&self, pid: u32) -> Result<(), PinningError> {
        Ok(self.0.add_process(pid)?)
    }

    fn blocked(&self) -> Result<u64, PinningError> {
        Ok(self.0.counters()?.total())
    }

    fn close(self: Box<Self>) -> Result<(), PinningError> {
        // The child was reaped just before; the cgroup may report "populated" a moment longer.
        let confinement = self.0;
        for _ in 0..50 {
            if !confinement.is_populated()? {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        confinement.close().map(drop).map_err(Into::into)
    }
}

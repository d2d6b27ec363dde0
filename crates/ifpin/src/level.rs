//! The guarantee levels every command reports. What each attaches is in
//! [`crate::confine`]; what sealed adds to the program is in [`crate::exec::seal`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How strongly traffic is held to one interface. Each level includes the one before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Every socket is bound by index to the interface (`SO_BINDTOIFINDEX`), verified by
    /// reading it back. Honest code cannot egress or ingress elsewhere.
    Pinned,
    /// Pinned, plus cgroup BPF filters drop every IP packet of the program that would leave
    /// or enter through another interface, whatever the program does with its sockets.
    Enforced,
    /// Enforced, plus the program cannot unpin or go around the filter, even as root running
    /// any code (setsockopt guard, every capability dropped, no_new_privs, own mount and
    /// cgroup namespaces, Landlock, seccomp), and the pin follows the interface's life.
    Sealed,
}

impl Level {
    /// All levels, weakest first.
    pub const ALL: [Level; 3] = [Level::Pinned, Level::Enforced, Level::Sealed];

    /// The level's name as used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Pinned => "pinned",
            Level::Enforced => "enforced",
            Level::Sealed => "sealed",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a level name that is not one of `pinned`, `enforced`, `sealed`.
#[derive(Debug, thiserror::Error)]
#[error("unknown guarantee level {0:?}: expected one of pinned, enforced, sealed")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|level| level.as_str() == s)
            .ok_or_else(|| UnknownLevel(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_through_their_names() {
        for level in Level::ALL {
            assert_eq!(level.as_str().parse::<Level>().unwrap(), level);
        }
        assert!("sealed ".parse::<Level>().is_err());
        assert!(Level::Pinned < Level::Enforced && Level::Enforced < Level::Sealed);
    }
}

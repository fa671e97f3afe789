//! The gateway's name for one accepted connection — a leaf, so faults and the gateway can both
//! name connections without depending on each other.

use std::fmt;

/// One accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

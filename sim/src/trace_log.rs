//! A world's trace: one line per thing that happened, stamped with virtual time since the epoch
//! (`+12.345s C1→G ReqHistoricalData #3`), and an FNV-1a digest of the lines and of every byte
//! delivered, so two runs from one seed compare by one number.
//!
//! Shared by [`World`](crate::World) and [`PoolWorld`](crate::PoolWorld) so their traces read
//! and hash alike.

use std::fmt;
use std::time::Duration;

/// FNV-1a's 64-bit offset basis: the digest of nothing.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a's 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continue the FNV-1a digest `h` over `bytes` (streaming: two calls equal one on the joined bytes).
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

/// The lines of a trace and their running digest. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct TraceLog {
    /// Every line so far, stamped.
    lines: Vec<String>,
    /// FNV-1a over every line and every byte absorbed, in order.
    hash: u64,
}

impl TraceLog {
    /// The digest of an empty trace (and of a world that does not trace).
    pub(crate) const EMPTY_HASH: u64 = FNV_OFFSET;

    /// An empty trace.
    pub(crate) fn new() -> Self {
        Self {
            lines: Vec::new(),
            hash: FNV_OFFSET,
        }
    }

    /// Add `text` as a line stamped `+S.mmms` with `elapsed` (virtual time since the epoch).
    pub(crate) fn line(&mut self, elapsed: Duration, text: impl fmt::Display) {
        let line = format!(
            "+{}.{:03}s {text}",
            elapsed.as_secs(),
            elapsed.subsec_millis()
        );
        self.hash = fnv(self.hash, line.as_bytes());
        self.lines.push(line);
    }

    /// Fold `bytes` (delivered, not shown as a line) into the digest.
    pub(crate) fn absorb(&mut self, bytes: &[u8]) {
        self.hash = fnv(self.hash, bytes);
    }

    /// Every line so far.
    pub(crate) fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The digest of every line and byte so far.
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }
}

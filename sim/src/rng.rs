//! Deterministic randomness: one `u64` seed, SplitMix64 streams, and stateless hashing.
//!
//! Every random choice in the sim comes from a [`SplitMix64`] derived from the gateway seed with a
//! fixed label ([`SplitMix64::child`]), so adding a draw in one component does not shift another.
//! Market data uses [`hash64`] of (salt, key…) instead of a stream, so a bar depends only on the seed,
//! the instrument and its time, never on which requests came before.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a strong 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash a sequence of words into one (order-sensitive).
pub fn hash64(words: &[u64]) -> u64 {
    words
        .iter()
        .fold(GOLDEN, |acc, &w| mix64(acc.wrapping_add(GOLDEN) ^ w))
}

/// `hash64` of `words` followed by `next`, from `hash64(words)`: `hash64(&[a, b, c, d])` is
/// `hash64_after(hash64(&[a, b, c]), d)`.
pub fn hash64_after(prefix: u64, next: u64) -> u64 {
    mix64(prefix.wrapping_add(GOLDEN) ^ next)
}

/// Map a hash to a float in `[0, 1)`.
pub fn unit_f64(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl SplitMix64 {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent stream for a named component.
    pub fn child(&self, label: &str) -> Self {
        let mut h = self.state;
        for b in label.bytes() {
            h = mix64(h ^ u64::from(b));
        }
        Self::new(mix64(h))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// A uniform value in `0..=max` (tiny modulo bias is irrelevant here).
    pub fn below_or_eq(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_one_more_word_after_a_prefix_is_hashing_the_whole() {
        for words in [[0u64, 0, 0, 0], [1, 2, 3, 4], [u64::MAX, 7, 0, 9]] {
            let prefix = hash64(&words[..3]);
            assert_eq!(hash64_after(prefix, words[3]), hash64(&words));
        }
    }

    #[test]
    fn streams_are_reproducible_and_independent() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let root = SplitMix64::new(42);
        assert_ne!(root.child("latency"), root.child("market"));
        assert_eq!(root.child("latency"), SplitMix64::new(42).child("latency"));
        assert!((0.0..1.0).contains(&unit_f64(u64::MAX)));
        assert_ne!(hash64(&[1, 2]), hash64(&[2, 1]));
    }
}

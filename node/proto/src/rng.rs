//! A small seeded pseudo-random generator (SplitMix64) owned by each state machine, so that the
//! core never touches a global RNG and the simulator stays deterministic.

/// SplitMix64: fast, tiny state, good enough for jitter and tie-breaking.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// `base` scaled by a factor uniform in [1 - spread, 1 + spread].
    pub fn jitter(&mut self, base: u64, spread: f64) -> u64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let f = 1.0 - spread + 2.0 * spread * u;
        (base as f64 * f).max(0.0) as u64
    }
}

//! Seeded randomized workloads: a small deterministic generator and the seed to start it from.
//! Tests print the seed, so `STARWAL_TEST_SEED=<seed>` replays a failure.

/// A linear congruential generator (Knuth's MMIX constants): deterministic per seed, no crate.
pub struct Lcg(pub u64);

impl Lcg {
    /// A number in `0..below` (0 when `below` is 0).
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

/// `STARWAL_TEST_SEED` if set, else one from the clock.
pub fn seed() -> u64 {
    std::env::var("STARWAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(14, |d| d.as_nanos() as u64)
        })
}

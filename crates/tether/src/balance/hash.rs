//! The argument hash modulo the number of eligible endpoints.

use super::{
    Balancer, Endpoints, PickContext, SeededRng, eligible_count, mix, nth_eligible, random_eligible,
};

/// Sends calls with the same [`hash_key`](PickContext::hash_key) to the same endpoint (`hash`
/// in config): the key, spread by a 64-bit finalizer, modulo the number of eligible endpoints.
///
/// Cheap and even, but not stable: when an endpoint joins, leaves, goes down or comes back, the
/// count changes and most keys move (from n to n + 1 endpoints, all but about 1/(n + 1) of
/// them). Where keys should stay put, use [`ConsistentHash`](super::ConsistentHash), which moves
/// only about 1/(n + 1). A call without a key goes to a random eligible endpoint.
#[derive(Debug, Default)]
pub struct Hash {
    rng: SeededRng,
}

impl Hash {
    /// A balancer whose keyless picks use an RNG seeded from entropy.
    pub fn new() -> Self {
        Self::default()
    }

    /// A balancer whose keyless picks are determined by `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            rng: SeededRng::with_seed(seed),
        }
    }
}

impl Balancer for Hash {
    fn name(&self) -> &'static str {
        "hash"
    }

    fn pick(&self, endpoints: &dyn Endpoints, context: &PickContext) -> Option<usize> {
        let Some(key) = context.hash_key else {
            return random_eligible(endpoints, &self.rng);
        };
        match eligible_count(endpoints) {
            0 => None,
            count => nth_eligible(endpoints, (mix(key) % count as u64) as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{TestEndpoints, assert_counts_near, count_picks};
    use super::*;

    #[test]
    fn same_key_same_endpoint() {
        let endpoints = TestEndpoints::with_weights(&[1; 7]);
        let balancer = Hash::with_seed(1);
        let other = Hash::with_seed(2);
        for key in 0..1000 {
            let context = PickContext::new(1).with_hash_key(key);
            let first = balancer.pick(&endpoints, &context);
            for _ in 0..5 {
                assert_eq!(balancer.pick(&endpoints, &context), first);
            }
            // The seed only matters for keyless calls.
            assert_eq!(other.pick(&endpoints, &context), first);
        }
    }

    #[test]
    fn keys_spread_evenly_over_60000_picks() {
        // Sequential keys (not hashes): the finalizer spreads them. Tolerance ±1% of 60,000.
        let endpoints = TestEndpoints::with_weights(&[1, 2, 3]);
        let counts = count_picks(&Hash::with_seed(1), &endpoints, 60_000, |pick| {
            PickContext::new(1).with_hash_key(pick)
        });
        assert_counts_near("hash, keys 0..60000", &counts, &[20_000.0; 3], 600.0);
    }

    #[test]
    fn keys_that_are_multiples_of_the_count_still_spread() {
        let endpoints = TestEndpoints::with_weights(&[1, 1]);
        let counts = count_picks(&Hash::with_seed(1), &endpoints, 60_000, |pick| {
            PickContext::new(1).with_hash_key(pick * 2)
        });
        assert_counts_near("hash, even keys over 2", &counts, &[30_000.0; 2], 600.0);
    }

    #[test]
    fn without_a_key_random() {
        // Tolerance ±1% of 60,000.
        let endpoints = TestEndpoints::with_weights(&[1, 1, 1]);
        let counts = count_picks(&Hash::with_seed(3), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        assert_counts_near("hash, no key", &counts, &[20_000.0; 3], 600.0);
    }

    #[test]
    fn unready_endpoint_moves_keys() {
        let mut endpoints = TestEndpoints::with_weights(&[1; 5]);
        let balancer = Hash::with_seed(1);
        let pick = |endpoints: &TestEndpoints, key| {
            balancer
                .pick(endpoints, &PickContext::new(1).with_hash_key(key))
                .unwrap()
        };
        let before: Vec<usize> = (0..10_000).map(|key| pick(&endpoints, key)).collect();
        endpoints.providers[4].ready = false;
        let after: Vec<usize> = (0..10_000).map(|key| pick(&endpoints, key)).collect();
        assert!(!after.contains(&4));
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(before, after)| before != after)
            .count();
        // Documented weakness: from 5 to 4 endpoints, about 4/5 of the keys move.
        eprintln!("hash: 5 -> 4 ready endpoints moved {moved} of 10000 keys");
        assert!(moved > 7_000, "{moved}");
    }
}

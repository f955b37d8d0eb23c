//! Random choice in proportion to weight.

use super::{Balancer, Endpoints, PickContext, SeededRng, is_eligible};

/// Picks an eligible endpoint with probability proportional to its weight (`weighted_random` in
/// config); Dubbo's default balancer.
#[derive(Debug, Default)]
pub struct WeightedRandom {
    rng: SeededRng,
}

impl WeightedRandom {
    /// A balancer with an RNG seeded from entropy.
    pub fn new() -> Self {
        Self::default()
    }

    /// A balancer whose picks are determined by `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            rng: SeededRng::with_seed(seed),
        }
    }
}

impl Balancer for WeightedRandom {
    fn name(&self) -> &'static str {
        "weighted_random"
    }

    fn pick(&self, endpoints: &dyn Endpoints, _context: &PickContext) -> Option<usize> {
        let eligible = || (0..endpoints.len()).filter(|&index| is_eligible(endpoints, index));
        // u64: a sum of u32 weights cannot overflow it.
        let total: u64 = eligible()
            .map(|index| u64::from(endpoints.weight(index)))
            .sum();
        if total == 0 {
            return None;
        }
        let mut point = self.rng.lock().u64(..total);
        for index in eligible() {
            let weight = u64::from(endpoints.weight(index));
            if point < weight {
                return Some(index);
            }
            point -= weight;
        }
        // Only if an endpoint's weight or readiness changed between the two passes.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{TestEndpoints, assert_counts_near, count_picks};
    use super::*;

    #[test]
    fn proportional_to_weight_over_60000_picks() {
        // Expected 10,000 / 20,000 / 30,000. Tolerance: ±1% of 60,000 picks (600), about five
        // standard deviations of the widest binomial count here (p = 1/2).
        let endpoints = TestEndpoints::with_weights(&[1, 2, 3]);
        let counts = count_picks(&WeightedRandom::with_seed(1), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        assert_counts_near(
            "weighted_random 1/2/3",
            &counts,
            &[10_000.0, 20_000.0, 30_000.0],
            600.0,
        );
    }

    #[test]
    fn weight_zero_and_unready_are_never_picked() {
        let mut endpoints = TestEndpoints::with_weights(&[0, 1, 5, 3]);
        endpoints.providers[2].ready = false;
        let counts = count_picks(&WeightedRandom::with_seed(2), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        assert_eq!(counts[0], 0);
        assert_eq!(counts[2], 0);
        assert_counts_near(
            "weighted_random 0/1/-/3",
            &counts,
            &[0.0, 15_000.0, 0.0, 45_000.0],
            600.0,
        );
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let endpoints = TestEndpoints::with_weights(&[u32::MAX; 4]);
        let balancer = WeightedRandom::with_seed(3);
        for _ in 0..100 {
            assert!(balancer.pick(&endpoints, &PickContext::new(1)).is_some());
        }
    }

    #[test]
    fn deterministic_with_seed() {
        let endpoints = TestEndpoints::with_weights(&[1, 2, 3, 4]);
        let picks = |seed| -> Vec<Option<usize>> {
            let balancer = WeightedRandom::with_seed(seed);
            (0..200)
                .map(|_| balancer.pick(&endpoints, &PickContext::new(1)))
                .collect()
        };
        assert_eq!(picks(5), picks(5));
        assert_ne!(picks(5), picks(6));
    }
}

//! Uniform random choice.

use super::{Balancer, Endpoints, PickContext, SeededRng, random_eligible};

/// Picks an eligible endpoint uniformly at random, ignoring weights (`random` in config).
#[derive(Debug, Default)]
pub struct Random {
    rng: SeededRng,
}

impl Random {
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

impl Balancer for Random {
    fn name(&self) -> &'static str {
        "random"
    }

    fn pick(&self, endpoints: &dyn Endpoints, _context: &PickContext) -> Option<usize> {
        random_eligible(endpoints, &self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{TestEndpoints, assert_counts_near, count_picks};
    use super::*;

    #[test]
    fn uniform_over_60000_picks_ignoring_weights() {
        // Weights differ on purpose: `random` ignores them. Tolerance: ±1% of 60,000 picks (600),
        // about five standard deviations of a binomial count with p = 1/3.
        let endpoints = TestEndpoints::with_weights(&[1, 2, 3]);
        let counts = count_picks(&Random::with_seed(1), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        assert_counts_near("random 1/2/3", &counts, &[20_000.0; 3], 600.0);
    }

    #[test]
    fn skips_unready_endpoints() {
        let mut endpoints = TestEndpoints::with_weights(&[1, 1, 1, 1]);
        endpoints.providers[1].ready = false;
        let counts = count_picks(&Random::with_seed(2), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        assert_eq!(counts[1], 0);
        let third = 60_000.0 / 3.0;
        assert_counts_near(
            "random, one unready",
            &counts,
            &[third, 0.0, third, third],
            600.0,
        );
    }

    #[test]
    fn deterministic_with_seed() {
        let endpoints = TestEndpoints::with_weights(&[1; 8]);
        let picks = |seed| -> Vec<Option<usize>> {
            let balancer = Random::with_seed(seed);
            (0..200)
                .map(|_| balancer.pick(&endpoints, &PickContext::new(1)))
                .collect()
        };
        assert_eq!(picks(5), picks(5));
        assert_ne!(picks(5), picks(6));
    }
}

//! Power of two choices over the endpoints' load.

use super::{Balancer, Endpoints, PickContext, SeededRng, eligible_count, is_eligible};

/// Picks two distinct eligible endpoints at random and takes the one with the lower
/// [`load`](Endpoints::load) (`p2c_peak_ewma` in config): the peak-EWMA latency of
/// [`PeakEwma`](super::PeakEwma) times the calls in flight plus one, as in Finagle, linkerd and
/// tower.
///
/// Two random choices keep nearly all the benefit of comparing every endpoint while never
/// sending a burst to a single "best" one, and cost O(1) load reads. The most loaded endpoint is
/// never picked while there are two or more; a NaN load counts as the highest. On equal loads
/// the first of the two random choices wins.
#[derive(Debug, Default)]
pub struct PowerOfTwoChoices {
    rng: SeededRng,
}

impl PowerOfTwoChoices {
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

impl Balancer for PowerOfTwoChoices {
    fn name(&self) -> &'static str {
        "p2c_peak_ewma"
    }

    fn pick(&self, endpoints: &dyn Endpoints, _context: &PickContext) -> Option<usize> {
        let count = eligible_count(endpoints);
        let (first, second) = match count {
            0 => return None,
            1 => (0, None),
            _ => {
                let mut rng = self.rng.lock();
                let first = rng.usize(..count);
                // Uniform over the others: draw from one fewer and step over `first`.
                let second = rng.usize(..count - 1);
                (
                    first,
                    Some(if second >= first { second + 1 } else { second }),
                )
            }
        };
        // Both eligible ranks to indexes in one pass.
        let (mut a, mut b) = (None, None);
        for (rank, index) in (0..endpoints.len())
            .filter(|&index| is_eligible(endpoints, index))
            .enumerate()
        {
            if rank == first {
                a = Some(index);
            }
            if Some(rank) == second {
                b = Some(index);
            }
        }
        match (a, b) {
            (Some(a), Some(b)) if endpoints.load(b).total_cmp(&endpoints.load(a)).is_lt() => {
                Some(b)
            }
            (Some(a), _) => Some(a),
            // Only if readiness changed between the two passes.
            (None, b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{TestEndpoints, assert_counts_near, count_picks};
    use super::*;

    fn with_loads(loads: &[f64]) -> TestEndpoints {
        let mut endpoints = TestEndpoints::with_weights(&vec![1; loads.len()]);
        for (provider, &load) in endpoints.providers.iter_mut().zip(loads) {
            provider.load = load;
        }
        endpoints
    }

    #[test]
    fn lower_load_wins_over_60000_picks() {
        // Pairs are uniform over {0,1}, {0,2}, {1,2}: the least loaded wins 2/3 of the picks,
        // the middle one 1/3, the most loaded none. Tolerance ±1% of 60,000 (600).
        let endpoints = with_loads(&[1.0, 2.0, 3.0]);
        let counts = count_picks(&PowerOfTwoChoices::with_seed(1), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        assert_eq!(counts[2], 0);
        assert_counts_near(
            "p2c, loads 1/2/3",
            &counts,
            &[40_000.0, 20_000.0, 0.0],
            600.0,
        );
    }

    #[test]
    fn equal_loads_are_uniform() {
        let endpoints = with_loads(&[5.0; 4]);
        let counts = count_picks(&PowerOfTwoChoices::with_seed(2), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        assert_counts_near("p2c, equal loads", &counts, &[15_000.0; 4], 600.0);
    }

    #[test]
    fn never_picks_the_same_endpoint_twice_in_a_pair() {
        // With two endpoints the pair is always both, so the lighter always wins.
        let endpoints = with_loads(&[2.0, 1.0]);
        let balancer = PowerOfTwoChoices::with_seed(3);
        for _ in 0..1000 {
            assert_eq!(balancer.pick(&endpoints, &PickContext::new(1)), Some(1));
        }
    }

    #[test]
    fn unready_light_endpoint_is_skipped() {
        let mut endpoints = with_loads(&[0.0, 5.0, 9.0]);
        endpoints.providers[0].ready = false;
        let balancer = PowerOfTwoChoices::with_seed(4);
        for _ in 0..1000 {
            assert_eq!(balancer.pick(&endpoints, &PickContext::new(1)), Some(1));
        }
    }

    #[test]
    fn nan_load_counts_as_the_highest() {
        let endpoints = with_loads(&[f64::NAN, 1e300]);
        let balancer = PowerOfTwoChoices::with_seed(5);
        for _ in 0..1000 {
            assert_eq!(balancer.pick(&endpoints, &PickContext::new(1)), Some(1));
        }
    }

    #[test]
    fn deterministic_with_seed() {
        let endpoints = with_loads(&[1.0, 1.0, 2.0, 2.0, 3.0]);
        let picks = |seed| -> Vec<Option<usize>> {
            let balancer = PowerOfTwoChoices::with_seed(seed);
            (0..200)
                .map(|_| balancer.pick(&endpoints, &PickContext::new(1)))
                .collect()
        };
        assert_eq!(picks(5), picks(5));
        assert_ne!(picks(5), picks(6));
    }
}

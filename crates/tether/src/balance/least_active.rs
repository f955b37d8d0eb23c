//! Fewest calls in flight.

use super::{Balancer, Endpoints, PickContext, SeededRng, is_eligible};
use std::cmp::Reverse;

/// Picks the eligible endpoint with the fewest [calls in flight](Endpoints::in_flight)
/// (`least_active` in config); among those, the one with the highest weight; among those, one
/// at random. A slow provider accumulates calls in flight and so gets fewer new ones.
#[derive(Debug, Default)]
pub struct LeastActive {
    rng: SeededRng,
}

impl LeastActive {
    /// A balancer whose tie-breaks use an RNG seeded from entropy.
    pub fn new() -> Self {
        Self::default()
    }

    /// A balancer whose tie-breaks are determined by `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            rng: SeededRng::with_seed(seed),
        }
    }
}

impl Balancer for LeastActive {
    fn name(&self) -> &'static str {
        "least_active"
    }

    fn pick(&self, endpoints: &dyn Endpoints, _context: &PickContext) -> Option<usize> {
        // Lower rank is better: fewer in flight, then higher weight.
        let rank = |index| (endpoints.in_flight(index), Reverse(endpoints.weight(index)));
        let eligible = || (0..endpoints.len()).filter(|&index| is_eligible(endpoints, index));
        // One pass for the best rank and how many endpoints share it, no allocation.
        let mut best = None;
        let mut ties = 0usize;
        for index in eligible() {
            let candidate = rank(index);
            match best {
                Some(best) if candidate > best => {}
                Some(best) if candidate == best => ties += 1,
                _ => {
                    best = Some(candidate);
                    ties = 1;
                }
            }
        }
        let best = best?;
        let n = if ties == 1 {
            0
        } else {
            self.rng.lock().usize(..ties)
        };
        eligible().filter(|&index| rank(index) == best).nth(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{TestEndpoints, assert_counts_near, count_picks};
    use super::*;

    #[test]
    fn prefers_the_idle_provider() {
        let mut endpoints = TestEndpoints::with_weights(&[1, 1, 1]);
        endpoints.providers[0].in_flight = 4;
        endpoints.providers[1].in_flight = 0;
        endpoints.providers[2].in_flight = 9;
        let counts = count_picks(&LeastActive::with_seed(1), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        eprintln!("least_active, in flight 4/0/9: counts {counts:?}");
        assert_eq!(counts, [0, 60_000, 0]);
    }

    #[test]
    fn unready_idle_provider_is_skipped() {
        let mut endpoints = TestEndpoints::with_weights(&[1, 1, 1]);
        endpoints.providers[0].in_flight = 4;
        endpoints.providers[1].ready = false;
        endpoints.providers[2].in_flight = 9;
        let balancer = LeastActive::with_seed(1);
        assert_eq!(balancer.pick(&endpoints, &PickContext::new(1)), Some(0));
    }

    #[test]
    fn ties_go_to_the_heavier_then_at_random() {
        let mut endpoints = TestEndpoints::with_weights(&[1, 3, 3, 2]);
        for provider in &mut endpoints.providers {
            provider.in_flight = 2;
        }
        // Weight breaks the tie: 1 and 2 (weight 3) share everything, ±1% of 60,000.
        let counts = count_picks(&LeastActive::with_seed(2), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        assert_counts_near(
            "least_active, all 2 in flight, weights 1/3/3/2",
            &counts,
            &[0.0, 30_000.0, 30_000.0, 0.0],
            600.0,
        );
    }

    #[test]
    fn all_idle_and_equal_is_uniform() {
        let endpoints = TestEndpoints::with_weights(&[1, 1, 1]);
        let counts = count_picks(&LeastActive::with_seed(13), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        assert_counts_near("least_active, all idle", &counts, &[20_000.0; 3], 600.0);
    }

    #[test]
    fn fewer_in_flight_beats_higher_weight() {
        let mut endpoints = TestEndpoints::with_weights(&[100, 1]);
        endpoints.providers[0].in_flight = 1;
        let balancer = LeastActive::with_seed(4);
        assert_eq!(balancer.pick(&endpoints, &PickContext::new(1)), Some(1));
    }

    #[test]
    fn deterministic_with_seed() {
        let endpoints = TestEndpoints::with_weights(&[1; 6]);
        let picks = |seed| -> Vec<Option<usize>> {
            let balancer = LeastActive::with_seed(seed);
            (0..200)
                .map(|_| balancer.pick(&endpoints, &PickContext::new(1)))
                .collect()
        };
        assert_eq!(picks(5), picks(5));
        assert_ne!(picks(5), picks(6));
    }
}

//! Each eligible endpoint in turn.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Balancer, Endpoints, PickContext, eligible_count, nth_eligible};

/// Cycles over the eligible endpoints, ignoring weights (`round_robin` in config); for turns in
/// proportion to weight use [`SmoothWeightedRoundRobin`](super::SmoothWeightedRoundRobin).
///
/// The turn is a shared counter taken modulo the number of eligible endpoints, so while that
/// number is stable every endpoint gets exactly its share; when an endpoint becomes unready or
/// ready the cycle shifts once.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A balancer starting at the first eligible endpoint.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for RoundRobin {
    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn pick(&self, endpoints: &dyn Endpoints, _context: &PickContext) -> Option<usize> {
        match eligible_count(endpoints) {
            0 => None,
            count => {
                // Relaxed: the counter orders nothing but itself; wrapping at usize::MAX only
                // shifts the cycle once.
                let turn = self.next.fetch_add(1, Ordering::Relaxed);
                nth_eligible(endpoints, turn % count)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{TestEndpoints, count_picks};
    use super::*;

    #[test]
    fn exact_shares_over_60000_picks() {
        let endpoints = TestEndpoints::with_weights(&[1, 2, 3]);
        let counts = count_picks(&RoundRobin::new(), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        eprintln!("round_robin 1/2/3: counts {counts:?}, expected exactly [20000, 20000, 20000]");
        assert_eq!(counts, [20_000; 3]);
    }

    #[test]
    fn cycles_in_order_skipping_unready() {
        let mut endpoints = TestEndpoints::with_weights(&[1, 1, 1, 1]);
        let balancer = RoundRobin::new();
        let picks = |endpoints: &TestEndpoints, n| -> Vec<usize> {
            (0..n)
                .map(|_| balancer.pick(endpoints, &PickContext::new(1)).unwrap())
                .collect()
        };
        assert_eq!(picks(&endpoints, 8), [0, 1, 2, 3, 0, 1, 2, 3]);
        endpoints.providers[2].ready = false;
        let skipping = picks(&endpoints, 30);
        assert!(!skipping.contains(&2));
        assert_eq!(skipping.iter().filter(|&&index| index == 0).count(), 10);
        assert_eq!(skipping.iter().filter(|&&index| index == 1).count(), 10);
        assert_eq!(skipping.iter().filter(|&&index| index == 3).count(), 10);
    }

    #[test]
    fn counter_wraps_without_panic() {
        let endpoints = TestEndpoints::with_weights(&[1, 1, 1]);
        let balancer = RoundRobin {
            next: AtomicUsize::new(usize::MAX),
        };
        assert!(balancer.pick(&endpoints, &PickContext::new(1)).is_some());
        assert_eq!(balancer.pick(&endpoints, &PickContext::new(1)), Some(0));
    }

    #[test]
    fn concurrent_picks_keep_exact_shares() {
        // 8 threads × 7,500 picks over 3 endpoints.
        let endpoints = TestEndpoints::with_weights(&[1, 1, 1]);
        let balancer = RoundRobin::new();
        let counts = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        count_picks(&balancer, &endpoints, 7_500, |_| PickContext::new(1))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().unwrap())
                .fold(vec![0; 3], |sum, counts| {
                    sum.iter().zip(&counts).map(|(a, b)| a + b).collect()
                })
        });
        assert_eq!(counts, [20_000; 3]);
    }
}

//! nginx's smooth weighted round robin.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Balancer, Endpoints, PickContext, is_eligible, lock};

/// Turns in proportion to weight, spread out rather than bunched (`smooth_weighted_round_robin`
/// in config): weights 5/1/1 give `a a b a c a a`, not `a a a a a b c`.
///
/// nginx's algorithm: on each pick every eligible endpoint's `current` grows by its weight, the
/// endpoint with the largest `current` is picked (the first one on a tie), and the picked one's
/// `current` shrinks by the sum of the weights. The `current` values live in a table kept per
/// address and rebuilt when [`PickContext::generation`] changes; an address that stays keeps its
/// value, so a membership change does not restart everyone's turn. An endpoint that is not
/// eligible keeps its value unchanged until it is again.
#[derive(Debug, Default)]
pub struct SmoothWeightedRoundRobin {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// The membership the entries were built for; `None` before the first pick.
    generation: Option<u64>,
    /// One entry per endpoint, in the endpoints' order.
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    address: Box<str>,
    /// nginx's `current_weight`; i64 holds any sum of u32 weights.
    current: i64,
}

impl SmoothWeightedRoundRobin {
    /// A balancer with an empty table (built on the first pick).
    pub fn new() -> Self {
        Self::default()
    }
}

impl Table {
    /// Whether the table was built for these endpoints. The length is checked too so that a
    /// caller that changes the list without changing the generation gets a rebuild instead of
    /// an index out of bounds.
    fn fits(&self, endpoints: &dyn Endpoints, generation: u64) -> bool {
        self.generation == Some(generation) && self.entries.len() == endpoints.len()
    }

    fn rebuild(&mut self, endpoints: &dyn Endpoints, generation: u64) {
        let previous: HashMap<Box<str>, i64> = self
            .entries
            .drain(..)
            .map(|entry| (entry.address, entry.current))
            .collect();
        self.entries = (0..endpoints.len())
            .map(|index| {
                let address = endpoints.address(index);
                Entry {
                    address: address.into(),
                    current: previous.get(address).copied().unwrap_or(0),
                }
            })
            .collect();
        self.generation = Some(generation);
    }
}

impl Balancer for SmoothWeightedRoundRobin {
    fn name(&self) -> &'static str {
        "smooth_weighted_round_robin"
    }

    fn pick(&self, endpoints: &dyn Endpoints, context: &PickContext) -> Option<usize> {
        let mut table = lock(&self.table);
        if !table.fits(endpoints, context.generation) {
            table.rebuild(endpoints, context.generation);
        }
        let mut total = 0i64;
        // (index, current) of the largest current so far; the first one wins a tie.
        let mut best: Option<(usize, i64)> = None;
        for (index, entry) in table.entries.iter_mut().enumerate() {
            if !is_eligible(endpoints, index) {
                continue;
            }
            let weight = i64::from(endpoints.weight(index));
            entry.current += weight;
            total += weight;
            if best.is_none_or(|(_, current)| entry.current > current) {
                best = Some((index, entry.current));
            }
        }
        let (best, _) = best?;
        table.entries[best].current -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{TestEndpoints, count_picks};
    use super::*;

    fn letters(balancer: &SmoothWeightedRoundRobin, endpoints: &TestEndpoints, n: usize) -> String {
        (0..n)
            .map(|_| {
                let index = balancer.pick(endpoints, &PickContext::new(1)).unwrap();
                char::from(b'a' + index as u8)
            })
            .collect()
    }

    #[test]
    fn nginx_sequence_for_5_1_1() {
        let endpoints = TestEndpoints::with_weights(&[5, 1, 1]);
        let balancer = SmoothWeightedRoundRobin::new();
        let sequence = letters(&balancer, &endpoints, 7 * 100);
        eprintln!("smooth_weighted 5/1/1, first cycle: {}", &sequence[..7]);
        assert_eq!(sequence, "aabacaa".repeat(100));
    }

    #[test]
    fn exact_shares_over_60000_picks() {
        let endpoints = TestEndpoints::with_weights(&[1, 2, 3]);
        let counts = count_picks(&SmoothWeightedRoundRobin::new(), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        eprintln!(
            "smooth_weighted 1/2/3: counts {counts:?}, expected exactly [10000, 20000, 30000]"
        );
        assert_eq!(counts, [10_000, 20_000, 30_000]);
    }

    #[test]
    fn skips_unready_and_weight_zero() {
        let mut endpoints = TestEndpoints::with_weights(&[5, 0, 1, 1]);
        endpoints.providers[2].ready = false;
        let balancer = SmoothWeightedRoundRobin::new();
        // Eligible: a (5) and d (1).
        assert_eq!(letters(&balancer, &endpoints, 12), "aaadaaaaadaa");
    }

    #[test]
    fn state_follows_the_address_across_a_membership_change() {
        let balancer = SmoothWeightedRoundRobin::new();
        let before = TestEndpoints::with_addresses(&["a:1", "b:1"]);
        assert_eq!(balancer.pick(&before, &PickContext::new(1)), Some(0));
        // Now a has current -1 and b +1. The new list adds c in front: c starts at 0, a keeps its
        // debt and b its lead, so the turns go b, c, a. Reset tables would give c, a, b, and
        // tables kept by index (c taking a's -1, a taking b's +1) a, …
        let after = TestEndpoints::with_addresses(&["c:1", "a:1", "b:1"]);
        let picks: Vec<usize> = (0..3)
            .map(|_| balancer.pick(&after, &PickContext::new(2)).unwrap())
            .collect();
        assert_eq!(picks, [2, 0, 1]);
    }

    #[test]
    fn same_generation_keeps_the_table() {
        let endpoints = TestEndpoints::with_weights(&[5, 1, 1]);
        let balancer = SmoothWeightedRoundRobin::new();
        // Currents after a a b: 1, -4, 3.
        assert_eq!(letters(&balancer, &endpoints, 3), "aab");
        // b goes down without a membership change: a and c share the turn (a: 6 against 4);
        // currents 0, -4, 4 (b frozen).
        let mut flapping = endpoints.clone();
        flapping.providers[1].ready = false;
        assert_eq!(letters(&balancer, &flapping, 1), "a");
        // b is back: the table was kept, so the turns go on from 0, -4, 4 (a rebuilt table would
        // start over with a a b).
        assert_eq!(letters(&balancer, &endpoints, 3), "aca");
    }

    #[test]
    fn concurrent_picks_keep_exact_shares() {
        // 8 threads × 7,000 picks = 8,000 whole cycles of 5/1/1.
        let endpoints = TestEndpoints::with_weights(&[5, 1, 1]);
        let balancer = SmoothWeightedRoundRobin::new();
        let counts = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        count_picks(&balancer, &endpoints, 7_000, |_| PickContext::new(1))
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
        assert_eq!(counts, [40_000, 8_000, 8_000]);
    }
}

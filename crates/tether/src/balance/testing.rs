//! Endpoints for the balancers' unit tests.

use super::{Balancer, Endpoints, PickContext};

/// One provider, every field settable.
#[derive(Debug, Clone)]
pub(super) struct Provider {
    pub(super) address: String,
    pub(super) weight: u32,
    pub(super) ready: bool,
    pub(super) in_flight: u32,
    pub(super) load: f64,
}

/// A list of providers.
#[derive(Debug, Clone, Default)]
pub(super) struct TestEndpoints {
    pub(super) providers: Vec<Provider>,
}

impl TestEndpoints {
    /// Ready, idle providers `10.0.0.{1, 2, …}:20880` with the given weights and load 1.
    pub(super) fn with_weights(weights: &[u32]) -> Self {
        let providers = weights
            .iter()
            .enumerate()
            .map(|(index, &weight)| Provider {
                address: format!("10.0.0.{}:20880", index + 1),
                weight,
                ready: true,
                in_flight: 0,
                load: 1.0,
            })
            .collect();
        Self { providers }
    }

    /// Ready, idle providers of weight 1 at the given addresses.
    pub(super) fn with_addresses<S: AsRef<str>>(addresses: &[S]) -> Self {
        let mut endpoints = Self::with_weights(&vec![1; addresses.len()]);
        for (provider, address) in endpoints.providers.iter_mut().zip(addresses) {
            provider.address = address.as_ref().to_owned();
        }
        endpoints
    }
}

impl Endpoints for TestEndpoints {
    fn len(&self) -> usize {
        self.providers.len()
    }

    fn address(&self, index: usize) -> &str {
        &self.providers[index].address
    }

    fn weight(&self, index: usize) -> u32 {
        self.providers[index].weight
    }

    fn is_ready(&self, index: usize) -> bool {
        self.providers[index].ready
    }

    fn in_flight(&self, index: usize) -> u32 {
        self.providers[index].in_flight
    }

    fn load(&self, index: usize) -> f64 {
        self.providers[index].load
    }
}

/// How many of `picks` picks went to each endpoint, with the context `context(i)` for pick `i`.
pub(super) fn count_picks(
    balancer: &dyn Balancer,
    endpoints: &TestEndpoints,
    picks: u64,
    context: impl Fn(u64) -> PickContext,
) -> Vec<u64> {
    let mut counts = vec![0; endpoints.providers.len()];
    for pick in 0..picks {
        let index = balancer
            .pick(endpoints, &context(pick))
            .expect("an eligible endpoint");
        counts[index] += 1;
    }
    counts
}

/// Asserts that each count is within `tolerance` picks of its expected count, printing both.
#[track_caller]
pub(super) fn assert_counts_near(name: &str, counts: &[u64], expected: &[f64], tolerance: f64) {
    eprintln!("{name}: counts {counts:?}, expected {expected:?} ± {tolerance}");
    assert_eq!(counts.len(), expected.len());
    for (index, (&count, &expected)) in counts.iter().zip(expected).enumerate() {
        assert!(
            (count as f64 - expected).abs() <= tolerance,
            "{name}: endpoint {index} got {count}, expected {expected} ± {tolerance} (all: {counts:?})"
        );
    }
}

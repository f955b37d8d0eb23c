//! Load balancing: which provider of a service gets the next call.
//!
//! The cluster layer knows the providers of a service and shows them to a [`Balancer`] through
//! [`Endpoints`], in a stable order; the balancer answers with an index. Balancers are pure: no
//! I/O, no clock (time comes in as arguments, see [`PeakEwma`]), no process-global state, and no
//! allocation per pick: the tables some of them keep (the smooth weighted round robin's counters,
//! the consistent-hash ring) are rebuilt only when [`PickContext::generation`] says the membership
//! changed.
//!
//! # Who can be picked
//!
//! An endpoint is *eligible* when it [is ready](Endpoints::is_ready) and its
//! [weight](Endpoints::weight) is above zero. Every balancer, weighted or not, picks only eligible
//! endpoints and returns `None` when there is none: weight 0 is how an operator drains a provider,
//! and draining must work whatever balancer a service uses. A provider that is merely warming up
//! never has weight 0 (see [`warmed_weight`]).
//!
//! # The balancers
//!
//! | name (config)                 | type                         | picks                                   |
//! |-------------------------------|------------------------------|-----------------------------------------|
//! | `random`                      | [`Random`]                   | uniformly                               |
//! | `weighted_random`             | [`WeightedRandom`]           | with probability ∝ weight               |
//! | `round_robin`                 | [`RoundRobin`]               | each in turn                            |
//! | `smooth_weighted_round_robin` | [`SmoothWeightedRoundRobin`] | in turn ∝ weight, interleaved (nginx)   |
//! | `hash`                        | [`Hash`](struct@Hash)        | by argument hash, modulo the count      |
//! | `source_ip_hash`              | [`SourceIpHash`]             | by the caller's IP address              |
//! | `consistent_hash`             | [`ConsistentHash`]           | by argument hash on a ring              |
//! | `least_active`                | [`LeastActive`]              | the one with the fewest calls in flight |
//! | `p2c_peak_ewma`               | [`PowerOfTwoChoices`]        | the less loaded of two random ones      |
//!
//! Randomized balancers take their randomness from a [`fastrand::Rng`] of their own, seeded from
//! entropy by `new()` or from a number by `with_seed(seed)`, so tests are deterministic.
//!
//! ```
//! use tether::balance::{self, Endpoints, PickContext};
//!
//! struct Providers(Vec<(&'static str, u32)>);
//!
//! impl Endpoints for Providers {
//!     fn len(&self) -> usize { self.0.len() }
//!     fn address(&self, index: usize) -> &str { self.0[index].0 }
//!     fn weight(&self, index: usize) -> u32 { self.0[index].1 }
//!     fn is_ready(&self, _index: usize) -> bool { true }
//!     fn in_flight(&self, _index: usize) -> u32 { 0 }
//!     fn load(&self, _index: usize) -> f64 { 1.0 }
//! }
//!
//! let providers = Providers(vec![("10.0.0.1:20880", 5), ("10.0.0.2:20880", 1), ("10.0.0.3:20880", 1)]);
//! let balancer = balance::by_name("smooth_weighted_round_robin").unwrap();
//! let context = PickContext::new(1);
//! let picked: Vec<usize> = (0..7).map(|_| balancer.pick(&providers, &context).unwrap()).collect();
//! assert_eq!(picked, [0, 0, 1, 0, 2, 0, 0]);
//! ```

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

mod consistent_hash;
mod ewma;
mod hash;
mod least_active;
mod p2c;
mod random;
mod round_robin;
mod smooth_weighted;
mod source_ip;
#[cfg(test)]
mod testing;
mod warmup;
mod weighted_random;

pub use consistent_hash::ConsistentHash;
pub use ewma::PeakEwma;
pub use hash::Hash;
pub use least_active::LeastActive;
pub use p2c::PowerOfTwoChoices;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use smooth_weighted::SmoothWeightedRoundRobin;
pub use source_ip::SourceIpHash;
pub use warmup::{DEFAULT_WARMUP, warmed_weight};
pub use weighted_random::WeightedRandom;

/// What a balancer sees of the providers of one service, in a stable order; implemented by the
/// cluster layer.
///
/// Indexes run from 0 to `len() - 1`; the order may change only together with
/// [`PickContext::generation`].
pub trait Endpoints {
    /// How many providers there are, ready or not.
    fn len(&self) -> usize;

    /// The provider's address, `host:port`; identifies it across membership changes.
    fn address(&self, index: usize) -> &str;

    /// The provider's effective weight, already warmed up (see [`warmed_weight`]); 0 means never
    /// pick it.
    fn weight(&self, index: usize) -> u32;

    /// Whether the provider's connection is up; one that is not is skipped by every balancer.
    fn is_ready(&self, index: usize) -> bool;

    /// How many calls to the provider are in flight now.
    fn in_flight(&self, index: usize) -> u32;

    /// The provider's load, lower is better: its peak-EWMA cost times (calls in flight + 1), as
    /// [`PeakEwma::load`] computes it.
    fn load(&self, index: usize) -> f64;

    /// Whether there are no providers at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One call's view, handed to [`Balancer::pick`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PickContext {
    /// Changes if and only if the membership (the list of addresses, in order) changed; balancers
    /// that keep per-provider tables rebuild them when it does.
    pub generation: u64,
    /// A hash of the arguments the method chose, for [`Hash`](struct@Hash) and [`ConsistentHash`]; compute it
    /// with [`stable_hash`] so that every process agrees.
    pub hash_key: Option<u64>,
    /// The caller's address, for [`SourceIpHash`].
    pub source: Option<IpAddr>,
}

impl PickContext {
    /// A context for the given membership generation, with no hash key and no source.
    pub fn new(generation: u64) -> Self {
        Self {
            generation,
            hash_key: None,
            source: None,
        }
    }

    /// Sets the hash of the arguments.
    pub fn with_hash_key(mut self, hash_key: u64) -> Self {
        self.hash_key = Some(hash_key);
        self
    }

    /// Sets the caller's address.
    pub fn with_source(mut self, source: IpAddr) -> Self {
        self.source = Some(source);
        self
    }
}

/// Chooses the provider for a call.
pub trait Balancer: Send + Sync + std::fmt::Debug + 'static {
    /// The name that selects this balancer in config (see [`by_name`]).
    fn name(&self) -> &'static str;

    /// Index of an eligible endpoint (ready, weight above 0), or `None` if there is none.
    fn pick(&self, endpoints: &dyn Endpoints, context: &PickContext) -> Option<usize>;
}

/// The names [`by_name`] knows, in the order of the table in the module documentation.
pub const NAMES: [&str; 9] = [
    "random",
    "weighted_random",
    "round_robin",
    "smooth_weighted_round_robin",
    "hash",
    "source_ip_hash",
    "consistent_hash",
    "least_active",
    "p2c_peak_ewma",
];

/// The balancer a config names (one of [`NAMES`]), with default settings and an RNG seeded from
/// entropy; `None` for an unknown name.
pub fn by_name(name: &str) -> Option<Box<dyn Balancer>> {
    Some(match name {
        "random" => Box::new(Random::new()),
        "weighted_random" => Box::new(WeightedRandom::new()),
        "round_robin" => Box::new(RoundRobin::new()),
        "smooth_weighted_round_robin" => Box::new(SmoothWeightedRoundRobin::new()),
        "hash" => Box::new(Hash::new()),
        "source_ip_hash" => Box::new(SourceIpHash::new()),
        "consistent_hash" => Box::new(ConsistentHash::new()),
        "least_active" => Box::new(LeastActive::new()),
        "p2c_peak_ewma" => Box::new(PowerOfTwoChoices::new()),
        _ => return None,
    })
}

/// A 64-bit hash of `bytes` that is the same in every process, on every platform, in every
/// release of tether: use it for [`PickContext::hash_key`].
///
/// std's `RandomState` (SipHash) is keyed at random per process, and `DefaultHasher`'s algorithm
/// may change between Rust releases; consumers in different processes must agree on where a key
/// goes, so this is FNV-1a, followed by murmur3's 64-bit finalizer because FNV-1a alone spreads
/// short inputs that differ only at the end (`addr#1`, `addr#2`) poorly over the high bits.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hasher = StableHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

/// FNV-1a over any number of byte slices, finished by [`mix`]; see [`stable_hash`].
#[derive(Debug, Clone, Copy)]
struct StableHasher(u64);

impl StableHasher {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::OFFSET_BASIS)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(self) -> u64 {
        mix(self.0)
    }
}

/// murmur3's fmix64: a bijection on u64 in which every input bit affects every output bit.
///
/// Applied to hash keys too, so keys that are not well spread (small integers, multiples of the
/// provider count) still spread over the providers.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// Whether `index` may be picked: ready and weight above 0.
fn is_eligible(endpoints: &dyn Endpoints, index: usize) -> bool {
    endpoints.is_ready(index) && endpoints.weight(index) > 0
}

/// How many endpoints are eligible.
fn eligible_count(endpoints: &dyn Endpoints) -> usize {
    (0..endpoints.len())
        .filter(|&index| is_eligible(endpoints, index))
        .count()
}

/// The index of the `n`th eligible endpoint (from 0).
fn nth_eligible(endpoints: &dyn Endpoints, n: usize) -> Option<usize> {
    (0..endpoints.len())
        .filter(|&index| is_eligible(endpoints, index))
        .nth(n)
}

/// The RNG of a randomized balancer: seeded from entropy by default, or from a seed so that its
/// picks repeat exactly (in tests).
#[derive(Debug)]
struct SeededRng(Mutex<fastrand::Rng>);

impl SeededRng {
    fn with_seed(seed: u64) -> Self {
        Self(Mutex::new(fastrand::Rng::with_seed(seed)))
    }

    fn lock(&self) -> MutexGuard<'_, fastrand::Rng> {
        lock(&self.0)
    }
}

impl Default for SeededRng {
    fn default() -> Self {
        Self(Mutex::new(fastrand::Rng::new()))
    }
}

/// A uniformly random eligible endpoint.
fn random_eligible(endpoints: &dyn Endpoints, rng: &SeededRng) -> Option<usize> {
    match eligible_count(endpoints) {
        0 => None,
        count => {
            let n = rng.lock().usize(..count);
            nth_eligible(endpoints, n)
        }
    }
}

/// Locks a balancer's state; a panic elsewhere cannot leave an RNG or a counter table in a state
/// that is unsafe to use, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::testing::{Provider, TestEndpoints};
    use super::*;

    /// Every balancer, randomized ones seeded.
    fn all_seeded(seed: u64) -> Vec<Box<dyn Balancer>> {
        vec![
            Box::new(Random::with_seed(seed)),
            Box::new(WeightedRandom::with_seed(seed)),
            Box::new(RoundRobin::new()),
            Box::new(SmoothWeightedRoundRobin::new()),
            Box::new(Hash::with_seed(seed)),
            Box::new(SourceIpHash::with_seed(seed)),
            Box::new(ConsistentHash::with_seed(seed)),
            Box::new(LeastActive::with_seed(seed)),
            Box::new(PowerOfTwoChoices::with_seed(seed)),
        ]
    }

    fn contexts() -> [PickContext; 3] {
        [
            PickContext::new(1),
            PickContext::new(1).with_hash_key(42),
            PickContext::new(1).with_source(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 7))),
        ]
    }

    #[test]
    fn by_name_knows_every_name_and_only_those() {
        for name in NAMES {
            assert_eq!(by_name(name).expect(name).name(), name);
        }
        assert!(by_name("roundrobin").is_none());
        assert!(by_name("").is_none());
        let seeded: Vec<&str> = all_seeded(0)
            .iter()
            .map(|balancer| balancer.name())
            .collect();
        assert_eq!(seeded, NAMES);
    }

    #[test]
    fn none_when_nothing_is_ready() {
        let mut endpoints = TestEndpoints::with_weights(&[1, 2, 3]);
        for provider in &mut endpoints.providers {
            provider.ready = false;
        }
        for balancer in all_seeded(1) {
            for context in contexts() {
                assert_eq!(
                    balancer.pick(&endpoints, &context),
                    None,
                    "{}",
                    balancer.name()
                );
            }
        }
    }

    #[test]
    fn none_when_there_are_no_endpoints() {
        let endpoints = TestEndpoints::with_weights(&[]);
        for balancer in all_seeded(1) {
            for context in contexts() {
                assert_eq!(
                    balancer.pick(&endpoints, &context),
                    None,
                    "{}",
                    balancer.name()
                );
            }
        }
    }

    #[test]
    fn single_endpoint() {
        let mut endpoints = TestEndpoints::with_weights(&[3]);
        for balancer in all_seeded(2) {
            for context in contexts() {
                for _ in 0..10 {
                    assert_eq!(
                        balancer.pick(&endpoints, &context),
                        Some(0),
                        "{}",
                        balancer.name()
                    );
                }
            }
        }
        endpoints.providers[0].ready = false;
        for balancer in all_seeded(2) {
            for context in contexts() {
                assert_eq!(
                    balancer.pick(&endpoints, &context),
                    None,
                    "{}",
                    balancer.name()
                );
            }
        }
    }

    #[test]
    fn weight_zero_is_never_picked_by_any_balancer() {
        let endpoints = TestEndpoints::with_weights(&[0, 1, 0, 2, 0]);
        for balancer in all_seeded(3) {
            for key in 0..500 {
                let context = PickContext::new(1)
                    .with_hash_key(key)
                    .with_source(IpAddr::V4(Ipv4Addr::from(key as u32)));
                let picked = balancer.pick(&endpoints, &context).unwrap();
                assert!(
                    picked == 1 || picked == 3,
                    "{} picked {picked}",
                    balancer.name()
                );
            }
        }
        let drained = TestEndpoints::with_weights(&[0, 0]);
        for balancer in all_seeded(3) {
            assert_eq!(
                balancer.pick(&drained, &PickContext::new(1)),
                None,
                "{}",
                balancer.name()
            );
        }
    }

    #[test]
    fn same_seed_same_picks() {
        let mut endpoints = TestEndpoints::with_weights(&[1, 2, 3, 4, 5]);
        for (index, provider) in endpoints.providers.iter_mut().enumerate() {
            provider.in_flight = (index % 2) as u32;
            provider.load = 1.0 + (index % 3) as f64;
        }
        let run = |seed| -> Vec<Vec<Option<usize>>> {
            all_seeded(seed)
                .iter()
                .map(|balancer| {
                    (0..1000)
                        .map(|_| balancer.pick(&endpoints, &PickContext::new(1)))
                        .collect()
                })
                .collect()
        };
        assert_eq!(run(99), run(99));
    }

    #[test]
    fn balancers_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Box<dyn Balancer>>();
        assert_send_sync::<PeakEwma>();
    }

    #[test]
    fn fnv1a_part_matches_published_vectors() {
        // From the FNV reference test suite (fnv-1a, 64 bit).
        let fnv1a = |bytes: &[u8]| {
            let mut hasher = StableHasher::new();
            hasher.write(bytes);
            hasher.0
        };
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn stable_hash_never_changes() {
        // Pinned: a change here moves every consistent-hash key of every deployed consumer.
        assert_eq!(stable_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(stable_hash(b"10.0.0.1:20880#0"), 0x6460_5ce3_91d7_786f);
        assert_eq!(mix(0), 0);
    }

    #[test]
    fn streaming_equals_one_shot() {
        let mut hasher = StableHasher::new();
        hasher.write(b"10.0.0.1:");
        hasher.write(b"20880#");
        hasher.write(b"0");
        assert_eq!(hasher.finish(), stable_hash(b"10.0.0.1:20880#0"));
    }

    fn provider_strategy() -> impl Strategy<Value = Provider> {
        (0u32..4, any::<bool>(), 0u32..4, 0.0f64..4.0).prop_map(
            |(weight, ready, in_flight, load)| Provider {
                address: String::new(),
                weight,
                ready,
                in_flight,
                load,
            },
        )
    }

    proptest! {
        /// Whatever the endpoints and the context, every balancer picks an eligible endpoint, and
        /// picks none only when there is none.
        #[test]
        fn picks_only_eligible_endpoints(
            providers in prop::collection::vec(provider_strategy(), 0..12),
            hash_key in any::<Option<u64>>(),
            source in any::<Option<[u8; 4]>>(),
            seed in any::<u64>(),
        ) {
            let mut endpoints = TestEndpoints { providers };
            for (index, provider) in endpoints.providers.iter_mut().enumerate() {
                provider.address = format!("10.0.0.{index}:20880");
            }
            let any_eligible = endpoints.providers.iter().any(|p| p.ready && p.weight > 0);
            let context = PickContext {
                generation: 7,
                hash_key,
                source: source.map(|octets| IpAddr::V4(Ipv4Addr::from(octets))),
            };
            for balancer in all_seeded(seed) {
                for _ in 0..8 {
                    match balancer.pick(&endpoints, &context) {
                        Some(index) => {
                            let provider = &endpoints.providers[index];
                            prop_assert!(provider.ready && provider.weight > 0, "{}", balancer.name());
                        }
                        None => prop_assert!(!any_eligible, "{}", balancer.name()),
                    }
                }
            }
        }
    }
}

//! The caller's IP address modulo the number of eligible endpoints.

use super::{
    Balancer, Endpoints, PickContext, SeededRng, eligible_count, nth_eligible, random_eligible,
    stable_hash,
};
use std::net::IpAddr;

/// Sends every call from one IP address to the same endpoint while the eligible endpoints stay
/// the same (`source_ip_hash` in config): [`stable_hash`] of the address's octets modulo the
/// number of eligible endpoints.
///
/// An IPv4-mapped IPv6 address counts as its IPv4 address. Like [`Hash`](super::Hash), a change
/// in the eligible endpoints moves most sources. A call without a source goes to a random
/// eligible endpoint.
#[derive(Debug, Default)]
pub struct SourceIpHash {
    rng: SeededRng,
}

impl SourceIpHash {
    /// A balancer whose sourceless picks use an RNG seeded from entropy.
    pub fn new() -> Self {
        Self::default()
    }

    /// A balancer whose sourceless picks are determined by `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            rng: SeededRng::with_seed(seed),
        }
    }
}

fn hash_ip(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(ip) => stable_hash(&ip.octets()),
        IpAddr::V6(ip) => stable_hash(&ip.octets()),
    }
}

impl Balancer for SourceIpHash {
    fn name(&self) -> &'static str {
        "source_ip_hash"
    }

    fn pick(&self, endpoints: &dyn Endpoints, context: &PickContext) -> Option<usize> {
        let Some(source) = context.source else {
            return random_eligible(endpoints, &self.rng);
        };
        match eligible_count(endpoints) {
            0 => None,
            count => nth_eligible(endpoints, (hash_ip(source) % count as u64) as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::super::testing::{TestEndpoints, assert_counts_near, count_picks};
    use super::*;

    #[test]
    fn same_ip_same_endpoint() {
        let endpoints = TestEndpoints::with_weights(&[1; 5]);
        let balancer = SourceIpHash::with_seed(1);
        let other = SourceIpHash::with_seed(2);
        for last in 0..=255u8 {
            let context = PickContext::new(1).with_source(Ipv4Addr::new(10, 1, 2, last).into());
            let first = balancer.pick(&endpoints, &context);
            for _ in 0..5 {
                assert_eq!(balancer.pick(&endpoints, &context), first);
            }
            assert_eq!(other.pick(&endpoints, &context), first);
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_address() {
        let endpoints = TestEndpoints::with_weights(&[1; 7]);
        let balancer = SourceIpHash::with_seed(1);
        for last in 0..=255u8 {
            let v4 = Ipv4Addr::new(192, 168, 0, last);
            let mapped: Ipv6Addr = v4.to_ipv6_mapped();
            assert_eq!(
                balancer.pick(&endpoints, &PickContext::new(1).with_source(v4.into())),
                balancer.pick(&endpoints, &PickContext::new(1).with_source(mapped.into())),
            );
        }
    }

    #[test]
    fn sources_spread_evenly_over_60000_picks() {
        // 60,000 distinct addresses 10.0.0.0 + n. Tolerance ±1% of 60,000.
        let endpoints = TestEndpoints::with_weights(&[1, 2, 3]);
        let counts = count_picks(&SourceIpHash::with_seed(1), &endpoints, 60_000, |pick| {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + pick as u32);
            PickContext::new(1).with_source(ip.into())
        });
        assert_counts_near(
            "source_ip_hash, 60000 IPv4 sources",
            &counts,
            &[20_000.0; 3],
            600.0,
        );
    }

    #[test]
    fn ipv6_sources_spread_too() {
        let endpoints = TestEndpoints::with_weights(&[1, 1]);
        let counts = count_picks(&SourceIpHash::with_seed(1), &endpoints, 60_000, |pick| {
            let ip =
                Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + u128::from(pick));
            PickContext::new(1).with_source(ip.into())
        });
        assert_counts_near(
            "source_ip_hash, 60000 IPv6 sources",
            &counts,
            &[30_000.0; 2],
            600.0,
        );
    }

    #[test]
    fn without_a_source_random() {
        let endpoints = TestEndpoints::with_weights(&[1, 1, 1]);
        let counts = count_picks(&SourceIpHash::with_seed(4), &endpoints, 60_000, |_| {
            PickContext::new(1)
        });
        assert_counts_near("source_ip_hash, no source", &counts, &[20_000.0; 3], 600.0);
    }
}

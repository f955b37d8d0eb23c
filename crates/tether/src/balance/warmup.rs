//! Linear warm-up of a new provider's weight.

use std::time::Duration;

/// Dubbo's default warm-up period: 10 minutes.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(10 * 60);

/// The weight a provider `uptime` after it started gets, when its configured weight is `weight`
/// and warm-up lasts `warmup`: `weight × uptime / warmup`, at least 1 while `weight` is above 0,
/// the full weight once `uptime ≥ warmup` (Dubbo's rule).
///
/// A freshly started process has cold caches, empty connection pools and lazily initialized
/// state; ramping its share up lets it warm without a burst of slow calls. Never 0 for a
/// non-zero weight, because weight 0 means "never pick" (a drained provider).
///
/// ```
/// use std::time::Duration;
/// use tether::balance::warmed_weight;
///
/// let minute = Duration::from_secs(60);
/// assert_eq!(warmed_weight(100, 3 * minute, 10 * minute), 30);
/// assert_eq!(warmed_weight(100, 20 * minute, 10 * minute), 100);
/// assert_eq!(warmed_weight(100, Duration::ZERO, 10 * minute), 1);
/// ```
pub fn warmed_weight(weight: u32, uptime: Duration, warmup: Duration) -> u32 {
    if weight == 0 || uptime >= warmup {
        return weight;
    }
    // uptime < warmup here, so warmup > 0 and the quotient is below `weight`: it fits in u32.
    let warmed = u128::from(weight) * uptime.as_nanos() / warmup.as_nanos();
    u32::try_from(warmed).unwrap_or(weight).max(1)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn linear_then_full() {
        let warmup = 10 * MINUTE;
        let weights: Vec<u32> = (0..=12)
            .map(|minutes| warmed_weight(100, minutes * MINUTE, warmup))
            .collect();
        assert_eq!(
            weights,
            [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100, 100]
        );
        assert_eq!(warmed_weight(100, Duration::from_secs(90), warmup), 15);
    }

    #[test]
    fn at_least_one_while_the_weight_is_positive() {
        assert_eq!(warmed_weight(3, Duration::from_secs(1), 10 * MINUTE), 1);
        assert_eq!(warmed_weight(1, Duration::ZERO, 10 * MINUTE), 1);
    }

    #[test]
    fn weight_zero_stays_zero() {
        for uptime in [Duration::ZERO, MINUTE, 100 * MINUTE] {
            assert_eq!(warmed_weight(0, uptime, 10 * MINUTE), 0);
        }
    }

    #[test]
    fn no_warmup_means_full_weight_at_once() {
        assert_eq!(warmed_weight(7, Duration::ZERO, Duration::ZERO), 7);
    }

    #[test]
    fn huge_values_do_not_overflow() {
        assert_eq!(
            warmed_weight(u32::MAX, Duration::MAX / 2, Duration::MAX),
            u32::MAX / 2
        );
        assert_eq!(
            warmed_weight(u32::MAX, Duration::MAX, Duration::MAX),
            u32::MAX
        );
    }

    proptest! {
        #[test]
        fn bounded_and_monotone(
            weight in any::<u32>(),
            a in any::<u64>(),
            b in any::<u64>(),
            warmup in any::<u64>(),
        ) {
            let (earlier, later) = (a.min(b), a.max(b));
            let at = |uptime| {
                warmed_weight(weight, Duration::from_nanos(uptime), Duration::from_nanos(warmup))
            };
            prop_assert!(at(earlier) <= at(later));
            prop_assert!(at(later) <= weight);
            prop_assert_eq!(at(earlier) == 0, weight == 0);
            if later >= warmup {
                prop_assert_eq!(at(later), weight);
            }
        }
    }
}

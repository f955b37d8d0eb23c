//! Peak-EWMA latency estimate, the cost behind [`Endpoints::load`](super::Endpoints::load).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;

/// A provider's latency estimate in nanoseconds, as Finagle, linkerd and tower keep it: an
/// exponentially weighted moving average of round-trip times that jumps at once to any
/// observation above it (the peak) and comes down only gradually.
///
/// When an observation `rtt` arrives `Δt` after the previous one, the estimate becomes `rtt` if
/// that is higher, and otherwise `estimate × w + rtt × (1 − w)` with `w = e^(−Δt / decay)`:
/// the older the estimate, the less it counts. Between observations [`cost`](Self::cost) decays
/// toward zero with the same time constant, as Finagle and tower do by observing 0 at each read,
/// so a provider that was slow once and then avoided gets tried again; unlike theirs, reading
/// does not change the estimate, so the result does not depend on how often it is read.
///
/// Before the first observation the cost is the configured initial cost and does not decay; the
/// first observation replaces it. Time is passed in (`now`), never read here; a `now` earlier
/// than the last observation's counts as no time passed.
#[derive(Debug)]
pub struct PeakEwma {
    /// The time constant, in nanoseconds, at least 1.
    decay_ns: f64,
    /// The cost before any observation, in nanoseconds.
    initial_ns: f64,
    estimate: Mutex<Option<Estimate>>,
}

#[derive(Debug, Clone, Copy)]
struct Estimate {
    /// In nanoseconds.
    cost: f64,
    /// When it was last updated.
    at: Instant,
}

impl PeakEwma {
    /// The time constant unless configured: after 10 s an observation weighs `1/e` of what it
    /// weighed when it was made.
    pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

    /// The cost of a provider never observed unless configured: 1 ms.
    pub const DEFAULT_INITIAL_COST: Duration = Duration::from_millis(1);

    /// An estimator with time constant `decay` (how fast the past is forgotten; zero means at
    /// once) and `initial_cost` before the first observation.
    pub fn new(decay: Duration, initial_cost: Duration) -> Self {
        Self {
            decay_ns: nanos(decay).max(1.0),
            initial_ns: nanos(initial_cost),
            estimate: Mutex::new(None),
        }
    }

    /// Records a call's round-trip time, measured when it finished at `now`.
    pub fn observe(&self, rtt: Duration, now: Instant) {
        let rtt = nanos(rtt);
        let mut estimate = lock(&self.estimate);
        let next = match *estimate {
            None => Estimate { cost: rtt, at: now },
            Some(Estimate { cost, at }) => {
                let cost = if rtt > cost {
                    rtt
                } else {
                    let weight = self.weight(at, now);
                    cost * weight + rtt * (1.0 - weight)
                };
                Estimate {
                    cost,
                    at: at.max(now),
                }
            }
        };
        *estimate = Some(next);
    }

    /// The estimated round-trip time at `now`, in nanoseconds.
    pub fn cost(&self, now: Instant) -> f64 {
        match *lock(&self.estimate) {
            None => self.initial_ns,
            Some(Estimate { cost, at }) => cost * self.weight(at, now),
        }
    }

    /// The load [`Endpoints::load`](super::Endpoints::load) reports for a provider with this
    /// estimate and `in_flight` calls in flight: `cost(now) × (in_flight + 1)`, so a fast
    /// provider that is already busy looks as costly as it will be for the next call.
    pub fn load(&self, now: Instant, in_flight: u32) -> f64 {
        self.cost(now) * (f64::from(in_flight) + 1.0)
    }

    /// `e^(−elapsed / decay)`, the weight left to an estimate made at `then`.
    fn weight(&self, then: Instant, now: Instant) -> f64 {
        let elapsed = nanos(now.saturating_duration_since(then));
        (-elapsed / self.decay_ns).exp()
    }
}

impl Default for PeakEwma {
    /// Time constant 10 s, initial cost 1 ms.
    fn default() -> Self {
        Self::new(Self::DEFAULT_DECAY, Self::DEFAULT_INITIAL_COST)
    }
}

fn nanos(duration: Duration) -> f64 {
    duration.as_nanos() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    #[track_caller]
    fn assert_close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() <= expected.abs() * 1e-9 + 1e-6,
            "{actual} != {expected}"
        );
    }

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    #[test]
    fn initial_cost_until_the_first_observation() {
        let t0 = Instant::now();
        let ewma = PeakEwma::default();
        assert_close(ewma.cost(t0), 1.0 * MS);
        assert_close(ewma.cost(t0 + secs(3600.0)), 1.0 * MS);
        let custom = PeakEwma::new(secs(1.0), Duration::from_millis(3));
        assert_close(custom.cost(t0), 3.0 * MS);
    }

    #[test]
    fn first_observation_replaces_the_initial_cost() {
        let t0 = Instant::now();
        let ewma = PeakEwma::default();
        ewma.observe(Duration::from_micros(200), t0);
        assert_close(ewma.cost(t0), 0.2 * MS);
    }

    #[test]
    fn jumps_to_a_peak_at_once() {
        let t0 = Instant::now();
        let ewma = PeakEwma::default();
        ewma.observe(Duration::from_millis(5), t0);
        ewma.observe(Duration::from_millis(50), t0 + secs(1.0));
        assert_close(ewma.cost(t0 + secs(1.0)), 50.0 * MS);
    }

    #[test]
    fn decays_toward_zero_between_observations() {
        let t0 = Instant::now();
        let ewma = PeakEwma::default();
        ewma.observe(Duration::from_millis(10), t0);
        assert_close(ewma.cost(t0), 10.0 * MS);
        assert_close(ewma.cost(t0 + secs(5.0)), 10.0 * MS * (-0.5f64).exp());
        assert_close(ewma.cost(t0 + secs(10.0)), 10.0 * MS * (-1.0f64).exp()); // 3.679 ms
        assert_close(ewma.cost(t0 + secs(20.0)), 10.0 * MS * (-2.0f64).exp());
    }

    #[test]
    fn a_lower_observation_pulls_the_estimate_down_by_age() {
        let t0 = Instant::now();
        let ewma = PeakEwma::default();
        ewma.observe(Duration::from_millis(10), t0);
        ewma.observe(Duration::from_millis(2), t0 + secs(10.0));
        // 10 ms × e^−1 + 2 ms × (1 − e^−1) = 4.943 ms
        let w = (-1.0f64).exp();
        assert_close(
            ewma.cost(t0 + secs(10.0)),
            10.0 * MS * w + 2.0 * MS * (1.0 - w),
        );

        // Right after a peak, a low observation barely counts.
        let fresh = PeakEwma::default();
        fresh.observe(Duration::from_millis(10), t0);
        fresh.observe(Duration::from_millis(2), t0 + Duration::from_millis(1));
        assert!(fresh.cost(t0 + Duration::from_millis(1)) > 9.99 * MS);
    }

    #[test]
    fn steady_observations_converge() {
        let t0 = Instant::now();
        let ewma = PeakEwma::default();
        ewma.observe(Duration::from_millis(10), t0);
        let mut now = t0;
        // 2 ms every 100 ms for 60 s: what is left of the 10 ms peak is 8 ms × e^−6 ≈ 0.02 ms.
        for _ in 0..600 {
            now += Duration::from_millis(100);
            ewma.observe(Duration::from_millis(2), now);
        }
        let cost = ewma.cost(now);
        assert!((cost - 2.0 * MS).abs() < 0.02 * MS, "{cost}");
    }

    #[test]
    fn reading_does_not_change_the_estimate() {
        let t0 = Instant::now();
        let read = PeakEwma::default();
        let unread = PeakEwma::default();
        for ewma in [&read, &unread] {
            ewma.observe(Duration::from_millis(10), t0);
        }
        for n in 1..100 {
            read.cost(t0 + Duration::from_millis(n * 50));
        }
        for ewma in [&read, &unread] {
            ewma.observe(Duration::from_millis(3), t0 + secs(5.0));
        }
        assert_eq!(read.cost(t0 + secs(6.0)), unread.cost(t0 + secs(6.0)));
    }

    #[test]
    fn a_provider_slow_once_gets_cheap_again() {
        let t0 = Instant::now();
        let slow = PeakEwma::default();
        slow.observe(secs(1.0), t0);
        // e^−10 of a second: 45 µs, cheaper than a provider never tried.
        assert!(slow.cost(t0 + secs(100.0)) < PeakEwma::default().cost(t0 + secs(100.0)));
    }

    #[test]
    fn earlier_now_counts_as_no_time_passed() {
        let t0 = Instant::now();
        let ewma = PeakEwma::default();
        ewma.observe(Duration::from_millis(10), t0 + secs(2.0));
        // A call that finished "before" the last one: no weight lost, so a lower rtt changes
        // nothing and a higher one is still a peak.
        ewma.observe(Duration::from_millis(1), t0 + secs(1.0));
        assert_close(ewma.cost(t0 + secs(2.0)), 10.0 * MS);
        ewma.observe(Duration::from_millis(30), t0 + secs(1.0));
        assert_close(ewma.cost(t0 + secs(2.0)), 30.0 * MS);
        assert_close(ewma.cost(t0), 30.0 * MS);
    }

    #[test]
    fn zero_decay_forgets_at_once() {
        let t0 = Instant::now();
        let ewma = PeakEwma::new(Duration::ZERO, Duration::from_millis(1));
        ewma.observe(Duration::from_millis(10), t0);
        ewma.observe(Duration::from_millis(2), t0 + secs(1.0));
        assert_close(ewma.cost(t0 + secs(1.0)), 2.0 * MS);
        assert!(ewma.cost(t0 + secs(2.0)) < 1e-6);
    }

    #[test]
    fn load_multiplies_by_calls_in_flight_plus_one() {
        let t0 = Instant::now();
        let ewma = PeakEwma::default();
        ewma.observe(Duration::from_millis(4), t0);
        assert_close(ewma.load(t0, 0), 4.0 * MS);
        assert_close(ewma.load(t0, 3), 16.0 * MS);
    }
}

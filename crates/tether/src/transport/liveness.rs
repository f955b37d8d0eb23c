//! The timer logic of a connection, apart from any socket so it can be tested step by step:
//! idle accounting for heartbeats, and the backoff schedule of reconnects.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Backoff as BackoffConfig;

/// Heartbeat accounting for one connection, driven by a tick every `interval`.
///
/// Every frame received marks the connection alive; a tick that finds no mark since the previous
/// tick adds one interval of silence. Silence of at least one interval (two on the passive side,
/// see [`Liveness::passive`]) sends a Ping; silence of `idle_timeout` declares the connection
/// dead. Traffic in both directions counts, so a busy connection sends no Ping. Because a frame
/// may arrive just after a tick, the connection is declared dead between `idle_timeout` and
/// `idle_timeout + interval` after its last frame; the tick costs nothing per frame but one
/// store.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    interval: Duration,
    /// Silence after which a tick asks for a Ping.
    ping_after: Duration,
    idle_timeout: Duration,
    silent: Duration,
    received: bool,
}

/// What a tick asks the connection to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Something arrived since the last tick.
    Alive,
    /// Nothing arrived for `silent`, too short to ask the peer for a sign of life.
    Quiet { silent: Duration },
    /// Nothing arrived for `silent`: send a Ping.
    Ping { silent: Duration },
    /// Nothing arrived for `silent`, at least the idle timeout: close the connection.
    Dead { silent: Duration },
}

impl Liveness {
    /// The active side (the client): pings after one silent interval.
    pub(crate) fn new(interval: Duration, idle_timeout: Duration) -> Self {
        Self {
            interval,
            ping_after: interval,
            idle_timeout,
            silent: Duration::ZERO,
            received: false,
        }
    }

    /// The passive side (the server): pings only after two silent intervals. A client that
    /// heartbeats pings every other interval at most, and its Ping is a frame here, so a live
    /// connection carries one Ping and one Pong per round instead of a pair from each side.
    /// A peer that sends nothing still gets a Ping before the idle timeout's tick.
    pub(crate) fn passive(interval: Duration, idle_timeout: Duration) -> Self {
        Self {
            ping_after: interval * 2,
            ..Self::new(interval, idle_timeout)
        }
    }

    /// The time between ticks.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// A frame arrived.
    #[inline]
    pub(crate) fn on_frame(&mut self) {
        self.received = true;
    }

    /// One interval passed.
    pub(crate) fn on_tick(&mut self) -> Tick {
        if std::mem::take(&mut self.received) {
            self.silent = Duration::ZERO;
            return Tick::Alive;
        }
        self.silent += self.interval;
        let silent = self.silent;
        if silent >= self.idle_timeout {
            Tick::Dead { silent }
        } else if silent >= self.ping_after {
            Tick::Ping { silent }
        } else {
            Tick::Quiet { silent }
        }
    }
}

/// Ticks every `interval`, the first one between one interval and one interval plus a slot
/// (an eighth of the interval) from now. Ticks fall on a grid of slots shared by the whole
/// process, so thousands of idle connections wake the runtime a few times per interval, in
/// batches, rather than once each at scattered instants. A tick delayed by a busy runtime is not
/// made up for with a burst.
pub(crate) fn heartbeat_ticks(interval: Duration) -> tokio::time::Interval {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let first = epoch + first_tick(Instant::now().saturating_duration_since(epoch), interval);
    let mut ticks = tokio::time::interval_at(first, interval.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// The first tick, as time since the grid's origin, for a connection starting `now` after it:
/// one interval later, rounded up to the grid.
fn first_tick(now: Duration, interval: Duration) -> Duration {
    let slot = (interval / 8).max(Duration::from_millis(1)).as_nanos();
    let earliest = (now + interval).as_nanos();
    let slots = earliest.div_ceil(slot);
    Duration::from_nanos(u64::try_from(slots * slot).unwrap_or(u64::MAX))
}

/// The delays between reconnect attempts: `initial`, then times `multiplier` after each failure,
/// never above `max`, each shortened by a random part of up to `jitter` so that many clients
/// that lost the same server do not all come back in the same instant.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    failures: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig, rng: fastrand::Rng) -> Self {
        Self {
            config,
            failures: 0,
            rng,
        }
    }

    /// The delay before the next attempt, after one more failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let BackoffConfig {
            initial,
            multiplier,
            max,
            jitter,
            ..
        } = self.config;
        let exponent = i32::try_from(self.failures).unwrap_or(i32::MAX);
        self.failures = self.failures.saturating_add(1);
        let base = initial.as_secs_f64() * multiplier.max(1.0).powi(exponent);
        let capped = base.min(max.as_secs_f64());
        let jitter = jitter.clamp(0.0, 1.0);
        Duration::from_secs_f64(capped * (1.0 - jitter * self.rng.f64()))
    }

    /// Failures since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// A connection succeeded: the next failure starts from `initial` again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_silent_connection_pings_then_dies() {
        let mut liveness = Liveness::new(200 * MS, 600 * MS);
        assert_eq!(liveness.on_tick(), Tick::Ping { silent: 200 * MS });
        assert_eq!(liveness.on_tick(), Tick::Ping { silent: 400 * MS });
        assert_eq!(liveness.on_tick(), Tick::Dead { silent: 600 * MS });
    }

    #[test]
    fn any_frame_resets_the_silence() {
        let mut liveness = Liveness::new(200 * MS, 600 * MS);
        assert_eq!(liveness.on_tick(), Tick::Ping { silent: 200 * MS });
        assert_eq!(liveness.on_tick(), Tick::Ping { silent: 400 * MS });
        liveness.on_frame();
        assert_eq!(liveness.on_tick(), Tick::Alive);
        assert_eq!(liveness.on_tick(), Tick::Ping { silent: 200 * MS });
    }

    #[test]
    fn a_busy_connection_never_pings() {
        let mut liveness = Liveness::new(200 * MS, 600 * MS);
        for _ in 0..1000 {
            liveness.on_frame();
            liveness.on_frame();
            assert_eq!(liveness.on_tick(), Tick::Alive);
        }
    }

    #[test]
    fn the_passive_side_pings_only_after_two_silent_intervals() {
        let mut liveness = Liveness::passive(200 * MS, 600 * MS);
        assert_eq!(liveness.on_tick(), Tick::Quiet { silent: 200 * MS });
        assert_eq!(liveness.on_tick(), Tick::Ping { silent: 400 * MS });
        assert_eq!(liveness.on_tick(), Tick::Dead { silent: 600 * MS });
        // A peer pinging every other interval keeps it from ever pinging.
        let mut liveness = Liveness::passive(200 * MS, 600 * MS);
        for _ in 0..100 {
            liveness.on_frame();
            assert_eq!(liveness.on_tick(), Tick::Alive);
            assert_eq!(liveness.on_tick(), Tick::Quiet { silent: 200 * MS });
        }
    }

    #[test]
    fn first_ticks_fall_on_a_shared_grid_one_interval_or_a_slot_more_away() {
        let interval = 1000 * MS;
        let slot = 125 * MS;
        let mut firsts = std::collections::BTreeSet::new();
        for start_us in (0..5_000_000u64).step_by(7_919) {
            let now = Duration::from_micros(start_us);
            let first = first_tick(now, interval);
            assert!(first >= now + interval && first < now + interval + slot);
            assert_eq!(first.as_nanos() % slot.as_nanos(), 0);
            firsts.insert(first);
        }
        // 632 connections starting over five seconds share 41 instants.
        assert_eq!(firsts.len(), 41);
        // A tiny interval still ticks on a grid of at least a millisecond.
        assert_eq!(
            first_tick(Duration::from_micros(10), Duration::from_micros(100)),
            MS
        );
    }

    #[test]
    fn an_idle_timeout_below_the_interval_dies_on_the_first_silent_tick() {
        let mut liveness = Liveness::new(200 * MS, 100 * MS);
        assert_eq!(liveness.on_tick(), Tick::Dead { silent: 200 * MS });
    }

    fn config(jitter: f64) -> BackoffConfig {
        BackoffConfig {
            initial: 100 * MS,
            multiplier: 2.0,
            max: 1000 * MS,
            jitter,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new(config(0.0), fastrand::Rng::with_seed(1));
        let delays: Vec<_> = (0..7).map(|_| backoff.next_delay()).collect();
        let expected = [100, 200, 400, 800, 1000, 1000, 1000].map(|ms| ms * MS);
        assert_eq!(delays, expected);
        assert_eq!(backoff.failures(), 7);
        backoff.reset();
        assert_eq!(backoff.next_delay(), 100 * MS);
    }

    #[test]
    fn jitter_only_shortens_and_stays_within_its_share() {
        let mut backoff = Backoff::new(config(0.5), fastrand::Rng::with_seed(9));
        let mut seen_below = false;
        for ceiling in [100, 200, 400, 800, 1000, 1000, 1000, 1000].map(|ms| ms * MS) {
            let delay = backoff.next_delay();
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{delay:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            seen_below |= delay < ceiling;
        }
        assert!(seen_below, "jitter never applied");
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let schedule = |seed| {
            let mut backoff = Backoff::new(config(0.3), fastrand::Rng::with_seed(seed));
            (0..10).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(schedule(5), schedule(5));
        assert_ne!(schedule(5), schedule(6));
    }
}

//! Which connections a server keeps: the table of open connections, and the choice of which one
//! gives way when one more arrives than `max_connections` allows.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Eviction;

/// What one connection did, updated by its reader on every request.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Milliseconds from the table's epoch to the last request (or to the accept).
    last_used: AtomicU64,
    uses: AtomicU64,
    epoch: Instant,
}

impl Activity {
    /// A request arrived `now` (the reader's one clock reading for it).
    pub(crate) fn record_request(&self, now: Instant) {
        self.uses.fetch_add(1, Ordering::Relaxed);
        self.last_used
            .store(millis_between(self.epoch, now), Ordering::Relaxed);
    }
}

fn millis_between(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// A connection as the table knows it.
struct Entry {
    /// Accept order; also the key.
    id: u64,
    activity: Arc<Activity>,
    /// Cancelled to evict the connection.
    evict: CancellationToken,
}

/// The open connections of one server.
pub(crate) struct Admission {
    max: Option<usize>,
    eviction: Eviction,
    epoch: Instant,
    state: Mutex<State>,
}

struct State {
    next_id: u64,
    open: HashMap<u64, Entry>,
    rng: fastrand::Rng,
}

/// A connection let in: its id (to leave with), its activity record and its eviction signal.
pub(crate) struct Admitted {
    pub(crate) id: u64,
    pub(crate) activity: Arc<Activity>,
    pub(crate) evict: CancellationToken,
}

impl Admission {
    pub(crate) fn new(max: Option<usize>, eviction: Eviction, rng: fastrand::Rng) -> Self {
        let state = State {
            next_id: 0,
            open: HashMap::new(),
            rng,
        };
        Self {
            max,
            eviction,
            epoch: Instant::now(),
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connections open.
    pub(crate) fn open(&self) -> usize {
        self.lock().open.len()
    }

    /// Lets a new connection in, evicting another if the strategy says so; `None` means the new
    /// one is refused.
    pub(crate) fn admit(&self) -> Option<Admitted> {
        let mut state = self.lock();
        if self.max.is_some_and(|max| state.open.len() >= max) {
            let State { open, rng, .. } = &mut *state;
            let victim = pick_victim(self.eviction, open.values().map(Candidate::of), rng)?;
            if let Some(entry) = open.remove(&victim) {
                tracing::info!(connection = entry.id, strategy = ?self.eviction, "evicting a connection to make room");
                entry.evict.cancel();
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let activity = Arc::new(Activity {
            last_used: AtomicU64::new(millis_between(self.epoch, Instant::now())),
            uses: AtomicU64::new(0),
            epoch: self.epoch,
        });
        let evict = CancellationToken::new();
        let entry = Entry {
            id,
            activity: activity.clone(),
            evict: evict.clone(),
        };
        state.open.insert(id, entry);
        Some(Admitted {
            id,
            activity,
            evict,
        })
    }

    /// Removes a closed connection (a no-op for one already evicted).
    pub(crate) fn leave(&self, id: u64) {
        self.lock().open.remove(&id);
    }
}

/// What the strategies compare.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: u64,
    last_used: u64,
    uses: u64,
}

impl Candidate {
    fn of(entry: &Entry) -> Self {
        Self {
            id: entry.id,
            last_used: entry.activity.last_used.load(Ordering::Relaxed),
            uses: entry.activity.uses.load(Ordering::Relaxed),
        }
    }
}

/// The connection to close, or `None` to refuse the newcomer. Ties go to the older connection.
fn pick_victim(
    eviction: Eviction,
    candidates: impl Iterator<Item = Candidate>,
    rng: &mut fastrand::Rng,
) -> Option<u64> {
    let victim = match eviction {
        Eviction::Refuse => return None,
        Eviction::Oldest => candidates.min_by_key(|c| c.id),
        Eviction::Newest => candidates.max_by_key(|c| c.id),
        Eviction::LeastRecentlyUsed => candidates.min_by_key(|c| (c.last_used, c.id)),
        Eviction::LeastUsed => candidates.min_by_key(|c| (c.uses, c.id)),
        Eviction::Random => {
            let all: Vec<_> = candidates.collect();
            (!all.is_empty()).then(|| all[rng.usize(..all.len())])
        }
    };
    victim.map(|c| c.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates() -> Vec<Candidate> {
        vec![
            Candidate {
                id: 1,
                last_used: 50,
                uses: 9,
            },
            Candidate {
                id: 2,
                last_used: 10,
                uses: 3,
            },
            Candidate {
                id: 3,
                last_used: 90,
                uses: 3,
            },
            Candidate {
                id: 4,
                last_used: 10,
                uses: 7,
            },
        ]
    }

    fn pick(eviction: Eviction) -> Option<u64> {
        pick_victim(
            eviction,
            candidates().into_iter(),
            &mut fastrand::Rng::with_seed(7),
        )
    }

    #[test]
    fn each_strategy_picks_its_victim() {
        assert_eq!(pick(Eviction::Refuse), None);
        assert_eq!(pick(Eviction::Oldest), Some(1));
        assert_eq!(pick(Eviction::Newest), Some(4));
        assert_eq!(
            pick(Eviction::LeastRecentlyUsed),
            Some(2),
            "ties go to the older"
        );
        assert_eq!(pick(Eviction::LeastUsed), Some(2), "ties go to the older");
    }

    #[test]
    fn random_covers_every_connection() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.extend(pick_victim(
                Eviction::Random,
                candidates().into_iter(),
                &mut rng,
            ));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn admission_evicts_past_the_bound() {
        let admission = Admission::new(Some(2), Eviction::Oldest, fastrand::Rng::with_seed(3));
        let first = admission.admit().unwrap();
        let second = admission.admit().unwrap();
        assert_eq!(admission.open(), 2);
        let third = admission.admit().unwrap();
        assert!(first.evict.is_cancelled());
        assert!(!second.evict.is_cancelled() && !third.evict.is_cancelled());
        assert_eq!(admission.open(), 2);
        admission.leave(first.id);
        assert_eq!(
            admission.open(),
            2,
            "leaving after eviction changes nothing"
        );
        admission.leave(second.id);
        assert_eq!(admission.open(), 1);
    }

    #[test]
    fn refuse_turns_the_newcomer_away() {
        let admission = Admission::new(Some(1), Eviction::Refuse, fastrand::Rng::with_seed(3));
        let first = admission.admit().unwrap();
        assert!(admission.admit().is_none());
        assert!(!first.evict.is_cancelled());
    }

    #[test]
    fn least_used_counts_requests() {
        let admission = Admission::new(Some(2), Eviction::LeastUsed, fastrand::Rng::with_seed(3));
        let busy = admission.admit().unwrap();
        let idle = admission.admit().unwrap();
        busy.activity.record_request(Instant::now());
        admission.admit().unwrap();
        assert!(idle.evict.is_cancelled());
        assert!(!busy.evict.is_cancelled());
    }
}

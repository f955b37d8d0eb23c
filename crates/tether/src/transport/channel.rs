//! A connection to one provider that heals itself: the state machine of
//! `docs/architecture.md`.
//!
//! A supervisor task owns the life cycle: it connects, publishes the ready [`Connection`] for
//! calls to use, waits until that connection stops taking calls (it died, or the server sent
//! GoAway), and connects again, immediately at first and then after each failure with the
//! backoff's next delay. Calls never wait on the supervisor: they take the published connection
//! or, if there is none, fail fast as unavailable (or wait for readiness within their deadline
//! when asked to). The supervisor stops when the last handle to the channel is dropped.

use std::{
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use serde::Serialize;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{
    connection::{Connection, Request},
    liveness::Backoff,
};
use crate::{
    config::ClientConfig,
    error::{Error, ErrorKind},
    protocol::Frame,
};

/// Where a client's connection to a provider stands. Watch it with
/// [`Client::watch_state`](crate::Client::watch_state); every change is also a `tracing` event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Not connected, and not trying: the connection opens on the first call.
    Idle,
    /// The first connection attempt is under way.
    Connecting,
    /// Connected: calls go out.
    Ready,
    /// The connection was lost or could not be made; another attempt follows. Calls fail fast
    /// as unavailable unless they wait for readiness.
    Reconnecting {
        /// Attempts that failed since the last success (0 right after losing a connection,
        /// while the first, immediate attempt runs).
        failures: u32,
        /// The wait before the next attempt (zero while an attempt runs).
        retry_in: Duration,
        /// Why the last connection or attempt ended.
        reason: String,
    },
    /// The client was dropped; nothing more happens.
    Closed,
}

impl ConnectionState {
    /// Whether calls can go out now.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }

    /// Whether an attempt to connect is under way with no failure yet: the first one, or the
    /// immediate one after losing a stable connection. Calls wait for its outcome.
    pub fn is_connecting(&self) -> bool {
        matches!(
            self,
            Self::Idle | Self::Connecting | Self::Reconnecting { failures: 0, .. }
        )
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Idle => f.write_str("idle"),
            Self::Connecting => f.write_str("connecting"),
            Self::Ready => f.write_str("ready"),
            Self::Reconnecting {
                failures: 0,
                reason,
                ..
            } => {
                write!(f, "reconnecting ({reason})")
            }
            Self::Reconnecting {
                failures,
                retry_in,
                reason,
            } => {
                write!(
                    f,
                    "reconnecting: {failures} failed, next in {retry_in:?} ({reason})"
                )
            }
            Self::Closed => f.write_str("closed"),
        }
    }
}

/// A self-healing connection to one address. Clones share it.
#[derive(Clone)]
pub(crate) struct Channel {
    inner: Arc<Inner>,
    _owner: Arc<StopOnDrop>,
}

struct Inner {
    addr: SocketAddr,
    config: ClientConfig,
    /// Starts the first attempt of an idle channel.
    wake: tokio::sync::Notify,
    /// The ready connection, if any; what calls use.
    current: Mutex<Option<Connection>>,
    state: watch::Sender<ConnectionState>,
}

/// Stops the supervisor when the last user handle goes.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("addr", &self.inner.addr)
            .field("state", &*self.inner.state.borrow())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Channel {
    /// Connects once and fails if that attempt fails; reconnects by itself afterwards.
    pub(crate) async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Self, Error> {
        let connection = Connection::connect(addr, &config).await?;
        Ok(Self::start(addr, config, Some(connection), false))
    }

    /// Starts connecting in the background and returns at once.
    pub(crate) fn connect_lazy(addr: SocketAddr, config: ClientConfig) -> Self {
        Self::start(addr, config, None, false)
    }

    /// Makes no attempt until [`Channel::wake`] or a call.
    pub(crate) fn idle(addr: SocketAddr, config: ClientConfig) -> Self {
        Self::start(addr, config, None, true)
    }

    /// Starts an idle channel's first attempt; does nothing to one that is not idle.
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    fn start(
        addr: SocketAddr,
        config: ClientConfig,
        first: Option<Connection>,
        idle: bool,
    ) -> Self {
        let initial = if first.is_some() {
            ConnectionState::Ready
        } else if idle {
            ConnectionState::Idle
        } else {
            ConnectionState::Connecting
        };
        let (state, _) = watch::channel(initial);
        let inner = Arc::new(Inner {
            addr,
            config,
            current: Mutex::new(first.clone()),
            wake: tokio::sync::Notify::new(),
            state,
        });
        let stop = CancellationToken::new();
        tokio::spawn(supervise(inner.clone(), first, stop.clone()));
        Self {
            inner,
            _owner: Arc::new(StopOnDrop(stop)),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub(crate) fn state(&self) -> ConnectionState {
        self.inner.state.borrow().clone()
    }

    /// Whether calls can go out now; cheaper than [`Channel::state`].
    pub(crate) fn is_ready(&self) -> bool {
        self.inner.state.borrow().is_ready()
    }

    pub(crate) fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.subscribe()
    }

    /// Calls waiting for replies on the current connection.
    pub(crate) fn in_flight(&self) -> usize {
        self.inner
            .current()
            .map_or(0, |connection| connection.in_flight())
    }

    /// Sends a request on the ready connection. Without one, fails fast as unavailable, or with
    /// `wait_for_ready` waits for one until `deadline`.
    pub(crate) async fn call<A: Serialize + ?Sized>(
        &self,
        request: &Request<'_, A>,
        deadline: Instant,
        wait_for_ready: bool,
    ) -> Result<Option<Frame>, Error> {
        let connection = match self.inner.current() {
            Some(connection) => connection,
            None => {
                self.ready(deadline, request.timeout, wait_for_ready)
                    .await?
            }
        };
        connection.call(request, deadline).await
    }

    /// The ready connection, for a caller that sends and awaits the reply in two steps (see
    /// [`Connection::send`]). Without one, as [`Channel::call`]: waits while an attempt is under
    /// way (or always with `wait_for_ready`) until `deadline`, else fails fast as unavailable.
    pub(crate) async fn connection(
        &self,
        deadline: Instant,
        timeout: Duration,
        wait_for_ready: bool,
    ) -> Result<Connection, Error> {
        match self.inner.current() {
            Some(connection) => Ok(connection),
            None => self.ready(deadline, timeout, wait_for_ready).await,
        }
    }

    /// Waits for a ready connection: while an attempt is under way, or always with
    /// `wait_for_ready`; otherwise fails fast as unavailable.
    async fn ready(
        &self,
        deadline: Instant,
        timeout: Duration,
        wait_for_ready: bool,
    ) -> Result<Connection, Error> {
        self.wake();
        let mut state = self.inner.state.subscribe();
        let waited = tokio::time::timeout_at(deadline, async {
            loop {
                if let Some(connection) = self.inner.current() {
                    return Ok(connection);
                }
                {
                    let state = state.borrow_and_update();
                    let closed = matches!(*state, ConnectionState::Closed);
                    if closed || !(wait_for_ready || state.is_connecting()) {
                        return Err(self.unavailable());
                    }
                }
                if state.changed().await.is_err() {
                    return Err(self.unavailable());
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| Err(Error::timeout(timeout)))
    }

    /// Whether an attempt to connect is under way with no failure yet.
    pub(crate) fn is_connecting(&self) -> bool {
        self.inner.state.borrow().is_connecting()
    }

    fn unavailable(&self) -> Error {
        let message = format!(
            "no connection to {} is ready: {}",
            self.inner.addr,
            self.state()
        );
        Error::new(ErrorKind::Unavailable, message)
    }
}

impl Inner {
    fn lock_current(&self) -> MutexGuard<'_, Option<Connection>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The ready connection; one that stopped taking calls counts as none.
    fn current(&self) -> Option<Connection> {
        self.lock_current()
            .clone()
            .filter(|connection| !connection.is_closed())
    }

    fn publish(&self, connection: Option<Connection>) {
        *self.lock_current() = connection;
    }

    /// Publishes `state` if it differs from the current one; every change is an event.
    fn set_state(&self, state: ConnectionState) {
        self.state.send_if_modified(|current| {
            if *current == state {
                return false;
            }
            tracing::info!(addr = %self.addr, %state, "connection state");
            *current = state;
            true
        });
    }
}

/// Runs the channel's life cycle until `stop` is cancelled.
///
/// After losing a connection that had been up for at least one heartbeat interval, the next
/// attempt is immediate. A connection that ended sooner, or that the server turned away for
/// having too many (GoAway `Overloaded`), counts as a failed attempt and waits the backoff's next
/// delay, so a server that accepts and closes at once cannot draw a tight loop of reconnects.
async fn supervise(inner: Arc<Inner>, first: Option<Connection>, stop: CancellationToken) {
    let config = &inner.config;
    let mut backoff = Backoff::new(config.reconnect, fastrand::Rng::new());
    let mut connection = first;
    let mut wait = Duration::ZERO;
    if matches!(*inner.state.borrow(), ConnectionState::Idle) {
        tokio::select! {
            () = stop.cancelled() => {
                inner.set_state(ConnectionState::Closed);
                return;
            }
            () = inner.wake.notified() => inner.set_state(ConnectionState::Connecting),
        }
    }
    loop {
        if !wait.is_zero() {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        let ready = match connection.take() {
            Some(ready) => ready,
            None => {
                let attempt = tokio::select! {
                    () = stop.cancelled() => break,
                    attempt = Connection::connect(inner.addr, config) => attempt,
                };
                match attempt {
                    Ok(ready) => ready,
                    Err(error) => {
                        wait = backoff.next_delay();
                        inner.set_state(ConnectionState::Reconnecting {
                            failures: backoff.failures(),
                            retry_in: wait,
                            reason: error.to_string(),
                        });
                        continue;
                    }
                }
            }
        };
        inner.publish(Some(ready.clone()));
        inner.set_state(ConnectionState::Ready);
        let opened = Instant::now();
        tokio::select! {
            () = stop.cancelled() => break,
            () = ready.stopped() => {}
        }
        // Calls already on the old connection hold it until they finish; drained or dead, it
        // takes nothing new.
        inner.publish(None);
        let reason = ready.stop_reason().unwrap_or_default();
        let stable = opened.elapsed() >= config.heartbeat_interval && !ready.was_refused();
        drop(ready);
        if stable {
            backoff.reset();
            wait = Duration::ZERO;
        } else {
            wait = backoff.next_delay();
        }
        inner.set_state(ConnectionState::Reconnecting {
            failures: backoff.failures(),
            retry_in: wait,
            reason,
        });
    }
    inner.publish(None);
    inner.set_state(ConnectionState::Closed);
}

//! Calling services: [`Client`], its builder, per-call options, and generic calls.

mod generic;
mod stub;

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use serde::Serialize;
use tokio::{
    net::{ToSocketAddrs, lookup_host},
    sync::watch,
};

pub use self::generic::GenericClient;
pub use self::stub::Stub;
use crate::{
    Serialization,
    config::ClientConfig,
    error::{Error, ErrorKind},
    protocol::Frame,
    transport::{Channel, ConnectionState, Request, deadline_after},
};

/// A handle for calling services on a provider. Cheap to clone; clones share the connection.
///
/// Wrap it in a generated client (`FooClient::new(client)`) for typed calls, or in a
/// [`GenericClient`] to call any service with JSON.
///
/// ```no_run
/// # async fn demo() -> Result<(), tether::Error> {
/// let client = tether::Client::builder()
///     .timeout(std::time::Duration::from_secs(1))
///     .connect("127.0.0.1:20880")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    channel: Channel,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("channel", &self.inner.channel)
            .field("config", self.config())
            .finish()
    }
}

impl Client {
    /// Settings for a new client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to `addr` with the default settings; see [`ClientBuilder::connect`].
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self, Error> {
        Self::builder().connect(addr).await
    }

    /// The settings in force.
    pub fn config(&self) -> &ClientConfig {
        self.inner.channel.config()
    }

    /// The provider's address.
    pub fn peer(&self) -> SocketAddr {
        self.inner.channel.addr()
    }

    /// Calls waiting for their reply now.
    pub fn in_flight(&self) -> usize {
        self.inner.channel.in_flight()
    }

    /// Where the connection stands now.
    pub fn state(&self) -> ConnectionState {
        self.inner.channel.state()
    }

    /// Every change of the connection's state, starting from the current one.
    ///
    /// ```no_run
    /// # async fn demo(client: tether::Client) {
    /// let mut states = client.watch_state();
    /// while states.changed().await.is_ok() {
    ///     println!("connection {}", *states.borrow_and_update());
    /// }
    /// # }
    /// ```
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.channel.watch_state()
    }

    /// Whether no connection is ready now, so calls fail fast (or wait, if they ask to).
    pub fn is_closed(&self) -> bool {
        !self.state().is_ready()
    }

    /// Sends one request and waits for its reply frame (`None` for oneway requests).
    pub(crate) async fn invoke<A: Serialize + ?Sized>(
        &self,
        request: &Request<'_, A>,
        options: &CallOptions,
    ) -> Result<Option<Frame>, Error> {
        let deadline = deadline_after(request.timeout);
        let wait_for_ready = options
            .wait_for_ready
            .unwrap_or(self.config().wait_for_ready);
        self.inner
            .channel
            .call(request, deadline, wait_for_ready)
            .await
    }
}

/// Settings for a [`Client`]; see [`ClientConfig`] for each default.
#[derive(Debug, Default)]
pub struct ClientBuilder {
    config: ClientConfig,
}

impl ClientBuilder {
    /// Replaces all settings.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// The timeout of calls whose options set none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The body format of calls.
    pub fn serialization(mut self, serialization: Serialization) -> Self {
        self.config.serialization = serialization;
        self
    }

    /// Opens a connection to `addr` (the first address it resolves to) and fails if that first
    /// attempt fails. Once connected, the client reconnects by itself whenever the connection is
    /// lost, for as long as a handle to it exists.
    pub async fn connect(self, addr: impl ToSocketAddrs) -> Result<Client, Error> {
        self.check()?;
        let addr = resolve(addr).await?;
        let channel = Channel::connect(addr, self.config).await?;
        Ok(Client {
            inner: Arc::new(Inner { channel }),
        })
    }

    /// Returns at once and connects in the background, retrying with backoff until the provider
    /// answers; calls made before then fail fast as unavailable unless they wait for readiness.
    pub fn connect_lazy(self, addr: SocketAddr) -> Result<Client, Error> {
        self.check()?;
        let channel = Channel::connect_lazy(addr, self.config);
        Ok(Client {
            inner: Arc::new(Inner { channel }),
        })
    }

    fn check(&self) -> Result<(), Error> {
        if self.config.serialization.is_enabled() {
            return Ok(());
        }
        let serialization = self.config.serialization;
        let message = format!("serialization {serialization} is not enabled in this build");
        Err(Error::new(ErrorKind::InvalidRequest, message))
    }
}

async fn resolve(addr: impl ToSocketAddrs) -> Result<SocketAddr, Error> {
    lookup_host(addr)
        .await
        .map_err(|e| {
            Error::new(ErrorKind::Unavailable, "cannot resolve the address").with_source(e)
        })?
        .next()
        .ok_or_else(|| Error::new(ErrorKind::Unavailable, "the address resolves to nothing"))
}

/// Options for the calls of one client handle.
///
/// ```
/// use std::time::Duration;
///
/// let options = tether::CallOptions::default().with_timeout(Duration::from_millis(200));
/// assert_eq!(options.timeout(), Some(Duration::from_millis(200)));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CallOptions {
    timeout: Option<Duration>,
    wait_for_ready: Option<bool>,
}

impl CallOptions {
    /// These options with a call timeout, overriding the client's.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The call timeout, if set.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// These options with calls that, finding no connection ready, wait for one within their
    /// deadline instead of failing at once as unavailable; overrides
    /// [`ClientConfig::wait_for_ready`].
    pub fn with_wait_for_ready(mut self, wait: bool) -> Self {
        self.wait_for_ready = Some(wait);
        self
    }
}

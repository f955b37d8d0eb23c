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
    balance::Balancer,
    cluster::Directory,
    config::ClientConfig,
    error::{Error, ErrorKind},
    protocol::Frame,
    registry::Registry,
    service::ServiceKey,
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
    config: ClientConfig,
    target: Target,
}

/// Where calls go.
enum Target {
    /// One provider, by address.
    Direct(Channel),
    /// The providers of one service, as a registry lists them.
    Discovered(Arc<Directory>),
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Client");
        match &self.inner.target {
            Target::Direct(channel) => debug.field("channel", channel),
            Target::Discovered(directory) => debug.field("directory", directory),
        };
        debug.field("config", self.config()).finish()
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
        &self.inner.config
    }

    /// The provider's address, for a client connected to one; `None` for a client that follows
    /// a registry.
    pub fn peer(&self) -> Option<SocketAddr> {
        match &self.inner.target {
            Target::Direct(channel) => Some(channel.addr()),
            Target::Discovered(_) => None,
        }
    }

    /// The addresses of the providers a registry lists now (the one address of a direct client).
    pub fn providers(&self) -> Vec<SocketAddr> {
        match &self.inner.target {
            Target::Direct(channel) => vec![channel.addr()],
            Target::Discovered(directory) => directory
                .providers()
                .iter()
                .map(|p| p.channel.addr())
                .collect(),
        }
    }

    /// Calls waiting for their reply now, on every connection.
    pub fn in_flight(&self) -> usize {
        match &self.inner.target {
            Target::Direct(channel) => channel.in_flight(),
            Target::Discovered(directory) => directory
                .providers()
                .iter()
                .map(|p| p.channel.in_flight())
                .sum(),
        }
    }

    /// Where the connection stands now; for a client that follows a registry, ready while any
    /// provider is ready.
    pub fn state(&self) -> ConnectionState {
        match &self.inner.target {
            Target::Direct(channel) => channel.state(),
            Target::Discovered(directory) => directory.state(),
        }
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
        match &self.inner.target {
            Target::Direct(channel) => channel.watch_state(),
            Target::Discovered(directory) => directory.watch_state(),
        }
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
        match &self.inner.target {
            Target::Direct(channel) => channel.call(request, deadline, wait_for_ready).await,
            Target::Discovered(directory) => {
                directory
                    .call(request, deadline, wait_for_ready, options)
                    .await
            }
        }
    }
}

/// Settings for a [`Client`]; see [`ClientConfig`] for each default.
#[derive(Debug, Default)]
pub struct ClientBuilder {
    config: ClientConfig,
    balancer: Option<Arc<dyn Balancer>>,
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

    /// The load balancer of a client with several providers, by type; overrides
    /// [`ClientConfig::balance`].
    pub fn balancer(mut self, balancer: impl Balancer) -> Self {
        self.balancer = Some(Arc::new(balancer));
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
        let channel = Channel::connect(addr, self.config.clone()).await?;
        Ok(self.client(Target::Direct(channel)))
    }

    /// Returns at once and connects in the background, retrying with backoff until the provider
    /// answers; calls made before then fail fast as unavailable unless they wait for readiness.
    pub fn connect_lazy(self, addr: SocketAddr) -> Result<Client, Error> {
        self.check()?;
        let channel = Channel::connect_lazy(addr, self.config.clone());
        Ok(self.client(Target::Direct(channel)))
    }

    /// A client of the service `key` that follows its providers in `registry`: a connection to
    /// each, calls to a ready one. Fails if the registry cannot be reached now; afterwards the
    /// client keeps the last providers it knew while the registry is away.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), tether::Error> {
    /// use tether::{Client, ServiceKey, registry};
    ///
    /// let registry = registry::connect("file:///tmp/tether-registry").await?;
    /// let key = ServiceKey::new("demo.Calculator").with_version("1.0.0");
    /// let client = Client::builder().discover(registry, key).await?;
    /// # Ok(()) }
    /// ```
    pub async fn discover(
        self,
        registry: Arc<dyn Registry>,
        key: ServiceKey,
    ) -> Result<Client, Error> {
        self.check()?;
        let balancer = self.resolve_balancer()?;
        let directory = Directory::follow(registry, key, self.config.clone(), balancer).await?;
        Ok(self.client(Target::Discovered(directory)))
    }

    /// A client of a fixed list of providers, bypassing any registry, balanced and failed over
    /// like a discovered service. Connections open on the first call, or at once with
    /// [`ClientConfig::eager`].
    pub async fn connect_all<I>(self, addrs: I) -> Result<Client, Error>
    where
        I: IntoIterator,
        I::Item: ToSocketAddrs,
    {
        self.check()?;
        let mut resolved = Vec::new();
        for addr in addrs {
            resolved.push(resolve(addr).await?);
        }
        let balancer = self.resolve_balancer()?;
        let directory = Directory::fixed(&resolved, self.config.clone(), balancer).await;
        Ok(self.client(Target::Discovered(directory)))
    }

    fn resolve_balancer(&self) -> Result<Arc<dyn Balancer>, Error> {
        if let Some(balancer) = &self.balancer {
            return Ok(balancer.clone());
        }
        let name = &self.config.balance;
        crate::balance::by_name(name).map(Arc::from).ok_or_else(|| {
            let known = crate::balance::NAMES.join(", ");
            Error::new(
                ErrorKind::InvalidRequest,
                format!("unknown balancer `{name}` (known: {known})"),
            )
        })
    }

    fn client(self, target: Target) -> Client {
        Client {
            inner: Arc::new(Inner {
                config: self.config,
                target,
            }),
        }
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
    hash_key: Option<u64>,
    source: Option<std::net::IpAddr>,
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

    /// These options with a key for the `hash` and `consistent_hash` balancers: calls with the
    /// same key go to the same provider (while it is there).
    pub fn with_hash_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.hash_key = Some(crate::balance::stable_hash(key.as_ref()));
        self
    }

    /// These options with the address the call is made for, for the `source_ip_hash` balancer
    /// (a gateway passes its own caller's address).
    pub fn with_source(mut self, source: std::net::IpAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// These options with an already hashed key.
    pub(crate) fn with_hash_key_value(mut self, key: u64) -> Self {
        self.hash_key = Some(key);
        self
    }

    /// The balancer's hash key, if set.
    pub(crate) fn hash_key(&self) -> Option<u64> {
        self.hash_key
    }

    /// The source address, if set.
    pub(crate) fn source(&self) -> Option<std::net::IpAddr> {
        self.source
    }

    /// These options with calls that, finding no connection ready, wait for one within their
    /// deadline instead of failing at once as unavailable; overrides
    /// [`ClientConfig::wait_for_ready`].
    pub fn with_wait_for_ready(mut self, wait: bool) -> Self {
        self.wait_for_ready = Some(wait);
        self
    }
}

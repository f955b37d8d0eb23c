//! Calling services: [`Client`], its builder, per-call options, and generic calls.

mod generic;
mod stub;

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use serde::Serialize;
use tokio::net::{ToSocketAddrs, lookup_host};

pub use self::generic::GenericClient;
pub use self::stub::Stub;
use crate::{
    Serialization,
    config::ClientConfig,
    error::{Error, ErrorKind},
    protocol::Frame,
    transport::{Connection, Request},
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
    connection: Connection,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("connection", &self.inner.connection)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Client {
    /// Settings for a new client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to `addr` with the default settings.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self, Error> {
        Self::builder().connect(addr).await
    }

    /// The settings in force.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The provider's address.
    pub fn peer(&self) -> SocketAddr {
        self.inner.connection.peer()
    }

    /// Calls waiting for their reply now.
    pub fn in_flight(&self) -> usize {
        self.inner.connection.in_flight()
    }

    /// Whether the connection has closed; calls then fail at once.
    pub fn is_closed(&self) -> bool {
        self.inner.connection.is_closed()
    }

    /// Sends one request and waits for its reply frame (`None` for oneway requests).
    pub(crate) async fn invoke<A: Serialize + ?Sized>(
        &self,
        request: &Request<'_, A>,
    ) -> Result<Option<Frame>, Error> {
        self.inner.connection.call(request).await
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

    /// Opens a connection to `addr` (the first address it resolves to).
    pub async fn connect(self, addr: impl ToSocketAddrs) -> Result<Client, Error> {
        if !self.config.serialization.is_enabled() {
            let message = format!(
                "serialization {} is not enabled in this build",
                self.config.serialization
            );
            return Err(Error::new(ErrorKind::InvalidRequest, message));
        }
        let addr = lookup_host(addr)
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, "cannot resolve the address").with_source(e)
            })?
            .next()
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "the address resolves to nothing"))?;
        let connection = Connection::connect(addr, &self.config).await?;
        Ok(Client {
            inner: Arc::new(Inner {
                config: self.config,
                connection,
            }),
        })
    }
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
}

use bytes::Bytes;
use serde_json::Value;

use super::{CallOptions, Client, stub::decode_reply};
use crate::{
    Serialization,
    error::Error,
    service::ServiceKey,
    transport::{Request, encode_service_key},
};

/// Calls any service by key and method name with JSON arguments, without generated types: what
/// the command line and gateways use.
///
/// Arguments are a JSON array in parameter order (`[1, 2]`) or an object keyed by parameter
/// name (`{"a": 1, "b": 2}`); the reply is the method's return value as JSON.
///
/// ```no_run
/// # async fn demo(client: tether::Client) -> Result<(), tether::Error> {
/// use tether::{GenericClient, ServiceKey};
///
/// let calculator = GenericClient::new(client, ServiceKey::new("demo.Calculator").with_version("1.0.0"))?;
/// let sum = calculator.call("add", serde_json::json!([1, 2])).await?;
/// assert_eq!(sum, serde_json::json!(3));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GenericClient {
    client: Client,
    key: ServiceKey,
    service: Bytes,
    options: CallOptions,
}

impl GenericClient {
    /// A client for the service `key` through `client`. Fails if a name is too long for the
    /// protocol.
    pub fn new(client: Client, key: ServiceKey) -> Result<Self, Error> {
        let service = encode_service_key(key.name(), key.version(), key.group())?;
        Ok(Self {
            client,
            key,
            service,
            options: CallOptions::default(),
        })
    }

    /// This client with other options.
    pub fn with_options(&self, options: CallOptions) -> Self {
        Self {
            options,
            ..self.clone()
        }
    }

    /// The service called.
    pub fn key(&self) -> &ServiceKey {
        &self.key
    }

    /// Calls `method` with `args` and returns the reply as JSON. `null` stands for no arguments.
    pub async fn call(&self, method: &str, args: Value) -> Result<Value, Error> {
        let frame = self.send(method, &args, false).await?;
        let frame =
            frame.ok_or_else(|| Error::new(crate::ErrorKind::Protocol, "no reply frame"))?;
        decode_reply(frame)
    }

    /// Sends a oneway call with `args`; returns once it is queued for the socket.
    pub async fn call_oneway(&self, method: &str, args: Value) -> Result<(), Error> {
        self.send(method, &args, true).await.map(drop)
    }

    async fn send(
        &self,
        method: &str,
        args: &Value,
        oneway: bool,
    ) -> Result<Option<crate::protocol::Frame>, Error> {
        let no_args = Value::Array(Vec::new());
        let args = if args.is_null() { &no_args } else { args };
        let request = Request {
            service: &self.service,
            method,
            serialization: Serialization::Json,
            oneway,
            idempotent: false,
            timeout: self
                .options
                .timeout()
                .unwrap_or(self.client.config().timeout),
            args,
        };
        self.client.invoke(&request, &self.options).await
    }
}

use std::fmt;

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use super::{CallOptions, Client};
use crate::{
    error::{Error, ErrorKind},
    protocol::{Frame, Status},
    service::{MethodDescriptor, ServiceDescriptor},
    transport::{Request, encode_service_key},
};

/// What a generated client holds: a [`Client`], the service it calls, and call options.
#[derive(Clone)]
pub struct Stub {
    client: Client,
    descriptor: &'static ServiceDescriptor,
    /// The service key's metadata entries, encoded once.
    service: Bytes,
    options: CallOptions,
}

impl fmt::Debug for Stub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stub")
            .field("service", &self.descriptor.key())
            .field("client", &self.client)
            .field("options", &self.options)
            .finish()
    }
}

impl Stub {
    /// A stub calling `descriptor`'s service through `client`.
    pub fn new(client: Client, descriptor: &'static ServiceDescriptor) -> Self {
        // Names come from the service attribute, checked at compile time to fit an entry.
        let service =
            encode_service_key(descriptor.name(), descriptor.version(), descriptor.group())
                .unwrap_or_default();
        Self {
            client,
            descriptor,
            service,
            options: CallOptions::default(),
        }
    }

    /// This stub with other options.
    pub fn with_options(&self, options: CallOptions) -> Self {
        Self {
            options,
            ..self.clone()
        }
    }

    /// This stub with `key` as the hash balancers' key, for one call.
    pub fn with_hash_key(&self, key: u64) -> Self {
        Self {
            options: self.options.clone().with_hash_key_value(key),
            ..self.clone()
        }
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Calls `method` and decodes its reply.
    pub async fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
    ) -> Result<R, Error> {
        let frame = self.send(method, args, false).await?;
        let frame = frame.ok_or_else(|| Error::new(ErrorKind::Protocol, "no reply frame"))?;
        decode_reply(frame)
    }

    /// Sends a oneway call; returns once it is queued for the socket.
    pub async fn oneway<A: Serialize>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
    ) -> Result<(), Error> {
        self.send(method, args, true).await.map(drop)
    }

    async fn send<A: Serialize>(
        &self,
        method: &'static MethodDescriptor,
        args: &A,
        oneway: bool,
    ) -> Result<Option<Frame>, Error> {
        let config = self.client.config();
        let request = Request {
            service: &self.service,
            method: method.name(),
            serialization: config.serialization,
            oneway,
            idempotent: method.is_idempotent(),
            timeout: self.options.timeout().unwrap_or(config.timeout),
            args,
        };
        self.client.invoke(&request, &self.options).await
    }
}

/// The value of a reply frame, or the error its status reports.
pub(crate) fn decode_reply<R: DeserializeOwned>(frame: Frame) -> Result<R, Error> {
    match frame.header.status {
        Status::Ok => Ok(frame.header.serialization.deserialize(&frame.body)?),
        status => Err(Error::from_status(
            status,
            String::from_utf8_lossy(&frame.body).into_owned(),
        )),
    }
}

//! The contract between generated service code and the server: [`ServiceDispatch`], the
//! [`Call`] it receives, and how one call runs on its task.

use std::{any::Any, future::Future, panic::AssertUnwindSafe, sync::Arc};

use bytes::Bytes;
use futures_util::FutureExt;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Serialization,
    protocol::Status,
    service::{MethodDescriptor, ServiceDescriptor},
    transport::{IncomingRequest, Responder},
};

/// A service the server can run: what `#[tether::service]` generates as `FooServer<S>`.
pub trait ServiceDispatch: Send + Sync + 'static {
    /// The service's name, version, group and methods.
    fn descriptor(&self) -> &'static ServiceDescriptor;

    /// Runs one call: decodes its arguments, calls the method, replies.
    fn dispatch<'a>(
        &'a self,
        call: Call<'a>,
    ) -> impl Future<Output = Result<(), DispatchError>> + Send + 'a;
}

/// One call as a dispatcher sees it.
#[derive(Debug)]
pub struct Call<'a> {
    method: &'a str,
    serialization: Serialization,
    body: Bytes,
    responder: &'a mut Responder,
}

impl<'a> Call<'a> {
    /// The method called.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The arguments, decoded from the request's format.
    pub fn args<T: DeserializeOwned>(&self) -> Result<T, DispatchError> {
        self.serialization.deserialize(&self.body).map_err(|error| {
            DispatchError::new(
                Status::BadRequest,
                format!("arguments of `{}` do not decode: {error}", self.method),
            )
        })
    }

    /// Sends `value` as the reply, in the request's format.
    pub fn reply<T: Serialize + ?Sized>(self, value: &T) -> Result<(), DispatchError> {
        self.responder
            .reply(value)
            .map_err(|error| DispatchError::new(Status::ServerError, error.to_string()))
    }
}

/// A call that cannot run or complete, with the status its caller gets.
#[derive(Debug)]
pub struct DispatchError {
    status: Status,
    message: String,
}

impl DispatchError {
    fn new(status: Status, message: String) -> Self {
        Self { status, message }
    }

    /// The service has no method of that name.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(Status::MethodNotFound, format!("no method `{method}`"))
    }
}

/// A service with its type erased, so one server can hold many.
pub(crate) trait ErasedService: Send + Sync + 'static {
    fn descriptor(&self) -> &'static ServiceDescriptor;

    /// Runs `request`: to the end at once if it never has to wait, otherwise on a task of its
    /// own.
    fn start(&self, method: &'static MethodDescriptor, request: IncomingRequest);
}

pub(crate) struct Erased<D>(pub(crate) Arc<D>);

impl<D: ServiceDispatch> ErasedService for Erased<D> {
    fn descriptor(&self) -> &'static ServiceDescriptor {
        self.0.descriptor()
    }

    fn start(&self, method: &'static MethodDescriptor, request: IncomingRequest) {
        // Most calls finish in their first poll (the handler does not wait on anything): poll
        // once right here, on the connection's reader, and such a call replies without a task,
        // a trip through the scheduler or a wake-up. One that is not done is spawned as it is;
        // the runtime polls it again at once with a real waker, which replaces the no-op one
        // it registered with (a future must only wake the waker of its latest poll).
        let mut call = Box::pin(run(self.0.clone(), method, request));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if call.as_mut().poll(&mut cx).is_pending() {
            tokio::spawn(call);
        }
    }
}

async fn run<D: ServiceDispatch>(
    service: Arc<D>,
    method: &'static MethodDescriptor,
    request: IncomingRequest,
) {
    let IncomingRequest {
        serialization,
        body,
        deadline,
        mut responder,
        ..
    } = request;
    // The reader turned away a request whose deadline had passed, and this first runs in the
    // reader's own poll, microseconds later: no second clock reading is needed to check again.
    let call = Call {
        method: method.name(),
        serialization,
        body,
        responder: &mut responder,
    };
    let work = AssertUnwindSafe(service.dispatch(call)).catch_unwind();
    let outcome = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work).await,
        None => Ok(work.await),
    };
    match outcome {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => responder.fail(error.status, &error.message),
        Ok(Err(panic)) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(
                service = service.descriptor().name(),
                method = method.name(),
                message,
                "handler panicked"
            );
            responder.fail(Status::ServerError, &format!("handler panicked: {message}"));
        }
        Err(_elapsed) => responder.fail(
            Status::DeadlineExceeded,
            "deadline passed while the call ran",
        ),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "a non-string payload"
    }
}

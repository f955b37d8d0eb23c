//! Finds the service a request names and starts it.

use std::{collections::HashMap, sync::Arc};

use super::dispatch::ErasedService;
use crate::{
    protocol::Status,
    service::{ServiceDescriptor, ServiceKey},
    transport::{IncomingRequest, RequestHandler},
};

/// The services one server runs, by name, then version and group.
#[derive(Default)]
pub(crate) struct Router {
    services: HashMap<&'static str, Vec<Arc<dyn ErasedService>>>,
}

impl Router {
    /// Adds a service; one with the same key is replaced.
    pub(crate) fn add(&mut self, service: Arc<dyn ErasedService>) {
        let descriptor = service.descriptor();
        let routes = self.services.entry(descriptor.name()).or_default();
        routes.retain(|route| route.descriptor().key() != descriptor.key());
        routes.push(service);
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = ServiceKey> + '_ {
        self.descriptors().map(ServiceDescriptor::key)
    }

    pub(crate) fn descriptors(&self) -> impl Iterator<Item = &'static ServiceDescriptor> + '_ {
        self.services
            .values()
            .flatten()
            .map(|service| service.descriptor())
    }

    fn find(&self, name: &str, version: &str, group: &str) -> Option<&Arc<dyn ErasedService>> {
        self.services.get(name)?.iter().find(|service| {
            let descriptor = service.descriptor();
            descriptor.version() == version && descriptor.group() == group
        })
    }
}

impl RequestHandler for Router {
    fn handle(&self, mut request: IncomingRequest) {
        let metadata = &request.metadata;
        let Some(name) = metadata.service.as_deref() else {
            request
                .responder
                .fail(Status::BadRequest, "the request names no service");
            return;
        };
        let version = metadata.version.as_deref().unwrap_or_default();
        let group = metadata.group.as_deref().unwrap_or_default();
        let Some(service) = self.find(name, version, group) else {
            let key = ServiceKey::new(name)
                .with_version(version)
                .with_group(group);
            request
                .responder
                .fail(Status::ServiceNotFound, &format!("no service `{key}` here"));
            return;
        };
        let method_name = metadata.method.as_deref().unwrap_or_default();
        let Some(method) = service.descriptor().method(method_name) else {
            let message = format!("service `{name}` has no method `{method_name}`");
            request.responder.fail(Status::MethodNotFound, &message);
            return;
        };
        service.start(method, request);
    }
}

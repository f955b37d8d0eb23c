//! Clients that follow a registry: the set of providers of a service, a connection to each, and
//! the choice of one per call.

mod directory;

pub(crate) use directory::Directory;

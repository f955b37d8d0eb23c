//! The one public error type.

use std::{borrow::Cow, error::Error as StdError, fmt};

use crate::protocol::Status;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a call or an operation failed.
///
/// Opaque and cheap to move (one pointer); ask it what happened with [`Error::kind`] or the
/// predicates such as [`Error::is_timeout`]. A status answered by the server is kept as
/// [`Error::status`], with the server's message in the display text.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<BoxError>,
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The call got no reply within its timeout.
    Timeout,
    /// The connection broke while the call was in flight; the call may or may not have run.
    ConnectionLost,
    /// No connection to a provider could be had; the call was not sent.
    Unavailable,
    /// The server does not serve that service, version and group.
    ServiceNotFound,
    /// The service has no such method.
    MethodNotFound,
    /// The server could not understand the request (arguments that do not decode, a format it
    /// does not speak).
    BadRequest,
    /// The handler failed on the server (it panicked, or its reply could not be encoded).
    ServerError,
    /// The server was at its bound of calls in flight and refused this one.
    Overloaded,
    /// The server gave up on the call because its deadline passed.
    DeadlineExceeded,
    /// The server is shutting down and refused the call.
    ShuttingDown,
    /// The peer broke the wire protocol.
    Protocol,
    /// A value could not be encoded or decoded on this side.
    Serialization,
    /// The request itself is unusable here, e.g. larger than the maximum frame length.
    InvalidRequest,
    /// An I/O failure outside any call, such as binding a listener.
    Io,
    /// The service registry could not be reached or refused an operation.
    Registry,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timed out",
            Self::ConnectionLost => "connection lost",
            Self::Unavailable => "unavailable",
            Self::ServiceNotFound => "service not found",
            Self::MethodNotFound => "method not found",
            Self::BadRequest => "bad request",
            Self::ServerError => "server error",
            Self::Overloaded => "overloaded",
            Self::DeadlineExceeded => "deadline exceeded",
            Self::ShuttingDown => "shutting down",
            Self::Protocol => "protocol error",
            Self::Serialization => "serialization error",
            Self::InvalidRequest => "invalid request",
            Self::Io => "i/o error",
            Self::Registry => "registry error",
        }
    }

    /// The kind a server status reports, or `None` for `Ok`.
    fn from_status(status: Status) -> Option<Self> {
        Some(match status {
            Status::Ok => return None,
            Status::ServiceNotFound => Self::ServiceNotFound,
            Status::MethodNotFound => Self::MethodNotFound,
            Status::BadRequest => Self::BadRequest,
            Status::ServerError => Self::ServerError,
            Status::Overloaded => Self::Overloaded,
            Status::DeadlineExceeded => Self::DeadlineExceeded,
            Status::ShuttingDown => Self::ShuttingDown,
            Status::ProtocolError => Self::Protocol,
        })
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                source: None,
            }),
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// The error for a non-Ok status a server answered, with its message.
    pub(crate) fn from_status(status: Status, message: impl Into<Cow<'static, str>>) -> Self {
        let kind = ErrorKind::from_status(status).unwrap_or(ErrorKind::Protocol);
        Self::new(kind, message)
    }

    pub(crate) fn timeout(after: std::time::Duration) -> Self {
        Self::new(ErrorKind::Timeout, format!("no reply within {after:?}"))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The status the server answered, if this error is one.
    pub fn status(&self) -> Option<Status> {
        Some(match self.inner.kind {
            ErrorKind::ServiceNotFound => Status::ServiceNotFound,
            ErrorKind::MethodNotFound => Status::MethodNotFound,
            ErrorKind::BadRequest => Status::BadRequest,
            ErrorKind::ServerError => Status::ServerError,
            ErrorKind::Overloaded => Status::Overloaded,
            ErrorKind::DeadlineExceeded => Status::DeadlineExceeded,
            ErrorKind::ShuttingDown => Status::ShuttingDown,
            _ => return None,
        })
    }

    /// The call got no reply within its timeout.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }

    /// The connection broke while the call was in flight.
    pub fn is_connection_lost(&self) -> bool {
        self.inner.kind == ErrorKind::ConnectionLost
    }

    /// No connection could be had; the call was not sent.
    pub fn is_unavailable(&self) -> bool {
        self.inner.kind == ErrorKind::Unavailable
    }

    /// The server refused the call because it was at its bound of calls in flight.
    pub fn is_overloaded(&self) -> bool {
        self.inner.kind == ErrorKind::Overloaded
    }

    /// The server gave up on the call because its deadline passed.
    pub fn is_deadline_exceeded(&self) -> bool {
        self.inner.kind == ErrorKind::DeadlineExceeded
    }

    /// Whether the request certainly never ran on a server, so sending it again elsewhere is
    /// safe even for a method that is not idempotent.
    pub fn is_never_sent(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Unavailable
                | ErrorKind::Overloaded
                | ErrorKind::ShuttingDown
                | ErrorKind::InvalidRequest
        )
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("tether::Error");
        debug.field("kind", &self.inner.kind);
        if !self.inner.message.is_empty() {
            debug.field("message", &self.inner.message);
        }
        if let Some(source) = &self.inner.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

/// The kind, the message, then each cause in the `source()` chain: one line that is enough to
/// diagnose a failure from a log or a test's output
/// (`i/o error: cannot bind 127.0.0.1:35107: Address already in use (os error 98)`). A cause
/// whose text the line already holds (a message that quoted it) is not repeated.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::from(self.inner.kind.as_str());
        if !self.inner.message.is_empty() {
            line.push_str(": ");
            line.push_str(&self.inner.message);
        }
        let mut cause = StdError::source(self);
        while let Some(error) = cause {
            let text = error.to_string();
            if !text.is_empty() && !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = error.source();
        }
        f.write_str(&line)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<crate::SerializationError> for Error {
    fn from(error: crate::SerializationError) -> Self {
        // The display text comes from the source: see `Display for Error`.
        Error::new(ErrorKind::Serialization, "").with_source(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_one_pointer() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn display_ends_with_the_causes() {
        let os = std::io::Error::from_raw_os_error(98);
        let error = Error::new(ErrorKind::Io, "cannot bind 127.0.0.1:35107").with_source(os);
        let shown = error.to_string();
        assert!(
            shown.starts_with("i/o error: cannot bind 127.0.0.1:35107: "),
            "{shown}"
        );
        assert!(shown.ends_with("(os error 98)"), "{shown}");

        // A chain of two, and a message that already quoted its cause: each text once.
        let inner = Error::new(ErrorKind::Unavailable, "no route").with_source(
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
        );
        let outer = Error::new(ErrorKind::Registry, "lookup failed").with_source(inner);
        assert_eq!(
            outer.to_string(),
            "registry error: lookup failed: unavailable: no route: refused"
        );
        let quoted = std::io::Error::other("disk full");
        let error = Error::new(ErrorKind::Io, "cannot write x: disk full").with_source(quoted);
        assert_eq!(error.to_string(), "i/o error: cannot write x: disk full");
    }

    #[test]
    fn status_round_trips_through_kind() {
        for code in 1..=7 {
            let status = Status::from_u8(code).unwrap();
            let error = Error::from_status(status, "boom");
            assert_eq!(error.status(), Some(status));
            assert!(error.to_string().ends_with(": boom"), "{error}");
        }
    }
}

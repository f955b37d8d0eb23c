use std::fmt;

/// The outcome a response (or a GoAway) reports, one byte in the header.
///
/// Anything but [`Status::Ok`] carries a UTF-8 message as its body, whatever the frame's
/// serialization, so any client can show it. Codes 9 to 255 are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Status {
    /// The call ran; the body is its return value.
    Ok = 0,
    /// No service with that name, version and group is served here.
    ServiceNotFound = 1,
    /// The service has no method of that name.
    MethodNotFound = 2,
    /// The request could not be understood: arguments that do not decode, malformed metadata,
    /// a serialization the server does not speak.
    BadRequest = 3,
    /// The handler failed: it panicked or its reply could not be encoded.
    ServerError = 4,
    /// The server is at its bound of calls in flight; try later or elsewhere.
    Overloaded = 5,
    /// The call's deadline passed before the server finished it.
    DeadlineExceeded = 6,
    /// The server is shutting down and takes no new calls.
    ShuttingDown = 7,
    /// The peer broke the protocol (GoAway only): the connection closes.
    ProtocolError = 8,
}

impl Status {
    /// The status for a wire code, or `None` for a code this version does not define.
    pub const fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Ok,
            1 => Self::ServiceNotFound,
            2 => Self::MethodNotFound,
            3 => Self::BadRequest,
            4 => Self::ServerError,
            5 => Self::Overloaded,
            6 => Self::DeadlineExceeded,
            7 => Self::ShuttingDown,
            8 => Self::ProtocolError,
            _ => return None,
        })
    }

    /// The wire code.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// A short name, as used in logs and the documentation.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ServiceNotFound => "service not found",
            Self::MethodNotFound => "method not found",
            Self::BadRequest => "bad request",
            Self::ServerError => "server error",
            Self::Overloaded => "overloaded",
            Self::DeadlineExceeded => "deadline exceeded",
            Self::ShuttingDown => "shutting down",
            Self::ProtocolError => "protocol error",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for code in 0..=u8::MAX {
            if let Some(status) = Status::from_u8(code) {
                assert_eq!(status.as_u8(), code);
            } else {
                assert!(code > 8, "code {code} should be defined");
            }
        }
    }
}

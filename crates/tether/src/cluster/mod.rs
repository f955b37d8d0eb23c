//! Clients that follow a registry or a list of addresses: the providers of a service, a
//! connection to each, a balancer that picks one per call, and the strategy that decides what a
//! failed call does next (one file each: failover, failfast, failsafe, forking, broadcast).

mod broadcast;
mod directory;
mod failfast;
mod failover;
mod failsafe;
mod forking;

pub(crate) use directory::Directory;

use crate::{
    error::{Error, ErrorKind},
    protocol::{Frame, Status},
};

/// What an attempt's outcome allows next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It succeeded (a user error inside the reply is a success here: the call ran).
    Success,
    /// It failed, and sending it elsewhere is safe.
    Retry,
    /// It failed, and that stands.
    Fail,
}

/// Judges an attempt: retrying elsewhere is safe when the call certainly never ran (no
/// connection, or the provider refused it before running it), and for an idempotent method also
/// when it may have run (a lost connection, a server error).
pub(crate) fn verdict(outcome: &Result<Option<Frame>, Error>, idempotent: bool) -> Verdict {
    let ran_maybe = |retry| {
        if retry && idempotent {
            Verdict::Retry
        } else {
            Verdict::Fail
        }
    };
    match outcome {
        Ok(None) => Verdict::Success,
        Ok(Some(frame)) => match frame.header.status {
            Status::Ok => Verdict::Success,
            Status::Overloaded
            | Status::ShuttingDown
            | Status::ServiceNotFound
            | Status::MethodNotFound => Verdict::Retry,
            Status::ServerError => ran_maybe(true),
            _ => Verdict::Fail,
        },
        Err(error) if error.is_never_sent() => Verdict::Retry,
        Err(error) => ran_maybe(error.kind() == ErrorKind::ConnectionLost),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::{FrameKind, Header};

    fn reply(status: Status) -> Result<Option<Frame>, Error> {
        let mut header = Header::new(FrameKind::Response, 1);
        header.status = status;
        Ok(Some(Frame {
            header,
            metadata: Bytes::new(),
            body: Bytes::new(),
        }))
    }

    #[test]
    fn calls_that_never_ran_are_retried_for_any_method() {
        for status in [
            Status::Overloaded,
            Status::ShuttingDown,
            Status::ServiceNotFound,
        ] {
            assert_eq!(verdict(&reply(status), false), Verdict::Retry, "{status}");
        }
        let unavailable = Err(Error::new(ErrorKind::Unavailable, "no connection"));
        assert_eq!(verdict(&unavailable, false), Verdict::Retry);
    }

    #[test]
    fn calls_that_may_have_run_are_retried_only_when_idempotent() {
        let lost = || Err(Error::new(ErrorKind::ConnectionLost, "reset"));
        assert_eq!(verdict(&lost(), true), Verdict::Retry);
        assert_eq!(verdict(&lost(), false), Verdict::Fail);
        assert_eq!(verdict(&reply(Status::ServerError), true), Verdict::Retry);
        assert_eq!(verdict(&reply(Status::ServerError), false), Verdict::Fail);
    }

    #[test]
    fn deterministic_failures_and_successes_stand() {
        assert_eq!(verdict(&reply(Status::BadRequest), true), Verdict::Fail);
        assert_eq!(
            verdict(&Err(Error::timeout(std::time::Duration::ZERO)), true),
            Verdict::Fail
        );
        assert_eq!(verdict(&reply(Status::Ok), false), Verdict::Success);
        assert_eq!(verdict(&Ok(None), false), Verdict::Success);
    }
}

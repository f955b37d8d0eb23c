//! Logs a failure and answers a fallback value instead.

use bytes::Bytes;
use serde::Serialize;

use super::{Verdict, directory::Call, verdict};
use crate::{
    Serialization,
    error::Error,
    protocol::{Frame, FrameKind, Header},
};

/// The call's outcome, or on failure a reply carrying `fallback` as JSON: the caller decodes it
/// as the method's return type, so `null` answers `()` or `None`.
pub(crate) async fn call<A: Serialize + ?Sized>(
    call: &Call<'_, A>,
    fallback: &serde_json::Value,
) -> Result<Option<Frame>, Error> {
    let (_, outcome) = call.once(&[]).await;
    if verdict(&outcome, call.request.idempotent) == Verdict::Success {
        return outcome;
    }
    let failure = match &outcome {
        Err(error) => error.to_string(),
        Ok(Some(frame)) => format!(
            "{}: {}",
            frame.header.status,
            String::from_utf8_lossy(&frame.body)
        ),
        Ok(None) => String::new(),
    };
    tracing::warn!(method = call.request.method, %failure, "call failed; answering the fallback");
    let mut header = Header::new(FrameKind::Response, 0);
    header.serialization = Serialization::Json;
    let body = Bytes::from(fallback.to_string());
    Ok(Some(Frame {
        header,
        metadata: Bytes::new(),
        body,
    }))
}

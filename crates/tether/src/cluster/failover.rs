//! Tries other providers after a failure that allows it (see [`verdict`]), up to `retries`
//! more times within the call's deadline.

use serde::Serialize;
use tokio::time::Instant;

use super::{Verdict, directory::Call, verdict};
use crate::{error::Error, protocol::Frame};

pub(crate) async fn call<A: Serialize + ?Sized>(
    call: &Call<'_, A>,
    retries: u32,
) -> Result<Option<Frame>, Error> {
    // Grows only after a failure: the common case allocates nothing.
    let mut tried = Vec::new();
    let (first, mut outcome) = call.once(&tried).await;
    let mut picked = first;
    for _ in 0..retries {
        if verdict(&outcome, call.request.idempotent) != Verdict::Retry
            || Instant::now() >= call.deadline
        {
            break;
        }
        let Some(index) = picked else { break };
        tried.push(index);
        let Some((providers, index)) = call.pick(&tried) else {
            // Every ready provider was tried: the last failure is the most telling answer.
            break;
        };
        tracing::debug!(provider = %providers[index].address, "failing over");
        outcome = call.on(&providers[index]).await;
        picked = Some(index);
    }
    outcome
}

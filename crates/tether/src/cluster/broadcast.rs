//! Sends the call to every ready provider; fails if any fails.

use futures_util::future::join_all;
use serde::Serialize;

use super::{Verdict, directory::Call, verdict};
use crate::{error::Error, protocol::Frame};

/// Every ready provider's outcome: the first failure if there is one, else the last reply.
pub(crate) async fn call<A: Serialize + ?Sized>(
    call: &Call<'_, A>,
) -> Result<Option<Frame>, Error> {
    let providers = call.directory.providers();
    let ready: Vec<_> = providers.iter().filter(|p| p.channel.is_ready()).collect();
    if ready.is_empty() {
        // None ready: one attempt waits for a connection or fails as the directory says.
        return call.once(&[]).await.1;
    }
    let outcomes = join_all(ready.iter().map(|provider| call.on(provider))).await;
    let mut last = None;
    for outcome in outcomes {
        if verdict(&outcome, call.request.idempotent) != Verdict::Success {
            return outcome;
        }
        last = Some(outcome);
    }
    last.unwrap_or_else(|| Err(call.directory.unavailable()))
}

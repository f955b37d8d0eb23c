//! Sends the call to several providers at once; the first success answers.

use futures_util::{StreamExt, stream::FuturesUnordered};
use serde::Serialize;

use super::{Verdict, directory::Call, verdict};
use crate::{error::Error, protocol::Frame};

pub(crate) async fn call<A: Serialize + ?Sized>(
    call: &Call<'_, A>,
    parallel: usize,
) -> Result<Option<Frame>, Error> {
    let mut chosen = Vec::with_capacity(parallel);
    let mut providers = None;
    while chosen.len() < parallel.max(1) {
        let Some((all, index)) = call.pick(&chosen) else {
            break;
        };
        chosen.push(index);
        providers = Some(all);
    }
    let Some(providers) = providers else {
        // None ready: one attempt waits for a connection or fails as the directory says.
        return call.once(&[]).await.1;
    };
    let mut attempts: FuturesUnordered<_> = chosen
        .iter()
        .map(|&index| call.on(&providers[index]))
        .collect();
    let mut last = None;
    while let Some(outcome) = attempts.next().await {
        if verdict(&outcome, call.request.idempotent) == Verdict::Success {
            // The others are dropped: their slots are freed and their late replies ignored.
            return outcome;
        }
        last = Some(outcome);
    }
    last.unwrap_or_else(|| Err(call.directory.unavailable()))
}

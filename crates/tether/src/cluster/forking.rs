//! Sends the call to several providers at once; the first success answers.
//!
//! The contract, which the tests check and the README states:
//! - the call goes to `parallel` distinct providers of one membership snapshot when that many
//!   are ready or connecting: the balancer picks among the ready ones, and providers whose first
//!   connection is still being opened make up the rest; fewer only when fewer are eligible;
//! - every fork is *sent* before any reply is awaited: a fork's request is in its connection's
//!   write queue (and so leaves on the wire) before the first answer can end the call. A fork
//!   whose connection is still opening is awaited within the call's deadline first;
//! - the first success answers, and the forks still running are dropped (their late replies are
//!   ignored); if every fork fails, the call fails with the last failure.

use futures_util::{StreamExt, future::join_all, stream::FuturesUnordered};
use serde::Serialize;

use super::{
    Verdict,
    directory::{Call, Provider},
    verdict,
};
use crate::{error::Error, protocol::Frame};

pub(crate) async fn call<A: Serialize + ?Sized>(
    call: &Call<'_, A>,
    parallel: usize,
) -> Result<Option<Frame>, Error> {
    let providers = call.directory.providers();
    let chosen = choose(call, &providers, parallel.max(1));
    if chosen.is_empty() {
        // None eligible: one attempt waits for a connection or fails as the directory says.
        return call.once(&[]).await.1;
    }
    let (request, deadline) = (call.request, call.deadline);

    // First a connection for every fork (waiting within the deadline for the ones still
    // connecting), then every request queued, and only then the replies.
    let connections = join_all(chosen.iter().map(|provider| {
        provider
            .channel
            .connection(deadline, request.timeout, call.wait_for_ready())
    }))
    .await;
    let mut last = None;
    let mut ready = Vec::with_capacity(chosen.len());
    for (provider, connection) in chosen.iter().zip(connections) {
        match connection {
            Ok(connection) => ready.push((*provider, connection)),
            Err(error) => last = Some(Err(error)),
        }
    }
    let sent = join_all(
        ready
            .iter()
            .map(|(provider, connection)| provider.send(connection, request, deadline)),
    )
    .await;
    let mut replies = FuturesUnordered::new();
    for sent in sent {
        match sent {
            Ok(sent) => replies.push(sent.reply(deadline, request.timeout)),
            Err(error) => last = Some(Err(error)),
        }
    }
    while let Some(outcome) = replies.next().await {
        if verdict(&outcome, request.idempotent) == Verdict::Success {
            // The others are dropped: their slots are freed and their late replies ignored.
            return outcome;
        }
        last = Some(outcome);
    }
    last.unwrap_or_else(|| Err(call.directory.unavailable()))
}

/// Up to `parallel` distinct providers of `providers`: the balancer's picks among the ready
/// ones, then (if that is not enough) the ones still opening their first connection, woken if
/// idle.
fn choose<'p, A: Serialize + ?Sized>(
    call: &Call<'_, A>,
    providers: &'p [Provider],
    parallel: usize,
) -> Vec<&'p Provider> {
    let mut indices = Vec::with_capacity(parallel);
    while indices.len() < parallel {
        match call.pick_from(providers, &indices) {
            Some(index) => indices.push(index),
            None => break,
        }
    }
    for (index, provider) in providers.iter().enumerate() {
        if indices.len() >= parallel {
            break;
        }
        if !indices.contains(&index) && provider.channel.is_connecting() {
            provider.channel.wake();
            indices.push(index);
        }
    }
    indices.into_iter().map(|index| &providers[index]).collect()
}

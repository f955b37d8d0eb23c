//! The write side of a connection, shared by clients and servers.
//!
//! Callers encode whole frames straight into one shared buffer under a short lock; a single
//! writer task swaps that buffer out and hands it to the socket in one `write_all`. Frames
//! produced while the writer is busy pile up and leave in the next write, so a loaded
//! connection makes few syscalls and no per-frame allocation or channel send.

use std::{
    io, mem,
    pin::pin,
    sync::{Mutex, MutexGuard},
};

use bytes::BytesMut;

use crate::protocol::Header;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::Notify,
};

/// Batch capacity kept even when the queue's limit is set lower.
const MIN_RETAINED: usize = 64 * 1024;

pub(crate) struct WriteQueue {
    state: Mutex<State>,
    /// Wakes the writer when the buffer goes from empty to non-empty, or on close.
    ready: Notify,
    /// Wakes callers waiting for room after each batch leaves.
    drained: Notify,
    /// Soft bound on queued bytes, for callers that wait for room.
    limit: usize,
}

struct State {
    buf: BytesMut,
    closed: bool,
}

/// The queue is closed: the connection is going away.
#[derive(Debug)]
pub(crate) struct Closed;

impl WriteQueue {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                buf: BytesMut::new(),
                closed: false,
            }),
            ready: Notify::new(),
            drained: Notify::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held can only come from an encoder; the buffer is then at
        // worst holding a truncated frame's prefix, which `FrameBuilder` never leaves behind.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one frame written by `encode`, which must leave the buffer as it found it when
    /// it fails. Does not wait for room: see [`WriteQueue::room`].
    pub(crate) fn push<T, E>(
        &self,
        encode: impl FnOnce(&mut BytesMut) -> Result<T, E>,
    ) -> Result<Result<T, E>, Closed> {
        let mut state = self.lock();
        if state.closed {
            return Err(Closed);
        }
        let was_empty = state.buf.is_empty();
        let result = encode(&mut state.buf);
        let wake = was_empty && !state.buf.is_empty();
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(result)
    }

    /// Appends a frame that is only a header (Ping, Pong).
    pub(crate) fn push_header(&self, header: &Header) -> Result<(), Closed> {
        self.push(|buf| {
            header.encode(buf);
            Ok::<_, std::convert::Infallible>(())
        })
        .map(drop)
    }

    /// Waits until the queue holds less than its limit, or is closed.
    pub(crate) async fn room(&self) {
        if self.has_room() {
            return;
        }
        loop {
            let mut drained = pin!(self.drained.notified());
            drained.as_mut().enable();
            if self.has_room() {
                return;
            }
            drained.await;
        }
    }

    fn has_room(&self) -> bool {
        let state = self.lock();
        state.closed || state.buf.len() < self.limit
    }

    /// Takes no more frames; the writer sends what is queued, then stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
        self.drained.notify_waiters();
    }

    /// Writes batches to `io` until the queue is closed and empty, then shuts `io` down.
    pub(crate) async fn write_to(&self, io: &mut (impl AsyncWrite + Unpin)) -> io::Result<()> {
        let mut batch = BytesMut::new();
        loop {
            let took = {
                let mut state = self.lock();
                if state.buf.is_empty() {
                    if state.closed {
                        break;
                    }
                    false
                } else {
                    mem::swap(&mut state.buf, &mut batch);
                    true
                }
            };
            if !took {
                self.ready.notified().await;
                // Let the tasks that were woken alongside this one add their frames first, so
                // they leave in this write rather than one write each.
                tokio::task::yield_now().await;
                continue;
            }
            self.drained.notify_waiters();
            io.write_all(&batch).await?;
            batch.clear();
            // Buffers start empty and grow with the batches, so an idle connection holds only
            // what its heartbeats took. A batch is at most about the queue's limit (callers wait
            // for room past it), so buffers up to that size are kept: a connection under steady
            // load never reallocates them (at 256 calls of 4 KiB in flight, dropping buffers
            // above 1 MiB cost a fifth of the throughput), and one that had a burst keeps at
            // most two limits' worth. Anything larger came from a single huge frame and goes.
            if batch.capacity() > self.limit.max(MIN_RETAINED) {
                batch = BytesMut::new();
            }
        }
        io.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;

    fn push_bytes(queue: &WriteQueue, bytes: &[u8]) {
        queue
            .push(|buf| {
                buf.put_slice(bytes);
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn frames_pushed_together_leave_in_one_write() {
        let queue = WriteQueue::new(1024);
        for i in 0..10u8 {
            push_bytes(&queue, &[i]);
        }
        queue.close();
        let mut out = Vec::new();
        queue.write_to(&mut out).await.unwrap();
        assert_eq!(out, (0..10).collect::<Vec<u8>>());
        assert!(
            queue.push(|_| Ok::<_, ()>(())).is_err(),
            "closed queue takes nothing"
        );
    }

    #[tokio::test]
    async fn a_failed_encode_leaves_nothing_and_does_not_wake() {
        let queue = WriteQueue::new(1024);
        assert_eq!(queue.push(|_| Err::<(), _>("nope")).unwrap(), Err("nope"));
        queue.close();
        let mut out = Vec::new();
        queue.write_to(&mut out).await.unwrap();
        assert!(out.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn room_waits_for_the_writer() {
        let queue = std::sync::Arc::new(WriteQueue::new(4));
        push_bytes(&queue, b"12345");
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let writer = tokio::spawn({
            let queue = queue.clone();
            async move { queue.write_to(&mut tokio::io::sink()).await }
        });
        waiter.await.unwrap();
        queue.close();
        writer.await.unwrap().unwrap();
    }
}

//! The floor any RPC stack over TCP pays: `u32 len | u64 id | payload` frames, where `len`
//! counts the id and the payload. The server echoes each frame with a reader and a writer task
//! per connection; the client keeps calls in flight and matches replies by id. Both writers
//! drain their queue into one buffer and write it with one call, after one `yield_now` that lets
//! the frames of every task woken alongside join the batch.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, Result, anyhow};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream, tcp::OwnedWriteHalf},
    sync::{mpsc, oneshot},
};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

type Frame = (u64, Bytes);

pub(super) async fn serve(listener: TcpListener) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let (read, write) = stream.into_split();
            let (replies, queue) = mpsc::unbounded_channel();
            tokio::spawn(write_frames(write, queue));
            let mut frames = FramedRead::new(read, LengthDelimitedCodec::new());
            while let Some(Ok(mut frame)) = frames.next().await {
                if frame.len() < 8 {
                    break;
                }
                let id = frame.get_u64();
                if replies.send((id, frame.freeze())).is_err() {
                    break;
                }
            }
        });
    }
}

/// Writes queued frames until the queue closes, every frame queued by then in one write.
async fn write_frames(mut write: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Frame>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = queue.recv().await {
        tokio::task::yield_now().await;
        put_frame(&mut buf, first);
        while let Ok(next) = queue.try_recv() {
            put_frame(&mut buf, next);
        }
        if write.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
}

fn put_frame(buf: &mut BytesMut, (id, payload): Frame) {
    buf.put_u32((8 + payload.len()) as u32);
    buf.put_u64(id);
    buf.put_slice(&payload);
}

/// One connection: calls queue their frame for the writer task and wait for the reader task to
/// hand them the reply with their id.
#[derive(Clone)]
pub(super) struct Caller {
    shared: Arc<Shared>,
}

struct Shared {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Bytes>>>,
    requests: mpsc::UnboundedSender<Frame>,
}

pub(super) async fn connect(addr: SocketAddr) -> Result<Caller> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let (requests, queue) = mpsc::unbounded_channel();
    tokio::spawn(write_frames(write, queue));
    let shared = Arc::new(Shared {
        next_id: AtomicU64::new(0),
        pending: Mutex::new(HashMap::new()),
        requests,
    });
    tokio::spawn({
        let shared = shared.clone();
        async move {
            let mut frames = FramedRead::new(read, LengthDelimitedCodec::new());
            while let Some(Ok(mut frame)) = frames.next().await {
                if frame.len() < 8 {
                    break;
                }
                let id = frame.get_u64();
                let waiter = shared.pending.lock().expect("pending lock").remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(frame.freeze());
                }
            }
            // Dropping the waiters fails every call still in flight.
            shared.pending.lock().expect("pending lock").clear();
        }
    });
    Ok(Caller { shared })
}

impl super::Caller for Caller {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, waiter) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .expect("pending lock")
            .insert(id, reply);
        self.shared
            .requests
            .send((id, payload))
            .map_err(|_| anyhow!("connection closed"))?;
        waiter.await.context("connection closed")
    }
}

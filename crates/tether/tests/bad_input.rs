//! What each side does with input it cannot use.
//!
//! The server, facing a handler that panics, names it does not know, arguments that do not
//! decode, frames that break the protocol, metadata that does not parse, a peer that never reads:
//! in every case it stays up, and a bystander connection opened before the bad input keeps
//! working through it.
//!
//! The client, facing a server played by hand over a raw socket that hangs up with calls in
//! flight, sends garbage, answers calls nobody made, or answers with the wrong type.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tether::{
    Client, ErrorKind, GenericClient, Serialization, ServiceKey,
    protocol::{Flags, Frame, FrameCodec, FrameKind, HEADER_LEN, Header, MAGIC, Status, VERSION},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};
use tokio_util::codec::FramedRead;

use support::{
    EchoClient, RawConnection, SERVICE, VERSION as SERVICE_VERSION, assert_serves, bounded,
    connect, echo_client, frame_bytes, metadata_for, poll_until, request_bytes,
    start_default_server,
};

#[tokio::test]
async fn a_panicking_handler_is_a_server_error_and_nothing_more() {
    let (server, _state) = start_default_server().await;
    let bystander = echo_client(&server).await;
    assert_serves(&bystander, "bystander before").await;

    let echo = echo_client(&server).await;
    let error = bounded("panics()", echo.panics())
        .await
        .expect_err("a panic is an error");
    assert_eq!(error.kind(), ErrorKind::ServerError, "{error:?}");
    assert_eq!(error.status(), Some(Status::ServerError));
    assert!(
        error.to_string().contains("panics on purpose"),
        "the panic message reaches the caller: {error}"
    );
    // Several at once, too.
    let errors = bounded(
        "ten panics",
        futures_util::future::join_all((0..10).map(|_| echo.panics())),
    )
    .await;
    assert!(
        errors.iter().all(|r| r
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::ServerError)),
        "{errors:?}"
    );

    assert_serves(&echo, "the connection whose handler panicked").await;
    assert_serves(&bystander, "bystander after").await;
    poll_until(
        "the panicked calls give back their places",
        support::WAIT,
        || server.in_flight() == 0,
    )
    .await;
}

#[tokio::test]
async fn unknown_services_and_methods_and_bad_arguments_are_told_apart() {
    let (server, _state) = start_default_server().await;
    let bystander = echo_client(&server).await;
    assert_serves(&bystander, "bystander before").await;

    let client = connect(&server).await;
    let generic = |key: ServiceKey| GenericClient::new(client.clone(), key).expect("a valid key");
    let echo_key = || ServiceKey::new(SERVICE).with_version(SERVICE_VERSION);

    let cases = [
        (
            "unknown service",
            generic(ServiceKey::new("no.Such")),
            "ping",
            Value::Null,
            ErrorKind::ServiceNotFound,
        ),
        (
            "known service, other version",
            generic(ServiceKey::new(SERVICE).with_version("2.0.0")),
            "ping",
            Value::Null,
            ErrorKind::ServiceNotFound,
        ),
        (
            "known service, no version",
            generic(ServiceKey::new(SERVICE)),
            "ping",
            Value::Null,
            ErrorKind::ServiceNotFound,
        ),
        (
            "known service, other group",
            generic(echo_key().with_group("blue")),
            "ping",
            Value::Null,
            ErrorKind::ServiceNotFound,
        ),
        (
            "unknown method",
            generic(echo_key()),
            "no_such_method",
            Value::Null,
            ErrorKind::MethodNotFound,
        ),
        (
            "method names are case-sensitive",
            generic(echo_key()),
            "Add",
            json!([1, 2]),
            ErrorKind::MethodNotFound,
        ),
        (
            "arguments of the wrong type",
            generic(echo_key()),
            "add",
            json!(["x", "y"]),
            ErrorKind::BadRequest,
        ),
        (
            "too few arguments",
            generic(echo_key()),
            "add",
            json!([1]),
            ErrorKind::BadRequest,
        ),
        (
            "a missing named argument",
            generic(echo_key()),
            "add",
            json!({"a": 1}),
            ErrorKind::BadRequest,
        ),
        (
            "arguments that are not a list or a record",
            generic(echo_key()),
            "add",
            json!("1 + 2"),
            ErrorKind::BadRequest,
        ),
    ];
    for (what, generic, method, args, kind) in cases {
        let error = bounded(what, generic.call(method, args))
            .await
            .expect_err(what);
        assert_eq!(error.kind(), kind, "{what}: {error:?}");
        let status = match kind {
            ErrorKind::ServiceNotFound => Status::ServiceNotFound,
            ErrorKind::MethodNotFound => Status::MethodNotFound,
            _ => Status::BadRequest,
        };
        assert_eq!(error.status(), Some(status), "{what}");
    }

    assert_serves(
        &EchoClient::new(client),
        "the connection the bad calls used",
    )
    .await;
    assert_serves(&bystander, "bystander after").await;
}

/// Reads what a server sends after a frame that breaks the protocol: a GoAway with status
/// `ProtocolError`, then the end of the stream. Returns the GoAway's reason.
async fn expect_go_away_then_close(mut stream: TcpStream, what: &str) -> String {
    let mut header = [0; HEADER_LEN];
    bounded(what, stream.read_exact(&mut header))
        .await
        .unwrap_or_else(|e| panic!("{what}: no GoAway header: {e}"));
    let header = Header::decode(&header).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(header.kind, FrameKind::GoAway, "{what}: {header:?}");
    assert_eq!(header.status, Status::ProtocolError, "{what}: {header:?}");
    assert_eq!(header.metadata_len, 0, "{what}: {header:?}");
    assert!(header.body_len < 64 * 1024, "{what}: {header:?}");
    let mut reason = vec![0; header.body_len as usize];
    bounded(what, stream.read_exact(&mut reason))
        .await
        .unwrap_or_else(|e| panic!("{what}: GoAway reason cut short: {e}"));
    let mut rest = Vec::new();
    let read = bounded(what, stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(0)),
        "{what}: expected the server to close after its GoAway, got {read:?} and {rest:?}"
    );
    String::from_utf8(reason).unwrap_or_else(|e| panic!("{what}: reason not UTF-8: {e}"))
}

/// Sends `bytes` on a fresh raw connection and expects a GoAway with status `ProtocolError` and
/// a close, while a bystander connection keeps working; returns the GoAway's reason.
async fn expect_protocol_error(bytes: &[u8], what: &str) -> String {
    let (server, _state) = start_default_server().await;
    let bystander = echo_client(&server).await;
    assert_serves(&bystander, "bystander before").await;

    let mut stream = bounded("raw connect", TcpStream::connect(server.local_addr()))
        .await
        .expect("raw connect");
    // One write: the server reads all of it before it closes, so it closes with FIN, not RST.
    bounded(what, stream.write_all(bytes))
        .await
        .expect("raw write");
    let reason = expect_go_away_then_close(stream, what).await;

    assert_serves(&bystander, &format!("bystander after {what}")).await;
    poll_until(
        "the server forgets the closed connection",
        support::WAIT,
        || server.connections() == 1,
    )
    .await;
    reason
}

fn header_bytes(patch: impl FnOnce(&mut [u8])) -> BytesMut {
    let mut bytes = BytesMut::new();
    Header::new(FrameKind::Request, 1).encode(&mut bytes);
    patch(&mut bytes[..]);
    bytes
}

#[tokio::test]
async fn bad_magic_gets_a_go_away_and_a_close() {
    let reason = expect_protocol_error(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "an HTTP request",
    )
    .await;
    assert!(reason.contains("magic"), "{reason}");
    let reason = expect_protocol_error(
        &header_bytes(|h| h[..2].copy_from_slice(&(!MAGIC).to_be_bytes())),
        "bad magic",
    )
    .await;
    assert!(reason.contains("magic"), "{reason}");
}

#[tokio::test]
async fn a_4_gib_body_gets_a_go_away_and_a_close_without_allocating_it() {
    let reason = expect_protocol_error(
        &header_bytes(|h| h[20..24].copy_from_slice(&u32::MAX.to_be_bytes())),
        "a 4 GiB body",
    )
    .await;
    assert!(reason.contains(&u32::MAX.to_string()), "{reason}");
    let reason = expect_protocol_error(
        &header_bytes(|h| {
            h[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
            h[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
        }),
        "4 GiB of metadata and 4 GiB of body",
    )
    .await;
    assert!(reason.contains("exceeds"), "{reason}");
}

#[tokio::test]
async fn other_broken_headers_get_a_go_away_and_a_close() {
    let cases: [(&str, BytesMut); 4] = [
        (
            "another protocol version",
            header_bytes(|h| h[2] = VERSION + 1),
        ),
        ("an unknown frame kind", header_bytes(|h| h[3] = 0x7F)),
        ("an unknown serialization id", header_bytes(|h| h[5] = 0xEE)),
        ("an unknown status", header_bytes(|h| h[6] = 0xEE)),
    ];
    for (what, bytes) in cases {
        expect_protocol_error(&bytes, what).await;
    }
    // A client must not send responses.
    let response = frame_bytes(&Header::new(FrameKind::Response, 3), &[], b"{}");
    expect_protocol_error(&response, "a response from the client").await;
}

#[tokio::test]
async fn a_peer_that_hangs_up_mid_frame_is_forgotten() {
    let (server, _state) = start_default_server().await;
    let bystander = echo_client(&server).await;
    assert_serves(&bystander, "bystander before").await;
    let frame = request_bytes(1, "add", Serialization::Json, Flags::NONE, &[1, 2]);
    let mut stream = bounded("raw connect", TcpStream::connect(server.local_addr()))
        .await
        .expect("raw connect");
    bounded("half a frame", stream.write_all(&frame[..frame.len() - 3]))
        .await
        .expect("raw write");
    poll_until("the server counts the connection", support::WAIT, || {
        server.connections() == 2
    })
    .await;
    drop(stream);
    poll_until(
        "the server forgets the closed connection",
        support::WAIT,
        || server.connections() == 1,
    )
    .await;
    assert_serves(&bystander, "bystander after").await;
}

#[tokio::test]
async fn malformed_metadata_is_a_bad_request_and_the_connection_stays() {
    let (server, _state) = start_default_server().await;
    let bystander = echo_client(&server).await;
    assert_serves(&bystander, "bystander before").await;
    let mut raw = RawConnection::open(server.local_addr()).await;

    let mut named_only_method = BytesMut::new();
    let mut no_service = tether::protocol::Metadata::default();
    no_service.method = Some("ping".into());
    no_service
        .encode(&mut named_only_method)
        .expect("metadata fits");
    let mut good = BytesMut::new();
    metadata_for("ping")
        .encode(&mut good)
        .expect("metadata fits");
    let mut bad_timeout = good.clone();
    bad_timeout.extend_from_slice(&[5, 0, 2, 0, 1]);

    let cases: [(&str, &[u8]); 5] = [
        (
            "tag 1 claiming 100 bytes with 2 present",
            &[1, 0, 100, b'a', b'b'],
        ),
        ("an entry cut inside its length", &[1, 0]),
        ("a service name that is not UTF-8", &[1, 0, 2, 0xC3, 0x28]),
        ("a timeout of 2 bytes", &bad_timeout),
        ("no service name", &named_only_method),
    ];
    for ((what, metadata), id) in cases.into_iter().zip(10..) {
        let mut header = Header::new(FrameKind::Request, id);
        header.serialization = Serialization::Json;
        raw.send(&frame_bytes(&header, metadata, b"[]")).await;
        let reply = raw.next_frame(what).await;
        assert_eq!(
            (
                reply.header.kind,
                reply.header.request_id,
                reply.header.status
            ),
            (FrameKind::Response, id, Status::BadRequest),
            "{what}: {reply:?}"
        );
        assert!(
            !reply.body.is_empty(),
            "{what}: the status comes with a reason"
        );
        raw.assert_pong(1000 + id, what).await;
    }

    // The same connection still serves a well-formed request.
    let mut header = Header::new(FrameKind::Request, 99);
    header.serialization = Serialization::Json;
    raw.send(&frame_bytes(&header, &good, b"[]")).await;
    let reply = raw.next_frame("ping after the bad ones").await;
    assert_eq!(
        (
            reply.header.kind,
            reply.header.request_id,
            reply.header.status
        ),
        (FrameKind::Response, 99, Status::Ok),
        "{reply:?}"
    );
    assert_eq!(&reply.body[..], b"null");
    assert_serves(&bystander, "bystander after").await;
}

#[tokio::test]
async fn garbage_arguments_in_every_format_are_a_bad_request() {
    let (server, _state) = start_default_server().await;
    let bystander = echo_client(&server).await;
    assert_serves(&bystander, "bystander before").await;
    let mut raw = RawConnection::open(server.local_addr()).await;
    let mut metadata = BytesMut::new();
    metadata_for("add")
        .encode(&mut metadata)
        .expect("metadata fits");
    for (format, id) in Serialization::enabled().zip(1..) {
        let mut header = Header::new(FrameKind::Request, id);
        header.serialization = format;
        // One byte that starts a value in every format and ends none.
        raw.send(&frame_bytes(&header, &metadata, &[0x80])).await;
        let reply = raw.next_frame(&format!("garbage in {format}")).await;
        assert_eq!(
            (
                reply.header.kind,
                reply.header.request_id,
                reply.header.status
            ),
            (FrameKind::Response, id, Status::BadRequest),
            "{format}: {reply:?}"
        );
        assert_eq!(reply.header.serialization, format, "answered in its format");
    }
    raw.assert_pong(500, "after the garbage").await;
    assert_serves(&bystander, "bystander after").await;
}

#[tokio::test]
async fn a_request_with_no_time_left_is_not_started() {
    let (server, _state) = start_default_server().await;
    let mut raw = RawConnection::open(server.local_addr()).await;
    let mut args = BytesMut::new();
    Serialization::default()
        .serialize(&(40i64, 2i64), &mut args)
        .expect("arguments encode");
    for (id, timeout, status) in [
        (1, Duration::ZERO, Status::DeadlineExceeded),
        (2, Duration::from_secs(5), Status::Ok),
    ] {
        let mut metadata = metadata_for("add");
        metadata.timeout = Some(timeout);
        let mut encoded = BytesMut::new();
        metadata.encode(&mut encoded).expect("metadata fits");
        let mut header = Header::new(FrameKind::Request, id);
        header.serialization = Serialization::default();
        raw.send(&frame_bytes(&header, &encoded, &args)).await;
        let reply = raw
            .next_frame(&format!("a reply with {timeout:?} left"))
            .await;
        assert_eq!(
            (reply.header.request_id, reply.header.status),
            (id, status),
            "{reply:?}"
        );
    }
}

#[tokio::test]
async fn a_serialization_this_build_lacks_is_a_bad_request() {
    let Some(disabled) = Serialization::ALL.into_iter().find(|s| !s.is_enabled()) else {
        eprintln!(
            "note: every serialization is enabled in this build, so none can be refused; \
             run without --all-features to exercise this test"
        );
        return;
    };
    let (server, _state) = start_default_server().await;
    let bystander = echo_client(&server).await;
    assert_serves(&bystander, "bystander before").await;
    let mut raw = RawConnection::open(server.local_addr()).await;
    let mut header = Header::new(FrameKind::Request, 7);
    header.serialization = disabled;
    let mut metadata = BytesMut::new();
    metadata_for("ping")
        .encode(&mut metadata)
        .expect("metadata fits");
    raw.send(&frame_bytes(&header, &metadata, &[0x80])).await;
    let reply = raw.next_frame(&format!("a request in {disabled}")).await;
    assert_eq!(
        (
            reply.header.kind,
            reply.header.request_id,
            reply.header.status
        ),
        (FrameKind::Response, 7, Status::BadRequest),
        "{reply:?}"
    );
    let reason = String::from_utf8_lossy(&reply.body);
    assert!(reason.contains(disabled.name()), "{reason}");
    raw.assert_pong(8, "after the refused format").await;
    assert_serves(&bystander, "bystander after").await;

    // A client refuses to be built with it in the first place.
    let refused = tether::Client::builder()
        .serialization(disabled)
        .timeout(Duration::from_secs(1))
        .connect(server.local_addr())
        .await
        .expect_err("a disabled format is refused");
    assert_eq!(refused.kind(), ErrorKind::InvalidRequest, "{refused:?}");
}

#[tokio::test]
async fn a_peer_that_never_reads_cannot_make_the_server_buffer_without_bound() {
    let (server, _state) = start_default_server().await;
    let bystander = echo_client(&server).await;
    assert_serves(&bystander, "bystander before").await;

    let stream = bounded("raw connect", TcpStream::connect(server.local_addr()))
        .await
        .expect("raw connect");
    // The read half is kept, never read: every Pong the server owes piles up on its side once
    // the socket buffers are full.
    let (_unread, mut write) = stream.into_split();
    let mut chunk = BytesMut::new();
    for id in 0..(1 << 20) / HEADER_LEN as u64 {
        chunk.extend_from_slice(&support::ping_bytes(id));
    }
    // Far more than the socket buffers of both ends hold (a few MiB on loopback): if it all goes
    // through, the server read it all and holds as many bytes of Pongs in memory.
    const ENOUGH: usize = 96 << 20;
    let mut written = 0;
    while written < ENOUGH {
        match tokio::time::timeout(Duration::from_secs(2), write.write_all(&chunk)).await {
            // The server stopped reading this connection: pushback, as it should.
            Err(_elapsed) => break,
            Ok(result) => result.expect("raw write"),
        }
        written += chunk.len();
    }
    assert!(
        written < ENOUGH,
        "the server read {} MiB of Pings from a peer that reads none of its Pongs, queueing \
         the Pongs without bound",
        written >> 20
    );
    assert_serves(&bystander, "bystander after").await;
}

// -------------------------------------------------------------------------------------------------
// The client's side: a server played by hand.
// -------------------------------------------------------------------------------------------------

/// A client connected to a hand-played server, and the server's end of the connection.
struct Scripted {
    echo: EchoClient,
    frames: FramedRead<OwnedReadHalf, FrameCodec>,
    write: OwnedWriteHalf,
}

impl Scripted {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (client, accepted) = bounded("connect and accept", async {
            tokio::join!(
                Client::builder()
                    .serialization(Serialization::Json)
                    .timeout(Duration::from_secs(5))
                    .connect(addr),
                listener.accept()
            )
        })
        .await;
        let (stream, _peer): (TcpStream, _) = accepted.expect("accept");
        let (read, write) = stream.into_split();
        Self {
            echo: EchoClient::new(client.expect("the client connects")),
            frames: FramedRead::new(read, FrameCodec::new()),
            write,
        }
    }

    async fn next_frame(&mut self, what: &str) -> Frame {
        match bounded(what, self.frames.next()).await {
            Some(Ok(frame)) => frame,
            other => panic!("{what}: expected a frame from the client, got {other:?}"),
        }
    }

    /// Reads the next frame, which must be a request for `method` of the test service.
    async fn next_request(&mut self, method: &str) -> Frame {
        let frame = self.next_frame(&format!("the request for {method}")).await;
        assert_eq!(frame.header.kind, FrameKind::Request, "{frame:?}");
        let metadata = frame
            .decode_metadata()
            .expect("the client's metadata decodes");
        assert_eq!(metadata.service.as_deref(), Some(SERVICE));
        assert_eq!(metadata.version.as_deref(), Some(SERVICE_VERSION));
        assert_eq!(metadata.group, None, "the empty group is left out");
        assert_eq!(metadata.method.as_deref(), Some(method));
        frame
    }

    async fn send(&mut self, bytes: &[u8]) {
        bounded("server write", self.write.write_all(bytes))
            .await
            .expect("server write");
    }

    async fn reply(&mut self, request_id: u64, status: Status, body: &[u8]) {
        let mut header = Header::new(FrameKind::Response, request_id);
        header.status = status;
        self.send(&frame_bytes(&header, &[], body)).await;
    }
}

#[tokio::test]
async fn requests_carry_the_service_the_method_and_the_time_left() {
    let mut server = Scripted::start().await;
    let echo = server.echo.clone();
    let call = tokio::spawn(async move { echo.add(40, 2).await });
    let request = server.next_request("add").await;
    assert_eq!(request.header.serialization, Serialization::Json);
    let metadata = request.decode_metadata().expect("metadata");
    let left = metadata
        .timeout
        .expect("the deadline travels with the request");
    assert!(
        left > Duration::ZERO && left <= Duration::from_secs(5),
        "{left:?} left of a 5 s timeout"
    );
    let args: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON arguments");
    assert!(
        args == serde_json::json!({"a": 40, "b": 2}) || args == serde_json::json!([40, 2]),
        "{args}"
    );
    server
        .reply(request.header.request_id, Status::Ok, b"42")
        .await;
    let sum = bounded("the reply", call).await.expect("the calling task");
    assert_eq!(sum.expect("add"), 42);
}

#[tokio::test]
async fn oneway_requests_carry_the_flag_and_no_deadline() {
    let mut server = Scripted::start().await;
    bounded("the oneway send", server.echo.notify(7))
        .await
        .expect("queued");
    let request = server.next_request("notify").await;
    assert!(request.header.flags.contains(Flags::ONEWAY), "{request:?}");
    let metadata = request.decode_metadata().expect("metadata");
    assert_eq!(
        metadata.timeout, None,
        "nobody waits for a oneway call, so the server must not cut it short"
    );
}

#[tokio::test]
async fn a_server_that_hangs_up_fails_the_calls_in_flight_at_once() {
    let mut server = Scripted::start().await;
    let echo = server.echo.clone();
    let calls = tokio::spawn(async move {
        futures_util::future::join_all((0..5).map(|i| echo.add(i, i))).await
    });
    for _ in 0..5 {
        server.next_request("add").await;
    }
    assert_eq!(server.echo.client().in_flight(), 5);
    drop(server.frames);
    drop(server.write);
    let outcomes = bounded("the calls fail", calls)
        .await
        .expect("the calling task");
    for outcome in outcomes {
        let error = outcome.expect_err("the server hung up");
        assert!(error.is_connection_lost(), "{error:?}");
    }
    let echo = server.echo;
    assert_eq!(echo.client().in_flight(), 0);
    assert!(echo.client().is_closed());
    let error = bounded("a call after the hang-up", echo.add(1, 1))
        .await
        .expect_err("closed");
    // A call made after the close never reached a server: safe to send elsewhere.
    assert!(error.is_unavailable() && error.is_never_sent(), "{error:?}");
}

#[tokio::test]
async fn garbage_from_the_server_fails_the_calls_in_flight() {
    let mut server = Scripted::start().await;
    let echo = server.echo.clone();
    let call = tokio::spawn(async move { echo.add(1, 2).await });
    server.next_request("add").await;
    server
        .send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        .await;
    let error = bounded("the call fails", call)
        .await
        .expect("the calling task")
        .expect_err("garbage is no reply");
    assert!(error.is_connection_lost(), "{error:?}");
    assert!(server.echo.client().is_closed());
    assert_eq!(server.echo.client().in_flight(), 0);
}

#[tokio::test]
async fn a_reply_to_no_call_is_ignored() {
    let mut server = Scripted::start().await;
    let echo = server.echo.clone();
    let call = tokio::spawn(async move { echo.add(1, 2).await });
    let request = server.next_request("add").await;
    server
        .reply(request.header.request_id + 1000, Status::Ok, b"666")
        .await;
    server
        .reply(request.header.request_id, Status::Ok, b"3")
        .await;
    let sum = bounded("the reply", call).await.expect("the calling task");
    assert_eq!(sum.expect("add"), 3);
    assert!(!server.echo.client().is_closed());
}

#[tokio::test]
async fn a_reply_of_the_wrong_type_is_a_serialization_error() {
    let mut server = Scripted::start().await;
    let echo = server.echo.clone();
    let call = tokio::spawn(async move { echo.add(1, 2).await });
    let request = server.next_request("add").await;
    server
        .reply(request.header.request_id, Status::Ok, br#""three""#)
        .await;
    let error = bounded("the reply", call)
        .await
        .expect("the calling task")
        .expect_err("a string is no i64");
    assert_eq!(error.kind(), ErrorKind::Serialization, "{error:?}");

    // The connection is fine; the next call gets its answer.
    let echo = server.echo.clone();
    let call = tokio::spawn(async move { echo.add(2, 2).await });
    let request = server.next_request("add").await;
    server
        .reply(request.header.request_id, Status::Ok, b"4")
        .await;
    let sum = bounded("the reply", call).await.expect("the calling task");
    assert_eq!(sum.expect("add"), 4);
}

#[tokio::test]
async fn an_error_status_carries_the_server_message() {
    let mut server = Scripted::start().await;
    let echo = server.echo.clone();
    let call = tokio::spawn(async move { echo.add(1, 2).await });
    let request = server.next_request("add").await;
    server
        .reply(
            request.header.request_id,
            Status::Overloaded,
            b"come back later",
        )
        .await;
    let error = bounded("the reply", call)
        .await
        .expect("the calling task")
        .expect_err("overloaded");
    assert!(error.is_overloaded(), "{error:?}");
    assert_eq!(error.status(), Some(Status::Overloaded));
    assert!(error.to_string().contains("come back later"), "{error}");
}

#[tokio::test]
async fn the_client_answers_a_ping_from_the_server() {
    let mut server = Scripted::start().await;
    server
        .send(&frame_bytes(&Header::new(FrameKind::Ping, 77), &[], &[]))
        .await;
    let pong = server.next_frame("the Pong").await;
    assert_eq!(
        (pong.header.kind, pong.header.request_id),
        (FrameKind::Pong, 77),
        "{pong:?}"
    );
}

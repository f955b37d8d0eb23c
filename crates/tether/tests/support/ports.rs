//! Ports without races. A port found by binding port 0 and closing the listener is free only
//! until something else takes it: it lies in the kernel's ephemeral range, which every
//! `bind(0)` and every outgoing `connect` of the machine draws from. So no test here picks a port
//! that way:
//!
//! - a server binds port 0 and keeps its listener ([`tether::ServerBuilder::listen`]);
//! - a test that needs an address before its server exists (a client that connects first, a
//!   proxy in front) holds a [`ReservedPort`]: a socket bound to the port but not listening, so
//!   connections to it are refused while nothing else can bind it, until the test turns it
//!   into the server's listener;
//! - a test that restarts a server on the address it had binds it again with [`rebind`], which
//!   sets `SO_REUSEADDR` (connections of the old server may linger in TIME_WAIT) and retries
//!   while the port is in use, within [`super::WAIT`].

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    net::{TcpListener, TcpSocket},
    time::Instant,
};

/// The backlog of the listeners made here, as tokio's `TcpListener::bind` uses.
const BACKLOG: u32 = 1024;

/// A port of 127.0.0.1 that is bound but not listening: connecting to it is refused, and
/// nothing else can bind it while this lives.
#[derive(Debug)]
pub(crate) struct ReservedPort {
    socket: TcpSocket,
    addr: SocketAddr,
}

impl ReservedPort {
    /// Binds a fresh port of 127.0.0.1. Without `SO_REUSEADDR`, so that no other socket can
    /// share the port (on Linux, sockets that all set it may share a port none listens on).
    pub(crate) fn new() -> Self {
        let socket = TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind("127.0.0.1:0".parse().expect("an address"))
            .expect("binding 127.0.0.1:0");
        let addr = socket.local_addr().expect("a bound socket has an address");
        Self { socket, addr }
    }

    /// The reserved address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts listening on the reserved port: from now on connections are accepted.
    pub(crate) fn listen(self) -> TcpListener {
        self.socket
            .listen(BACKLOG)
            .unwrap_or_else(|e| panic!("listening on the reserved {}: {e}", self.addr))
    }
}

/// A listener on `addr` again, for a server restarted where it was: `SO_REUSEADDR`, and while
/// the port is in use (a connection of the machine took it meanwhile as its local port), another
/// try every 20 ms for at most [`super::WAIT`].
pub(crate) async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + super::WAIT;
    loop {
        match try_bind(addr) {
            Ok(listener) => return listener,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("binding {addr} again: {e}"),
        }
    }
}

fn try_bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

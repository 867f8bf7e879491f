//! The acceptor (brpc's `Acceptor`): the input handler of a listening socket.
//!
//! Runs in the listening socket's single reader fiber (the `nevent` protocol), accepts until
//! `EAGAIN` (edge-triggered), and turns each connection into a [`Socket`] read by the server's
//! input messenger. Connections arriving after `stop` are closed at once.

use super::ServerInner;
use crate::socket::{sockaddr, InputHandler, Socket, SocketHandle};
use std::io;
use std::sync::Arc;

/// Accepts the connections of one server.
pub(crate) struct Acceptor {
    server: Arc<ServerInner>,
}

impl Acceptor {
    pub(crate) fn new(server: Arc<ServerInner>) -> Acceptor {
        Acceptor { server }
    }
}

impl InputHandler for Acceptor {
    fn on_input(&self, listener: &SocketHandle) {
        loop {
            match sockaddr::accept(listener.fd()) {
                Ok((fd, peer)) => {
                    if !self.server.is_running() {
                        sockaddr::close(fd);
                        continue;
                    }
                    crate::socket::socket::set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
                    let (messenger, activity) = self.server.messenger();
                    match Socket::create(fd, peer, messenger, false) {
                        Ok(s) => self.server.add_connection(s.id(), activity),
                        Err(e) => {
                            eprintln!("spindle-rpc: cannot serve connection from {peer:?}: {e}")
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // EMFILE and friends: the pending connection stays queued; the next
                    // connection's event retries.
                    eprintln!("spindle-rpc: accept on {:?} failed: {e}", listener.remote());
                    return;
                }
            }
        }
    }
}

//! The connection object (brpc's `Socket`): a non-blocking fd with its read state, its
//! lock-free write list and its counters, living in the global [`SocketMap`] [`SOCKET_MAP`].
//!
//! # Life cycle
//!
//! 1. [`Socket::create`] takes ownership of a non-blocking fd, inserts the socket into
//!    [`SOCKET_MAP`] (which issues its [`SocketId`]) and registers the fd with one event
//!    dispatcher (chosen by the id), epoll data = the id's 64 bits — never a pointer.
//! 2. Anyone holding the id reaches the socket with [`address`], which yields a strong
//!    [`SocketRef`] only while the id's version is current.
//! 3. [`Socket::set_failed`] (any thread, idempotent: only the first call acts) bumps the
//!    version so the id stops resolving, `shutdown`s the fd (the peer sees EOF at once, blocked
//!    reads and writes return), removes it from epoll, wakes fibers waiting for `EPOLLOUT` and
//!    tells the socket's [`InputHandler`] (a client fails its pending calls).
//! 4. The fd is `close`d when the last strong handle drops (the [`Drop`] of `Socket`), so a
//!    reader or writer holding a handle never sees its fd number reused under it.
//!
//! # Invariants
//!
//! - **One reader per fd** (the `nevent` protocol, see [`crate::event_dispatcher`]): `read` is
//!   locked only by the reader fiber, so the lock is never contended; it is a `Mutex` only to
//!   make the exclusivity checkable without `unsafe`.
//! - **`fd` is valid while the `Socket` value lives**: it is closed only in `Drop`.
//! - Counters are statistics: relaxed atomics, never used for synchronisation.

use super::transport::Transport;
use super::write::WriteList;
use super::{SocketId, SocketMap, SocketRef};
use crate::errors::{ErrorCode, RpcError};
use crate::event_dispatcher;
use crate::protocol::ProtocolIndex;
use spindle_iobuf::IOPortal;
use spindle_runtime::define_flag;
use std::any::Any;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

define_flag!(
    /// `SO_RCVBUF` of new sockets.
    pub static SOCKET_RECV_BUFFER_SIZE: i32 = 0,
    "SO_RCVBUF in bytes of every new socket; 0 = the OS default",
    validator = |v| if *v < 0 { Err("must be >= 0".into()) } else { Ok(()) },
    reloadable = true
);

define_flag!(
    /// `SO_SNDBUF` of new sockets.
    pub static SOCKET_SEND_BUFFER_SIZE: i32 = 0,
    "SO_SNDBUF in bytes of every new socket; 0 = the OS default",
    validator = |v| if *v < 0 { Err("must be >= 0".into()) } else { Ok(()) },
    reloadable = true
);

/// Every socket of the process (servers' connections and listeners, channels' connections).
pub static SOCKET_MAP: LazyLock<SocketMap<Socket>> = LazyLock::new(SocketMap::new);

/// A strong handle to a socket of [`SOCKET_MAP`].
pub type SocketHandle = SocketRef<'static, Socket>;

/// The socket named by `id`, or `None` if it failed (or never existed).
pub fn address(id: SocketId) -> Option<SocketHandle> {
    SOCKET_MAP.address(id)
}

/// What runs when a socket has input: the input messenger for connections, the acceptor for
/// listening sockets.
pub trait InputHandler: Send + Sync + 'static {
    /// Called in the socket's single reader fiber after input events: must read (or accept)
    /// until `EAGAIN`, or fail the socket. May process messages in place.
    fn on_input(&self, socket: &SocketHandle);

    /// Called once, by whoever failed the socket, after the id stopped resolving.
    fn on_failed(&self, id: SocketId) {
        let _ = id;
    }
}

/// Per-reader state, touched only by the socket's single reader fiber.
#[derive(Debug, Default)]
pub struct ReadState {
    /// Bytes read and not yet cut into messages.
    pub portal: IOPortal,
    /// The protocol that parsed last on this connection; tried first.
    pub preferred: Option<ProtocolIndex>,
    /// Exponential average of message sizes, for the adaptive read size.
    pub avg_message_size: usize,
    /// The first message passed `verify` (authentication).
    pub verified: bool,
}

/// Statistics of one socket.
#[derive(Debug, Default)]
pub struct SocketStats {
    /// Bytes read from the fd.
    pub bytes_in: AtomicU64,
    /// Bytes written to the fd.
    pub bytes_out: AtomicU64,
    /// Messages cut from the input.
    pub messages_in: AtomicU64,
    /// Messages handed to [`Socket::write`].
    pub messages_out: AtomicU64,
    /// Write system calls (`writev`, or RDMA posts) that wrote something: `messages_out /
    /// writes` is how many messages one call carried on average.
    pub writes: AtomicU64,
}

/// A connection or listening socket. See the module doc for the life cycle.
pub struct Socket {
    /// The non-blocking fd; closed in `Drop`.
    fd: RawFd,
    /// The peer (connections) or the bound address (listeners).
    remote: Option<SocketAddr>,
    /// Reads the socket's input.
    pub(crate) handler: Arc<dyn InputHandler>,
    /// Input events not yet consumed by the reader; 0 = no reader running.
    pub(crate) nevent: AtomicU32,
    /// The dispatcher saw `EPOLLRDHUP`, `EPOLLHUP` or `EPOLLERR` (set before the `nevent`
    /// increment that reports it, never cleared): from then on the reader reads until EOF or
    /// `EAGAIN`, since a short read no longer proves that nothing else is coming.
    pub(crate) input_hup: AtomicBool,
    /// State of the single reader.
    pub(crate) read: Mutex<ReadState>,
    /// The lock-free write list and `EPOLLOUT` butex.
    pub(crate) write: WriteList,
    /// Set once by `set_failed`.
    failed: AtomicBool,
    /// Why the socket failed (first reason wins).
    failure: Mutex<Option<RpcError>>,
    /// Counters.
    pub stats: SocketStats,
    /// Per-connection state of a protocol that needs one (brpc's `Socket::parsing_context`),
    /// e.g. HTTP's response ordering for pipelined requests; set once by that protocol.
    pub parsing_context: OnceLock<Box<dyn Any + Send + Sync>>,
    /// What carries the bytes: TCP, or RDMA after the handshake (`transport`).
    pub transport: Transport,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("fd", &self.fd)
            .field("remote", &self.remote)
            .field("failed", &self.failed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: the socket owns `fd` (given to `create`) and this is the only close.
        unsafe { libc::close(self.fd) };
    }
}

impl Socket {
    /// Takes ownership of the non-blocking `fd`, inserts the socket into [`SOCKET_MAP`] and
    /// registers it with an event dispatcher for input (`EPOLLIN|EPOLLET|EPOLLRDHUP`, plus
    /// `EPOLLOUT` when `want_out`, e.g. for a connect in progress). Returns a strong handle
    /// taken before the fd was registered, so it is valid even if the socket fails at once
    /// (then [`Socket::failure`] says why). On error the fd is closed.
    pub fn create(
        fd: RawFd,
        remote: Option<SocketAddr>,
        handler: Arc<dyn InputHandler>,
        want_out: bool,
    ) -> Result<SocketHandle, RpcError> {
        apply_buffer_sizes(fd);
        let socket = Socket {
            fd,
            remote,
            handler,
            nevent: AtomicU32::new(0),
            input_hup: AtomicBool::new(false),
            read: Mutex::new(ReadState::default()),
            write: WriteList::new(),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            stats: SocketStats::default(),
            parsing_context: OnceLock::new(),
            transport: Transport::default(),
        };
        let id = SOCKET_MAP.insert(socket).map_err(|e| {
            RpcError::new(
                ErrorCode::Other(libc::EMFILE),
                format!("socket map full: {e}"),
            )
        })?;
        let Some(s) = address(id) else {
            return Err(RpcError::new(ErrorCode::Internal, "socket vanished"));
        };
        if let Err(e) = event_dispatcher::register(fd, id, want_out) {
            let err = RpcError::new(
                ErrorCode::Other(e.raw_os_error().unwrap_or(0)),
                format!("epoll_ctl(ADD) of fd {fd} failed: {e}"),
            );
            Socket::set_failed(&s, err.clone());
            return Err(err);
        }
        Ok(s)
    }

    /// The fd (valid while this socket lives; do not close it).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The peer's address (connections) or the bound address (listeners).
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// The local address of the fd (`getsockname`), if it has one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        super::sockaddr::local_addr(self.fd).ok()
    }

    /// Whether [`Socket::set_failed`] was called.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Why the socket failed, if it did.
    pub fn failure(&self) -> Option<RpcError> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The error callers get for operations on this (failed) socket.
    pub(crate) fn failed_error(&self) -> RpcError {
        let why = self
            .failure()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "closed".to_owned());
        RpcError::new(
            ErrorCode::FailedSocket,
            format!("socket to {:?} failed: {why}", self.remote),
        )
    }

    /// Fails the socket (idempotent; the first call's `reason` is kept). See the module doc.
    pub fn set_failed(s: &SocketHandle, reason: RpcError) {
        if s.failed.swap(true, Ordering::AcqRel) {
            return;
        }
        *s.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        // The id stops resolving; our handle keeps the value (and the fd) alive.
        let _ = SocketRef::set_failed(s);
        event_dispatcher::deregister(s.fd, s.id());
        // SAFETY: `fd` is open while `s` lives; shutdown does not release it.
        unsafe { libc::shutdown(s.fd, libc::SHUT_RDWR) };
        s.transport.on_failed(s.id());
        s.write.wake_writers();
        s.handler.on_failed(s.id());
    }
}

/// Applies `socket_recv_buffer_size` / `socket_send_buffer_size` (0 = leave the OS default).
fn apply_buffer_sizes(fd: RawFd) {
    for (flag, opt) in [
        (SOCKET_RECV_BUFFER_SIZE.get(), libc::SO_RCVBUF),
        (SOCKET_SEND_BUFFER_SIZE.get(), libc::SO_SNDBUF),
    ] {
        if flag > 0 {
            set_int_opt(fd, libc::SOL_SOCKET, opt, flag);
        }
    }
}

/// `setsockopt` of an int option; failures are ignored (best effort tuning).
pub(crate) fn set_int_opt(fd: RawFd, level: i32, opt: i32, value: i32) {
    // SAFETY: `value` is a live c_int and the length passed is its size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
}

/// `getsockopt(SO_ERROR)`: the pending error of a socket (a connect in progress).
pub(crate) fn take_socket_error(fd: RawFd) -> io::Result<()> {
    let mut err: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `err`/`len` are live and describe an int-sized buffer.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut i32).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct NoInput;
    impl InputHandler for NoInput {
        fn on_input(&self, _socket: &SocketHandle) {}
    }

    fn get_int_opt(fd: RawFd, opt: i32) -> i32 {
        let mut v: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: `v`/`len` describe a live int-sized buffer.
        unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut i32).cast(),
                &mut len,
            )
        };
        v
    }

    /// `socket_recv_buffer_size` applies to new sockets; `set_failed` is idempotent, keeps
    /// the first reason, makes the id stale and shuts the fd down (the peer sees EOF).
    #[test]
    fn buffer_size_flag_and_set_failed() {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for two fds.
        assert_eq!(
            unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                    fds.as_mut_ptr(),
                )
            },
            0
        );
        SOCKET_RECV_BUFFER_SIZE.set(256 * 1024).unwrap();
        let s = Socket::create(fds[0], None, Arc::new(NoInput), false).unwrap();
        SOCKET_RECV_BUFFER_SIZE.set(0).unwrap();
        let id = s.id();
        // Linux doubles the value it was given.
        assert!(get_int_opt(s.fd(), libc::SO_RCVBUF) >= 256 * 1024);
        assert!(!s.failed());
        Socket::set_failed(&s, RpcError::new(ErrorCode::Close, "first"));
        Socket::set_failed(&s, RpcError::new(ErrorCode::Internal, "second"));
        assert!(s.failed());
        assert_eq!(s.failure().unwrap().text, "first");
        assert!(address(id).is_none(), "a failed id must not resolve");
        // SAFETY: fds[1] is ours; the stream owns it from now on.
        let mut peer = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fds[1]) };
        peer.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            peer.read(&mut buf).unwrap(),
            0,
            "peer sees EOF after set_failed"
        );
    }
}

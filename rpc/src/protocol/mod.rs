//! Protocols (brpc's `struct Protocol` and `RegisterProtocol`): the hooks a wire format plugs
//! into the input messenger, the server and the channel.
//!
//! # Shape
//!
//! A protocol is a [`Protocol`] trait object registered once in a [`ProtocolRegistry`], which
//! gives it a stable [`ProtocolIndex`]. The hooks, in the order a call meets them:
//!
//! | hook                          | side   | when                                                 |
//! |-------------------------------|--------|------------------------------------------------------|
//! | [`Protocol::serialize_request`]   | client | once per call: encode (and compress) the request body |
//! | [`Protocol::pack_request`]        | client | every attempt: frame the body with a fresh correlation id, adding credentials |
//! | [`Protocol::parse`]               | both   | the input messenger cuts one message off a socket's read buffer |
//! | [`Protocol::verify`]              | server | first message of a connection, when the server has an authenticator |
//! | [`Protocol::process_request`]     | server | in a fiber, per request message                      |
//! | [`Protocol::process_response`]    | client | in a fiber, per response message                     |
//!
//! plus [`Protocol::parse_server_address`], [`Protocol::method_name`],
//! [`Protocol::supported_connection_types`] and [`Protocol::name`].
//!
//! The server, socket and controller types do not exist yet, so the processing hooks talk to
//! small traits defined here ([`RequestSink`], [`ResponseSink`], [`Authenticator`]): the
//! server implements `RequestSink` (find the method, run it, write the response), the channel's
//! correlation table implements `ResponseSink`. The messages they carry ([`ServerRequest`],
//! [`ClientResponse`]) are baidu_std-shaped; protocols with more per-message state (HTTP
//! headers) will widen them with the server work.
//!
//! # Probing order
//!
//! The messenger tries the socket's preferred protocol first, then all protocols by
//! [`ProtocolClass`]: magic at the front, then no magic (HTTP), then magic in the middle. See
//! [`cut_input_message`].
//!
//! # Buffers
//!
//! Parsing reads from the socket's read buffer, an [`IOBuf`]: a parser peeks a header
//! (`fetch_array` / `copy_to`, no consumption), decodes protobuf through a non-consuming
//! cursor, and cuts the message off the front (`pop_front`, `split_to`: shares blocks, copies
//! nothing). Framing appends into an [`IOBuf`]; bodies and attachments are appended by
//! reference.

mod auth;
mod connection_type;
mod parse_result;
mod process;
mod registry;
mod request;

pub use auth::Authenticator;
pub use connection_type::{ConnectionType, ConnectionTypeError, ConnectionTypes};
pub use parse_result::{ParseError, ParseResult};
pub use process::{ClientResponse, RequestSink, ResponseBody, ResponseSink, ServerRequest};
pub use registry::{cut_input_message, CutError, CutResult, ProtocolRegistry, RegistryError};
pub use request::{CallInfo, MessageBody};

use crate::errors::RpcError;
use crate::socket::SocketId;
use std::any::Any;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

pub use spindle_iobuf::IOBuf;

/// brpc's `max_body_size` default: 64 MiB. Larger declared bodies are refused before any
/// allocation.
pub const DEFAULT_MAX_BODY_SIZE: usize = 64 * 1024 * 1024;

/// Where a protocol's magic sits, which fixes its place in the probing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolClass {
    /// A magic at byte 0 (`PRPC`, `HULU`, `SOFA`, `STRM`, `RDMA`): says no after a few bytes,
    /// so tried first.
    MagicAtFront,
    /// No magic (HTTP): may have to read the start line before it knows.
    NoMagic,
    /// A magic in the middle of the header (nshead, at bytes 24..28): cannot say no before the
    /// magic arrives, so tried last — otherwise it would hold a short HTTP request forever.
    MagicInMiddle,
}

/// A protocol's position in a [`ProtocolRegistry`]; stable once registered. A socket remembers
/// the index of the protocol that last parsed on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolIndex(pub u16);

impl fmt::Display for ProtocolIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a parser knows about the connection it reads.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    /// The socket the bytes came from; stored into the message.
    pub socket_id: SocketId,
    /// Largest body accepted (`max_body_size`).
    pub max_body_size: usize,
    /// The peer closed its side; no more bytes will arrive.
    pub read_eof: bool,
}

impl ParseContext {
    /// A context for `socket_id` with the default `max_body_size` and no EOF.
    pub fn new(socket_id: SocketId) -> ParseContext {
        ParseContext {
            socket_id,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            read_eof: false,
        }
    }
}

/// A message cut from a socket's input (brpc's `InputMessageBase`). Each protocol has its own
/// concrete type; its processing hooks get it back with [`downcast`](#method.downcast) or
/// [`downcast_ref`](#method.downcast_ref).
pub trait InputMessage: Any + Send {
    /// The socket the message was read from.
    fn socket_id(&self) -> SocketId;
}

impl dyn InputMessage {
    /// The concrete message, if it is a `T` (the protocol that produced it knows its type).
    pub fn downcast<T: InputMessage>(self: Box<Self>) -> Option<Box<T>> {
        let any: Box<dyn Any + Send> = self;
        any.downcast().ok()
    }

    /// The concrete message, borrowed, if it is a `T`.
    pub fn downcast_ref<T: InputMessage>(&self) -> Option<&T> {
        let any: &dyn Any = self;
        any.downcast_ref()
    }
}

impl fmt::Debug for dyn InputMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InputMessage(from {:?})", self.socket_id())
    }
}

/// Why a server address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    /// The text that was given.
    pub input: String,
    /// Why it does not name a server.
    pub reason: String,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad server address \"{}\": {}", self.input, self.reason)
    }
}

impl std::error::Error for AddressError {}

/// A wire protocol (brpc's `struct Protocol`). Implementations are stateless and shared by all
/// sockets; per-connection state lives with the socket.
///
/// Hooks a protocol does not have (a server-only protocol has no client side) keep their
/// default bodies, which fail with a typed error naming the protocol; the registry never calls
/// them for such a protocol when [`Protocol::supported_connection_types`] is empty (client) or
/// [`Protocol::serves`] is false (server).
pub trait Protocol: Send + Sync + 'static {
    /// Short lower-case name (`"baidu_std"`), used in options and logs; unique in a registry.
    fn name(&self) -> &'static str;

    /// Where the magic sits (fixes the probing order).
    fn class(&self) -> ProtocolClass;

    /// Cuts one message off the front of `source` (shared by client and server). Follows the
    /// [`ParseResult`] contract: consumes nothing unless it returns `Ok`, never panics, never
    /// allocates for a declared size larger than `ctx.max_body_size`.
    fn parse(&self, source: &mut IOBuf, ctx: &ParseContext) -> ParseResult<Box<dyn InputMessage>>;

    /// Connection types a channel may use with this protocol; empty for server-only protocols.
    fn supported_connection_types(&self) -> ConnectionTypes;

    /// Whether a server can accept requests in this protocol.
    fn serves(&self) -> bool {
        false
    }

    /// Encodes the request body once per call (brpc `SerializeRequest`): serializes `request`
    /// and compresses it as `call.compress_type` says, appending to `out`.
    fn serialize_request(
        &self,
        out: &mut IOBuf,
        request: &dyn MessageBody,
        call: &CallInfo<'_>,
    ) -> Result<(), RpcError> {
        let _ = (out, request, call);
        Err(no_hook(self.name(), "client"))
    }

    /// Frames a serialized body for one attempt (brpc `PackRequest`): appends to `out` a whole
    /// message carrying `correlation_id`, the body from `serialize_request`, the call's
    /// attachment, and credentials from `auth` when given (first message of a connection).
    fn pack_request(
        &self,
        out: &mut IOBuf,
        correlation_id: i64,
        body: &IOBuf,
        call: &CallInfo<'_>,
        auth: Option<&dyn Authenticator>,
    ) -> Result<(), RpcError> {
        let _ = (out, correlation_id, body, call, auth);
        Err(no_hook(self.name(), "client"))
    }

    /// Server side (brpc `ProcessRequest`): turns a parsed message into a [`ServerRequest`] for
    /// `server`. Errors are for the caller to answer or log (e.g. `EREQUEST` for a message that
    /// is not a request); they never panic.
    fn process_request(
        &self,
        msg: Box<dyn InputMessage>,
        server: &dyn RequestSink,
    ) -> Result<(), RpcError> {
        let _ = (msg, server);
        Err(no_hook(self.name(), "server"))
    }

    /// Client side (brpc `ProcessResponse`): turns a parsed message into a [`ClientResponse`]
    /// for the channel's correlation table.
    fn process_response(
        &self,
        msg: Box<dyn InputMessage>,
        client: &dyn ResponseSink,
    ) -> Result<(), RpcError> {
        let _ = (msg, client);
        Err(no_hook(self.name(), "client"))
    }

    /// Client side: whether processing the response `msg` is short and never blocks (no
    /// decompression, no decoding of a large body), so the connection's reader may do it
    /// itself instead of handing it to a fiber of its own (see the input messenger's module
    /// doc). Default: no.
    fn response_in_place(&self, msg: &dyn InputMessage) -> bool {
        let _ = msg;
        false
    }

    /// Server side: checks the credentials in the first message of a connection (brpc
    /// `Verify`). Default: accept (the protocol carries no credentials).
    fn verify(&self, msg: &dyn InputMessage, auth: &dyn Authenticator) -> Result<(), RpcError> {
        let _ = (msg, auth);
        Ok(())
    }

    /// Parses the server part of a channel URL (brpc `ParseServerAddress`). Default:
    /// `host:port`, resolved; the first address wins.
    fn parse_server_address(&self, server: &str) -> Result<SocketAddr, AddressError> {
        let err = |reason: String| AddressError {
            input: server.to_owned(),
            reason,
        };
        server
            .to_socket_addrs()
            .map_err(|e| err(e.to_string()))?
            .next()
            .ok_or_else(|| err("resolves to no address".to_owned()))
    }

    /// The method name this protocol reports in statistics and logs (brpc `GetMethodName`).
    /// Default: `service.method`.
    fn method_name(&self, service: &str, method: &str) -> String {
        format!("{service}.{method}")
    }
}

fn no_hook(protocol: &str, side: &str) -> RpcError {
    RpcError::new(
        crate::errors::ErrorCode::Internal,
        format!("protocol {protocol} has no {side} side"),
    )
}

#[cfg(test)]
pub(crate) mod fake;

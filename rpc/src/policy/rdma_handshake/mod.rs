//! The RDMA handshake as a protocol (brpc's `rdma_handshake`, DESIGN.md §5): how a TCP
//! connection becomes an RDMA one, or stays on TCP.
//!
//! # Server side
//!
//! 1. [`RdmaHandshake::parse`] recognises the client's hello (`"RDMA"` v2 / `"RDM3"` v3, class
//!    [`ProtocolClass::MagicAtFront`], probed before every other protocol) and cuts it.
//! 2. `process_request` hands it to a fiber of its own (never the dispatcher, never the reader):
//!    if the server allows RDMA (`ServerOptions::rdma`), the hello is negotiable, the RDMA
//!    context opens and an endpoint can be prepared and connected to the client's queue pair,
//!    the server answers its own hello; otherwise the refusal hello (`encode_refusal`). Either
//!    way the socket now waits for the client's 4-byte ACK.
//! 3. While it waits, `parse` reads the next 4 bytes as the ACK (bytes after an OK ACK are a
//!    protocol error: the client must not send anything over TCP after it). OK → the socket
//!    switches to the endpoint ([`Transport`]); not OK → the endpoint
//!    is shut down and the connection goes on over TCP.
//!
//! # Client side (`client_handshake`, `ChannelOptions::use_rdma`)
//!
//! After the TCP connect and before the connection carries any call: prepare an endpoint,
//! write `encode_hello(rdma_client_handshake_version)`, wait for the server's hello (parsed
//! with `parse_hello_expect` while the socket waits for it), connect, write the OK ACK, wait
//! until it left, switch. Every failure — no RDMA context or endpoint (nothing is sent),
//! refusal, a hello that does not decode or of the wrong version, a connect failure, no
//! answer before the connect deadline — sends the ACK without OK when a hello was sent and
//! leaves the connection on TCP. Only a failed socket fails the connect.

use crate::errors::{ErrorCode, RpcError};
use crate::protocol::{
    ConnectionTypes, IOBuf, InputMessage, ParseContext, ParseError, ParseResult, Protocol,
    ProtocolClass, RequestSink, ResponseSink,
};
use crate::socket::rdma_api::{EndpointConfig, PreparedEndpoint, RdmaContext, RdmaEndpoint};
use crate::socket::{self, Socket, SocketHandle, SocketId, Transport, TransportState};
use spindle_rdma::handshake::{
    self, ack, encode_hello, encode_refusal, parse_hello, parse_hello_expect, DecodedHello, Hello,
    HelloError, HelloVersion,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// Most bytes looked at to decode a hello (a v2 hello declares at most 4096 bytes; a v3 one
/// is well under this).
const MAX_HELLO_PEEK: usize = 4096 + 8;

/// The handshake protocol (stateless; the per-socket state is the socket's transport).
#[derive(Debug, Default, Clone, Copy)]
pub struct RdmaHandshake;

/// What the handshake cut from a connection.
#[derive(Debug)]
pub enum HandshakeMessage {
    /// Server side: a client's hello.
    Hello(DecodedHello),
    /// Server side: the client's ACK (`true` = switch to RDMA).
    Ack(bool),
    /// Client side: the server's answer to our hello, or why it does not decode.
    Reply(Result<DecodedHello, String>),
    /// A hello on a connection that already had its handshake (or a client's connection that
    /// stopped waiting): dropped.
    LateHello,
}

/// A handshake message and the socket it came from.
#[derive(Debug)]
pub struct HandshakeInput {
    /// Where it was read.
    pub socket_id: SocketId,
    /// What it is.
    pub message: HandshakeMessage,
}

impl InputMessage for HandshakeInput {
    fn socket_id(&self) -> SocketId {
        self.socket_id
    }
}

/// The first bytes of `source` (at most `max`).
fn peek(source: &IOBuf, max: usize) -> Vec<u8> {
    let mut head = vec![0u8; source.len().min(max)];
    let n = source.copy_to(&mut head, 0);
    head.truncate(n);
    head
}

fn wrong(e: HelloError) -> ParseError {
    match e {
        HelloError::TryOthers => ParseError::TryOthers,
        HelloError::NotEnoughData => ParseError::NotEnoughData,
        HelloError::Malformed(why) => ParseError::AbsolutelyWrong(why),
    }
}

fn message(ctx: &ParseContext, message: HandshakeMessage) -> ParseResult<Box<dyn InputMessage>> {
    Ok(Box::new(HandshakeInput {
        socket_id: ctx.socket_id,
        message,
    }))
}

impl RdmaHandshake {
    /// The server waits for the ACK: exactly 4 bytes, and nothing after an OK one.
    fn parse_ack(source: &mut IOBuf, ctx: &ParseContext) -> ParseResult<Box<dyn InputMessage>> {
        let Some(bytes) = source.fetch_array::<{ ack::ACK_LEN }>() else {
            return Err(ParseError::NotEnoughData);
        };
        let ok = ack::decode(&bytes).map_err(wrong)?;
        if ok && source.len() > ack::ACK_LEN {
            return Err(ParseError::AbsolutelyWrong(format!(
                "{} bytes arrived over TCP after the RDMA ACK",
                source.len() - ack::ACK_LEN
            )));
        }
        source.pop_front(ack::ACK_LEN);
        message(ctx, HandshakeMessage::Ack(ok))
    }

    /// The client waits for the server's hello of `version`. A hello that does not decode is
    /// cut (as far as it can be delimited) and reported, so that the client falls back.
    fn parse_reply(
        source: &mut IOBuf,
        version: HelloVersion,
    ) -> ParseResult<Result<DecodedHello, String>> {
        let head = peek(source, MAX_HELLO_PEEK);
        let reply = match parse_hello_expect(&head, version) {
            Ok(d) => {
                source.pop_front(d.consumed);
                Ok(d)
            }
            Err(HelloError::NotEnoughData) if head.len() < MAX_HELLO_PEEK => {
                return Err(ParseError::NotEnoughData)
            }
            Err(e) => {
                // The server must send nothing but its hello before our ACK: cut the other
                // version's hello if it is one, else everything buffered.
                let cut = parse_hello(&head).map_or(source.len(), |d| d.consumed);
                source.pop_front(cut);
                Err(e.to_string())
            }
        };
        Ok(reply)
    }
}

impl Protocol for RdmaHandshake {
    fn name(&self) -> &'static str {
        "rdma_handshake"
    }

    fn class(&self) -> ProtocolClass {
        ProtocolClass::MagicAtFront
    }

    fn parse(&self, source: &mut IOBuf, ctx: &ParseContext) -> ParseResult<Box<dyn InputMessage>> {
        let s = socket::address(ctx.socket_id);
        let t = s.as_ref().map(|s| &s.transport);
        match t.map(|t| t.state()) {
            Some(TransportState::ServerAwaitingAck | TransportState::ServerHelloReceived) => {
                let r = Self::parse_ack(source, ctx);
                if r.is_ok() {
                    // What follows is not an ACK, whatever the processing fiber does.
                    t.inspect(|t| t.server_ack_parsed());
                }
                r
            }
            Some(TransportState::ClientAwaitingHello) => {
                match t.and_then(|t| t.client_version()) {
                    Some(v) => {
                        let reply = Self::parse_reply(source, v)?;
                        // Handed over at once: the connecting fiber is waiting for it.
                        t.inspect(|t| t.client_deliver(reply.clone()));
                        message(ctx, HandshakeMessage::Reply(reply))
                    }
                    None => Err(ParseError::TryOthers),
                }
            }
            _ => {
                // Other protocols' messages are told apart by their first bytes, uncopied.
                let mut magic = [0u8; handshake::MAGIC_LEN];
                let n = source.copy_to(&mut magic, 0);
                if let Err(HelloError::TryOthers) = parse_hello(&magic[..n]) {
                    return Err(ParseError::TryOthers);
                }
                let head = peek(source, MAX_HELLO_PEEK);
                let d = parse_hello(&head).map_err(wrong)?;
                source.pop_front(d.consumed);
                // From now on the next 4 bytes are the ACK, even if it comes before our answer
                // (a client that gave up waiting). A client's socket: a late answer, dropped.
                if t.is_some_and(|t| t.server_hello_cut()) {
                    message(ctx, HandshakeMessage::Hello(d))
                } else {
                    message(ctx, HandshakeMessage::LateHello)
                }
            }
        }
    }

    fn supported_connection_types(&self) -> ConnectionTypes {
        ConnectionTypes::NONE
    }

    fn serves(&self) -> bool {
        true
    }

    fn process_request(
        &self,
        msg: Box<dyn InputMessage>,
        server: &dyn RequestSink,
    ) -> Result<(), RpcError> {
        let input = downcast(msg)?;
        let Some(s) = socket::address(input.socket_id) else {
            return Ok(());
        };
        match input.message {
            HandshakeMessage::Hello(hello) => {
                let allow = server.rdma_enabled();
                drop(spindle_runtime::spawn(move || {
                    server_answer(&s, hello, allow)
                }));
                Ok(())
            }
            HandshakeMessage::Ack(ok) => {
                server_on_ack(&s, ok);
                Ok(())
            }
            HandshakeMessage::Reply(_) => Err(RpcError::new(
                ErrorCode::Request,
                "an RDMA hello reply arrived on a server connection",
            )),
            HandshakeMessage::LateHello => Ok(()),
        }
    }

    fn process_response(
        &self,
        msg: Box<dyn InputMessage>,
        _client: &dyn ResponseSink,
    ) -> Result<(), RpcError> {
        let input = downcast(msg)?;
        match input.message {
            // Delivered by `parse` already.
            HandshakeMessage::Reply(_) => {}
            // A hello that arrived after the client stopped waiting (it timed out and sent a
            // negative ACK): nothing to do.
            HandshakeMessage::Hello(_) | HandshakeMessage::LateHello => {}
            HandshakeMessage::Ack(_) => {
                return Err(RpcError::new(
                    ErrorCode::Request,
                    "an RDMA ACK arrived on a client connection",
                ))
            }
        }
        Ok(())
    }
}

fn downcast(msg: Box<dyn InputMessage>) -> Result<Box<HandshakeInput>, RpcError> {
    msg.downcast::<HandshakeInput>()
        .ok_or_else(|| RpcError::new(ErrorCode::Internal, "not an RDMA handshake message"))
}

fn trace(what: impl FnOnce() -> String) {
    if spindle_rdma::flags::RDMA_TRACE_VERBOSE.get() {
        eprintln!("spindle-rpc: rdma handshake: {}", what());
    }
}

/// Opens the RDMA context and prepares an endpoint (a resource failure is a fallback).
fn prepare() -> Result<PreparedEndpoint, String> {
    let ctx = RdmaContext::global().map_err(|e| format!("no RDMA context: {e}"))?;
    PreparedEndpoint::new(ctx, &EndpointConfig::from_flags())
        .map_err(|e| format!("cannot prepare an RDMA endpoint: {e}"))
}

/// Server: our hello and the endpoint connected to the client, or why we refuse.
fn server_endpoint(hello: &DecodedHello, allow: bool) -> Result<(Hello, RdmaEndpoint), String> {
    if !allow {
        return Err("this server does not use RDMA (ServerOptions::rdma is false)".to_owned());
    }
    if !hello.negotiable {
        return Err("the client's hello is not negotiable".to_owned());
    }
    let prepared = prepare()?;
    let local = prepared.local_hello();
    let ep = prepared
        .connect(&hello.hello)
        .map_err(|e| format!("cannot connect to the client's queue pair: {e}"))?;
    Ok((local, ep))
}

/// Server, in its own fiber: answers the client's hello (module doc, step 2).
fn server_answer(s: &SocketHandle, hello: DecodedHello, allow: bool) {
    let version = hello.version;
    let (reply, endpoint) = match server_endpoint(&hello, allow) {
        Ok((local, ep)) => (encode_hello(version, &local), Some(Arc::new(ep))),
        Err(why) => {
            trace(|| format!("refusing RDMA on connection {}: {why}", s.id()));
            (encode_refusal(version), None)
        }
    };
    // The state must say "ACK next" before the client can see our hello; if the client's ACK
    // came already (it gave up waiting), it must not see one at all.
    if !s.transport.server_await_ack(endpoint) {
        trace(|| format!("connection {}: the ACK came before the answer", s.id()));
        return;
    }
    if Socket::write(s, IOBuf::from(reply)).is_err() {
        // The socket failed: `set_failed` shut down whatever endpoint it found; make sure.
        s.transport.on_failed(s.id());
    }
}

/// Server, on the client's ACK (module doc, step 3).
fn server_on_ack(s: &SocketHandle, ok: bool) {
    let endpoint = s.transport.server_take_endpoint();
    match (ok, endpoint) {
        (true, Some(ep)) => {
            if let Err(why) = Transport::switch_to_rdma(s, ep.clone()) {
                ep.shutdown();
                // The client already switched: the connection is unusable over TCP.
                Socket::set_failed(
                    s,
                    RpcError::new(ErrorCode::Internal, format!("cannot switch to RDMA: {why}")),
                );
            } else {
                trace(|| format!("connection {} switched to RDMA", s.id()));
            }
        }
        (true, None) => Socket::set_failed(
            s,
            RpcError::new(
                ErrorCode::Request,
                "the client acknowledged RDMA after the server refused it",
            ),
        ),
        (false, Some(ep)) => {
            ep.shutdown();
            trace(|| format!("connection {} stays on TCP (client's ACK)", s.id()));
        }
        (false, None) => {}
    }
}

/// Writes `bytes` and waits until they left the socket (or `deadline`): nothing may follow
/// them over TCP once the socket switches.
fn write_flushed(s: &SocketHandle, bytes: &[u8], deadline: Instant) -> Result<(), RpcError> {
    Socket::write(s, IOBuf::from(bytes))?;
    while s.write.unwritten_bytes() != 0 {
        if s.failed() {
            return Err(s.failed_error());
        }
        if Instant::now() >= deadline {
            return Err(RpcError::new(
                ErrorCode::Other(libc::ETIMEDOUT),
                "the RDMA ACK did not leave the socket in time",
            ));
        }
        spindle_runtime::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// The client handshake on a freshly connected socket (module doc, "Client side"). Returns
/// `Ok` whether the socket switched to RDMA or stays on TCP; `Err` only if the socket failed.
pub(crate) fn client_handshake(s: &SocketHandle, deadline: Instant) -> Result<(), RpcError> {
    let version =
        HelloVersion::from_number(spindle_rdma::flags::RDMA_CLIENT_HANDSHAKE_VERSION.get())
            .unwrap_or(HelloVersion::V2);
    let prepared = match prepare() {
        Ok(p) => p,
        Err(why) => {
            trace(|| format!("connection {} stays on TCP: {why}", s.id()));
            return Ok(());
        }
    };
    s.transport.client_expect_hello(version);
    Socket::write(
        s,
        IOBuf::from(encode_hello(version, &prepared.local_hello())),
    )?;
    let reply = s.transport.client_wait(deadline, &|| s.failed());
    if s.failed() {
        return Err(s.failed_error());
    }
    let remote = match reply {
        None => Err("no answer to the RDMA hello before the connect deadline".to_owned()),
        Some(Err(why)) => Err(why),
        Some(Ok(d)) if !d.negotiable || !d.hello.is_negotiable() => {
            Err("the server refused RDMA".to_owned())
        }
        Some(Ok(d)) => Ok(d.hello),
    };
    let endpoint = remote.and_then(|hello| {
        prepared
            .connect(&hello)
            .map_err(|e| format!("cannot connect to the server's queue pair: {e}"))
    });
    let endpoint = match endpoint {
        Ok(ep) => Arc::new(ep),
        Err(why) => {
            trace(|| format!("connection {} stays on TCP: {why}", s.id()));
            // Past the deadline the ACK still goes out; it is 4 bytes on a fresh socket.
            write_flushed(s, &ack::encode(false), deadline.max(Instant::now()) + SLACK)?;
            return Ok(());
        }
    };
    write_flushed(s, &ack::encode(true), deadline.max(Instant::now()) + SLACK)?;
    if let Err(why) = Transport::switch_to_rdma(s, endpoint.clone()) {
        endpoint.shutdown();
        let err = RpcError::new(ErrorCode::Internal, format!("cannot switch to RDMA: {why}"));
        Socket::set_failed(s, err.clone());
        return Err(err);
    }
    trace(|| format!("connection {} switched to RDMA", s.id()));
    Ok(())
}

/// Extra time the ACK may take to leave after the handshake's deadline.
const SLACK: Duration = Duration::from_millis(100);

/// Whether the socket `s` runs on RDMA (tests, `/connections`).
pub fn is_rdma(s: &Socket) -> bool {
    s.transport.rdma_endpoint().is_some()
}

//! Test-only protocols, one per probing class, for the cut-loop tests.

use super::{
    ConnectionTypes, IOBuf, InputMessage, ParseContext, ParseError, ParseResult, Protocol,
    ProtocolClass,
};
use crate::socket::SocketId;

/// A whole frame cut by a fake protocol.
#[derive(Debug)]
#[allow(dead_code)] // `frame` is for debugging failed tests
pub(crate) struct FakeMessage {
    pub(crate) socket_id: SocketId,
    pub(crate) frame: IOBuf,
}

impl InputMessage for FakeMessage {
    fn socket_id(&self) -> SocketId {
        self.socket_id
    }
}

fn cut(source: &mut IOBuf, n: usize, ctx: &ParseContext) -> ParseResult<Box<dyn InputMessage>> {
    Ok(Box::new(FakeMessage {
        socket_id: ctx.socket_id,
        frame: source.split_to(n),
    }))
}

/// Magic at the front: `"MAGC"`, a length byte (at most 100), then that many bytes.
pub(crate) struct FakeMagic;

impl Protocol for FakeMagic {
    fn name(&self) -> &'static str {
        "fake_magic"
    }
    fn class(&self) -> ProtocolClass {
        ProtocolClass::MagicAtFront
    }
    fn supported_connection_types(&self) -> ConnectionTypes {
        ConnectionTypes::ALL
    }
    fn parse(&self, source: &mut IOBuf, ctx: &ParseContext) -> ParseResult<Box<dyn InputMessage>> {
        let mut head = [0u8; 5];
        let got = source.copy_to(&mut head, 0);
        let n = got.min(4);
        if head[..n] != b"MAGC"[..n] {
            return Err(ParseError::TryOthers);
        }
        if got < 5 {
            return Err(ParseError::NotEnoughData);
        }
        let len = usize::from(head[4]);
        if len > 100 {
            return Err(ParseError::TooBigData {
                declared: len as u64,
                limit: 100,
            });
        }
        if source.len() < 5 + len {
            return Err(ParseError::NotEnoughData);
        }
        cut(source, 5 + len, ctx)
    }
}

/// No magic: an HTTP-ish request line starting with a method, ending at `"\r\n\r\n"`.
pub(crate) struct FakeHttp;

impl Protocol for FakeHttp {
    fn name(&self) -> &'static str {
        "fake_http"
    }
    fn class(&self) -> ProtocolClass {
        ProtocolClass::NoMagic
    }
    fn supported_connection_types(&self) -> ConnectionTypes {
        ConnectionTypes::of(&[super::ConnectionType::Pooled, super::ConnectionType::Short])
    }
    fn parse(&self, source: &mut IOBuf, ctx: &ParseContext) -> ParseResult<Box<dyn InputMessage>> {
        const METHODS: [&[u8]; 4] = [b"GET ", b"POST ", b"PUT ", b"HEAD "];
        let data = &source.to_vec()[..];
        let started = METHODS.iter().any(|m| data.starts_with(m));
        if !started {
            let prefix = METHODS
                .iter()
                .any(|m| data.len() < m.len() && m.starts_with(data));
            return Err(if prefix {
                ParseError::NotEnoughData
            } else {
                ParseError::TryOthers
            });
        }
        match data.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => cut(source, end + 4, ctx),
            None => Err(ParseError::NotEnoughData),
        }
    }
}

/// Magic in the middle: nshead's 36-byte header, magic `0xfb709394` (little endian) at bytes
/// 24..28, body length (little endian) at 32..36.
pub(crate) struct FakeNshead;

impl FakeNshead {
    const MAGIC: u32 = 0xfb70_9394;

    pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 36];
        f[24..28].copy_from_slice(&Self::MAGIC.to_le_bytes());
        f[32..36].copy_from_slice(&(body.len() as u32).to_le_bytes());
        f.extend_from_slice(body);
        f
    }
}

impl Protocol for FakeNshead {
    fn name(&self) -> &'static str {
        "fake_nshead"
    }
    fn class(&self) -> ProtocolClass {
        ProtocolClass::MagicInMiddle
    }
    fn supported_connection_types(&self) -> ConnectionTypes {
        ConnectionTypes::ALL
    }
    fn parse(&self, source: &mut IOBuf, ctx: &ParseContext) -> ParseResult<Box<dyn InputMessage>> {
        let mut head = [0u8; 36];
        let got = source.copy_to(&mut head, 0);
        if got < 28 {
            return Err(ParseError::NotEnoughData);
        }
        if head[24..28] != Self::MAGIC.to_le_bytes() {
            return Err(ParseError::TryOthers);
        }
        if got < 36 {
            return Err(ParseError::NotEnoughData);
        }
        let body = u32::from_le_bytes([head[32], head[33], head[34], head[35]]) as usize;
        if body > ctx.max_body_size {
            return Err(ParseError::TooBigData {
                declared: body as u64,
                limit: ctx.max_body_size,
            });
        }
        if source.len() < 36 + body {
            return Err(ParseError::NotEnoughData);
        }
        cut(source, 36 + body, ctx)
    }
}

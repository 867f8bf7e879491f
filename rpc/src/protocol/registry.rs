//! The protocol registry and the input messenger's cut loop (brpc `RegisterProtocol` /
//! `InputMessenger::CutInputMessage`).
//!
//! # Probing order
//!
//! Protocols keep the index they were registered under (a socket stores it), but are probed
//! in class order — [`ProtocolClass::MagicAtFront`], then [`ProtocolClass::NoMagic`], then
//! [`ProtocolClass::MagicInMiddle`] — and in registration order within a class.
//!
//! # The cut loop
//!
//! [`cut_input_message`] cuts at most one message:
//! 1. If the socket has a preferred protocol, it parses first. Anything but `TryOthers` is the
//!    answer. On `TryOthers` the preference is cleared (the peer switched protocols).
//! 2. Every other protocol parses in probing order. The first that answers `Ok` or
//!    `NotEnoughData` becomes the preferred one and its answer is returned; the first hard
//!    error (`TooBigData`, `NoResource`, `AbsolutelyWrong`) is returned as is.
//! 3. If all say `TryOthers`, the input is of no known protocol: the connection is closed.
//!
//! Because magic-at-front protocols answer `TryOthers` as soon as a byte disagrees with their
//! magic, a short input reaches the HTTP class before the magic-in-middle class, which would
//! answer `NotEnoughData` to anything shorter than its header and so hold a short HTTP request
//! forever. (Once a magic-in-middle protocol is a socket's preferred one, it is tried first
//! and holds inputs shorter than its magic's end; a peer that switches protocols on such a
//! connection must send at least that many bytes — brpc behaves the same way.)

#[cfg(doc)]
use super::ProtocolClass;
use super::{IOBuf, InputMessage, ParseContext, ParseError, Protocol, ProtocolIndex};
use std::fmt;
use std::sync::Arc;

/// Registered protocols, probed by class.
#[derive(Default)]
pub struct ProtocolRegistry {
    /// By index (registration order).
    protocols: Vec<Arc<dyn Protocol>>,
    /// Indexes in probing order.
    probe_order: Vec<ProtocolIndex>,
}

/// Why a protocol could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// A protocol with this name is already registered.
    DuplicateName(&'static str),
    /// The registry holds `u16::MAX` protocols.
    Full,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::DuplicateName(n) => write!(f, "protocol {n} is already registered"),
            RegistryError::Full => f.write_str("too many protocols registered"),
        }
    }
}

impl std::error::Error for RegistryError {}

impl ProtocolRegistry {
    /// An empty registry.
    pub fn new() -> ProtocolRegistry {
        ProtocolRegistry::default()
    }

    /// Adds `protocol` and returns its index, stable for the registry's life.
    pub fn register(
        &mut self,
        protocol: Arc<dyn Protocol>,
    ) -> Result<ProtocolIndex, RegistryError> {
        if self.find(protocol.name()).is_some() {
            return Err(RegistryError::DuplicateName(protocol.name()));
        }
        let index = u16::try_from(self.protocols.len())
            .ok()
            .filter(|i| *i < u16::MAX)
            .map(ProtocolIndex)
            .ok_or(RegistryError::Full)?;
        let class = protocol.class();
        self.protocols.push(protocol);
        // Insert after every protocol of the same or an earlier class: stable within a class.
        let at = self
            .probe_order
            .iter()
            .position(|i| self.protocols[usize::from(i.0)].class() > class)
            .unwrap_or(self.probe_order.len());
        self.probe_order.insert(at, index);
        Ok(index)
    }

    /// The protocol at `index`.
    pub fn get(&self, index: ProtocolIndex) -> Option<&Arc<dyn Protocol>> {
        self.protocols.get(usize::from(index.0))
    }

    /// The index of the protocol called `name`.
    pub fn find(&self, name: &str) -> Option<ProtocolIndex> {
        self.protocols
            .iter()
            .position(|p| p.name() == name)
            .map(|i| ProtocolIndex(i as u16))
    }

    /// Indexes in probing order (class, then registration).
    pub fn probe_order(&self) -> &[ProtocolIndex] {
        &self.probe_order
    }

    /// Number of registered protocols.
    pub fn len(&self) -> usize {
        self.protocols.len()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.protocols.is_empty()
    }
}

impl fmt::Debug for ProtocolRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.probe_order.iter().map(|i| {
                let p = &self.protocols[usize::from(i.0)];
                (i.0, p.name(), p.class())
            }))
            .finish()
    }
}

/// What one turn of the cut loop produced.
#[derive(Debug)]
pub enum CutResult {
    /// A message, and the protocol that parsed it (now the socket's preferred one).
    Message {
        /// The protocol that parsed it.
        protocol: ProtocolIndex,
        /// The message.
        message: Box<dyn InputMessage>,
    },
    /// Some protocol may own these bytes; read more.
    NotEnoughData,
    /// Close the connection.
    Failed(CutError),
}

/// Why the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CutError {
    /// Every protocol said `TryOthers`.
    UnknownProtocol,
    /// `protocol` answered a hard error (`TooBigData`, `NoResource`, `AbsolutelyWrong`).
    Protocol {
        /// The protocol whose magic matched.
        protocol: ProtocolIndex,
        /// Its answer.
        error: ParseError,
    },
}

impl fmt::Display for CutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CutError::UnknownProtocol => f.write_str("input matches no registered protocol"),
            CutError::Protocol { protocol, error } => write!(f, "protocol {protocol}: {error}"),
        }
    }
}

impl std::error::Error for CutError {}

/// Cuts one message off `buf`, trying `*preferred` first and then every protocol of `registry`
/// in probing order; updates `*preferred` as described in the module doc. Consumes bytes only
/// when it returns [`CutResult::Message`] (or a protocol consumed a corrupt message before
/// failing).
pub fn cut_input_message(
    buf: &mut IOBuf,
    preferred: &mut Option<ProtocolIndex>,
    registry: &ProtocolRegistry,
    ctx: &ParseContext,
) -> CutResult {
    if buf.is_empty() {
        // Nothing to probe with: keep the preference (a protocol without magic says
        // TryOthers to empty input, which would hand the preference to another one).
        return CutResult::NotEnoughData;
    }
    let first = preferred.and_then(|i| registry.get(i).map(|p| (i, p)));
    if first.is_none() {
        // No preference, or an index from another registry: forget it.
        *preferred = None;
    }
    if let Some((index, protocol)) = first {
        match try_one(buf, index, protocol.as_ref(), ctx) {
            Some(result) => return result,
            None => *preferred = None,
        }
    }
    for &index in registry.probe_order() {
        if first.is_some_and(|(i, _)| i == index) {
            continue;
        }
        let Some(protocol) = registry.get(index) else {
            continue;
        };
        if let Some(result) = try_one(buf, index, protocol.as_ref(), ctx) {
            if !matches!(result, CutResult::Failed(_)) {
                *preferred = Some(index);
            }
            return result;
        }
    }
    CutResult::Failed(CutError::UnknownProtocol)
}

/// One parse attempt; `None` means `TryOthers`.
fn try_one(
    buf: &mut IOBuf,
    index: ProtocolIndex,
    protocol: &dyn Protocol,
    ctx: &ParseContext,
) -> Option<CutResult> {
    let before = buf.len();
    match protocol.parse(buf, ctx) {
        Ok(message) => Some(CutResult::Message {
            protocol: index,
            message,
        }),
        Err(ParseError::TryOthers) => {
            debug_assert_eq!(
                buf.len(),
                before,
                "{} consumed input on TryOthers",
                protocol.name()
            );
            None
        }
        Err(ParseError::NotEnoughData) => {
            debug_assert_eq!(
                buf.len(),
                before,
                "{} consumed input on NotEnoughData",
                protocol.name()
            );
            Some(CutResult::NotEnoughData)
        }
        Err(error) => Some(CutResult::Failed(CutError::Protocol {
            protocol: index,
            error,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fake::{FakeHttp, FakeMagic, FakeNshead};
    use crate::socket::SocketId;

    fn registry() -> (
        ProtocolRegistry,
        ProtocolIndex,
        ProtocolIndex,
        ProtocolIndex,
    ) {
        let mut r = ProtocolRegistry::new();
        // Registered in the "wrong" order on purpose: probing must still go by class.
        let nshead = r.register(Arc::new(FakeNshead)).unwrap();
        let http = r.register(Arc::new(FakeHttp)).unwrap();
        let magic = r.register(Arc::new(FakeMagic)).unwrap();
        (r, magic, http, nshead)
    }

    fn ctx() -> ParseContext {
        ParseContext::new(SocketId::new(1, 1))
    }

    #[test]
    fn probe_order_is_by_class() {
        let (r, magic, http, nshead) = registry();
        assert_eq!(r.probe_order(), &[magic, http, nshead]);
        assert_eq!(r.find("fake_http"), Some(http));
        assert_eq!(r.len(), 3);
        assert_eq!(
            r.clone_register_duplicate(),
            Err(RegistryError::DuplicateName("fake_http"))
        );
    }

    impl ProtocolRegistry {
        fn clone_register_duplicate(mut self) -> Result<ProtocolIndex, RegistryError> {
            self.register(Arc::new(FakeHttp))
        }
    }

    #[test]
    fn short_http_is_not_swallowed_by_magic_in_middle() {
        let (r, _, http, _) = registry();
        let mut pref = None;
        // Every prefix of a short request waits; none is claimed by nshead (which would wait
        // for 28 bytes) in a way that stops HTTP from completing it.
        let req = b"GET / HTTP/1.0\r\n\r\n";
        assert!(req.len() < 28);
        for n in 1..req.len() {
            let mut buf = IOBuf::from(&req[..n]);
            let mut p = None;
            assert!(matches!(
                cut_input_message(&mut buf, &mut p, &r, &ctx()),
                CutResult::NotEnoughData
            ));
            assert_eq!(buf.len(), n, "nothing consumed");
        }
        let mut buf = IOBuf::from(&req[..]);
        match cut_input_message(&mut buf, &mut pref, &r, &ctx()) {
            CutResult::Message { protocol, .. } => assert_eq!(protocol, http),
            other => panic!("expected http message, got {other:?}"),
        }
        assert_eq!(pref, Some(http));
        assert!(buf.is_empty());
        // Cutting again from the drained buffer waits and keeps the preference.
        assert!(matches!(
            cut_input_message(&mut buf, &mut pref, &r, &ctx()),
            CutResult::NotEnoughData
        ));
        assert_eq!(pref, Some(http));
    }

    #[test]
    fn short_magic_prefix_waits_and_becomes_preferred() {
        let (r, magic, _, _) = registry();
        let mut pref = None;
        let mut buf = IOBuf::from(&b"MA"[..]);
        assert!(matches!(
            cut_input_message(&mut buf, &mut pref, &r, &ctx()),
            CutResult::NotEnoughData
        ));
        // "MA" is also a possible nshead prefix, but the magic-at-front protocol claims it first.
        assert_eq!(pref, Some(magic));
        buf.append(b"GC\x03xyz");
        match cut_input_message(&mut buf, &mut pref, &r, &ctx()) {
            CutResult::Message { protocol, .. } => assert_eq!(protocol, magic),
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn nshead_is_found_last_and_preferred_switches() {
        let (r, _, http, nshead) = registry();
        let mut pref = Some(http);
        let frame = FakeNshead::frame(b"body");
        let mut buf = IOBuf::from(&frame[..20]);
        // HTTP (preferred) says TryOthers on binary; nshead waits for its magic.
        assert!(matches!(
            cut_input_message(&mut buf, &mut pref, &r, &ctx()),
            CutResult::NotEnoughData
        ));
        assert_eq!(pref, Some(nshead));
        buf.append(&frame[20..]);
        // At least 28 bytes: a preferred magic-in-middle protocol waits for its magic before it
        // can say no (as in brpc), so a protocol switch on one connection needs that much.
        buf.append(b"GET /longer/path HTTP/1.1\r\n\r\n");
        match cut_input_message(&mut buf, &mut pref, &r, &ctx()) {
            CutResult::Message { protocol, .. } => assert_eq!(protocol, nshead),
            other => panic!("{other:?}"),
        }
        // The peer switches to HTTP on the same connection: preferred nshead says TryOthers
        // (magic mismatch), HTTP takes over.
        match cut_input_message(&mut buf, &mut pref, &r, &ctx()) {
            CutResult::Message { protocol, .. } => assert_eq!(protocol, http),
            other => panic!("{other:?}"),
        }
        assert_eq!(pref, Some(http));
    }

    #[test]
    fn unknown_and_hard_errors_close() {
        let (r, magic, _, _) = registry();
        let mut pref = None;
        let mut buf = IOBuf::from(&[0u8; 40][..]);
        assert!(matches!(
            cut_input_message(&mut buf, &mut pref, &r, &ctx()),
            CutResult::Failed(CutError::UnknownProtocol)
        ));
        assert_eq!(buf.len(), 40);
        let mut buf = IOBuf::from(&b"MAGC\xff"[..]);
        match cut_input_message(&mut buf, &mut pref, &r, &ctx()) {
            CutResult::Failed(CutError::Protocol { protocol, error }) => {
                assert_eq!(protocol, magic);
                assert!(matches!(error, ParseError::TooBigData { .. }));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(pref, None, "a failing protocol does not become preferred");
    }

    #[test]
    fn baidu_std_with_fake_http_and_nshead() {
        use crate::policy::baidu_std::{BaiduStd, BaiduStdMessage};
        use crate::protocol::CallInfo;
        let mut r = ProtocolRegistry::new();
        let nshead = r.register(Arc::new(FakeNshead)).unwrap();
        let http = r.register(Arc::new(FakeHttp)).unwrap();
        let baidu = r.register(Arc::new(BaiduStd)).unwrap();
        assert_eq!(r.probe_order(), &[baidu, http, nshead]);

        let mut frame = IOBuf::new();
        let call = CallInfo {
            service: "example.EchoService",
            method: "Echo",
            ..CallInfo::default()
        };
        BaiduStd
            .pack_request(&mut frame, 42, &IOBuf::from(&b"\x0a\x00"[..]), &call, None)
            .unwrap();
        let frame = frame.to_vec();
        // Every short prefix waits (baidu_std claims "P", "PR", ...; never nshead or HTTP).
        for n in 1..frame.len() {
            let mut buf = IOBuf::from(&frame[..n]);
            let mut pref = None;
            assert!(
                matches!(
                    cut_input_message(&mut buf, &mut pref, &r, &ctx()),
                    CutResult::NotEnoughData
                ),
                "{n}"
            );
            assert_eq!(pref, Some(baidu), "{n}");
            assert_eq!(buf.len(), n);
        }
        // A whole frame followed by a short HTTP request on a fresh connection.
        let mut buf = IOBuf::from(&frame[..]);
        buf.append(b"GET / HTTP/1.0\r\n\r\n");
        let mut pref = None;
        match cut_input_message(&mut buf, &mut pref, &r, &ctx()) {
            CutResult::Message { protocol, message } => {
                assert_eq!(protocol, baidu);
                let m = message.downcast_ref::<BaiduStdMessage>().unwrap();
                assert_eq!(m.frame.meta.correlation_id, Some(42));
            }
            other => panic!("{other:?}"),
        }
        match cut_input_message(&mut buf, &mut pref, &r, &ctx()) {
            CutResult::Message { protocol, .. } => assert_eq!(protocol, http),
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn stale_preferred_index_is_ignored() {
        let (r, _, http, _) = registry();
        let mut pref = Some(ProtocolIndex(99));
        let mut buf = IOBuf::from(&b"GET / HTTP/1.0\r\n\r\n"[..]);
        assert!(matches!(
            cut_input_message(&mut buf, &mut pref, &r, &ctx()),
            CutResult::Message { .. }
        ));
        assert_eq!(pref, Some(http));
    }
}

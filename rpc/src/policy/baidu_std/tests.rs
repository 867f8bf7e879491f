//! baidu_std unit tests: parse failure modes, processing hooks, property tests. The golden
//! byte tests live in `rpc/tests/baidu_std_golden.rs`.

use super::frame::{parse_frame, write_frame, HEADER_LEN};
use super::*;
use crate::proto::brpc::policy::{RpcMeta, RpcRequestMeta, RpcResponseMeta};
use crate::protocol::ParseError;
use proptest::prelude::*;
use std::sync::Mutex;

const MAX: usize = crate::protocol::DEFAULT_MAX_BODY_SIZE;

fn sid() -> SocketId {
    SocketId::new(3, 9)
}

fn io(b: &[u8]) -> IOBuf {
    IOBuf::from(b)
}

fn request_frame(call: &CallInfo<'_>, correlation_id: i64, body: &[u8]) -> IOBuf {
    let mut out = IOBuf::new();
    BaiduStd
        .pack_request(&mut out, correlation_id, &io(body), call, None)
        .unwrap();
    out
}

fn echo_call(attachment: &IOBuf) -> CallInfo<'_> {
    CallInfo {
        service: "example.EchoService",
        method: "Echo",
        attachment,
        ..CallInfo::default()
    }
}

fn header(body_size: u32, meta_size: u32) -> Vec<u8> {
    let mut h = b"PRPC".to_vec();
    h.extend_from_slice(&body_size.to_be_bytes());
    h.extend_from_slice(&meta_size.to_be_bytes());
    h
}

#[test]
fn magic_prefixes_wait_and_others_move_on() {
    for p in [&b""[..], b"P", b"PR", b"PRP", b"PRPC", b"PRPC\0\0\0"] {
        let mut buf = IOBuf::from(p);
        assert_eq!(
            parse_frame(&mut buf, MAX),
            Err(ParseError::NotEnoughData),
            "{p:?}"
        );
        assert_eq!(buf.len(), p.len());
    }
    for p in [
        &b"G"[..],
        b"PX",
        b"PRPD",
        b"HULU\0\0\0\0\0\0\0\0",
        b"GET / HTTP/1.1\r\n",
    ] {
        let mut buf = IOBuf::from(p);
        assert_eq!(
            parse_frame(&mut buf, MAX),
            Err(ParseError::TryOthers),
            "{p:?}"
        );
        assert_eq!(buf.len(), p.len());
    }
}

#[test]
fn oversized_body_is_refused_from_the_header_alone() {
    let mut buf = IOBuf::from(&header(u32::MAX, 10)[..]);
    assert_eq!(
        parse_frame(&mut buf, MAX),
        Err(ParseError::TooBigData {
            declared: u64::from(u32::MAX),
            limit: MAX
        })
    );
    let mut buf = IOBuf::from(&header(101, 0)[..]);
    assert!(matches!(
        parse_frame(&mut buf, 100),
        Err(ParseError::TooBigData { .. })
    ));
    assert_eq!(buf.len(), HEADER_LEN);
}

#[test]
fn corrupt_frames_are_absolutely_wrong() {
    // meta_size > body_size.
    let mut f = header(2, 3);
    f.extend_from_slice(&[0, 0]);
    let mut buf = IOBuf::from(&f[..]);
    assert!(matches!(
        parse_frame(&mut buf, MAX),
        Err(ParseError::AbsolutelyWrong(_))
    ));

    // Undecodable meta: a field tag with wire type 7.
    let mut f = header(1, 1);
    f.push(0x0f);
    let mut buf = IOBuf::from(&f[..]);
    let err = parse_frame(&mut buf, MAX).unwrap_err();
    assert!(
        matches!(&err, ParseError::AbsolutelyWrong(m) if m.contains("decode")),
        "{err}"
    );

    // attachment_size (field 5) = 10 but the body has no bytes after the meta.
    let mut f = header(2, 2);
    f.extend_from_slice(&[0x28, 10]);
    let mut buf = IOBuf::from(&f[..]);
    let err = parse_frame(&mut buf, MAX).unwrap_err();
    assert!(matches!(&err, ParseError::AbsolutelyWrong(m) if m.contains("attachment_size=10")));

    // Negative attachment_size.
    let mut f = header(11, 11);
    f.extend_from_slice(&[
        0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ]);
    let mut buf = IOBuf::from(&f[..]);
    assert!(matches!(
        parse_frame(&mut buf, MAX),
        Err(ParseError::AbsolutelyWrong(_))
    ));
}

#[test]
fn two_frames_in_one_buffer() {
    let mut buf = request_frame(&echo_call(&io(b"a1")), 1, b"p1");
    buf.append_iobuf(&request_frame(&echo_call(&io(b"")), 2, b"p2"));
    let f1 = parse_frame(&mut buf, MAX).unwrap();
    let f2 = parse_frame(&mut buf, MAX).unwrap();
    assert!(buf.is_empty());
    assert_eq!(
        (
            f1.meta.correlation_id,
            &f1.payload.to_vec()[..],
            &f1.attachment.to_vec()[..]
        ),
        (Some(1), &b"p1"[..], &b"a1"[..])
    );
    assert_eq!(
        (
            f2.meta.correlation_id,
            &f2.payload.to_vec()[..],
            &f2.attachment.to_vec()[..]
        ),
        (Some(2), &b"p2"[..], &b""[..])
    );
    assert_eq!(f2.meta.attachment_size, None);
}

#[test]
fn write_frame_checks_attachment_size() {
    let meta = RpcMeta {
        attachment_size: Some(5),
        ..RpcMeta::default()
    };
    let mut out = IOBuf::new();
    assert!(write_frame(&mut out, &meta, &io(b""), &io(b"abc")).is_err());
    assert!(out.is_empty());
}

#[test]
fn pack_request_needs_a_method() {
    let mut out = IOBuf::new();
    let call = CallInfo {
        service: "s",
        ..CallInfo::default()
    };
    let err = BaiduStd
        .pack_request(&mut out, 1, &IOBuf::new(), &call, None)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NoMethod);
}

/// Collects what the processing hooks deliver.
#[derive(Default)]
struct Sink {
    requests: Mutex<Vec<ServerRequest>>,
    errors: Mutex<Vec<(SocketId, i64, RpcError)>>,
    responses: Mutex<Vec<ClientResponse>>,
}

impl RequestSink for Sink {
    fn on_request(&self, request: ServerRequest) {
        self.requests.lock().unwrap().push(request);
    }
    fn reply_error(&self, socket_id: SocketId, correlation_id: i64, error: RpcError) {
        self.errors
            .lock()
            .unwrap()
            .push((socket_id, correlation_id, error));
    }
}

impl ResponseSink for Sink {
    fn on_response(&self, response: ClientResponse) {
        self.responses.lock().unwrap().push(response);
    }
}

fn parse_msg(buf: &mut IOBuf) -> Box<dyn InputMessage> {
    BaiduStd.parse(buf, &ParseContext::new(sid())).unwrap()
}

/// An `EchoRequest { message }` body, hand-encoded (field 1, length-delimited).
struct Echo(&'static str);

impl MessageBody for Echo {
    fn encode_body(&self, out: &mut IOBuf) {
        out.push(0x0a);
        out.push(self.0.len() as u8);
        out.append(self.0.as_bytes());
    }
}

#[test]
fn request_round_trip_through_process_request() {
    let att = io(b"ATT");
    for ty in [
        CompressType::None,
        CompressType::Snappy,
        CompressType::Gzip,
        CompressType::Zlib,
    ] {
        let call = CallInfo {
            compress_type: ty,
            log_id: Some(11),
            timeout_ms: Some(250),
            trace_id: Some(1),
            span_id: Some(2),
            parent_span_id: Some(3),
            request_id: Some("req-1"),
            ..echo_call(&att)
        };
        let mut body = IOBuf::new();
        BaiduStd
            .serialize_request(&mut body, &Echo("hello"), &call)
            .unwrap();
        let mut buf = request_frame(&call, 77, &body.to_vec());
        let sink = Sink::default();
        BaiduStd
            .process_request(parse_msg(&mut buf), &sink)
            .unwrap();
        let reqs = sink.requests.lock().unwrap();
        let r = &reqs[0];
        assert_eq!(
            (r.service.as_str(), r.method.as_str()),
            ("example.EchoService", "Echo")
        );
        assert_eq!(&r.payload.to_vec()[..], b"\x0a\x05hello", "{ty}");
        assert_eq!(&r.attachment.to_vec()[..], b"ATT");
        assert_eq!(
            (r.correlation_id, r.log_id, r.timeout_ms),
            (77, Some(11), Some(250))
        );
        assert_eq!(
            (r.trace_id, r.span_id, r.parent_span_id),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!(r.request_id.as_deref(), Some("req-1"));
        assert_eq!(r.compress_type, ty);
        assert_eq!(r.socket_id, sid());
    }
}

#[test]
fn bad_requests_are_answered_with_erequest() {
    let no_att = IOBuf::new();
    let sink = Sink::default();
    // A response frame sent to a server.
    let mut buf = IOBuf::new();
    BaiduStd::pack_response(
        &mut buf,
        &ResponseFrame {
            correlation_id: 5,
            error: None,
            compress_type: CompressType::None,
            body: &IOBuf::new(),
            attachment: &IOBuf::new(),
        },
    )
    .unwrap();
    BaiduStd
        .process_request(parse_msg(&mut buf), &sink)
        .unwrap();
    // A request claiming gzip with a body that is not gzip.
    let call = CallInfo {
        compress_type: CompressType::Gzip,
        ..echo_call(&no_att)
    };
    let mut buf = request_frame(&call, 6, b"not gzip");
    BaiduStd
        .process_request(parse_msg(&mut buf), &sink)
        .unwrap();
    // Unknown compress_type (LZ4).
    let meta = RpcMeta {
        request: Some(RpcRequestMeta {
            service_name: "s".into(),
            method_name: "m".into(),
            ..RpcRequestMeta::default()
        }),
        compress_type: Some(4),
        correlation_id: Some(7),
        ..RpcMeta::default()
    };
    let mut buf = IOBuf::new();
    write_frame(&mut buf, &meta, &io(b"x"), &IOBuf::new()).unwrap();
    BaiduStd
        .process_request(parse_msg(&mut buf), &sink)
        .unwrap();

    let errors = sink.errors.lock().unwrap();
    assert_eq!(errors.len(), 3);
    for ((s, cid, e), want) in errors.iter().zip([5, 6, 7]) {
        assert_eq!((*s, *cid, e.code), (sid(), want, ErrorCode::Request), "{e}");
    }
    assert!(errors[2].2.text.contains("compress_type=4"));
    assert!(sink.requests.lock().unwrap().is_empty());
}

#[test]
fn responses_reach_the_channel() {
    let sink = Sink::default();
    let mut body = IOBuf::new();
    BaiduStd::serialize_response(&mut body, &Echo("pong"), CompressType::Snappy).unwrap();
    let mut buf = IOBuf::new();
    BaiduStd::pack_response(
        &mut buf,
        &ResponseFrame {
            correlation_id: 9,
            error: None,
            compress_type: CompressType::Snappy,
            body: &body,
            attachment: &io(b"back"),
        },
    )
    .unwrap();
    let err = RpcError::new(ErrorCode::Other(-1), "boom");
    BaiduStd::pack_response(
        &mut buf,
        &ResponseFrame {
            correlation_id: 10,
            error: Some(&err),
            compress_type: CompressType::None,
            body: &io(b"ignored"),
            attachment: &io(b"ignored"),
        },
    )
    .unwrap();
    BaiduStd
        .process_response(parse_msg(&mut buf), &sink)
        .unwrap();
    BaiduStd
        .process_response(parse_msg(&mut buf), &sink)
        .unwrap();
    assert!(buf.is_empty(), "a failed response carries no body");
    let got = sink.responses.lock().unwrap();
    assert_eq!(got[0].correlation_id, 9);
    let ok = got[0].result.as_ref().unwrap();
    assert_eq!(
        (&ok.payload.to_vec()[..], &ok.attachment.to_vec()[..]),
        (&b"\x0a\x04pong"[..], &b"back"[..])
    );
    assert_eq!(got[1].correlation_id, 10);
    assert_eq!(
        got[1].result,
        Err(RpcError::new(ErrorCode::Internal, "boom")),
        "-1 is reported as EINTERNAL"
    );
}

struct Token(&'static [u8]);

impl Authenticator for Token {
    fn generate_credential(&self) -> Result<Vec<u8>, RpcError> {
        Ok(self.0.to_vec())
    }
    fn verify_credential(
        &self,
        credential: &[u8],
        _peer: Option<std::net::SocketAddr>,
    ) -> Result<(), RpcError> {
        if credential == self.0 {
            Ok(())
        } else {
            Err(RpcError::new(ErrorCode::RpcAuth, "wrong token"))
        }
    }
}

#[test]
fn credentials_travel_in_the_meta() {
    let mut buf = IOBuf::new();
    BaiduStd
        .pack_request(
            &mut buf,
            1,
            &IOBuf::new(),
            &echo_call(&io(b"")),
            Some(&Token(b"secret")),
        )
        .unwrap();
    let msg = parse_msg(&mut buf);
    assert_eq!(BaiduStd.verify(msg.as_ref(), &Token(b"secret")), Ok(()));
    assert_eq!(
        BaiduStd
            .verify(msg.as_ref(), &Token(b"other"))
            .unwrap_err()
            .code,
        ErrorCode::RpcAuth
    );
    let mut buf = request_frame(&echo_call(&io(b"")), 1, b"");
    let msg = parse_msg(&mut buf);
    assert_eq!(
        BaiduStd
            .verify(msg.as_ref(), &Token(b"secret"))
            .unwrap_err()
            .code,
        ErrorCode::RpcAuth
    );
}

#[test]
fn protocol_facts() {
    assert_eq!(BaiduStd.name(), "baidu_std");
    assert_eq!(BaiduStd.class(), ProtocolClass::MagicAtFront);
    assert_eq!(BaiduStd.supported_connection_types(), ConnectionTypes::ALL);
    assert_eq!(
        BaiduStd.method_name("example.EchoService", "Echo"),
        "example.EchoService.Echo"
    );
    assert_eq!(
        BaiduStd.parse_server_address("127.0.0.1:8000").unwrap(),
        "127.0.0.1:8000".parse().unwrap()
    );
    assert!(BaiduStd.parse_server_address("no port").is_err());
}

fn arb_call() -> impl Strategy<Value = (String, String, i64, Option<i64>, Vec<u8>, Vec<u8>)> {
    (
        "[a-zA-Z0-9_.]{0,40}",
        "[a-zA-Z0-9_]{1,20}",
        any::<i64>(),
        proptest::option::of(any::<i64>()),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
}

/// `ours`, a frame written from a borrowed meta, has exactly the bytes prost writes for `meta`
/// (with its attachment size set from `att`), and parses back to that meta.
fn encodes_like_prost(
    mut ours: IOBuf,
    mut meta: RpcMeta,
    body: &IOBuf,
    att: &IOBuf,
) -> Result<(), TestCaseError> {
    frame::set_attachment_size(&mut meta, att).unwrap();
    let mut theirs = IOBuf::new();
    write_frame(&mut theirs, &meta, body, att).unwrap();
    prop_assert_eq!(ours.to_vec(), theirs.to_vec());
    let parsed = parse_frame(&mut ours, MAX).unwrap();
    prop_assert_eq!(parsed.meta, meta);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any request frame parses back to what was packed, and every proper prefix of it waits.
    #[test]
    fn random_frames_round_trip((service, method, cid, log_id, payload, attachment) in arb_call()) {
        let att = io(&attachment);
        let call = CallInfo { service: &service, method: &method, log_id, attachment: &att, ..CallInfo::default() };
        let bytes = request_frame(&call, cid, &payload).to_vec();
        for cut in [0, 1, 3, 4, 11, 12, bytes.len() / 2, bytes.len() - 1] {
            let mut prefix = IOBuf::from(&bytes[..cut.min(bytes.len() - 1)]);
            let before = prefix.len();
            prop_assert_eq!(parse_frame(&mut prefix, MAX), Err(ParseError::NotEnoughData));
            prop_assert_eq!(prefix.len(), before);
        }
        let mut buf = io(&bytes);
        let f = parse_frame(&mut buf, MAX).unwrap();
        prop_assert!(buf.is_empty());
        let req = f.meta.request.unwrap();
        prop_assert_eq!(req.service_name, service);
        prop_assert_eq!(req.method_name, method);
        prop_assert_eq!(req.log_id, log_id);
        prop_assert_eq!(f.meta.correlation_id, Some(cid));
        prop_assert_eq!(&f.payload.to_vec(), &payload);
        prop_assert_eq!(&f.attachment.to_vec(), &attachment);
    }

    /// The borrowed request-meta encoder writes exactly the bytes prost writes for the same
    /// `RpcMeta` (every field, negative varints, empty names, credentials, attachments).
    #[test]
    fn borrowed_request_meta_encodes_like_prost(
        (service, method, cid, log_id, payload, attachment) in arb_call(),
        ids in proptest::option::of((any::<i64>(), any::<i64>(), any::<i64>())),
        request_id in proptest::option::of("[a-z0-9-]{0,30}"),
        timeout_ms in proptest::option::of(any::<i32>()),
        compress in proptest::option::of(any::<i32>()),
        credential in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..700)),
    ) {
        let meta_ref = frame::RequestMetaRef {
            service_name: &service,
            method_name: &method,
            log_id,
            trace_id: ids.map(|i| i.0),
            span_id: ids.map(|i| i.1),
            parent_span_id: ids.map(|i| i.2),
            request_id: request_id.as_deref(),
            timeout_ms,
            compress_type: compress,
            correlation_id: Some(cid),
            attachment_size: None,
            authentication_data: credential.as_deref(),
        };
        let att = io(&attachment);
        let body = io(&payload);
        let mut ours = IOBuf::new();
        frame::write_request_frame(&mut ours, &meta_ref, &body, &att).unwrap();
        let meta = RpcMeta {
            request: Some(RpcRequestMeta {
                service_name: service.clone(),
                method_name: method.clone(),
                log_id,
                trace_id: ids.map(|i| i.0),
                span_id: ids.map(|i| i.1),
                parent_span_id: ids.map(|i| i.2),
                request_id: request_id.clone(),
                timeout_ms,
            }),
            compress_type: compress,
            correlation_id: Some(cid),
            authentication_data: credential.clone().map(Into::into),
            ..RpcMeta::default()
        };
        encodes_like_prost(ours, meta, &body, &att)?;
    }

    /// The borrowed response-meta encoder writes exactly the bytes prost writes for the same
    /// `RpcMeta` (codes of any sign, error texts, attachments), and they parse back to it.
    #[test]
    fn borrowed_response_meta_encodes_like_prost(
        cid in any::<i64>(),
        error_code in proptest::option::of(any::<i32>()),
        error_text in proptest::option::of("[ -~]{0,40}"),
        compress in proptest::option::of(any::<i32>()),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        attachment in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let meta_ref = frame::ResponseMetaRef {
            error_code,
            error_text: error_text.as_deref(),
            compress_type: compress,
            correlation_id: Some(cid),
            attachment_size: None,
        };
        let att = io(&attachment);
        let body = io(&payload);
        let mut ours = IOBuf::new();
        frame::write_response_frame(&mut ours, &meta_ref, &body, &att).unwrap();
        let meta = RpcMeta {
            response: Some(RpcResponseMeta {
                error_code,
                error_text: error_text.clone(),
            }),
            compress_type: compress,
            correlation_id: Some(cid),
            ..RpcMeta::default()
        };
        encodes_like_prost(ours, meta, &body, &att)?;
    }

    /// Garbage never panics, and input that does not start like "PRPC" is never a message.
    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), limit in 0usize..1000) {
        let mut buf = IOBuf::from(&data[..]);
        let r = parse_frame(&mut buf, limit);
        let n = data.len().min(4);
        if data[..n] != b"PRPC"[..n] {
            prop_assert_eq!(r, Err(ParseError::TryOthers));
        }
    }

    /// Garbage after a valid header never panics, and consumes input only on success.
    #[test]
    fn garbage_after_magic_never_panics(
        body_size in 0u32..300, meta_size in 0u32..300,
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut f = header(body_size, meta_size);
        f.extend_from_slice(&rest);
        let mut buf = IOBuf::from(&f[..]);
        match parse_frame(&mut buf, MAX) {
            Ok(frame) => {
                prop_assert_eq!(buf.len(), f.len() - HEADER_LEN - body_size as usize);
                prop_assert!(frame.payload.len() + frame.attachment.len() <= body_size as usize);
            }
            Err(_) => prop_assert_eq!(buf.len(), f.len()),
        }
    }
}

/// The same bytes spread over many pieces (as a socket's read buffer is after several reads).
fn chained(bytes: &[u8], piece: usize) -> IOBuf {
    let mut b = IOBuf::new();
    for part in bytes.chunks(piece.max(1)) {
        b.append_owned(IOBuf::from(part));
    }
    b
}

#[test]
fn frames_spanning_many_pieces_parse_and_share_blocks() {
    let att = io(&[7u8; 1000]);
    let call = CallInfo {
        log_id: Some(1 << 40),
        ..echo_call(&att)
    };
    let bytes = request_frame(&call, -5, &[9u8; 3000]).to_vec();
    for piece in [1, 7, 13, 64, 4096] {
        let mut buf = chained(&bytes, piece);
        let f = parse_frame(&mut buf, MAX).unwrap();
        assert!(buf.is_empty(), "piece={piece}");
        assert_eq!(f.meta.correlation_id, Some(-5));
        assert_eq!(f.meta.request.as_ref().unwrap().log_id, Some(1 << 40));
        assert_eq!(f.payload, vec![9u8; 3000]);
        assert_eq!(f.attachment, vec![7u8; 1000]);
    }
    // Cutting shares the read buffer's blocks: no byte of the body is copied.
    let mut buf = io(&bytes);
    let input_block = buf.pieces().next().unwrap().block_id();
    let f = parse_frame(&mut buf, MAX).unwrap();
    assert_eq!(f.payload.pieces().next().unwrap().block_id(), input_block);
    assert_eq!(
        f.attachment.pieces().next().unwrap().block_id(),
        input_block
    );
}

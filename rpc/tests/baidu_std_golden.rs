//! Golden bytes of baidu_std frames, written by hand from the wire spec (protobuf tags and
//! varints spelled out below, not produced by prost), so that Spindle's encoder is checked
//! against what brpc C++ puts on the wire, and the parser reads those bytes back.
//!
//! Protobuf reminders: a field key is `(field_number << 3) | wire_type`; wire type 0 is a
//! varint, 2 is length-delimited. Varints are little-endian base-128 with the high bit as
//! "more": 300 = 0xac 0x02, 1002 = 0xea 0x07.

use spindle_rpc::compress::CompressType;
use spindle_rpc::errors::{ErrorCode, RpcError};
use spindle_rpc::policy::baidu_std::{frame, BaiduStd, ResponseFrame};
use spindle_rpc::protocol::{CallInfo, IOBuf, Protocol, DEFAULT_MAX_BODY_SIZE};

/// `EchoRequest { message: "hi" }`: field 1, length-delimited, 2 bytes.
const ECHO_HI: &[u8] = &[0x0a, 0x02, b'h', b'i'];

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn request_golden() -> Vec<u8> {
    // RpcRequestMeta: 29 bytes.
    let request_meta = cat(&[
        &[0x0a, 19], // 1: service_name, 19 bytes
        b"example.EchoService",
        &[0x12, 4], // 2: method_name, 4 bytes
        b"Echo",
        &[0x18, 7], // 3: log_id = 7
    ]);
    assert_eq!(request_meta.len(), 29);
    // RpcMeta: 38 bytes.
    let meta = cat(&[
        &[0x0a, 29], // 1: request, 29 bytes
        &request_meta,
        &[0x18, 0],          // 3: compress_type = 0 (brpc always writes it)
        &[0x20, 0xac, 0x02], // 4: correlation_id = 300
        &[0x28, 3],          // 5: attachment_size = 3
    ]);
    assert_eq!(meta.len(), 38);
    cat(&[
        b"PRPC",
        &[0, 0, 0, 45], // body_size = 38 + 4 + 3
        &[0, 0, 0, 38], // meta_size
        &meta,
        ECHO_HI, // payload
        b"att",  // attachment
    ])
}

#[test]
fn request_frame_matches_golden_bytes() {
    let attachment = IOBuf::from(&b"att"[..]);
    let call = CallInfo {
        service: "example.EchoService",
        method: "Echo",
        log_id: Some(7),
        attachment: &attachment,
        ..CallInfo::default()
    };
    let mut out = IOBuf::new();
    BaiduStd
        .pack_request(&mut out, 300, &IOBuf::from(ECHO_HI), &call, None)
        .unwrap();
    assert_eq!(out.to_vec(), request_golden());
}

#[test]
fn request_golden_bytes_parse_back() {
    let mut buf = IOBuf::from(&request_golden()[..]);
    let f = frame::parse_frame(&mut buf, DEFAULT_MAX_BODY_SIZE).unwrap();
    assert!(buf.is_empty());
    let req = f.meta.request.as_ref().unwrap();
    assert_eq!(req.service_name, "example.EchoService");
    assert_eq!(req.method_name, "Echo");
    assert_eq!(req.log_id, Some(7));
    assert_eq!(f.meta.correlation_id, Some(300));
    assert_eq!(f.meta.compress_type, Some(0));
    assert_eq!(f.meta.attachment_size, Some(3));
    assert_eq!(f.payload, ECHO_HI);
    assert_eq!(f.attachment, b"att");
    // Re-encoding the parsed meta gives the same bytes.
    let mut again = IOBuf::new();
    frame::write_frame(&mut again, &f.meta, &f.payload, &f.attachment).unwrap();
    assert_eq!(again.to_vec(), request_golden());
}

fn error_response_golden() -> Vec<u8> {
    // RpcResponseMeta: 13 bytes.
    let response_meta = cat(&[
        &[0x08, 0xea, 0x07], // 1: error_code = 1002 (ENOMETHOD)
        &[0x12, 8],          // 2: error_text, 8 bytes
        b"no Echo2",
    ]);
    // RpcMeta: 20 bytes.
    let meta = cat(&[
        &[0x12, 13], // 2: response, 13 bytes
        &response_meta,
        &[0x18, 0],          // 3: compress_type = 0
        &[0x20, 0xac, 0x02], // 4: correlation_id = 300
    ]);
    assert_eq!(meta.len(), 20);
    cat(&[b"PRPC", &[0, 0, 0, 20], &[0, 0, 0, 20], &meta])
}

fn ok_response_golden() -> Vec<u8> {
    let meta = cat(&[
        &[0x12, 2, 0x08, 0], // 2: response { error_code = 0 }
        &[0x18, 1],          // 3: compress_type = 1 (snappy)
        &[0x20, 0xac, 0x02], // 4: correlation_id = 300
        &[0x28, 3],          // 5: attachment_size = 3
    ]);
    assert_eq!(meta.len(), 11);
    // Raw snappy of ECHO_HI: varint length 4, literal tag (4-1)<<2, the 4 bytes.
    let payload = cat(&[&[4, 0x0c], ECHO_HI]);
    cat(&[
        b"PRPC",
        &[0, 0, 0, 20],
        &[0, 0, 0, 11],
        &meta,
        &payload,
        b"att",
    ])
}

#[test]
fn error_response_matches_golden_bytes() {
    let err = RpcError::new(ErrorCode::NoMethod, "no Echo2");
    let mut out = IOBuf::new();
    BaiduStd::pack_response(
        &mut out,
        &ResponseFrame {
            correlation_id: 300,
            error: Some(&err),
            compress_type: CompressType::None,
            body: &IOBuf::new(),
            attachment: &IOBuf::new(),
        },
    )
    .unwrap();
    assert_eq!(out.to_vec(), error_response_golden());

    let mut buf = IOBuf::from(&error_response_golden()[..]);
    let f = frame::parse_frame(&mut buf, DEFAULT_MAX_BODY_SIZE).unwrap();
    let r = f.meta.response.unwrap();
    assert_eq!(
        ErrorCode::from_code(r.error_code.unwrap()),
        ErrorCode::NoMethod
    );
    assert_eq!(r.error_text.as_deref(), Some("no Echo2"));
    assert!(f.payload.is_empty() && f.attachment.is_empty());
}

#[test]
fn ok_response_matches_golden_bytes() {
    let mut body = IOBuf::new();
    spindle_rpc::compress::compress_iobuf(CompressType::Snappy, &IOBuf::from(ECHO_HI), &mut body)
        .unwrap();
    let mut out = IOBuf::new();
    BaiduStd::pack_response(
        &mut out,
        &ResponseFrame {
            correlation_id: 300,
            error: None,
            compress_type: CompressType::Snappy,
            body: &body,
            attachment: &IOBuf::from(&b"att"[..]),
        },
    )
    .unwrap();
    assert_eq!(out.to_vec(), ok_response_golden());

    let mut buf = IOBuf::from(&ok_response_golden()[..]);
    let f = frame::parse_frame(&mut buf, DEFAULT_MAX_BODY_SIZE).unwrap();
    assert_eq!(f.meta.response.unwrap().error_code, Some(0));
    let plain =
        spindle_rpc::compress::decompress(CompressType::Snappy, &f.payload.to_vec(), 64).unwrap();
    assert_eq!(&plain[..], ECHO_HI);
    assert_eq!(f.attachment, b"att");
}

//! Decoding a received `RpcMeta`: a direct decoder for the usual metas, prost for the rest.
//!
//! Nearly every meta on the wire is one of two shapes: a request (`request` with its names and
//! ids, `correlation_id`, maybe `compress_type`, `attachment_size`, `authentication_data`) or a
//! response (`response` with a code and text, `correlation_id`, maybe `compress_type` and
//! `attachment_size`). [`decode_usual`] reads exactly those fields with a loop over the bytes,
//! which costs a fraction of prost's generic merge (per field: a key decode, a wire-type check
//! and a dispatch through several layers). Anything else — another field (chunk info, stream
//! settings, user fields, checksums), an unknown field, a wire type that does not match, a
//! malformed varint or length, invalid UTF-8 — makes it give up, and [`decode`] hands the
//! bytes to prost from a fresh meta. So the result, value or error, is always prost's
//! (a proptest checks it against `RpcMeta::decode` on encoded metas and on random bytes).

use crate::proto::brpc::policy::{RpcMeta, RpcRequestMeta, RpcResponseMeta};
use prost::Message;

/// Wire type of varints.
const VARINT: u64 = 0;
/// Wire type of length-delimited fields (strings, bytes, messages).
const LEN: u64 = 2;

/// Decodes `bytes` into `meta`, which must be `RpcMeta::default()`: directly when the meta has
/// the usual shape, else with prost. On error `meta` holds whatever prost left in it.
pub(crate) fn decode(bytes: &[u8], meta: &mut RpcMeta) -> Result<(), prost::DecodeError> {
    if decode_usual(bytes, meta) {
        return Ok(());
    }
    *meta = RpcMeta::default();
    meta.merge(bytes)
}

/// Decodes a meta of the usual shape (module doc) into `meta`; `false` if `bytes` holds
/// anything else, leaving `meta` partly filled.
pub(crate) fn decode_usual(mut bytes: &[u8], meta: &mut RpcMeta) -> bool {
    usual_meta(&mut bytes, meta).is_some()
}

fn usual_meta(b: &mut &[u8], meta: &mut RpcMeta) -> Option<()> {
    while !b.is_empty() {
        let key = varint(b)?;
        match (key >> 3, key & 7) {
            (1, LEN) => usual_request(len_delimited(b)?, meta.request.get_or_insert_default())?,
            (2, LEN) => usual_response(len_delimited(b)?, meta.response.get_or_insert_default())?,
            // prost truncates `int32` varints the same way.
            (3, VARINT) => meta.compress_type = Some(varint(b)? as i32),
            (4, VARINT) => meta.correlation_id = Some(varint(b)? as i64),
            (5, VARINT) => meta.attachment_size = Some(varint(b)? as i32),
            (7, LEN) => {
                let data = len_delimited(b)?;
                meta.authentication_data = Some(prost::bytes::Bytes::copy_from_slice(data));
            }
            _ => return None,
        }
    }
    Some(())
}

fn usual_request(mut b: &[u8], r: &mut RpcRequestMeta) -> Option<()> {
    let b = &mut b;
    while !b.is_empty() {
        let key = varint(b)?;
        match (key >> 3, key & 7) {
            (1, LEN) => string(b, &mut r.service_name)?,
            (2, LEN) => string(b, &mut r.method_name)?,
            (3, VARINT) => r.log_id = Some(varint(b)? as i64),
            (4, VARINT) => r.trace_id = Some(varint(b)? as i64),
            (5, VARINT) => r.span_id = Some(varint(b)? as i64),
            (6, VARINT) => r.parent_span_id = Some(varint(b)? as i64),
            (7, LEN) => string(b, r.request_id.get_or_insert_default())?,
            (8, VARINT) => r.timeout_ms = Some(varint(b)? as i32),
            _ => return None,
        }
    }
    Some(())
}

fn usual_response(mut b: &[u8], r: &mut RpcResponseMeta) -> Option<()> {
    let b = &mut b;
    while !b.is_empty() {
        let key = varint(b)?;
        match (key >> 3, key & 7) {
            (1, VARINT) => r.error_code = Some(varint(b)? as i32),
            (2, LEN) => string(b, r.error_text.get_or_insert_default())?,
            _ => return None,
        }
    }
    Some(())
}

/// A varint at the front of `b`, which moves past it. Keys and lengths nearly always take one
/// byte.
#[inline]
fn varint(b: &mut &[u8]) -> Option<u64> {
    match b.first() {
        Some(&byte) if byte < 0x80 => {
            *b = &b[1..];
            Some(u64::from(byte))
        }
        _ => varint_long(b),
    }
}

/// A varint of any length, decoded by prost (its unrolled decoder, and its limits: at most 10
/// bytes, the tenth at most 1).
#[inline(never)]
fn varint_long(b: &mut &[u8]) -> Option<u64> {
    prost::encoding::decode_varint(b).ok()
}

/// A length-delimited field's bytes at the front of `b`, which moves past them.
fn len_delimited<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = usize::try_from(varint(b)?).ok()?;
    if n > b.len() {
        return None;
    }
    let (field, rest) = b.split_at(n);
    *b = rest;
    Some(field)
}

/// A string field (replacing `into`, as prost does); `None` for invalid UTF-8.
fn string(b: &mut &[u8], into: &mut String) -> Option<()> {
    let s = std::str::from_utf8(len_delimited(b)?).ok()?;
    into.clear();
    into.push_str(s);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::brpc::ChunkInfo;
    use proptest::prelude::*;

    /// Ours (direct or through prost) against prost alone.
    fn same_as_prost(bytes: &[u8]) -> Result<(), TestCaseError> {
        let mut ours = RpcMeta::default();
        let r = decode(bytes, &mut ours);
        match RpcMeta::decode(bytes) {
            Ok(theirs) => {
                prop_assert!(r.is_ok(), "prost decodes, we fail: {r:?}");
                prop_assert_eq!(ours, theirs);
            }
            Err(_) => prop_assert!(r.is_err(), "prost fails, we decode"),
        }
        Ok(())
    }

    fn arb_request() -> impl Strategy<Value = RpcRequestMeta> {
        (
            ("\\PC{0,20}", "[a-zA-Z_]{0,12}"),
            proptest::option::of(any::<i64>()),
            proptest::option::of((any::<i64>(), any::<i64>(), any::<i64>())),
            proptest::option::of("[a-z0-9-]{0,20}"),
            proptest::option::of(any::<i32>()),
        )
            .prop_map(|((service, method), log_id, ids, request_id, timeout_ms)| {
                RpcRequestMeta {
                    service_name: service,
                    method_name: method,
                    log_id,
                    trace_id: ids.map(|i| i.0),
                    span_id: ids.map(|i| i.1),
                    parent_span_id: ids.map(|i| i.2),
                    request_id,
                    timeout_ms,
                }
            })
    }

    fn arb_meta() -> impl Strategy<Value = RpcMeta> {
        (
            proptest::option::of(arb_request()),
            proptest::option::of((proptest::option::of(any::<i32>()), "\\PC{0,20}")),
            proptest::option::of(any::<i32>()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i32>()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            // Fields the direct decoder leaves to prost.
            proptest::option::of((any::<i64>(), any::<i64>())),
            proptest::option::of(("[a-z]{1,8}", "[a-z]{0,8}")),
        )
            .prop_map(
                |(request, response, compress, cid, attachment, auth, chunk, user)| RpcMeta {
                    request,
                    response: response.map(|(code, text)| RpcResponseMeta {
                        error_code: code,
                        error_text: Some(text),
                    }),
                    compress_type: compress,
                    correlation_id: cid,
                    attachment_size: attachment,
                    authentication_data: auth.map(Into::into),
                    chunk_info: chunk.map(|(stream_id, chunk_id)| ChunkInfo {
                        stream_id,
                        chunk_id,
                    }),
                    user_fields: user.into_iter().collect(),
                    ..RpcMeta::default()
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every encoded meta decodes to what prost decodes; the usual shapes take the direct
        /// path.
        #[test]
        fn encoded_metas_decode_as_prost_decodes(meta in arb_meta()) {
            let bytes = meta.encode_to_vec();
            same_as_prost(&bytes)?;
            let usual = meta.chunk_info.is_none() && meta.user_fields.is_empty();
            let mut direct = RpcMeta::default();
            prop_assert_eq!(decode_usual(&bytes, &mut direct), usual);
        }

        /// Random bytes, and encoded metas with a byte changed or cut short: the same value or
        /// the same failure as prost.
        #[test]
        fn damaged_metas_decode_as_prost_decodes(
            meta in arb_meta(),
            garbage in proptest::collection::vec(any::<u8>(), 0..80),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            same_as_prost(&garbage)?;
            let mut bytes = meta.encode_to_vec();
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = byte;
                same_as_prost(&bytes)?;
                same_as_prost(&bytes[..i])?;
            }
        }
    }

    #[test]
    fn repeated_fields_merge_like_prost() {
        // `request` twice (messages merge, the later scalar wins) and a later correlation id.
        let first = RpcMeta {
            request: Some(RpcRequestMeta {
                service_name: "a.S".into(),
                method_name: "M".into(),
                log_id: Some(7),
                ..RpcRequestMeta::default()
            }),
            correlation_id: Some(1),
            ..RpcMeta::default()
        };
        let second = RpcMeta {
            request: Some(RpcRequestMeta {
                service_name: "b.S".into(),
                timeout_ms: Some(-5),
                ..RpcRequestMeta::default()
            }),
            correlation_id: Some(2),
            ..RpcMeta::default()
        };
        let mut bytes = first.encode_to_vec();
        bytes.extend(second.encode_to_vec());
        let mut ours = RpcMeta::default();
        assert!(decode_usual(&bytes, &mut ours));
        assert_eq!(ours, RpcMeta::decode(&bytes[..]).unwrap());
        let r = ours.request.unwrap();
        assert_eq!(
            (r.service_name.as_str(), r.log_id, r.timeout_ms),
            ("b.S", Some(7), Some(-5))
        );
    }
}

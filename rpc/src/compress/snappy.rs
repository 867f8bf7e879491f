//! Snappy, raw block format (no framing stream), which is what brpc's snappy handler writes:
//! a varint of the uncompressed length followed by literal/copy elements.

use super::{CompressError, CompressType};

pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
    let start = out.len();
    out.resize(start + snap::raw::max_compress_len(input.len()), 0);
    match snap::raw::Encoder::new().compress(input, &mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(CompressError::Corrupt {
                ty: CompressType::Snappy,
                reason: e.to_string(),
            })
        }
    }
}

pub(super) fn decompress(input: &[u8], max_len: usize) -> Result<Vec<u8>, CompressError> {
    let corrupt = |e: snap::Error| CompressError::Corrupt {
        ty: CompressType::Snappy,
        reason: e.to_string(),
    };
    // The block declares its uncompressed length up front: check it before allocating.
    let len = snap::raw::decompress_len(input).map_err(corrupt)?;
    if len > max_len {
        return Err(CompressError::TooLarge {
            ty: CompressType::Snappy,
            limit: max_len,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(input)
        .map_err(corrupt)
}

//! Deflate with the gzip (RFC 1952) or zlib (RFC 1950) wrapper, as brpc's gzip handler writes
//! with protobuf's `GzipOutputStream` in GZIP / ZLIB format. Default compression level.

use super::{CompressError, CompressType};
use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use std::io::{Read, Write};

pub(super) fn compress(
    ty: CompressType,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressError> {
    let corrupt = |e: std::io::Error| CompressError::Corrupt {
        ty,
        reason: e.to_string(),
    };
    // Writing into a Vec cannot fail for I/O reasons; errors are mapped, never unwrapped.
    if ty == CompressType::Gzip {
        let mut enc = GzEncoder::new(out, Compression::default());
        enc.write_all(input).map_err(corrupt)?;
        enc.finish().map_err(corrupt)?;
    } else {
        let mut enc = ZlibEncoder::new(out, Compression::default());
        enc.write_all(input).map_err(corrupt)?;
        enc.finish().map_err(corrupt)?;
    }
    Ok(())
}

pub(super) fn decompress(
    ty: CompressType,
    input: &[u8],
    max_len: usize,
) -> Result<Vec<u8>, CompressError> {
    let mut out = Vec::new();
    // Read at most one byte more than allowed: seeing it means the payload is too large.
    let cap = (max_len as u64).saturating_add(1);
    let res = if ty == CompressType::Gzip {
        GzDecoder::new(input).take(cap).read_to_end(&mut out)
    } else {
        ZlibDecoder::new(input).take(cap).read_to_end(&mut out)
    };
    res.map_err(|e| CompressError::Corrupt {
        ty,
        reason: e.to_string(),
    })?;
    if out.len() > max_len {
        return Err(CompressError::TooLarge { ty, limit: max_len });
    }
    Ok(out)
}

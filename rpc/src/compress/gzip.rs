//! Deflate with the gzip (RFC 1952) or zlib (RFC 1950) wrapper, as brpc's gzip handler writes
//! with protobuf's `GzipOutputStream` in GZIP / ZLIB format. Default compression level.

use super::{CompressError, CompressType};
use bytes::{Buf, BufMut};
use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use spindle_iobuf::IOBuf;
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

/// Streams `input`'s pieces through the encoder into `out`; nothing is gathered.
pub(super) fn compress_iobuf(
    ty: CompressType,
    input: &IOBuf,
    out: &mut IOBuf,
) -> Result<(), CompressError> {
    let corrupt = |e: std::io::Error| CompressError::Corrupt {
        ty,
        reason: e.to_string(),
    };
    let mut encoded = IOBuf::new();
    let mut reader = input.cursor().reader();
    if ty == CompressType::Gzip {
        let mut enc = GzEncoder::new((&mut encoded).writer(), Compression::default());
        std::io::copy(&mut reader, &mut enc).map_err(corrupt)?;
        enc.finish().map_err(corrupt)?;
    } else {
        let mut enc = ZlibEncoder::new((&mut encoded).writer(), Compression::default());
        std::io::copy(&mut reader, &mut enc).map_err(corrupt)?;
        enc.finish().map_err(corrupt)?;
    }
    // Only append once complete, so a failure leaves `out` unchanged.
    out.append_owned(encoded);
    Ok(())
}

/// Streams `input`'s pieces through the decoder into a new IOBuf, stopping one byte past
/// `max_len`.
pub(super) fn decompress_iobuf(
    ty: CompressType,
    input: &IOBuf,
    max_len: usize,
) -> Result<IOBuf, CompressError> {
    let mut out = IOBuf::new();
    let cap = (max_len as u64).saturating_add(1);
    let reader = input.cursor().reader();
    let mut writer = (&mut out).writer();
    let res = if ty == CompressType::Gzip {
        std::io::copy(&mut GzDecoder::new(reader).take(cap), &mut writer)
    } else {
        std::io::copy(&mut ZlibDecoder::new(reader).take(cap), &mut writer)
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

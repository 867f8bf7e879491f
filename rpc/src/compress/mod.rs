//! Payload compression of baidu_std (and other protocols that carry brpc's `compress_type`):
//! 1 snappy (raw block format, as brpc's `policy/snappy_compress`), 2 gzip, 3 zlib (deflate with
//! the gzip / zlib wrappers, as brpc's `policy/gzip_compress`).
//!
//! Decompression is bounded: the caller passes `max_len` (the server's `max_body_size`) and a
//! payload that would inflate beyond it fails with [`CompressError::TooLarge`] after at most
//! `max_len + 1` bytes were produced, so a small "zip bomb" cannot exhaust memory. Nothing is
//! allocated from a size the sender declared before checking it against `max_len`.
//!
//! [`compress`] / [`decompress`] work on byte slices; [`compress_iobuf`] / [`decompress_iobuf`]
//! are what protocols use: gzip and zlib stream through the IOBuf's pieces without gathering
//! them, snappy (which needs one contiguous block) gathers only when the input spans blocks.

mod gzip;
mod snappy;

use spindle_iobuf::IOBuf;
use std::borrow::Cow;
use std::fmt;

/// Compression of a message payload (`RpcMeta.compress_type`; brpc `CompressType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompressType {
    /// Not compressed (0).
    #[default]
    None,
    /// Snappy raw format (1).
    Snappy,
    /// Deflate in a gzip wrapper (2).
    Gzip,
    /// Deflate in a zlib wrapper (3).
    Zlib,
}

impl CompressType {
    /// The number on the wire.
    pub const fn code(self) -> i32 {
        match self {
            CompressType::None => 0,
            CompressType::Snappy => 1,
            CompressType::Gzip => 2,
            CompressType::Zlib => 3,
        }
    }

    /// The type for a wire number; `UnknownType` for anything else (brpc's LZ4, 4, is not
    /// supported).
    pub fn from_code(code: i32) -> Result<CompressType, CompressError> {
        match code {
            0 => Ok(CompressType::None),
            1 => Ok(CompressType::Snappy),
            2 => Ok(CompressType::Gzip),
            3 => Ok(CompressType::Zlib),
            n => Err(CompressError::UnknownType(n)),
        }
    }

    /// Lower-case name, as brpc prints it.
    pub const fn name(self) -> &'static str {
        match self {
            CompressType::None => "none",
            CompressType::Snappy => "snappy",
            CompressType::Gzip => "gzip",
            CompressType::Zlib => "zlib",
        }
    }
}

impl fmt::Display for CompressType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a payload could not be compressed or decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompressError {
    /// `compress_type` names no supported compression.
    UnknownType(i32),
    /// The input is not valid data of this compression.
    Corrupt {
        /// The compression that failed.
        ty: CompressType,
        /// The decoder's message.
        reason: String,
    },
    /// The output would exceed `limit` bytes.
    TooLarge {
        /// The compression that was being undone.
        ty: CompressType,
        /// The limit (`max_body_size`).
        limit: usize,
    },
}

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressError::UnknownType(n) => write!(f, "unknown compress_type={n}"),
            CompressError::Corrupt { ty, reason } => {
                write!(f, "corrupt {ty} payload: {reason}")
            }
            CompressError::TooLarge { ty, limit } => {
                write!(f, "{ty} payload inflates beyond max_body_size={limit}")
            }
        }
    }
}

impl std::error::Error for CompressError {}

/// Appends `input` compressed with `ty` to `out` (`None` copies it).
pub fn compress(ty: CompressType, input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
    match ty {
        CompressType::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        CompressType::Snappy => snappy::compress(input, out),
        CompressType::Gzip | CompressType::Zlib => gzip::compress(ty, input, out),
    }
}

/// Returns `input` decompressed with `ty`, failing with [`CompressError::TooLarge`] rather than
/// producing more than `max_len` bytes (`None` applies the same limit to the copy).
pub fn decompress(
    ty: CompressType,
    input: &[u8],
    max_len: usize,
) -> Result<Vec<u8>, CompressError> {
    match ty {
        CompressType::None => {
            if input.len() > max_len {
                return Err(CompressError::TooLarge { ty, limit: max_len });
            }
            Ok(input.to_vec())
        }
        CompressType::Snappy => snappy::decompress(input, max_len),
        CompressType::Gzip | CompressType::Zlib => gzip::decompress(ty, input, max_len),
    }
}

/// `input` compressed with `ty`, in a new IOBuf; `None` hands `input` back as it is (no block
/// is shared or copied).
pub fn compress_owned(ty: CompressType, input: IOBuf) -> Result<IOBuf, CompressError> {
    if ty == CompressType::None {
        return Ok(input);
    }
    let mut out = IOBuf::new();
    compress_iobuf(ty, &input, &mut out)?;
    Ok(out)
}

/// Appends `input` compressed with `ty` to `out` (`None` shares `input`'s blocks).
pub fn compress_iobuf(
    ty: CompressType,
    input: &IOBuf,
    out: &mut IOBuf,
) -> Result<(), CompressError> {
    match ty {
        CompressType::None => {
            out.append_iobuf(input);
            Ok(())
        }
        CompressType::Snappy => {
            let mut v = Vec::new();
            snappy::compress(&contiguous(input), &mut v)?;
            out.append_owned(IOBuf::from(v));
            Ok(())
        }
        CompressType::Gzip | CompressType::Zlib => gzip::compress_iobuf(ty, input, out),
    }
}

/// Returns `input` decompressed with `ty`, never producing more than `max_len` bytes
/// ([`CompressError::TooLarge`] instead). `None` shares `input`'s blocks.
pub fn decompress_iobuf(
    ty: CompressType,
    input: &IOBuf,
    max_len: usize,
) -> Result<IOBuf, CompressError> {
    match ty {
        CompressType::None => {
            if input.len() > max_len {
                return Err(CompressError::TooLarge { ty, limit: max_len });
            }
            Ok(input.clone())
        }
        CompressType::Snappy => snappy::decompress(&contiguous(input), max_len).map(IOBuf::from),
        CompressType::Gzip | CompressType::Zlib => gzip::decompress_iobuf(ty, input, max_len),
    }
}

/// The content as one slice: borrowed when it lies in one piece, gathered otherwise.
fn contiguous(input: &IOBuf) -> Cow<'_, [u8]> {
    let mut slices = input.slices();
    match (slices.next(), slices.next()) {
        (None, _) => Cow::Borrowed(&[]),
        (Some(only), None) => Cow::Borrowed(only),
        _ => Cow::Owned(input.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [CompressType; 4] = [
        CompressType::None,
        CompressType::Snappy,
        CompressType::Gzip,
        CompressType::Zlib,
    ];

    #[test]
    fn codes() {
        for ty in ALL {
            assert_eq!(CompressType::from_code(ty.code()), Ok(ty));
        }
        assert_eq!(
            CompressType::from_code(4),
            Err(CompressError::UnknownType(4))
        );
        assert_eq!(
            CompressError::UnknownType(9).to_string(),
            "unknown compress_type=9"
        );
    }

    #[test]
    fn known_headers() {
        let mut out = Vec::new();
        compress(CompressType::Gzip, b"hello", &mut out).unwrap();
        assert_eq!(&out[..2], &[0x1f, 0x8b], "gzip magic");
        out.clear();
        compress(CompressType::Zlib, b"hello", &mut out).unwrap();
        assert_eq!(out[0] & 0x0f, 8, "zlib CM=deflate");
        out.clear();
        compress(CompressType::Snappy, b"hello", &mut out).unwrap();
        // Raw snappy: varint uncompressed length first, no stream identifier chunk.
        assert_eq!(out[0], 5);
        assert_ne!(out[0], 0xff);
    }

    #[test]
    fn snappy_reads_a_hand_written_raw_block() {
        // Raw snappy block: varint length 5, then literal tag (len-1)<<2 = 0x10, then bytes.
        let block = [5u8, 0x10, b'h', b'e', b'l', b'l', b'o'];
        assert_eq!(
            decompress(CompressType::Snappy, &block, 64).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn bombs_are_refused() {
        let zeros = vec![0u8; 1 << 20];
        for ty in ALL {
            let mut c = Vec::new();
            compress(ty, &zeros, &mut c).unwrap();
            assert_eq!(decompress(ty, &c, zeros.len()).unwrap().len(), zeros.len());
            let err = decompress(ty, &c, 4096).unwrap_err();
            assert_eq!(err, CompressError::TooLarge { ty, limit: 4096 }, "{ty}");
        }
    }

    #[test]
    fn snappy_declared_huge_length_is_refused_without_allocating() {
        // Varint 0xffff_ffff declared length followed by nothing.
        let block = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            decompress(CompressType::Snappy, &block, 1 << 20),
            Err(CompressError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_is_corrupt() {
        for ty in [CompressType::Snappy, CompressType::Gzip, CompressType::Zlib] {
            let err = decompress(ty, b"\x01\x02garbage", 1024).unwrap_err();
            assert!(matches!(err, CompressError::Corrupt { .. }), "{ty}: {err}");
        }
    }

    /// An IOBuf whose content spans several pieces.
    fn chained(data: &[u8]) -> IOBuf {
        let mut b = IOBuf::new();
        for part in data.chunks(97) {
            b.append_owned(IOBuf::from(part));
        }
        b
    }

    #[test]
    fn iobuf_round_trip_and_bound() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let input = chained(&data);
        for ty in ALL {
            let mut c = IOBuf::new();
            compress_iobuf(ty, &input, &mut c).unwrap();
            let mut flat = Vec::new();
            compress(ty, &data, &mut flat).unwrap();
            assert_eq!(
                decompress(ty, &c.to_vec(), data.len()).unwrap(),
                data,
                "{ty}"
            );
            let back = decompress_iobuf(ty, &chained(&c.to_vec()), data.len()).unwrap();
            assert_eq!(back, data, "{ty}");
            assert_eq!(
                decompress_iobuf(ty, &c, data.len() - 1).unwrap_err(),
                CompressError::TooLarge {
                    ty,
                    limit: data.len() - 1
                }
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096), t in 0usize..4) {
            let ty = ALL[t];
            let mut c = Vec::new();
            compress(ty, &data, &mut c).unwrap();
            prop_assert_eq!(decompress(ty, &c, data.len()).unwrap(), data);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), t in 1usize..4) {
            let _ = decompress(ALL[t], &data, 1 << 16);
        }
    }
}

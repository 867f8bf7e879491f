//! [`HeadBuf`]: the bytes of a message head (status or request line and headers), built
//! without `fmt` and, for ordinary heads, without an allocation: they are assembled on the
//! stack and appended to the output [`IOBuf`] in one copy. A head longer than the inline
//! capacity moves to a `Vec` and goes on there.

use crate::protocol::IOBuf;

/// Inline capacity: a typical response head (status line, a few headers, `Content-Length`)
/// is 60–150 bytes.
const INLINE: usize = 256;

/// A message head being built. See the module doc.
pub(crate) struct HeadBuf {
    /// The bytes while they fit.
    inline: [u8; INLINE],
    /// Bytes used in `inline`.
    len: usize,
    /// Every byte once the head outgrew `inline` (then `inline` is unused).
    spill: Vec<u8>,
}

impl HeadBuf {
    /// An empty head.
    pub(crate) fn new() -> HeadBuf {
        HeadBuf {
            inline: [0; INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    /// Appends `bytes`.
    #[inline]
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.spill.is_empty() && self.len + bytes.len() <= INLINE {
            self.inline[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            if self.spill.is_empty() {
                self.spill.reserve(self.len + bytes.len() + INLINE);
                self.spill.extend_from_slice(&self.inline[..self.len]);
            }
            self.spill.extend_from_slice(bytes);
        }
    }

    /// Appends `s`.
    #[inline]
    pub(crate) fn push_str(&mut self, s: &str) {
        self.push(s.as_bytes());
    }

    /// Appends `n` in decimal.
    pub(crate) fn push_decimal(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    /// Appends `n` in lower-case hexadecimal (chunk sizes).
    pub(crate) fn push_hex(&mut self, mut n: u64) {
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    /// Appends `name: value\r\n`.
    #[inline]
    pub(crate) fn push_header(&mut self, name: &str, value: &str) {
        self.push_str(name);
        self.push(b": ");
        self.push_str(value);
        self.push(b"\r\n");
    }

    /// The head so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    /// Appends the head to `out` (one copy) and empties it.
    pub(crate) fn flush_to(&mut self, out: &mut IOBuf) {
        out.append(self.bytes());
        self.len = 0;
        self.spill.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_headers_and_spilling() {
        let mut h = HeadBuf::new();
        h.push_decimal(0);
        h.push(b" ");
        h.push_decimal(u64::MAX);
        h.push(b" ");
        h.push_hex(0);
        h.push(b" ");
        h.push_hex(0x1f2e);
        h.push(b"\r\n");
        h.push_header("Content-Type", "text/plain");
        assert_eq!(
            h.bytes(),
            b"0 18446744073709551615 0 1f2e\r\nContent-Type: text/plain\r\n"
        );
        let long = "v".repeat(300);
        h.push_header("X-Long", &long);
        let want = format!(
            "0 18446744073709551615 0 1f2e\r\nContent-Type: text/plain\r\nX-Long: {long}\r\n"
        );
        assert_eq!(h.bytes(), want.as_bytes());
        let mut out = IOBuf::new();
        h.flush_to(&mut out);
        assert_eq!(out.to_vec(), want.as_bytes());
        assert!(h.bytes().is_empty());
        h.push(b"again");
        assert_eq!(h.bytes(), b"again");
    }
}

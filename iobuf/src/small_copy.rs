//! Inline copy for the tiny writes that dominate serialisation (headers, varints, short fields).
//!
//! A call to `memcpy` costs more than copying 1..=64 bytes with a few overlapping unaligned
//! loads and stores, so appends of small slices copy inline and only larger ones call `memcpy`.

use std::ptr::{read_unaligned, write_unaligned};

/// Copies `n` bytes from `src` to `dst`.
///
/// # Safety
///
/// `src` is valid for reads and `dst` for writes of `n` bytes, and the ranges do not overlap.
#[inline(always)]
pub(crate) unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY (all branches): every access stays inside `[src, src + n)` / `[dst, dst + n)`
    // (the second access of a pair ends exactly at `n`), which the caller guarantees valid and
    // disjoint; unaligned reads and writes need no alignment.
    unsafe {
        if n >= 16 {
            if n <= 32 {
                let a = read_unaligned(src as *const u128);
                let b = read_unaligned(src.add(n - 16) as *const u128);
                write_unaligned(dst as *mut u128, a);
                write_unaligned(dst.add(n - 16) as *mut u128, b);
            } else if n <= 64 {
                // First 32 and last 32 bytes (overlapping in the middle).
                let a = read_unaligned(src as *const u128);
                let b = read_unaligned(src.add(16) as *const u128);
                let c = read_unaligned(src.add(n - 32) as *const u128);
                let d = read_unaligned(src.add(n - 16) as *const u128);
                write_unaligned(dst as *mut u128, a);
                write_unaligned(dst.add(16) as *mut u128, b);
                write_unaligned(dst.add(n - 32) as *mut u128, c);
                write_unaligned(dst.add(n - 16) as *mut u128, d);
            } else {
                std::ptr::copy_nonoverlapping(src, dst, n);
            }
        } else if n >= 8 {
            let a = read_unaligned(src as *const u64);
            let b = read_unaligned(src.add(n - 8) as *const u64);
            write_unaligned(dst as *mut u64, a);
            write_unaligned(dst.add(n - 8) as *mut u64, b);
        } else if n >= 4 {
            let a = read_unaligned(src as *const u32);
            let b = read_unaligned(src.add(n - 4) as *const u32);
            write_unaligned(dst as *mut u32, a);
            write_unaligned(dst.add(n - 4) as *mut u32, b);
        } else if n > 0 {
            // 1..=3 bytes: first, middle and last (they coincide for short lengths).
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_small_length() {
        let src: Vec<u8> = (1..=90).collect();
        for n in 0..=80 {
            let mut dst = vec![0u8; 90];
            // SAFETY: both buffers hold at least n bytes and are distinct.
            unsafe { super::copy_bytes(src.as_ptr(), dst.as_mut_ptr(), n) };
            assert_eq!(&dst[..n], &src[..n]);
            assert!(dst[n..].iter().all(|&b| b == 0), "wrote past n = {n}");
        }
    }
}

//! Log-linear buckets for latency percentiles.
//!
//! Values below 16 have a bucket each. Above, every power of two `[2^e, 2^(e+1))` is split into
//! 16 equal buckets, up to `2^40` (about 12.7 days in microseconds); larger values share the last
//! bucket. A percentile is reported as the middle of its bucket, so it is within 1/32 (≈3.1%) of
//! the exact value at that rank — the same order of error as bvar's sampled reservoirs, with a
//! fixed size (592 buckets) instead of a sample count.

/// Sub-buckets per power of two, as a shift.
const SUB_BITS: u32 = 4;
/// Sub-buckets per power of two.
const SUB: usize = 1 << SUB_BITS;
/// Largest power of two with its own buckets.
const MAX_EXP: u32 = 39;
/// Number of buckets.
pub(crate) const BUCKETS: usize = SUB + (MAX_EXP - SUB_BITS + 1) as usize * SUB;

/// The bucket of `v`.
#[inline]
pub(crate) fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    if e > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    SUB + (e - SUB_BITS) as usize * SUB + sub
}

/// The value reported for bucket `i`: the middle of its range.
pub(crate) fn bucket_value(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let e = (i - SUB) / SUB + SUB_BITS as usize;
    let sub = ((i - SUB) % SUB) as u64;
    let width = 1u64 << (e - SUB_BITS as usize);
    (SUB as u64 + sub) * width + width / 2
}

/// Values at `ratios` (each clamped to `0..=1`) of a dense bucket histogram; 0 when empty. The
/// value at ratio `r` is the one of rank `ceil(r * total)` (at least 1) in sorted order.
pub(crate) fn percentiles(hist: &[u64], ratios: &[f64]) -> Vec<u64> {
    let total: u64 = hist.iter().sum();
    ratios
        .iter()
        .map(|&r| {
            if total == 0 {
                return 0;
            }
            let r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
            let rank = ((r * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0u64;
            for (i, &n) in hist.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return bucket_value(i);
                }
            }
            bucket_value(BUCKETS - 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0u64..100_000).chain([1 << 39, (1 << 40) - 1, 1 << 40, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last && b < BUCKETS, "v={v} b={b}");
            last = b;
            if v < 1 << 40 {
                let mid = bucket_value(b);
                assert!(mid.abs_diff(v) * 32 <= v.max(1), "v={v} mid={mid}");
            }
        }
        assert_eq!(BUCKETS, 592);
    }

    #[test]
    fn percentile_ranks() {
        let mut h = vec![0u64; BUCKETS];
        for v in 1..=10u64 {
            h[bucket_of(v)] += 1;
        }
        assert_eq!(percentiles(&h, &[0.0, 0.5, 0.9, 1.0]), vec![1, 5, 9, 10]);
        assert_eq!(percentiles(&vec![0; BUCKETS], &[0.5]), vec![0]);
    }
}

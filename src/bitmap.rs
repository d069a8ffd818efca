//! Bitmaps over `u64` words: a set bit means "in use". Every search takes a
//! whole 64-bit word at a time (count trailing zeros), never bit by bit.
//!
//! These are the plain (non-atomic) helpers used where a lock or ownership
//! already serialises access: large segments' page maps. The per-page block
//! bitmaps of small segments are atomic words handled in `page.rs`.

/// `word` with bit `b % 64` set. One `bts` on x86-64: written out because
/// the compiler builds the mask (`mov`, `shl`) in the block before the
/// `free` path's double-free branch and then needs an `or` after it, two
/// instructions more on every `free`.
#[inline(always)]
pub fn with_bit(word: u64, b: u32) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut w = word;
        // SAFETY: `bts` on two registers reads and writes only them (and
        // the flags); the hardware takes the bit index mod 64.
        unsafe {
            core::arch::asm!(
                "bts {w}, {b}",
                w = inout(reg) w,
                b = in(reg) b as u64,
                options(pure, nomem, nostack)
            );
        }
        w
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        word | 1u64 << (b % 64)
    }
}

/// Mask of the bits `[lo, hi)` within one word (`0 <= lo <= hi <= 64`).
#[inline]
fn mask(lo: usize, hi: usize) -> u64 {
    let upper = if hi >= 64 { !0u64 } else { (1u64 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

/// Index of the first bit in `[from, to)` that is set (`want == true`) or
/// clear (`want == false`).
pub fn next(words: &[u64], from: usize, to: usize, want: bool) -> Option<usize> {
    let mut i = from;
    while i < to {
        let w = i / 64;
        let lo = i % 64;
        let hi = (to - w * 64).min(64);
        let bits = if want { words[w] } else { !words[w] } & mask(lo, hi);
        if bits != 0 {
            return Some(w * 64 + bits.trailing_zeros() as usize);
        }
        i = (w + 1) * 64;
    }
    None
}

/// The first index `i < nbits`, a multiple of `step` (a power of two), with
/// `[i, i+n)` all clear and `i + n <= nbits`.
pub fn find_clear_run(words: &[u64], nbits: usize, n: usize, step: usize) -> Option<usize> {
    let mut i = 0;
    loop {
        i = next(words, i, nbits, false)?;
        i = (i + step - 1) & !(step - 1);
        if i + n > nbits {
            return None;
        }
        match next(words, i, i + n, true) {
            None => return Some(i),
            Some(used) => i = used + 1,
        }
    }
}

/// Sets (`on`) or clears the bits `[start, start+n)`, not counting them
/// (a population count is some 12 instructions per word on baseline
/// x86-64, which has no `popcnt`).
pub fn fill_range(words: &mut [u64], start: usize, n: usize, on: bool) {
    let end = start + n;
    let mut i = start;
    while i < end {
        let w = i / 64;
        let hi = (end - w * 64).min(64);
        let m = mask(i % 64, hi);
        words[w] = if on { words[w] | m } else { words[w] & !m };
        i = (w + 1) * 64;
    }
}

/// Sets (`on`) or clears the bits `[start, start+n)`; returns how many
/// bits changed.
pub fn set_range(words: &mut [u64], start: usize, n: usize, on: bool) -> usize {
    let end = start + n;
    let mut i = start;
    let mut changed = 0;
    while i < end {
        let w = i / 64;
        let hi = (end - w * 64).min(64);
        let m = mask(i % 64, hi);
        let old = words[w];
        words[w] = if on { old | m } else { old & !m };
        changed += (old ^ words[w]).count_ones() as usize;
        i = (w + 1) * 64;
    }
    changed
}

/// True when every bit of `[start, start+n)` is clear.
pub fn range_clear(words: &[u64], start: usize, n: usize) -> bool {
    next(words, start, start + n, true).is_none()
}

/// Tests one bit.
#[inline]
pub fn get(words: &[u64], i: usize) -> bool {
    words[i / 64] & (1 << (i % 64)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_bit_sets_bit_b_mod_64_and_nothing_else() {
        for word in [0u64, !0, 0x8000_0000_0000_0001, 0x0123_4567_89ab_cdef] {
            for b in 0..200u32 {
                assert_eq!(with_bit(word, b), word | 1 << (b % 64), "{word:#x} {b}");
            }
        }
    }

    fn naive_run(bits: &[bool], n: usize, step: usize) -> Option<usize> {
        (0..bits.len())
            .step_by(step)
            .find(|&i| i + n <= bits.len() && bits[i..i + n].iter().all(|b| !b))
    }

    #[test]
    fn runs_match_a_naive_search() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        for round in 0..300 {
            let nbits: usize = 1 + round % 300;
            let mut words = vec![0u64; nbits.div_ceil(64)];
            let mut bits = vec![false; nbits];
            for (i, b) in bits.iter_mut().enumerate() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if seed.is_multiple_of(4) {
                    *b = true;
                    set_range(&mut words, i, 1, true);
                }
            }
            for n in [1, 2, 3, 7, 64, 65, 130] {
                for step in [1, 2, 8, 64] {
                    assert_eq!(
                        find_clear_run(&words, nbits, n, step),
                        naive_run(&bits, n, step)
                    );
                }
            }
        }
    }

    #[test]
    fn set_and_clear_ranges_across_words() {
        let mut w = [0u64; 4];
        assert_eq!(set_range(&mut w, 60, 70, true), 70);
        assert!(!get(&w, 59) && get(&w, 60) && get(&w, 129) && !get(&w, 130));
        assert!(!range_clear(&w, 0, 61) && range_clear(&w, 0, 60) && range_clear(&w, 130, 126));
        assert_eq!(set_range(&mut w, 64, 64, false), 64);
        assert!(get(&w, 63) && !get(&w, 64) && !get(&w, 127) && get(&w, 128));
        assert_eq!(next(&w, 0, 256, true), Some(60));
        assert_eq!(next(&w, 64, 256, true), Some(128));
        assert_eq!(next(&w, 60, 256, false), Some(64));
        // Only bits that change are counted.
        assert_eq!(set_range(&mut w, 50, 20, true), 16);
        assert_eq!(set_range(&mut w, 0, 256, false), 20 + 2);
    }
}

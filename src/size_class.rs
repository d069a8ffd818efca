//! Size classes.
//!
//! ```text
//!  class  1..=4    16, 32, 48, 64            small: (size+15)/16, no table
//!  class  5..=40   four classes per power of two, 80 .. 32768 (medium)
//!                  80 96 112 128 | 160 192 224 256 | 320 ... | 28672 32768
//! ```
//! Medium sizes up to 1 KiB find their class in a 65-byte table indexed by
//! `(size+15)/16`; bigger ones compute it from the highest set bit.
//! Every class is a multiple of 16, so every block is 16-byte aligned; a
//! block of a medium class wastes at most 20% of itself (e.g. 65 -> 80).
//! Class 0 is the empty class of the sentinel page. Blocks above
//! `MEDIUM_MAX` are large (page runs) or huge (direct mappings).

/// The largest small size.
pub const SMALL_MAX: usize = 64;
/// The largest size served from size-class pages.
pub const MEDIUM_MAX: usize = 32 * 1024;
/// Number of classes, including the empty class 0.
pub const NUM_CLASSES: usize = 41;

/// Sizes up to this take their class from [`CLASS_TABLE`].
const TABLE_MAX: usize = 1024;

/// `CLASS_TABLE[(size + 15) / 16]` is the class of `size` for sizes up to
/// [`TABLE_MAX`]: the smallest class whose block holds `16 * index` bytes.
static CLASS_TABLE: [u8; TABLE_MAX / 16 + 1] = {
    let mut t = [0u8; TABLE_MAX / 16 + 1];
    let mut i = 1;
    let mut c = 1;
    while i < t.len() {
        while class_size(c) < i * 16 {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
};

/// The block size of class `c` (0 for class 0).
pub const fn class_size(c: usize) -> usize {
    if c <= 4 {
        c * 16
    } else {
        let k = 6 + (c - 5) / 4;
        let idx = (c - 5) % 4;
        (5 + idx) << (k - 2)
    }
}

/// The class serving `size` bytes; `size <= MEDIUM_MAX`. Size 0 gives
/// class 0, whose page is always the sentinel: the heap's slow path serves
/// it as class 1 (so the fast path needs no zero test).
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    if size <= SMALL_MAX {
        // Small: one add and one shift.
        (size + 15) >> 4
    } else if size <= TABLE_MAX {
        // One add, one shift, one byte load.
        CLASS_TABLE[(size + 15) >> 4] as usize
    } else {
        let s = size - 1;
        let k = (usize::BITS - 1 - s.leading_zeros()) as usize; // floor(log2 s) >= 6
        5 + (k - 6) * 4 + ((s >> (k - 2)) & 3)
    }
}

/// The smallest class whose blocks hold `size` bytes and are all aligned to
/// `align` (a power of two above 16), or None if only large pages can serve.
pub fn aligned_class(size: usize, align: usize) -> Option<usize> {
    let need = size.max(align);
    if need > MEDIUM_MAX {
        return None;
    }
    // Pages start 64 KiB-aligned, so block i sits at i * class_size:
    // aligned to `align` exactly when the class size is a multiple of it.
    (class_of(need)..NUM_CLASSES).find(|&c| class_size(c).is_multiple_of(align))
}

/// Multiplier for division by a class size: for an offset `off < 2^16`,
/// `(off * recip(s)) >> 32 == off / s` (see the test below).
pub const fn recip(size: usize) -> u32 {
    if size == 0 {
        0
    } else {
        ((1u64 << 32).div_ceil(size as u64)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_increasing_multiples_of_16() {
        assert_eq!(class_size(1), 16);
        assert_eq!(class_size(4), 64);
        assert_eq!(class_size(5), 80);
        assert_eq!(class_size(NUM_CLASSES - 1), MEDIUM_MAX);
        for c in 1..NUM_CLASSES {
            assert_eq!(class_size(c) % 16, 0);
            if c > 1 {
                assert!(class_size(c) > class_size(c - 1));
            }
        }
    }

    #[test]
    fn class_of_is_the_smallest_fit_with_bounded_waste() {
        for size in 0..=MEDIUM_MAX {
            let c = class_of(size).max(1);
            assert!(c < NUM_CLASSES);
            assert!(class_size(c) >= size, "size {size}");
            assert!(
                c == 1 || class_size(c - 1) < size,
                "size {size} not smallest"
            );
            if size > SMALL_MAX {
                let waste = class_size(c) - size;
                assert!(waste * 5 <= class_size(c), "size {size} wastes {waste}");
            }
        }
    }

    #[test]
    fn aligned_classes_are_aligned() {
        let mut align = 32;
        while align <= MEDIUM_MAX {
            for size in [0, 1, align - 1, align, align + 1, 3 * align] {
                if let Some(c) = aligned_class(size, align) {
                    assert!(class_size(c) >= size && class_size(c).is_multiple_of(align));
                    assert!(class_size(c) - size.max(1) < size.max(align) + align);
                } else {
                    assert!(size.max(align) > MEDIUM_MAX);
                }
            }
            align *= 2;
        }
    }

    #[test]
    fn reciprocal_division_is_exact_for_page_offsets() {
        for c in 1..NUM_CLASSES {
            let s = class_size(c);
            let r = recip(s) as u64;
            for off in 0..(1usize << 16) {
                assert_eq!(
                    ((off as u64 * r) >> 32) as usize,
                    off / s,
                    "class {s} off {off}"
                );
            }
        }
    }
}

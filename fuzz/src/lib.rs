//! Shared pieces of the fuzz targets: a tiny byte decoder, block patterns,
//! the allocation / free / realloc calls (every entry point of
//! `tinymalloc::raw` and `TinyMalloc` used as a plain `GlobalAlloc` value,
//! never as the fuzz binary's global allocator), and the shadow model that
//! checks contents, alignment, usable size and overlap.
//!
//! A block carries the pattern of its id in every byte of its requested
//! size; the pattern depends on the byte's offset, so a realloc that moves
//! a block must keep `min(old, new)` bytes exactly, and a block that is
//! handed out twice or overlaps another is caught by the first write of the
//! other owner (content check) or by the range map (overlap check).

use core::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use tinymalloc::{raw, TinyMalloc};

/// The allocator, used as a value.
pub static TM: TinyMalloc = TinyMalloc;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Live bytes one input may hold at most (beyond this, allocations are
/// turned into frees): keeps every input fast and under libFuzzer's RSS
/// limit.
pub const LIVE_CAP: usize = 64 * MIB;

/// True when `TM_FUZZ_TRACE` is set: the targets print every operation
/// (to replay a crash: `TM_FUZZ_TRACE=1 fuzz/target/*/release/ops CRASH`).
pub fn tracing() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var_os("TM_FUZZ_TRACE").is_some())
}

/// Prints an operation when tracing.
#[macro_export]
macro_rules! trace {
    ($($t:tt)*) => {
        if $crate::tracing() {
            eprintln!($($t)*);
        }
    };
}

// ---------------------------------------------------------------------------
// Decoder

/// Reads the fuzzer's bytes front to back; every read past the end gives 0
/// and marks the input exhausted.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A decoder over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    /// True once every byte was read.
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The next two bytes, little endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next three bytes, little endian.
    pub fn u24(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), 0])
    }

    /// Splits the rest of the input into `n` sub-inputs (round robin by
    /// 8-byte runs, so that each thread's op stream stays decodable).
    pub fn split(&mut self, n: usize) -> Vec<Vec<u8>> {
        let mut out = vec![Vec::new(); n];
        let rest = &self.data[self.pos.min(self.data.len())..];
        for (i, chunk) in rest.chunks(8).enumerate() {
            out[i % n].extend_from_slice(chunk);
        }
        self.pos = self.data.len();
        out
    }

    /// A request size: weighted to small, every range reachable, and the
    /// boundaries between ranges and classes picked out on purpose.
    pub fn size(&mut self) -> usize {
        const EDGES: [usize; 24] = [
            0,
            1,
            15,
            16,
            17,
            48,
            63,
            64,
            65,
            80,
            81,
            1024,
            4095,
            4096,
            4097,
            32 * KIB - 1,
            32 * KIB,
            32 * KIB + 1,
            64 * KIB,
            2 * MIB - 4096,
            2 * MIB - 1,
            2 * MIB,
            2 * MIB + 1,
            4 * MIB,
        ];
        let sel = self.byte();
        match sel % 32 {
            0..=15 => self.byte() as usize % 65,
            16..=23 => 65 + self.u16() as usize % (32 * KIB - 64),
            24..=26 => EDGES[self.byte() as usize % EDGES.len()],
            27..=29 => 32 * KIB + 1 + self.u24() as usize % (2 * MIB - 32 * KIB),
            30 => 2 * MIB + 1 + self.u24() as usize % (6 * MIB),
            _ => self.byte() as usize * 16,
        }
    }

    /// An alignment: mostly the default, every power of two up to 4 MiB
    /// reachable.
    ///
    /// `TM_FUZZ_MAX_ALIGN=<bytes>` caps it (to fuzz on past a known bug of
    /// 4 MiB alignments; see docs/TESTING.md).
    pub fn align(&mut self) -> usize {
        static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let max = *MAX.get_or_init(|| {
            std::env::var("TM_FUZZ_MAX_ALIGN")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(usize::MAX)
        });
        let b = self.byte();
        let a: usize = match b % 16 {
            0..=7 => 1 << (b % 5),      // 1 .. 16
            8..=13 => 1 << (5 + b % 8), // 32 .. 4 KiB
            14 => 1 << (13 + b % 7),    // 8 KiB .. 512 KiB
            _ => 1 << (20 + b % 3),     // 1 .. 4 MiB
        };
        a.min(max)
    }
}

// ---------------------------------------------------------------------------
// Patterns

/// The pattern word `w` (bytes 8w..8w+8) of the block with id `id`.
#[inline]
pub fn pattern_word(id: u64, w: usize) -> u64 {
    let x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (w as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^ (x >> 29) ^ 0x5555_0000_AAAA_0001
}

#[inline]
fn pattern_byte(id: u64, i: usize) -> u8 {
    pattern_word(id, i / 8).to_le_bytes()[i % 8]
}

/// Blocks are checked densely up to this offset ...
pub const DENSE: usize = 64 * KIB;
/// ... and in their last `TAIL` bytes; in between, one word per 4 KiB page.
/// (Sparse checks keep multi-megabyte blocks cheap under ASan; a page
/// mapped twice, a copy that stops short or a block not zeroed still shows
/// on the words checked.)
pub const TAIL: usize = 4 * KIB;

/// The byte ranges of `[from, to)` that carry a pattern in a block whose
/// dense tail ends at `tail` (`to <= tail`): `[0, DENSE)`, the first word
/// of each 4 KiB page above it, and `[tail - TAIL, tail)`.
fn spans(from: usize, to: usize, tail: usize, mut f: impl FnMut(usize, usize)) {
    debug_assert!(to <= tail);
    if from < DENSE.min(to) {
        f(from, DENSE.min(to));
    }
    let tail_lo = tail.saturating_sub(TAIL).max(DENSE);
    // From the page holding `from`: its first word may straddle `from`.
    let mut x = from.max(DENSE) & !4095;
    while x < to.min(tail_lo) {
        let (a, b) = (x.max(from), (x + 8).min(to));
        if a < b {
            f(a, b);
        }
        x += 4096;
    }
    if from.max(tail_lo) < to {
        f(from.max(tail_lo), to);
    }
}

/// Writes the pattern of `id` into the checked bytes of `[from, to)` of
/// the block at `p`, whose size is `to`.
///
/// # Safety
/// `p..p+to` is writable and `p` is 8-aligned.
pub unsafe fn fill(p: *mut u8, from: usize, to: usize, id: u64) {
    spans(from, to, to, |a, b| unsafe { fill_dense(p, a, b, id) });
}

unsafe fn fill_dense(p: *mut u8, from: usize, to: usize, id: u64) {
    let mut i = from;
    while i < to && !i.is_multiple_of(8) {
        unsafe { p.add(i).write(pattern_byte(id, i)) };
        i += 1;
    }
    while i + 8 <= to {
        unsafe { (p.add(i) as *mut u64).write(pattern_word(id, i / 8)) };
        i += 8;
    }
    while i < to {
        unsafe { p.add(i).write(pattern_byte(id, i)) };
        i += 1;
    }
}

/// Panics, naming the first checked byte of `[from, to)` that lost the
/// pattern; `tail`: the size the block had when its tail was filled.
///
/// # Safety
/// `p..p+to` is readable and `p` is 8-aligned.
pub unsafe fn verify(p: *const u8, from: usize, to: usize, tail: usize, id: u64, what: &str) {
    spans(from, to, tail, |a, b| unsafe {
        verify_dense(p, a, b, id, what)
    });
}

unsafe fn verify_dense(p: *const u8, from: usize, to: usize, id: u64, what: &str) {
    let mut i = from;
    while i < to {
        if i.is_multiple_of(8) && i + 8 <= to {
            // SAFETY: in bounds, aligned.
            if unsafe { (p.add(i) as *const u64).read() } == pattern_word(id, i / 8) {
                i += 8;
                continue;
            }
        }
        // SAFETY: in bounds.
        let got = unsafe { p.add(i).read() };
        if got != pattern_byte(id, i) {
            panic!(
                "{what}: block {p:?} id {id}: byte {i} is {got:#04x}, expected {:#04x}",
                pattern_byte(id, i)
            );
        }
        i += 1;
    }
}

/// Panics unless the checked bytes of the fresh zeroed block are zero.
///
/// # Safety
/// `p..p+size` is readable and `p` is 16-aligned.
pub unsafe fn verify_zero(p: *const u8, size: usize, what: &str) {
    spans(0, size, size, |a, b| {
        // SAFETY: in bounds.
        let s = unsafe { core::slice::from_raw_parts(p.add(a), b - a) };
        if let Some(i) = s.iter().position(|&x| x != 0) {
            panic!(
                "{what}: zeroed block {p:?} of {size} bytes: byte {} is {:#x}",
                a + i,
                s[i]
            );
        }
    });
}

// ---------------------------------------------------------------------------
// Blocks and calls

/// Which API made a block (and so which must free it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `GlobalAlloc` with `Layout(size, align)`: freed with `dealloc`,
    /// resized with `GlobalAlloc::realloc`.
    Global,
    /// `tinymalloc::raw`: freed with `free` or `free_sized`, resized with
    /// `realloc_aligned`.
    Raw,
}

/// A live block.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// Address.
    pub p: usize,
    /// Requested size.
    pub size: usize,
    /// Requested alignment.
    pub align: usize,
    /// Pattern id.
    pub id: u64,
    /// Which API owns it.
    pub api: Api,
}

/// Checks what every fresh or resized block must satisfy: alignment,
/// `usable_size >= size`, `owns`. Returns the usable size.
pub fn check_shape(b: &Block, what: &str) -> usize {
    assert_eq!(
        b.p % b.align.max(raw::MIN_ALIGN),
        0,
        "{what}: {:#x} (size {}) is not aligned to {}",
        b.p,
        b.size,
        b.align
    );
    // SAFETY: b.p is a live block.
    let usable = unsafe { raw::usable_size(b.p as *mut u8) };
    assert!(
        usable >= b.size.max(1),
        "{what}: usable_size {usable} < size {} at {:#x}",
        b.size,
        b.p
    );
    // SAFETY: any address may be asked.
    assert!(
        unsafe { raw::owns(b.p as *const u8) },
        "{what}: owns({:#x}) is false",
        b.p
    );
    usable
}

/// Allocates a block as `how` says (0..6), checks zeroing where promised,
/// fills it with the pattern of `id`. None when tinymalloc returned null
/// (never expected here: the caller's sizes are bounded).
pub fn alloc(how: u8, size: usize, align: usize, id: u64) -> Option<Block> {
    let (p, api, zeroed, size) = unsafe {
        match how % 6 {
            0 | 1 => {
                // GlobalAlloc forbids size 0.
                let size = size.max(1);
                let l = Layout::from_size_align(size, align).unwrap();
                if how.is_multiple_of(6) {
                    (TM.alloc(l), Api::Global, false, size)
                } else {
                    (TM.alloc_zeroed(l), Api::Global, true, size)
                }
            }
            2 => {
                let p = if align <= raw::MIN_ALIGN {
                    raw::malloc(size)
                } else {
                    raw::malloc_aligned(size, align)
                };
                (p, Api::Raw, false, size)
            }
            3 => (raw::zalloc_aligned(size, align), Api::Raw, true, size),
            4 => {
                // calloc(n, m) with n * m = size.
                let n = if size.is_multiple_of(16) && size > 0 {
                    16
                } else {
                    1
                };
                let p = if align <= raw::MIN_ALIGN {
                    raw::calloc(n, size / n)
                } else {
                    raw::zalloc_aligned(size, align)
                };
                (p, Api::Raw, true, size)
            }
            _ => {
                let p = if align <= raw::MIN_ALIGN {
                    raw::zalloc(size)
                } else {
                    raw::malloc_aligned(size, align)
                };
                (p, Api::Raw, align <= raw::MIN_ALIGN, size)
            }
        }
    };
    trace!(
        "alloc how {} size {size} align {align} id {id} -> {p:?}",
        how % 6
    );
    if p.is_null() {
        return None;
    }
    let b = Block {
        p: p as usize,
        size,
        align,
        id,
        api,
    };
    check_shape(&b, "alloc");
    if zeroed {
        // SAFETY: a live block of `size` bytes.
        unsafe { verify_zero(p, size, "alloc") };
    }
    // SAFETY: a live block of `size` bytes.
    unsafe { fill(p, 0, size, id) };
    Some(b)
}

/// Verifies the whole block and frees it (`how` picks free or free_sized
/// for raw blocks).
pub fn free(b: &Block, how: u8) {
    trace!(
        "free {:#x} size {} id {} ({:?}, how {})",
        b.p,
        b.size,
        b.id,
        b.api,
        how % 2
    );
    // SAFETY: b is live, `size` bytes of pattern.
    unsafe { verify(b.p as *const u8, 0, b.size, b.size, b.id, "before free") };
    // SAFETY: b is live and freed once, with the API that made it.
    unsafe {
        match b.api {
            Api::Global => TM.dealloc(
                b.p as *mut u8,
                Layout::from_size_align(b.size, b.align).unwrap(),
            ),
            Api::Raw => {
                if how.is_multiple_of(2) {
                    raw::free(b.p as *mut u8)
                } else {
                    raw::free_sized(b.p as *mut u8, b.size, b.align.max(1))
                }
            }
        }
    }
}

/// Resizes `b` to `new_size`, checks that `min(old, new)` bytes survived,
/// fills the new tail. On null (out of memory) the old block must be
/// intact and is returned unchanged.
pub fn realloc(b: &Block, new_size: usize) -> Option<Block> {
    // SAFETY: b is live.
    unsafe { verify(b.p as *const u8, 0, b.size, b.size, b.id, "before realloc") };
    let new_size = if b.api == Api::Global {
        new_size.max(1)
    } else {
        new_size
    };
    // SAFETY: b is live; only the returned pointer is used afterwards.
    let q = unsafe {
        match b.api {
            Api::Global => TM.realloc(
                b.p as *mut u8,
                Layout::from_size_align(b.size, b.align).unwrap(),
                new_size,
            ),
            Api::Raw => raw::realloc_aligned(b.p as *mut u8, new_size, b.align.max(1)),
        }
    };
    trace!(
        "realloc {:#x} size {} -> {new_size} id {} ({:?}) -> {q:?}",
        b.p,
        b.size,
        b.id,
        b.api
    );
    if q.is_null() {
        // SAFETY: on failure the old block is untouched and still live.
        unsafe {
            verify(
                b.p as *const u8,
                0,
                b.size,
                b.size,
                b.id,
                "after failed realloc",
            )
        };
        return None;
    }
    let nb = Block {
        p: q as usize,
        size: new_size,
        ..*b
    };
    check_shape(&nb, "realloc");
    // SAFETY: q is live with new_size bytes.
    unsafe {
        verify(q, 0, b.size.min(new_size), b.size, b.id, "after realloc");
        // The new tail (and, on a shrink, the new dense end); rewriting
        // bytes that already hold the pattern is harmless.
        fill(q, b.size.min(new_size.saturating_sub(TAIL)), new_size, b.id);
    }
    Some(nb)
}

// ---------------------------------------------------------------------------
// Nothing lost

/// Called with every block of the input freed: tinymalloc must hold no
/// block in use, and what it keeps mapped must stay bounded (its caches:
/// up to 256 MiB of huge mappings, 4 empty segments per arena, a few
/// segments still owned by live threads). Growth beyond `bound` across
/// inputs means mappings are lost. `TM_FUZZ_NO_FOOTPRINT=1` skips the
/// bound (to fuzz on past a known leak).
pub fn check_nothing_lost(bound: usize) {
    let st = tinymalloc::stats();
    assert_eq!(
        st.in_use, 0,
        "blocks left in use after every block was freed: {st:?}"
    );
    if std::env::var_os("TM_FUZZ_NO_FOOTPRINT").is_none() {
        assert!(
            st.reserved <= bound,
            "{} MiB still mapped with no block in use (bound {} MiB): address space is lost; {st:?}",
            st.reserved >> 20,
            bound >> 20
        );
    }
    trace!(
        "reserved {} MiB, segments {}, cached {}",
        st.reserved >> 20,
        st.segments,
        st.cached_segments
    );
}

// ---------------------------------------------------------------------------
// Overlap map

/// Live ranges `[p, p + usable)`, keyed by start: no two may overlap.
#[derive(Default)]
pub struct Ranges {
    map: BTreeMap<usize, usize>,
    /// Sum of requested sizes of the live blocks.
    pub live: usize,
}

impl Ranges {
    /// Adds the block's usable range, panicking if it overlaps a live one.
    pub fn insert(&mut self, b: &Block) {
        // SAFETY: b is live.
        let end = b.p + unsafe { raw::usable_size(b.p as *mut u8) };
        if let Some((&s, &e)) = self.map.range(..=b.p).next_back() {
            assert!(
                e <= b.p,
                "block [{:#x}, {end:#x}) overlaps live block [{s:#x}, {e:#x})",
                b.p
            );
        }
        if let Some((&s, &e)) = self.map.range(b.p..).next() {
            assert!(
                s >= end,
                "block [{:#x}, {end:#x}) overlaps live block [{s:#x}, {e:#x})",
                b.p
            );
        }
        self.map.insert(b.p, end);
        self.live += b.size;
    }

    /// Removes a block's range (before it is freed or resized).
    pub fn remove(&mut self, b: &Block) {
        assert!(
            self.map.remove(&b.p).is_some(),
            "block {:#x} not in the map",
            b.p
        );
        self.live -= b.size;
    }
}

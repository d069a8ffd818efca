//! A page: 64 KiB of blocks of one size class, and its two bitmaps.
//!
//! ```text
//!  free  row (64 words, owner-only):  bit = 1  block is free
//!  xfree row (64 words, atomic)    :  bit = 1  freed by another thread,
//!                                              not yet collected
//!  block i is at  start + i * bsize          (i < cap <= 4096)
//! ```
//! Both rows live in the segment's metadata pages, never in user memory;
//! word `w` of the xfree row is `XFREE_DELTA` bytes after word `w` of the
//! free row.
//!
//! Invariants (for a page in use, `bsize != 0`):
//! - a block is free iff its `free` bit is set or its `xfree` bit is set;
//!   no block has both bits set;
//! - `used()` = cap - (set `free` bits): it counts blocks not known free
//!   by the owner (cross-thread frees count once collected); it is kept as
//!   `left = used - slow_at - 1`, so that a free decrements `left` and
//!   re-files the page when it goes negative (`dec` and a sign test). For
//!   its heap's current page it lags behind by the blocks `malloc` took
//!   since the heap last caught it up (`heap::sync`; `malloc` does not
//!   touch the descriptor), never by more than the page's free bits allow;
//! - `cur` points into the `free` row; `word_base` is the address of block
//!   `64 * (cur - free)`;
//! - `cur` lies below word `limit` (1 to `nwords()` while the page is in
//!   use): in default mode no block of a word at or past `limit` was ever
//!   handed out. `advance` relies on it for no more than its choice of
//!   word (it searches every word before it calls the page full), so
//!   secure mode, which takes blocks from any word, may break it;
//! - `full` pages are in no heap list; other pages in use are in their
//!   heap's list for `class` (or, in an abandoned segment, in no list);
//! - `slow_at()`, derived from the flags, is `i16::MAX` for a full page,
//!   -1 for a current page, else 0 (`set_full`/`set_current` keep
//!   `used()`): a free whose `used()` falls to `slow_at()` or below must
//!   re-file the page;
//! - `zero`: no block was freed since the page was set up on zeroed memory,
//!   so every block handed out is still all zero;
//! - bits at or beyond `cap` are always clear in the `free` row; in the
//!   `xfree` row, the bits from `cap` to the end of its word are set (pad
//!   bits: `block_start` can yield index `cap` for the tail of a page,
//!   never more, and the free path's bit test then sees it as free, so it
//!   needs no compare with `cap`); collection never takes them;
//! - words past word `cap / 64` of both rows are never read while the
//!   page is in use (every reader stays below `nwords()` or at an index
//!   `<= cap`), so `setup` leaves them as an earlier class left them;
//! - a page not in use has `free` pointing at its segment's word of ones
//!   (`Segment::ones`): the only index `block_start` yields there is 0, and
//!   the bit test rejects it.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The share of the blocks of a page's reached words (`Page::limit`) in use
/// above which `advance` takes an untouched word before a reached one:
/// 3/4 (numerator, denominator). Measured against a page kept at any
/// density (reached words only while one has a free block) and at half,
/// 7/8 and 15/16: at any density glibc-thread lost (and alloc-test gained
/// in session 12, not when measured again in session 13); at the others
/// neither moved (docs/PERFORMANCE.md, "Tried and dropped").
const DENSE: (usize, usize) = (3, 4);

/// Words per bitmap row: 64 KiB / 16 B blocks / 64 bits.
pub const WORDS: usize = 64;

/// The bits of word `w` of a row that stand for blocks of a page of `cap`
/// blocks.
fn valid_bits(cap: usize, w: usize) -> u64 {
    let lo = w * 64;
    if lo + 64 <= cap {
        !0u64
    } else if lo < cap {
        (1u64 << (cap - lo)) - 1
    } else {
        0
    }
}

/// Per-page metadata. Owner-only except where noted.
///
/// Exactly one cache line (64 bytes, aligned: the segment header starts
/// with the descriptors, at the segment's 4 MiB-aligned base), so that the
/// free path's descriptor address is a shift, and `malloc` and `free` each
/// touch one line of it. The fields they read come first.
#[repr(C, align(64))]
pub struct Page {
    /// The current word of the free row (alloc fast path).
    pub cur: *const AtomicU64,
    /// Address of the first block covered by `*cur`.
    pub word_base: usize,
    /// Block size in bytes (at most `MEDIUM_MAX`, 32 KiB); 0 when the page
    /// is not in use.
    pub bsize: u16,
    /// Words of the free row the cursor has reached since set-up (at least
    /// 1 while the page is in use): `advance` searches them before any
    /// word past them (see the invariants).
    pub limit: u8,
    /// Unused (keeps the layout explicit).
    _pad: u8,
    /// `size_class::recip(bsize)`: division by multiplication.
    pub recip: u32,
    /// `used() - slow_at() - 1` (see the invariants): the blocks handed
    /// out and not known to be free (at most 4096), offset so that the
    /// free path's re-file test is the sign of its decrement. Between
    /// -1 and `4096 + CURRENT_SLACK` whenever the heap has just caught a
    /// current page up (`heap::sync`).
    pub left: i16,
    /// Number of blocks in the page (at most 4096).
    pub cap: u16,
    /// Size class (0 when not in use).
    pub class: u8,
    /// All blocks were in use at the last look; the page is in no list.
    /// Written through `set_full`.
    pub full: bool,
    /// No block freed since set-up on zeroed memory.
    pub zero: bool,
    /// This is its heap's current page for its class: kept even when empty.
    /// Written through `set_current`.
    pub current: bool,
    /// The owner's free row (`WORDS` words) while the page is in use
    /// (`Segment::free_rows`); else the segment's word of ones (see the
    /// invariants). The cross-thread row is `XFREE_DELTA` bytes further.
    pub free: *mut AtomicU64,
    /// Address of block 0.
    pub start: usize,
    /// Heap list links.
    pub next: *mut Page,
    /// Heap list links.
    pub prev: *mut Page,
}

const _: () = assert!(core::mem::size_of::<Page>() == 64);

/// How far a current page's `used()` may fall below zero before a free
/// takes the cold path (see `Page::slow_at`): `malloc` does not count on
/// the page, so its count lags behind, and the heap catches it up at most
/// once per this many owner frees. `left` then stays within
/// `[0, 4096 + CURRENT_SLACK]`.
pub const CURRENT_SLACK: i16 = 1024;

/// Distance in bytes from a word of a page's free row to the same word of
/// its cross-thread (xfree) row: the segment keeps all free rows, then all
/// xfree rows (`Segment::free_rows`, `Segment::xfree_rows`).
pub const XFREE_DELTA: usize = crate::segment::PAGES * WORDS * 8;

impl Page {
    /// A page descriptor with no blocks.
    pub const fn empty(zero_word: *const AtomicU64) -> Page {
        Page {
            cur: zero_word,
            word_base: 0,
            bsize: 0,
            limit: 0,
            _pad: 0,
            recip: 0,
            left: -1,
            cap: 0,
            class: 0,
            full: false,
            zero: false,
            current: false,
            free: core::ptr::null_mut(),
            start: 0,
            next: core::ptr::null_mut(),
            prev: core::ptr::null_mut(),
        }
    }

    /// Number of words of the rows in use.
    #[inline]
    pub fn nwords(&self) -> usize {
        (self.cap as usize).div_ceil(64)
    }

    /// The free-row word `w`.
    #[inline]
    pub fn free_word(&self, w: usize) -> &AtomicU64 {
        // SAFETY: `free` points to WORDS words in the segment metadata,
        // alive while the segment is mapped; w < WORDS by construction.
        unsafe { &*self.free.add(w) }
    }

    /// The xfree-row word `w`.
    #[inline]
    pub fn xfree_word(&self, w: usize) -> &AtomicU64 {
        // SAFETY: as for free_word: the xfree row lies XFREE_DELTA bytes
        // after the free row, in the segment metadata too (for a page not
        // in use, `free` is the segment's word of ones, whose word
        // XFREE_DELTA bytes further is metadata as well).
        unsafe { &*self.free.byte_add(XFREE_DELTA).add(w) }
    }

    /// Sets the page up for blocks of `bsize` bytes (class `class`); `row`
    /// is its own free row.
    pub fn setup(&mut self, row: *mut AtomicU64, class: usize, bsize: usize, zero: bool) {
        let cap = (crate::segment::PAGE_SIZE / bsize).min(WORDS * 64);
        self.bsize = bsize as u16;
        self.cap = cap as u16;
        self.limit = 1;
        self.recip = crate::size_class::recip(bsize);
        self.class = class as u8;
        self.set_used(0);
        self.set_full(false);
        self.set_current(false);
        self.zero = zero;
        self.free = row;
        // Only the words the page uses (see the invariants): whole words
        // of free blocks, then the word holding index `cap`, if the row
        // has it, with its pad bits (a page of 16-byte blocks has no such
        // word; one of 1 KiB blocks uses two words of 64).
        let full = cap / 64;
        for w in 0..full {
            self.free_word(w).store(!0, Relaxed);
            self.xfree_word(w).store(0, Relaxed);
        }
        if full < WORDS {
            let bits = valid_bits(cap, full);
            self.free_word(full).store(bits, Relaxed);
            // Pad bits: those past `cap` in the word holding index `cap`.
            self.xfree_word(full).store(!bits, Relaxed);
        }
        self.cur = self.free;
        self.word_base = self.start;
    }

    /// Marks the page unused; `ones` is its segment's word of ones.
    pub fn clear(&mut self, ones: *mut AtomicU64) {
        self.free = ones;
        self.bsize = 0;
        self.limit = 0;
        self.cap = 0;
        self.recip = 0;
        self.class = 0;
        self.set_full(false);
        self.set_current(false);
        self.set_used(0);
    }

    /// The free path re-files the page when `used()` drops to this or
    /// below: `i16::MAX` for a full page, `-CURRENT_SLACK` for a current
    /// page (whose `used()` lags behind by the blocks the fast path took
    /// since the heap last brought it up to date: `heap::sync`), else 0.
    #[inline]
    pub fn slow_at(&self) -> i16 {
        if self.full {
            i16::MAX
        } else if self.current {
            -CURRENT_SLACK
        } else {
            0
        }
    }

    /// Blocks handed out and not known to be free.
    #[inline]
    pub fn used(&self) -> u16 {
        (self.left as i32 + self.slow_at() as i32 + 1) as u16
    }

    /// `used()` of a current page (not full): no test of the flags.
    #[inline(always)]
    pub fn used_current(&self) -> usize {
        debug_assert!(self.current && !self.full);
        (self.left as i32 + 1 - CURRENT_SLACK as i32) as u16 as usize
    }

    /// Sets the count of blocks handed out (at most 4096).
    #[inline]
    pub fn set_used(&mut self, used: u16) {
        self.left = (used as i32 - self.slow_at() as i32 - 1) as i16;
    }

    /// Sets `full`, keeping `used()`.
    #[inline]
    pub fn set_full(&mut self, full: bool) {
        let used = self.used();
        self.full = full;
        self.set_used(used);
    }

    /// Sets `current`, keeping `used()`.
    #[inline]
    pub fn set_current(&mut self, current: bool) {
        let used = self.used();
        self.current = current;
        self.set_used(used);
    }

    /// A block came back to the owner: counts it, and returns true when
    /// the page must be re-filed (it was full, or it is now empty and not
    /// current): a decrement and its sign.
    #[inline(always)]
    pub fn put_back(&mut self) -> bool {
        self.left -= 1;
        self.left < 0
    }

    /// `n` blocks were handed out (counted late, by `heap::sync`).
    #[inline]
    pub fn took(&mut self, n: u16) {
        self.left += n as i16;
    }

    /// Moves `cur` to another word with a free bit. False when the page has
    /// no free bit in its owner row. The owner brings `used()` up to date
    /// first (`heap::sync`): it decides between the two orders below.
    ///
    /// Next fit within the words reached so far (`limit`): forward from the
    /// current word, wrapping round to it last; a word past them only when
    /// none of them has a free block, or when more than `DENSE` of the
    /// blocks of the reached words are in use, where the reached words'
    /// free blocks are few and scattered (each one sends the next `malloc`
    /// to this slow path again). Blocks freed at random thus come back into
    /// use before untouched ones, and a class whose live blocks fill part of
    /// a page keeps them in that part's cache lines and memory pages,
    /// where sweeping the whole page spread them over all of it
    /// (alloc-test's live blocks at the end of a run: on 278 4 KiB pages
    /// then, 247 now; page faults per run 740 then, 645 now).
    pub fn advance(&mut self) -> bool {
        self.advance_with(self.used() as usize)
    }

    /// [`Page::advance`] for a page with `used` blocks in use, inlined into
    /// the slow path's common case (`heap::next_word`), which knows the
    /// page is current: a call and `used()`'s tests of the flags cost
    /// about 20 instructions there.
    #[inline(always)]
    pub fn advance_with(&mut self, used: usize) -> bool {
        let n = self.nwords();
        let lim = (self.limit as usize).min(n);
        let reached = (64 * lim).min(self.cap as usize);
        let dense = DENSE.1 * used > DENSE.0 * reached;
        if !dense && self.next_fit(lim) {
            return true;
        }
        // The words past the reached ones (untouched in default mode; secure
        // mode takes blocks of any word, so they are searched, not assumed
        // free).
        if let Some(w) = self.first_free(lim, n) {
            self.limit = (w + 1) as u8;
            self.set_cur(w);
            return true;
        }
        dense && self.next_fit(lim)
    }

    /// Moves `cur` to the next reached word (below `lim`) with a free bit,
    /// forward from the current one and wrapping round to it last; false
    /// when none has one.
    #[inline(always)]
    fn next_fit(&mut self, lim: usize) -> bool {
        // SAFETY: cur points into the free row.
        let at = unsafe { self.cur.offset_from(self.free) } as usize;
        // Two plain loops: a wrapping index costs a compare and a move per
        // word.
        let found = self
            .first_free(at + 1, lim)
            .or_else(|| self.first_free(0, (at + 1).min(lim)));
        if let Some(w) = found {
            self.set_cur(w);
        }
        found.is_some()
    }

    /// The first word from `from` to before `to` with a free bit.
    #[inline(always)]
    fn first_free(&self, from: usize, to: usize) -> Option<usize> {
        (from..to).find(|&w| self.free_word(w).load(Relaxed) != 0)
    }

    /// Makes word `w` the current word.
    #[inline]
    fn set_cur(&mut self, w: usize) {
        self.cur = self.free_word(w);
        self.word_base = self.start + w * 64 * self.bsize as usize;
    }

    /// Moves cross-thread frees into the free row; returns how many blocks
    /// were collected, or the index of a block found freed twice.
    pub fn collect(&mut self) -> Result<u32, usize> {
        let nw = self.nwords();
        let mut n = 0;
        let mut w = 0;
        // Four words at a time: most words of a page hold no pending bit,
        // and one OR of four loads passes over them (the test of each
        // word with its pad mask cost about 8 instructions a word; a page
        // of 16-byte blocks has 64 words). The last word's pad bits make
        // its group always look pending: `collect_word` masks them.
        while w + 4 <= nw {
            let any = self.xfree_word(w).load(Relaxed)
                | self.xfree_word(w + 1).load(Relaxed)
                | self.xfree_word(w + 2).load(Relaxed)
                | self.xfree_word(w + 3).load(Relaxed);
            if any != 0 {
                for k in w..w + 4 {
                    n += self.collect_word(k)?;
                }
            }
            w += 4;
        }
        while w < nw {
            n += self.collect_word(w)?;
            w += 1;
        }
        Ok(n)
    }

    /// [`Page::collect`] for word `w < nwords()` alone: what a thread
    /// freeing into an abandoned segment collects (its own block's word).
    pub fn collect_word(&mut self, w: usize) -> Result<u32, usize> {
        let x = self.xfree_word(w);
        // Pad bits (past `cap`) stay.
        let valid = valid_bits(self.cap as usize, w);
        if x.load(Relaxed) & valid == 0 {
            return Ok(0);
        }
        let bits = x.fetch_and(!valid, core::sync::atomic::Ordering::Acquire) & valid;
        let f = self.free_word(w).load(Relaxed);
        // A block freed by its owner while its cross-thread free was
        // pending would have both bits: a double free.
        if f & bits != 0 {
            return Err(w * 64 + (f & bits).trailing_zeros() as usize);
        }
        self.free_word(w).store(f | bits, Relaxed);
        let n = bits.count_ones();
        if n > 0 {
            self.left -= n as i16;
            self.zero = false;
        }
        Ok(n)
    }

    /// The index of the block at `p`, if `p` is exactly a block start.
    #[cfg(test)]
    pub fn block_index(&self, p: usize) -> Option<usize> {
        let off = p.wrapping_sub(self.start);
        if off >= crate::segment::PAGE_SIZE {
            return None;
        }
        self.block_at(off)
    }

    /// The index `i <= cap` of the block that would start at offset
    /// `off < PAGE_SIZE`, if `off` is a multiple of the block size: the
    /// free path's test, which leaves `i == cap` (the page's tail, or any
    /// offset in a page not in use: its reciprocal is 0) to its bit test
    /// (see the invariants).
    ///
    /// `off * recip` holds `off / bsize` in its high 32 bits; its low 32
    /// bits are below 2^16 exactly when `bsize` divides `off` (they are
    /// `off * e < 2^16` with `e < 1` then, and at least `2^32 / bsize >=
    /// 2^17` otherwise, as `bsize <= 2^15`), so no multiply-back is needed.
    #[inline(always)]
    pub fn block_start(&self, off: usize) -> Option<usize> {
        let prod = off as u64 * self.recip as u64;
        // Any bound from 2^16 to 2^17 separates the two cases; one that is
        // not a power of two compiles to one `cmp` (a mask test of bits
        // 16..31 compiles to a copy, a shift and a test).
        if (prod as u32) < 0x1_8000 {
            Some((prod >> 32) as usize)
        } else {
            None
        }
    }

    /// The index of the block at offset `off < PAGE_SIZE` in the page, if a
    /// block starts exactly there: [`Page::block_start`] below `cap`.
    #[inline(always)]
    pub fn block_at(&self, off: usize) -> Option<usize> {
        self.block_start(off).filter(|&i| i < self.cap as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Room for a free row and, `XFREE_DELTA` bytes further, its xfree
    /// row, every word `init`.
    fn rows(init: u64) -> Vec<AtomicU64> {
        (0..XFREE_DELTA / 8 + WORDS)
            .map(|_| AtomicU64::new(init))
            .collect()
    }

    fn page_with_rows(rows: &mut [AtomicU64], bsize: usize) -> Page {
        assert!(rows.len() * 8 >= XFREE_DELTA + WORDS * 8);
        let mut p = Page::empty(core::ptr::null());
        p.start = 1 << 16;
        p.setup(
            rows.as_mut_ptr(),
            crate::size_class::class_of(bsize),
            bsize,
            true,
        );
        p
    }

    #[test]
    fn setup_marks_exactly_cap_blocks_free() {
        let mut rows = rows(!0);
        for bsize in [16, 48, 80, 1280, 32768] {
            let p = page_with_rows(&mut rows, bsize);
            // The words a page uses: up to the one holding index cap.
            let cap = p.cap as usize;
            let used_words = (cap / 64 + 1).min(WORDS);
            let total: u32 = (0..used_words)
                .map(|w| p.free_word(w).load(Relaxed).count_ones())
                .sum();
            assert_eq!(total as usize, (65536 / bsize).min(4096));
            assert_eq!(total, p.cap as u32);
            // The xfree row holds exactly the pad bits: index cap up to the
            // end of its word (none when cap fills its last word).
            for w in 0..used_words {
                let want = if w == cap / 64 {
                    !0u64 << (cap % 64)
                } else {
                    0
                };
                assert_eq!(
                    p.xfree_word(w).load(Relaxed),
                    want,
                    "bsize {bsize} word {w}"
                );
            }
        }
    }

    /// The index of the page's current word.
    fn cur_word(p: &Page) -> usize {
        // SAFETY: cur points into the page's free row.
        unsafe { p.cur.offset_from(p.free) as usize }
    }

    /// `advance` goes back to a reached word with a free block before it
    /// takes an untouched one, and still finds a free block anywhere (secure
    /// mode takes blocks from any word).
    #[test]
    fn advance_reuses_reached_words_first() {
        let mut rows = rows(0);
        let mut p = page_with_rows(&mut rows, 16);
        assert_eq!((cur_word(&p), p.limit), (0, 1));
        // Word 0 handed out: the next word is reached.
        p.free_word(0).store(0, Relaxed);
        assert!(p.advance());
        assert_eq!((cur_word(&p), p.limit), (1, 2));
        assert_eq!(p.word_base, p.start + 64 * 16);
        // A block of word 0 comes back, word 1 runs out: word 0 again, not
        // word 2.
        p.free_word(0).store(1 << 5, Relaxed);
        p.free_word(1).store(0, Relaxed);
        assert!(p.advance());
        assert_eq!((cur_word(&p), p.limit), (0, 2));
        // Next fit among the reached words: from the current one onwards.
        p.free_word(1).store(1, Relaxed);
        assert!(p.advance());
        assert_eq!(cur_word(&p), 1);
        // Nothing free among them: the first word past them with a free
        // block (here word 40, as if secure mode had taken words 2-39).
        for w in 0..40 {
            p.free_word(w).store(0, Relaxed);
        }
        assert!(p.advance());
        assert_eq!((cur_word(&p), p.limit), (40, 41));
        assert_eq!(p.word_base, p.start + 40 * 64 * 16);
        // No free block at all: the page is full.
        for w in 0..WORDS {
            p.free_word(w).store(0, Relaxed);
        }
        assert!(!p.advance());
        assert_eq!((cur_word(&p), p.limit), (40, 41));
    }

    /// When most blocks of the reached words are in use, an untouched word
    /// comes first; a reached word's free block is still found when there
    /// is none.
    #[test]
    fn advance_takes_an_untouched_word_when_the_reached_ones_are_dense() {
        let mut rows = rows(0);
        let mut p = page_with_rows(&mut rows, 16);
        p.free_word(0).store(0, Relaxed);
        assert!(p.advance());
        assert_eq!((cur_word(&p), p.limit), (1, 2));
        // One free block in word 0, word 1 handed out: 127 of the 128
        // reached blocks in use.
        p.free_word(0).store(1, Relaxed);
        p.free_word(1).store(0, Relaxed);
        p.set_used(127);
        assert!(p.advance());
        assert_eq!((cur_word(&p), p.limit), (2, 3));
        // At most 3/4 in use (144 of 192): the reached word again.
        p.free_word(2).store(0, Relaxed);
        p.set_used(144);
        assert!(p.advance());
        assert_eq!((cur_word(&p), p.limit), (0, 3));
        // Dense, and no untouched word has a free block: the reached one.
        p.free_word(0).store(0, Relaxed);
        p.free_word(1).store(1 << 63, Relaxed);
        for w in 3..WORDS {
            p.free_word(w).store(0, Relaxed);
        }
        p.set_used(191);
        assert!(p.advance());
        assert_eq!((cur_word(&p), p.limit), (1, 3));
    }

    /// `setup` leaves the words past the one holding index `cap` as they
    /// were: nothing reads them. Rows full of ones in both rows (as an
    /// earlier class could never leave them, the worst case) change
    /// nothing a page of large blocks hands out or collects.
    #[test]
    fn words_past_cap_are_never_read() {
        let mut rows = rows(!0);
        for bsize in [1024, 3072, 32768] {
            let mut p = page_with_rows(&mut rows, bsize);
            let cap = p.cap as usize;
            assert!(cap / 64 + 1 < WORDS);
            assert_eq!(p.collect(), Ok(0), "bsize {bsize}");
            let mut handed = 0;
            loop {
                // SAFETY: cur points into the page's free row.
                let word = unsafe { &*p.cur };
                let bits = word.load(Relaxed);
                if bits == 0 {
                    if !p.advance() {
                        break;
                    }
                    continue;
                }
                handed += bits.count_ones() as usize;
                word.store(0, Relaxed);
            }
            assert_eq!(handed, cap, "bsize {bsize}");
            assert_eq!(p.collect(), Ok(0), "bsize {bsize}");
        }
    }

    /// Calls `f` with a freshly set-up page of every class and its block
    /// size.
    fn each_class_page(mut f: impl FnMut(&Page, usize)) {
        let mut rows = rows(0);
        for c in 1..crate::size_class::NUM_CLASSES {
            let bsize = crate::size_class::class_size(c);
            f(&page_with_rows(&mut rows, bsize), bsize);
        }
    }

    #[test]
    fn block_start_yields_at_most_cap_and_the_bit_test_rejects_cap() {
        each_class_page(|p, bsize| {
            let cap = p.cap as usize;
            // Every block handed out: only pad bits are left.
            for w in 0..WORDS {
                p.free_word(w).store(0, Relaxed);
            }
            for off in 0..crate::segment::PAGE_SIZE {
                let got = p.block_start(off);
                let want = (off % bsize == 0).then_some(off / bsize);
                assert_eq!(got, want, "bsize {bsize} off {off}");
                if let Some(i) = got {
                    assert!(i <= cap, "bsize {bsize} off {off}");
                    // The free path's bit test: it sees the tail as free.
                    let seen = (p.free_word(i / 64).load(Relaxed)
                        | p.xfree_word(i / 64).load(Relaxed))
                        & (1 << (i % 64))
                        != 0;
                    assert_eq!(seen, i == cap, "bsize {bsize} i {i}");
                }
            }
        });
        // A page not in use: its free pointer is a word of ones.
        let mut rows = rows(0);
        let ones = AtomicU64::new(!0);
        let mut p = page_with_rows(&mut rows, 48);
        p.clear(ones.as_ptr().cast());
        assert_eq!(p.block_start(0), Some(0));
        assert_eq!(p.block_start(48), Some(0));
        assert_eq!(p.free_word(0).load(Relaxed) & 1, 1);
    }

    #[test]
    fn block_index_rejects_interior_and_out_of_range_pointers() {
        let mut rows = rows(0);
        let p = page_with_rows(&mut rows, 80);
        assert_eq!(p.block_index(p.start), Some(0));
        assert_eq!(p.block_index(p.start + 80 * 7), Some(7));
        assert_eq!(p.block_index(p.start + 80 * 7 + 16), None);
        assert_eq!(p.block_index(p.start + 80 * p.cap as usize), None);
        assert_eq!(p.block_index(p.start - 16), None);
    }

    #[test]
    fn block_at_matches_division_for_every_class_and_offset() {
        each_class_page(|p, bsize| {
            for off in 0..crate::segment::PAGE_SIZE {
                let want =
                    (off % bsize == 0 && off / bsize < p.cap as usize).then_some(off / bsize);
                assert_eq!(p.block_at(off), want, "bsize {bsize} off {off}");
            }
        });
    }

    #[test]
    fn collect_moves_cross_frees_and_catches_double_frees() {
        let mut rows = rows(0);
        let mut p = page_with_rows(&mut rows, 1024);
        // Hand out all 64 blocks.
        p.free_word(0).store(0, Relaxed);
        p.set_used(64);
        p.xfree_word(0).store(0b1010, Relaxed);
        assert_eq!(p.collect(), Ok(2));
        assert_eq!(p.used(), 62);
        assert_eq!(p.free_word(0).load(Relaxed), 0b1010);
        p.xfree_word(0).store(0b1000, Relaxed);
        assert_eq!(p.collect(), Err(3));
    }

    #[test]
    fn collect_leaves_pad_bits() {
        let mut rows = rows(0);
        let mut p = page_with_rows(&mut rows, 48);
        let cap = p.cap as usize;
        assert_eq!(cap, 1365);
        for w in 0..WORDS {
            p.free_word(w).store(0, Relaxed);
        }
        p.set_used(cap as u16);
        let (w, pad) = (cap / 64, !0u64 << (cap % 64));
        // Another thread freed the first block of the pad word's.
        p.xfree_word(w).fetch_or(1, Relaxed);
        assert_eq!(p.collect(), Ok(1));
        assert_eq!(p.used() as usize, cap - 1);
        assert_eq!(p.free_word(w).load(Relaxed), 1);
        assert_eq!(p.xfree_word(w).load(Relaxed), pad);
        // Nothing pending: nothing collected, the pad stays.
        assert_eq!(p.collect(), Ok(0));
        assert_eq!(p.xfree_word(w).load(Relaxed), pad);
    }
}

//! [`Block`]: one heap allocation made through the global allocator, stamped
//! with a pattern when it is made and checked when it is freed, so that an
//! allocator handing out overlapping, moved or corrupted memory makes the
//! worker fail loudly instead of winning the benchmark.

use std::alloc::{alloc, dealloc, handle_alloc_error, realloc, Layout};
use std::ptr::{self, NonNull};

/// Memory page size assumed when touching every page of a big block.
pub const PAGE: usize = 4096;

/// An owned allocation of `size` bytes (like `Box<[u8]>`, but allocated and
/// freed with exactly the size asked for, and self-checking).
///
/// Pattern: the first `min(size, 8)` bytes hold `tag` (little-endian); blocks
/// of 16 bytes or more end with `!tag`; touched blocks (see
/// [`Block::new_touched`]) also have one byte written on every page.
pub struct Block {
    ptr: NonNull<u8>,
    size: usize,
    tag: u64,
    touched: bool,
}

// SAFETY: a Block owns its memory exclusively, like Box<[u8]>; moving it to
// another thread moves that ownership (which is the point: cross-thread
// frees).
unsafe impl Send for Block {}

/// The layout used for `size` bytes: 8-aligned like most Rust and C data,
/// byte-aligned below 8 bytes so that every allocator takes its plain malloc
/// path.
fn layout(size: usize) -> Layout {
    let align = if size >= 8 { 8 } else { 1 };
    Layout::from_size_align(size, align).expect("block size fits a Layout")
}

impl Block {
    /// Allocates `size` (> 0) bytes and stamps them with `tag`.
    #[inline]
    pub fn new(size: usize, tag: u64) -> Block {
        assert!(size > 0, "Block::new(0)");
        let layout = layout(size);
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(p) else {
            handle_alloc_error(layout)
        };
        let mut b = Block {
            ptr,
            size,
            tag,
            touched: false,
        };
        b.stamp();
        b
    }

    /// Like [`Block::new`], and also writes one byte on every page, as a
    /// program filling a big buffer would (so the pages become resident).
    pub fn new_touched(size: usize, tag: u64) -> Block {
        let mut b = Block::new(size, tag);
        let mark = tag as u8;
        let mut off = PAGE;
        while off + 8 < b.size {
            // SAFETY: 8 <= off < size - 8: inside the block, clear of the
            // header and the tail.
            unsafe { b.ptr.as_ptr().add(off).write(mark) };
            off += PAGE;
        }
        b.touched = true;
        b
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The tag stamped at allocation.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// Start of the memory, for workloads that write into it; call
    /// [`Block::stamp`] afterwards if the header or tail was overwritten.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Writes the header and tail pattern.
    #[inline]
    pub fn stamp(&mut self) {
        let head = self.tag.to_le_bytes();
        let p = self.ptr.as_ptr();
        // SAFETY: the block is valid for `size` bytes and `min(size, 8) <=
        // size`; the tail is written only when `size >= 16`, at `size - 8`.
        unsafe {
            ptr::copy_nonoverlapping(head.as_ptr(), p, self.size.min(8));
            if self.size >= 16 {
                p.add(self.size - 8)
                    .cast::<u64>()
                    .write_unaligned(!self.tag);
            }
        }
    }

    /// Panics (aborting the worker) unless the pattern is intact.
    #[inline]
    pub fn check(&self) {
        self.check_tail_at(self.size);
    }

    /// Checks the header, and the tail as it was when the block was
    /// `size` bytes long.
    fn check_tail_at(&self, size: usize) {
        let p = self.ptr.as_ptr();
        let mut head = [0u8; 8];
        let n = size.min(8);
        // SAFETY: the block is valid for at least `size` bytes (`size` is
        // its current or an earlier, smaller size).
        unsafe { ptr::copy_nonoverlapping(p, head.as_mut_ptr(), n) };
        let mut ok = head[..n] == self.tag.to_le_bytes()[..n];
        if size >= 16 {
            // SAFETY: as above; `size - 8 + 8 <= size`.
            ok &= unsafe { p.add(size - 8).cast::<u64>().read_unaligned() } == !self.tag;
        }
        if self.touched && size > PAGE + 8 {
            // SAFETY: the first touched byte lies inside the block.
            ok &= unsafe { p.add(PAGE).read() } == self.tag as u8;
        }
        if !ok {
            corrupted(p, size, self.tag);
        }
    }

    /// Grows (or shrinks) the block with `realloc`, checks that the old
    /// contents moved with it, fills the new part with `fill` (as appending
    /// data would) and stamps the new tail. `size` must stay >= 8 so the
    /// layout's alignment never changes.
    pub fn resize(&mut self, new_size: usize, fill: u8) {
        assert!(self.size >= 8 && new_size >= 8, "resize below 8 bytes");
        let old = self.size;
        // SAFETY: ptr was allocated with layout(old) by the global
        // allocator; new_size is non-zero and fits a Layout with align 8.
        let p = unsafe { realloc(self.ptr.as_ptr(), layout(old), new_size) };
        let Some(ptr) = NonNull::new(p) else {
            handle_alloc_error(layout(new_size))
        };
        self.ptr = ptr;
        self.size = new_size;
        let kept = old.min(new_size);
        self.check_tail_at(if new_size >= old { old } else { kept.min(8) });
        // Appended data overwrites the old tail.
        let from = old.saturating_sub(8).max(8);
        let end = new_size.saturating_sub(8);
        if end > from {
            // SAFETY: 8 <= from < end <= new_size: inside the block.
            unsafe { p.add(from).write_bytes(fill, end - from) };
        }
        self.stamp();
    }
}

#[cold]
#[inline(never)]
fn corrupted(p: *const u8, size: usize, tag: u64) -> ! {
    panic!("heap corruption: block {p:p} of {size} bytes lost its pattern (tag {tag:#018x})");
}

impl Drop for Block {
    #[inline]
    fn drop(&mut self) {
        self.check();
        // SAFETY: ptr was allocated by the global allocator with
        // layout(size) (resize keeps that invariant) and is freed once.
        unsafe { dealloc(self.ptr.as_ptr(), layout(self.size)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_check_resize() {
        for size in [1, 7, 8, 15, 16, 100, 5000, 70_000] {
            let b = Block::new_touched(size, 0x0123_4567_89ab_cdef ^ size as u64);
            b.check();
        }
        let mut b = Block::new(8, 42);
        for n in [9, 24, 100, 4000, 100_000, 50, 16, 8] {
            b.resize(n, 0x5a);
            b.check();
        }
    }

    #[test]
    #[should_panic(expected = "heap corruption")]
    fn detects_corruption() {
        // Leaked: dropping it would check (and panic) again while unwinding.
        let mut b = std::mem::ManuallyDrop::new(Block::new(64, 1));
        // SAFETY: inside the 64-byte block.
        unsafe { b.as_mut_ptr().add(60).write(0) };
        b.check();
    }
}

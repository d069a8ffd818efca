//! Model-based property test: random sequences of allocations, zeroed
//! allocations, reallocations and frees, across every size range (small,
//! medium, large, huge) and alignment (1 B .. 2 MiB), through
//! `tinymalloc::TinyMalloc` used as a plain `GlobalAlloc` value (not as the
//! global allocator: the test harness itself runs on the system allocator)
//! and through `tinymalloc::raw`.
//!
//! A shadow model keeps every live block's pointer, size, alignment and id.
//! Every block is filled with a pattern derived from its id; after each
//! operation the model checks that
//! - the touched block's contents are intact (realloc keeps min(old, new)
//!   bytes), and a sample of every other live block is intact;
//! - zeroed allocations are zero;
//! - alignment is honoured and `usable_size >= size`;
//! - no two live blocks overlap (ranges of their usable sizes, in a BTreeMap);
//! - every live block is `owns()`ed.
//!
//! Every few operations, and at the end, every live block is checked whole.

use core::alloc::{GlobalAlloc, Layout};
use proptest::prelude::*;
use std::collections::BTreeMap;
use tinymalloc::{raw, TinyMalloc};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
static TM: TinyMalloc = TinyMalloc;

// ---------------------------------------------------------------------------
// Patterns

/// The pattern word `w` (bytes 8w..8w+8) of the block with id `id`.
#[inline]
fn pattern_word(id: u64, w: usize) -> u64 {
    let x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (w as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^ (x >> 29) ^ 0x5555_0000_AAAA_0001
}

#[inline]
fn pattern_byte(id: u64, i: usize) -> u8 {
    pattern_word(id, i / 8).to_le_bytes()[i % 8]
}

/// Writes the pattern of `id` into bytes `[from, to)` of the block at `p`
/// (`p` is at least 8-aligned).
unsafe fn fill(p: *mut u8, from: usize, to: usize, id: u64) {
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

/// The first offset in `[from, to)` where the block at `p` does not hold
/// the pattern of `id`.
unsafe fn first_mismatch(p: *const u8, from: usize, to: usize, id: u64) -> Option<usize> {
    let mut i = from;
    while i < to && !i.is_multiple_of(8) {
        if unsafe { p.add(i).read() } != pattern_byte(id, i) {
            return Some(i);
        }
        i += 1;
    }
    while i + 8 <= to {
        if unsafe { (p.add(i) as *const u64).read() } != pattern_word(id, i / 8) {
            for k in i..i + 8 {
                if unsafe { p.add(k).read() } != pattern_byte(id, k) {
                    return Some(k);
                }
            }
        }
        i += 8;
    }
    while i < to {
        if unsafe { p.add(i).read() } != pattern_byte(id, i) {
            return Some(i);
        }
        i += 1;
    }
    None
}

unsafe fn first_nonzero(p: *const u8, size: usize) -> Option<usize> {
    (0..size).find(|&i| unsafe { p.add(i).read() } != 0)
}

// ---------------------------------------------------------------------------
// Operations

#[derive(Clone, Copy, Debug)]
enum AllocKind {
    /// `GlobalAlloc::alloc`.
    Global,
    /// `GlobalAlloc::alloc_zeroed`.
    GlobalZeroed,
    /// `raw::malloc` (align <= 16) or `raw::malloc_aligned`.
    Malloc,
    /// `raw::zalloc` (align <= 16) or `raw::zalloc_aligned`.
    Zalloc,
    /// `raw::calloc` (align <= 16; else as Zalloc).
    Calloc,
}

#[derive(Clone, Copy, Debug)]
enum FreeKind {
    /// `GlobalAlloc::dealloc` with the block's layout.
    Global,
    /// `raw::free`.
    Free,
    /// `raw::free_sized` with the block's size and alignment.
    FreeSized,
}

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align: usize,
        kind: AllocKind,
    },
    Realloc {
        pick: usize,
        size: usize,
        global: bool,
        new_align: Option<usize>,
    },
    Free {
        pick: usize,
        kind: FreeKind,
    },
    /// Checks one block whole, and its usable size.
    Check {
        pick: usize,
    },
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        55 => 0usize..=64,
        22 => 65usize..=32 * KIB,
        6 => 32 * KIB + 1..=256 * KIB,
        3 => 256 * KIB + 1..=2 * MIB,
        1 => 2 * MIB + 1..=8 * MIB,
        6 => prop::sample::select(vec![
            0usize, 1, 15, 16, 17, 48, 63, 64, 65, 80, 81, 1024, 4095, 4096, 4097,
            32 * KIB - 1, 32 * KIB, 32 * KIB + 1, 36 * KIB, 64 * KIB,
            2 * MIB - 1, 2 * MIB, 2 * MIB + 1,
        ]),
    ]
}

fn align_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        14 => (0u32..=4).prop_map(|s| 1usize << s),
        5 => (5u32..=12).prop_map(|s| 1usize << s),
        1 => Just(64 * KIB),
        1 => Just(2 * MIB),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let alloc_kind = prop_oneof![
        Just(AllocKind::Global),
        Just(AllocKind::GlobalZeroed),
        Just(AllocKind::Malloc),
        Just(AllocKind::Zalloc),
        Just(AllocKind::Calloc),
    ];
    let free_kind = prop_oneof![
        Just(FreeKind::Global),
        Just(FreeKind::Free),
        Just(FreeKind::FreeSized)
    ];
    prop_oneof![
        45 => (size_strategy(), align_strategy(), alloc_kind)
            .prop_map(|(size, align, kind)| Op::Alloc { size, align, kind }),
        20 => (any::<usize>(), size_strategy(), any::<bool>(), prop::option::weighted(0.15, align_strategy()))
            .prop_map(|(pick, size, global, new_align)| Op::Realloc { pick, size, global, new_align }),
        30 => (any::<usize>(), free_kind).prop_map(|(pick, kind)| Op::Free { pick, kind }),
        5 => any::<usize>().prop_map(|pick| Op::Check { pick }),
    ]
}

// ---------------------------------------------------------------------------
// The model

#[derive(Debug)]
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    usable: usize,
    id: u64,
}

#[derive(Default)]
struct Model {
    live: Vec<Block>,
    /// start -> (end, id) of every live block's usable range.
    ranges: BTreeMap<usize, (usize, u64)>,
    next_id: u64,
    ops: usize,
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("valid layout")
}

impl Model {
    fn check_placement(
        &self,
        p: *mut u8,
        size: usize,
        align: usize,
        what: &str,
    ) -> Result<usize, TestCaseError> {
        prop_assert!(!p.is_null(), "{what}: null for size {size} align {align}");
        prop_assert_eq!(
            p as usize % align.max(raw::MIN_ALIGN),
            0,
            "{}: {:p} not aligned to {}",
            what,
            p,
            align
        );
        // SAFETY: p is a live block of tinymalloc.
        let usable = unsafe { raw::usable_size(p) };
        prop_assert!(
            usable >= size,
            "{what}: usable {usable} < size {size} at {p:p}"
        );
        // SAFETY: any address may be asked.
        prop_assert!(
            unsafe { raw::owns(p) },
            "{what}: owns() false for live {p:p}"
        );
        Ok(usable)
    }

    fn insert_range(&mut self, start: usize, usable: usize, id: u64) -> Result<(), TestCaseError> {
        let end = start + usable;
        if let Some((&s, &(e, other))) = self.ranges.range(..=start).next_back() {
            prop_assert!(
                e <= start,
                "block {id} [{start:#x},{end:#x}) overlaps block {other} [{s:#x},{e:#x})"
            );
        }
        if let Some((&s, &(e, other))) = self.ranges.range(start..).next() {
            prop_assert!(
                s >= end,
                "block {id} [{start:#x},{end:#x}) overlaps block {other} [{s:#x},{e:#x})"
            );
        }
        self.ranges.insert(start, (end, id));
        Ok(())
    }

    fn remove_range(&mut self, start: usize) {
        self.ranges.remove(&start).expect("range of a live block");
    }

    fn check_whole(b: &Block, what: &str) -> Result<(), TestCaseError> {
        // SAFETY: b is live with b.usable bytes.
        if let Some(off) = unsafe { first_mismatch(b.ptr, 0, b.usable, b.id) } {
            return Err(TestCaseError::fail(format!(
                "{what}: block {} at {:p} (size {}, usable {}, align {}) corrupted at offset {off}",
                b.id, b.ptr, b.size, b.usable, b.align
            )));
        }
        Ok(())
    }

    /// Checks the first, middle and last 64 bytes of every live block.
    fn check_sample(&self) -> Result<(), TestCaseError> {
        for b in &self.live {
            let n = b.usable;
            let mid = (n / 2) & !7;
            for (from, to) in [
                (0, n.min(64)),
                (n.saturating_sub(64), n),
                (mid, (mid + 64).min(n)),
            ] {
                // SAFETY: b is live.
                if let Some(off) = unsafe { first_mismatch(b.ptr, from, to, b.id) } {
                    return Err(TestCaseError::fail(format!(
                        "after op {}: block {} at {:p} (size {}, usable {}) corrupted at offset {off}",
                        self.ops, b.id, b.ptr, b.size, n
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_all(&self) -> Result<(), TestCaseError> {
        for b in &self.live {
            Self::check_whole(b, &format!("full check after op {}", self.ops))?;
        }
        Ok(())
    }

    fn alloc(&mut self, size: usize, align: usize, kind: AllocKind) -> Result<(), TestCaseError> {
        // GlobalAlloc does not allow size 0: use the raw functions there.
        let kind = match kind {
            AllocKind::Global if size == 0 => AllocKind::Malloc,
            AllocKind::GlobalZeroed if size == 0 => AllocKind::Zalloc,
            k => k,
        };
        // SAFETY: valid layouts and sizes; the results are checked.
        let (p, zeroed) = unsafe {
            match kind {
                AllocKind::Global => (TM.alloc(layout(size, align)), false),
                AllocKind::GlobalZeroed => (TM.alloc_zeroed(layout(size, align)), true),
                AllocKind::Malloc if align <= raw::MIN_ALIGN => (raw::malloc(size), false),
                AllocKind::Malloc => (raw::malloc_aligned(size, align), false),
                AllocKind::Calloc if align <= raw::MIN_ALIGN => match size {
                    s if s % 2 == 0 && s > 0 => (raw::calloc(2, s / 2), true),
                    s => (raw::calloc(s, 1), true),
                },
                AllocKind::Zalloc if align <= raw::MIN_ALIGN => (raw::zalloc(size), true),
                AllocKind::Zalloc | AllocKind::Calloc => (raw::zalloc_aligned(size, align), true),
            }
        };
        let what = format!("op {} alloc {kind:?} size {size} align {align}", self.ops);
        let usable = self.check_placement(p, size, align, &what)?;
        if zeroed {
            // SAFETY: p holds size bytes.
            if let Some(off) = unsafe { first_nonzero(p, size) } {
                return Err(TestCaseError::fail(format!(
                    "{what}: zeroed block {p:p} has non-zero byte at {off}"
                )));
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.insert_range(p as usize, usable, id)?;
        // SAFETY: p holds `usable` writable bytes.
        unsafe { fill(p, 0, usable, id) };
        self.live.push(Block {
            ptr: p,
            size,
            align,
            usable,
            id,
        });
        Ok(())
    }

    fn realloc(
        &mut self,
        pick: usize,
        size: usize,
        global: bool,
        new_align: Option<usize>,
    ) -> Result<(), TestCaseError> {
        if self.live.is_empty() {
            return Ok(());
        }
        let i = pick % self.live.len();
        let old = &self.live[i];
        let (old_ptr, old_size, old_usable, id) = (old.ptr, old.size, old.usable, old.id);
        let what = format!(
            "op {} realloc of block {id} {old_ptr:p} (size {old_size}, align {}) to {size}",
            self.ops, old.align
        );
        Self::check_whole(old, &format!("{what} (before)"))?;
        // A new alignment is only asked through the raw API.
        let use_global = global && new_align.is_none() && size > 0 && old_size > 0;
        let align = if use_global {
            old.align
        } else {
            new_align.unwrap_or(old.align)
        };
        // SAFETY: old_ptr is live with this layout; sizes are valid.
        let p = unsafe {
            if use_global {
                TM.realloc(old_ptr, layout(old_size, old.align), size)
            } else if align <= raw::MIN_ALIGN {
                raw::realloc(old_ptr, size)
            } else {
                raw::realloc_aligned(old_ptr, size, align)
            }
        };
        prop_assert!(!p.is_null(), "{what}: null");
        self.remove_range(old_ptr as usize);
        let usable = self.check_placement(p, size, align, &what)?;
        // The first min(old, new) requested bytes must have come along.
        let kept = old_size.min(size);
        // SAFETY: p holds at least `size` bytes.
        if let Some(off) = unsafe { first_mismatch(p, 0, kept, id) } {
            return Err(TestCaseError::fail(format!(
                "{what}: new block {p:p} lost contents at offset {off} (kept {kept})"
            )));
        }
        // When the block stayed in place its whole old usable prefix stays.
        if p == old_ptr {
            let stay = old_usable.min(usable);
            // SAFETY: as above.
            if let Some(off) = unsafe { first_mismatch(p, 0, stay, id) } {
                return Err(TestCaseError::fail(format!(
                    "{what}: in place, corrupted at offset {off}"
                )));
            }
        }
        self.insert_range(p as usize, usable, id)?;
        // SAFETY: p holds `usable` writable bytes.
        unsafe { fill(p, kept, usable, id) };
        self.live[i] = Block {
            ptr: p,
            size,
            align,
            usable,
            id,
        };
        Ok(())
    }

    fn free(&mut self, pick: usize, kind: FreeKind) -> Result<(), TestCaseError> {
        if self.live.is_empty() {
            return Ok(());
        }
        let i = pick % self.live.len();
        let b = self.live.swap_remove(i);
        Self::check_whole(&b, &format!("op {} free {kind:?}", self.ops))?;
        self.remove_range(b.ptr as usize);
        // Workaround for a tinymalloc bug (see tests/errors.rs,
        // `free_sized_after_small_realloc_shrink`): after an in-place
        // `realloc` shrink of a small block, `free_sized` with the size
        // given to realloc is rejected. Use plain `free` there so the model
        // keeps testing everything else.
        let sized_ok = b.align > raw::MIN_ALIGN || b.size * 2 + 2 * raw::MIN_ALIGN >= b.usable;
        // SAFETY: b is a live block with this layout; freed once.
        unsafe {
            match kind {
                FreeKind::Global if b.size > 0 => TM.dealloc(b.ptr, layout(b.size, b.align)),
                FreeKind::FreeSized if sized_ok => raw::free_sized(b.ptr, b.size, b.align.max(1)),
                _ => raw::free(b.ptr),
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.ops += 1;
        match *op {
            Op::Alloc { size, align, kind } => self.alloc(size, align, kind)?,
            Op::Realloc {
                pick,
                size,
                global,
                new_align,
            } => self.realloc(pick, size, global, new_align)?,
            Op::Free { pick, kind } => self.free(pick, kind)?,
            Op::Check { pick } => {
                if !self.live.is_empty() {
                    let b = &self.live[pick % self.live.len()];
                    // SAFETY: b is live.
                    let usable = unsafe { raw::usable_size(b.ptr) };
                    prop_assert_eq!(usable, b.usable, "usable size of block {} changed", b.id);
                    Self::check_whole(b, "check")?;
                }
            }
        }
        if self.ops.is_multiple_of(32) {
            self.check_all()
        } else {
            self.check_sample()
        }
    }

    /// Checks and frees everything left.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        self.check_all()?;
        while let Some(b) = self.live.pop() {
            self.remove_range(b.ptr as usize);
            // SAFETY: live block, freed once.
            unsafe { raw::free(b.ptr) };
            self.check_sample()?;
        }
        prop_assert!(self.ranges.is_empty());
        Ok(())
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // A failed case still gives its blocks back, so later cases start
        // from a sane heap.
        for b in self.live.drain(..) {
            // SAFETY: live block, freed once.
            unsafe { raw::free(b.ptr) };
        }
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut m = Model::default();
    for op in ops {
        m.apply(op)?;
    }
    m.finish()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(192))]

    /// Mixed sequences across all size ranges and alignments.
    #[test]
    fn model_mixed(ops in prop::collection::vec(op_strategy(), 1..300)) {
        run(&ops)?;
    }
}

fn small_op_strategy() -> impl Strategy<Value = Op> {
    let size = prop_oneof![4 => 0usize..=64, 1 => 65usize..=1024];
    let align =
        prop_oneof![6 => Just(1usize), 2 => Just(16usize), 1 => Just(32usize), 1 => Just(64usize)];
    let alloc_kind = prop_oneof![
        Just(AllocKind::Global),
        Just(AllocKind::Malloc),
        Just(AllocKind::Zalloc)
    ];
    let free_kind = prop_oneof![
        Just(FreeKind::Global),
        Just(FreeKind::Free),
        Just(FreeKind::FreeSized)
    ];
    prop_oneof![
        50 => (size.clone(), align, alloc_kind).prop_map(|(size, align, kind)| Op::Alloc { size, align, kind }),
        15 => (any::<usize>(), size, any::<bool>()).prop_map(|(pick, size, global)| Op::Realloc { pick, size, global, new_align: None }),
        35 => (any::<usize>(), free_kind).prop_map(|(pick, kind)| Op::Free { pick, kind }),
    ]
}

proptest! {
    #![proptest_config(config(64))]

    /// Long sequences of small blocks: fills pages, frees them back to
    /// empty, reuses them (page retirement and reuse paths).
    #[test]
    fn model_small_churn(ops in prop::collection::vec(small_op_strategy(), 500..2000)) {
        run(&ops)?;
    }
}

#[test]
fn model_fixed_sequence_all_ranges() {
    // A deterministic sequence through every range, so a failure here is
    // reproducible without proptest.
    let mut ops = Vec::new();
    for &size in &[
        0usize,
        1,
        64,
        65,
        32 * KIB,
        32 * KIB + 1,
        2 * MIB,
        2 * MIB + 1,
        5 * MIB,
    ] {
        for &align in &[1usize, 16, 64, 4096, 64 * KIB, 2 * MIB] {
            ops.push(Op::Alloc {
                size,
                align,
                kind: AllocKind::Malloc,
            });
            ops.push(Op::Alloc {
                size,
                align,
                kind: AllocKind::GlobalZeroed,
            });
        }
    }
    let n = ops.len();
    for (k, &size) in [100usize, 40 * KIB, 3 * MIB, 10, 0, MIB]
        .iter()
        .cycle()
        .take(n)
        .enumerate()
    {
        ops.push(Op::Realloc {
            pick: k % n,
            size,
            global: k % 2 == 0,
            new_align: None,
        });
    }
    for k in 0..n {
        ops.push(Op::Free {
            pick: 7 * k + 3,
            kind: FreeKind::FreeSized,
        });
    }
    run(&ops).unwrap();
}

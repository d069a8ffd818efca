//! Fuzz target `ops`: one thread, a sequence of allocations (every entry
//! point, every size range, alignments up to 4 MiB), reallocations, frees
//! and checks, decoded from the fuzzer's bytes, against a shadow model (see
//! `src/lib.rs`): every block's contents, alignment, `usable_size >= size`,
//! `owns`, and that no two live blocks overlap. Blocks left at the end of
//! an input are verified and freed (the allocator's state carries over from
//! input to input on the fuzzer's thread); then nothing may be in use and
//! what tinymalloc keeps mapped must stay bounded.
//!
//! Op byte (then its arguments):
//!   0-5  alloc: api(byte) size align
//!   6-7  free:  pick(byte) how(byte)
//!   8-9  realloc: pick(byte) size
//!   10   check one block whole: pick(byte)
//!   11   trim
//!   12-15 alloc of a small size (the common case): api(byte) size(byte)
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymalloc::raw;
use tinymalloc_fuzz::{alloc, check_shape, free, realloc, verify, Block, Input, Ranges, LIVE_CAP};

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let mut live: Vec<Block> = Vec::new();
    let mut ranges = Ranges::default();
    let mut next_id = 1u64;
    while !inp.done() {
        let op = inp.byte() % 16;
        match op {
            0..=5 | 12..=15 => {
                let how = inp.byte();
                let (size, align) = if op >= 12 {
                    (inp.byte() as usize % 129, 1 << (inp.byte() % 5))
                } else {
                    (inp.size(), inp.align())
                };
                if ranges.live + size > LIVE_CAP {
                    if let Some(b) = live.pop() {
                        ranges.remove(&b);
                        free(&b, how);
                    }
                    continue;
                }
                let Some(b) = alloc(how, size, align, next_id) else {
                    panic!("alloc({size}, align {align}, api {how}) returned null");
                };
                next_id += 1;
                ranges.insert(&b);
                live.push(b);
            }
            6 | 7 => {
                let (pick, how) = (inp.byte() as usize, inp.byte());
                if !live.is_empty() {
                    let b = live.swap_remove(pick % live.len());
                    ranges.remove(&b);
                    free(&b, how);
                }
            }
            8 | 9 => {
                let pick = inp.byte() as usize;
                let size = inp.size();
                if !live.is_empty() {
                    let i = pick % live.len();
                    let b = live[i];
                    if ranges.live - b.size + size > LIVE_CAP {
                        continue;
                    }
                    ranges.remove(&b);
                    let Some(nb) = realloc(&b, size) else {
                        panic!("realloc({:#x}, {size}) returned null", b.p);
                    };
                    ranges.insert(&nb);
                    live[i] = nb;
                }
            }
            10 => {
                let pick = inp.byte() as usize;
                if !live.is_empty() {
                    let b = live[pick % live.len()];
                    check_shape(&b, "check");
                    // SAFETY: b is live.
                    unsafe { verify(b.p as *const u8, 0, b.size, b.size, b.id, "check") };
                }
            }
            _ => {
                raw::trim();
            }
        }
    }
    for b in live.drain(..) {
        ranges.remove(&b);
        free(&b, b.id as u8);
    }
    // Nothing lost: no block in use, a bounded footprint.
    tinymalloc_fuzz::check_nothing_lost(512 << 20);
});

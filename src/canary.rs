//! Secure mode's canary: the slack after each small or medium block.
//!
//! ```text
//!  block (bsize bytes, a size class chosen for n + PAD)
//!  ┌──────────────────────────┬──────────────────────────┬─────────┐
//!  │ user bytes [0, n)        │ canary bytes [n, bsize-4)│ trailer │
//!  └──────────────────────────┴──────────────────────────┴─────────┘
//!  canary byte n  = 0                        (string reads stop here)
//!  canary byte j  = pattern(block)[j % 8]   (j > n; never zero)
//!  trailer (u32)  = (bsize - n) ^ tkey(block)      live block
//!                 = QUARANTINED ^ tkey(block)      freed, in quarantine
//! ```
//! The requested size `n` is recovered at free time from the trailer, with
//! no header before the block. At least [`MIN_CANARY`] canary bytes follow
//! the requested size, so an overflow of 1 to 8 bytes always changes one
//! (but for a single NUL written at `n`: see below).
//!
//! The first canary byte is zero, as in hardened_malloc and glibc's stack
//! protector: `strlen` or `printf("%s")` of an unterminated string stops at
//! the end of the block instead of running through the canary and handing
//! its secret bytes to the program's output. The price: a single NUL
//! written one byte past the end leaves the canary as it was.
//! The pattern and the trailer key depend on a per-process secret and the
//! block's address, so neither can be guessed or copied from another block.
//!
//! Freed blocks are all zero but for the quarantine trailer; a block handed
//! out again must be entirely zero (a write after free changed it).

use crate::error::Fault;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Size of the trailer that encodes the slack length.
pub const TRAILER: usize = 4;
/// Canary bytes guaranteed after the requested size.
pub const MIN_CANARY: usize = 8;
/// Bytes secure mode adds to a request before choosing its class.
pub const PAD: usize = MIN_CANARY + TRAILER;
/// The trailer value of a freed block waiting in the quarantine (no slack
/// can be this long).
const QUARANTINED: u32 = u32::MAX;

/// The per-process secret (set once, before any block exists).
static KEY: AtomicU64 = AtomicU64::new(0x5bd1_e995_9e37_79b9);

/// Sets the secret (at secure mode's initialisation).
pub fn set_key(key: u64) {
    KEY.store(key, Relaxed);
}

/// The canary pattern of the block at `addr`: eight bytes, none zero.
#[inline]
fn pattern(addr: usize) -> u64 {
    let x = (KEY.load(Relaxed) ^ addr as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x ^ (x >> 29)) | 0x0101_0101_0101_0101
}

/// The trailer key of the block at `addr`.
#[inline]
fn tkey(addr: usize) -> u32 {
    (pattern(addr) >> 7) as u32
}

/// Reads the trailer of the block at `p`.
///
/// # Safety
/// `p` is a block of `bsize >= PAD` bytes owned by the caller.
unsafe fn trailer(p: *mut u8, bsize: usize) -> u32 {
    // SAFETY: the last TRAILER bytes of the block.
    let t = unsafe { (p.add(bsize - TRAILER) as *const u32).read_unaligned() };
    t ^ tkey(p as usize)
}

/// Writes the trailer of the block at `p`.
///
/// # Safety
/// As [`trailer`].
unsafe fn set_trailer(p: *mut u8, bsize: usize, v: u32) {
    // SAFETY: the last TRAILER bytes of the block.
    unsafe { (p.add(bsize - TRAILER) as *mut u32).write_unaligned(v ^ tkey(p as usize)) };
}

/// Fills the slack of a block just handed out for `n` bytes.
///
/// # Safety
/// `p` is a live block of `bsize >= n + PAD` bytes owned by the caller.
pub unsafe fn arm(p: *mut u8, n: usize, bsize: usize) {
    debug_assert!(n + PAD <= bsize);
    // SAFETY: [n, bsize - TRAILER) lies in the block.
    unsafe {
        canary_bytes(p, n, bsize - TRAILER, true);
        set_trailer(p, bsize, (bsize - n) as u32);
    }
}

/// Checks the slack of a live block and returns its requested size;
/// `Err(DoubleFree)` when the block waits in the quarantine (it was already
/// freed), `Err(HeapOverflow)` when the canary or the trailer was changed.
///
/// # Safety
/// `p` is a block of `bsize >= PAD` bytes that is not really free.
pub unsafe fn check(p: *mut u8, bsize: usize) -> Result<usize, Fault> {
    // SAFETY: forwarded contract.
    let slack = unsafe { trailer(p, bsize) };
    if slack == QUARANTINED {
        return Err(Fault::DoubleFree);
    }
    let slack = slack as usize;
    if slack < PAD || slack > bsize {
        return Err(Fault::HeapOverflow);
    }
    let n = bsize - slack;
    // SAFETY: [n, bsize - TRAILER) lies in the block.
    if unsafe { canary_bytes(p, n, bsize - TRAILER, false) } {
        Ok(n)
    } else {
        Err(Fault::HeapOverflow)
    }
}

/// Writes (`set`) or checks the canary bytes `[from, to)` (at least 8) of
/// the block at `p`: byte `from` is zero, any other byte j is byte `j % 8`
/// (little-endian) of the block's pattern. Done 8 bytes at a time with
/// unaligned accesses, the last 8 overlapping the previous ones: the 8
/// bytes at j are the pattern rotated by `j % 8` bytes. True when they
/// were intact.
///
/// # Safety
/// `[p + from, p + to)` lies in the caller's block; `to - from >= 8`.
unsafe fn canary_bytes(p: *mut u8, from: usize, to: usize, set: bool) -> bool {
    debug_assert!(to - from >= 8);
    let x = pattern(p as usize);
    let mut ok = true;
    let mut j = from;
    loop {
        let at = j.min(to - 8);
        let mut want = x.rotate_right(8 * (at & 7) as u32);
        if at == from {
            want &= !0xff;
        }
        // SAFETY: [at, at + 8) lies in [from, to).
        unsafe {
            let q = p.add(at) as *mut u64;
            if set {
                q.write_unaligned(want.to_le());
            } else {
                ok &= u64::from_le(q.read_unaligned()) == want;
            }
        }
        if at == to - 8 {
            return ok;
        }
        j += 8;
    }
}

/// Zeroes a freed block and marks it as waiting in the quarantine.
///
/// # Safety
/// `p` is a block of `bsize >= PAD` bytes that is being freed.
pub unsafe fn bury(p: *mut u8, bsize: usize) {
    // SAFETY: the block is the caller's.
    unsafe {
        core::ptr::write_bytes(p, 0, bsize - TRAILER);
        set_trailer(p, bsize, QUARANTINED);
    }
}

/// On leaving the quarantine: true when the block is still zero with its
/// quarantine mark (nothing wrote to it after the free); the mark is then
/// cleared, leaving the block all zero.
///
/// # Safety
/// `p` is a quarantined block of `bsize >= PAD` bytes.
pub unsafe fn exhume(p: *mut u8, bsize: usize) -> bool {
    // SAFETY: the block is the caller's.
    unsafe {
        if trailer(p, bsize) != QUARANTINED || !is_zero(p, bsize - TRAILER) {
            return false;
        }
        (p.add(bsize - TRAILER) as *mut u32).write_unaligned(0);
    }
    true
}

/// True when the quarantined block at `p` still has its mark and its first
/// `HEAD` bytes are still zero (where a stale pointer's writes, such as a
/// forged free-list link, usually land); changes nothing. The whole block
/// is checked when it leaves the quarantine ([`exhume`]).
///
/// # Safety
/// `p` is a quarantined block of `bsize >= PAD` bytes.
pub unsafe fn head_intact(p: *mut u8, bsize: usize) -> bool {
    const HEAD: usize = 64;
    // SAFETY: the block is readable (quarantined blocks stay in use).
    unsafe { trailer(p, bsize) == QUARANTINED && is_zero(p, HEAD.min(bsize - TRAILER)) }
}

/// True when the `len` bytes at `p` (8-byte aligned) are all zero.
///
/// # Safety
/// `[p, p+len)` is readable.
pub unsafe fn is_zero(p: *const u8, len: usize) -> bool {
    let words = len / 8;
    let mut acc = 0u64;
    for i in 0..words {
        // SAFETY: inside the range; p is 8-byte aligned.
        acc |= unsafe { (p as *const u64).add(i).read() };
    }
    for j in words * 8..len {
        // SAFETY: inside the range.
        acc |= unsafe { *p.add(j) } as u64;
    }
    acc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(align(16))]
    struct Block([u8; 96]);

    #[test]
    fn a_one_or_eight_byte_overflow_is_seen() {
        let mut b = Block([0; 96]);
        let p = b.0.as_mut_ptr();
        for n in [0usize, 1, 40, 84] {
            for len in [1usize, 8] {
                // SAFETY: the block is local and 96 bytes long.
                unsafe {
                    arm(p, n, 96);
                    assert_eq!(check(p, 96), Ok(n));
                    core::ptr::write_bytes(p.add(n), b'v', len);
                    assert_eq!(check(p, 96), Err(Fault::HeapOverflow), "n {n} len {len}");
                    arm(p, n, 96);
                    core::ptr::write_bytes(p.add(n), 0, len);
                    let seen = check(p, 96) == Err(Fault::HeapOverflow);
                    assert_eq!(seen, len > 1, "zeros: n {n} len {len}");
                }
            }
        }
    }

    #[test]
    fn only_the_first_canary_byte_is_zero_and_the_trailer_is_checked() {
        let mut b = Block([0; 96]);
        let p = b.0.as_mut_ptr();
        // SAFETY: the block is local and 96 bytes long.
        unsafe {
            b.0[..10].fill(b'a');
            arm(p, 10, 96);
            // An unterminated string of the block's 10 bytes ends at 10.
            assert_eq!(b.0.iter().position(|&x| x == 0), Some(10));
            assert!(b.0[11..92].iter().all(|&x| x != 0));
            b.0[95] ^= 0x40;
            assert_eq!(check(b.0.as_mut_ptr(), 96), Err(Fault::HeapOverflow));
        }
    }

    #[test]
    fn head_intact_sees_writes_to_the_first_64_bytes_only() {
        let mut b = Block([0; 96]);
        let p = b.0.as_mut_ptr();
        // SAFETY: the block is local and 96 bytes long.
        unsafe {
            bury(p, 96);
            assert!(head_intact(p, 96));
            b.0[70] = 1; // past the head: left to exhume
            assert!(head_intact(b.0.as_mut_ptr(), 96));
            assert!(!exhume(b.0.as_mut_ptr(), 96));
            bury(b.0.as_mut_ptr(), 96);
            b.0[3] = 0x41; // a forged link at the start
            assert!(!head_intact(b.0.as_mut_ptr(), 96));
        }
    }

    #[test]
    fn buried_blocks_are_double_frees_and_exhume_finds_writes() {
        let mut b = Block([0; 96]);
        let p = b.0.as_mut_ptr();
        // SAFETY: the block is local and 96 bytes long.
        unsafe {
            arm(p, 30, 96);
            bury(p, 96);
            assert_eq!(check(p, 96), Err(Fault::DoubleFree));
            assert!(exhume(p, 96));
            assert!(is_zero(p, 96));
            bury(p, 96);
            *p.add(5) = 1;
            assert!(!exhume(p, 96));
        }
    }
}

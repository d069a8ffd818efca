//! A tiny spin lock (test-and-test-and-set, yielding after a while).
//!
//! Used for arenas, the heap pool and huge-block bookkeeping: critical
//! sections are short and never allocate. It is not a std lock, holds no
//! OS resources, and can be re-initialised in a fork child.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// Invariant: `locked` is true exactly while one thread is inside a critical
/// section guarded by this lock.
pub struct SpinLock {
    locked: AtomicBool,
}

impl SpinLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
        }
    }

    /// Acquires the lock, spinning then yielding until it is free.
    #[inline]
    pub fn lock(&self) {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
    }

    #[cold]
    fn lock_slow(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    core::hint::spin_loop();
                    spins += 1;
                } else {
                    // SAFETY: sched_yield has no preconditions.
                    unsafe { libc::sched_yield() };
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Takes the lock if it is free; true when taken.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Releases the lock; the caller must hold it.
    #[inline]
    pub fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Forces the lock open (fork child: the holder no longer exists).
    pub fn reset(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// The three moments of a fork, for locks that must not be held across it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ForkPhase {
    /// Before fork: take the lock.
    Prepare,
    /// After fork, in the parent: release it.
    Parent,
    /// After fork, in the child: the holder is gone; force it open.
    Child,
}

impl ForkPhase {
    /// Applies this phase to `lock`.
    pub fn apply(self, lock: &SpinLock) {
        match self {
            ForkPhase::Prepare => lock.lock(),
            ForkPhase::Parent => lock.unlock(),
            ForkPhase::Child => lock.reset(),
        }
    }
}

/// A value reachable only under its own [`SpinLock`].
///
/// Invariant: `value` is read or written only between `lock.lock()` and
/// `lock.unlock()` (by `with` / `try_with`), or by a fork handler holding
/// `lock` through [`Locked::lock`].
pub struct Locked<T> {
    lock: SpinLock,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only ever touched by the thread holding the lock.
unsafe impl<T> Sync for Locked<T> {}

impl<T> Locked<T> {
    /// `value`, unlocked.
    pub const fn new(value: T) -> Self {
        Locked {
            lock: SpinLock::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value with the lock held.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.lock.lock();
        // SAFETY: the lock is held, so no other reference exists.
        let r = f(unsafe { &mut *self.value.get() });
        self.lock.unlock();
        r
    }

    /// Runs `f` on the value if the lock is free now; None otherwise.
    pub fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if !self.lock.try_lock() {
            return None;
        }
        // SAFETY: the lock is held, so no other reference exists.
        let r = f(unsafe { &mut *self.value.get() });
        self.lock.unlock();
        Some(r)
    }

    /// The lock itself, for the fork handlers.
    pub fn lock(&self) -> &SpinLock {
        &self.lock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn lock_excludes_other_threads() {
        struct Shared {
            lock: SpinLock,
            value: core::cell::UnsafeCell<u64>,
        }
        // SAFETY: value is only touched with the lock held.
        unsafe impl Sync for Shared {}
        let s = Arc::new(Shared {
            lock: SpinLock::new(),
            value: 0.into(),
        });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        s.lock.lock();
                        // SAFETY: the lock is held.
                        unsafe { *s.value.get() += 1 };
                        s.lock.unlock();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(unsafe { *s.value.get() }, 40_000);
    }
}

//! Scenarios of the cross-thread free protocol (see src/lib.rs and
//! README.md). Under `--cfg loom` each is checked in every interleaving
//! (up to the preemption bound); otherwise each runs 2000 times on real
//! threads.
//!
//! Blocks 0..3 of one page start allocated. `ALL` = every block.

use tinymalloc_model::{model, thread, World, BLOCKS};

const ALL: u64 = (1 << BLOCKS) - 1;

/// Two threads free blocks of a live owner's segment while the owner runs
/// its slow path; the owner then frees the last block itself.
#[test]
fn owner_collects_remote_frees() {
    model(|| {
        let w = World::new(1);
        let r1 = {
            let w = w.clone();
            thread::spawn(move || w.free_remote(0))
        };
        let r2 = {
            let w = w.clone();
            thread::spawn(move || w.free_remote(1))
        };
        w.owner_slow_path(1, false);
        r1.join().unwrap();
        r2.join().unwrap();
        // Later: the owner's next slow path, its own free of block 2.
        w.owner_slow_path(1, false);
        w.free_local(1, 2);
        w.owner_slow_path(1, true);
        // An empty segment a freer still touched is kept by its owner
        // (src/heap.rs adopt/segment_changed); the owner's exit hands it
        // back.
        w.abandon(1);
        w.check_final(ALL, "owner_collects_remote_frees");
    });
}

/// The owner collects at once (as `trim`, or a notification from an
/// earlier free, makes it) while a freer is in flight, and its own frees
/// empty the page: it must not release the segment under the freer.
#[test]
fn owner_empties_the_segment_while_a_freer_is_in_flight() {
    model(|| {
        let w = World::new(1);
        let r = {
            let w = w.clone();
            thread::spawn(move || w.free_remote(0))
        };
        w.free_local(1, 1);
        w.free_local(1, 2);
        w.owner_slow_path(1, true);
        r.join().unwrap();
        w.owner_slow_path(1, true);
        w.abandon(1);
        w.check_final(ALL, "owner_empties_the_segment_while_a_freer_is_in_flight");
    });
}

/// The owner frees its own blocks while another thread frees one: the
/// owner's free and the collection must never both count a block.
#[test]
fn owner_and_remote_free_the_same_page() {
    model(|| {
        let w = World::new(1);
        let r = {
            let w = w.clone();
            thread::spawn(move || w.free_remote(0))
        };
        w.free_local(1, 1);
        w.owner_slow_path(1, false);
        w.free_local(1, 2);
        r.join().unwrap();
        w.owner_slow_path(1, true);
        w.abandon(1);
        w.check_final(ALL, "owner_and_remote_free_the_same_page");
    });
}

/// The owner's thread exits (abandons the segment) while another thread
/// frees a block: the free is collected by the abandoning thread or by the
/// freer under the arena lock, never lost; the segment goes back once the
/// last blocks are freed.
#[test]
fn abandon_races_a_remote_free() {
    model(|| {
        let w = World::new(1);
        let r = {
            let w = w.clone();
            thread::spawn(move || w.free_remote(0))
        };
        w.abandon(1);
        r.join().unwrap();
        // Nothing was lost: block 0 collected or still pending.
        w.check_final(0b001, "abandon_races_a_remote_free (mid)");
        // The other blocks are freed later by threads that do not own it.
        w.free_remote(1);
        w.free_remote(2);
        w.check_final(ALL, "abandon_races_a_remote_free");
    });
}

/// The last blocks of an abandoned segment are freed by three threads at
/// once: exactly one of them releases it, and only once no other is still
/// touching it (src/arena.rs reclaim_frees, `quiescent(seg, 1)`).
#[test]
fn last_frees_of_an_abandoned_segment_race() {
    model(|| {
        let w = World::new(0);
        let r1 = {
            let w = w.clone();
            thread::spawn(move || w.free_remote(0))
        };
        let r2 = {
            let w = w.clone();
            thread::spawn(move || w.free_remote(1))
        };
        w.free_remote(2);
        r1.join().unwrap();
        r2.join().unwrap();
        // No trim: the last freer must have released it.
        w.check_final(ALL, "last_frees_of_an_abandoned_segment_race");
    });
}

/// A heap adopts an abandoned segment while another thread frees one of
/// its blocks: the free is collected by the adopter (now or on its next
/// slow path) or by the freer, never lost; the adopter's own frees then
/// empty the segment and it goes back.
#[test]
fn adoption_races_a_remote_free() {
    model(|| {
        let w = World::new(0);
        let a = {
            let w = w.clone();
            thread::spawn(move || {
                let adopted = w.adopt(2);
                w.owner_slow_path(2, false);
                adopted
            })
        };
        w.free_remote(0);
        assert!(
            a.join().unwrap(),
            "blocks 1 and 2 are live: adoption finds it"
        );
        w.owner_slow_path(2, true);
        w.free_local(2, 1);
        w.free_local(2, 2);
        w.owner_slow_path(2, true);
        w.check_final(ALL, "adoption_races_a_remote_free");
    });
}

/// Three parties: the owner exits, another heap tries to adopt, a third
/// thread frees a block. Whoever ends up with the segment, the free is not
/// lost and the segment goes back once the rest is freed.
#[test]
fn abandon_adopt_and_free_at_once() {
    model(|| {
        let w = World::new(1);
        let a = {
            let w = w.clone();
            thread::spawn(move || w.adopt(2))
        };
        let r = {
            let w = w.clone();
            thread::spawn(move || w.free_remote(0))
        };
        w.abandon(1);
        let adopted = a.join().unwrap();
        r.join().unwrap();
        if adopted {
            w.owner_slow_path(2, true);
            w.free_local(2, 1);
            w.free_local(2, 2);
            w.owner_slow_path(2, true);
            w.abandon(2);
        } else {
            w.free_remote(1);
            w.free_remote(2);
            w.trim();
        }
        w.check_final(ALL, "abandon_adopt_and_free_at_once");
    });
}

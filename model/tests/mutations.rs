//! The model catches protocol bugs: each deliberate mutation of the
//! protocol (see `Mutation`) must make some scenario fail. Under loom a
//! failure is found in the interleavings; on real threads it may not show
//! in 2000 runs, so these run only under `--cfg loom`.
#![cfg(loom)]

use tinymalloc_model::{model, thread, Mutation, World, BLOCKS};

const ALL: u64 = (1 << BLOCKS) - 1;

/// The owner collects (as `trim` or an earlier notification makes it) and
/// may release while a freer is still in flight.
fn owner_and_freer(m: Mutation) {
    model(move || {
        let w = World::with_mutation(1, m);
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
        w.check_final(ALL, "owner_and_freer");
    });
}

/// The owner exits while a freer frees, then the rest is freed remotely.
fn abandon_and_freer(m: Mutation) {
    model(move || {
        let w = World::with_mutation(1, m);
        let r = {
            let w = w.clone();
            thread::spawn(move || w.free_remote(0))
        };
        w.abandon(1);
        r.join().unwrap();
        // The free was collected by the abandoning thread or the freer.
        w.check_final(0b001, "abandon_and_freer (mid)");
        w.free_remote(1);
        w.free_remote(2);
        w.check_final(ALL, "abandon_and_freer");
    });
}

/// Two freers of an owned segment whose owner freed its own block and
/// collects: the second freer's bit may be collected (the first set the
/// page's pending bit) before that freer is done with the header.
fn two_freers_and_owner(m: Mutation) {
    model(move || {
        let w = World::with_mutation(1, m);
        w.free_local(1, 2);
        let rs: Vec<_> = [0, 1]
            .into_iter()
            .map(|b| {
                let w = w.clone();
                thread::spawn(move || w.free_remote(b))
            })
            .collect();
        w.owner_slow_path(1, true);
        for r in rs {
            r.join().unwrap();
        }
        w.owner_slow_path(1, true);
        w.abandon(1);
        w.check_final(ALL, "two_freers_and_owner");
    });
}

/// Two freers of the last blocks of an abandoned segment.
fn last_freers(m: Mutation) {
    model(move || {
        let w = World::with_mutation(0, m);
        w.free_remote(2);
        let r = {
            let w = w.clone();
            thread::spawn(move || w.free_remote(0))
        };
        w.free_remote(1);
        r.join().unwrap();
        w.check_final(ALL, "last_freers");
    });
}

#[test]
#[should_panic]
fn caught_no_inflight_mark() {
    owner_and_freer(Mutation::NoInflight);
}

#[test]
#[should_panic]
fn caught_owner_load_before_xfree() {
    abandon_and_freer(Mutation::OwnerLoadFirst);
}

#[test]
#[should_panic]
fn caught_acqrel_instead_of_seqcst() {
    abandon_and_freer(Mutation::NoSeqCst);
}

#[test]
#[should_panic]
fn caught_reclaim_forgetting_its_own_mark() {
    last_freers(Mutation::ReclaimQuiescentZero);
}

#[test]
#[should_panic]
fn caught_release_without_quiescence() {
    owner_and_freer(Mutation::ReleaseWithoutQuiescent);
}

#[test]
#[should_panic]
fn caught_mark_after_the_xfree_bit() {
    two_freers_and_owner(Mutation::MarkAfterBit);
}

#[test]
#[should_panic]
fn caught_release_ignoring_the_heaps_marks() {
    owner_and_freer(Mutation::MarksIgnored);
}

#[test]
#[should_panic]
fn caught_reclaim_leaving_the_emptied_page() {
    last_freers(Mutation::ReclaimKeepsPage);
}

/// The unmutated protocol passes the same scenarios.
#[test]
fn unmutated_passes_the_mutation_scenarios() {
    owner_and_freer(Mutation::None);
    abandon_and_freer(Mutation::None);
    last_freers(Mutation::None);
    two_freers_and_owner(Mutation::None);
}

//! tinymalloc as the global allocator of a Rust program (this test binary,
//! the test harness included): std collections, trait objects, Rc/Arc,
//! growth by realloc, over-aligned types and layouts up to 2 MiB alignment,
//! values dropped on other threads, and thread churn (thousands of
//! short-lived threads) without growth of the allocator's footprint.
//!
//! The tests take a common lock: the churn test reads global statistics,
//! which other tests running at the same time would disturb.

#[global_allocator]
static A: tinymalloc::TinyMalloc = tinymalloc::TinyMalloc;

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

use tinymalloc_testkit::Rng;

fn bytes_for(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as usize).wrapping_mul(31).wrapping_add(i * 7) as u8)
        .collect()
}

fn check_bytes(seed: u64, v: &[u8]) {
    for (i, &b) in v.iter().enumerate() {
        assert_eq!(
            b,
            (seed as usize).wrapping_mul(31).wrapping_add(i * 7) as u8,
            "byte {i} of block {seed}"
        );
    }
}

/// A mixed size: mostly small, some medium, a few large and huge.
fn mixed_size(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=59 => r.below(65),
        60..=89 => 65 + r.below(32 * KIB - 64),
        90..=98 => 32 * KIB + 1 + r.below(2 * MIB - 32 * KIB),
        _ => 2 * MIB + 1 + r.below(4 * MIB),
    }
}

#[test]
fn vec_and_string_growth_by_realloc() {
    let _g = serial();
    // Vec<u64> grows through every size range (small -> medium -> large ->
    // huge, where realloc may remap in place).
    let mut v: Vec<u64> = Vec::new();
    for i in 0..(12 * MIB / 8) as u64 {
        v.push(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    assert!(v
        .iter()
        .enumerate()
        .all(|(i, &x)| x == (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    // Shrink back down through the ranges.
    for len in [5 * MIB / 8, MIB / 8, 40 * KIB / 8, 1000, 7, 0] {
        v.truncate(len);
        v.shrink_to_fit();
        assert!(v
            .iter()
            .enumerate()
            .all(|(i, &x)| x == (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    }

    let mut s = String::new();
    for i in 0..200_000 {
        s.push_str(&i.to_string());
        s.push(',');
    }
    let parsed: Vec<usize> = s
        .trim_end_matches(',')
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(parsed.len(), 200_000);
    assert!(parsed.iter().enumerate().all(|(i, &x)| i == x));

    // Many growing vectors at once, interleaved.
    let mut vs: Vec<Vec<u32>> = (0..300).map(|_| Vec::new()).collect();
    for round in 0..200u32 {
        for (k, v) in vs.iter_mut().enumerate() {
            if k % 3 != 0 || round % 2 == 0 {
                v.push(round ^ k as u32);
            }
        }
    }
    for (k, v) in vs.iter().enumerate() {
        let expect: Vec<u32> = (0..200u32)
            .filter(|r| k % 3 != 0 || r % 2 == 0)
            .map(|r| r ^ k as u32)
            .collect();
        assert_eq!(v, &expect);
    }
}

#[test]
fn maps_sets_and_deques() {
    let _g = serial();
    let mut r = Rng(0x1234_5678);
    let mut h: HashMap<String, Vec<u8>> = HashMap::new();
    let mut b: BTreeMap<u64, Box<[u8]>> = BTreeMap::new();
    let mut set: HashSet<u64> = HashSet::new();
    let mut dq: VecDeque<String> = VecDeque::new();
    for i in 0..60_000u64 {
        let len = mixed_size(&mut r) % (70 * KIB);
        h.insert(format!("key-{i}"), bytes_for(i, len % 300));
        if i % 7 == 0 {
            b.insert(i, bytes_for(i, len).into_boxed_slice());
        }
        set.insert(i * 3);
        dq.push_back(format!("item {i}"));
        if dq.len() > 1000 {
            let s = dq.pop_front().unwrap();
            assert_eq!(s, format!("item {}", i - 1000));
        }
        if i % 5 == 4 {
            // Remove an older entry.
            let k = i - 4;
            let v = h.remove(&format!("key-{k}")).expect("present");
            check_bytes(k, &v);
        }
        if i % 1000 == 999 {
            // Drop and rebuild part of the B-tree.
            let keys: Vec<u64> = b.keys().copied().filter(|k| k % 2 == 0).collect();
            for k in keys {
                check_bytes(k, &b.remove(&k).unwrap());
            }
        }
    }
    for (k, v) in &h {
        let i: u64 = k[4..].parse().unwrap();
        check_bytes(i, v);
    }
    for (k, v) in &b {
        check_bytes(*k, v);
    }
    assert!((0..60_000u64).all(|i| set.contains(&(i * 3))));
}

trait Shape: Send {
    fn area(&self) -> f64;
    fn name(&self) -> String;
}

struct Circle(f64);
struct Rect(f64, f64, [u64; 32]);
struct Poly(Vec<(f64, f64)>);

impl Shape for Circle {
    fn area(&self) -> f64 {
        3.0 * self.0 * self.0
    }
    fn name(&self) -> String {
        format!("circle {}", self.0)
    }
}

impl Shape for Rect {
    fn area(&self) -> f64 {
        assert!(self.2.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
        self.0 * self.1
    }
    fn name(&self) -> String {
        format!("rect {}x{}", self.0, self.1)
    }
}

impl Shape for Poly {
    fn area(&self) -> f64 {
        self.0.len() as f64
    }
    fn name(&self) -> String {
        format!("poly {}", self.0.len())
    }
}

fn make_shape(i: usize) -> Box<dyn Shape> {
    match i % 3 {
        0 => Box::new(Circle(i as f64)),
        1 => Box::new(Rect(i as f64, 2.0, core::array::from_fn(|k| k as u64 * 3))),
        _ => Box::new(Poly((0..i % 5000).map(|k| (k as f64, 0.0)).collect())),
    }
}

fn expected_area(i: usize) -> f64 {
    match i % 3 {
        0 => 3.0 * (i * i) as f64,
        1 => 2.0 * i as f64,
        _ => (i % 5000) as f64,
    }
}

#[test]
fn trait_objects_rc_and_arc() {
    let _g = serial();
    let shapes: Vec<Box<dyn Shape>> = (0..20_000).map(make_shape).collect();
    for (i, s) in shapes.iter().enumerate() {
        assert_eq!(s.area(), expected_area(i), "{}", s.name());
    }
    drop(shapes);

    // Rc graphs with shared and weak links.
    struct Node {
        val: usize,
        kids: std::cell::RefCell<Vec<Rc<Node>>>,
        parent: std::cell::RefCell<std::rc::Weak<Node>>,
    }
    let root = Rc::new(Node {
        val: 0,
        kids: Default::default(),
        parent: Default::default(),
    });
    let mut all = vec![root.clone()];
    for i in 1..20_000 {
        let parent = all[(i * 7919) % all.len()].clone();
        let n = Rc::new(Node {
            val: i,
            kids: Default::default(),
            parent: Default::default(),
        });
        *n.parent.borrow_mut() = Rc::downgrade(&parent);
        parent.kids.borrow_mut().push(n.clone());
        all.push(n);
    }
    let mut sum = 0;
    let mut stack = vec![root.clone()];
    while let Some(n) = stack.pop() {
        sum += n.val;
        for k in n.kids.borrow().iter() {
            assert_eq!(k.parent.borrow().upgrade().unwrap().val, n.val);
            stack.push(k.clone());
        }
    }
    assert_eq!(sum, (0..20_000).sum::<usize>());
    drop(all);
    drop(stack);
    drop(root);

    // Arc shared by threads, the last holder (any thread) frees it.
    let data: Vec<Arc<Vec<u64>>> = (0..2000)
        .map(|i| Arc::new((0..i as u64 % 700).collect()))
        .collect();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let mine: Vec<Arc<Vec<u64>>> = data.iter().skip(t % 2).step_by(2).cloned().collect();
            std::thread::spawn(move || {
                for a in &mine {
                    assert!(a.iter().enumerate().all(|(i, &x)| x == i as u64));
                }
                mine.len()
            })
        })
        .collect();
    drop(data);
    let n: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(n, 4000);
}

#[repr(C, align(64))]
#[derive(Clone)]
struct A64([u8; 64]);
#[repr(C, align(4096))]
#[derive(Clone)]
struct A4K([u64; 16]);
#[repr(C, align(65536))]
struct A64K(u64);
#[repr(C, align(2097152))]
struct A2M(u64);

/// `Box::new(A2M(i))` built in place: a debug build makes the 2 MiB value
/// on the stack first, which overflows a test thread's 2 MiB stack.
fn boxed_a2m(i: u64) -> Box<A2M> {
    let layout = std::alloc::Layout::new::<A2M>();
    // SAFETY: A2M's layout has a non-zero size.
    let p = unsafe { std::alloc::alloc(layout) }.cast::<A2M>();
    assert!(!p.is_null(), "no memory for an A2M");
    // SAFETY: p is a fresh block of A2M's layout from the global allocator;
    // writing A2M's one field initialises it (the rest is padding), and the
    // Box frees it with that same layout.
    unsafe {
        core::ptr::addr_of_mut!((*p).0).write(i);
        Box::from_raw(p)
    }
}

#[test]
fn over_aligned_types() {
    let _g = serial();
    let v: Vec<Box<A4K>> = (0..300).map(|i| Box::new(A4K([i; 16]))).collect();
    for (i, b) in v.iter().enumerate() {
        assert_eq!(&**b as *const A4K as usize % 4096, 0);
        assert!(b.0.iter().all(|&x| x == i as u64));
    }
    let mut vv: Vec<A4K> = Vec::new();
    for i in 0..500 {
        vv.push(A4K([i; 16]));
        assert_eq!(vv.as_ptr() as usize % 4096, 0);
    }
    assert!(vv.iter().enumerate().all(|(i, a)| a.0[15] == i as u64));
    let mut v64: Vec<A64> = Vec::new();
    for i in 0..10_000 {
        v64.push(A64([i as u8; 64]));
    }
    assert_eq!(v64.as_ptr() as usize % 64, 0);
    assert!(v64
        .iter()
        .enumerate()
        .all(|(i, a)| a.0.iter().all(|&x| x == i as u8)));
    let b64k: Vec<Box<A64K>> = (0..40).map(|i| Box::new(A64K(i))).collect();
    for (i, b) in b64k.iter().enumerate() {
        assert_eq!(&**b as *const A64K as usize % 65536, 0);
        assert_eq!(b.0, i as u64);
    }
    let b2m: Vec<Box<A2M>> = (0..6).map(boxed_a2m).collect();
    for (i, b) in b2m.iter().enumerate() {
        assert_eq!(&**b as *const A2M as usize % (2 * MIB), 0);
        assert_eq!(b.0, i as u64);
    }
}

#[test]
fn layouts_up_to_2mib_alignment() {
    let _g = serial();
    let mut live = Vec::new();
    let mut align = 1;
    let mut seed = 0u64;
    while align <= 2 * MIB {
        for &size in &[
            1usize,
            7,
            64,
            100,
            4096,
            30 * KIB,
            33 * KIB,
            300 * KIB,
            2 * MIB,
            3 * MIB,
        ] {
            let l = Layout::from_size_align(size, align).unwrap();
            seed += 1;
            // SAFETY: a non-zero-size layout; freed below with its layout.
            unsafe {
                let p = if seed.is_multiple_of(2) {
                    alloc(l)
                } else {
                    alloc_zeroed(l)
                };
                assert!(!p.is_null(), "{l:?}");
                assert_eq!(p as usize % align, 0, "{l:?}");
                if seed % 2 == 1 {
                    assert!(
                        (0..size).all(|i| p.add(i).read() == 0),
                        "alloc_zeroed {l:?}"
                    );
                }
                for i in (0..size).step_by(61) {
                    p.add(i).write(seed as u8 ^ i as u8);
                }
                live.push((p, l, seed));
            }
        }
        align *= 2;
    }
    // Grow and shrink every block with realloc: alignment and contents kept.
    for (p, l, seed) in live.iter_mut() {
        let new_size = if l.size() > MIB {
            l.size() / 3
        } else {
            l.size() * 5 + 3
        };
        // SAFETY: p is live with layout l.
        unsafe {
            let q = realloc(*p, *l, new_size);
            assert!(!q.is_null());
            assert_eq!(q as usize % l.align(), 0, "realloc of {l:?} to {new_size}");
            for i in (0..l.size().min(new_size)).step_by(61) {
                assert_eq!(
                    q.add(i).read(),
                    *seed as u8 ^ i as u8,
                    "realloc of {l:?} to {new_size} at {i}"
                );
            }
            *p = q;
            *l = Layout::from_size_align(new_size, l.align()).unwrap();
        }
    }
    for (p, l, _) in live {
        // SAFETY: live block with this layout.
        unsafe { dealloc(p, l) };
    }
}

#[test]
fn values_dropped_on_other_threads() {
    let _g = serial();
    const THREADS: usize = 6;
    const PER_THREAD: usize = 20_000;
    enum Msg {
        Bytes(u64, Box<[u8]>),
        Text(u64, String),
        Shape(usize, Box<dyn Shape>),
        Map(HashMap<u64, Vec<u16>>),
    }
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Msg>()).unzip();
    let mut handles = Vec::new();
    for (t, rx) in rxs.into_iter().enumerate() {
        let txs = txs.clone();
        handles.push(std::thread::spawn(move || {
            let mut r = Rng(t as u64 * 7 + 1);
            let mut received = 0;
            for i in 0..PER_THREAD as u64 {
                let to = (t + 1 + r.below(THREADS - 1)) % THREADS;
                let id = (t as u64) << 32 | i;
                let msg = match i % 4 {
                    0 => Msg::Bytes(
                        id,
                        bytes_for(id, mixed_size(&mut r) % (300 * KIB)).into_boxed_slice(),
                    ),
                    1 => Msg::Text(id, format!("{id}-").repeat(r.below(40))),
                    2 => Msg::Shape(i as usize, make_shape(i as usize)),
                    _ => Msg::Map(
                        (0..r.below(20) as u64)
                            .map(|k| (k, vec![k as u16; k as usize]))
                            .collect(),
                    ),
                };
                txs[to].send(msg).unwrap();
                while let Ok(m) = rx.try_recv() {
                    check_msg(m);
                    received += 1;
                }
            }
            drop(txs);
            // Drain until every sender is gone.
            for m in rx {
                check_msg(m);
                received += 1;
            }
            received
        }));
    }
    drop(txs);
    fn check_msg(m: Msg) {
        match m {
            Msg::Bytes(id, b) => check_bytes(id, &b),
            Msg::Text(id, s) => {
                let unit = format!("{id}-");
                assert!(
                    s.len() % unit.len() == 0
                        && s.split_terminator('-').all(|x| x == id.to_string())
                );
            }
            Msg::Shape(i, s) => assert_eq!(s.area(), expected_area(i)),
            Msg::Map(m) => assert!(m
                .iter()
                .all(|(k, v)| v.len() == *k as usize && v.iter().all(|&x| x == *k as u16))),
        }
    }
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, THREADS * PER_THREAD);
}

#[test]
fn thread_churn_does_not_grow_the_footprint() {
    let _g = serial();
    const ROUNDS: usize = 6;
    const THREADS_PER_ROUND: usize = 600;
    const WAVE: usize = 12;
    let mut history = Vec::new();
    for round in 0..ROUNDS {
        // Blocks made by exited threads, freed by this thread afterwards
        // (frees into abandoned segments).
        let mut leftovers: Vec<Vec<u8>> = Vec::new();
        for wave in 0..THREADS_PER_ROUND / WAVE {
            let handles: Vec<_> = (0..WAVE)
                .map(|k| {
                    let seed = (round * THREADS_PER_ROUND + wave * WAVE + k) as u64 + 1;
                    std::thread::spawn(move || {
                        let mut r = Rng(seed * 0x9E37_79B9);
                        let mut mine: Vec<Vec<u8>> = Vec::new();
                        for i in 0..60u64 {
                            let len = match r.below(20) {
                                0 => 40 * KIB + r.below(300 * KIB),
                                1..=5 => 65 + r.below(8 * KIB),
                                _ => r.below(65),
                            };
                            mine.push(bytes_for(seed ^ i, len));
                            if r.below(3) == 0 {
                                let j = r.below(mine.len());
                                let v = mine.swap_remove(j);
                                assert!(!v.is_empty() || v.capacity() == 0);
                            }
                        }
                        let mut s = String::new();
                        for i in 0..100 {
                            s.push_str(&format!("{i};"));
                        }
                        assert_eq!(s.split(';').count(), 101);
                        // Hand a few blocks to the spawning thread.
                        let keep = mine.len().min(4);
                        mine.drain(..keep).collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                leftovers.extend(h.join().unwrap());
            }
        }
        assert!(!leftovers.is_empty());
        drop(leftovers);
        tinymalloc::raw::trim();
        let s = tinymalloc::stats();
        history.push((s.segments, s.reserved, s.abandoned_segments, s.threads));
    }
    // After a warm-up round, neither the segment count nor the reserved
    // address space may keep growing: 600 threads per round would show
    // any per-thread leak many times over.
    let base = history[1];
    let last = *history.last().unwrap();
    let max_segments = history[1..].iter().map(|h| h.0).max().unwrap();
    let max_reserved = history[1..].iter().map(|h| h.1).max().unwrap();
    let msg = format!("(segments, reserved, abandoned, threads) per round: {history:?}");
    eprintln!("{msg}");
    assert!(
        max_segments <= base.0 + 8,
        "segments grow across rounds: {msg}"
    );
    assert!(last.0 <= base.0 + 4, "segments grow across rounds: {msg}");
    assert!(
        max_reserved <= base.1 + 32 * MIB,
        "reserved bytes grow across rounds: {msg}"
    );
    assert!(
        last.1 <= base.1 + 16 * MIB,
        "reserved bytes grow across rounds: {msg}"
    );
    assert!(
        last.2 <= base.2 + 2,
        "abandoned segments grow across rounds: {msg}"
    );
    // Exited threads gave their heaps back.
    assert!(last.3 <= 16, "threads still counted: {msg}");
}

#[test]
fn big_structures_are_freed_and_reused() {
    let _g = serial();
    // Build and drop a big structure twice: the second build must not need
    // much more address space than the first left behind.
    let build =
        |n: usize| -> Vec<Vec<u64>> { (0..n).map(|i| vec![i as u64; 1 + i % 200]).collect() };
    let a = build(200_000);
    assert!(a
        .iter()
        .enumerate()
        .all(|(i, v)| v.len() == 1 + i % 200 && v.iter().all(|&x| x == i as u64)));
    drop(a);
    tinymalloc::raw::trim();
    let after_first = tinymalloc::stats().reserved;
    let b = build(200_000);
    assert!(b
        .iter()
        .enumerate()
        .all(|(i, v)| v.len() == 1 + i % 200 && v[0] == i as u64));
    drop(b);
    tinymalloc::raw::trim();
    let after_second = tinymalloc::stats().reserved;
    assert!(
        after_second <= after_first + 16 * MIB,
        "reserved grew from {after_first} to {after_second} on a repeated build"
    );
}

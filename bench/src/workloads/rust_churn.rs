//! rust — idiomatic Rust collection churn (no classic C original).
//!
//! Models a multi-threaded Rust service that keeps per-thread state in
//! `HashMap<String, Vec<u32>>`: keys are built with `format!`, values grow
//! with `push` (amortised reallocation), requests are parsed with
//! `split`/`collect`/`join` into short-lived Strings, entries are evicted
//! and re-created, and evicted entries are sent as owned values over a
//! channel to the next thread, which checks and drops them there
//! (cross-thread frees of std collections and of the channel's own nodes).

use super::{scaled, share, Outcome};
use crate::rng::{seed, Rng};
use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;

/// Distinct keys per thread.
const KEYS: usize = 2000;

type Entry = (String, Vec<u32>);

/// Runs the workload.
pub fn run(threads: usize, scale: f64) -> Outcome {
    let steps = share(scaled(600_000, scale), threads);
    let (txs, rxs): (Vec<Sender<Entry>>, Vec<Receiver<Entry>>) =
        (0..threads).map(|_| channel()).unzip();
    let mut rxs = rxs;
    rxs.rotate_right(1); // thread i receives from thread i-1
    thread::scope(|s| {
        let handles: Vec<_> = txs
            .into_iter()
            .zip(rxs)
            .enumerate()
            .map(|(i, (tx, rx))| s.spawn(move || service(i, tx, rx, steps)))
            .collect();
        Outcome::sum(handles.into_iter().map(|h| h.join().unwrap()))
    })
}

/// Checks an evicted entry: its values were pushed in increasing order and
/// its key is well formed. Returns its contribution to the checksum.
fn consume((key, values): Entry) -> u64 {
    assert!(key.starts_with("user:"), "corrupted key {key:?}");
    assert!(values.windows(2).all(|w| w[0] < w[1]), "corrupted values");
    key.len() as u64 + values.iter().map(|&v| u64::from(v)).sum::<u64>()
}

fn service(id: usize, tx: Sender<Entry>, rx: Receiver<Entry>, steps: u64) -> Outcome {
    let mut rng = Rng::new(seed(&[14, id as u64]));
    let mut out = Outcome::default();
    let mut map: HashMap<String, Vec<u32>> = HashMap::new();
    let mut received = 0u64;
    for step in 0..steps {
        let k = rng.below(KEYS);
        let key = format!("user:{id}:{k}");
        match rng.below(10) {
            // A request updates a session: parse, normalise, append.
            0..=6 => {
                let line = format!("GET /item/{k}/detail?x={step} HTTP/1.1");
                let parts: Vec<&str> = line.split(['/', '?', ' ']).collect();
                let norm = parts.join("-").to_uppercase();
                out.add(norm.len() as u64);
                map.entry(key).or_default().push(step as u32);
            }
            // A lookup that clones the value.
            7 => {
                let copy = map.get(&key).cloned().unwrap_or_default();
                out.add(copy.len() as u64);
            }
            // Eviction: the entry is handed to another thread.
            _ => {
                if let Some(v) = map.remove(&key) {
                    out.add(v.len() as u64);
                    tx.send((key, v)).unwrap();
                }
            }
        }
        while let Ok(e) = rx.try_recv() {
            received = received.wrapping_add(consume(e));
        }
    }
    // Shut down: hand everything over, then drain until the previous
    // thread has finished sending.
    for e in map.drain() {
        tx.send(e).unwrap();
    }
    drop(tx);
    for e in rx {
        received = received.wrapping_add(consume(e));
    }
    out.checksum = out.checksum.wrapping_add(received);
    out
}

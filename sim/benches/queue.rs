//! The event queue against a plain binary heap, at the sizes a large run keeps pending.
//! Run with `cargo bench -p reef-sim --bench queue`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::queue::EventQueue;

/// Delays shaped like a run's: mostly message latencies (ms), some timers (seconds).
fn delays(n: usize) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..n)
        .map(|i| match i % 10 {
            0 => rng.random_range(1_000_000..30_000_000),
            _ => rng.random_range(500..300_000),
        })
        .collect()
}

/// Hold model: the queue holds `pending` events; each step pops one and pushes one later.
fn hold(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_hold");
    for pending in [10_000usize, 1_000_000] {
        let d = delays(pending + 100_000);
        g.bench_with_input(
            BenchmarkId::new("timing_wheel", pending),
            &pending,
            |b, &pending| {
                let mut q = EventQueue::new();
                for (i, x) in d.iter().take(pending).enumerate() {
                    q.push(*x, i as u64);
                }
                let mut i = 0usize;
                b.iter(|| {
                    let (at, v) = q.pop().expect("pending");
                    i = (i + 1) % d.len();
                    q.push(at + d[i], black_box(v));
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("binary_heap", pending),
            &pending,
            |b, &pending| {
                let mut q = BinaryHeap::new();
                let mut seq = 0u64;
                for (i, x) in d.iter().take(pending).enumerate() {
                    seq += 1;
                    q.push(Reverse((*x, seq, i as u64)));
                }
                let mut i = 0usize;
                b.iter(|| {
                    let Reverse((at, _, v)) = q.pop().expect("pending");
                    i = (i + 1) % d.len();
                    seq += 1;
                    q.push(Reverse((at + d[i], seq, black_box(v))));
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, hold);
criterion_main!(benches);

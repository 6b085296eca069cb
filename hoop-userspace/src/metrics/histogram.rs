//! A fixed-bucket latency histogram of plain atomics: observing is a few relaxed atomic adds and
//! never takes a lock, so the data path cannot wait on a scrape (prometheus-client's own
//! histogram takes a lock on every observation).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Upper bounds in seconds: 50 µs to 1 s. An allowed statement in `written` durability adds tens
/// of microseconds; `strict` adds an fdatasync (milliseconds).
pub const BOUNDS_S: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

const fn bounds_ns() -> [u64; BOUNDS_S.len()] {
    let mut out = [0u64; BOUNDS_S.len()];
    let mut i = 0;
    while i < BOUNDS_S.len() {
        out[i] = (BOUNDS_S[i] * 1e9) as u64;
        i += 1;
    }
    out
}

const BOUNDS_NS: [u64; BOUNDS_S.len()] = bounds_ns();

#[derive(Debug, Default)]
pub struct Histogram {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS_S.len() + 1],
    sum_ns: AtomicU64,
}

/// A consistent-enough copy for one scrape: `count` is the sum of the buckets, so the `+Inf`
/// bucket always equals the count as Prometheus requires even while observations land.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub sum_s: f64,
    pub count: u64,
    /// `(upper bound, count in this bucket alone)`, ending with `+Inf`; the encoder accumulates.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// Records `n` observations of `d` (the statements of one forwarded batch share its delay).
    pub fn observe_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(ns.saturating_mul(n), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let le = BOUNDS_S.get(i).copied().unwrap_or(f64::INFINITY);
                (le, b.load(Ordering::Relaxed))
            })
            .collect();
        Snapshot {
            sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: buckets.iter().map(|b| b.1).sum(),
            buckets,
        }
    }
}

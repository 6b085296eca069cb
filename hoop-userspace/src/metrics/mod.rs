//! Prometheus metrics: what the data path counts (plain atomics, no locks, no allocation) and a
//! loopback `/metrics` endpoint that reads them, together with the node's state (audit trail,
//! eBPF counters and map sizes), only when scraped.
//!
//! Data-path hooks: [`Metrics::session`] (live sessions), [`Metrics::decided`] (statements by
//! protocol and decision), [`Metrics::forwarded`] (added latency). Pending approvals are read
//! from the approval registry's own count at scrape time.

mod collect;
mod histogram;
mod http;
#[cfg(test)]
mod tests;

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

pub use collect::render;
pub use http::{ContentType, serve};

use crate::config::Protocol;
use histogram::Histogram;

/// Every protocol, in label order.
pub const PROTOCOLS: [Protocol; 5] = [
    Protocol::Tcp,
    Protocol::Postgres,
    Protocol::Tds,
    Protocol::Https,
    Protocol::Kubernetes,
];

/// Decision labels: the policy's actions, `refused` (no audit record, so not forwarded) and
/// `other` for an action this list does not know yet.
pub const DECISIONS: [&str; 6] = ["allow", "deny", "review", "mask", "refused", "other"];

const fn proto_index(p: Protocol) -> usize {
    match p {
        Protocol::Tcp => 0,
        Protocol::Postgres => 1,
        Protocol::Tds => 2,
        Protocol::Https => 3,
        Protocol::Kubernetes => 4,
    }
}

fn decision_index(d: &str) -> usize {
    DECISIONS[..DECISIONS.len() - 1]
        .iter()
        .position(|x| *x == d)
        .unwrap_or(DECISIONS.len() - 1)
}

/// What the data path records. One per node, shared by `Node` and the protocol contexts.
#[derive(Debug, Default)]
pub struct Metrics {
    live_sessions: [AtomicI64; PROTOCOLS.len()],
    sessions: [AtomicU64; PROTOCOLS.len()],
    statements: [[AtomicU64; DECISIONS.len()]; PROTOCOLS.len()],
    added_latency: [Histogram; PROTOCOLS.len()],
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A session of `protocol` started; it counts as live until the guard drops.
    pub fn session(self: &Arc<Self>, protocol: Protocol) -> LiveSession {
        let i = proto_index(protocol);
        self.sessions[i].fetch_add(1, Ordering::Relaxed);
        self.live_sessions[i].fetch_add(1, Ordering::Relaxed);
        LiveSession {
            metrics: self.clone(),
            index: i,
        }
    }

    /// `n` statements of `protocol` were decided `decision` (an action name, or `refused`).
    pub fn decided(&self, protocol: Protocol, decision: &str, n: usize) {
        self.statements[proto_index(protocol)][decision_index(decision)]
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `requests` client requests have been sent upstream, `added` after the read that
    /// completed them: the delay the node added to each of them.
    pub fn forwarded(&self, protocol: Protocol, added: Duration, requests: usize) {
        if requests > 0 {
            self.added_latency[proto_index(protocol)].observe_n(added, requests as u64);
        }
    }

    pub fn live_sessions(&self, protocol: Protocol) -> i64 {
        self.live_sessions[proto_index(protocol)].load(Ordering::Relaxed)
    }

    pub fn statements(&self, protocol: Protocol, decision: &str) -> u64 {
        self.statements[proto_index(protocol)][decision_index(decision)].load(Ordering::Relaxed)
    }
}

/// Counts a session as live while it exists.
#[must_use = "the session stops counting as live when this drops"]
pub struct LiveSession {
    metrics: Arc<Metrics>,
    index: usize,
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.metrics.live_sessions[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

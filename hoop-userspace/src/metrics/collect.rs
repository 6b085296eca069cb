//! One scrape: copy the node's numbers into a [`Snapshot`] (atomics, a few loads under the audit
//! state lock, pinned maps opened afresh), then encode it with prometheus-client.

use std::{borrow::Cow, fmt};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Registry,
};

use super::{DECISIONS, Metrics, PROTOCOLS, histogram, http::ContentType, proto_index};
use crate::{
    audit::Progress,
    config::Protocol,
    intercept::{MapOccupancy, Stats},
    proxy::Node,
};

/// Everything one scrape reports.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub protocols: Vec<ProtocolSnapshot>,
    pub approvals_pending: i64,
    pub audit: Progress,
    pub ebpf: Stats,
    /// `None` when the pinned maps could not be read (the reason is logged).
    pub maps: Option<Vec<MapOccupancy>>,
    pub targets: usize,
    /// Addresses learned from DNS answers.
    pub dns_learned: usize,
    /// What the connection workers' busy polling did.
    pub busy_poll: crate::proxy::busy_poll::Stats,
}

#[derive(Debug, Clone)]
pub struct ProtocolSnapshot {
    pub protocol: Protocol,
    pub live_sessions: i64,
    pub sessions: u64,
    /// Indexed like [`DECISIONS`].
    pub statements: [u64; DECISIONS.len()],
    pub added_latency: histogram::Snapshot,
}

impl Snapshot {
    /// Reads the node. Protocols are reported when a target uses them or they have counts.
    pub fn gather(node: &Node) -> Self {
        let targets = node.targets.read().unwrap().clone();
        let configured: Vec<Protocol> = targets.targets().map(|t| t.config.protocol).collect();
        let maps = node
            .intercept
            .map_occupancy()
            .inspect_err(|e| tracing::warn!(error = %e, "metrics: cannot read the pinned maps"))
            .ok();
        Self {
            protocols: protocols(&node.metrics, &configured),
            approvals_pending: node.approvals.pending_count() as i64,
            audit: node.audit.progress(),
            ebpf: node.intercept.stats(),
            maps,
            targets: configured.len(),
            dns_learned: node.intercept.learned_count(),
            busy_poll: crate::proxy::busy_poll::stats(),
        }
    }

    pub fn encode(self, format: ContentType) -> String {
        let mut registry = Registry::with_prefix("hoop");
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        let result = match format {
            ContentType::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &registry)
            }
            ContentType::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
        };
        result.expect("writing to a String cannot fail");
        out
    }
}

/// The per-protocol part of a snapshot.
pub fn protocols(m: &Metrics, configured: &[Protocol]) -> Vec<ProtocolSnapshot> {
    PROTOCOLS
        .iter()
        .map(|&protocol| {
            let i = proto_index(protocol);
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            ProtocolSnapshot {
                protocol,
                live_sessions: m.live_sessions(protocol),
                sessions: load(&m.sessions[i]),
                statements: std::array::from_fn(|d| load(&m.statements[i][d])),
                added_latency: m.added_latency[i].snapshot(),
            }
        })
        .filter(|p| configured.contains(&p.protocol) || p.sessions > 0)
        .collect()
}

/// Renders a scrape of `node` (see [`Snapshot::gather`]).
pub fn render(node: &Node, format: ContentType) -> String {
    Snapshot::gather(node).encode(format)
}

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// Writes one metric family: `samples` are (labels, value).
fn family<'a, V: Copy>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels<'a>, V)>,
    write: impl Fn(&mut prometheus_client::encoding::MetricEncoder, V) -> fmt::Result,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let mut sample = m.encode_family(&labels)?;
        write(&mut sample, v)?;
    }
    Ok(())
}

fn counter(m: &mut prometheus_client::encoding::MetricEncoder, v: u64) -> fmt::Result {
    m.encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    m: &mut prometheus_client::encoding::MetricEncoder,
    v: V,
) -> fmt::Result {
    m.encode_gauge(&v)
}

fn proto(p: &ProtocolSnapshot) -> Labels<'static> {
    vec![("protocol", Cow::Borrowed(p.protocol.as_str()))]
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let version = vec![("version", Cow::Borrowed(env!("CARGO_PKG_VERSION")))];
        family(
            &mut enc,
            "build_info",
            "hoopd version.",
            MetricType::Gauge,
            [(version, 1i64)],
            gauge,
        )?;
        family(
            &mut enc,
            "targets",
            "Configured targets.",
            MetricType::Gauge,
            [(vec![], self.targets as i64)],
            gauge,
        )?;
        self.encode_sessions(&mut enc)?;
        family(
            &mut enc,
            "approvals_pending",
            "Requests held for an operator's approval.",
            MetricType::Gauge,
            [(vec![], self.approvals_pending)],
            gauge,
        )?;
        self.encode_audit(&mut enc)?;
        self.encode_busy_poll(&mut enc)?;
        self.encode_ebpf(&mut enc)
    }
}

impl Snapshot {
    fn encode_sessions(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let ps = &self.protocols;
        family(
            enc,
            "sessions_live",
            "Sessions open now.",
            MetricType::Gauge,
            ps.iter().map(|p| (proto(p), p.live_sessions)),
            gauge,
        )?;
        family(
            enc,
            "sessions",
            "Sessions started.",
            MetricType::Counter,
            ps.iter().map(|p| (proto(p), p.sessions)),
            counter,
        )?;
        let statements = ps.iter().flat_map(|p| {
            DECISIONS.iter().zip(p.statements).map(move |(d, n)| {
                let mut l = proto(p);
                l.push(("decision", Cow::Borrowed(*d)));
                (l, n)
            })
        });
        family(
            enc,
            "statements",
            "Statements decided, by protocol and decision (refused: not forwarded because its audit record could not be written).",
            MetricType::Counter,
            statements,
            counter,
        )?;
        let mut m = enc.encode_descriptor(
            "statement_added_latency_seconds",
            "Delay hoopd adds to a client request: from the read that completed it to its hand-over to the upstream socket (classification, decision, audit write, and in strict durability the fdatasync).",
            None,
            MetricType::Histogram,
        )?;
        for p in ps {
            let h = &p.added_latency;
            let labels = proto(p);
            m.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(h.sum_s, h.count, &h.buckets, None)?;
        }
        Ok(())
    }

    fn encode_audit(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let a = &self.audit;
        let one = |v: i64| [(Labels::new(), v)];
        family(
            enc,
            "audit_records",
            "Audit records appended since the trail began.",
            MetricType::Counter,
            [(vec![], a.sealed)],
            counter,
        )?;
        family(
            enc,
            "audit_undurable_records",
            "Audit records not yet covered by an fdatasync (lost by a host crash, not by a hoopd crash once written).",
            MetricType::Gauge,
            one((a.sealed - a.durable) as i64),
            gauge,
        )?;
        family(
            enc,
            "audit_unwritten_records",
            "Audit records sealed but not yet written to the segment file.",
            MetricType::Gauge,
            one((a.sealed - a.written) as i64),
            gauge,
        )?;
        family(
            enc,
            "audit_uncheckpointed_records",
            "Audit records written after the last signed checkpoint.",
            MetricType::Gauge,
            one(a.written.saturating_sub(a.checkpointed) as i64),
            gauge,
        )?;
        family(
            enc,
            "audit_durable_lag_seconds",
            "How long the oldest audit record that is not yet durable has waited, at most (0: all durable).",
            MetricType::Gauge,
            [(vec![], a.durable_lag.as_secs_f64())],
            gauge,
        )?;
        family(
            enc,
            "audit_failed",
            "1 when the audit trail stopped after a write or sync failure (requests are then refused).",
            MetricType::Gauge,
            one(i64::from(a.failed)),
            gauge,
        )?;
        family(
            enc,
            "audit_syncs",
            "Audit group commits (one fdatasync covering every record written before it).",
            MetricType::Counter,
            [(vec![], a.syncs)],
            counter,
        )?;
        family(
            enc,
            "audit_sync_wakeups",
            "Times the audit sync thread woke; it sleeps while nothing is left to file, sync or checkpoint.",
            MetricType::Counter,
            [(vec![], a.sync_wakeups)],
            counter,
        )
    }

    fn encode_busy_poll(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let b = &self.busy_poll;
        family(
            enc,
            "worker_busy_poll_seconds",
            "Time connection workers spent polling their sockets instead of sleeping ([listen] busy_poll_us).",
            MetricType::Counter,
            [(vec![], b.polled.as_secs_f64())],
            |m, v| m.encode_counter::<NoLabelSet, f64, u64>(&v, None),
        )?;
        family(
            enc,
            "worker_busy_poll_wakeups_saved",
            "Times a polling connection worker found new data without having slept (each a wake-up saved).",
            MetricType::Counter,
            [(vec![], b.caught)],
            counter,
        )?;
        let stops = [("ran_out", b.ran_out), ("cpu_busy", b.cpu_busy)]
            .map(|(r, n)| (vec![("reason", Cow::Borrowed(r))], n));
        family(
            enc,
            "worker_busy_poll_stops",
            "Polls ended: the window passed with no read, or a thread was waiting for a CPU.",
            MetricType::Counter,
            stops,
            counter,
        )?;
        family(
            enc,
            "worker_busy_poll_windows_skipped",
            "Poll windows not started because the node's CPUs were under pressure (PSI).",
            MetricType::Counter,
            [(vec![], b.skipped)],
            counter,
        )
    }

    fn encode_ebpf(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let s = &self.ebpf;
        family(
            enc,
            "ebpf_redirects",
            "Connects redirected to hoopd by the eBPF programs.",
            MetricType::Counter,
            [(vec![], s.redirected)],
            counter,
        )?;
        family(
            enc,
            "ebpf_mark_bypasses",
            "Connects to protected destinations let through because the socket carried hoopd's mark.",
            MetricType::Counter,
            [(vec![], s.bypass_mark)],
            counter,
        )?;
        family(
            enc,
            "ebpf_record_failures",
            "Redirected connects whose record could not be stored (map full): hoopd cannot attribute them and refuses them.",
            MetricType::Counter,
            [(vec![], s.record_failed)],
            counter,
        )?;
        let dns = [
            ("redirected", s.dns_redirected),
            ("direct", s.dns_direct),
            ("dropped", s.dns_dropped),
            ("no_slot", s.dns_no_slot),
        ]
        .map(|(o, n)| (vec![("outcome", Cow::Borrowed(o))], n));
        family(
            enc,
            "dns_queries",
            "DNS queries of the attached subtree: redirected to hoopd's forwarder, sent direct (forwarder down), dropped by the DNS guard (a protected name asked directly), refused for want of a resolver slot.",
            MetricType::Counter,
            dns,
            counter,
        )?;
        family(
            enc,
            "dns_learned_addresses",
            "Addresses learned from DNS answers for protected names (they expire with their TTL).",
            MetricType::Gauge,
            [(vec![], self.dns_learned as i64)],
            gauge,
        )?;
        let Some(maps) = &self.maps else {
            return Ok(());
        };
        let by_map = |f: fn(&MapOccupancy) -> i64| {
            maps.iter()
                .map(move |m| (vec![("map", Cow::Borrowed(m.name))], f(m)))
        };
        family(
            enc,
            "ebpf_map_entries",
            "Entries in a pinned eBPF map.",
            MetricType::Gauge,
            by_map(|m| m.entries as i64),
            gauge,
        )?;
        family(
            enc,
            "ebpf_map_capacity",
            "Capacity (max_entries) of a pinned eBPF map.",
            MetricType::Gauge,
            by_map(|m| i64::from(m.capacity)),
            gauge,
        )
    }
}

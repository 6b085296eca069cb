use std::time::Duration;

use super::{collect::Snapshot, histogram::Histogram, *};
use crate::{audit::Progress, intercept::Stats};

#[test]
fn histogram_buckets_hold_their_own_counts_and_sum_to_the_count() {
    let h = Histogram::default();
    h.observe_n(Duration::from_micros(30), 2); // ≤ 50 µs
    h.observe_n(Duration::from_micros(50), 1); // exactly on a bound: le is inclusive
    h.observe_n(Duration::from_millis(3), 1); // ≤ 5 ms
    h.observe_n(Duration::from_secs(5), 1); // +Inf
    h.observe_n(Duration::from_secs(5), 0); // nothing
    let s = h.snapshot();
    assert_eq!(s.count, 5);
    assert_eq!(s.buckets.first(), Some(&(0.000_05, 3)));
    assert_eq!(s.buckets.iter().find(|b| b.0 == 0.005).unwrap().1, 1);
    assert_eq!(s.buckets.iter().find(|b| b.0 == 1.0).unwrap().1, 0);
    assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
    assert_eq!(s.buckets.iter().map(|b| b.1).sum::<u64>(), s.count);
    assert!(s.buckets.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(
        (s.sum_s - (60e-6 + 50e-6 + 3e-3 + 5.0)).abs() < 1e-9,
        "{}",
        s.sum_s
    );
}

#[test]
fn live_sessions_count_while_their_guards_live() {
    let m = Metrics::new();
    let a = m.session(Protocol::Postgres);
    let b = m.session(Protocol::Postgres);
    let c = m.session(Protocol::Tcp);
    assert_eq!(m.live_sessions(Protocol::Postgres), 2);
    drop((a, c));
    assert_eq!(m.live_sessions(Protocol::Postgres), 1);
    assert_eq!(m.live_sessions(Protocol::Tcp), 0);
    drop(b);
    assert_eq!(m.live_sessions(Protocol::Postgres), 0);
}

#[test]
fn decisions_are_counted_under_their_name_or_other() {
    let m = Metrics::new();
    m.decided(Protocol::Postgres, "allow", 3);
    m.decided(Protocol::Postgres, "deny", 1);
    m.decided(Protocol::Postgres, "refused", 2);
    m.decided(Protocol::Postgres, "quarantine", 1);
    assert_eq!(m.statements(Protocol::Postgres, "allow"), 3);
    assert_eq!(m.statements(Protocol::Postgres, "deny"), 1);
    assert_eq!(m.statements(Protocol::Postgres, "refused"), 2);
    assert_eq!(m.statements(Protocol::Postgres, "other"), 1);
    assert_eq!(m.statements(Protocol::Tcp, "allow"), 0);
}

fn snapshot(m: &Metrics) -> Snapshot {
    Snapshot {
        protocols: collect::protocols(m, &[Protocol::Postgres]),
        approvals_pending: 0,
        audit: Progress {
            sealed: 10,
            written: 9,
            durable: 7,
            checkpointed: 5,
            durable_lag: Duration::from_millis(4),
            failed: false,
            syncs: 6,
            sync_wakeups: 8,
        },
        ebpf: Stats {
            redirected: 42,
            bypass_mark: 1,
            record_failed: 0,
            dns_redirected: 7,
            dns_direct: 0,
            dns_dropped: 2,
            dns_no_slot: 0,
        },
        maps: Some(vec![crate::intercept::MapOccupancy {
            name: "HOOP_BY_CLIENT",
            entries: 3,
            capacity: 65536,
        }]),
        targets: 2,
        dns_learned: 5,
        busy_poll: crate::proxy::busy_poll::Stats {
            polled: Duration::from_millis(1500),
            caught: 12,
            ran_out: 3,
            cpu_busy: 4,
            skipped: 6,
        },
    }
}

#[test]
fn text_exposition_has_every_family_with_sane_values() {
    let m = Metrics::new();
    let _live = m.session(Protocol::Postgres);
    m.decided(Protocol::Postgres, "allow", 2);
    m.forwarded(Protocol::Postgres, std::time::Duration::from_micros(30), 2);
    let text = snapshot(&m).encode(ContentType::Text);
    for line in [
        "hoop_sessions_live{protocol=\"postgres\"} 1",
        "hoop_sessions_total{protocol=\"postgres\"} 1",
        "hoop_statements_total{protocol=\"postgres\",decision=\"allow\"} 2",
        "hoop_statements_total{protocol=\"postgres\",decision=\"deny\"} 0",
        "hoop_statement_added_latency_seconds_count{protocol=\"postgres\"} 2",
        "hoop_statement_added_latency_seconds_bucket{protocol=\"postgres\",le=\"+Inf\"} 2",
        "hoop_statement_added_latency_seconds_bucket{protocol=\"postgres\",le=\"1\"} 2",
        "hoop_approvals_pending 0",
        "hoop_audit_records_total 10",
        "hoop_audit_undurable_records 3",
        "hoop_audit_unwritten_records 1",
        "hoop_audit_uncheckpointed_records 4",
        "hoop_audit_durable_lag_seconds 0.004",
        "hoop_audit_failed 0",
        "hoop_audit_syncs_total 6",
        "hoop_audit_sync_wakeups_total 8",
        "hoop_ebpf_redirects_total 42",
        "hoop_ebpf_map_entries{map=\"HOOP_BY_CLIENT\"} 3",
        "hoop_ebpf_map_capacity{map=\"HOOP_BY_CLIENT\"} 65536",
        "hoop_targets 2",
        "hoop_dns_queries_total{outcome=\"redirected\"} 7",
        "hoop_dns_queries_total{outcome=\"dropped\"} 2",
        "hoop_dns_learned_addresses 5",
        "hoop_worker_busy_poll_seconds_total 1.5",
        "hoop_worker_busy_poll_wakeups_saved_total 12",
        "hoop_worker_busy_poll_stops_total{reason=\"ran_out\"} 3",
        "hoop_worker_busy_poll_stops_total{reason=\"cpu_busy\"} 4",
        "hoop_worker_busy_poll_windows_skipped_total 6",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing in:\n{text}"
        );
    }
    // protocols that no target uses and that saw nothing are left out
    assert!(!text.contains("protocol=\"tds\""), "{text}");
    assert!(!text.contains("# EOF"));
}

#[test]
fn openmetrics_exposition_ends_with_eof() {
    let m = Metrics::new();
    let text = snapshot(&m).encode(ContentType::OpenMetrics);
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE hoop_statements counter"), "{text}");
}

#[test]
fn content_type_follows_accept() {
    assert_eq!(
        ContentType::negotiate(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )),
        ContentType::OpenMetrics
    );
    assert_eq!(ContentType::negotiate(Some("*/*")), ContentType::Text);
    assert_eq!(ContentType::negotiate(None), ContentType::Text);
}

//! The sync thread between bursts: it sleeps while nothing is left to file, sync or
//! checkpoint, and the next record ends the sleep.

use std::time::Duration;

use super::*;
use crate::audit::record::Prepared;

/// A request's record (`append_prepared`: into the write-ahead file, filed and synced by the
/// sync thread alone).
fn request(log: &AuditLog, i: u64) -> u64 {
    let p = Prepared::new("pg.query", &event(i), false).unwrap();
    log.append_prepared(&p).unwrap().seq()
}

#[test]
fn an_idle_log_sleeps_until_the_next_record() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        sync_interval_ms: 5,
        checkpoint_interval_ms: 100,
        ..config(tmp.path())
    };
    let limit = Duration::from_secs(10);
    let log = AuditLog::open(cfg.clone()).unwrap();
    let seq = request(&log, 0);
    wait_for("the first record durable and checkpointed", limit, || {
        let p = log.progress();
        p.durable > seq && p.checkpointed == p.sealed
    });
    // the round that signed the checkpoint ends, then one empty interval: asleep from then on
    std::thread::sleep(Duration::from_millis(50));
    let before = log.progress();
    // 100 sync intervals with nothing to do
    std::thread::sleep(Duration::from_millis(500));
    let after = log.progress();
    assert!(
        after.sync_wakeups - before.sync_wakeups <= 2,
        "an idle sync thread woke {} times in 100 intervals",
        after.sync_wakeups - before.sync_wakeups
    );
    assert_eq!(after.syncs, before.syncs, "nothing to sync while idle");

    // the next record ends the sleep: filed and synced with nothing else asking for it
    let seq = request(&log, 1);
    wait_for("the record after the quiet spell durable", limit, || {
        log.progress().durable > seq
    });
    assert!(log.progress().syncs > after.syncs);
    // and its checkpoint follows once the checkpoint interval passes, with no later record
    wait_for("a checkpoint covering it", limit, || {
        log.progress().checkpointed > seq
    });
    log.close().unwrap();
    assert_verifies(&cfg.dir);
}

/// Under a steady trickle the thread keeps its rounds (an interval never ends empty), and
/// every record is durable within a round or two of its seal.
#[test]
fn a_trickle_of_records_is_synced_every_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        sync_interval_ms: 5,
        ..config(tmp.path())
    };
    let log = AuditLog::open(cfg.clone()).unwrap();
    let start = log.progress();
    let mut last = 0;
    for i in 0..100 {
        last = request(&log, i);
        std::thread::sleep(Duration::from_millis(1));
    }
    wait_for("the last record durable", Duration::from_secs(10), || {
        log.progress().durable > last
    });
    let synced = log.progress().syncs - start.syncs;
    // 100 records over ≥ 100 ms at one round per 5 ms: rounds, not one per record, and not
    // one sync at the end either (≥ 2, not ≥ 20: on a loaded machine one fdatasync can take
    // tens of ms, and 4 rounds were seen)
    assert!((2..100).contains(&synced), "{synced} syncs for 100 records");
    log.close().unwrap();
    assert_verifies(&cfg.dir);
}

/// Retention by age needs no rotation to notice: segments that pass the age limit while the
/// node is quiet are pruned (`audit.prune` recorded and checkpointed) with no further record.
#[test]
fn a_quiet_log_prunes_by_age_without_a_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        retention_max_age_secs: Some(1),
        ..small_segments(tmp.path())
    };
    let log = AuditLog::open(cfg.clone()).unwrap();
    for i in 0..100 {
        log.append("pg.query", &event(i)).unwrap();
    }
    let segments = segment_paths(&cfg.dir).len();
    assert!(segments >= 3, "the test needs closed segments: {segments}");
    // written within well under a second: none was old enough at its rotation
    let first = segment_paths(&cfg.dir)[0].clone();
    assert!(first.exists());
    wait_for("the aged segments pruned", Duration::from_secs(15), || {
        !first.exists()
    });
    // (read once the log is closed: a prune in progress deletes the files a reader lists)
    log.close().unwrap();
    let recs = records(&cfg.dir);
    assert!(recs.iter().any(|r| r.kind == KIND_PRUNE));
    assert!(recs[0].seq > 0);
    assert_verifies(&cfg.dir);
}

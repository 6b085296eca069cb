//! Retention: prune records, a crash amid a prune's deletions, readers of a live pruning log.

use std::fs;

use super::*;

#[test]
fn retention_by_size_records_the_prune_and_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        retention_max_bytes: Some(12_000),
        ..small_segments(tmp.path())
    };
    let log = AuditLog::open(cfg.clone()).unwrap();
    for i in 0..300 {
        log.append("pg.query", &event(i)).unwrap();
    }
    log.enforce_retention().unwrap();
    log.close().unwrap();
    let total: u64 = segment_paths(&cfg.dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    // Within the limit, give or take the active segment and what follows the last selection:
    // its prune record, whose size grows with the segments it lists (one explicit enforcement
    // after the sync thread fell behind on a loaded machine lists many), and the close.
    let prune_bytes: u64 = segment_paths(&cfg.dir)
        .iter()
        .flat_map(|p| read_lines(p))
        .filter(|l| {
            // (the record without its newline: parse_line takes a line's content)
            let line = l.strip_suffix(b"\n").unwrap_or(l);
            crate::audit::record::Record::parse_line(line).is_ok_and(|r| r.kind == KIND_PRUNE)
        })
        .map(|l| l.len() as u64)
        .sum();
    assert!(prune_bytes > 0, "the prune records are found");
    assert!(
        total <= 12_000 + 4096 + 1024 + prune_bytes,
        "total {total}, prune records {prune_bytes}"
    );
    let recs = records(&cfg.dir);
    assert!(recs[0].seq > 0);
    assert!(recs.iter().any(|r| r.kind == KIND_PRUNE));
    let report = assert_verifies(&cfg.dir);
    assert!(report.first_seq.unwrap() > 0 && report.checkpoints_checked > 0);
    // The log reopens on the pruned chain and keeps going.
    write_log(&cfg, 3);
    assert_verifies(&cfg.dir);
}

/// hoopd's retention signs a checkpoint over its prune record, then deletes the files; a crash
/// in between leaves segments the prune announced — none or some deleted. That directory
/// verifies, and the next open finishes the deletion. (A pruned start used to be checked
/// against the last prune record only: after an earlier prune, verify called this state
/// tampering and hoopd refused to start on it.)
#[test]
fn a_crash_amid_a_prunes_deletions_verifies_and_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = small_segments(tmp.path());
    let pruning = AuditConfig {
        retention_max_bytes: Some(12_000),
        ..plain.clone()
    };
    // a first prune: the log starts after seq 0
    let log = AuditLog::open(pruning.clone()).unwrap();
    for i in 0..150 {
        log.append("pg.query", &event(i)).unwrap();
    }
    log.enforce_retention().unwrap();
    log.close().unwrap();
    let start = records(&plain.dir)[0].seq;
    assert!(start > 0);
    // more segments, kept (no limit), for the next open to prune
    write_log(&plain, 150);
    let before: Vec<(std::path::PathBuf, Vec<u8>)> = segment_paths(&plain.dir)
        .into_iter()
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    let log = AuditLog::open(pruning.clone()).unwrap();
    // (the sync thread's own pass after the start may have pruned first)
    log.enforce_retention().unwrap();
    log.close().unwrap();
    // the last prune (there may have been two): a crash amid its deletions leaves its files
    let prune: crate::audit::events::Prune = records(&plain.dir)
        .into_iter()
        .rfind(|r| r.kind == KIND_PRUNE)
        .map(|r| serde_json::from_value(r.event).unwrap())
        .unwrap();
    let gone: Vec<_> = prune
        .segments
        .iter()
        .map(|s| {
            let (path, bytes) = before
                .iter()
                .find(|(p, _)| p.file_name().unwrap() == s.name.as_str())
                .expect("a pruned segment was there before");
            assert!(!path.exists());
            (path, bytes)
        })
        .collect();
    let after_prune = records(&plain.dir)[0].seq;
    assert_eq!(after_prune, prune.first_retained_seq);
    assert!(after_prune > start, "a prune after the first one");

    // the crash came before every deletion, or after the first of them (if there were two)
    if gone.len() < 2 {
        eprintln!("the last prune took one segment: the partial-deletion case is not run");
    }
    for deleted in 0..gone.len().min(2) {
        let copy = tmp.path().join(format!("crash-{deleted}"));
        fs::create_dir(&copy).unwrap();
        for e in fs::read_dir(&plain.dir).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
        for (path, bytes) in &gone[deleted..] {
            fs::write(copy.join(path.file_name().unwrap()), bytes).unwrap();
        }
        let first = records(&copy)[0].seq;
        assert!(first < after_prune, "segments the prune announced are back");
        if deleted == 0 {
            assert_eq!(first, prune.segments[0].first_seq);
        }
        assert_verifies(&copy);
        // the next open finishes the deletion
        // (without a limit: no prune of its own)
        let cfg = AuditConfig {
            dir: copy.clone(),
            ..plain.clone()
        };
        AuditLog::open(cfg).unwrap().close().unwrap();
        assert_eq!(records(&copy)[0].seq, after_prune);
        assert_verifies(&copy);
    }
}

#[test]
fn retention_by_age_and_deleting_the_first_segment_by_hand_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        retention_max_age_secs: Some(0),
        ..small_segments(tmp.path())
    };
    let log = AuditLog::open(cfg.clone()).unwrap();
    for i in 0..100 {
        log.append("pg.query", &event(i)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    let pruned = log.enforce_retention().unwrap();
    log.close().unwrap();
    // Everything but the active segment was older than 0 s (the prune record itself may have
    // filled that one and opened another).
    assert!(segment_paths(&cfg.dir).len() <= 2);
    assert!(records(&cfg.dir)[0].seq > 0);
    assert!(pruned.is_none_or(|p| p.reason == crate::audit::events::PruneReason::MaxAge));
    assert_verifies(&cfg.dir);

    // Without retention, deleting the oldest segment is tampering.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_segments(tmp.path());
    write_log(&cfg, 100);
    fs::remove_file(&segment_paths(&cfg.dir)[0]).unwrap();
    let report = verify_dir(&cfg.dir, &VerifyOptions::default()).unwrap();
    assert!(
        report
            .find(|e| matches!(e, VerifyError::PrunedPrefixUnproven { .. }))
            .is_some(),
        "{:#?}",
        report.problems
    );
}

/// Verifying a live log whose retention keeps deleting its oldest segments: a segment gone
/// between the listing and its reading is retention's doing, not a problem of the log (verify
/// starts over), and a proof is made all the same.
#[test]
fn verify_and_prove_while_retention_prunes_a_live_log() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        retention_max_bytes: Some(12_000),
        ..small_segments(tmp.path())
    };
    let log = AuditLog::open(cfg.clone()).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut starts = BTreeSet::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            // ~1000 records a second, a few hundred segments filled, rotated and pruned (a
            // checkpoint each: verify reads them all, so the run is bounded by records)
            for i in 0..3000 {
                log.append("pg.query", &event(i)).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let report = verify_dir(&cfg.dir, &VerifyOptions::default()).unwrap();
            // (a live log's last line may be mid-write: the only problem allowed)
            let problems = report
                .problems
                .iter()
                .filter(|p| !matches!(p.error, VerifyError::TornTail { .. }))
                .collect::<Vec<_>>();
            assert!(problems.is_empty(), "{problems:#?}");
            starts.insert(report.first_seq);
            if let Some(first) = report.first_seq {
                // (pruned, beyond the last checkpoint or before the first by now: fine; a read
                // error is not)
                match crate::audit::prove(&cfg.dir, first + 1, None) {
                    Ok(_)
                    | Err(crate::audit::error::ProofError::Pruned { .. })
                    | Err(crate::audit::error::ProofError::OutOfRange { .. })
                    | Err(crate::audit::error::ProofError::NoCheckpoint { tree_size: None }) => {}
                    // as for verify: the live log's last line may be mid-write
                    Err(crate::audit::error::ProofError::LogInvalid(p))
                        if matches!(p.error, VerifyError::TornTail { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
    });
    log.close().unwrap();
    // the reads went on while retention moved the log's start many times
    assert!(starts.len() >= 5, "{starts:?}");
    assert_verifies(&cfg.dir);
}

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::*;
use crate::audit::log::AuditLog;
use crate::audit::testutil::{config, event, small_segments, write_log};

fn seqs(dir: &Path, filter: Filter) -> Vec<u64> {
    read(dir, filter)
        .unwrap()
        .map(|e| e.unwrap().record.seq)
        .collect()
}

#[test]
fn filters_by_seq_kind_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_segments(tmp.path());
    write_log(&cfg, 100);
    let all = seqs(&cfg.dir, Filter::default());
    assert_eq!(all, (0..all.len() as u64).collect::<Vec<_>>());
    let range = seqs(
        &cfg.dir,
        Filter {
            from_seq: Some(40),
            to_seq: Some(60),
            ..Filter::default()
        },
    );
    assert_eq!(range, (40..=60).collect::<Vec<_>>());
    let kind = Filter {
        kind: Some("pg.query".into()),
        ..Filter::default()
    };
    assert_eq!(read(&cfg.dir, kind).unwrap().count(), 100);
    let session = Filter {
        fields: vec![("/session_id".into(), json!("s-1"))],
        ..Filter::default()
    };
    let hits: Vec<Entry> = read(&cfg.dir, session)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(hits.len(), 25);
    assert!(hits.iter().all(|e| e.record.event["session_id"] == "s-1"));
    let subject = Filter {
        fields: vec![("/identity/job".into(), json!(7))],
        ..Filter::default()
    };
    let hit = read(&cfg.dir, subject).unwrap().next().unwrap().unwrap();
    assert_eq!(hit.line, hit.record.to_line());
}

#[test]
fn filters_by_time() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(tmp.path())).unwrap();
    log.append("a", &json!(1)).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let middle = SystemTime::now();
    std::thread::sleep(Duration::from_millis(5));
    log.append("b", &json!(2)).unwrap();
    let dir = log.dir().to_owned();
    let kinds = |f: Filter| {
        read(&dir, f)
            .unwrap()
            .map(|e| e.unwrap().record.kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(Filter {
            since: Some(middle),
            ..Filter::default()
        }),
        ["b"]
    );
    assert_eq!(
        kinds(Filter {
            until: Some(middle),
            kind: Some("a".into()),
            ..Filter::default()
        }),
        ["a"]
    );
}

#[test]
fn follower_sees_new_records_across_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_segments(tmp.path());
    let log = AuditLog::open(cfg.clone()).unwrap();
    let mut follower = Follower::new(
        &cfg.dir,
        Filter {
            kind: Some("pg.query".into()),
            ..Filter::default()
        },
    );
    assert!(follower.poll().unwrap().is_empty());
    let mut seen = Vec::new();
    for i in 0..80 {
        log.append("pg.query", &event(i)).unwrap();
        if i % 9 == 0 {
            seen.extend(
                follower
                    .poll()
                    .unwrap()
                    .into_iter()
                    .map(|e| e.unwrap().record.event["identity"]["job"].clone()),
            );
        }
    }
    seen.extend(
        follower
            .poll()
            .unwrap()
            .into_iter()
            .map(|e| e.unwrap().record.event["identity"]["job"].clone()),
    );
    assert_eq!(seen, (0..80).map(|i| json!(i)).collect::<Vec<_>>());
    assert!(crate::audit::testutil::segment_paths(&cfg.dir).len() > 2);
}

#[test]
fn a_record_failing_its_hash_is_an_error_item() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    write_log(&cfg, 3);
    let seg = crate::audit::testutil::segment_paths(&cfg.dir).remove(0);
    let text = std::fs::read_to_string(&seg)
        .unwrap()
        .replacen("id = 1", "id = 2", 1);
    std::fs::write(&seg, text).unwrap();
    let items: Vec<_> = read(&cfg.dir, Filter::default()).unwrap().collect();
    let bad = items.iter().find_map(|i| i.as_ref().err()).unwrap();
    assert_eq!(bad.location.line, 3);
}

/// Retention deletes the oldest segments of a live log; a read that finds the segments it
/// listed gone before it opened any goes on from the oldest left, as if it had started later.
#[test]
fn a_read_started_before_a_prune_goes_on_from_the_oldest_segment_left() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_segments(tmp.path());
    write_log(&cfg, 100);
    let segs = list_segments(&cfg.dir).unwrap();
    assert!(segs.len() >= 4, "the test needs segments: {}", segs.len());
    let reader = read(&cfg.dir, Filter::default()).unwrap();
    for s in &segs[..2] {
        std::fs::remove_file(&s.path).unwrap();
    }
    let got: Vec<u64> = reader.map(|e| e.unwrap().record.seq).collect();
    let last = seqs(&cfg.dir, Filter::default()).last().copied().unwrap();
    assert_eq!(got, (segs[2].first_seq..=last).collect::<Vec<_>>());
}

/// Once records were read, a pruned next segment would leave a hole in the output: said, not
/// skipped. A segment missing from the middle (not how retention deletes) is a plain error.
#[test]
fn a_segment_pruned_under_a_read_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_segments(tmp.path());
    write_log(&cfg, 100);
    let segs = list_segments(&cfg.dir).unwrap();
    let mut reader = read(&cfg.dir, Filter::default()).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().record.seq, 0);
    for s in &segs[..2] {
        std::fs::remove_file(&s.path).unwrap();
    }
    let rest: Vec<_> = reader.collect();
    let first_gone = rest.iter().position(Result::is_err).unwrap();
    // the open first segment is still read to its end
    assert_eq!(first_gone as u64 + 1, segs[1].first_seq);
    let problem = rest[first_gone].as_ref().unwrap_err();
    assert_eq!(problem.error, VerifyError::PrunedWhileReading);
    assert_eq!(problem.location.file, segs[1].name);

    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_segments(tmp.path());
    write_log(&cfg, 100);
    let segs = list_segments(&cfg.dir).unwrap();
    let reader = read(&cfg.dir, Filter::default()).unwrap();
    std::fs::remove_file(&segs[1].path).unwrap();
    let problem = reader.filter_map(Result::err).next().unwrap();
    assert_eq!(
        problem.error,
        VerifyError::Io {
            kind: std::io::ErrorKind::NotFound
        }
    );
    assert_eq!(problem.location.file, segs[1].name);
}

/// `tail -f` that falls behind retention loses the pruned records (they are gone) and follows
/// on from the oldest segment left instead of failing.
#[test]
fn a_follower_behind_a_prune_follows_on() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_segments(tmp.path());
    write_log(&cfg, 3);
    let mut f = Follower::new(&cfg.dir, Filter::default());
    let first: Vec<u64> = f
        .poll()
        .unwrap()
        .into_iter()
        .map(|e| e.unwrap().record.seq)
        .collect();
    assert_eq!(first, (0..first.len() as u64).collect::<Vec<_>>());
    write_log(&cfg, 100);
    let segs = list_segments(&cfg.dir).unwrap();
    assert!(segs.len() >= 4, "the test needs segments: {}", segs.len());
    for s in &segs[..2] {
        std::fs::remove_file(&s.path).unwrap();
    }
    let next: Vec<u64> = f
        .poll()
        .unwrap()
        .into_iter()
        .map(|e| e.unwrap().record.seq)
        .collect();
    let last = seqs(&cfg.dir, Filter::default()).last().copied().unwrap();
    assert_eq!(next, (segs[2].first_seq..=last).collect::<Vec<_>>());
}

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

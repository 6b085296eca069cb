//! One test per tamper case: each must be detected, at the right file, line and seq.

use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use super::*;
use crate::audit::checkpoint::Checkpoint;
use crate::audit::config::AuditConfig;
use crate::audit::record::Record;
use crate::audit::segment::CHECKPOINTS_FILE;
use crate::audit::testutil::{
    read_lines, segment_paths, small_segments, write_lines, write_log_checkpointed,
};

/// A closed log of 120 events over several segments, with a checkpoint every 10 events.
fn fixture() -> (tempfile::TempDir, AuditConfig, Vec<PathBuf>) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_segments(tmp.path());
    write_log_checkpointed(&cfg, 120);
    let segs = segment_paths(&cfg.dir);
    assert!(segs.len() >= 4);
    (tmp, cfg, segs)
}

fn report(dir: &Path) -> VerifyReport {
    verify_dir(dir, &VerifyOptions::default()).unwrap()
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

fn seq_of(line: &[u8]) -> u64 {
    Record::parse_line(line.trim_ascii_end()).unwrap().seq
}

/// The first problem, which must be `pred`, at `file` line `line`.
fn expect_first(
    r: &VerifyReport,
    file: &str,
    line: u64,
    pred: impl Fn(&VerifyError) -> bool,
) -> Location {
    let first = r
        .problems
        .first()
        .unwrap_or_else(|| panic!("tampering not detected"));
    assert!(
        pred(&first.error),
        "unexpected first problem: {first}\nall: {:#?}",
        r.problems
    );
    assert_eq!(
        (first.location.file.as_str(), first.location.line),
        (file, line),
        "{first}"
    );
    first.location.clone()
}

#[test]
fn untampered_log_passes() {
    let (_tmp, cfg, segs) = fixture();
    let r = report(&cfg.dir);
    assert!(r.is_ok(), "{:#?}", r.problems);
    assert_eq!((r.first_seq, r.segments.len()), (Some(0), segs.len()));
    assert_eq!(r.records, r.tree_size);
    assert!(r.checkpoints_checked >= 12);
    assert_eq!(r.checkpoints_checked, r.checkpoint_lines);
}

#[test]
fn edited_byte_is_found_at_its_line() {
    let (_tmp, cfg, segs) = fixture();
    let mut lines = read_lines(&segs[1]);
    let seq = seq_of(&lines[3]);
    let pos = lines[3].windows(6).position(|w| w == b"SELECT").unwrap();
    lines[3][pos] = b'D'; // "DELECT": still valid JSON, different content
    write_lines(&segs[1], &lines);
    let r = report(&cfg.dir);
    let at = expect_first(&r, &name(&segs[1]), 4, |e| {
        matches!(e, VerifyError::HashMismatch { .. })
    });
    assert_eq!(at.seq, None, "the seq of an edited line is not trusted");
    assert_eq!(
        at.offset,
        lines[..3].iter().map(|l| l.len() as u64).sum::<u64>()
    );
    let _ = seq;
}

#[test]
fn deleted_record_is_a_seq_gap_at_the_next_record() {
    let (_tmp, cfg, segs) = fixture();
    let mut lines = read_lines(&segs[2]);
    let gone = seq_of(&lines[4]);
    lines.remove(4);
    write_lines(&segs[2], &lines);
    let r = report(&cfg.dir);
    let at = expect_first(
        &r,
        &name(&segs[2]),
        5,
        |e| matches!(e, VerifyError::SeqGap { expected, found } if *expected == gone && *found == gone + 1),
    );
    assert_eq!(at.seq, Some(gone + 1));
}

#[test]
fn swapped_records_are_detected_where_order_breaks() {
    let (_tmp, cfg, segs) = fixture();
    let mut lines = read_lines(&segs[1]);
    let expected = seq_of(&lines[2]);
    lines.swap(2, 3);
    write_lines(&segs[1], &lines);
    let r = report(&cfg.dir);
    expect_first(
        &r,
        &name(&segs[1]),
        3,
        |e| matches!(e, VerifyError::SeqGap { expected: x, .. } if *x == expected),
    );
}

#[test]
fn truncated_segments_are_detected() {
    // Cut mid-line: the torn line is reported where it starts.
    let (_tmp, cfg, segs) = fixture();
    let mut lines = read_lines(&segs[1]);
    let n = lines.len();
    lines[n - 1].truncate(40);
    write_lines(&segs[1], &lines);
    let r = report(&cfg.dir);
    expect_first(&r, &name(&segs[1]), n as u64, |e| {
        matches!(e, VerifyError::TornTail { bytes: 40 })
    });

    // Cut at a line boundary: the next segment does not continue the seq.
    let (_tmp, cfg, segs) = fixture();
    let mut lines = read_lines(&segs[1]);
    lines.truncate(lines.len() - 2);
    write_lines(&segs[1], &lines);
    let r = report(&cfg.dir);
    expect_first(&r, &name(&segs[2]), 1, |e| {
        matches!(e, VerifyError::SeqGap { .. })
    });

    // The last segment cut at a line boundary: signed checkpoints cover the lost records.
    let (_tmp, cfg, segs) = fixture();
    let last = segs.last().unwrap();
    let mut lines = read_lines(last);
    lines.truncate(lines.len() - 3);
    write_lines(last, &lines);
    let r = report(&cfg.dir);
    assert!(
        r.find(|e| matches!(e, VerifyError::CheckpointBeyondEnd { .. }))
            .is_some(),
        "{:#?}",
        r.problems
    );
    assert!(
        r.problems
            .iter()
            .all(|p| p.location.file == CHECKPOINTS_FILE)
    );
}

#[test]
fn reordered_segments_are_detected() {
    let (_tmp, cfg, segs) = fixture();
    let (a, b) = (fs::read(&segs[1]).unwrap(), fs::read(&segs[2]).unwrap());
    fs::write(&segs[1], &b).unwrap();
    fs::write(&segs[2], &a).unwrap();
    let r = report(&cfg.dir);
    expect_first(&r, &name(&segs[1]), 1, |e| {
        matches!(e, VerifyError::SeqGap { .. })
    });
    assert!(
        r.find(|e| matches!(e, VerifyError::SegmentNameMismatch { .. }))
            .is_some()
    );
}

#[test]
fn rewritten_history_with_fixed_up_hashes_is_caught_by_checkpoints() {
    let (_tmp, cfg, segs) = fixture();
    // An editor who recomputes every hash after the edit keeps the chain intact...
    let mut prev = None;
    let mut first_edited = None;
    for path in &segs[1..] {
        let mut out = Vec::new();
        for line in read_lines(path) {
            let mut rec = Record::parse_line(line.trim_ascii_end()).unwrap();
            if first_edited.is_none() && rec.kind == "pg.query" {
                rec.event["sql"] = "SELECT 1".into();
                first_edited = Some(rec.seq);
            }
            if let Some(p) = prev {
                rec.prev = p;
            }
            if first_edited.is_some() {
                rec.hash = rec.compute_hash();
                prev = Some(rec.hash);
            }
            let mut l = rec.to_line();
            l.push(b'\n');
            out.push(l);
        }
        write_lines(path, &out);
    }
    // ...but cannot re-sign the checkpoints.
    let r = report(&cfg.dir);
    let edited = first_edited.unwrap();
    assert!(
        r.find(|e| matches!(
            e,
            VerifyError::HashMismatch { .. } | VerifyError::ChainBroken { .. }
        ))
        .is_none()
    );
    let root = r
        .find(|e| matches!(e, VerifyError::RootMismatch { .. }))
        .unwrap();
    assert!(
        matches!(root.error, VerifyError::RootMismatch { tree_size, .. } if tree_size > edited && tree_size <= edited + 12)
    );
    assert_eq!(root.location.file, CHECKPOINTS_FILE);
}

#[test]
fn forged_deleted_and_foreign_checkpoints_are_detected() {
    let (_tmp, cfg, _) = fixture();
    let cp_path = cfg.dir.join(CHECKPOINTS_FILE);
    let original = read_lines(&cp_path);

    let mut lines = original.clone();
    let mut cp = Checkpoint::parse_line(lines[2].trim_ascii_end()).unwrap();
    cp.root[0] ^= 1;
    lines[2] = [cp.to_line(), b"\n".to_vec()].concat();
    write_lines(&cp_path, &lines);
    expect_first(&report(&cfg.dir), CHECKPOINTS_FILE, 3, |e| {
        *e == VerifyError::BadSignature
    });

    let mut lines = original.clone();
    lines.remove(2);
    write_lines(&cp_path, &lines);
    expect_first(&report(&cfg.dir), CHECKPOINTS_FILE, 3, |e| {
        *e == VerifyError::CheckpointChainBroken
    });

    let mut lines = original.clone();
    let cp = Checkpoint::parse_line(lines[2].trim_ascii_end()).unwrap();
    let forger = SigningKey::from_bytes(&[9; 32]);
    let forged = Checkpoint::sign(&forger, cp.tree_size, cp.root, cp.head, cp.time, cp.prev);
    lines[2] = [forged.to_line(), b"\n".to_vec()].concat();
    write_lines(&cp_path, &lines);
    expect_first(&report(&cfg.dir), CHECKPOINTS_FILE, 3, |e| {
        matches!(e, VerifyError::ForeignKey { .. })
    });
}

#[test]
fn foreign_key_is_detected() {
    let (_tmp, cfg, segs) = fixture();
    let other = SigningKey::from_bytes(&[5; 32]).verifying_key();
    // Pinning the expected key catches a directory that carries another key...
    let r = verify_dir(
        &cfg.dir,
        &VerifyOptions {
            expected_key: Some(other),
        },
    )
    .unwrap();
    expect_first(&r, crate::audit::segment::PUBLIC_KEY_FILE, 0, |e| {
        matches!(e, VerifyError::ForeignKey { .. })
    });
    // ...and swapping node.pub for another key breaks the genesis and every signature.
    crate::audit::keys::write_public_key(
        &cfg.dir.join(crate::audit::segment::PUBLIC_KEY_FILE),
        &other,
    )
    .unwrap();
    let r = report(&cfg.dir);
    assert!(
        r.find(|e| matches!(e, VerifyError::ForeignKey { .. }))
            .is_some()
    );
    let genesis = r.find(|e| *e == VerifyError::BadGenesis).unwrap();
    assert_eq!(
        (genesis.location.file.as_str(), genesis.location.line),
        (name(&segs[0]).as_str(), 1)
    );
}

#[test]
fn deletion_disguised_by_an_unsigned_prune_record_is_caught() {
    use crate::audit::events::{Prune, PruneReason, PrunedSegment};
    use crate::audit::record::{KIND_PRUNE, Prepared};
    let (_tmp, cfg, segs) = fixture();
    let gone = read_lines(&segs[0]);
    let last_gone = Record::parse_line(gone.last().unwrap().trim_ascii_end()).unwrap();
    let kept_first = seq_of(&read_lines(&segs[1])[0]);
    fs::remove_file(&segs[0]).unwrap();
    // A well-chained prune record appended after the last checkpoint, as an editor could.
    let prune = Prune {
        reason: PruneReason::MaxAge,
        first_retained_seq: kept_first,
        segments: vec![PrunedSegment {
            name: name(&segs[0]),
            first_seq: 0,
            last_seq: last_gone.seq,
            last_hash: hex::encode(last_gone.hash),
            last_time: last_gone.time.clone(),
            bytes: 0,
        }],
    };
    let last_path = segs.last().unwrap();
    let mut lines = read_lines(last_path);
    let tail = Record::parse_line(lines.last().unwrap().trim_ascii_end()).unwrap();
    let mut line = Vec::new();
    let p = Prepared::new(KIND_PRUNE, &serde_json::to_value(&prune).unwrap(), true).unwrap();
    p.seal(
        tail.seq + 1,
        &tail.hash,
        std::time::SystemTime::now(),
        &mut line,
    );
    lines.push(line);
    write_lines(last_path, &lines);
    let r = report(&cfg.dir);
    expect_first(
        &r,
        &name(&segs[1]),
        1,
        |e| matches!(e, VerifyError::PrunedPrefixUnproven { first_seq } if *first_seq == kept_first),
    );
}

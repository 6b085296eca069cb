use super::*;
use crate::audit::config::AuditConfig;
use crate::audit::log::AuditLog;
use crate::audit::merkle::mth;
use crate::audit::reader::{Filter, read};
use crate::audit::testutil::{config, event, small_segments};

/// A log with a checkpoint after every record: one signed tree per size 1..=n+1.
fn log_with_checkpoint_per_record(cfg: &AuditConfig, n: u64) -> Vec<Checkpoint> {
    let log = AuditLog::open(cfg.clone()).unwrap();
    let mut cps = vec![log.checkpoint().unwrap()];
    for i in 0..n {
        log.append("pg.query", &event(i)).unwrap();
        cps.push(log.checkpoint().unwrap());
    }
    log.close().unwrap();
    cps
}

#[test]
fn proofs_for_all_seq_and_size_pairs_match_naive_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let cps = log_with_checkpoint_per_record(&cfg, 24);
    let hashes: Vec<Hash> = read(&cfg.dir, Filter::default())
        .unwrap()
        .map(|e| e.unwrap().record.hash)
        .collect();
    let leaves: Vec<Hash> = hashes.iter().map(leaf_hash).collect();
    let key = keys::read_public_key(&cfg.dir.join(PUBLIC_KEY_FILE))
        .unwrap()
        .unwrap();
    for cp in &cps {
        let m = cp.tree_size;
        assert_eq!(
            cp.root,
            mth(&leaves[..m as usize]),
            "signed root at size {m} = naive MTH"
        );
        for seq in 0..m {
            let proof = prove(&cfg.dir, seq, Some(m)).unwrap();
            assert_eq!(proof.record_hash, hashes[seq as usize]);
            proof.verify(&key).unwrap();
            let mut bad = proof.clone();
            bad.record_hash[0] ^= 1;
            assert!(matches!(bad.verify(&key), Err(ProofError::PathMismatch)));
        }
        assert!(matches!(
            prove(&cfg.dir, m, Some(m)),
            Err(ProofError::OutOfRange { .. })
        ));
    }
    assert!(matches!(
        prove(&cfg.dir, 0, Some(10_000)),
        Err(ProofError::NoCheckpoint { .. })
    ));
}

#[test]
fn proofs_after_pruning() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        retention_max_bytes: Some(10_000),
        ..small_segments(tmp.path())
    };
    let log = AuditLog::open(cfg.clone()).unwrap();
    for i in 0..200 {
        log.append("pg.query", &event(i)).unwrap();
    }
    log.enforce_retention().unwrap();
    log.close().unwrap();
    let first = read(&cfg.dir, Filter::default())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .record
        .seq;
    assert!(first > 0);
    let key = keys::read_public_key(&cfg.dir.join(PUBLIC_KEY_FILE))
        .unwrap()
        .unwrap();
    let latest = prove(&cfg.dir, first, None).unwrap();
    for seq in first..latest.checkpoint.tree_size {
        prove(&cfg.dir, seq, None).unwrap().verify(&key).unwrap();
    }
    assert!(matches!(
        prove(&cfg.dir, first - 1, None),
        Err(ProofError::Pruned { .. })
    ));
}

#[test]
fn proof_json_carries_the_checkpoint_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    log_with_checkpoint_per_record(&cfg, 3);
    let json = prove(&cfg.dir, 2, None).unwrap().to_json();
    assert_eq!(json["seq"], 2);
    assert!(json["checkpoint"].as_str().unwrap().contains("\"sig\":"));
}

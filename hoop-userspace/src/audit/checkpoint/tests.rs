use std::fs;

use super::*;

fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32])
}

fn chain(k: &SigningKey, sizes: &[u64]) -> Vec<Checkpoint> {
    let mut prev = checkpoint_genesis(&k.verifying_key().to_bytes());
    sizes
        .iter()
        .map(|&n| {
            let cp = Checkpoint::sign(
                k,
                n,
                [n as u8; 32],
                [7; 32],
                "2026-05-25T10:11:12.000000000Z".into(),
                prev,
            );
            prev = cp.line_hash();
            cp
        })
        .collect()
}

fn write_file(dir: &Path, cps: &[Checkpoint]) {
    let mut text = Vec::new();
    for cp in cps {
        text.extend_from_slice(&cp.to_line());
        text.push(b'\n');
    }
    fs::write(dir.join(CHECKPOINTS_FILE), text).unwrap();
}

#[test]
fn sign_parse_verify_round_trip() {
    let k = key(1);
    let cp = &chain(&k, &[5])[0];
    let parsed = Checkpoint::parse_line(&cp.to_line()).unwrap();
    assert_eq!(&parsed, cp);
    parsed.verify_signature(&k.verifying_key()).unwrap();
    assert!(
        String::from_utf8(cp.to_line())
            .unwrap()
            .starts_with("{\"head\":\"")
    );
}

#[test]
fn edited_or_foreign_checkpoints_fail() {
    let k = key(1);
    let mut cp = chain(&k, &[5])[0].clone();
    cp.root[0] ^= 1;
    assert_eq!(
        cp.verify_signature(&k.verifying_key()),
        Err(VerifyError::BadSignature)
    );
    let foreign = chain(&key(2), &[5])[0].clone();
    assert!(matches!(
        foreign.verify_signature(&k.verifying_key()),
        Err(VerifyError::ForeignKey { .. })
    ));
}

#[test]
fn scan_checks_chain_order_and_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(3);
    let cps = chain(&k, &[1, 4, 9]);
    write_file(dir.path(), &cps);
    let scan = scan_file(dir.path(), &k.verifying_key()).unwrap();
    assert!(scan.problems.is_empty(), "{:?}", scan.problems);
    assert_eq!(scan.valid.len(), 3);
    assert_eq!(scan.last_line_hash, Some(cps[2].line_hash()));

    // Deleting the middle checkpoint breaks the chain at (what is now) line 2.
    write_file(dir.path(), &[cps[0].clone(), cps[2].clone()]);
    let scan = scan_file(dir.path(), &k.verifying_key()).unwrap();
    assert_eq!(scan.problems[0].error, VerifyError::CheckpointChainBroken);
    assert_eq!(scan.problems[0].location.line, 2);

    write_file(dir.path(), &cps);
    let mut bytes = fs::read(dir.path().join(CHECKPOINTS_FILE)).unwrap();
    bytes.extend_from_slice(b"{\"head\":\"ab");
    fs::write(dir.path().join(CHECKPOINTS_FILE), &bytes).unwrap();
    let scan = scan_file(dir.path(), &k.verifying_key()).unwrap();
    assert_eq!(scan.valid.len(), 3);
    assert_eq!(scan.torn, Some((bytes.len() as u64 - 11, 11)));
}

#[test]
fn shrinking_tree_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(4);
    write_file(dir.path(), &chain(&k, &[9, 4]));
    let scan = scan_file(dir.path(), &k.verifying_key()).unwrap();
    assert_eq!(
        scan.problems[0].error,
        VerifyError::CheckpointOrder {
            tree_size: 4,
            previous: 9
        }
    );
}

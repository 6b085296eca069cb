use super::*;
use crate::audit::record::sha256;

fn record_hashes(n: u64) -> Vec<Hash> {
    (0..n).map(|i| sha256(&i.to_le_bytes())).collect()
}

/// RFC 6962 §2.1.1 PATH, written from the definition over the full leaf list.
fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n as u64) as usize;
    if m < k {
        let mut p = naive_path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

#[test]
fn known_answers() {
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // A one-leaf tree's root is the leaf hash: SHA-256(0x00 || record hash).
    let mut f = Frontier::new();
    f.push_record(&[0u8; 32]);
    let mut pre = vec![0u8];
    pre.extend_from_slice(&[0u8; 32]);
    assert_eq!(f.root(), sha256(&pre));
}

#[test]
fn frontier_root_matches_naive_mth() {
    let records = record_hashes(300);
    let leaves: Vec<Hash> = records.iter().map(leaf_hash).collect();
    let mut f = Frontier::new();
    assert_eq!(f.root(), mth(&[]));
    for (i, r) in records.iter().enumerate() {
        f.push_record(r);
        assert_eq!(f.root(), mth(&leaves[..=i]), "size {}", i + 1);
        assert_eq!(f.nodes().len(), (i + 1).count_ones() as usize);
    }
}

#[test]
fn inclusion_proofs_for_all_pairs_up_to_70() {
    let leaves: Vec<Hash> = record_hashes(70).iter().map(leaf_hash).collect();
    let empty = Frontier::new();
    let view = TreeView::new(&empty, &leaves);
    for n in 1..=70u64 {
        let root = mth(&leaves[..n as usize]);
        for m in 0..n {
            let path = view.audit_path(m, n).unwrap();
            assert_eq!(
                path,
                naive_path(m as usize, &leaves[..n as usize]),
                "m={m} n={n}"
            );
            assert!(verify_inclusion(m, n, &leaves[m as usize], &path, &root));
            // Wrong index, size, leaf or root must all fail.
            assert!(!verify_inclusion(
                m,
                n,
                &leaves[(m as usize + 1) % 70],
                &path,
                &root
            ));
            // (A wrong size can still pass for the same root: RFC 6962 binds size and root
            // only through the signed tree head, which is why checkpoints sign both.)
            assert!(!verify_inclusion(
                m,
                n,
                &leaves[m as usize],
                &path,
                &[0u8; 32]
            ));
            if n > 1 {
                assert!(!verify_inclusion(
                    (m + 1) % n,
                    n,
                    &leaves[m as usize],
                    &path,
                    &root
                ));
            }
        }
        assert!(view.audit_path(n, n).is_none());
    }
}

#[test]
fn proofs_over_a_pruned_prefix_match_full_tree() {
    let records = record_hashes(100);
    let leaves: Vec<Hash> = records.iter().map(leaf_hash).collect();
    for k in [1u64, 3, 8, 13, 32, 63, 64] {
        let mut base = Frontier::new();
        records[..k as usize]
            .iter()
            .for_each(|r| base.push_record(r));
        let view = TreeView::new(&base, &leaves[k as usize..]);
        for n in (k + 1)..=100 {
            let root = mth(&leaves[..n as usize]);
            assert_eq!(view.range_hash(0, n), Some(root));
            for m in k..n {
                let path = view.audit_path(m, n).unwrap();
                assert_eq!(
                    path,
                    naive_path(m as usize, &leaves[..n as usize]),
                    "k={k} m={m} n={n}"
                );
                assert!(verify_inclusion(m, n, &leaves[m as usize], &path, &root));
            }
        }
    }
}

#[test]
fn frontier_from_parts_checks_shape() {
    assert!(Frontier::from_parts(5, vec![[0u8; 32]; 2]).is_some());
    assert!(Frontier::from_parts(5, vec![[0u8; 32]; 1]).is_none());
}

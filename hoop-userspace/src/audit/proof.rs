//! Inclusion proofs: the RFC 6962 audit path of record `seq` in the tree of a signed checkpoint,
//! checkable with nothing but the proof and the node's public key.

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};

use super::checkpoint::{self, Checkpoint, CheckpointScan};
use super::error::{AuditError, Location, Problem, ProofError, VerifyError};
use super::keys;
use super::merkle::{self, Frontier, TreeView, leaf_hash};
use super::record::Hash;
use super::scan::Scanner;
use super::segment::{CHECKPOINTS_FILE, PUBLIC_KEY_FILE, list_segments};

/// "Record `seq` with hash `record_hash` is leaf `seq` of the tree signed in `checkpoint`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub seq: u64,
    pub record_hash: Hash,
    /// Sibling hashes from the leaf up (RFC 6962 PATH order).
    pub path: Vec<Hash>,
    pub checkpoint: Checkpoint,
}

impl InclusionProof {
    /// Checks the checkpoint's signature by `key`, then the path to its root.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ProofError> {
        self.checkpoint
            .verify_signature(key)
            .map_err(ProofError::Checkpoint)?;
        let cp = &self.checkpoint;
        verify_path(
            self.seq,
            cp.tree_size,
            &self.record_hash,
            &self.path,
            &cp.root,
        )
    }

    /// For `hoopctl audit proof`: hashes in hex, the checkpoint as its stored line.
    pub fn to_json(&self) -> Value {
        json!({
            "seq": self.seq,
            "record_hash": hex::encode(self.record_hash),
            "tree_size": self.checkpoint.tree_size,
            "path": self.path.iter().map(hex::encode).collect::<Vec<_>>(),
            "checkpoint": String::from_utf8_lossy(&self.checkpoint.to_line()),
        })
    }
}

/// Checks an audit path for the record hash (its leaf is SHA-256(0x00 || record hash)).
pub fn verify_path(
    seq: u64,
    tree_size: u64,
    record_hash: &Hash,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if seq >= tree_size {
        return Err(ProofError::OutOfRange { seq, tree_size });
    }
    if merkle::verify_inclusion(seq, tree_size, &leaf_hash(record_hash), path, root) {
        Ok(())
    } else {
        Err(ProofError::PathMismatch)
    }
}

/// Proves record `seq` against the signed checkpoint of `tree_size` (the latest checkpoint if
/// None). Reads and verifies the whole log: a proof is only made from a log that verifies.
/// A segment that a live log's retention deletes during the read makes it start over (at
/// most a few times), as verify does.
pub fn prove(dir: &Path, seq: u64, tree_size: Option<u64>) -> Result<InclusionProof, ProofError> {
    let mut attempts = 0;
    loop {
        let cps_len = std::fs::metadata(dir.join(CHECKPOINTS_FILE)).map_or(0, |m| m.len());
        let raced = |e: &ProofError| match e {
            ProofError::Audit(e) => super::reader::pruned_under(dir, e),
            ProofError::LogInvalid(p) => {
                super::verify::raced_a_prune(dir, cps_len, std::slice::from_ref(p))
            }
            _ => false,
        };
        match prove_once(dir, seq, tree_size) {
            Err(e) if attempts < super::verify::PRUNE_RETRIES && raced(&e) => attempts += 1,
            r => return r,
        }
    }
}

fn prove_once(dir: &Path, seq: u64, tree_size: Option<u64>) -> Result<InclusionProof, ProofError> {
    let key = keys::read_public_key(&dir.join(PUBLIC_KEY_FILE))?.ok_or_else(|| {
        let problem = Problem {
            location: Location::whole(PUBLIC_KEY_FILE),
            error: VerifyError::KeyMissing,
        };
        ProofError::LogInvalid(Box::new(problem))
    })?;
    let cps = checkpoint::scan_file(dir, &key)
        .map_err(|e| AuditError::io(dir.join(CHECKPOINTS_FILE), e))?;
    let cp = match tree_size {
        Some(n) => cps.valid.iter().rev().find(|(_, cp)| cp.tree_size == n),
        None => cps.valid.last(),
    };
    let cp = cp
        .map(|(_, cp)| cp.clone())
        .ok_or(ProofError::NoCheckpoint { tree_size })?;
    if seq >= cp.tree_size {
        return Err(ProofError::OutOfRange {
            seq,
            tree_size: cp.tree_size,
        });
    }
    let (base, hashes) = read_tree(dir, &key, &cps)?;
    let pruned = ProofError::Pruned {
        seq,
        first_seq: base.size(),
    };
    if seq < base.size() {
        return Err(pruned);
    }
    let leaves: Vec<Hash> = hashes[..(cp.tree_size - base.size()) as usize]
        .iter()
        .map(leaf_hash)
        .collect();
    let path = TreeView::new(&base, &leaves)
        .audit_path(seq, cp.tree_size)
        .ok_or(pruned)?;
    let record_hash = hashes[(seq - base.size()) as usize];
    let proof = InclusionProof {
        seq,
        record_hash,
        path,
        checkpoint: cp,
    };
    proof.verify(&key)?;
    Ok(proof)
}

/// Verifies the log; returns the tree state before its first record and every record hash.
fn read_tree(
    dir: &Path,
    key: &VerifyingKey,
    cps: &CheckpointScan,
) -> Result<(Frontier, Vec<Hash>), ProofError> {
    let mut scanner = Scanner::new(&key.to_bytes(), &cps.valid);
    scanner.record_hashes = Some(Vec::new());
    for seg in list_segments(dir).map_err(|e| AuditError::io(dir, e))? {
        scanner
            .scan_segment(&seg, false)
            .map_err(|e| AuditError::io(&seg.path, e))?;
    }
    scanner.finish();
    if let Some(p) = cps.problems.first().or(scanner.problems.first()) {
        return Err(ProofError::LogInvalid(Box::new(p.clone())));
    }
    let hashes = scanner.record_hashes.take().unwrap_or_default();
    Ok((scanner.base, hashes))
}

#[cfg(test)]
mod tests;

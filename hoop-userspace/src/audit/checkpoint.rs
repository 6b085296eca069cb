//! Signed checkpoints (`checkpoints.log`): `{head,key,prev,root,sig,time,tree_size,v}` lines,
//! ed25519 over a domain-separated canonical body, each chained to the previous line.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::Value;

use super::canonical;
use super::error::{Location, Problem, VerifyError};
use super::record::{Hash, parse_hash, sha256};
use super::segment::{CHECKPOINTS_FILE, Lines};
use super::time;

/// Version written in every checkpoint's `v` field.
pub const CHECKPOINT_VERSION: u64 = 1;
/// Prefixed to the signed bytes so a checkpoint signature can never be replayed as another
/// kind of signature made with the same key.
pub const SIGNING_CONTEXT: &[u8] = b"hoop-audit checkpoint v1\n";
const GENESIS_LABEL: &[u8] = b"hoop-audit checkpoint genesis v1\0";

/// A signed statement: "the log of `key` had `tree_size` records with Merkle root `root` and
/// last record hash `head` at `time`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub tree_size: u64,
    pub root: Hash,
    /// Hash of record `tree_size - 1` (the chain genesis for an empty log).
    pub head: Hash,
    pub time: String,
    /// SHA-256 of the previous checkpoint line, or `checkpoint_genesis(key)` for the first.
    pub prev: Hash,
    pub key: [u8; 32],
    pub sig: [u8; 64],
}

/// `prev` of the first checkpoint.
pub fn checkpoint_genesis(public_key: &[u8; 32]) -> Hash {
    let mut pre = GENESIS_LABEL.to_vec();
    pre.extend_from_slice(public_key);
    sha256(&pre)
}

impl Checkpoint {
    pub fn sign(
        key: &SigningKey,
        tree_size: u64,
        root: Hash,
        head: Hash,
        time: String,
        prev: Hash,
    ) -> Self {
        let mut cp = Checkpoint {
            tree_size,
            root,
            head,
            time,
            prev,
            key: key.verifying_key().to_bytes(),
            sig: [0; 64],
        };
        cp.sig = key.sign(&cp.signed_message()).to_bytes();
        cp
    }

    /// The bytes the signature covers: context string, then the canonical line without `sig`.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut msg = SIGNING_CONTEXT.to_vec();
        msg.extend_from_slice(&self.encode(false));
        msg
    }

    /// The canonical line (without `\n`).
    pub fn to_line(&self) -> Vec<u8> {
        self.encode(true)
    }

    /// What the next checkpoint's `prev` must be.
    pub fn line_hash(&self) -> Hash {
        sha256(&self.to_line())
    }

    fn encode(&self, with_sig: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(400);
        let mut obj = canonical::Obj::open(&mut out);
        obj.str("head", &hex::encode(self.head))
            .str("key", &hex::encode(self.key))
            .str("prev", &hex::encode(self.prev))
            .str("root", &hex::encode(self.root));
        if with_sig {
            obj.str("sig", &hex::encode(self.sig));
        }
        obj.str("time", &self.time)
            .u64("tree_size", self.tree_size)
            .u64("v", CHECKPOINT_VERSION)
            .close();
        out
    }

    /// Parses a line and checks its shape and canonical encoding (not its signature).
    pub fn parse_line(line: &[u8]) -> Result<Checkpoint, VerifyError> {
        let value: Value = serde_json::from_slice(line).map_err(|_| VerifyError::NotJson)?;
        let map = value.as_object().ok_or(VerifyError::Malformed {
            field: "checkpoint",
        })?;
        let version = map
            .get("v")
            .and_then(Value::as_u64)
            .ok_or(VerifyError::Malformed { field: "v" })?;
        if version != CHECKPOINT_VERSION {
            return Err(VerifyError::UnsupportedVersion { version });
        }
        let hash = |field: &'static str| {
            map.get(field)
                .and_then(Value::as_str)
                .and_then(parse_hash)
                .ok_or(VerifyError::Malformed { field })
        };
        let sig_hex = map
            .get("sig")
            .and_then(Value::as_str)
            .ok_or(VerifyError::Malformed { field: "sig" })?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(sig_hex, &mut sig)
            .map_err(|_| VerifyError::Malformed { field: "sig" })?;
        let time = map
            .get("time")
            .and_then(Value::as_str)
            .ok_or(VerifyError::Malformed { field: "time" })?;
        if time::parse(time).is_none() {
            return Err(VerifyError::Malformed { field: "time" });
        }
        let cp = Checkpoint {
            tree_size: map
                .get("tree_size")
                .and_then(Value::as_u64)
                .ok_or(VerifyError::Malformed { field: "tree_size" })?,
            root: hash("root")?,
            head: hash("head")?,
            time: time.to_owned(),
            prev: hash("prev")?,
            key: hash("key")?,
            sig,
        };
        if cp.to_line() != line {
            return Err(VerifyError::NotCanonical);
        }
        Ok(cp)
    }

    /// Checks that `key` made this checkpoint.
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), VerifyError> {
        if self.key != key.to_bytes() {
            return Err(VerifyError::ForeignKey {
                expected: key.to_bytes(),
                found: self.key,
            });
        }
        key.verify(&self.signed_message(), &Signature::from_bytes(&self.sig))
            .map_err(|_| VerifyError::BadSignature)
    }
}

/// The checkpoints file, read and checked line by line.
#[derive(Debug, Default)]
pub struct CheckpointScan {
    /// Checkpoints with a valid signature, in file order, with where they are.
    pub valid: Vec<(Location, Checkpoint)>,
    pub problems: Vec<Problem>,
    /// Lines read (complete ones).
    pub lines: u64,
    /// `(offset, length)` of an unterminated last line.
    pub torn: Option<(u64, u64)>,
    /// Hash of the last complete line: the next checkpoint's `prev`.
    pub last_line_hash: Option<Hash>,
}

/// Reads and checks `dir/checkpoints.log` against `key`; a missing file is an empty scan.
pub fn scan_file(dir: &Path, key: &VerifyingKey) -> std::io::Result<CheckpointScan> {
    let mut scan = CheckpointScan::default();
    let mut lines = match Lines::open(&dir.join(CHECKPOINTS_FILE)) {
        Ok(lines) => lines,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(scan),
        Err(e) => return Err(e),
    };
    let mut expected_prev = checkpoint_genesis(&key.to_bytes());
    let mut last_size = 0u64;
    while let Some(line) = lines.next_line()? {
        let location = Location {
            file: CHECKPOINTS_FILE.into(),
            line: line.number,
            offset: line.offset,
            seq: None,
        };
        if !line.complete {
            scan.torn = Some((line.offset, line.bytes.len() as u64));
            let error = VerifyError::TornTail {
                bytes: line.bytes.len() as u64,
            };
            scan.problems.push(Problem { location, error });
            break;
        }
        scan.lines += 1;
        let checked = Checkpoint::parse_line(line.bytes).and_then(|cp| {
            cp.verify_signature(key)?;
            if cp.prev != expected_prev {
                return Err(VerifyError::CheckpointChainBroken);
            }
            if cp.tree_size < last_size {
                return Err(VerifyError::CheckpointOrder {
                    tree_size: cp.tree_size,
                    previous: last_size,
                });
            }
            Ok(cp)
        });
        expected_prev = sha256(line.bytes);
        scan.last_line_hash = Some(expected_prev);
        match checked {
            Ok(cp) => {
                last_size = cp.tree_size;
                scan.valid.push((location, cp));
            }
            Err(error) => scan.problems.push(Problem { location, error }),
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests;

//! Offline verification of an audit directory (`hoopctl audit verify --dir`): needs no daemon;
//! reports every failed check with its file, line and seq.

use std::io;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::checkpoint::{self, CheckpointScan};
use super::error::{AuditError, Location, Problem, VerifyError};
use super::keys;
use super::record::Hash;
use super::scan::{Scanner, SegmentSummary};
use super::segment::{CHECKPOINTS_FILE, PUBLIC_KEY_FILE, list_segments};

/// What to trust.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The node key as known out of band (e.g. from enrolment). Without it the directory's own
    /// `node.pub` is trusted, which catches edits but not a wholesale rewrite under a new key.
    pub expected_key: Option<VerifyingKey>,
}

/// The outcome of a verification. `problems` is empty iff every check passed.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The key checkpoints and the genesis were checked against.
    pub public_key: Option<[u8; 32]>,
    pub segments: Vec<SegmentSummary>,
    pub records: u64,
    /// Seq of the first record present (above 0 after retention pruned older segments).
    pub first_seq: Option<u64>,
    /// One past the last seq: the Merkle tree size.
    pub tree_size: u64,
    /// Recomputed Merkle root over all records (when the tree could be rebuilt).
    pub root: Option<Hash>,
    pub checkpoint_lines: u64,
    /// Checkpoints whose root and head were recomputed and matched.
    pub checkpoints_checked: u64,
    /// Signed checkpoints older than the first record present (signature checked only).
    pub checkpoints_before_start: u64,
    /// Seqs of `audit.recovery` records (torn tails cut at open).
    pub recoveries: Vec<u64>,
    /// Records in the write-ahead file that continue the chain: a kill -9 of hoopd came before
    /// they were filed into the segment; its next start files them.
    pub unfiled: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem whose check is `pred`, e.g. `|e| matches!(e, VerifyError::SeqGap { .. })`.
    pub fn find(&self, pred: impl Fn(&VerifyError) -> bool) -> Option<&Problem> {
        self.problems.iter().find(|p| pred(&p.error))
    }

    /// `Ok(self)` if clean, else the first problem.
    pub fn into_result(self) -> Result<VerifyReport, Box<Problem>> {
        match self.problems.first() {
            Some(p) => Err(Box::new(p.clone())),
            None => Ok(self),
        }
    }
}

/// Verifies every record, the chain, seq continuity across segments, every checkpoint's
/// signature, chain and root, and a pruned prefix's proof. `Err` only when the directory
/// itself cannot be listed (or a live log's retention kept deleting segments under every
/// attempt); unreadable files are reported as problems.
pub fn verify_dir(dir: &Path, opts: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    let mut problems = Vec::new();
    let Some(key) = trusted_key(dir, opts, &mut problems)? else {
        return Ok(empty_report(problems));
    };
    // A live log's retention may delete the oldest segments while they are read: the log is
    // whole at every instant (the prune record and its checkpoint come first), so the check
    // starts over, checkpoints included, rather than report the vanished file.
    for attempt in 0..=PRUNE_RETRIES {
        let cps_len = checkpoints_len(dir);
        let cps = checkpoint::scan_file(dir, &key)
            .map_err(|e| AuditError::io(dir.join(CHECKPOINTS_FILE), e))?;
        match verify_segments(dir, &key, &cps, &problems)? {
            // the last attempt's problems stand, whatever their cause
            Some(report)
                if attempt == PRUNE_RETRIES || !raced_a_prune(dir, cps_len, &report.problems) =>
            {
                return Ok(report);
            }
            _ => {}
        }
    }
    Err(AuditError::io(dir, io::Error::other(PRUNE_RACE)))
}

/// Times verify starts over because retention deleted a segment under it.
pub(crate) const PRUNE_RETRIES: u32 = 5;
const PRUNE_RACE: &str = "retention deleted segments during every attempt to read the log";

fn checkpoints_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(CHECKPOINTS_FILE)).map_or(0, |m| m.len())
}

/// Whether a pruned start found unproven is a live log's prune that came between the reading
/// of the checkpoints (`cps_len` bytes long then) and that of the segments: its record was
/// read, the checkpoint signed over it was not. The checkpoints have grown since; a directory
/// at rest never retries.
pub(crate) fn raced_a_prune(dir: &Path, cps_len: u64, problems: &[Problem]) -> bool {
    problems.iter().any(|p| {
        matches!(
            p.error,
            VerifyError::PrunedPrefixUnproven { .. } | VerifyError::PrunedPrefixUnanchored { .. }
        )
    }) && checkpoints_len(dir) > cps_len
}

/// The report over every segment; None when one vanished the way retention deletes segments.
fn verify_segments(
    dir: &Path,
    key: &VerifyingKey,
    cps: &CheckpointScan,
    key_problems: &[Problem],
) -> Result<Option<VerifyReport>, AuditError> {
    let mut problems = key_problems.to_vec();
    problems.extend(cps.problems.iter().cloned());
    let mut scanner = Scanner::new(&key.to_bytes(), &cps.valid);
    for seg in list_segments(dir).map_err(|e| AuditError::io(dir, e))? {
        if let Err(e) = scanner.scan_segment(&seg, false) {
            if e.kind() == io::ErrorKind::NotFound && super::reader::pruned(dir, seg.first_seq) {
                return Ok(None);
            }
            let error = VerifyError::Io { kind: e.kind() };
            scanner.push_problem(Problem {
                location: Location::whole(&seg.name),
                error,
            });
        }
    }
    scanner.finish();
    problems.append(&mut scanner.problems);
    let first_seq = scanner
        .segments
        .iter()
        .find(|s| s.records > 0)
        .map(|s| s.first_seq);
    let tree_ok = scanner.frontier().size() == scanner.next_seq();
    let unfiled = crate::audit::log::unfiled_records(dir, scanner.next_seq(), scanner.prev())
        .map_err(|e| AuditError::io(dir.join("wal"), e))?;
    Ok(Some(VerifyReport {
        unfiled,
        public_key: Some(key.to_bytes()),
        records: scanner.records,
        first_seq,
        tree_size: scanner.next_seq(),
        root: tree_ok.then(|| scanner.frontier().root()),
        checkpoint_lines: cps.lines,
        checkpoints_checked: scanner.checkpoints_checked,
        checkpoints_before_start: scanner.checkpoints_before_start,
        recoveries: std::mem::take(&mut scanner.recoveries),
        segments: std::mem::take(&mut scanner.segments),
        problems,
    }))
}

/// The pinned key if given (reporting a directory key that differs), else the directory's.
fn trusted_key(
    dir: &Path,
    opts: &VerifyOptions,
    problems: &mut Vec<Problem>,
) -> Result<Option<VerifyingKey>, AuditError> {
    let found = keys::read_public_key(&dir.join(PUBLIC_KEY_FILE))?;
    if let (Some(expected), Some(found)) = (opts.expected_key, found)
        && expected != found
    {
        let error = VerifyError::ForeignKey {
            expected: expected.to_bytes(),
            found: found.to_bytes(),
        };
        problems.push(Problem {
            location: Location::whole(PUBLIC_KEY_FILE),
            error,
        });
    }
    let key = opts.expected_key.or(found);
    if key.is_none() {
        problems.push(Problem {
            location: Location::whole(PUBLIC_KEY_FILE),
            error: VerifyError::KeyMissing,
        });
    }
    Ok(key)
}

fn empty_report(problems: Vec<Problem>) -> VerifyReport {
    VerifyReport {
        public_key: None,
        segments: Vec::new(),
        records: 0,
        first_seq: None,
        tree_size: 0,
        root: None,
        checkpoint_lines: 0,
        checkpoints_checked: 0,
        checkpoints_before_start: 0,
        recoveries: Vec::new(),
        unfiled: 0,
        problems,
    }
}

#[cfg(test)]
mod tests;

//! Payloads of the log's own records: `audit.segment`, `audit.prune`, `audit.recovery`.

use serde::{Deserialize, Serialize};

use super::merkle::Frontier;
use super::record::{Hash, parse_hash};

/// First record of every segment: where the Merkle tree stood before it, so a log whose
/// earlier segments were pruned can still be rebuilt and checked against signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentStart {
    /// This segment's file name.
    pub segment: String,
    /// Records before this one (= this record's seq).
    pub tree_size: u64,
    /// Hex roots of the perfect subtrees of those records, largest first.
    pub frontier: Vec<String>,
}

impl SegmentStart {
    pub fn new(segment: String, frontier: &Frontier) -> Self {
        let nodes = frontier.nodes().iter().map(hex::encode).collect();
        SegmentStart {
            segment,
            tree_size: frontier.size(),
            frontier: nodes,
        }
    }

    /// The frontier it states, if well-formed.
    pub fn frontier(&self) -> Option<Frontier> {
        let nodes: Option<Vec<Hash>> = self.frontier.iter().map(|h| parse_hash(h)).collect();
        Frontier::from_parts(self.tree_size, nodes?)
    }
}

/// Why segments were deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneReason {
    MaxAge,
    MaxBytes,
}

/// A deleted segment, as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrunedSegment {
    pub name: String,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Hash of its last record: the `prev` of the first record kept.
    pub last_hash: String,
    pub last_time: String,
    pub bytes: u64,
}

/// Written (and synced) before the segments it lists are deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    pub reason: PruneReason,
    /// Seq of the first record kept: the first record of the oldest remaining segment.
    pub first_retained_seq: u64,
    /// Oldest first.
    pub segments: Vec<PrunedSegment>,
}

impl Prune {
    /// Hash of the last deleted record.
    pub fn last_pruned_hash(&self) -> Option<Hash> {
        self.segments.last().and_then(|s| parse_hash(&s.last_hash))
    }

    /// Whether this prune explains a log whose first record present is `first_seq`, chained to
    /// `prev`: the prune made it the first (it is `first_retained_seq`, and `prev` is the hash
    /// of the last record deleted), or the deletion it announced is still under way — stopped
    /// by a crash, or seen by a reader of a live log — and the record starts one of the
    /// segments it lists, after one whose last record's hash is `prev`.
    pub fn accounts_for(&self, first_seq: u64, prev: Hash) -> bool {
        (self.first_retained_seq == first_seq && self.last_pruned_hash() == Some(prev))
            || self
                .segments
                .windows(2)
                .any(|w| w[1].first_seq == first_seq && parse_hash(&w[0].last_hash) == Some(prev))
    }
}

/// Bytes cut from a torn tail at open; the bytes themselves are kept in `saved_as`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// The file that was cut (a segment or `checkpoints.log`).
    pub file: String,
    /// Its new length: where the cut started.
    pub offset: u64,
    pub bytes_cut: u64,
    pub cut_sha256: String,
    /// File in the audit directory holding the cut bytes.
    pub saved_as: String,
}

//! Error types: appending/opening (`AuditError`), verifying (`VerifyError` at a `Location`) and
//! inclusion proofs (`ProofError`).

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::record::Hash;

/// Which file-system step of the writer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoStep {
    /// write(2) of records to the active segment.
    Write,
    /// fdatasync of a segment.
    Sync,
    /// Creating a new segment at rotation.
    CreateSegment,
    /// fsync of the log directory (new or deleted segment names).
    SyncDir,
    /// Appending or syncing a signed checkpoint.
    Checkpoint,
    /// Deleting expired segments.
    Prune,
}

/// A failed write, kept cloneable so every appender caught by the failure and every later one
/// is told the same cause (an `io::Error` cannot be cloned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit {step:?} failed on {}: {kind} (os error {errno:?})", path.display())]
pub struct WriteFailure {
    pub step: IoStep,
    pub path: PathBuf,
    pub kind: io::ErrorKind,
    pub errno: Option<i32>,
}

impl WriteFailure {
    pub(crate) fn new(step: IoStep, path: impl Into<PathBuf>, err: &io::Error) -> Self {
        WriteFailure {
            step,
            path: path.into(),
            kind: err.kind(),
            errno: err.raw_os_error(),
        }
    }
}

/// Errors of the writing side (open, append, checkpoint, retention, close).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// This append's record could not be written or synced: the caller must fail closed.
    #[error("audit record not stored: {0}")]
    Write(WriteFailure),
    /// An earlier write failed; the log takes no more records so that it never holds a gap.
    #[error("audit log refuses appends after an earlier failure: {0}")]
    Poisoned(WriteFailure),
    #[error("audit log is closed")]
    Closed,
    #[error("event kind {kind:?} is reserved for the log's own records")]
    ReservedKind { kind: String },
    #[error("event kind must be 1 to 128 bytes, got {len}")]
    InvalidKind { len: usize },
    /// serde_json refuses to parse deeper documents, so the log refuses to write them.
    #[error("event nests deeper than {max} levels")]
    EventTooDeep { max: usize },
    #[error("I/O error on {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("audit directory {} is in use by another process", dir.display())]
    Locked { dir: PathBuf },
    #[error("key file {} has mode {mode:o}: it must not be accessible to group or others", path.display())]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("key file {} is not a hex ed25519 key", path.display())]
    KeyMalformed { path: PathBuf },
    #[error(
        "audit directory belongs to key {}, not this node's key {}",
        hex::encode(found),
        hex::encode(expected)
    )]
    ForeignDirectory { expected: [u8; 32], found: [u8; 32] },
    /// Damage that is not a torn tail; the log will not write past evidence of tampering.
    #[error("audit log is damaged at {0}")]
    Corrupt(Box<Problem>),
    #[error("invalid audit config: {field} {reason}")]
    Config {
        field: &'static str,
        reason: &'static str,
    },
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Where in the directory a verification problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File name inside the audit directory (segment or `checkpoints.log`).
    pub file: String,
    /// 1-based line number; 0 when the problem concerns the whole file or directory.
    pub line: u64,
    /// Byte offset of the line's start.
    pub offset: u64,
    /// Sequence number of the record, when it could be read.
    pub seq: Option<u64>,
}

impl Location {
    /// A problem with a file as a whole (line 0).
    pub fn whole(file: impl Into<String>) -> Self {
        Location {
            file: file.into(),
            line: 0,
            offset: 0,
            seq: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {} (byte {})", self.file, self.line, self.offset)?;
        match self.seq {
            Some(seq) => write!(f, ", seq {seq}"),
            None => Ok(()),
        }
    }
}

/// Which verification check failed. Each one is reported with a `Location`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read file: {kind}")]
    Io { kind: io::ErrorKind },
    #[error("line is not JSON")]
    NotJson,
    #[error("field {field:?} is missing, unexpected or of the wrong type")]
    Malformed { field: &'static str },
    #[error("unsupported record version {version}")]
    UnsupportedVersion { version: u64 },
    #[error("line is not in canonical encoding (bytes were edited)")]
    NotCanonical,
    #[error(
        "record hash mismatch: stored {}, computed {}",
        hex::encode(stored),
        hex::encode(computed)
    )]
    HashMismatch { stored: Hash, computed: Hash },
    #[error("last line is incomplete ({bytes} bytes without newline): torn or truncated")]
    TornTail { bytes: u64 },
    #[error("sequence gap: expected seq {expected}, found {found}")]
    SeqGap { expected: u64, found: u64 },
    #[error(
        "hash chain broken: prev is {}, previous record hash is {}",
        hex::encode(found),
        hex::encode(expected)
    )]
    ChainBroken { expected: Hash, found: Hash },
    #[error("seq 0 does not start from this node's genesis hash (foreign or rewritten chain)")]
    BadGenesis,
    #[error("segment named for seq {named} starts with seq {found} (renamed or reordered segment)")]
    SegmentNameMismatch { named: u64, found: u64 },
    #[error("segment does not start with an audit.segment record")]
    SegmentStartMissing,
    #[error("audit.segment record inside a segment")]
    MisplacedSegmentRecord,
    #[error("audit.segment record's Merkle frontier does not match the records before it")]
    SegmentFrontierMismatch,
    #[error("segment is empty")]
    EmptySegment,
    #[error(
        "segment was deleted by retention while the log was being read: the records before it \
         were read, its own are gone; read again for a contiguous run"
    )]
    PrunedWhileReading,
    #[error(
        "log starts at seq {first_seq} but no audit.prune record accounts for the earlier records"
    )]
    PrunedPrefixUnproven { first_seq: u64 },
    #[error("log starts at seq {first_seq} after pruning, but no signed checkpoint covers it")]
    PrunedPrefixUnanchored { first_seq: u64 },
    #[error("public key file is missing and no expected key was given")]
    KeyMissing,
    #[error(
        "signed by key {}, expected {}",
        hex::encode(found),
        hex::encode(expected)
    )]
    ForeignKey { expected: [u8; 32], found: [u8; 32] },
    #[error("checkpoint signature is invalid (forged or edited checkpoint)")]
    BadSignature,
    #[error("checkpoint chain broken: prev does not match the previous checkpoint")]
    CheckpointChainBroken,
    #[error("checkpoint tree size {tree_size} is below the previous one ({previous})")]
    CheckpointOrder { tree_size: u64, previous: u64 },
    #[error(
        "checkpoint at tree size {tree_size}: signed root {}, recomputed {}",
        hex::encode(signed),
        hex::encode(computed)
    )]
    RootMismatch {
        tree_size: u64,
        signed: Hash,
        computed: Hash,
    },
    #[error(
        "checkpoint at tree size {tree_size}: signed head {}, record hash is {}",
        hex::encode(signed),
        hex::encode(computed)
    )]
    HeadMismatch {
        tree_size: u64,
        signed: Hash,
        computed: Hash,
    },
    #[error(
        "checkpoint covers {tree_size} records but the log ends at {records} (records removed)"
    )]
    CheckpointBeyondEnd { tree_size: u64, records: u64 },
}

impl VerifyError {
    /// Damage a crash can leave at the end of the last segment (as opposed to a well-formed
    /// record in the wrong place, which only an edit produces).
    pub fn is_tearing(&self) -> bool {
        matches!(
            self,
            VerifyError::TornTail { .. }
                | VerifyError::NotJson
                | VerifyError::Malformed { .. }
                | VerifyError::NotCanonical
                | VerifyError::HashMismatch { .. }
        )
    }
}

/// Errors producing or checking an inclusion proof.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("seq {seq} is not in a tree of size {tree_size}")]
    OutOfRange { seq: u64, tree_size: u64 },
    #[error("{}", match tree_size {
        Some(n) => format!("no valid signed checkpoint of tree size {n}"),
        None => "no valid signed checkpoint yet (one follows every checkpoint_every_records \
                 records, every checkpoint_interval_ms, and the daemon's stop)"
            .to_string(),
    })]
    NoCheckpoint { tree_size: Option<u64> },
    #[error("records before seq {first_seq} were pruned; cannot prove seq {seq}")]
    Pruned { seq: u64, first_seq: u64 },
    #[error("the log does not verify: {0}")]
    LogInvalid(Box<Problem>),
    #[error("checkpoint does not verify: {0}")]
    Checkpoint(VerifyError),
    #[error("audit path does not lead to the signed root")]
    PathMismatch,
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// One failed check and where it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {error}")]
pub struct Problem {
    pub location: Location,
    pub error: VerifyError,
}

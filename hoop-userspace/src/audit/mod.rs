//! Tamper-evident, crash-safe audit log: hash-chained canonical JSON records in append-only
//! segments, an RFC 6962 Merkle tree with ed25519-signed checkpoints, offline verification,
//! filtered reading and inclusion proofs. The on-disk format and how to verify it without hoopd:
//! docs/audit.md.

pub mod canonical;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod events;
pub mod keys;
pub mod log;
pub mod merkle;
pub mod proof;
pub mod reader;
pub mod record;
pub mod scan;
pub mod segment;
pub mod time;
pub mod verify;

pub use checkpoint::Checkpoint;
pub use config::{AuditConfig, Durability};
pub use error::{AuditError, IoStep, Location, Problem, ProofError, VerifyError, WriteFailure};
pub use log::{AuditLog, Progress, Receipt, Verifying};
pub use proof::{InclusionProof, prove, verify_path};
pub use reader::{Entry, Filter, Follower, read};
pub use record::{EventPrefix, Hash, Prepared, Record};
pub use verify::{VerifyOptions, VerifyReport, verify_dir};

#[cfg(test)]
pub(crate) mod testutil;

//! Audit log settings (the `[audit]` table of hoop.toml), each with its default.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::AuditError;

/// When `append` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Once in the write-ahead file or the segment: the record survives a kill -9 of the
    /// daemon; filing and fdatasync follow within `sync_interval_ms` (a power loss can lose
    /// that window, and open then records the cut).
    #[default]
    Written,
    /// After the fdatasync that covers the record (group commit: one fdatasync per batch of
    /// concurrent appends). Survives power loss.
    Strict,
}

/// Settings of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Directory of segments and checkpoints. Default `<state dir>/audit`.
    pub dir: PathBuf,
    /// ed25519 checkpoint key, generated (mode 0600) if absent; `<key_path>.pub` is written
    /// beside it. Default `<state dir>/audit.key`.
    pub key_path: PathBuf,
    /// Default `written`.
    pub durability: Durability,
    /// Background fdatasync period in `written` mode. Default 10.
    pub sync_interval_ms: u64,
    /// A segment is closed once it reaches this size. Default 67108864 (64 MiB).
    pub segment_max_bytes: u64,
    /// A checkpoint is signed once this many records are past the last one. Default 1000.
    pub checkpoint_every_records: u64,
    /// ... or once this long has passed with new records. Default 5000.
    pub checkpoint_interval_ms: u64,
    /// Closed segments whose last record is older than this are deleted. Default: none (keep).
    pub retention_max_age_secs: Option<u64>,
    /// Oldest closed segments are deleted while the log is larger than this. Default: none.
    pub retention_max_bytes: Option<u64>,
    /// Data capacity of the write-ahead file (`written` mode); not a setting (tests shrink it).
    #[serde(skip)]
    pub wal_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            // empty: under the state directory (see `under_state_dir`)
            dir: PathBuf::new(),
            key_path: PathBuf::new(),
            durability: Durability::Written,
            sync_interval_ms: 10,
            segment_max_bytes: 64 << 20,
            checkpoint_every_records: 1000,
            checkpoint_interval_ms: 5000,
            retention_max_age_secs: None,
            retention_max_bytes: None,
            wal_capacity: crate::audit::log::WAL_CAPACITY,
        }
    }
}

impl AuditConfig {
    /// Defaults with the given directory and key path.
    pub fn new(dir: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Self {
        AuditConfig {
            dir: dir.into(),
            key_path: key_path.into(),
            ..Self::default()
        }
    }

    /// Fills the paths left at their default from the node's state directory.
    pub fn under_state_dir(mut self, state: &std::path::Path) -> Self {
        if self.dir.as_os_str().is_empty() {
            self.dir = state.join("audit");
        }
        if self.key_path.as_os_str().is_empty() {
            self.key_path = state.join("audit.key");
        }
        self
    }

    pub fn validate(&self) -> Result<(), AuditError> {
        let bad = |field, reason| Err(AuditError::Config { field, reason });
        if !(1..=60_000).contains(&self.sync_interval_ms) {
            return bad("sync_interval_ms", "must be 1..=60000");
        }
        if self.segment_max_bytes < 4096 {
            return bad("segment_max_bytes", "must be at least 4096");
        }
        if self.checkpoint_every_records == 0 {
            return bad("checkpoint_every_records", "must be at least 1");
        }
        if self.checkpoint_interval_ms == 0 {
            return bad("checkpoint_interval_ms", "must be at least 1");
        }
        Ok(())
    }

    pub(crate) fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms)
    }

    pub(crate) fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.checkpoint_interval_ms)
    }
}

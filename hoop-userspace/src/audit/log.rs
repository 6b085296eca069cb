//! The writing side: `AuditLog` (open, append, checkpoint, retention, close) and the `Receipt`
//! an append returns, through which a caller can wait for durability.

mod append;
mod open;
mod retention;
mod state;
mod sync;
mod wal;

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ed25519_dalek::VerifyingKey;
use serde_json::Value;

use super::checkpoint::Checkpoint;
use super::config::{AuditConfig, Durability};
use super::error::AuditError;
use super::events::{Prune, Recovery};
use super::record::{Hash, Prepared};

use state::Shared;

/// Default data capacity of the write-ahead file.
pub(crate) const WAL_CAPACITY: usize = wal::DEFAULT_CAPACITY;

/// How many records of `dir`'s write-ahead file continue the chain after the segments (next
/// record `next_seq`, after `prev`): what a kill -9 left unfiled, which the next open files.
pub(crate) fn unfiled_records(dir: &Path, next_seq: u64, prev: Hash) -> std::io::Result<u64> {
    Ok(wal::Wal::leftover(dir)?.map_or(0, |bytes| {
        wal::continuing(&bytes, next_seq, prev).len() as u64
    }))
}

/// A handle to an open audit log. Cheap to clone; all clones append to one chain.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    sync_thread: Mutex<Option<JoinHandle<()>>>,
    recoveries: Vec<Recovery>,
    _lock: File,
}

/// Counters of an open log (see [`AuditLog::progress`]). Seqs are counts of records since the
/// log was created: `sealed` ≥ `written` ≥ `durable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Records placed in the chain.
    pub sealed: u64,
    /// Records in a segment file (write(2) returned): they survive a kill of hoopd (so do
    /// records in the write-ahead file, which count here once filed).
    pub written: u64,
    /// Records covered by an fdatasync: they survive a host crash.
    pub durable: u64,
    /// Tree size of the last signed checkpoint.
    pub checkpointed: u64,
    /// How long the oldest record that is not yet durable has waited, at most (zero when every
    /// record is durable).
    pub durable_lag: std::time::Duration,
    /// The log stopped after a write or sync failure.
    pub failed: bool,
    /// Group commits that ran an fdatasync.
    pub syncs: u64,
    /// Times the sync thread woke (it sleeps through idle spells).
    pub sync_wakeups: u64,
}

/// Where the verification of the trail at open is: segment `segment` (from 0) of `segments`
/// is about to be read, after `records` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verifying {
    pub segment: usize,
    pub segments: usize,
    pub records: u64,
}

/// Proof that a record was stored: its place in the chain, and a way to wait until it is on
/// disk (survives power loss, not just a crash of the daemon).
#[derive(Clone)]
pub struct Receipt {
    seq: u64,
    hash: Hash,
    shared: Arc<Shared>,
}

impl AuditLog {
    /// Opens (or creates) the log in `cfg.dir`: verifies it, recovers a torn tail (recording
    /// the cut in an `audit.recovery` record) and starts the sync thread. Fails on damage that
    /// a crash cannot explain.
    pub fn open(cfg: AuditConfig) -> Result<AuditLog, AuditError> {
        Self::open_with_progress(cfg, &mut |_| {})
    }

    /// [`open`](Self::open), telling `progress` before each segment is verified: opening
    /// re-verifies every record, so its time grows with the trail (~90 MB/s measured on the
    /// 2-vCPU CI machine), and a service manager waiting for the start wants to hear from it.
    pub fn open_with_progress(
        cfg: AuditConfig,
        progress: &mut dyn FnMut(Verifying),
    ) -> Result<AuditLog, AuditError> {
        let opened = open::open(cfg, progress)?;
        let shared = opened.shared.clone();
        let thread = std::thread::Builder::new()
            .name("hoop-audit-sync".into())
            .spawn(move || sync::run(shared))
            .map_err(|e| AuditError::io(&opened.shared.cfg.dir, e))?;
        let inner = Inner {
            shared: opened.shared,
            sync_thread: Mutex::new(Some(thread)),
            recoveries: opened.recoveries,
            _lock: opened.lock,
        };
        Ok(AuditLog {
            inner: Arc::new(inner),
        })
    }

    /// Appends one event. Returns after the record is written to the segment file (it then
    /// survives a kill of the daemon); in `strict` durability, after the fdatasync covering it.
    /// Blocks the calling thread for a write(2) (and, in strict mode, an fdatasync): from async
    /// code prefer `append_async`.
    pub fn append(&self, kind: &str, event: &Value) -> Result<Receipt, AuditError> {
        let receipt = self.append_written(kind, event)?;
        if self.shared().cfg.durability == Durability::Strict {
            receipt.wait_durable()?;
        }
        Ok(receipt)
    }

    /// Like `append`, but in strict mode awaits the fdatasync instead of blocking on it.
    pub async fn append_async(&self, kind: &str, event: &Value) -> Result<Receipt, AuditError> {
        let receipt = self.append_written(kind, event)?;
        if self.shared().cfg.durability == Durability::Strict {
            receipt.durable().await?;
        }
        Ok(receipt)
    }

    /// Appends and waits for the fdatasync covering the record, whatever the configured mode.
    pub fn append_durable(&self, kind: &str, event: &Value) -> Result<Receipt, AuditError> {
        let receipt = self.append_written(kind, event)?;
        receipt.wait_durable()?;
        Ok(receipt)
    }

    /// Appends and returns once the record is written (write(2)), whatever the mode; callers
    /// in strict mode await [`Receipt::durable`] before acting on the record (the proxy does,
    /// for a whole batch of statements at once).
    pub fn append_written(&self, kind: &str, event: &Value) -> Result<Receipt, AuditError> {
        // Encoding and most of the hashing happen here, outside the log's lock.
        let prepared = Prepared::new(kind, event, false)?;
        let (seq, hash) = self.shared().append_written(&prepared)?;
        Ok(Receipt {
            seq,
            hash,
            shared: self.inner.shared.clone(),
        })
    }

    /// Appends without waiting for the write: the record goes out with the next appender's
    /// batch, or within `sync_interval_ms` (the sync thread writes what is sealed before each
    /// commit). For records nothing waits on — a kill -9 of hoopd can lose the last of them,
    /// which is why a request's record never goes this way. Returns its seq.
    pub fn append_sealed(&self, prepared: &Prepared) -> Result<u64, AuditError> {
        self.shared().append_sealed(prepared)
    }

    /// [`Self::append_written`] of a record encoded beforehand ([`Prepared::typed`]); the same
    /// `Prepared` can be appended any number of times (a prepared statement's request). In
    /// `written` durability it returns once the record is in the write-ahead file (a memcpy;
    /// a kill -9 cannot lose it either way) instead of after its own write(2).
    pub fn append_prepared(&self, prepared: &Prepared) -> Result<Receipt, AuditError> {
        let shared = self.shared();
        let (seq, hash) = match shared.cfg.durability {
            Durability::Written => shared.append_walled(prepared)?,
            Durability::Strict => shared.append_written(prepared)?,
        };
        Ok(Receipt {
            seq,
            hash,
            shared: self.inner.shared.clone(),
        })
    }

    pub fn durability(&self) -> Durability {
        self.shared().cfg.durability
    }

    /// Signs a checkpoint of every record written so far, now.
    pub fn checkpoint(&self) -> Result<Checkpoint, AuditError> {
        let cp = self
            .shared()
            .write_checkpoint(true)
            .map_err(AuditError::Write)?;
        Ok(cp.expect("forced checkpoints are always written"))
    }

    /// Applies the retention limits now (the sync thread also does after each rotation).
    pub fn enforce_retention(&self) -> Result<Option<Prune>, AuditError> {
        self.shared().enforce_retention()
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.shared().key.verifying_key()
    }

    pub fn dir(&self) -> &Path {
        &self.shared().cfg.dir
    }

    /// Torn tails cut when this log was opened.
    pub fn recoveries(&self) -> &[Recovery] {
        &self.inner.recoveries
    }

    /// Where the log stands, for metrics: a few loads under the state lock (the lock appenders
    /// hold only to seal a record), never a wait for I/O.
    pub fn progress(&self) -> Progress {
        let st = self.shared().lock_state();
        Progress {
            sealed: st.next_seq,
            written: st.written,
            durable: st.synced,
            checkpointed: st.checkpointed,
            durable_lag: st.unsynced_since.map(|t| t.elapsed()).unwrap_or_default(),
            failed: st.failure.is_some(),
            syncs: st.syncs,
            sync_wakeups: st.sync_wakeups,
        }
    }

    /// Seq the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.shared().lock_state().next_seq
    }

    /// Writes what is pending, commits, signs a last checkpoint and stops the sync thread.
    /// Other clones then get `AuditError::Closed`. Dropping the last clone does the same.
    pub fn close(self) -> Result<(), AuditError> {
        self.inner.shutdown()
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }
}

impl Inner {
    fn shutdown(&self) -> Result<(), AuditError> {
        let Some(thread) = self
            .sync_thread
            .lock()
            .expect("audit thread lock poisoned")
            .take()
        else {
            return Ok(());
        };
        let shared = &self.shared;
        {
            let mut st = shared.lock_state();
            st.closing = true;
            // Records already sealed are written (by their appenders, or here)
            let mut st = shared.write_sealed(st);
            st.shutdown = true;
        }
        shared.sync_cv.notify_all();
        let _ = thread.join();
        match &shared.lock_state().failure {
            Some(f) => Err(AuditError::Poisoned(f.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl Receipt {
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record's hash (also its place in the chain).
    pub fn hash(&self) -> Hash {
        self.hash
    }

    pub fn is_durable(&self) -> bool {
        self.shared.lock_state().synced > self.seq
    }

    /// Blocks until the record is fdatasynced; group-commits with concurrent waiters.
    pub fn wait_durable(&self) -> Result<(), AuditError> {
        self.shared.wait_durable(self.seq)
    }

    /// Resolves once the record is fdatasynced (the sync thread commits at once for it).
    pub async fn durable(&self) -> Result<(), AuditError> {
        match self.shared.durable_waiter(self.seq)? {
            None => Ok(()),
            Some(rx) => rx
                .await
                .map_err(|_| AuditError::Closed)?
                .map_err(AuditError::Write),
        }
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt")
            .field("seq", &self.seq)
            .field("hash", &hex::encode(self.hash))
            .finish()
    }
}

#[cfg(test)]
mod tests;

//! The writer's state: what appenders share under one mutex (`State`), what only the current
//! write leader touches (`Writer`), and the checkpoint file (`CheckpointWriter`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use ed25519_dalek::SigningKey;
use tokio::sync::oneshot;

use crate::audit::checkpoint::Checkpoint;
use crate::audit::config::AuditConfig;
use crate::audit::error::{AuditError, IoStep, WriteFailure};
use crate::audit::merkle::Frontier;
use crate::audit::record::Hash;
use crate::audit::scan::SegmentSummary;
use crate::audit::time;

use super::wal::Wal;

/// Everything the handles, receipts and the sync thread share.
///
/// Lock order: `checkpoints` → `writer` → `sync_lock` → `state`; `prune_lock` first of all.
/// Appenders take only `state`.
pub(crate) struct Shared {
    pub cfg: AuditConfig,
    pub key: SigningKey,
    pub state: Mutex<State>,
    pub writer: Mutex<Writer>,
    pub checkpoints: Mutex<CheckpointWriter>,
    /// One group commit at a time, so `synced` never claims a file another round still syncs.
    pub sync_lock: Mutex<()>,
    pub prune_lock: Mutex<()>,
    /// Followers wait here for the leader's write(2).
    pub written_cv: Condvar,
    /// Mirrors `State::writing`, for appenders spinning without the lock.
    pub leading: AtomicBool,
    /// Strict appenders wait here for a group commit.
    pub durable_cv: Condvar,
    /// Wakes the sync thread early.
    pub sync_cv: Condvar,
}

impl Shared {
    pub fn new(
        cfg: AuditConfig,
        key: SigningKey,
        state: State,
        writer: Writer,
        checkpoints: CheckpointWriter,
    ) -> Self {
        Shared {
            cfg,
            key,
            state: Mutex::new(state),
            writer: Mutex::new(writer),
            checkpoints: Mutex::new(checkpoints),
            sync_lock: Mutex::new(()),
            prune_lock: Mutex::new(()),
            written_cv: Condvar::new(),
            leading: AtomicBool::new(false),
            durable_cv: Condvar::new(),
            sync_cv: Condvar::new(),
        }
    }

    pub fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("audit state lock poisoned")
    }

    pub fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().expect("audit writer lock poisoned")
    }
}

pub(crate) type DurableSender = oneshot::Sender<Result<(), WriteFailure>>;

/// Appender-visible state; held only for short, allocation-light sections.
pub(crate) struct State {
    /// Seq the next sealed record gets.
    pub next_seq: u64,
    /// Hash of the last sealed record.
    pub prev: Hash,
    /// Sealed records not yet handed to a leader, and their hashes.
    pub buf: Vec<u8>,
    pub hashes: Vec<Hash>,
    pub last_time: SystemTime,
    /// Buffers returned by the last leader, reused to avoid reallocating.
    pub spare: (Vec<u8>, Vec<Hash>),
    /// A leader is writing.
    pub writing: bool,
    /// Threads waiting on `written_cv` (a leader wakes them only when there are any: a
    /// condvar notify is a futex syscall even with nobody waiting).
    pub written_waiters: usize,
    /// Records with seq < written are in a segment file (write(2) returned).
    pub written: u64,
    /// The write-ahead file (`written` durability; `None` in strict mode, or if it could not
    /// be created).
    pub wal: Option<Wal>,
    /// Records with seq < walled are in a segment file or the write-ahead file: a kill -9
    /// cannot lose them (≥ `written`).
    pub walled: u64,
    /// Records with seq < synced are fdatasynced.
    pub synced: u64,
    pub sync_requested: bool,
    /// The sync thread sleeps with nothing to file, sync or checkpoint: the next seal wakes it
    /// (an idle node does not wake it every `sync_interval_ms`).
    pub sync_idle: bool,
    /// Times the sync thread woke (a timer, a request, a seal ending its idle sleep).
    pub sync_wakeups: u64,
    /// Group commits that ran an fdatasync.
    pub syncs: u64,
    pub failure: Option<WriteFailure>,
    /// No more appends (close started).
    pub closing: bool,
    /// All appends are written: the sync thread does its last round and exits.
    pub shutdown: bool,
    /// Async waiters for durability of a seq.
    pub waiters: Vec<(u64, DurableSender)>,
    pub current: Arc<File>,
    pub current_path: PathBuf,
    /// Segments closed by rotation and not yet synced by a group commit.
    pub unsynced: Vec<(Arc<File>, PathBuf)>,
    /// A segment was created or deleted since the last directory fsync.
    pub dir_dirty: bool,
    /// A segment was closed: retention should look again.
    pub rotated: bool,
    /// Tree size of the last checkpoint, so the leader can wake the sync thread when one is due.
    pub checkpointed: u64,
    /// No later than when the oldest record that is not yet durable was sealed (`None`: every
    /// sealed record is durable). What the durable-lag metric is measured from.
    pub unsynced_since: Option<Instant>,
}

impl State {
    pub fn new(next_seq: u64, prev: Hash, current: Arc<File>, current_path: PathBuf) -> Self {
        State {
            next_seq,
            prev,
            buf: Vec::with_capacity(1 << 16),
            hashes: Vec::with_capacity(256),
            last_time: SystemTime::now(),
            spare: (Vec::with_capacity(1 << 16), Vec::with_capacity(256)),
            writing: false,
            written_waiters: 0,
            written: next_seq,
            wal: None,
            walled: next_seq,
            synced: next_seq,
            sync_requested: false,
            sync_idle: false,
            sync_wakeups: 0,
            syncs: 0,
            failure: None,
            closing: false,
            shutdown: false,
            waiters: Vec::new(),
            current,
            current_path,
            unsynced: Vec::new(),
            dir_dirty: false,
            rotated: true,
            checkpointed: 0,
            unsynced_since: None,
        }
    }

    pub fn check_open(&self) -> Result<(), AuditError> {
        match (&self.failure, self.closing) {
            (Some(f), _) => Err(AuditError::Poisoned(f.clone())),
            (None, true) => Err(AuditError::Closed),
            (None, false) => Ok(()),
        }
    }

    /// Takes the sealed-but-unwritten records: `(bytes, hashes, last time, seq just past them)`.
    /// Once they are written, [`Self::filed`] with the returned write-ahead position.
    pub fn take_batch(&mut self) -> (Vec<u8>, Vec<Hash>, SystemTime, u64, u64) {
        let buf = std::mem::replace(&mut self.buf, std::mem::take(&mut self.spare.0));
        let hashes = std::mem::replace(&mut self.hashes, std::mem::take(&mut self.spare.1));
        let wal_head = self.wal.as_ref().map_or(0, Wal::head);
        (buf, hashes, self.last_time, self.next_seq, wal_head)
    }

    /// Records below `upto` are in a segment file, and so is every write-ahead copy made
    /// before `wal_pos`.
    pub fn filed(&mut self, upto: u64, wal_pos: u64) {
        self.written = self.written.max(upto);
        self.walled = self.walled.max(self.written);
        if let Some(wal) = &mut self.wal {
            wal.filed(wal_pos);
            // Records sealed while the file was full were not copied (copies must continue the
            // chain): they are exactly `buf` now, so copy them and let the next ones follow.
            if self.walled == self.written && self.walled < self.next_seq && wal.append(&self.buf) {
                self.walled = self.next_seq;
            }
        }
    }

    /// Copies the record just sealed into `buf[from..]` to the write-ahead file, if every
    /// record before it is there or filed (otherwise it waits for its write like the others).
    pub fn copy_ahead(&mut self, seq: u64, from: usize) {
        if self.walled != seq {
            return;
        }
        if let Some(wal) = &mut self.wal
            && wal.append(&self.buf[from..])
        {
            self.walled = seq + 1;
        }
    }

    pub fn recycle(&mut self, mut buf: Vec<u8>, mut hashes: Vec<Hash>) {
        buf.clear();
        hashes.clear();
        // Keep the larger buffers: one outsized burst should not cost a reallocation per batch.
        if buf.capacity() > self.spare.0.capacity() {
            self.spare = (buf, hashes);
        }
    }

    /// Records the first failure: nothing more is written, and every waiter learns why.
    pub fn fail(&mut self, failure: WriteFailure) {
        for (_, tx) in self.waiters.drain(..) {
            let _ = tx.send(Err(failure.clone()));
        }
        self.failure.get_or_insert(failure);
    }

    /// Completes async waiters for records below `upto`.
    pub fn wake_durable(&mut self, upto: u64) {
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].0 < upto {
                let (_, tx) = self.waiters.swap_remove(i);
                let _ = tx.send(Ok(()));
            } else {
                i += 1;
            }
        }
    }
}

/// The active segment and the Merkle frontier; only the write leader (or rotation, retention
/// and checkpointing, briefly) touches it.
pub(crate) struct Writer {
    pub file: Arc<File>,
    pub path: PathBuf,
    pub segment: SegmentSummary,
    /// Closed segments, oldest first (what retention may delete).
    pub closed: Vec<SegmentSummary>,
    /// Tree over every written record.
    pub frontier: Frontier,
    /// Hash of the last written record.
    pub head: Hash,
}

impl Writer {
    /// write(2)s a batch of whole records. On error the file is cut back to the last whole
    /// record where possible (otherwise open's torn-tail recovery does it).
    pub fn write_batch(
        &mut self,
        buf: &[u8],
        hashes: &[Hash],
        last: SystemTime,
        upto: u64,
    ) -> Result<(), WriteFailure> {
        if hashes.is_empty() {
            return Ok(());
        }
        if let Err(e) = (&*self.file).write_all(buf) {
            let _ = self.file.set_len(self.segment.bytes);
            return Err(WriteFailure::new(IoStep::Write, &self.path, &e));
        }
        for hash in hashes {
            self.frontier.push_record(hash);
        }
        let seg = &mut self.segment;
        seg.bytes += buf.len() as u64;
        seg.records += hashes.len() as u64;
        seg.last_seq = Some(upto - 1);
        seg.last_hash = hashes.last().copied();
        seg.last_time = Some(time::format(last));
        self.head = *hashes.last().expect("not empty");
        Ok(())
    }
}

/// Appends signed checkpoints to `checkpoints.log`.
pub(crate) struct CheckpointWriter {
    pub file: File,
    pub path: PathBuf,
    /// Hash of the last checkpoint line.
    pub prev: Hash,
    pub last_size: u64,
    pub last_at: Instant,
}

impl CheckpointWriter {
    pub fn append(&mut self, cp: &Checkpoint) -> Result<(), WriteFailure> {
        let mut line = cp.to_line();
        line.push(b'\n');
        let fail = |e: std::io::Error| WriteFailure::new(IoStep::Checkpoint, &self.path, &e);
        (&self.file).write_all(&line).map_err(fail)?;
        self.file.sync_data().map_err(fail)?;
        self.prev = cp.line_hash();
        self.last_size = cp.tree_size;
        self.last_at = Instant::now();
        Ok(())
    }
}

/// fsync of a directory, so created and deleted names survive a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WriteFailure> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WriteFailure::new(IoStep::SyncDir, dir, &e))
}

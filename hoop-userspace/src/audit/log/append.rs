//! The append path: seal under the state lock, then leader/follower group writes — the first
//! appender to find no write in progress writes everyone's sealed records in one write(2).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::audit::error::{AuditError, IoStep, WriteFailure};
use crate::audit::events::SegmentStart;
use crate::audit::record::{Hash, KIND_SEGMENT, Prepared};
use crate::audit::scan::SegmentSummary;
use crate::audit::segment::segment_name;

use super::state::{Shared, State, Writer};

/// How long an appender spins for another's write before sleeping on the condvar.
const SPIN: Duration = Duration::from_micros(20);

impl Shared {
    /// Places `p` in the chain and returns once its line is in the segment file.
    pub fn append_written(&self, p: &Prepared) -> Result<(u64, Hash), AuditError> {
        let mut st = self.lock_state();
        let (seq, hash) = self.seal(&mut st, p)?;
        self.await_written(st, seq)?;
        Ok((seq, hash))
    }

    /// Returns once record `seq` is in the segment file (leading the write or waiting for the
    /// leader), or the log has failed.
    fn await_written<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        seq: u64,
    ) -> Result<(), AuditError> {
        loop {
            if st.written > seq {
                return Ok(());
            }
            if let Some(f) = &st.failure {
                return Err(AuditError::Write(f.clone()));
            }
            st = if st.writing {
                self.wait_written(st)
            } else {
                self.lead(st)
            };
        }
    }

    /// Places `p` in the chain and returns once a kill -9 cannot lose it: at once if it went to
    /// the write-ahead file (the sync thread files it within `sync_interval_ms`), else once
    /// it is in the segment file, as [`Self::append_written`].
    pub fn append_walled(&self, p: &Prepared) -> Result<(u64, Hash), AuditError> {
        let mut st = self.lock_state();
        let (seq, hash) = self.seal(&mut st, p)?;
        if st.walled <= seq {
            // no write-ahead file, or it is full: the record's own write
            self.await_written(st, seq)?;
        }
        Ok((seq, hash))
    }

    /// Places `p` in the chain without waiting for its write: the next appender's batch, or
    /// the sync thread within `sync_interval_ms`, writes it.
    pub fn append_sealed(&self, p: &Prepared) -> Result<u64, AuditError> {
        let mut st = self.lock_state();
        Ok(self.seal(&mut st, p)?.0)
    }

    /// Writes what is sealed and not yet written (the sync thread, before its commit).
    pub fn flush_sealed(&self) {
        drop(self.write_sealed(self.lock_state()));
    }

    /// Under the state lock: returns once every record sealed so far is written (leading the
    /// writes or waiting for the leader), or the log has failed.
    pub fn write_sealed<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        while st.written < st.next_seq && st.failure.is_none() {
            st = if st.writing {
                self.wait_written(st)
            } else {
                self.lead(st)
            };
        }
        st
    }

    fn seal(&self, st: &mut State, p: &Prepared) -> Result<(u64, Hash), AuditError> {
        st.check_open()?;
        let (seq, prev, now) = (st.next_seq, st.prev, SystemTime::now());
        let from = st.buf.len();
        let hash = p.seal(seq, &prev, now, &mut st.buf);
        st.copy_ahead(seq, from);
        st.hashes.push(hash);
        st.prev = hash;
        st.next_seq += 1;
        st.last_time = now;
        if st.unsynced_since.is_none() {
            st.unsynced_since = Some(std::time::Instant::now());
        }
        if st.sync_idle {
            // the first record after a quiet spell: the sync thread files it within the interval
            st.sync_idle = false;
            self.sync_cv.notify_one();
        }
        Ok((seq, hash))
    }

    /// Writes every sealed record as one batch. Appenders keep sealing meanwhile; their records
    /// go in the next batch, written by one of them.
    pub fn lead<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.writing = true;
        self.leading.store(true, Ordering::Relaxed);
        let (buf, hashes, last, upto, wal_pos) = st.take_batch();
        drop(st);
        let mut w = self.lock_writer();
        let result = w.write_batch(&buf, &hashes, last, upto);
        let mut st = self.lock_state();
        match result {
            Ok(()) => {
                st.filed(upto, wal_pos);
                if upto - st.checkpointed >= self.cfg.checkpoint_every_records && !st.sync_requested
                {
                    st.sync_requested = true;
                    self.sync_cv.notify_one();
                }
                if w.segment.bytes >= self.cfg.segment_max_bytes {
                    self.rotate(&mut w, &mut st);
                }
            }
            Err(f) => st.fail(f),
        }
        st.recycle(buf, hashes);
        st.writing = false;
        self.leading.store(false, Ordering::Release);
        drop(w);
        if st.written_waiters > 0 {
            self.written_cv.notify_all();
        }
        st
    }

    /// Waits for the leader writing now to finish its batch.
    ///
    /// A batch's write takes a few µs, so an appender on another worker first spins for it
    /// (up to [`SPIN`], with the lock released): a condvar wait costs that worker two context
    /// switches and two futex calls, and stalls its other sessions longer. Measured with two
    /// workers and pgbench -c 8: ~4% of appends found the other worker writing.
    pub fn wait_written<'a>(&'a self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        drop(st);
        if self.spin_while_leading() {
            return self.lock_state();
        }
        let mut st = self.lock_state();
        if !st.writing {
            return st;
        }
        st.written_waiters += 1;
        let mut st = self.written_cv.wait(st).expect("audit state lock poisoned");
        st.written_waiters -= 1;
        st
    }

    /// Spins until no leader is writing; false when [`SPIN`] passes first (or on one CPU,
    /// where the leader cannot run while this thread spins).
    fn spin_while_leading(&self) -> bool {
        static CPUS: OnceLock<usize> = OnceLock::new();
        if *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from)) < 2 {
            return false;
        }
        let start = Instant::now();
        loop {
            for _ in 0..64 {
                if !self.leading.load(Ordering::Acquire) {
                    return true;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= SPIN {
                return false;
            }
        }
    }

    /// Closes the full segment and starts the next. Runs with both locks held so no record can
    /// slip between the last record of one segment and the first of the next (once per
    /// `segment_max_bytes`, so the pause is rare).
    fn rotate(&self, w: &mut Writer, st: &mut State) {
        let (buf, hashes, last, upto, wal_pos) = st.take_batch();
        let result = w.write_batch(&buf, &hashes, last, upto).and_then(|()| {
            st.filed(upto, wal_pos);
            self.switch_segment(w, st)
        });
        st.recycle(buf, hashes);
        if let Err(f) = result {
            st.fail(f);
        }
    }

    fn switch_segment(&self, w: &mut Writer, st: &mut State) -> Result<(), WriteFailure> {
        let seq = st.next_seq;
        let name = segment_name(seq);
        let path = self.cfg.dir.join(&name);
        // Records carry (masked) payloads: owner-only, like the directory.
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| WriteFailure::new(IoStep::CreateSegment, &path, &e))?;
        let file = Arc::new(file);
        let old_file = std::mem::replace(&mut w.file, file.clone());
        let old_path = std::mem::replace(&mut w.path, path.clone());
        let old = std::mem::replace(&mut w.segment, SegmentSummary::empty(name, seq));
        w.closed.push(old);
        st.unsynced.push((old_file, old_path));
        st.current = file;
        st.current_path = path;
        st.dir_dirty = true;
        st.rotated = true;
        self.sync_cv.notify_one();
        self.write_segment_start(w, st)
    }

    /// Writes the `audit.segment` record that opens the (empty) current segment: it states the
    /// Merkle frontier of all earlier records, so the segment can be checked without them.
    pub fn write_segment_start(&self, w: &mut Writer, st: &mut State) -> Result<(), WriteFailure> {
        debug_assert_eq!(
            w.frontier.size(),
            st.next_seq,
            "all earlier records are written"
        );
        let event = serde_json::to_value(SegmentStart::new(w.segment.name.clone(), &w.frontier))
            .expect("segment start serializes");
        let p = Prepared::new(KIND_SEGMENT, &event, true).expect("own event is valid");
        let (seq, now) = (st.next_seq, SystemTime::now());
        let mut buf = Vec::with_capacity(512);
        let hash = p.seal(seq, &st.prev, now, &mut buf);
        w.write_batch(&buf, &[hash], now, seq + 1)?;
        st.prev = hash;
        st.next_seq = seq + 1;
        st.filed(seq + 1, 0);
        Ok(())
    }
}

impl SegmentSummary {
    pub(crate) fn empty(name: String, first_seq: u64) -> Self {
        SegmentSummary {
            name,
            first_seq,
            records: 0,
            bytes: 0,
            last_seq: None,
            last_hash: None,
            last_time: None,
        }
    }
}

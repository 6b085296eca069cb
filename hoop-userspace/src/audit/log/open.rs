//! Opening a log directory: lock it, check its key, re-verify every record and checkpoint, cut
//! a torn tail (keeping the bytes and recording the cut), and rebuild seq, chain and Merkle state.

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ed25519_dalek::VerifyingKey;

use crate::audit::checkpoint::{self, checkpoint_genesis};
use crate::audit::config::{AuditConfig, Durability};
use crate::audit::error::{AuditError, Location, Problem, VerifyError};
use crate::audit::events::Recovery;
use crate::audit::keys;
use crate::audit::record::{KIND_RECOVERY, Prepared, Record, sha256};
use crate::audit::scan::{Scanner, SegmentSummary};
use crate::audit::segment::{
    CHECKPOINTS_FILE, LOCK_FILE, PUBLIC_KEY_FILE, SegmentFile, list_segments, segment_name,
};

use super::state::{CheckpointWriter, Shared, State, Writer, sync_dir};
use super::wal::{self, WAL_FILE, Wal};

/// An open that takes longer than this says so in the log.
const SLOW_OPEN: std::time::Duration = std::time::Duration::from_secs(5);

/// An opened directory, ready for the sync thread.
pub(crate) struct Opened {
    pub shared: Arc<Shared>,
    pub recoveries: Vec<Recovery>,
    /// Holds the directory's flock for the log's lifetime.
    pub lock: File,
}

pub(crate) fn open(
    cfg: AuditConfig,
    progress: &mut dyn FnMut(super::Verifying),
) -> Result<Opened, AuditError> {
    cfg.validate()?;
    let dir = cfg.dir.clone();
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| AuditError::io(&dir, e))?;
    let lock = lock_dir(&dir)?;
    let key = keys::load_or_generate(&cfg.key_path)?;
    let public = key.verifying_key();
    claim_dir(&dir, &public)?;

    let mut recoveries = Vec::new();
    let cps = checkpoint::scan_file(&dir, &public)
        .map_err(|e| AuditError::io(dir.join(CHECKPOINTS_FILE), e))?;
    if let Some(p) = cps
        .problems
        .iter()
        .find(|p| !matches!(p.error, VerifyError::TornTail { .. }))
    {
        return Err(corrupt(p));
    }
    if let Some((offset, _)) = cps.torn {
        recoveries.push(cut_tail(&dir, CHECKPOINTS_FILE, offset)?);
    }
    let mut scanner = Scanner::new(&public.to_bytes(), &cps.valid);
    let started = Instant::now();
    scan_segments(&dir, &mut scanner, &mut recoveries, progress)?;
    let took = started.elapsed();
    if took >= SLOW_OPEN {
        tracing::info!(
            records = scanner.records,
            segments = scanner.segments.len(),
            seconds = took.as_secs_f64(),
            "audit trail: every record re-verified before the node starts; the time grows \
             with the trail (see [audit] retention_max_bytes)"
        );
    }
    let mut summaries = std::mem::take(&mut scanner.segments);
    finish_pending_prune(&dir, &scanner, &mut summaries)?;

    let cp_path = dir.join(CHECKPOINTS_FILE);
    let checkpoints = CheckpointWriter {
        file: OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&cp_path)
            .and_then(owner_only)
            .map_err(|e| AuditError::io(&cp_path, e))?,
        path: cp_path,
        prev: cps
            .last_line_hash
            .unwrap_or_else(|| checkpoint_genesis(&public.to_bytes())),
        last_size: cps.valid.last().map_or(0, |(_, cp)| cp.tree_size),
        last_at: Instant::now(),
    };
    let (mut writer, mut state) = writer_state(&dir, &scanner, summaries, checkpoints.last_size)?;
    let leftover = Wal::leftover(&dir).map_err(|e| AuditError::io(dir.join(WAL_FILE), e))?;
    let refiled = match &leftover {
        Some(bytes) => file_leftover(&mut writer, &mut state, bytes)?,
        None => 0,
    };
    if let Some(bytes) = &leftover {
        keep_stray(&dir, bytes, state.next_seq)?;
    }
    let shared = Arc::new(Shared::new(cfg, key, state, writer, checkpoints));
    // makes what was just filed durable before the write-ahead file is started afresh
    start(&shared, &recoveries)?;
    if refiled > 0 {
        tracing::warn!(
            records = refiled,
            "audit trail: filed records from the write-ahead file (hoopd stopped without closing the log)"
        );
    }
    start_wal(&shared)?;
    Ok(Opened {
        shared,
        recoveries,
        lock,
    })
}

/// Re-verifies every segment; a torn tail of the last one is cut (into `recoveries`), any
/// other problem refuses the open.
fn scan_segments(
    dir: &Path,
    scanner: &mut Scanner<'_>,
    recoveries: &mut Vec<Recovery>,
    progress: &mut dyn FnMut(super::Verifying),
) -> Result<(), AuditError> {
    let segments = list_segments(dir).map_err(|e| AuditError::io(dir, e))?;
    for (i, seg) in segments.iter().enumerate() {
        progress(super::Verifying {
            segment: i,
            segments: segments.len(),
            records: scanner.records,
        });
        let last = i + 1 == segments.len();
        let stopped = scanner
            .scan_segment(seg, last)
            .map_err(|e| AuditError::io(&seg.path, e))?;
        if let Some(p) = scanner.problems.first() {
            return Err(corrupt(p));
        }
        if let Some(problem) = stopped {
            recoveries.push(recover_segment_tail(dir, seg, &problem)?);
        }
    }
    scanner.finish();
    match scanner.problems.first() {
        Some(p) => Err(corrupt(p)),
        None => Ok(()),
    }
}

/// The writer positioned after the last record: the last segment stays the active one (a new
/// directory gets `seg-0`).
fn writer_state(
    dir: &Path,
    scanner: &Scanner<'_>,
    mut summaries: Vec<SegmentSummary>,
    checkpointed: u64,
) -> Result<(Writer, State), AuditError> {
    let current = match summaries.pop() {
        Some(current) => current,
        None => {
            let path = dir.join(segment_name(0));
            File::options()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| AuditError::io(&path, e))?;
            SegmentSummary::empty(segment_name(0), 0)
        }
    };
    if current.records == 0 && current.first_seq != scanner.next_seq() {
        let location = Location {
            file: current.name.clone(),
            line: 0,
            offset: 0,
            seq: None,
        };
        let error = VerifyError::SegmentNameMismatch {
            named: current.first_seq,
            found: scanner.next_seq(),
        };
        return Err(AuditError::Corrupt(Box::new(Problem { location, error })));
    }
    let path = dir.join(&current.name);
    let file = Arc::new(
        OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| AuditError::io(&path, e))?,
    );
    let writer = Writer {
        file: file.clone(),
        path: path.clone(),
        segment: current,
        closed: summaries,
        frontier: scanner.frontier().clone(),
        head: scanner.prev(),
    };
    let mut state = State::new(scanner.next_seq(), scanner.prev(), file, path);
    state.checkpointed = checkpointed;
    Ok((writer, state))
}

/// Writes what a fresh or recovered log starts with: the segment's first record if it is
/// empty, then one `audit.recovery` record per cut; then commits.
fn start(shared: &Shared, recoveries: &[Recovery]) -> Result<(), AuditError> {
    {
        let mut w = shared.lock_writer();
        let mut st = shared.lock_state();
        if w.segment.records == 0 {
            shared
                .write_segment_start(&mut w, &mut st)
                .map_err(AuditError::Write)?;
            st.dir_dirty = true;
        }
    }
    for recovery in recoveries {
        let event = serde_json::to_value(recovery).expect("recovery event serializes");
        shared.append_written(&Prepared::new(KIND_RECOVERY, &event, true)?)?;
    }
    shared.sync_round(None).map_err(AuditError::Write)?;
    Ok(())
}

/// Files the records a previous run left in the write-ahead file that continue the chain (a
/// kill -9 came before the sync thread filed them); passes over those already filed and stops
/// at the first that does not continue it. Returns how many it filed.
fn file_leftover(w: &mut Writer, st: &mut State, bytes: &[u8]) -> Result<u64, AuditError> {
    if w.segment.records == 0 {
        // a segment opens with its `audit.segment` record, written before anything after it
        // is sealed: nothing in the file can follow an empty segment
        return Ok(0);
    }
    let records = wal::continuing(bytes, st.next_seq, st.prev);
    let Some((_, r, last)) = records.last() else {
        return Ok(0);
    };
    let (upto, prev, last) = (r.seq + 1, r.hash, *last);
    let mut buf = Vec::new();
    for (line, _, _) in &records {
        buf.extend_from_slice(line);
        buf.push(b'\n');
    }
    let hashes: Vec<_> = records.iter().map(|(_, r, _)| r.hash).collect();
    w.write_batch(&buf, &hashes, last, upto)
        .map_err(AuditError::Write)?;
    (st.next_seq, st.prev, st.last_time) = (upto, prev, last);
    st.filed(upto, 0);
    Ok(hashes.len() as u64)
}

/// Whole records of the write-ahead file past the chain that do not continue it (after a
/// host crash the file may hold only some of its pages: records after a lost one cannot be
/// chained) are not filed; the file is kept as `wal-stray-<seq>.bin` before it is started
/// afresh, so nothing is dropped silently.
fn keep_stray(dir: &Path, bytes: &[u8], next_seq: u64) -> Result<(), AuditError> {
    let stray = bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| Record::parse_line(line).ok())
        .filter(|r| r.seq >= next_seq)
        .count();
    if stray == 0 {
        return Ok(());
    }
    let path = dir.join(format!("wal-stray-{next_seq}.bin"));
    // owner-only, like the records it holds
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| AuditError::io(&path, e))?;
    tracing::warn!(
        records = stray,
        path = %path.display(),
        "audit trail: the write-ahead file holds records that do not continue the chain; kept"
    );
    Ok(())
}

/// In `written` durability, starts an empty write-ahead file (without one, every request's
/// record costs its own write(2), as in strict mode); in strict mode removes a leftover one.
fn start_wal(shared: &Shared) -> Result<(), AuditError> {
    let path = shared.cfg.dir.join(WAL_FILE);
    if shared.cfg.durability == Durability::Strict {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(AuditError::io(path, e)),
            _ => Ok(()),
        };
    }
    match Wal::create(&shared.cfg.dir, shared.cfg.wal_capacity) {
        Ok(wal) => shared.lock_state().wal = Some(wal),
        Err(e) => {
            let _ = fs::remove_file(&path);
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "audit trail: no write-ahead file; each request's record is written on its own"
            );
        }
    }
    Ok(())
}

/// Makes a file of the directory owner-only as the segments are (one a release before this
/// created with the umask's mode, 0644 typically, is narrowed on the next start).
fn owner_only(file: File) -> std::io::Result<File> {
    use std::os::unix::fs::PermissionsExt;
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

fn corrupt(p: &Problem) -> AuditError {
    AuditError::Corrupt(Box::new(p.clone()))
}

fn lock_dir(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .and_then(owner_only)
        .map_err(|e| AuditError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(AuditError::Locked {
            dir: dir.to_owned(),
        }),
        Err(TryLockError::Error(e)) => Err(AuditError::io(path, e)),
    }
}

/// A directory belongs to the key that started it; another key would mean a foreign chain.
fn claim_dir(dir: &Path, public: &VerifyingKey) -> Result<(), AuditError> {
    let path = dir.join(PUBLIC_KEY_FILE);
    match keys::read_public_key(&path)? {
        Some(found) if found != *public => Err(AuditError::ForeignDirectory {
            expected: public.to_bytes(),
            found: found.to_bytes(),
        }),
        Some(_) => Ok(()),
        None => keys::write_public_key(&path, public),
    }
}

/// Cuts the last segment at the first damaged line, if that damage is what a crash leaves:
/// a torn or garbled line with no well-formed record after it. Anything else is an edit.
fn recover_segment_tail(
    dir: &Path,
    seg: &SegmentFile,
    problem: &Problem,
) -> Result<Recovery, AuditError> {
    if !problem.error.is_tearing() {
        return Err(corrupt(problem));
    }
    let offset = problem.location.offset;
    let tail = read_from(&seg.path, offset)?;
    let mut lines: Vec<&[u8]> = tail.split(|b| *b == b'\n').collect();
    lines.pop(); // bytes after the last newline: not a complete line
    if lines
        .iter()
        .skip(1)
        .any(|line| Record::parse_line(line).is_ok())
    {
        return Err(corrupt(problem));
    }
    cut_tail(dir, &seg.name, offset)
}

fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, AuditError> {
    let mut file = File::open(path).map_err(|e| AuditError::io(path, e))?;
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_to_end(&mut tail))
        .map_err(|e| AuditError::io(path, e))?;
    Ok(tail)
}

/// Saves `name`'s bytes from `offset` to a `torn-…` file, then truncates `name` there.
fn cut_tail(dir: &Path, name: &str, offset: u64) -> Result<Recovery, AuditError> {
    let path = dir.join(name);
    let tail = read_from(&path, offset)?;
    let (saved_as, saved) = (0..)
        .map(|n| match n {
            0 => format!("torn-{name}-{offset}.bin"),
            n => format!("torn-{name}-{offset}-{n}.bin"),
        })
        .find_map(|candidate| {
            match File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join(&candidate))
            {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => None,
                result => Some((candidate, result)),
            }
        })
        .expect("some name is free");
    let save_path = dir.join(&saved_as);
    let mut saved = saved.map_err(|e| AuditError::io(&save_path, e))?;
    saved
        .write_all(&tail)
        .and_then(|()| saved.sync_all())
        .map_err(|e| AuditError::io(&save_path, e))?;
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, e))?;
    file.set_len(offset)
        .and_then(|()| file.sync_all())
        .map_err(|e| AuditError::io(&path, e))?;
    sync_dir(dir).map_err(AuditError::Write)?;
    Ok(Recovery {
        file: name.to_owned(),
        offset,
        bytes_cut: tail.len() as u64,
        cut_sha256: hex::encode(sha256(&tail)),
        saved_as,
    })
}

/// Deletes segments that a durable `audit.prune` record announced but a crash left behind.
fn finish_pending_prune(
    dir: &Path,
    scanner: &Scanner<'_>,
    summaries: &mut Vec<SegmentSummary>,
) -> Result<(), AuditError> {
    // An unsigned prune record (crash before its checkpoint) deletes nothing: the files stay
    // and the next retention pass describes them again.
    let Some((_, prune)) = scanner
        .latest_prune()
        .filter(|(seq, _)| scanner.prune_signed(*seq))
    else {
        return Ok(());
    };
    let keep_last = summaries.len().saturating_sub(1);
    let stale = summaries[..keep_last]
        .iter()
        .take_while(|s| {
            s.last_seq
                .is_some_and(|last| last < prune.first_retained_seq)
        })
        .count();
    for seg in summaries.drain(..stale) {
        let path = dir.join(&seg.name);
        fs::remove_file(&path).map_err(|e| AuditError::io(path, e))?;
    }
    if stale > 0 {
        sync_dir(dir).map_err(AuditError::Write)?;
    }
    Ok(())
}

//! Retention: deletes the oldest closed segments past the age or size limit — only after an
//! `audit.prune` record describing them is durable and covered by a signed checkpoint (which
//! also anchors the log's new first segment).

use std::fs;
use std::io::ErrorKind;
use std::time::{Duration, SystemTime};

use crate::audit::error::AuditError;
use crate::audit::events::{Prune, PruneReason, PrunedSegment};
use crate::audit::record::{KIND_PRUNE, Prepared};
use crate::audit::scan::SegmentSummary;
use crate::audit::time;

use super::state::{Shared, Writer, sync_dir};

impl Shared {
    /// Applies the retention limits now. Returns what was deleted, if anything.
    pub fn enforce_retention(&self) -> Result<Option<Prune>, AuditError> {
        let _one_at_a_time = self.prune_lock.lock().expect("audit prune lock poisoned");
        let Some(prune) = select(&self.lock_writer(), &self.cfg, SystemTime::now()) else {
            return Ok(None);
        };
        let event = serde_json::to_value(&prune).expect("prune event serializes");
        self.append_written(&Prepared::new(KIND_PRUNE, &event, true)?)?;
        // The record must be durable and signed before the evidence it describes is gone:
        // verify only accepts a pruned start whose prune record a checkpoint covers.
        self.write_checkpoint(true).map_err(AuditError::Write)?;
        for seg in &prune.segments {
            let path = self.cfg.dir.join(&seg.name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                // Not a lost record: the next open finishes the deletion the record announced.
                Err(e) => return Err(AuditError::io(path, e)),
            }
        }
        self.lock_writer().closed.drain(..prune.segments.len());
        sync_dir(&self.cfg.dir).map_err(AuditError::Write)?;
        Ok(Some(prune))
    }
}

/// The oldest closed segments past a limit (never the active one).
fn select(w: &Writer, cfg: &crate::audit::config::AuditConfig, now: SystemTime) -> Option<Prune> {
    let max_age = cfg.retention_max_age_secs.map(Duration::from_secs);
    let mut total: u64 = w.closed.iter().map(|s| s.bytes).sum::<u64>() + w.segment.bytes;
    let mut segments = Vec::new();
    let mut reason = None;
    for seg in &w.closed {
        let last = seg.last_time.as_deref().and_then(time::parse);
        let too_old = max_age
            .zip(last)
            .is_some_and(|(age, last)| now.duration_since(last).is_ok_and(|d| d > age));
        let too_big = cfg.retention_max_bytes.is_some_and(|max| total > max);
        if !too_old && !too_big {
            break;
        }
        reason.get_or_insert(if too_old {
            PruneReason::MaxAge
        } else {
            PruneReason::MaxBytes
        });
        total -= seg.bytes;
        segments.push(pruned(seg)?);
    }
    let first_retained_seq = w.closed.get(segments.len()).unwrap_or(&w.segment).first_seq;
    Some(Prune {
        reason: reason?,
        first_retained_seq,
        segments,
    })
}

fn pruned(seg: &SegmentSummary) -> Option<PrunedSegment> {
    Some(PrunedSegment {
        name: seg.name.clone(),
        first_seq: seg.first_seq,
        last_seq: seg.last_seq?,
        last_hash: hex::encode(seg.last_hash?),
        last_time: seg.last_time.clone()?,
        bytes: seg.bytes,
    })
}

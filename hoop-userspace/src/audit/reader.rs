//! Reading records back (`hoopctl audit tail|export`): filtered iteration in seq order with
//! each record's own hash checked, and a polling `Follower` for `tail -f`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use super::error::{AuditError, Location, Problem, VerifyError};
use super::record::Record;
use super::segment::{Lines, SegmentFile, list_segments};
use super::time;

/// Which records to return; every set condition must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from_seq: Option<u64>,
    /// Inclusive.
    pub to_seq: Option<u64>,
    /// Records at or after this time.
    pub since: Option<SystemTime>,
    /// Records before this time.
    pub until: Option<SystemTime>,
    pub kind: Option<String>,
    /// `(JSON pointer into the event, value)`, e.g. `("/session_id", json!("s-42"))` or
    /// `("/identity/subject", json!("ci-runner"))`.
    pub fields: Vec<(String, Value)>,
}

impl Filter {
    pub fn matches(&self, rec: &Record) -> bool {
        // Fixed-width timestamps: text order is time order.
        let after = |t: &SystemTime| rec.time.as_str() >= time::format(*t).as_str();
        self.from_seq.is_none_or(|s| rec.seq >= s)
            && self.to_seq.is_none_or(|s| rec.seq <= s)
            && self.since.as_ref().is_none_or(after)
            && self.until.as_ref().is_none_or(|t| !after(t))
            && self.kind.as_ref().is_none_or(|k| *k == rec.kind)
            && self
                .fields
                .iter()
                .all(|(ptr, v)| rec.event.pointer(ptr) == Some(v))
    }
}

/// A record with its stored line (canonical JSON, for `export --format jsonl`) and place.
#[derive(Debug, Clone)]
pub struct Entry {
    pub record: Record,
    pub line: Vec<u8>,
    pub location: Location,
}

#[allow(clippy::result_large_err, reason = "the Ok side is as large")]
fn entry(seg: &str, number: u64, offset: u64, bytes: &[u8]) -> Result<Entry, Problem> {
    let location = Location {
        file: seg.to_owned(),
        line: number,
        offset,
        seq: None,
    };
    match Record::parse_line(bytes) {
        Ok(record) => {
            let location = Location {
                seq: Some(record.seq),
                ..location
            };
            Ok(Entry {
                record,
                line: bytes.to_vec(),
                location,
            })
        }
        Err(error) => Err(Problem { location, error }),
    }
}

/// Iterator over the matching records of a directory, oldest first. A record that fails its
/// own hash check is yielded as an error (run verify for the chain-level checks).
pub struct Reader {
    dir: PathBuf,
    segments: VecDeque<SegmentFile>,
    current: Option<(String, Lines<File>)>,
    filter: Filter,
    done: bool,
    /// A segment has been opened (records may have been read from it).
    started: bool,
}

/// Starts reading `dir`, skipping segments wholly before `filter.from_seq`.
pub fn read(dir: &Path, filter: Filter) -> Result<Reader, AuditError> {
    let mut segments: VecDeque<SegmentFile> = list_segments(dir)
        .map_err(|e| AuditError::io(dir, e))?
        .into();
    if let Some(from) = filter.from_seq {
        while segments.get(1).is_some_and(|next| next.first_seq <= from) {
            segments.pop_front();
        }
    }
    Ok(Reader {
        dir: dir.to_owned(),
        segments,
        current: None,
        filter,
        done: false,
        started: false,
    })
}

impl Iterator for Reader {
    type Item = Result<Entry, Problem>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some((name, lines)) = &mut self.current else {
                if let Err(problem) = self.open_next()? {
                    return Some(Err(problem));
                }
                continue;
            };
            let line = match lines.next_line() {
                Ok(Some(line)) if line.complete => line,
                // End of segment, or a line the writer is still writing: next segment.
                Ok(_) => {
                    self.current = None;
                    continue;
                }
                Err(e) => {
                    let location = Location {
                        offset: lines.position(),
                        ..Location::whole(name.clone())
                    };
                    self.current = None;
                    return Some(Err(Problem {
                        location,
                        error: VerifyError::Io { kind: e.kind() },
                    }));
                }
            };
            match entry(name, line.number, line.offset, line.bytes) {
                Ok(e) if self.filter.to_seq.is_some_and(|to| e.record.seq > to) => self.done = true,
                Ok(e) if self.filter.matches(&e.record) => return Some(Ok(e)),
                Ok(_) => {}
                Err(p) => return Some(Err(p)),
            }
        }
        None
    }
}

impl Reader {
    /// Opens the next segment; None when there is none.
    ///
    /// A segment listed at the start may be gone by the time it is opened: retention deletes
    /// the oldest segments of a live log. Before anything was read that is as if the read had
    /// started a moment later (it goes on from the oldest segment left); after, the records
    /// read and those still there are not contiguous, which is said instead of skipped.
    fn open_next(&mut self) -> Option<Result<(), Problem>> {
        let seg = self.segments.pop_front()?;
        Some(match Lines::open(&seg.path) {
            Ok(lines) => {
                self.started = true;
                self.current = Some((seg.name, lines));
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound && pruned(&self.dir, seg.first_seq) => {
                if self.started {
                    return Some(Err(Problem {
                        location: Location::whole(seg.name),
                        error: VerifyError::PrunedWhileReading,
                    }));
                }
                self.segments.retain(|s| s.first_seq > seg.first_seq);
                return self.open_next();
            }
            Err(e) => Err(Problem {
                location: Location::whole(seg.name),
                error: VerifyError::Io { kind: e.kind() },
            }),
        })
    }
}

/// Whether the segment starting at `first_seq`, found missing, went the way retention takes
/// segments: it is older than every segment the directory holds now (retention deletes whole
/// segments, oldest first, and never the one being written).
pub(crate) fn pruned(dir: &Path, first_seq: u64) -> bool {
    list_segments(dir).is_ok_and(|now| now.first().is_some_and(|s| s.first_seq > first_seq))
}

/// Whether `err`, from reading `dir`, is a segment file that retention deleted meanwhile.
pub(crate) fn pruned_under(dir: &Path, err: &AuditError) -> bool {
    let AuditError::Io { path, source } = err else {
        return false;
    };
    source.kind() == ErrorKind::NotFound
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(super::segment::parse_segment_name)
            .is_some_and(|first_seq| pruned(dir, first_seq))
}

/// Follows a live log: each `poll` returns the matching records appended since the last one,
/// crossing into new segments as the writer rotates. Never blocks.
pub struct Follower {
    dir: PathBuf,
    filter: Filter,
    segment: Option<SegmentFile>,
    offset: u64,
    line: u64,
}

impl Follower {
    /// Starts at the first segment (use `filter.from_seq` to skip history).
    pub fn new(dir: &Path, filter: Filter) -> Self {
        Follower {
            dir: dir.to_owned(),
            filter,
            segment: None,
            offset: 0,
            line: 0,
        }
    }

    /// A follower that falls behind a live log's retention loses the pruned segments' records
    /// (gone from the disk) and goes on from the oldest segment left.
    pub fn poll(&mut self) -> Result<Vec<Result<Entry, Problem>>, AuditError> {
        let mut out = Vec::new();
        loop {
            let segments = list_segments(&self.dir).map_err(|e| AuditError::io(&self.dir, e))?;
            let Some(seg) = self.segment.clone().or_else(|| segments.first().cloned()) else {
                return Ok(out);
            };
            self.segment = Some(seg.clone());
            match self.drain(&seg, &mut out) {
                Err(e) if pruned_under(&self.dir, &e) => {
                    (self.segment, self.offset, self.line) = (None, 0, 0);
                    continue;
                }
                r => r?,
            }
            let Some(next) = segments.into_iter().find(|s| s.first_seq > seg.first_seq) else {
                return Ok(out);
            };
            // The writer finishes a segment before creating the next: read what it added since.
            self.drain(&seg, &mut out)?;
            (self.segment, self.offset, self.line) = (Some(next), 0, 0);
        }
    }

    fn drain(
        &mut self,
        seg: &SegmentFile,
        out: &mut Vec<Result<Entry, Problem>>,
    ) -> Result<(), AuditError> {
        let mut file = File::open(&seg.path).map_err(|e| AuditError::io(&seg.path, e))?;
        let mut buf = Vec::new();
        file.seek(SeekFrom::Start(self.offset))
            .and_then(|_| file.read_to_end(&mut buf))
            .map_err(|e| AuditError::io(&seg.path, e))?;
        let mut start = 0;
        while let Some(len) = buf[start..].iter().position(|&b| b == b'\n') {
            self.line += 1;
            let bytes = &buf[start..start + len];
            match entry(&seg.name, self.line, self.offset, bytes) {
                Ok(e) if !self.filter.matches(&e.record) => {}
                result => out.push(result),
            }
            self.offset += len as u64 + 1;
            start += len + 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

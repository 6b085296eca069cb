//! The chain checker shared by verify, open and proofs: fed segment lines in seq order, it
//! checks every record's hash, seq continuity, the chain, segment starts and checkpoint roots.

use std::io;

use super::checkpoint::Checkpoint;
use super::error::{Location, Problem, VerifyError};
use super::events::{Prune, SegmentStart};
use super::merkle::Frontier;
use super::record::{Hash, KIND_PRUNE, KIND_RECOVERY, KIND_SEGMENT, Record, genesis};
use super::segment::{Line, Lines, SegmentFile};

/// Problems kept at most, so a garbage directory cannot exhaust memory.
pub const MAX_PROBLEMS: usize = 1000;

/// What was found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    pub name: String,
    pub first_seq: u64,
    pub records: u64,
    pub bytes: u64,
    pub last_seq: Option<u64>,
    pub last_hash: Option<Hash>,
    pub last_time: Option<String>,
}

/// Running state of a check over the whole log.
pub struct Scanner<'a> {
    genesis: Hash,
    checkpoints: &'a [(Location, Checkpoint)],
    next_cp: usize,
    next_seq: Option<u64>,
    prev: Hash,
    frontier: Frontier,
    /// False once a seq gap makes the recomputed tree meaningless.
    tree_ok: bool,
    pruned_start: Option<(Location, u64, Hash)>,
    pub problems: Vec<Problem>,
    pub segments: Vec<SegmentSummary>,
    /// The `audit.prune` records, in seq order: seq and content.
    pub prunes: Vec<(u64, Prune)>,
    pub records: u64,
    pub checkpoints_checked: u64,
    pub checkpoints_before_start: u64,
    pub recoveries: Vec<u64>,
    /// Tree state at the first record (non-empty after pruning).
    pub base: Frontier,
    /// Record hashes from `base.size()` on, kept only when asked for (proofs).
    pub record_hashes: Option<Vec<Hash>>,
}

impl<'a> Scanner<'a> {
    /// `checkpoints` are the signature-checked ones, in file order.
    pub fn new(public_key: &[u8; 32], checkpoints: &'a [(Location, Checkpoint)]) -> Self {
        let genesis = genesis(public_key);
        Scanner {
            genesis,
            checkpoints,
            next_cp: 0,
            next_seq: None,
            prev: genesis,
            frontier: Frontier::new(),
            tree_ok: true,
            pruned_start: None,
            problems: Vec::new(),
            segments: Vec::new(),
            prunes: Vec::new(),
            records: 0,
            checkpoints_checked: 0,
            checkpoints_before_start: 0,
            recoveries: Vec::new(),
            base: Frontier::new(),
            record_hashes: None,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq.unwrap_or(0)
    }

    pub fn prev(&self) -> Hash {
        self.prev
    }

    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    pub fn push_problem(&mut self, problem: Problem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        }
    }

    /// Checks one segment. With `stop_at_problem`, stops at the first problem in it and returns
    /// it instead of recording it (a line that does not parse leaves no trace in the state).
    pub fn scan_segment(
        &mut self,
        seg: &SegmentFile,
        stop_at_problem: bool,
    ) -> io::Result<Option<Problem>> {
        let mut lines = Lines::open(&seg.path)?;
        if let Some(empty) = self.segments.last().filter(|s| s.records == 0) {
            // Only the last segment may be empty (a crash right after creating it).
            let location = Location {
                file: empty.name.clone(),
                line: 0,
                offset: 0,
                seq: None,
            };
            self.push_problem(Problem {
                location,
                error: VerifyError::EmptySegment,
            });
        }
        self.segments.push(SegmentSummary {
            name: seg.name.clone(),
            first_seq: seg.first_seq,
            records: 0,
            bytes: 0,
            last_seq: None,
            last_hash: None,
            last_time: None,
        });
        let mut first = true;
        while let Some(line) = lines.next_line()? {
            let mut problems = self.line(seg, &line, first);
            if let Some(problem) = problems.first().filter(|_| stop_at_problem) {
                let problem = problem.clone();
                self.summary().bytes = line.offset;
                return Ok(Some(problem));
            }
            for problem in problems.drain(..) {
                self.push_problem(problem);
            }
            first = false;
        }
        self.summary().bytes = lines.position();
        Ok(None)
    }

    fn summary(&mut self) -> &mut SegmentSummary {
        self.segments.last_mut().expect("scan_segment pushed one")
    }

    /// Checks one line; returns its problems (usually none).
    fn line(&mut self, seg: &SegmentFile, line: &Line<'_>, first: bool) -> Vec<Problem> {
        let at = |seq| Location {
            file: seg.name.clone(),
            line: line.number,
            offset: line.offset,
            seq,
        };
        if !line.complete {
            let error = VerifyError::TornTail {
                bytes: line.bytes.len() as u64,
            };
            return vec![Problem {
                location: at(None),
                error,
            }];
        }
        let rec = match Record::parse_line(line.bytes) {
            Ok(rec) => rec,
            Err(error) => {
                return vec![Problem {
                    location: at(None),
                    error,
                }];
            }
        };
        let location = at(Some(rec.seq));
        let errors = self.check_record(&location, &rec, seg, first);
        self.accept(&rec, &errors);
        errors
            .into_iter()
            .map(|error| Problem {
                location: location.clone(),
                error,
            })
            .collect()
    }

    /// The failed checks of a well-formed record.
    fn check_record(
        &mut self,
        loc: &Location,
        rec: &Record,
        seg: &SegmentFile,
        first: bool,
    ) -> Vec<VerifyError> {
        let mut errors = Vec::new();
        match self.next_seq {
            None => errors.extend(self.start(loc, rec)),
            Some(expected) if rec.seq != expected => errors.push(VerifyError::SeqGap {
                expected,
                found: rec.seq,
            }),
            Some(_) if rec.prev != self.prev => {
                errors.push(VerifyError::ChainBroken {
                    expected: self.prev,
                    found: rec.prev,
                });
            }
            Some(_) => {}
        }
        if first {
            errors.extend(self.check_segment_start(rec, seg));
        } else if rec.kind == KIND_SEGMENT {
            errors.push(VerifyError::MisplacedSegmentRecord);
        }
        if rec.kind == KIND_PRUNE {
            match serde_json::from_value::<Prune>(rec.event.clone()) {
                Ok(prune) => self.prunes.push((rec.seq, prune)),
                Err(_) => errors.push(VerifyError::Malformed { field: "event" }),
            }
        }
        errors
    }

    /// The first record of the log: seq 0 from genesis, or a segment start after pruning.
    fn start(&mut self, loc: &Location, rec: &Record) -> Option<VerifyError> {
        self.next_seq = Some(rec.seq);
        let mut problem = None;
        if rec.seq == 0 {
            problem = (rec.prev != self.genesis).then_some(VerifyError::BadGenesis);
        } else {
            let base = serde_json::from_value::<SegmentStart>(rec.event.clone())
                .ok()
                .and_then(|s| s.frontier());
            match base.filter(|f| f.size() == rec.seq && rec.kind == KIND_SEGMENT) {
                Some(base) => self.frontier = base,
                None => {
                    self.tree_ok = false;
                    problem = Some(VerifyError::SegmentFrontierMismatch);
                }
            }
            self.prev = rec.prev;
            self.pruned_start = Some((loc.clone(), rec.seq, rec.prev));
        }
        self.base = self.frontier.clone();
        while self
            .checkpoints
            .get(self.next_cp)
            .is_some_and(|(_, cp)| cp.tree_size < rec.seq)
        {
            self.next_cp += 1;
            self.checkpoints_before_start += 1;
        }
        self.check_checkpoints();
        problem
    }

    fn check_segment_start(&self, rec: &Record, seg: &SegmentFile) -> Option<VerifyError> {
        if rec.seq != seg.first_seq {
            return Some(VerifyError::SegmentNameMismatch {
                named: seg.first_seq,
                found: rec.seq,
            });
        }
        if rec.kind != KIND_SEGMENT {
            return Some(VerifyError::SegmentStartMissing);
        }
        let start = serde_json::from_value::<SegmentStart>(rec.event.clone()).ok();
        let frontier = start.as_ref().and_then(SegmentStart::frontier);
        let matches = start.is_some_and(|s| s.segment == seg.name)
            && frontier.is_some_and(|f| !self.tree_ok || f == self.frontier);
        (!matches).then_some(VerifyError::SegmentFrontierMismatch)
    }

    /// Moves the state past `rec`; after a problem it resynchronizes on `rec`, so one edit is
    /// reported once, not at every later record.
    fn accept(&mut self, rec: &Record, errors: &[VerifyError]) {
        if errors
            .iter()
            .any(|e| matches!(e, VerifyError::SeqGap { .. }))
        {
            self.tree_ok = false;
        }
        self.next_seq = Some(rec.seq + 1);
        self.prev = rec.hash;
        self.records += 1;
        if rec.kind == KIND_RECOVERY {
            self.recoveries.push(rec.seq);
        }
        let summary = self.summary();
        summary.records += 1;
        summary.last_seq = Some(rec.seq);
        summary.last_hash = Some(rec.hash);
        summary.last_time = Some(rec.time.clone());
        if self.tree_ok {
            self.frontier.push_record(&rec.hash);
            if let Some(hashes) = &mut self.record_hashes {
                hashes.push(rec.hash);
            }
            self.check_checkpoints();
        }
    }

    /// Compares every checkpoint of the current tree size with the recomputed root and head.
    fn check_checkpoints(&mut self) {
        let size = self.frontier.size();
        let checkpoints = self.checkpoints;
        while let Some((loc, cp)) = checkpoints
            .get(self.next_cp)
            .filter(|(_, cp)| cp.tree_size <= size)
        {
            self.next_cp += 1;
            if cp.tree_size < size || !self.tree_ok {
                continue;
            }
            let computed = self.frontier.root();
            let error = if cp.root != computed {
                VerifyError::RootMismatch {
                    tree_size: size,
                    signed: cp.root,
                    computed,
                }
            } else if cp.head != self.prev {
                VerifyError::HeadMismatch {
                    tree_size: size,
                    signed: cp.head,
                    computed: self.prev,
                }
            } else {
                self.checkpoints_checked += 1;
                continue;
            };
            self.push_problem(Problem {
                location: loc.clone(),
                error,
            });
        }
    }

    /// Whether a valid checkpoint covers record `seq`.
    /// The last `audit.prune` record.
    pub fn latest_prune(&self) -> Option<&(u64, Prune)> {
        self.prunes.last()
    }

    pub fn prune_signed(&self, seq: u64) -> bool {
        self.checkpoints.iter().any(|(_, cp)| cp.tree_size > seq)
    }

    /// End-of-log checks: checkpoints past the end, and the proof of a pruned prefix.
    pub fn finish(&mut self) {
        let end = self.next_seq.unwrap_or(0);
        let checkpoints = self.checkpoints;
        for (loc, cp) in &checkpoints[self.next_cp..] {
            if cp.tree_size > end {
                let error = VerifyError::CheckpointBeyondEnd {
                    tree_size: cp.tree_size,
                    records: end,
                };
                self.push_problem(Problem {
                    location: loc.clone(),
                    error,
                });
            }
        }
        self.next_cp = self.checkpoints.len();
        let Some((location, first_seq, prev)) = self.pruned_start.clone() else {
            return;
        };
        // A prune record must account for the first record kept and be covered by a signed
        // checkpoint (retention signs one before deleting): anyone can append a well-chained
        // prune record after the last checkpoint, but not sign it. Not only the last one: a
        // crash between a prune's checkpoint and its deletions, or a reader of a live log in
        // that moment, sees the start an earlier prune made, or one inside the deletion.
        let proven = self
            .prunes
            .iter()
            .any(|(seq, p)| p.accounts_for(first_seq, prev) && self.prune_signed(*seq));
        if !proven {
            self.push_problem(Problem {
                location,
                error: VerifyError::PrunedPrefixUnproven { first_seq },
            });
        } else if self.checkpoints_checked == 0 {
            self.push_problem(Problem {
                location,
                error: VerifyError::PrunedPrefixUnanchored { first_seq },
            });
        }
    }
}

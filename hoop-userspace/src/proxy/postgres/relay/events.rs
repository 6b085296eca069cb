//! Statement events: one per statement, carrying who (process facts; OIDC identity later),
//! where (target, database, user), what (kind, objects, decision and rule), and how it ended
//! (command tag or SQLSTATE, rows, duration). Emitted as structured `statement` records now;
//! the audit trail consumes them next. The statement text is emitted normalized (constants
//! replaced by `$n`), so values — which may be secrets — never reach the logs.

use std::{sync::Arc, time::Instant};

use serde::Serialize;
use serde_json::Value;
use sha2::Digest;

use super::Cx;
use super::prepared::{OpId, Resolved};
use crate::{
    audit::{
        AuditError, Durability, EventPrefix, Prepared as AuditPrepared,
        canonical::{self, Obj},
    },
    classify::Classification,
    mask::Masker,
    policy::{self, Decision, PolicyState},
    session::RecentStatement,
    wire::postgres::Format,
};

/// Longest statement text (masked) an audit record carries; longer text is cut and flagged.
const TEXT_MAX: usize = 4096;

/// Where an Execute's rows come from, for masking them: the portal, the statement it was bound
/// from, and the result formats the client asked for in Bind.
pub struct ExtShape {
    pub portal: String,
    pub statement: String,
    pub formats: Arc<[Format]>,
    /// What the statement held when the portal was bound (a portal keeps it, whatever
    /// becomes of the name afterwards).
    pub def: Resolved,
    /// Bound through the protocol (else a cursor SQL declared, or no portal at all).
    pub bound: bool,
}

impl ExtShape {
    /// The format of result column `i` under the protocol's rule (none: text; one: all).
    pub fn format(&self, i: usize) -> Format {
        match self.formats.len() {
            0 => Format::Text,
            1 => self.formats[0],
            _ => self.formats.get(i).copied().unwrap_or(Format::Text),
        }
    }
}

pub enum PendingKind {
    /// A simple Query: one completion per statement; `next` is the one awaiting its answer.
    Simple { next: usize },
    /// An Execute of a prepared statement.
    Extended,
    /// A request replaced by a refusal with this SQLSTATE (denied, or no audit record).
    Refused { code: &'static str },
    /// A simple Query whose statements all reported (or that an error ended).
    Drained,
}

pub enum StatementOutcome {
    /// CommandComplete (tag), EmptyQueryResponse (empty tag) or PortalSuspended.
    Complete(String),
    /// ErrorResponse with this SQLSTATE.
    Error(String),
    /// An earlier error in the same query or batch made the server skip it.
    NotExecuted,
    /// The session ended before the server answered.
    Interrupted,
}

pub struct Pending {
    pub kind: PendingKind,
    pub text: Arc<str>,
    pub stmts: Arc<[Classification]>,
    pub decision: Decision,
    /// The client batch (Query, or messages up to Sync) it belongs to.
    pub batch: u64,
    pub rows: u64,
    pub started: Instant,
    /// For a statement split off a multi-statement Query: its index.
    index: Option<usize>,
    /// Sequence number of the request's audit record.
    pub request_seq: Option<u64>,
    /// The masking profile its response goes through (`None`: the policy said `none`).
    pub masker: Option<Arc<Masker>>,
    /// Extended protocol: the portal/statement/formats of the Execute.
    pub shape: Option<Arc<ExtShape>>,
    /// The first result row, masked, for the response record.
    pub excerpt: Option<String>,
    /// Its statements' operations on the session's prepared statements: (statement, operation),
    /// confirmed when the statement completes.
    pub ops: Vec<(usize, OpId)>,
}

impl Pending {
    pub fn new(
        kind: PendingKind,
        text: Arc<str>,
        stmts: Arc<[Classification]>,
        decision: Decision,
        batch: u64,
    ) -> Self {
        Self {
            kind,
            text,
            stmts,
            decision,
            batch,
            rows: 0,
            started: Instant::now(),
            index: None,
            request_seq: None,
            masker: None,
            shape: None,
            excerpt: None,
            ops: Vec::new(),
        }
    }

    /// The same request, replaced by a refusal with `code`.
    pub fn refused(mut self, code: &'static str) -> Self {
        self.kind = PendingKind::Refused { code };
        self
    }

    /// The audit record written before the request is forwarded: its classification, the
    /// decision, and the text masked (secrets and PII replaced by the `default` profile whatever
    /// the session's own profile) with the SHA-256 and length of the original. Encoded once per
    /// prepared statement (every Execute of it appends the same event).
    pub fn request_record(
        &self,
        cx: &Cx<'_>,
        pol: &PolicyState,
    ) -> Result<AuditPrepared, AuditError> {
        self.request_record_from(cx, pol, &request_prefix(cx, &self.stmts, &self.decision))
    }

    /// [`Self::request_record`] from its prefix ([`request_prefix`] of this request's
    /// classification and decision).
    pub fn request_record_from(
        &self,
        cx: &Cx<'_>,
        pol: &PolicyState,
        prefix: &EventPrefix,
    ) -> Result<AuditPrepared, AuditError> {
        let masked = pol.masks.audit().mask_text(&self.text);
        let cut = masked.len() > TEXT_MAX;
        let text = if cut {
            let mut end = TEXT_MAX;
            while !masked.is_char_boundary(end) {
                end -= 1;
            }
            &masked[..end]
        } else {
            &masked[..]
        };
        let sha = crate::audit::record::hex32(&sha2::Sha256::digest(self.text.as_bytes()).into());
        AuditPrepared::resume("pg.request", prefix, |out| {
            Obj::resume(out, "statements")
                .str("text", text)
                .u64("text_len", self.text.len() as u64)
                .str(
                    "text_sha256",
                    std::str::from_utf8(&sha).expect("hex is ASCII"),
                )
                .bool("text_truncated", cut)
                .opt_str("user", cx.who.user)
                .close();
        })
    }

    /// Each statement's kind, objects read and written, and WHERE-ness (for records and views).
    pub fn statements_summary(&self) -> Value {
        let s: Vec<StatementSummary> = self.stmts.iter().map(StatementSummary::of).collect();
        serde_json::to_value(s).expect("a summary serializes")
    }

    /// Records how the request ended (audit trail) and emits the statement event.
    pub fn finish(&self, cx: &Cx<'_>, outcome: StatementOutcome) {
        let (name, detail) = self.outcome_parts(&outcome);
        let rec = AuditPrepared::written("pg.response", |out| {
            let mut session = uuid::Uuid::encode_buffer();
            Obj::open(out)
                .str("detail", detail)
                .u64("duration_us", self.started.elapsed().as_micros() as u64)
                .opt_str("excerpt", self.excerpt.as_deref())
                .str("outcome", name)
                .opt_u64("request", self.request_seq)
                .u64("rows", self.rows)
                .str(
                    "session",
                    cx.session.id.hyphenated().encode_lower(&mut session),
                )
                .opt_u64("statement", self.index.map(|i| i as u64))
                .close();
        });
        // nothing waits on a response's record: in `written` mode it is copied to the
        // write-ahead file as it is sealed and filed with the others within sync_interval_ms
        let appended = rec.and_then(|rec| {
            if cx.audit.durability() == Durability::Strict {
                cx.audit.append_prepared(&rec).map(|_| ())
            } else {
                cx.audit.append_sealed(&rec).map(|_| ())
            }
        });
        if let Err(e) = appended {
            tracing::error!(error = %e, "audit trail: cannot record a response");
        }
        let c = self.statement();
        cx.session.record_statement(RecentStatement {
            kind: c.map_or("unknown", |c| c.kind.as_str()),
            decision: self.decision.action.as_str(),
            rule: self.decision.rule.clone(),
            outcome: name,
            detail: detail.to_string(),
            rows: self.rows,
            request: self.request_seq,
        });
        self.emit(cx, name, detail);
    }

    fn outcome_parts<'o>(&self, outcome: &'o StatementOutcome) -> (&'static str, &'o str) {
        let (name, detail) = match outcome {
            StatementOutcome::Complete(tag) => ("complete", tag.as_str()),
            StatementOutcome::Error(code) => ("error", code.as_str()),
            StatementOutcome::NotExecuted => ("not_executed", ""),
            StatementOutcome::Interrupted => ("interrupted", ""),
        };
        let name = match self.kind {
            PendingKind::Refused { code: "42501" } => "denied",
            PendingKind::Refused { .. } => "refused",
            _ => name,
        };
        (name, detail)
    }

    /// The event record of statement `i` of a simple Query, taking the rows counted so far.
    pub fn statement_at(&mut self, i: usize) -> Pending {
        let rows = std::mem::take(&mut self.rows);
        let started = std::mem::replace(&mut self.started, Instant::now());
        Pending {
            kind: PendingKind::Extended,
            text: self.text.clone(),
            stmts: self.stmts.clone(),
            decision: self.decision.clone(),
            batch: self.batch,
            rows,
            started,
            index: Some(i),
            request_seq: self.request_seq,
            masker: self.masker.clone(),
            shape: None,
            excerpt: self.excerpt.take(),
            ops: Vec::new(),
        }
    }

    /// At ReadyForQuery: whatever this entry still waited for was skipped by the server.
    pub fn drain_unexecuted(mut self, finished: &mut Vec<(Pending, StatementOutcome)>) {
        match self.kind {
            PendingKind::Simple { next } => {
                for i in next..self.stmts.len() {
                    finished.push((self.statement_at(i), StatementOutcome::NotExecuted));
                }
            }
            PendingKind::Extended | PendingKind::Refused { .. } => {
                finished.push((self, StatementOutcome::NotExecuted))
            }
            PendingKind::Drained => {}
        }
    }

    fn statement(&self) -> Option<&Classification> {
        self.stmts.get(self.index.unwrap_or(0))
    }

    fn emit(&self, cx: &Cx<'_>, outcome_name: &str, detail: &str) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let (session, who) = (cx.session, cx.who);
        let c = self.statement();
        let text = match (self.index, c) {
            (Some(_), Some(c)) => c.span.text(&self.text),
            _ => &self.text,
        };
        let normalized = pg_query::normalize(text).unwrap_or_else(|_| "<unparsed>".into());
        tracing::debug!(
            event = "statement",
            session.id = %session.id,
            target_name = %session.target.config.name,
            proto = "postgres",
            database = who.database.unwrap_or(""),
            user = who.user.unwrap_or(""),
            pid = session.process.pid,
            exe = session.process.exe.as_deref().unwrap_or(""),
            kind = c.map_or("unknown", |c| c.kind.as_str()),
            writes = ?c.map(policy::written_objects).unwrap_or_default(),
            reads = ?c.map(policy::read_objects).unwrap_or_default(),
            has_where = ?c.and_then(|c| c.has_where),
            decision = self.decision.action.as_str(),
            rule = %self.decision.rule,
            outcome = outcome_name,
            tag = detail,
            rows = self.rows,
            duration_us = self.started.elapsed().as_micros() as u64,
            statement = %normalized,
            "statement"
        );
    }
}

/// The part of a request record that depends only on the session, the statements'
/// classification and the decision (`database` … `statements`): the same for every text of one
/// shape, so a session encodes and hashes it once per shape.
pub fn request_prefix(cx: &Cx<'_>, stmts: &[Classification], decision: &Decision) -> EventPrefix {
    EventPrefix::new(|out| {
        let mut session = uuid::Uuid::encode_buffer();
        let statements: Vec<StatementSummary> = stmts.iter().map(StatementSummary::of).collect();
        let mut statements_json = Vec::with_capacity(128);
        canonical::write_sorted(&mut statements_json, &statements);
        Obj::open(out)
            .opt_str("database", cx.who.database)
            .str("decision", decision.action.as_str())
            .str("rule", &decision.rule)
            .str(
                "session",
                cx.session.id.hyphenated().encode_lower(&mut session),
            )
            .raw("statements", &statements_json);
    })
}

/// One statement of a request (fields sorted by bytes).
#[derive(Serialize)]
struct StatementSummary<'a> {
    has_where: Option<bool>,
    kind: &'a str,
    reads: Vec<String>,
    writes: Vec<String>,
}

impl StatementSummary<'_> {
    fn of(c: &Classification) -> Self {
        StatementSummary {
            has_where: c.has_where,
            kind: c.kind.as_str(),
            reads: policy::read_objects(c),
            writes: policy::written_objects(c),
        }
    }
}

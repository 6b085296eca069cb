//! The session's prepared statements as the server will hold them, so that what runs is decided
//! as what it is.
//!
//! PostgreSQL keeps one namespace for the protocol's named statements (Parse) and SQL's
//! `PREPARE`: a statement parsed under a name can be run with SQL `EXECUTE name`, one made with
//! `PREPARE` can be bound and executed through the protocol, and `DEALLOCATE`, `DISCARD ALL` and
//! Close drop them. A definition is decided when it is made; whatever later runs it (a protocol
//! Execute, SQL `EXECUTE`) is decided as the definition it runs.
//!
//! The registry follows the server exactly rather than the client's intent: a Parse or `PREPARE`
//! of a name that is taken fails on the server and leaves the old definition, so believing the
//! client would let a statement run under another one's decision. Every operation on a name is
//! *unsettled* from the moment it is admitted until the server confirms it (ParseComplete,
//! CloseComplete, CommandComplete); one the server answers a batch without confirming has
//! failed. To resolve a name, the settled definition is combined with the unsettled operations
//! in order: one in the same batch as the statement that runs it has succeeded if that statement
//! runs at all (an error skips the rest of the batch), one from an earlier batch may or may not
//! have. More than one possible definition is *ambiguous* and refused, fail closed; clients
//! that do not redefine a name in flight (no driver does) never see it.
//!
//! Cursors (DECLARE, FETCH/MOVE, CLOSE) are a second namespace tracked the same way
//! ([`Names`]).
//!
//! Sans-IO: the relay feeds it what it admits and what the server answers.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use super::admit::RecordCache;
use crate::{
    classify::{Classification, StatementKind},
    policy::Decision,
};

/// An unsettled operation's handle: its sequence number and name (`None`: every name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpId {
    seq: u64,
    name: Option<Box<str>>,
    /// Of the session's cursors (else of its prepared statements).
    pub cursor: bool,
}

/// A prepared statement's definition, decided when it was made.
pub struct Def {
    pub text: Arc<str>,
    pub stmts: Arc<[Classification]>,
    /// Allow or review (a denied definition never reaches the server).
    pub decision: Decision,
    /// Its executions' request record, encoded at the first one (every Execute appends the same
    /// event), and the policy it was masked under: a reload encodes it again.
    pub record: Mutex<Option<RecordCache>>,
}

impl Def {
    pub fn new(text: Arc<str>, stmts: Arc<[Classification]>, decision: Decision) -> Arc<Self> {
        Arc::new(Self {
            text,
            stmts,
            decision,
            record: Mutex::new(None),
        })
    }

    /// Whether running it also defines, runs or drops prepared statements (its text is SQL
    /// `PREPARE`, `EXECUTE` or `DEALLOCATE`): then each run is resolved and decided afresh.
    pub fn touches_prepared(&self) -> bool {
        self.stmts.iter().any(|c| c.prepared.is_some())
    }
}

/// What a name holds when a statement that runs it runs.
#[derive(Clone)]
pub enum Resolved {
    /// Nothing: the server will fail the statement.
    Missing,
    One(Arc<Def>),
    /// More than one definition is possible until the server answers earlier messages.
    Ambiguous,
}

impl Resolved {
    /// The same definition (or the same absence).
    pub fn same(&self, other: &Resolved) -> bool {
        match (self, other) {
            (Resolved::One(a), Resolved::One(b)) => Arc::ptr_eq(a, b),
            (Resolved::Missing, Resolved::Missing) => true,
            _ => false,
        }
    }
}

struct Op {
    seq: u64,
    batch: u64,
    /// `Some`: a definition; `None`: a drop.
    define: Option<Arc<Def>>,
}

/// A name's unsettled operations, in order, and how many of them define it.
#[derive(Default)]
struct NameOps {
    ops: VecDeque<Op>,
    defines: usize,
}

/// Every cost here is constant per message (amortized), whatever a client pipelines: a name's
/// resolution looks at its last operation and two counts, and expiry walks one queue in order.
#[derive(Default)]
pub struct Registry {
    settled: HashMap<Box<str>, Arc<Def>>,
    /// The protocol's unnamed statement: each Parse of it replaces it at once (failed or not),
    /// so it is never unsettled.
    unnamed: Option<Arc<Def>>,
    /// Unsettled operations on one name.
    named: HashMap<Box<str>, NameOps>,
    /// Unsettled drops of every name: (sequence, batch).
    all: VecDeque<(u64, u64)>,
    /// Every unsettled operation in admission order, for expiry: (batch, handle).
    order: VecDeque<(u64, OpId)>,
    next: u64,
    /// The session's cursors (else its prepared statements).
    cursor: bool,
}

/// A session's two namespaces: its prepared statements, and its cursors, tracked the same way
/// (what a FETCH reads is decided as the query its DECLARE made; a cursor ends with its
/// transaction unless WITH HOLD, and a declaration kept past that only makes a FETCH the
/// server fails decided stricter).
pub struct Names {
    pub statements: Registry,
    pub cursors: Registry,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            statements: Registry::default(),
            cursors: Registry {
                cursor: true,
                ..Registry::default()
            },
        }
    }
}

impl Names {
    /// The cursors, or the prepared statements.
    pub fn of(&mut self, cursors: bool) -> &mut Registry {
        if cursors {
            &mut self.cursors
        } else {
            &mut self.statements
        }
    }

    /// The server confirmed operation `id` (of either namespace).
    pub fn confirm(&mut self, id: &OpId) {
        self.of(id.cursor).confirm(id);
    }

    /// The server has answered every batch before `done`.
    pub fn batches_done(&mut self, done: u64) {
        self.statements.batches_done(done);
        self.cursors.batches_done(done);
    }
}

impl Registry {
    /// A definition of `name` admitted in `batch`; `None` for the unnamed statement, which it
    /// replaces at once.
    pub fn define(&mut self, name: &str, batch: u64, def: Arc<Def>) -> Option<OpId> {
        if name.is_empty() {
            self.unnamed = Some(def);
            return None;
        }
        Some(self.push(batch, Some(name), Some(def)))
    }

    /// A drop of `name` (`None`: of every named statement) admitted in `batch`.
    pub fn drop_name(&mut self, name: Option<&str>, batch: u64) -> OpId {
        self.push(batch, name, None)
    }

    /// A simple Query destroys the unnamed statement, as does hoopd's own refusal Parse.
    pub fn forget_unnamed(&mut self) {
        self.unnamed = None;
    }

    fn push(&mut self, batch: u64, name: Option<&str>, define: Option<Arc<Def>>) -> OpId {
        self.next += 1;
        let seq = self.next;
        match name {
            Some(n) => {
                let e = self.named.entry(n.into()).or_default();
                e.defines += usize::from(define.is_some());
                e.ops.push_back(Op { seq, batch, define });
            }
            None => self.all.push_back((seq, batch)),
        }
        let id = OpId {
            seq,
            name: name.map(Into::into),
            cursor: self.cursor,
        };
        self.order.push_back((batch, id.clone()));
        id
    }

    /// What `name` holds for a statement of `batch` that runs it.
    pub fn resolve(&self, name: &str, batch: u64) -> Resolved {
        let one = |d: Option<&Arc<Def>>| d.cloned().map_or(Resolved::Missing, Resolved::One);
        if name.is_empty() {
            return one(self.unnamed.as_ref());
        }
        let settled = self.settled.get(name);
        let ops = self.named.get(name);
        let last = ops.and_then(|o| o.ops.back());
        let last_all = self.all.back();
        // the latest operation on the name (its own or a drop of all)
        let latest = match (last, last_all) {
            (Some(op), Some(&(seq, b))) if seq > op.seq => (b, None),
            (Some(op), _) => (op.batch, op.define.as_ref()),
            (None, Some(&(_, b))) => (b, None),
            (None, None) => return one(settled),
        };
        if latest.0 == batch {
            // the statement runs only if everything before it in its batch succeeded
            return one(latest.1);
        }
        // each operation from an earlier batch may have failed: the settled definition and
        // every unsettled one are possible (each definition is a different statement)
        let defines = ops.map_or(0, |o| o.defines);
        match (settled, defines) {
            (None, 0) => Resolved::Missing,
            (Some(d), 0) => Resolved::One(d.clone()),
            (None, 1) => one(ops.and_then(|o| o.ops.iter().find_map(|op| op.define.as_ref()))),
            _ => Resolved::Ambiguous,
        }
    }

    /// The server confirmed operation `id`.
    pub fn confirm(&mut self, id: &OpId) {
        match &id.name {
            Some(name) => {
                let Some(e) = self.named.get_mut(name) else {
                    return;
                };
                // confirmations come in order: the operation is at the front
                let Some(i) = e.ops.iter().position(|o| o.seq == id.seq) else {
                    return;
                };
                let op = e.ops.remove(i).expect("found");
                match op.define {
                    Some(def) => {
                        e.defines -= 1;
                        self.settled.insert(name.clone(), def);
                    }
                    None => {
                        self.settled.remove(name);
                    }
                }
                if e.ops.is_empty() {
                    self.named.remove(name);
                }
            }
            None => {
                if let Some(i) = self.all.iter().position(|&(s, _)| s == id.seq) {
                    self.all.remove(i);
                    self.settled.clear();
                }
            }
        }
    }

    /// The server has answered every batch before `done`: what it did not confirm failed.
    pub fn batches_done(&mut self, done: u64) {
        while let Some((_, id)) = self.order.front().filter(|(b, _)| *b < done) {
            let id = id.clone();
            self.order.pop_front();
            match &id.name {
                Some(name) => {
                    if let Some(e) = self.named.get_mut(name) {
                        if e.ops.front().is_some_and(|o| o.seq == id.seq) {
                            let op = e.ops.pop_front().expect("front");
                            e.defines -= usize::from(op.define.is_some());
                        }
                        if e.ops.is_empty() {
                            self.named.remove(name);
                        }
                    }
                }
                None => {
                    if self.all.front().is_some_and(|&(s, _)| s == id.seq) {
                        self.all.pop_front();
                    }
                }
            }
        }
    }

    /// Operations admitted and not yet answered (for tests).
    #[cfg(test)]
    fn unsettled(&self) -> usize {
        self.named.values().map(|e| e.ops.len()).sum::<usize>() + self.all.len()
    }
}

/// What a SQL `PREPARE` (or `DECLARE … CURSOR`) defines: the statement it wraps, as if it had
/// come on its own.
pub fn defined_by(prepare: &Classification) -> Classification {
    Classification {
        kind: prepare.inner.unwrap_or(StatementKind::Unknown),
        inner: None,
        prepared: None,
        ..prepare.clone()
    }
}

/// `run` (a statement that runs prepared statement `def`: SQL `EXECUTE`, also in CREATE TABLE
/// AS or EXPLAIN ANALYZE; or a FETCH/MOVE reading cursor `def`) described with what it runs:
/// `inner` its kind, the objects it touches, whether its UPDATE/DELETE have a WHERE clause,
/// whether it takes row locks.
pub fn running(run: &Classification, def: &Def) -> Classification {
    let mut c = run.clone();
    let kinds = def.stmts.iter().map(|d| match d.kind {
        // a definition that is itself a PREPARE (parsed through the protocol)
        StatementKind::Prepare => d.inner.unwrap_or(StatementKind::Unknown),
        k => k,
    });
    if let Some(k) = kinds.max_by_key(|k| k.dml_rank()) {
        c.inner = Some(k);
    }
    for d in def.stmts.iter() {
        c.objects.extend(d.objects.iter().cloned());
        c.has_where = match (c.has_where, d.has_where) {
            (Some(a), Some(b)) => Some(a && b),
            (a, b) => a.or(b),
        };
        c.row_locks |= d.row_locks;
    }
    crate::classify::dedupe_objects(&mut c.objects);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;

    fn def(text: &str) -> Arc<Def> {
        let stmts: Arc<[Classification]> = crate::classify::classify(text).into();
        Def::new(text.into(), stmts, policy::nothing_to_decide())
    }

    fn text(r: Resolved) -> String {
        match r {
            Resolved::Missing => "missing".into(),
            Resolved::One(d) => d.text.to_string(),
            Resolved::Ambiguous => "ambiguous".into(),
        }
    }

    #[test]
    fn a_definition_counts_once_the_server_confirms_it() {
        let mut r = Registry::default();
        let del = r.define("p", 1, def("DELETE FROM t")).unwrap();
        // in its own batch it has succeeded if anything after it runs
        assert_eq!(text(r.resolve("p", 1)), "DELETE FROM t");
        // a later batch may run after it failed: still only one possible definition
        assert_eq!(text(r.resolve("p", 2)), "DELETE FROM t");
        r.confirm(&del);
        r.batches_done(2);
        assert_eq!(text(r.resolve("p", 3)), "DELETE FROM t");
        assert_eq!(r.unsettled(), 0);
        assert_eq!(text(r.resolve("q", 3)), "missing");
    }

    #[test]
    fn a_failed_redefinition_leaves_the_old_one() {
        let mut r = Registry::default();
        let id = r.define("p", 1, def("DELETE FROM t")).unwrap();
        r.confirm(&id);
        r.batches_done(2);
        // PREPARE p AS SELECT 1 while p is taken: the server refuses it
        r.define("p", 2, def("SELECT 1"));
        // until it answers, either could be what runs
        assert_eq!(text(r.resolve("p", 3)), "ambiguous");
        r.batches_done(3);
        assert_eq!(text(r.resolve("p", 4)), "DELETE FROM t");
    }

    #[test]
    fn drop_then_define_in_one_batch_is_certain() {
        let mut r = Registry::default();
        let id = r.define("p", 1, def("SELECT 1")).unwrap();
        r.confirm(&id);
        r.batches_done(2);
        let d = r.drop_name(Some("p"), 2);
        let n = r.define("p", 2, def("SELECT 2")).unwrap();
        assert_eq!(text(r.resolve("p", 2)), "SELECT 2");
        // from another batch both the old and the new one are possible
        assert_eq!(text(r.resolve("p", 3)), "ambiguous");
        r.confirm(&d);
        r.confirm(&n);
        r.batches_done(3);
        assert_eq!(text(r.resolve("p", 3)), "SELECT 2");
    }

    #[test]
    fn drops_and_drop_all() {
        let mut r = Registry::default();
        for (i, n) in ["a", "b"].into_iter().enumerate() {
            let id = r.define(n, i as u64, def("SELECT 1")).unwrap();
            r.confirm(&id);
        }
        r.batches_done(2);
        let d = r.drop_name(Some("a"), 2);
        // unconfirmed, the drop may fail: the definition is still possible
        assert_eq!(text(r.resolve("a", 3)), "SELECT 1");
        assert_eq!(text(r.resolve("a", 2)), "missing");
        r.confirm(&d);
        r.batches_done(3);
        assert_eq!(text(r.resolve("a", 3)), "missing");
        let all = r.drop_name(None, 3);
        assert_eq!(text(r.resolve("b", 3)), "missing");
        r.confirm(&all);
        assert_eq!(text(r.resolve("b", 4)), "missing");
    }

    #[test]
    fn a_drop_of_all_orders_with_the_names_own_operations() {
        let mut r = Registry::default();
        r.drop_name(None, 1);
        r.define("a", 1, def("SELECT 1"));
        assert_eq!(text(r.resolve("a", 1)), "SELECT 1");
        r.drop_name(None, 1);
        assert_eq!(text(r.resolve("a", 1)), "missing");
        // from a later batch: the definition may or may not have survived; only one is possible
        assert_eq!(text(r.resolve("a", 2)), "SELECT 1");
        r.batches_done(2);
        assert_eq!(
            (r.unsettled(), text(r.resolve("a", 2))),
            (0, "missing".into())
        );
    }

    /// A client pipelining many definitions: every one resolves, and what the server answers
    /// empties the registry's unsettled operations.
    #[test]
    fn pipelined_definitions() {
        let mut r = Registry::default();
        let d = def("SELECT 1");
        let ids: Vec<OpId> = (0..10_000)
            .map(|i| r.define(&format!("s{i}"), 1, d.clone()).unwrap())
            .collect();
        assert!((0..10_000).all(|i| matches!(r.resolve(&format!("s{i}"), 1), Resolved::One(_))));
        assert!((0..10_000).all(|i| matches!(r.resolve(&format!("s{i}"), 2), Resolved::One(_))));
        for id in ids.iter().step_by(2) {
            r.confirm(id);
        }
        r.batches_done(2);
        assert_eq!(r.unsettled(), 0);
        assert_eq!(text(r.resolve("s0", 2)), "SELECT 1");
        assert_eq!(text(r.resolve("s1", 2)), "missing");
    }

    #[test]
    fn the_unnamed_statement_is_replaced_at_once() {
        let mut r = Registry::default();
        assert!(r.define("", 1, def("SELECT 1")).is_none());
        r.define("", 1, def("DELETE FROM t"));
        assert_eq!(text(r.resolve("", 1)), "DELETE FROM t");
        r.forget_unnamed();
        assert_eq!(text(r.resolve("", 2)), "missing");
        // DEALLOCATE ALL does not touch it
        r.define("", 2, def("SELECT 1"));
        let all = r.drop_name(None, 2);
        r.confirm(&all);
        assert_eq!(text(r.resolve("", 2)), "SELECT 1");
    }

    #[test]
    fn execute_is_described_by_what_it_runs() {
        let run = crate::classify::classify("EXECUTE p").remove(0);
        let prepare = crate::classify::classify("PREPARE p AS DELETE FROM s.t").remove(0);
        let d = Def::new(
            "x".into(),
            Arc::from([defined_by(&prepare)]),
            policy::nothing_to_decide(),
        );
        let c = running(&run, &d);
        assert_eq!(c.kind, StatementKind::Execute);
        assert_eq!(c.inner, Some(StatementKind::Delete));
        assert_eq!(c.has_where, Some(false));
        assert_eq!(policy::written_objects(&c), ["s.t"]);
        // a statement parsed through the protocol
        let d = def("SELECT * FROM u FOR UPDATE");
        let c = running(&run, &d);
        assert_eq!((c.inner, c.row_locks), (Some(StatementKind::Select), true));
        assert_eq!(policy::read_objects(&c), ["u"]);
    }
}

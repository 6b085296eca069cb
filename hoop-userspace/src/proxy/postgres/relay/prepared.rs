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

/// An unsettled operation's handle.
pub type OpId = u64;

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
    id: OpId,
    batch: u64,
    /// `None`: every named statement (DEALLOCATE ALL, DISCARD ALL).
    name: Option<Box<str>>,
    /// `Some`: a definition; `None`: a drop.
    define: Option<Arc<Def>>,
}

#[derive(Default)]
pub struct Registry {
    settled: HashMap<Box<str>, Arc<Def>>,
    /// The protocol's unnamed statement: each Parse of it replaces it at once (failed or not),
    /// so it is never unsettled.
    unnamed: Option<Arc<Def>>,
    unsettled: VecDeque<Op>,
    next: OpId,
}

impl Registry {
    /// A definition of `name` admitted in `batch`; `None` for the unnamed statement, which it
    /// replaces at once.
    pub fn define(&mut self, name: &str, batch: u64, def: Arc<Def>) -> Option<OpId> {
        if name.is_empty() {
            self.unnamed = Some(def);
            return None;
        }
        Some(self.push(batch, Some(name.into()), Some(def)))
    }

    /// A drop of `name` (`None`: of every named statement) admitted in `batch`.
    pub fn drop_name(&mut self, name: Option<&str>, batch: u64) -> OpId {
        self.push(batch, name.map(Into::into), None)
    }

    /// A simple Query destroys the unnamed statement, as does hoopd's own refusal Parse.
    pub fn forget_unnamed(&mut self) {
        self.unnamed = None;
    }

    fn push(&mut self, batch: u64, name: Option<Box<str>>, define: Option<Arc<Def>>) -> OpId {
        self.next += 1;
        self.unsettled.push_back(Op {
            id: self.next,
            batch,
            name,
            define,
        });
        self.next
    }

    /// What `name` holds for a statement of `batch` that runs it.
    pub fn resolve(&self, name: &str, batch: u64) -> Resolved {
        let one = |d: Option<&Arc<Def>>| d.cloned().map_or(Resolved::Missing, Resolved::One);
        if name.is_empty() {
            return one(self.unnamed.as_ref());
        }
        if self.unsettled.is_empty() {
            return one(self.settled.get(name));
        }
        // the possible definitions (`None`: none), in order of appearance
        let mut possible: Vec<Option<&Arc<Def>>> = vec![self.settled.get(name)];
        for op in &self.unsettled {
            if op.name.as_deref().is_some_and(|n| n != name) {
                continue;
            }
            let after = op.define.as_ref();
            if op.batch == batch {
                // the statement runs only if everything before it in its batch succeeded
                possible = vec![after];
            } else {
                possible.push(after);
            }
        }
        let mut defs = possible.into_iter().flatten();
        match (defs.next(), defs.next()) {
            (None, _) => Resolved::Missing,
            (Some(d), None) => Resolved::One(d.clone()),
            (Some(d), Some(e)) => {
                if Arc::ptr_eq(d, e) && defs.all(|x| Arc::ptr_eq(d, x)) {
                    Resolved::One(d.clone())
                } else {
                    Resolved::Ambiguous
                }
            }
        }
    }

    /// The server confirmed operation `id`.
    pub fn confirm(&mut self, id: OpId) {
        let Some(i) = self.unsettled.iter().position(|o| o.id == id) else {
            return;
        };
        let op = self.unsettled.remove(i).expect("found");
        match (op.name, op.define) {
            (Some(name), Some(def)) => {
                self.settled.insert(name, def);
            }
            (Some(name), None) => {
                self.settled.remove(&name);
            }
            (None, _) => self.settled.clear(),
        }
    }

    /// The server has answered every batch before `done`: what it did not confirm failed.
    pub fn batches_done(&mut self, done: u64) {
        self.unsettled.retain(|o| o.batch >= done);
    }

    /// Operations admitted and not yet answered (for tests and bounds).
    #[cfg(test)]
    fn unsettled(&self) -> usize {
        self.unsettled.len()
    }
}

/// What a SQL `PREPARE` defines: the statement it wraps, as if it had come on its own.
pub fn defined_by(prepare: &Classification) -> Classification {
    Classification {
        kind: prepare.inner.unwrap_or(StatementKind::Unknown),
        inner: None,
        prepared: None,
        ..prepare.clone()
    }
}

/// `run` (a statement that runs prepared statement `def`: SQL `EXECUTE`, also in CREATE TABLE
/// AS or EXPLAIN ANALYZE) described with what it runs: `inner` its kind, the objects it touches,
/// whether its UPDATE/DELETE have a WHERE clause, whether it takes row locks.
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
        r.confirm(del);
        r.batches_done(2);
        assert_eq!(text(r.resolve("p", 3)), "DELETE FROM t");
        assert_eq!(r.unsettled(), 0);
        assert_eq!(text(r.resolve("q", 3)), "missing");
    }

    #[test]
    fn a_failed_redefinition_leaves_the_old_one() {
        let mut r = Registry::default();
        let id = r.define("p", 1, def("DELETE FROM t")).unwrap();
        r.confirm(id);
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
        r.confirm(id);
        r.batches_done(2);
        let d = r.drop_name(Some("p"), 2);
        let n = r.define("p", 2, def("SELECT 2")).unwrap();
        assert_eq!(text(r.resolve("p", 2)), "SELECT 2");
        // from another batch both the old and the new one are possible
        assert_eq!(text(r.resolve("p", 3)), "ambiguous");
        r.confirm(d);
        r.confirm(n);
        r.batches_done(3);
        assert_eq!(text(r.resolve("p", 3)), "SELECT 2");
    }

    #[test]
    fn drops_and_drop_all() {
        let mut r = Registry::default();
        for (i, n) in ["a", "b"].into_iter().enumerate() {
            let id = r.define(n, i as u64, def("SELECT 1")).unwrap();
            r.confirm(id);
        }
        r.batches_done(2);
        let d = r.drop_name(Some("a"), 2);
        // unconfirmed, the drop may fail: the definition is still possible
        assert_eq!(text(r.resolve("a", 3)), "SELECT 1");
        assert_eq!(text(r.resolve("a", 2)), "missing");
        r.confirm(d);
        r.batches_done(3);
        assert_eq!(text(r.resolve("a", 3)), "missing");
        let all = r.drop_name(None, 3);
        assert_eq!(text(r.resolve("b", 3)), "missing");
        r.confirm(all);
        assert_eq!(text(r.resolve("b", 4)), "missing");
    }

    #[test]
    fn the_unnamed_statement_is_replaced_at_once() {
        let mut r = Registry::default();
        assert_eq!(r.define("", 1, def("SELECT 1")), None);
        r.define("", 1, def("DELETE FROM t"));
        assert_eq!(text(r.resolve("", 1)), "DELETE FROM t");
        r.forget_unnamed();
        assert_eq!(text(r.resolve("", 2)), "missing");
        // DEALLOCATE ALL does not touch it
        r.define("", 2, def("SELECT 1"));
        let all = r.drop_name(None, 2);
        r.confirm(all);
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

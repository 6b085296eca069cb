//! Statement classification with PostgreSQL's own parser (libpg_query via the
//! `pg_query` crate): what each statement in a SQL string does and to which
//! objects, so policy never has to guess from raw text.
//!
//! Design:
//! - One [`Classification`] per statement, with its byte [`Span`] in the input.
//!   A string that does not parse yields a single [`StatementKind::Unknown`]:
//!   the server parses the whole simple-query string before running any of it,
//!   so a syntax error anywhere means nothing in it runs.
//! - The statement kind comes from the top-level parse node ([`kind`]). Objects
//!   come from a walk over the *whole* tree ([`walk`]), done through the parse
//!   tree's `serde::Serialize` impls, so no node type can be forgotten: a table
//!   hidden in an array subscript or a JSON expression is still found.
//! - CTE names are resolved with PostgreSQL's scoping (a non-recursive CTE does
//!   not see itself, a DML target is never a CTE), so a CTE named like a table
//!   cannot hide a real read of that table.
//! - The most consequential effect wins: a data-modifying CTE makes the whole
//!   statement that kind (Delete > Merge > Update > Insert > Select).
//! - [`ClassifyCache`] memoizes by exact SQL text with a bounded, scan-resistant
//!   cache, so prepared statements and repeated queries are classified once,
//!   and by literal-free template ([`template`]), so statements that differ
//!   only in inlined literals (simple-protocol clients) are classified once
//!   per shape.
mod cache;
mod ddl;
mod kind;
mod template;
mod walk;

#[cfg(test)]
mod tests;

pub use cache::{CacheStats, ClassifyCache, TemplateStats};

use std::sync::Arc;

/// What a statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    /// COPY ... FROM: loads data into a table.
    CopyFrom,
    /// COPY ... TO: reads a table or query out.
    CopyTo,
    /// Any CREATE, plus SELECT INTO and CREATE TABLE AS (with `inner` = the query).
    Create,
    /// Any ALTER, RENAME, SET SCHEMA, OWNER TO, COMMENT, SECURITY LABEL, ALTER SYSTEM.
    Alter,
    /// Any DROP, including DROP DATABASE/ROLE/OWNED.
    Drop,
    Truncate,
    Grant,
    Revoke,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, PREPARE TRANSACTION, ...
    Transaction,
    /// SET, SET LOCAL, SET ROLE, SET SESSION AUTHORIZATION, SET TRANSACTION.
    Set,
    Show,
    /// RESET and RESET ALL.
    Reset,
    /// DO: an anonymous code block; its body is opaque to classification.
    Do,
    /// CALL of a procedure.
    Call,
    /// PREPARE name AS ...; `inner` is the prepared statement's kind.
    Prepare,
    /// EXECUTE name: the proxy must look up what `name` was prepared as.
    Execute,
    Deallocate,
    /// EXPLAIN without ANALYZE (plans only). EXPLAIN ANALYZE runs the statement,
    /// so it is classified as the explained statement with `explain_analyze` set.
    Explain,
    Listen,
    Notify,
    Unlisten,
    Vacuum,
    Analyze,
    Lock,
    /// DECLARE, FETCH, MOVE, CLOSE of a cursor.
    Cursor,
    /// Other utility commands: CHECKPOINT, DISCARD, LOAD, CLUSTER, REINDEX,
    /// REFRESH MATERIALIZED VIEW, SET CONSTRAINTS, ...
    Utility,
    /// Did not parse (or parsed into something this classifier cannot read).
    Unknown,
    /// Not SQL: a call through the protocol's fast-path interface (PostgreSQL's FunctionCall
    /// message: libpq's `PQfn` and large-object functions). The function is named by OID
    /// only, and its result has no columns.
    Fastpath,
}

impl StatementKind {
    /// Stable lower-case name, for policy files and audit records.
    pub fn as_str(self) -> &'static str {
        use StatementKind as K;
        match self {
            K::Select => "select",
            K::Insert => "insert",
            K::Update => "update",
            K::Delete => "delete",
            K::Merge => "merge",
            K::CopyFrom => "copy_from",
            K::CopyTo => "copy_to",
            K::Create => "create",
            K::Alter => "alter",
            K::Drop => "drop",
            K::Truncate => "truncate",
            K::Grant => "grant",
            K::Revoke => "revoke",
            K::Transaction => "transaction",
            K::Set => "set",
            K::Show => "show",
            K::Reset => "reset",
            K::Do => "do",
            K::Call => "call",
            K::Prepare => "prepare",
            K::Execute => "execute",
            K::Deallocate => "deallocate",
            K::Explain => "explain",
            K::Listen => "listen",
            K::Notify => "notify",
            K::Unlisten => "unlisten",
            K::Vacuum => "vacuum",
            K::Analyze => "analyze",
            K::Lock => "lock",
            K::Cursor => "cursor",
            K::Utility => "utility",
            K::Unknown => "unknown",
            K::Fastpath => "fastpath",
        }
    }

    /// Every kind, for lookups by name.
    pub const ALL: [StatementKind; 33] = {
        use StatementKind as K;
        [
            K::Select,
            K::Insert,
            K::Update,
            K::Delete,
            K::Merge,
            K::CopyFrom,
            K::CopyTo,
            K::Create,
            K::Alter,
            K::Drop,
            K::Truncate,
            K::Grant,
            K::Revoke,
            K::Transaction,
            K::Set,
            K::Show,
            K::Reset,
            K::Do,
            K::Call,
            K::Prepare,
            K::Execute,
            K::Deallocate,
            K::Explain,
            K::Listen,
            K::Notify,
            K::Unlisten,
            K::Vacuum,
            K::Analyze,
            K::Lock,
            K::Cursor,
            K::Utility,
            K::Unknown,
            K::Fastpath,
        ]
    };

    /// The kind named `name` (as [`Self::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Rank for "most consequential effect wins" among data-modifying kinds.
    /// Data-changing weight: select < insert < update < merge < delete; other kinds none.
    pub(crate) fn dml_rank(self) -> Option<u8> {
        match self {
            StatementKind::Select => Some(0),
            StatementKind::Insert => Some(1),
            StatementKind::Update => Some(2),
            StatementKind::Merge => Some(3),
            StatementKind::Delete => Some(4),
            _ => None,
        }
    }
}

/// How a statement touches an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    /// Reads it, references it, or (for functions) calls it.
    Read,
    /// Changes its contents or its definition, creates or drops it.
    Write,
}

/// What sort of object an [`ObjectRef`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// Anything in `pg_class`: table, view, materialized view, sequence, index,
    /// foreign table. The parser cannot tell which one a name refers to.
    Relation,
    Schema,
    Database,
    Role,
    /// Function, procedure or aggregate.
    Function,
    Type,
    Extension,
    Tablespace,
    /// A run-time parameter (SET/SHOW/RESET/ALTER SYSTEM), e.g. `role`, `search_path`.
    Setting,
    /// A LISTEN/NOTIFY channel.
    Channel,
    /// Triggers, policies, rules, publications, servers, and other catalog objects.
    Other,
}

/// One object a statement touches. Names are as PostgreSQL folded them
/// (unquoted identifiers lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    /// Schema when written qualified; `None` means resolved by `search_path`.
    pub schema: Option<String>,
    pub name: String,
    pub access: Access,
}

/// Byte range of a statement within the classified SQL string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// The statement's text; empty if `sql` is not the string that was classified.
    pub fn text<'s>(&self, sql: &'s str) -> &'s str {
        sql.get(self.start..self.end).unwrap_or("")
    }
}

/// The classification of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub kind: StatementKind,
    /// For PREPARE, EXPLAIN, DECLARE CURSOR, CREATE TABLE AS / SELECT INTO:
    /// the kind of the wrapped statement; for EXECUTE, of the prepared statement it runs (set
    /// by the session that knows it, as are its objects and `has_where`).
    pub inner: Option<StatementKind>,
    /// Relations, functions and catalog objects touched, deduplicated.
    pub objects: Vec<ObjectRef>,
    /// For UPDATE/DELETE (including ones in CTEs): `Some(false)` if any of them
    /// has no WHERE clause. `None` for other kinds. Syntactic: `WHERE true` counts.
    pub has_where: Option<bool>,
    /// SELECT ... FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE takes row locks.
    pub row_locks: bool,
    /// COPY ... PROGRAM runs a shell command on the database server.
    pub copy_program: bool,
    /// EXPLAIN ANALYZE: the explained statement really runs.
    pub explain_analyze: bool,
    /// What the statement does to the session's prepared statements (PREPARE, EXECUTE,
    /// DEALLOCATE, DISCARD ALL: one namespace with the protocol's named statements) or cursors
    /// (DECLARE, FETCH/MOVE, CLOSE).
    pub prepared: Option<PreparedOp>,
    pub span: Span,
}

/// A statement's effect on the session's prepared statements, by name (as PostgreSQL folds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreparedOp {
    /// PREPARE name AS …: the statement's `inner`, `objects` and `has_where` describe it.
    Define(Box<str>),
    /// EXECUTE name (also in CREATE TABLE AS and EXPLAIN ANALYZE): runs what `name` holds.
    Run(Box<str>),
    /// DEALLOCATE name.
    Drop(Box<str>),
    /// DEALLOCATE ALL, DISCARD ALL.
    DropAll,
    /// DECLARE name CURSOR FOR …: `inner`, `objects` describe its query.
    DeclareCursor(Box<str>),
    /// FETCH or MOVE in cursor `name`: reads what its query returns.
    Fetch(Box<str>),
    /// CLOSE name.
    CloseCursor(Box<str>),
    /// CLOSE ALL.
    CloseAllCursors,
}

impl PreparedOp {
    /// Whether it acts on the session's cursors (else on its prepared statements).
    pub fn on_cursor(&self) -> bool {
        matches!(
            self,
            Self::DeclareCursor(_) | Self::Fetch(_) | Self::CloseCursor(_) | Self::CloseAllCursors
        )
    }
}

impl Classification {
    fn new(kind: StatementKind, span: Span) -> Self {
        Classification {
            kind,
            inner: None,
            objects: Vec::new(),
            has_where: None,
            row_locks: false,
            copy_program: false,
            explain_analyze: false,
            prepared: None,
            span,
        }
    }

    /// A fast-path function call, described by `text` (of `len` bytes).
    pub fn fastpath(len: usize) -> Self {
        Self::new(StatementKind::Fastpath, Span { start: 0, end: len })
    }

    /// The kind of statement this one runs or keeps to run besides its own: the statement of a
    /// PREPARE or of an EXECUTE (once the session resolved what it runs), the query of CREATE
    /// TABLE AS and DECLARE CURSOR; not the statement a plan-only EXPLAIN describes without
    /// running it.
    pub fn wrapped(&self) -> Option<StatementKind> {
        match self.kind {
            StatementKind::Explain => None,
            _ => self.inner,
        }
    }

    /// Objects with the given access.
    pub fn objects_with(&self, access: Access) -> impl Iterator<Item = &ObjectRef> {
        self.objects.iter().filter(move |o| o.access == access)
    }
}

/// Sorts and deduplicates a statement's objects.
pub fn dedupe_objects(objects: &mut Vec<ObjectRef>) {
    kind::dedupe(objects);
}

/// Classifies every statement in `sql`. Never panics: input that libpg_query
/// rejects (or that trips a bug in it) gives one `Unknown` covering `sql`.
pub fn classify(sql: &str) -> Vec<Classification> {
    classify_with_consts(sql).0
}

/// [`classify`] plus, when `sql` parsed into exactly one statement, the sorted
/// byte offsets of the constants (`A_Const`) in its tree, for the cache's
/// template tier.
fn classify_with_consts(sql: &str) -> (Vec<Classification>, Option<Vec<i32>>) {
    // pg_query's own tree walk (run inside `parse`) indexes and unwraps; a panic
    // there must not take a proxy worker down with it.
    std::panic::catch_unwind(|| classify_inner(sql)).unwrap_or_else(|_| (vec![unknown(sql)], None))
}

/// [`classify`] returning a shareable result, the form [`ClassifyCache`] stores.
pub fn classify_shared(sql: &str) -> Arc<[Classification]> {
    classify(sql).into()
}

fn classify_inner(sql: &str) -> (Vec<Classification>, Option<Vec<i32>>) {
    let Ok(parsed) = pg_query::parse(sql, 0) else {
        return (vec![unknown(sql)], None);
    };
    let stmts = &parsed.protobuf.stmts;
    let mut consts = None;
    let result = stmts
        .iter()
        .map(|raw| {
            let span = raw_span(sql, raw.stmt_location, raw.stmt_len);
            match raw.stmt.as_ref().and_then(|n| n.node.as_ref()) {
                Some(node) => {
                    let (c, mut found) = kind::classify_node_with_consts(node, span);
                    if stmts.len() == 1 {
                        found.sort_unstable();
                        consts = Some(found);
                    }
                    c
                }
                None => Classification::new(StatementKind::Unknown, span),
            }
        })
        .collect();
    (result, consts)
}

fn unknown(sql: &str) -> Classification {
    Classification::new(StatementKind::Unknown, trim(sql, 0, sql.len()))
}

/// libpg_query reports each statement's start and length (0 = to the end),
/// including surrounding whitespace; trim that off.
fn raw_span(sql: &str, location: i32, len: i32) -> Span {
    let start = usize::try_from(location).unwrap_or(0).min(sql.len());
    let end = match usize::try_from(len) {
        Ok(0) | Err(_) => sql.len(),
        Ok(n) => (start + n).min(sql.len()),
    };
    trim(sql, start, end)
}

fn trim(sql: &str, start: usize, end: usize) -> Span {
    let Some(text) = sql.get(start..end) else {
        return Span { start, end };
    };
    let lead = text.len() - text.trim_start().len();
    let body = text.trim();
    Span {
        start: start + lead,
        end: start + lead + body.len(),
    }
}

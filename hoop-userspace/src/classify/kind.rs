//! Top-level statement kind, and how relations found by the walk are accessed
//! in that statement.
use pg_query::NodeEnum as N;
use pg_query::protobuf::VariableSetKind;

use super::walk::{self, RelRef};
use super::{
    Access, Classification, ObjectKind, ObjectRef, PreparedOp, Span, StatementKind as K, ddl,
};

/// (struct, field) positions whose relation is written, created or altered.
const WRITE_TARGETS: &[(&str, &str)] = &[
    ("InsertStmt", "relation"),
    ("UpdateStmt", "relation"),
    ("DeleteStmt", "relation"),
    ("MergeStmt", "relation"),
    ("IntoClause", "rel"),
    ("CopyStmt", "relation"),
    ("CreateStmt", "relation"),
    ("ViewStmt", "view"),
    ("IndexStmt", "relation"),
    ("AlterTableStmt", "relation"),
    ("PartitionCmd", "name"),
    ("TruncateStmt", "relations"),
    ("RenameStmt", "relation"),
    ("AlterObjectSchemaStmt", "relation"),
    ("AlterOwnerStmt", "relation"),
    ("CreateTrigStmt", "relation"),
    ("RuleStmt", "relation"),
    ("RefreshMatViewStmt", "relation"),
    ("CreatePolicyStmt", "table"),
    ("AlterPolicyStmt", "table"),
    ("CreateSeqStmt", "sequence"),
    ("AlterSeqStmt", "sequence"),
    ("GrantStmt", "objects"),
    ("VacuumRelation", "relation"),
    ("ClusterStmt", "relation"),
    ("ReindexStmt", "relation"),
    ("LockStmt", "relations"),
    ("CommentStmt", "object"),
    ("SecLabelStmt", "object"),
];

/// Classifies one parsed statement.
pub(super) fn classify_node(node: &N, span: Span) -> Classification {
    classify_walked(node, span, &walk::walk(node))
}

/// [`classify_node`] plus the byte offsets of the statement's constants
/// (`A_Const` nodes), which the cache's template tier checks.
pub(super) fn classify_node_with_consts(node: &N, span: Span) -> (Classification, Vec<i32>) {
    let w = walk::walk(node);
    let c = classify_walked(node, span, &w);
    (c, w.consts)
}

fn classify_walked(node: &N, span: Span, w: &walk::Walk) -> Classification {
    let mut c = Classification::new(K::Utility, span);
    let mut target_access = Access::Write;
    match node {
        N::SelectStmt(s) if s.into_clause.is_some() => {
            c.kind = K::Create;
            c.inner = Some(K::Select);
        }
        N::SelectStmt(_) => c.kind = K::Select,
        N::InsertStmt(_) => c.kind = K::Insert,
        N::UpdateStmt(_) => c.kind = K::Update,
        N::DeleteStmt(_) => c.kind = K::Delete,
        N::MergeStmt(_) => c.kind = K::Merge,
        N::CopyStmt(s) => {
            c.kind = if s.is_from { K::CopyFrom } else { K::CopyTo };
            c.copy_program = s.is_program;
            if !s.is_from {
                target_access = Access::Read;
            }
        }
        N::ExplainStmt(s) => return explain(s, span, w),
        N::PrepareStmt(s) => {
            c.kind = K::Prepare;
            c.inner = inner_kind(s.query.as_deref());
            c.prepared = Some(PreparedOp::Define(s.name.as_str().into()));
        }
        N::CreateTableAsStmt(s) => {
            c.kind = K::Create;
            c.inner = inner_kind(s.query.as_deref());
            // CREATE TABLE … AS EXECUTE name
            if let Some(N::ExecuteStmt(e)) = s.query.as_deref().and_then(|q| q.node.as_ref()) {
                c.prepared = Some(PreparedOp::Run(e.name.as_str().into()));
            }
        }
        N::DeclareCursorStmt(s) => {
            c.kind = K::Cursor;
            c.inner = inner_kind(s.query.as_deref());
            c.prepared = Some(PreparedOp::DeclareCursor(s.portalname.as_str().into()));
        }
        N::FetchStmt(s) => {
            c.kind = K::Cursor;
            c.prepared = Some(PreparedOp::Fetch(s.portalname.as_str().into()));
        }
        N::ClosePortalStmt(s) => {
            c.kind = K::Cursor;
            c.prepared = Some(if s.portalname.is_empty() {
                PreparedOp::CloseAllCursors
            } else {
                PreparedOp::CloseCursor(s.portalname.as_str().into())
            });
        }
        N::ExecuteStmt(s) => {
            c.kind = K::Execute;
            c.prepared = Some(PreparedOp::Run(s.name.as_str().into()));
        }
        N::DeallocateStmt(s) => {
            c.kind = K::Deallocate;
            c.prepared = Some(if s.isall || s.name.is_empty() {
                PreparedOp::DropAll
            } else {
                PreparedOp::Drop(s.name.as_str().into())
            });
        }
        N::TransactionStmt(_) => c.kind = K::Transaction,
        N::VariableSetStmt(s) => {
            let reset = matches!(
                VariableSetKind::try_from(s.kind),
                Ok(VariableSetKind::VarReset | VariableSetKind::VarResetAll)
            );
            c.kind = if reset { K::Reset } else { K::Set };
            c.objects.push(setting(&s.name, Access::Write));
        }
        N::VariableShowStmt(s) => {
            c.kind = K::Show;
            c.objects.push(setting(&s.name, Access::Read));
        }
        N::AlterSystemStmt(s) => {
            c.kind = K::Alter;
            let name = s.setstmt.as_ref().map_or("", |s| s.name.as_str());
            c.objects.push(setting(name, Access::Write));
        }
        N::DoStmt(_) => c.kind = K::Do,
        N::CallStmt(_) => c.kind = K::Call,
        N::ListenStmt(s) => {
            c.kind = K::Listen;
            c.objects.push(channel(&s.conditionname, Access::Read));
        }
        N::NotifyStmt(s) => {
            c.kind = K::Notify;
            c.objects.push(channel(&s.conditionname, Access::Write));
        }
        N::UnlistenStmt(s) => {
            c.kind = K::Unlisten;
            c.objects.push(channel(
                if s.conditionname.is_empty() {
                    "*"
                } else {
                    &s.conditionname
                },
                Access::Read,
            ));
        }
        N::VacuumStmt(s) => {
            c.kind = if s.is_vacuumcmd {
                K::Vacuum
            } else {
                K::Analyze
            };
            if !s.is_vacuumcmd {
                target_access = Access::Read;
            }
        }
        N::LockStmt(s) => {
            c.kind = K::Lock;
            // ACCESS SHARE (1) only conflicts with ACCESS EXCLUSIVE and needs
            // just SELECT privilege; every stronger mode needs write privileges.
            if s.mode == 1 {
                target_access = Access::Read;
            }
        }
        N::TruncateStmt(_) => c.kind = K::Truncate,
        N::DiscardStmt(s) => {
            c.kind = K::Utility;
            if s.target == pg_query::protobuf::DiscardMode::DiscardAll as i32 {
                c.prepared = Some(PreparedOp::DropAll);
            }
        }
        other => {
            if !ddl::classify(other, &mut c) {
                c.kind = match w.root {
                    r if r.starts_with("Create") => K::Create,
                    "ViewStmt" | "RuleStmt" | "CompositeTypeStmt" | "DefineStmt" => K::Create,
                    r if r.starts_with("Alter") => K::Alter,
                    r if r.starts_with("Drop") => K::Drop,
                    _ => K::Utility,
                };
            }
        }
    }
    add_walk(&mut c, w, target_access);
    c
}

/// EXPLAIN plans without running; EXPLAIN ANALYZE runs the statement, so it
/// takes the explained statement's classification.
fn explain(s: &pg_query::protobuf::ExplainStmt, span: Span, w: &walk::Walk) -> Classification {
    let analyze = s.options.iter().any(|o| match &o.node {
        Some(N::DefElem(d)) if d.defname == "analyze" => ddl::def_bool(d.arg.as_deref()),
        _ => false,
    });
    let inner = match s.query.as_deref().and_then(|q| q.node.as_ref()) {
        Some(q) => classify_node(q, span),
        None => Classification::new(K::Unknown, span),
    };
    if analyze {
        return Classification {
            explain_analyze: true,
            ..inner
        };
    }
    let mut c = Classification::new(K::Explain, span);
    c.inner = Some(inner.kind);
    c.row_locks = w.row_locks;
    // Nothing is written by a plan-only EXPLAIN.
    c.objects = inner
        .objects
        .into_iter()
        .map(|o| ObjectRef {
            access: Access::Read,
            ..o
        })
        .collect();
    dedupe(&mut c.objects);
    c
}

fn inner_kind(query: Option<&pg_query::protobuf::Node>) -> Option<K> {
    let node = query?.node.as_ref()?;
    Some(classify_node(node, Span { start: 0, end: 0 }).kind)
}

/// Merges what the walk found into `c`: relations, functions, nested DML,
/// WHERE presence and row locks.
fn add_walk(c: &mut Classification, w: &walk::Walk, target_access: Access) {
    for r in &w.relations {
        if let Some(obj) = relation(r, target_access) {
            c.objects.push(obj);
        }
    }
    for (schema, name) in &w.functions {
        c.objects.push(ObjectRef {
            kind: ObjectKind::Function,
            schema: schema.clone(),
            name: name.clone(),
            access: Access::Read,
        });
    }
    c.row_locks |= w.row_locks;
    // A data-modifying CTE decides what a query statement really does.
    if c.kind.dml_rank().is_some() && c.inner.is_none() {
        for &k in &w.dml {
            if k.dml_rank() > c.kind.dml_rank() {
                c.kind = k;
            }
        }
    }
    let dml_kind = if c.kind == K::Prepare {
        c.inner
    } else {
        Some(c.kind)
    };
    if matches!(dml_kind, Some(K::Update | K::Delete)) {
        c.has_where = w.all_have_where;
    }
    dedupe(&mut c.objects);
}

fn relation(r: &RelRef, target_access: Access) -> Option<ObjectRef> {
    if r.parent == ("CompositeTypeStmt", "typevar") {
        return Some(ObjectRef {
            kind: ObjectKind::Type,
            schema: r.schema.clone(),
            name: r.name.clone(),
            access: Access::Write,
        });
    }
    let access = match r.parent {
        p if WRITE_TARGETS.contains(&p) => match p.0 {
            "CopyStmt" | "VacuumRelation" | "LockStmt" => target_access,
            _ => Access::Write,
        },
        _ => Access::Read,
    };
    // DML targets are never CTEs; a read of a name a CTE shadows is no table read.
    if access == Access::Read && r.is_cte {
        return None;
    }
    Some(ObjectRef {
        kind: ObjectKind::Relation,
        schema: r.schema.clone(),
        name: r.name.clone(),
        access,
    })
}

fn setting(name: &str, access: Access) -> ObjectRef {
    let name = if name.is_empty() { "all" } else { name };
    ObjectRef {
        kind: ObjectKind::Setting,
        schema: None,
        name: name.to_ascii_lowercase(),
        access,
    }
}

fn channel(name: &str, access: Access) -> ObjectRef {
    ObjectRef {
        kind: ObjectKind::Channel,
        schema: None,
        name: name.to_owned(),
        access,
    }
}

pub(super) fn dedupe(objects: &mut Vec<ObjectRef>) {
    objects.sort();
    objects.dedup();
}

//! DDL, DCL and other catalog statements: their kind and the named objects
//! they create, alter, drop or grant on. Relations written as `RangeVar`s are
//! found by the walk; this module adds names the parser keeps as plain strings.
use pg_query::NodeEnum as N;
use pg_query::protobuf::{Node, ObjectType as OT};

use super::{Access, Classification, ObjectKind, ObjectRef, StatementKind as K};

/// Sets `c.kind` and named objects for catalog statements; false if `node` is
/// not one this module knows (the caller falls back to the node's type name).
pub(super) fn classify(node: &N, c: &mut Classification) -> bool {
    let mut add = |kind: ObjectKind, parts: Vec<String>| push(c, kind, parts);
    let kind = match node {
        N::DropStmt(s) => {
            let kind = object_kind(s.remove_type);
            for o in &s.objects {
                let parts = names(o);
                // DROP TRIGGER/RULE/POLICY name ON table: the table is altered too.
                if matches!(
                    OT::try_from(s.remove_type),
                    Ok(OT::ObjectTrigger | OT::ObjectRule | OT::ObjectPolicy)
                ) {
                    add(
                        ObjectKind::Relation,
                        parts[..parts.len().saturating_sub(1)].to_vec(),
                    );
                    add(
                        ObjectKind::Other,
                        parts.last().cloned().into_iter().collect(),
                    );
                } else {
                    add(kind, parts);
                }
            }
            K::Drop
        }
        N::DropdbStmt(s) => {
            add(ObjectKind::Database, vec![s.dbname.clone()]);
            K::Drop
        }
        N::DropRoleStmt(s) => {
            s.roles.iter().for_each(|r| add(ObjectKind::Role, names(r)));
            K::Drop
        }
        N::DropOwnedStmt(s) => {
            s.roles.iter().for_each(|r| add(ObjectKind::Role, names(r)));
            K::Drop
        }
        N::DropTableSpaceStmt(s) => {
            add(ObjectKind::Tablespace, vec![s.tablespacename.clone()]);
            K::Drop
        }
        N::GrantStmt(s) => {
            grant(s, &mut add);
            if s.is_grant { K::Grant } else { K::Revoke }
        }
        N::GrantRoleStmt(s) => {
            s.granted_roles
                .iter()
                .chain(&s.grantee_roles)
                .for_each(|r| add(ObjectKind::Role, names(r)));
            if s.is_grant { K::Grant } else { K::Revoke }
        }
        N::AlterDefaultPrivilegesStmt(s) => match &s.action {
            Some(g) => {
                grant(g, &mut add);
                if g.is_grant { K::Grant } else { K::Revoke }
            }
            None => K::Grant,
        },
        N::CreateSchemaStmt(s) => {
            let name = match (&s.schemaname, &s.authrole) {
                (n, Some(r)) if n.is_empty() => r.rolename.clone(),
                (n, _) => n.clone(),
            };
            add(ObjectKind::Schema, vec![name]);
            K::Create
        }
        N::CreatedbStmt(s) => {
            add(ObjectKind::Database, vec![s.dbname.clone()]);
            K::Create
        }
        N::CreateRoleStmt(s) => {
            add(ObjectKind::Role, vec![s.role.clone()]);
            K::Create
        }
        N::CreateFunctionStmt(s) => {
            add(ObjectKind::Function, strings(&s.funcname));
            K::Create
        }
        N::CreateExtensionStmt(s) => {
            add(ObjectKind::Extension, vec![s.extname.clone()]);
            K::Create
        }
        N::CreateTableSpaceStmt(s) => {
            add(ObjectKind::Tablespace, vec![s.tablespacename.clone()]);
            K::Create
        }
        N::IndexStmt(s) => {
            if !s.idxname.is_empty() {
                let schema = s
                    .relation
                    .as_ref()
                    .map(|r| r.schemaname.clone())
                    .unwrap_or_default();
                add(ObjectKind::Relation, vec![schema, s.idxname.clone()]);
            }
            K::Create
        }
        N::CreateTrigStmt(s) => {
            add(ObjectKind::Other, vec![s.trigname.clone()]);
            K::Create
        }
        N::CreatePolicyStmt(s) => {
            add(ObjectKind::Other, vec![s.policy_name.clone()]);
            K::Create
        }
        N::CreateEnumStmt(s) => {
            add(ObjectKind::Type, strings(&s.type_name));
            K::Create
        }
        N::CreateRangeStmt(s) => {
            add(ObjectKind::Type, strings(&s.type_name));
            K::Create
        }
        N::CreateDomainStmt(s) => {
            add(ObjectKind::Type, strings(&s.domainname));
            K::Create
        }
        N::DefineStmt(s) => {
            add(object_kind(s.kind), strings(&s.defnames));
            K::Create
        }
        N::ImportForeignSchemaStmt(s) => {
            add(ObjectKind::Schema, vec![s.local_schema.clone()]);
            K::Create
        }
        N::AlterTableStmt(s) => {
            for cmd in &s.cmds {
                if let Some(N::AlterTableCmd(cmd)) = &cmd.node {
                    add(
                        ObjectKind::Role,
                        cmd.newowner.as_ref().map(role_name).into_iter().collect(),
                    );
                }
            }
            K::Alter
        }
        N::AlterDatabaseStmt(s) => {
            add(ObjectKind::Database, vec![s.dbname.clone()]);
            K::Alter
        }
        N::AlterDatabaseSetStmt(s) => {
            add(ObjectKind::Database, vec![s.dbname.clone()]);
            K::Alter
        }
        N::AlterRoleStmt(s) => {
            add(
                ObjectKind::Role,
                s.role.as_ref().map(role_name).into_iter().collect(),
            );
            K::Alter
        }
        N::AlterRoleSetStmt(s) => {
            add(
                ObjectKind::Role,
                s.role.as_ref().map(role_name).into_iter().collect(),
            );
            if !s.database.is_empty() {
                add(ObjectKind::Database, vec![s.database.clone()]);
            }
            K::Alter
        }
        N::AlterFunctionStmt(s) => {
            add(
                ObjectKind::Function,
                s.func
                    .as_ref()
                    .map(|f| strings(&f.objname))
                    .unwrap_or_default(),
            );
            K::Alter
        }
        N::AlterExtensionStmt(s) => {
            add(ObjectKind::Extension, vec![s.extname.clone()]);
            K::Alter
        }
        N::AlterEnumStmt(s) => {
            add(ObjectKind::Type, strings(&s.type_name));
            K::Alter
        }
        N::AlterDomainStmt(s) => {
            add(ObjectKind::Type, strings(&s.type_name));
            K::Alter
        }
        N::RenameStmt(s) => {
            let kind = object_kind(s.rename_type);
            match s.object.as_deref() {
                Some(o) => add(kind, names(o)),
                None if s.relation.is_none() => add(kind, vec![s.subname.clone()]),
                None => {}
            }
            // The new name is created, in the renamed object's schema.
            let schema = s
                .relation
                .as_ref()
                .map(|r| r.schemaname.clone())
                .unwrap_or_default();
            add(kind, vec![schema, s.newname.clone()]);
            K::Alter
        }
        N::AlterObjectSchemaStmt(s) => {
            if let Some(o) = s.object.as_deref() {
                add(object_kind(s.object_type), names(o));
            }
            add(ObjectKind::Schema, vec![s.newschema.clone()]);
            K::Alter
        }
        N::AlterOwnerStmt(s) => {
            if let Some(o) = s.object.as_deref() {
                add(object_kind(s.object_type), names(o));
            }
            add(
                ObjectKind::Role,
                s.newowner.as_ref().map(role_name).into_iter().collect(),
            );
            K::Alter
        }
        N::CommentStmt(s) => {
            if let Some(o) = s
                .object
                .as_deref()
                .filter(|o| !matches!(o.node, Some(N::RangeVar(_))))
            {
                add(object_kind(s.objtype), names(o));
            }
            K::Alter
        }
        N::SecLabelStmt(_) => K::Alter,
        N::ReassignOwnedStmt(s) => {
            s.roles.iter().for_each(|r| add(ObjectKind::Role, names(r)));
            add(
                ObjectKind::Role,
                s.newrole.as_ref().map(role_name).into_iter().collect(),
            );
            K::Alter
        }
        _ => return false,
    };
    c.kind = kind;
    true
}

fn grant(s: &pg_query::protobuf::GrantStmt, add: &mut impl FnMut(ObjectKind, Vec<String>)) {
    // ACL_TARGET_ALL_IN_SCHEMA (2): `objects` are schema names.
    let kind = if s.targtype == 2 {
        ObjectKind::Schema
    } else {
        object_kind(s.objtype)
    };
    for o in &s.objects {
        // Tables are RangeVars, which the walk reports.
        if !matches!(o.node, Some(N::RangeVar(_))) {
            add(kind, names(o));
        }
    }
    s.grantees
        .iter()
        .for_each(|r| add(ObjectKind::Role, names(r)));
}

fn push(c: &mut Classification, kind: ObjectKind, mut parts: Vec<String>) {
    parts.retain(|p| !p.is_empty());
    let Some(name) = parts.pop() else { return };
    let schema =
        if kind == ObjectKind::Relation || kind == ObjectKind::Function || kind == ObjectKind::Type
        {
            parts.pop()
        } else {
            None
        };
    c.objects.push(ObjectRef {
        kind,
        schema,
        name,
        access: Access::Write,
    });
}

/// The dotted name parts of a name-carrying node.
fn names(node: &Node) -> Vec<String> {
    match &node.node {
        Some(N::String(s)) => vec![s.sval.clone()],
        Some(N::List(l)) => strings(&l.items),
        Some(N::ObjectWithArgs(o)) => strings(&o.objname),
        Some(N::TypeName(t)) => strings(&t.names),
        Some(N::RangeVar(r)) => vec![r.schemaname.clone(), r.relname.clone()],
        Some(N::RoleSpec(r)) => vec![role_name(r)],
        Some(N::AccessPriv(p)) => vec![p.priv_name.clone()],
        _ => Vec::new(),
    }
}

fn strings(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| match &n.node {
            Some(N::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

/// A role name; CURRENT_USER, SESSION_USER, CURRENT_ROLE and PUBLIC have no
/// `rolename`, so they are reported by keyword.
fn role_name(r: &pg_query::protobuf::RoleSpec) -> String {
    match r.roletype {
        2 => "current_role".into(),
        3 => "current_user".into(),
        4 => "session_user".into(),
        5 => "public".into(),
        _ => r.rolename.clone(),
    }
}

fn object_kind(t: i32) -> ObjectKind {
    match OT::try_from(t) {
        Ok(
            OT::ObjectTable
            | OT::ObjectView
            | OT::ObjectMatview
            | OT::ObjectIndex
            | OT::ObjectSequence,
        )
        | Ok(OT::ObjectForeignTable) => ObjectKind::Relation,
        Ok(OT::ObjectSchema) => ObjectKind::Schema,
        Ok(OT::ObjectDatabase) => ObjectKind::Database,
        Ok(OT::ObjectRole) => ObjectKind::Role,
        Ok(OT::ObjectFunction | OT::ObjectProcedure | OT::ObjectRoutine | OT::ObjectAggregate) => {
            ObjectKind::Function
        }
        Ok(OT::ObjectType | OT::ObjectDomain) => ObjectKind::Type,
        Ok(OT::ObjectExtension) => ObjectKind::Extension,
        Ok(OT::ObjectTablespace) => ObjectKind::Tablespace,
        _ => ObjectKind::Other,
    }
}

/// A DefElem option's boolean value: absent means true (`EXPLAIN (ANALYZE)`).
pub(super) fn def_bool(arg: Option<&Node>) -> bool {
    match arg.and_then(|a| a.node.as_ref()) {
        None => true,
        Some(N::Boolean(b)) => b.boolval,
        Some(N::String(s)) => !matches!(
            s.sval.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "0"
        ),
        Some(N::Integer(i)) => i.ival != 0,
        Some(_) => true,
    }
}

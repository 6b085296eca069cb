//! Classification tests on real statements, tricky ones included.
mod catalog;
mod queries;
mod template;
mod tiers;

use super::{Access, Classification, ObjectKind, StatementKind as K, classify};

pub(super) fn one(sql: &str) -> Classification {
    let mut all = classify(sql);
    assert_eq!(all.len(), 1, "{sql}: {all:#?}");
    all.pop().unwrap()
}

/// Objects as compact strings: `kind:access:schema.name`, sorted.
pub(super) fn objs(c: &Classification) -> Vec<String> {
    let mut v: Vec<String> = c
        .objects
        .iter()
        .map(|o| {
            let kind = match o.kind {
                ObjectKind::Relation => "rel",
                ObjectKind::Schema => "schema",
                ObjectKind::Database => "db",
                ObjectKind::Role => "role",
                ObjectKind::Function => "fn",
                ObjectKind::Type => "type",
                ObjectKind::Extension => "ext",
                ObjectKind::Tablespace => "tblspc",
                ObjectKind::Setting => "setting",
                ObjectKind::Channel => "channel",
                ObjectKind::Other => "other",
            };
            let access = if o.access == Access::Write { "w" } else { "r" };
            match &o.schema {
                Some(s) => format!("{kind}:{access}:{s}.{}", o.name),
                None => format!("{kind}:{access}:{}", o.name),
            }
        })
        .collect();
    v.sort();
    v
}

#[track_caller]
pub(super) fn check(sql: &str, kind: K, objects: &[&str]) -> Classification {
    let c = one(sql);
    assert_eq!(c.kind, kind, "{sql}");
    assert_eq!(objs(&c), objects, "{sql}");
    c
}

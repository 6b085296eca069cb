//! `hoopctl policy explain`: the decision for one input, the rule that made it, and for every
//! rule before it which conditions did not hold. Slow path: allocates freely.

use std::fmt;

use super::{
    engine::{Action, Decision, Input, KindSet, Policy, Rule, STATEMENT_KINDS, Tri},
    glob::Patterns,
    when::{Conditions, Field, ObjectCond, Scratch, identity_kind_bit},
};
use crate::identity::IdentityKind;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {
    pub origin: String,
    pub decision: Decision,
    /// The deciding rule (the fallback has `index` `None` and `line` 0).
    pub rule: RuleTrace,
    /// The rules before it, none of which matched.
    pub not_matched: Vec<RuleTrace>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleTrace {
    /// 1-based position in the file.
    pub index: Option<usize>,
    pub name: String,
    pub line: usize,
    pub action: Action,
    /// Every condition of the rule with its outcome.
    pub conditions: Vec<ConditionTrace>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ConditionTrace {
    /// `target`, `statements`, `identity.repository`, `objects`, …
    pub condition: String,
    pub outcome: Tri,
    /// What the input had.
    pub value: String,
    /// What the rule asks for.
    pub wants: String,
}

impl Policy {
    /// Explains the decision [`Policy::decide`] makes for `input`.
    pub fn explain(&self, input: &Input<'_>) -> Explanation {
        let deciding = self.deciding_rule(input);
        let mut not_matched = Vec::new();
        let mut rule = None;
        for (i, r) in self.rules.iter().enumerate() {
            let t = trace(r, Some(i + 1), input);
            if std::ptr::eq(r, deciding) {
                rule = Some(t);
                break;
            }
            not_matched.push(t);
        }
        Explanation {
            origin: self.origin.to_string(),
            decision: deciding.decision(),
            rule: rule.unwrap_or_else(|| trace(&self.fallback, None, input)),
            not_matched,
        }
    }
}

fn trace(r: &Rule, index: Option<usize>, input: &Input<'_>) -> RuleTrace {
    let mut conditions = Vec::new();
    let mut scratch = Scratch::new();
    r.when.each(
        input,
        r.action.restrictive(),
        &mut scratch,
        |field, outcome| {
            let (value, wants) = describe(&r.when, field, input, r.action.restrictive());
            conditions.push(ConditionTrace {
                condition: field_name(field),
                outcome,
                value,
                wants,
            });
            true
        },
    );
    RuleTrace {
        index,
        name: r.name.to_string(),
        line: r.line,
        action: r.action,
        conditions,
    }
}

fn field_name(f: Field<'_>) -> String {
    match f {
        Field::Protocol => "protocol".into(),
        Field::Statements => "statements".into(),
        Field::Inner => "inner".into(),
        Field::HasWhere => "has_where".into(),
        Field::IdentityKind => "identity.kind".into(),
        Field::Uid => "uid".into(),
        Field::Target => "target".into(),
        Field::Database => "database".into(),
        Field::User => "user".into(),
        Field::Identity(k) => format!("identity.{k}"),
        Field::Exe => "exe".into(),
        Field::Objects => "objects".into(),
    }
}

fn kinds(set: KindSet) -> String {
    let names: Vec<&str> = STATEMENT_KINDS
        .iter()
        .enumerate()
        .filter(|(i, _)| set & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    names.join(" ")
}

fn pats(p: Option<&Patterns>) -> String {
    p.map_or_else(String::new, |p| p.sources().join(" | "))
}

fn opt(v: Option<&str>) -> String {
    v.map_or_else(|| "(none)".into(), |v| format!("{v:?}"))
}

/// (what the input had, what the rule wants) for one condition.
fn describe(w: &Conditions, f: Field<'_>, i: &Input<'_>, restrictive: bool) -> (String, String) {
    match f {
        Field::Protocol => (
            i.protocol.into(),
            w.protocols.as_deref().unwrap_or_default().join(" | "),
        ),
        Field::Statements => (i.kind.into(), kinds(w.statements.unwrap_or_default())),
        Field::Inner => (
            i.inner.unwrap_or("(none)").into(),
            kinds(w.inner.unwrap_or_default()),
        ),
        Field::HasWhere => (
            i.has_where
                .map_or("(not update/delete)".into(), |b| b.to_string()),
            w.has_where.unwrap_or_default().to_string(),
        ),
        Field::IdentityKind => {
            let bits = w.identity_kinds.unwrap_or_default();
            let wants: Vec<&str> = [
                IdentityKind::Oidc,
                IdentityKind::Named,
                IdentityKind::Anonymous,
            ]
            .into_iter()
            .filter(|k| bits & identity_kind_bit(*k) != 0)
            .map(IdentityKind::as_str)
            .collect();
            (i.identity.kind.as_str().into(), wants.join(" | "))
        }
        Field::Uid => (
            i.uid.to_string(),
            w.uids
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" | "),
        ),
        Field::Target => (format!("{:?}", i.target), pats(w.target.as_ref())),
        Field::Database => (opt(i.database), pats(w.database.as_ref())),
        Field::User => (opt(i.user), pats(w.user.as_ref())),
        Field::Identity(k) => {
            let p = w
                .identity
                .iter()
                .find(|c| *c.name == *k)
                .map(|c| &c.patterns);
            (opt(i.identity.get(k).as_deref()), pats(p))
        }
        Field::Exe => (
            i.exe
                .map_or("(unknown: process facts not trusted)".into(), |e| {
                    format!("{e:?}")
                }),
            pats(w.exe.as_ref()),
        ),
        Field::Objects => describe_objects(w.objects.as_ref(), i, restrictive),
    }
}

fn describe_objects(o: Option<&ObjectCond>, i: &Input<'_>, restrictive: bool) -> (String, String) {
    let Some(o) = o else {
        return (String::new(), String::new());
    };
    let value: Vec<String> = i
        .objects
        .iter()
        .map(|obj| {
            let name = match obj.schema {
                Some(s) => format!("{s}.{}", obj.name),
                None => obj.name.to_string(),
            };
            let rw = if obj.write { "write" } else { "read" };
            let verdict = if !o.in_scope(obj) {
                "out of scope".to_string()
            } else {
                format!("{:?}", o.matches(obj)).to_lowercase()
            };
            format!("{} {name} ({rw}): {verdict}", obj.kind)
        })
        .collect();
    let mut wants = String::from(if restrictive {
        "any "
    } else {
        "every (at least one) "
    });
    wants.push_str(match o.write {
        Some(true) => "written ",
        Some(false) => "read ",
        None => "",
    });
    if let Some(k) = &o.kinds {
        wants.push_str(&k.join("/"));
        wants.push(' ');
    }
    wants.push_str("object");
    if !o.patterns.is_empty() {
        let p: Vec<&str> = o.patterns.iter().map(|p| &*p.source).collect();
        wants.push_str(" matching ");
        wants.push_str(&p.join(" | "));
    }
    let value = if value.is_empty() {
        "(no objects)".into()
    } else {
        value.join("; ")
    };
    (value, wants)
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decision;
        writeln!(f, "decision: {}", d.action.as_str())?;
        match self.rule.index {
            Some(i) => writeln!(
                f,
                "rule:     {} (#{i}, {}:{})",
                d.rule, self.origin, self.rule.line
            )?,
            None => writeln!(f, "rule:     {} (no rule matched; {})", d.rule, self.origin)?,
        }
        writeln!(f, "mask:     {}", d.mask.as_deref().unwrap_or("none"))?;
        if let Some(m) = &d.message {
            writeln!(f, "message:  {m}")?;
        }
        write_conditions(f, &self.rule)?;
        if !self.not_matched.is_empty() {
            writeln!(f, "earlier rules that did not match:")?;
            for r in &self.not_matched {
                writeln!(
                    f,
                    "  #{} {} ({}, line {}):",
                    r.index.unwrap_or(0),
                    r.name,
                    r.action.as_str(),
                    r.line
                )?;
                let need = if r.action.restrictive() {
                    Tri::Maybe
                } else {
                    Tri::Yes
                };
                for c in r.conditions.iter().filter(|c| c.outcome < need) {
                    write!(f, "  ")?;
                    write_condition(f, c)?;
                }
            }
        }
        Ok(())
    }
}

fn write_conditions(f: &mut fmt::Formatter<'_>, r: &RuleTrace) -> fmt::Result {
    if r.conditions.is_empty() {
        return writeln!(f, "          (no conditions)");
    }
    for c in &r.conditions {
        write_condition(f, c)?;
    }
    Ok(())
}

fn write_condition(f: &mut fmt::Formatter<'_>, c: &ConditionTrace) -> fmt::Result {
    let o = format!("{:?}", c.outcome).to_lowercase();
    writeln!(
        f,
        "  {}: {} — wants {} ({o})",
        c.condition, c.value, c.wants
    )
}

//! A rule's conditions and their evaluation: each condition answers yes, no or maybe ([`Tri`]),
//! cheapest first; outcomes of pattern lists several rules share, and identity values, are
//! computed once per decision in a [`Scratch`] on the stack.

use std::borrow::Cow;

use crate::identity::{Identity, IdentityKind};

use super::{
    engine::{Input, KindSet, Object, Tri, kind_bit},
    glob::Patterns,
};

/// A rule's conditions; absent ones always hold.
#[derive(Debug, Default)]
pub(super) struct Conditions {
    pub protocols: Option<Box<[Box<str>]>>,
    pub statements: Option<KindSet>,
    pub inner: Option<KindSet>,
    pub has_where: Option<bool>,
    /// Bits by `IdentityKind` (oidc 1, named 2, anonymous 4).
    pub identity_kinds: Option<u8>,
    pub uids: Option<Box<[u32]>>,
    pub target: Option<Patterns>,
    pub database: Option<Patterns>,
    pub user: Option<Patterns>,
    /// By name as `Identity::get` takes it.
    pub identity: Box<[IdentityCond]>,
    pub exe: Option<Patterns>,
    pub objects: Option<ObjectCond>,
}

#[derive(Debug)]
pub(super) struct IdentityCond {
    pub name: Box<str>,
    /// Index in the policy's table of identity names, for [`Scratch`]'s value cache.
    pub key: usize,
    pub patterns: Patterns,
}

/// Pattern lists shared by several rules, per field, get a slot: their outcome is computed once
/// per decision. Beyond this many, lists are evaluated per rule.
pub(super) const MEMO_SLOTS: usize = 256;
/// Identity values looked up once per decision, for this many distinct names.
pub(super) const ID_KEYS: usize = 16;

/// Per-decision scratch on the stack: memoized outcomes and looked-up identity values.
pub(super) struct Scratch<'i> {
    /// 0: not yet computed; else `Tri as u8 + 1`.
    memo: [u8; MEMO_SLOTS],
    ids: [Option<Option<Cow<'i, str>>>; ID_KEYS],
}

impl<'i> Scratch<'i> {
    pub(super) fn new() -> Self {
        Self {
            memo: [0; MEMO_SLOTS],
            ids: [const { None }; ID_KEYS],
        }
    }
}

/// `Identity::get(name)`, looked up once per decision for the first `ID_KEYS` names.
fn identity_value<'s, 'i>(
    ids: &'s mut [Option<Option<Cow<'i, str>>>; ID_KEYS],
    identity: &'i Identity,
    c: &IdentityCond,
) -> Option<Cow<'s, str>> {
    match ids.get_mut(c.key) {
        Some(slot) => slot
            .get_or_insert_with(|| identity.get(&c.name))
            .as_deref()
            .map(Cow::Borrowed),
        None => identity.get(&c.name),
    }
}

/// `patterns` against `value` (`absent` when there is none), through its memo slot if it has one.
fn memo_match(p: &Patterns, value: Option<&str>, absent: Tri, memo: &mut [u8; MEMO_SLOTS]) -> Tri {
    let slot = p.slot.map(usize::from);
    if let Some(m) = slot.and_then(|s| memo.get(s)).copied().filter(|&m| m != 0) {
        return [Tri::No, Tri::Maybe, Tri::Yes][usize::from(m - 1)];
    }
    let t = value.map_or(absent, |v| p.matches(v));
    if let Some(m) = slot.and_then(|s| memo.get_mut(s)) {
        *m = t as u8 + 1;
    }
    t
}

#[derive(Debug)]
pub(super) struct ObjectCond {
    /// Empty: any name (only `access`/`object_kinds` were given).
    pub patterns: Box<[ObjectPattern]>,
    /// `Some(true)`: written objects only; `Some(false)`: read only.
    pub write: Option<bool>,
    pub kinds: Option<Box<[Box<str>]>>,
}

#[derive(Debug)]
pub(super) struct ObjectPattern {
    /// As written.
    pub source: Box<str>,
    /// The part before the first `.`, if the pattern has one.
    pub schema: Option<Patterns>,
    pub name: Patterns,
}

/// Which condition, for `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field<'r> {
    Protocol,
    Statements,
    Inner,
    HasWhere,
    IdentityKind,
    Uid,
    Target,
    Database,
    User,
    Identity(&'r str),
    Exe,
    Objects,
}

pub(super) fn identity_kind_bit(k: IdentityKind) -> u8 {
    match k {
        IdentityKind::Oidc => 1,
        IdentityKind::Named => 2,
        IdentityKind::Anonymous => 4,
    }
}

impl Conditions {
    /// Evaluates the present conditions, cheapest first, handing each outcome to `f` until it
    /// returns `false`. `restrictive` selects the object quantifier (any vs every).
    pub(super) fn each<'r, 'i>(
        &'r self,
        input: &Input<'i>,
        restrictive: bool,
        s: &mut Scratch<'i>,
        mut f: impl FnMut(Field<'r>, Tri) -> bool,
    ) {
        macro_rules! step {
            ($field:expr, $outcome:expr) => {
                if !f($field, $outcome) {
                    return;
                }
            };
        }
        if let Some(p) = &self.protocols {
            step!(
                Field::Protocol,
                Tri::of(p.iter().any(|p| **p == *input.protocol))
            );
        }
        if let Some(k) = self.statements {
            step!(Field::Statements, Tri::of(k & kind_bit(input.kind) != 0));
        }
        if let Some(k) = self.inner {
            let hit = input.inner.is_some_and(|i| k & kind_bit(i) != 0);
            step!(Field::Inner, Tri::of(hit));
        }
        if let Some(w) = self.has_where {
            step!(Field::HasWhere, Tri::of(input.has_where == Some(w)));
        }
        if let Some(k) = self.identity_kinds {
            let hit = k & identity_kind_bit(input.identity.kind) != 0;
            step!(Field::IdentityKind, Tri::of(hit));
        }
        if let Some(u) = &self.uids {
            step!(Field::Uid, Tri::of(u.contains(&input.uid)));
        }
        let memo = &mut s.memo;
        if let Some(p) = &self.target {
            step!(
                Field::Target,
                memo_match(p, Some(input.target), Tri::No, memo)
            );
        }
        if let Some(p) = &self.database {
            step!(
                Field::Database,
                memo_match(p, input.database, Tri::No, memo)
            );
        }
        if let Some(p) = &self.user {
            step!(Field::User, memo_match(p, input.user, Tri::No, memo));
        }
        for c in self.identity.iter() {
            let v = identity_value(&mut s.ids, input.identity, c);
            let t = memo_match(&c.patterns, v.as_deref(), Tri::No, &mut s.memo);
            step!(Field::Identity(&c.name), t);
        }
        if let Some(p) = &self.exe {
            // Unknown executable: the rule cannot tell, so it may apply.
            step!(
                Field::Exe,
                memo_match(p, input.exe, Tri::Maybe, &mut s.memo)
            );
        }
        if let Some(o) = &self.objects {
            step!(Field::Objects, o.eval(input.objects, restrictive));
        }
    }
}

impl ObjectCond {
    pub(super) fn in_scope(&self, o: &Object<'_>) -> bool {
        self.write.is_none_or(|w| w == o.write)
            && self
                .kinds
                .as_ref()
                .is_none_or(|k| k.iter().any(|k| **k == *o.kind))
    }

    /// Restrictive rules: the best match over objects in scope (any). Allow rules: the worst,
    /// and `No` when nothing is in scope (every, and at least one).
    pub(super) fn eval(&self, objects: &[Object<'_>], restrictive: bool) -> Tri {
        let mut scoped = objects.iter().filter(|o| self.in_scope(o));
        if restrictive {
            let mut best = Tri::No;
            for o in scoped {
                best = best.max(self.matches(o));
                if best == Tri::Yes {
                    break;
                }
            }
            best
        } else {
            let mut worst = None::<Tri>;
            for o in scoped.by_ref() {
                let t = self.matches(o);
                worst = Some(worst.map_or(t, |w| w.min(t)));
                if t == Tri::No {
                    break;
                }
            }
            worst.unwrap_or(Tri::No)
        }
    }

    /// How well one object matches the best of the patterns.
    pub(super) fn matches(&self, o: &Object<'_>) -> Tri {
        if self.patterns.is_empty() {
            return Tri::Yes;
        }
        let mut best = Tri::No;
        for p in self.patterns.iter() {
            best = best.max(p.matches(o));
            if best == Tri::Yes {
                break;
            }
        }
        best
    }
}

impl ObjectPattern {
    fn matches(&self, o: &Object<'_>) -> Tri {
        let name = self.name.matches(o.name);
        let schema = match (&self.schema, o.schema) {
            (None, _) => Tri::Yes,
            (Some(p), Some(s)) => p.matches(s),
            // Unqualified: in whichever schema search_path finds first.
            (Some(p), None) if p.matches_everything() => Tri::Yes,
            (Some(_), None) => Tri::Maybe,
        };
        name.min(schema)
    }
}

//! Load-time checks beyond syntax: rules that can never match (their own conditions contradict
//! each other, or an earlier rule always decides first), and warnings for likely mistakes.

use std::ops::Range;

use super::{
    engine::{KindSet, Rule, kind_bit},
    file::Ctx,
    glob::Patterns,
    when::{ObjectCond, identity_kind_bit},
};
use crate::identity::IdentityKind;

/// Kinds whose classification carries `inner`.
const WRAPPERS: [&str; 5] = ["prepare", "execute", "explain", "create", "cursor"];

/// Kinds whose classification never carries `has_where` (a data-modifying CTE makes the whole
/// statement that DML kind; these cannot contain an UPDATE or DELETE).
const NO_WHERE: [&str; 17] = [
    "select",
    "insert",
    "transaction",
    "set",
    "show",
    "reset",
    "listen",
    "notify",
    "unlisten",
    "deallocate",
    "truncate",
    "drop",
    "grant",
    "revoke",
    "vacuum",
    "analyze",
    "lock",
];

/// Identity names with a meaning hoop knows: the provider-neutral attributes, the identity's
/// own fields, and well-known raw claims of the CI providers.
const KNOWN_IDENTITY_NAMES: &[&str] = &[
    "provider",
    "issuer",
    "iss",
    "subject",
    "sub",
    "repository",
    "ref",
    "workflow",
    "job_workflow_ref",
    "run_id",
    "actor",
    "environment",
    "pipeline",
    "service_connection",
    "namespace",
    "service_account",
    "aud",
    "repository_owner",
    "repository_id",
    "repository_owner_id",
    "repository_visibility",
    "ref_type",
    "ref_protected",
    "sha",
    "event_name",
    "run_number",
    "run_attempt",
    "runner_environment",
    "workflow_ref",
    "workflow_sha",
    "job_workflow_sha",
    "head_ref",
    "base_ref",
    "actor_id",
];

fn set_of(names: &[&str]) -> KindSet {
    names.iter().fold(0, |s, n| s | kind_bit(n))
}

/// Errors for a rule that cannot match: by itself, or because an earlier rule always does first.
pub(super) fn never_matches(cx: &mut Ctx<'_>, earlier: &[Rule], rule: &Rule, span: Range<usize>) {
    let w = &rule.when;
    let anonymous = identity_kind_bit(IdentityKind::Anonymous);
    if w.identity_kinds == Some(anonymous) && !w.identity.is_empty() {
        cx.error(
            span.clone(),
            "can never match: anonymous identities have no attributes or claims",
        );
    }
    if let (Some(s), Some(_)) = (w.statements, w.inner)
        && s & set_of(&WRAPPERS) == 0
    {
        cx.error(
            span.clone(),
            format!(
                "can never match: `inner` is set only for {}, none of which is in `statements`",
                WRAPPERS.join(" ")
            ),
        );
    }
    if let (Some(s), Some(_)) = (w.statements, w.has_where)
        && s & !set_of(&NO_WHERE) == 0
    {
        cx.error(
            span.clone(),
            "can never match: `has_where` is set only for statements containing UPDATE or DELETE, \
             and none of `statements` can",
        );
    }
    if let Some(first) = earlier.iter().find(|e| covers(e, rule)) {
        cx.error(
            span,
            format!(
                "can never match: rule `{}` (line {}) comes first and matches everything this rule \
                 matches (first match decides)",
                first.name, first.line
            ),
        );
    }
}

/// Whether `a` matches every input `b` matches, as far as the rules' text tells (sound, not
/// complete: `false` when unsure).
pub(super) fn covers(a: &Rule, b: &Rule) -> bool {
    let (x, y) = (&a.when, &b.when);
    // An allow rule does not match on doubt where a restrictive one does.
    if !a.action.restrictive() && b.action.restrictive() && (x.exe.is_some() || x.objects.is_some())
    {
        return false;
    }
    let subset = |p: &KindSet, q: &KindSet| q & !p == 0;
    opt(&x.protocols, &y.protocols, |p, q| {
        q.iter().all(|v| p.contains(v))
    }) && opt(&x.statements, &y.statements, subset)
        && opt(&x.inner, &y.inner, subset)
        && opt(&x.has_where, &y.has_where, |p, q| p == q)
        && opt(&x.identity_kinds, &y.identity_kinds, |p, q| q & !p == 0)
        && opt(&x.uids, &y.uids, |p, q| q.iter().all(|v| p.contains(v)))
        && opt(&x.target, &y.target, Patterns::covers)
        && opt(&x.database, &y.database, Patterns::covers)
        && opt(&x.user, &y.user, Patterns::covers)
        && opt(&x.exe, &y.exe, Patterns::covers)
        && x.identity.iter().all(|p| {
            y.identity
                .iter()
                .any(|q| p.name == q.name && p.patterns.covers(&q.patterns))
        })
        && opt(&x.objects, &y.objects, objects_cover)
}

fn opt<T>(a: &Option<T>, b: &Option<T>, f: impl Fn(&T, &T) -> bool) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(p), Some(q)) => f(p, q),
    }
}

/// Same scope (access and kinds), and `a`'s name patterns include all of `b`'s (or `a` has none).
fn objects_cover(a: &ObjectCond, b: &ObjectCond) -> bool {
    let same_kinds = match (&a.kinds, &b.kinds) {
        (None, None) => true,
        (Some(p), Some(q)) => p.len() == q.len() && q.iter().all(|k| p.contains(k)),
        _ => false,
    };
    a.write == b.write
        && same_kinds
        && (a.patterns.is_empty()
            || (!b.patterns.is_empty()
                && b.patterns
                    .iter()
                    .all(|q| a.patterns.iter().any(|p| p.source == q.source))))
}

/// Valid but likely mistakes.
pub(super) fn warnings(origin: &str, rules: &[Rule]) -> Vec<String> {
    let mut out = Vec::new();
    for r in rules {
        for k in r.when.identity.iter().map(|c| &c.name) {
            if !KNOWN_IDENTITY_NAMES.contains(&&**k) {
                out.push(format!(
                    "{origin}:{}: rule `{}`: identity.{k} is not an attribute hoop fills; it \
                     matches only a raw token claim named `{k}`",
                    r.line, r.name
                ));
            }
        }
        for p in r.when.objects.iter().flat_map(|o| o.patterns.iter()) {
            if p.source.chars().any(|c| c.is_ascii_uppercase()) {
                out.push(format!(
                    "{origin}:{}: rule `{}`: object pattern `{}` has upper-case letters; \
                     PostgreSQL folds unquoted names to lower case, so it matches only quoted \
                     identifiers",
                    r.line, r.name, p.source
                ));
            }
        }
    }
    out
}

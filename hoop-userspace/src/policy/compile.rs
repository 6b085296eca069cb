//! Compiles a parsed policy file into rules: names, masks, conditions (statement kinds to bit
//! sets, globs checked), then the shared-work tables the decision uses.

use std::{collections::BTreeMap, ops::Range, sync::Arc};

use toml::Spanned;

use super::{
    check,
    engine::{Action, KindSet, OBJECT_KINDS, PROTOCOLS, Policy, Rule, STATEMENT_KINDS, kind_index},
    file::{Access, BUILTIN_MASKS, Ctx, List, Opt, RawDefaults, RawPolicy, RawRule},
    glob::Patterns,
    when::{Conditions, IdentityCond, MEMO_SLOTS, ObjectCond, ObjectPattern, identity_kind_bit},
};
use crate::identity::IdentityKind;

pub(super) fn compile(cx: &mut Ctx<'_>, raw: RawPolicy) -> Policy {
    let mut masks: BTreeMap<String, Option<Arc<str>>> = BUILTIN_MASKS
        .iter()
        .map(|m| (m.to_string(), (*m != "none").then(|| Arc::from(*m))))
        .collect();
    let mut mask_profiles = BTreeMap::new();
    for (name, table) in raw.mask_profiles {
        let span = name.span();
        let name = name.into_inner();
        if name == "none" {
            cx.error(
                span,
                "`none` is reserved (no masking) and cannot be declared",
            );
        } else if !valid_name(&name) {
            cx.error(span, format!("bad mask profile name `{name}`: {NAME_RULE}"));
        }
        masks.insert(name.clone(), Some(Arc::from(name.as_str())));
        mask_profiles.insert(name, table);
    }
    let defaults = raw.defaults.unwrap_or(RawDefaults {
        action: None,
        mask: None,
    });
    let default_mask = match &defaults.mask {
        Some(m) => resolve_mask(cx, &masks, m),
        None => masks["default"].clone(),
    };
    let fallback_action = defaults.action.unwrap_or(Action::Deny);
    let fallback_name: Arc<str> = format!("default:{}", fallback_action.as_str()).into();
    let fallback = Rule {
        message: deny_message(fallback_action, &fallback_name),
        name: fallback_name,
        line: 0,
        action: fallback_action,
        mask: default_mask.clone(),
        when: Conditions::default(),
    };

    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rule.len());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in raw.rule.into_iter().enumerate() {
        cx.set_rule(Some((i + 1, Some(r.name.get_ref().clone()))));
        let name_span = r.name.span();
        if let Some(line) = seen.get(r.name.get_ref()) {
            cx.error(
                name_span.clone(),
                format!("duplicate rule name (first at line {line})"),
            );
        } else {
            seen.insert(r.name.get_ref().clone(), cx.line(&name_span));
        }
        let mask = match &r.mask {
            Some(m) => resolve_mask(cx, &masks, m),
            None => default_mask.clone(),
        };
        if let Some(rule) = compile_rule(cx, r, mask) {
            check::never_matches(cx, &rules, &rule, name_span);
            rules.push(rule);
        }
    }
    cx.set_rule(None);
    let warnings = check::warnings(cx.origin, &rules);
    share(&mut rules);
    Policy {
        origin: Arc::from(cx.origin),
        rules,
        fallback,
        mask_profiles,
        warnings,
    }
}

/// Numbers the identity names rules use (for the per-decision value cache) and gives a memo
/// slot to every pattern list that several rules use on the same field.
fn share(rules: &mut [Rule]) {
    let mut keys: BTreeMap<Box<str>, usize> = BTreeMap::new();
    for c in rules.iter_mut().flat_map(|r| r.when.identity.iter_mut()) {
        let next = keys.len();
        c.key = *keys.entry(c.name.clone()).or_insert(next);
    }
    // (field, pattern list) → (rules using it, memo slot)
    type Uses = BTreeMap<(String, Vec<Box<str>>), (usize, Option<u16>)>;
    let mut uses = Uses::new();
    for pass in 0..2 {
        let mut next = 0;
        for r in rules.iter_mut() {
            let w = &mut r.when;
            let fields = [
                ("target".to_owned(), w.target.as_mut()),
                ("database".to_owned(), w.database.as_mut()),
                ("user".to_owned(), w.user.as_mut()),
                ("exe".to_owned(), w.exe.as_mut()),
            ];
            let ids = w
                .identity
                .iter_mut()
                .map(|c| (format!("identity.{}", c.name), Some(&mut c.patterns)));
            for (field, p) in fields.into_iter().chain(ids) {
                let Some(p) = p else { continue };
                let entry = uses.entry((field, p.sources().to_vec())).or_default();
                if pass == 0 {
                    entry.0 += 1;
                    continue;
                }
                if entry.0 > 1 && entry.1.is_none() && next < MEMO_SLOTS {
                    entry.1 = u16::try_from(next).ok();
                    next += 1;
                }
                p.slot = entry.1;
            }
        }
    }
}

const NAME_RULE: &str = "use 1-64 of A-Z a-z 0-9 _ . -";

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn resolve_mask(
    cx: &mut Ctx<'_>,
    masks: &BTreeMap<String, Option<Arc<str>>>,
    m: &Spanned<String>,
) -> Option<Arc<str>> {
    match masks.get(m.get_ref()) {
        Some(arc) => arc.clone(),
        None => {
            let declared: Vec<&str> = masks.keys().map(String::as_str).collect();
            cx.error(
                m.span(),
                format!(
                    "mask profile `{}` is not declared (have: {}); declare it as [mask_profiles.{}]",
                    m.get_ref(),
                    declared.join(", "),
                    m.get_ref()
                ),
            );
            None
        }
    }
}

fn deny_message(action: Action, name: &str) -> Option<Box<str>> {
    (action == Action::Deny).then(|| format!("hoop: denied by policy rule {name}").into())
}

fn compile_rule(cx: &mut Ctx<'_>, r: RawRule, mask: Option<Arc<str>>) -> Option<Rule> {
    let before = cx.problems.len();
    let name = r.name.get_ref().clone();
    let line = cx.line(&r.name.span());
    if !valid_name(&name) {
        cx.error(
            r.name.span(),
            format!("bad rule name `{name}`: {NAME_RULE}"),
        );
    }
    let action = *r.action.get_ref();
    let mut w = Conditions {
        protocols: r
            .protocol
            .map(|l| names(cx, l, "protocol", &PROTOCOLS).into()),
        statements: r.statements.map(|l| kinds(cx, l, "statements")),
        inner: r.inner.map(|l| kinds(cx, l, "inner")),
        has_where: r.has_where.map(Spanned::into_inner),
        uids: r.uid.map(|l| nonempty_values(cx, l, "uid").into()),
        target: r.target.and_then(|l| patterns(cx, l, "target")),
        database: r.database.and_then(|l| patterns(cx, l, "database")),
        user: r.user.and_then(|l| patterns(cx, l, "user")),
        exe: r.exe.and_then(|l| patterns(cx, l, "exe")),
        ..Conditions::default()
    };
    if let Some(id) = r.identity {
        identity(cx, id, &mut w);
    }
    w.objects = objects(cx, r.objects, r.access, r.object_kinds);
    let name: Arc<str> = name.into();
    (cx.problems.len() == before).then(|| Rule {
        message: deny_message(action, &name),
        name,
        line,
        action,
        mask,
        when: w,
    })
}

/// The values of `l`, with an error for an empty list.
fn nonempty<T>(cx: &mut Ctx<'_>, l: Spanned<List<T>>, key: &str) -> Vec<(T, Range<usize>)> {
    let span = l.span();
    let items: Vec<_> = l
        .into_inner()
        .0
        .into_iter()
        .map(|(v, s)| (v, s.unwrap_or_else(|| span.clone())))
        .collect();
    if items.is_empty() {
        cx.error(
            span,
            format!("`{key}` is an empty list, which never matches"),
        );
    }
    items
}

fn nonempty_values<T>(cx: &mut Ctx<'_>, l: Spanned<List<T>>, key: &str) -> Vec<T> {
    nonempty(cx, l, key).into_iter().map(|(v, _)| v).collect()
}

fn names(cx: &mut Ctx<'_>, l: Spanned<List<String>>, key: &str, known: &[&str]) -> Vec<Box<str>> {
    let mut out = Vec::new();
    for (v, span) in nonempty(cx, l, key) {
        if known.contains(&v.as_str()) {
            out.push(v.into());
        } else {
            cx.error(
                span,
                format!("unknown {key} `{v}` (known: {})", known.join(" ")),
            );
        }
    }
    out
}

fn kinds(cx: &mut Ctx<'_>, l: Spanned<List<String>>, key: &str) -> KindSet {
    let mut set = 0;
    for (v, span) in nonempty(cx, l, key) {
        match kind_index(&v) {
            Some(i) => set |= 1 << i,
            None => cx.error(
                span,
                format!(
                    "unknown statement kind `{v}` in `{key}` (known: {})",
                    STATEMENT_KINDS.join(" ")
                ),
            ),
        }
    }
    set
}

fn patterns(cx: &mut Ctx<'_>, l: Spanned<List<String>>, key: &str) -> Option<Patterns> {
    let items = nonempty(cx, l, key);
    compile_patterns(cx, &items, key)
}

fn compile_patterns(
    cx: &mut Ctx<'_>,
    items: &[(String, Range<usize>)],
    key: &str,
) -> Option<Patterns> {
    let sources: Vec<&str> = items.iter().map(|(s, _)| s.as_str()).collect();
    match Patterns::compile(&sources) {
        Ok(p) => Some(p),
        Err((i, msg)) => {
            cx.error(items[i].1.clone(), format!("`{key}`: {msg}"));
            None
        }
    }
}

fn identity(
    cx: &mut Ctx<'_>,
    table: BTreeMap<Spanned<String>, Spanned<List<String>>>,
    w: &mut Conditions,
) {
    let mut attrs = Vec::new();
    for (key, l) in table {
        let key_span = key.span();
        let key = key.into_inner();
        if key == "kind" {
            let mut bits = 0;
            for (v, span) in nonempty(cx, l, "identity.kind") {
                match v.as_str() {
                    "oidc" => bits |= identity_kind_bit(IdentityKind::Oidc),
                    "named" => bits |= identity_kind_bit(IdentityKind::Named),
                    "anonymous" => bits |= identity_kind_bit(IdentityKind::Anonymous),
                    _ => cx.error(
                        span,
                        format!("unknown identity kind `{v}` (known: oidc named anonymous)"),
                    ),
                }
            }
            w.identity_kinds = Some(bits);
        } else if key.is_empty() {
            cx.error(key_span, "empty identity attribute name");
        } else {
            let items = nonempty(cx, l, &format!("identity.{key}"));
            if let Some(patterns) = compile_patterns(cx, &items, &format!("identity.{key}")) {
                attrs.push(IdentityCond {
                    name: key.as_str().into(),
                    key: usize::MAX,
                    patterns,
                });
            }
        }
    }
    w.identity = attrs.into();
}

fn objects(
    cx: &mut Ctx<'_>,
    pats: Opt<String>,
    access: Option<Spanned<Access>>,
    kinds: Opt<String>,
) -> Option<ObjectCond> {
    if pats.is_none() && access.is_none() && kinds.is_none() {
        return None;
    }
    let mut patterns = Vec::new();
    for (src, span) in pats.map(|l| nonempty(cx, l, "objects")).unwrap_or_default() {
        match object_pattern(&src) {
            Ok(p) => patterns.push(p),
            Err(msg) => cx.error(span, format!("`objects`: {msg}")),
        }
    }
    let kinds = kinds.map(|l| names(cx, l, "object kind", &OBJECT_KINDS).into());
    Some(ObjectCond {
        patterns: patterns.into(),
        write: access.map(|a| *a.get_ref() == Access::Write),
        kinds,
    })
}

/// `schema.name` (split at the first `.` outside brackets and braces) or `name`.
fn object_pattern(src: &str) -> Result<ObjectPattern, String> {
    let mut depth = 0i32;
    let mut escaped = false;
    let mut split = None;
    for (i, c) in src.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            '.' if depth == 0 => {
                split = Some(i);
                break;
            }
            _ => {}
        }
    }
    let one = |s: &str| Patterns::compile(&[s]).map_err(|(_, m)| m);
    let (schema, name) = match split {
        Some(i) => (Some(one(&src[..i])?), one(&src[i + 1..])?),
        None => (None, one(src)?),
    };
    Ok(ObjectPattern {
        source: src.into(),
        schema,
        name,
    })
}

//! Matching, precedence, the default policy and `explain`.

use std::collections::BTreeMap;

use super::*;
use crate::identity::{Identity, IdentityKind};

fn github(attrs: &[(&str, &str)]) -> Identity {
    let mut claims = serde_json::Map::new();
    claims.insert("run_number".into(), serde_json::json!(42));
    claims.insert("ref_protected".into(), serde_json::json!(true));
    claims.insert("team".into(), serde_json::json!("platform"));
    Identity {
        kind: IdentityKind::Oidc,
        provider: Some("github".into()),
        issuer: Some("https://token.actions.githubusercontent.com".into()),
        subject: Some("repo:acme/api:ref:refs/heads/main".into()),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        claims,
        reason: None,
    }
}

fn obj(kind: &'static str, qualified: &'static str, write: bool) -> Object<'static> {
    let (schema, name) = match qualified.split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, qualified),
    };
    Object {
        kind,
        schema,
        name,
        write,
    }
}

/// A request with owned identity and objects; `input()` borrows it.
struct Req {
    identity: Identity,
    exe: Option<&'static str>,
    uid: u32,
    target: &'static str,
    protocol: &'static str,
    database: Option<&'static str>,
    user: Option<&'static str>,
    kind: &'static str,
    inner: Option<&'static str>,
    objects: Vec<Object<'static>>,
    has_where: Option<bool>,
}

impl Req {
    fn new(kind: &'static str) -> Self {
        Req {
            identity: github(&[("repository", "acme/api"), ("ref", "refs/heads/main")]),
            exe: Some("/usr/bin/psql"),
            uid: 1000,
            target: "pg-prod",
            protocol: "postgres",
            database: Some("app"),
            user: Some("app_rw"),
            kind,
            inner: None,
            objects: Vec::new(),
            has_where: None,
        }
    }

    fn anonymous(mut self) -> Self {
        self.identity = Identity::anonymous("no token");
        self
    }

    fn objects(mut self, o: &[Object<'static>]) -> Self {
        self.objects = o.to_vec();
        self
    }

    fn input(&self) -> Input<'_> {
        Input {
            identity: &self.identity,
            exe: self.exe,
            uid: self.uid,
            target: self.target,
            protocol: self.protocol,
            database: self.database,
            user: self.user,
            kind: self.kind,
            inner: self.inner,
            objects: &self.objects,
            has_where: self.has_where,
        }
    }
}

fn policy(text: &str) -> Policy {
    Policy::parse(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// (action, rule) for `req` under `text`.
fn decide(text: &str, req: &Req) -> (Action, String) {
    let d = policy(text).decide(&req.input());
    (d.action, d.rule.to_string())
}

/// A one-rule policy (`deny` named `r`) plus fallback allow: does the condition hold?
fn denies(cond: &str, req: &Req) -> bool {
    hits("deny", cond, req)
}

fn hits(action: &str, cond: &str, req: &Req) -> bool {
    let other = if action == "allow" { "deny" } else { "allow" };
    let text = format!(
        "[defaults]\naction = \"{other}\"\n[[rule]]\nname = \"r\"\naction = \"{action}\"\n{cond}\n"
    );
    decide(&text, req).1 == "r"
}

#[test]
fn first_matching_rule_decides() {
    let allow_first = r#"
[[rule]]
name = "migrations-may-drop"
action = "allow"
statements = ["drop"]
identity = { workflow = "migrate" }
[[rule]]
name = "no-drop"
action = "deny"
statements = ["drop"]
"#;
    let mut req = Req::new("drop");
    assert_eq!(decide(allow_first, &req), (Action::Deny, "no-drop".into()));
    req.identity
        .attributes
        .insert("workflow".into(), "migrate".into());
    assert_eq!(
        decide(allow_first, &req),
        (Action::Allow, "migrations-may-drop".into())
    );
    // Same rules the other way round: the deny decides first, for everyone.
    let deny_first = r#"
[[rule]]
name = "no-drop"
action = "deny"
statements = ["drop"]
[[rule]]
name = "migrations-may-drop"
action = "allow"
statements = ["drop"]
identity = { workflow = "migrate" }
"#;
    // …and the allow could never match: that is a load error, not a silent dead rule.
    let e = Policy::parse(deny_first, "t").unwrap_err().to_string();
    assert!(
        e.contains("`migrations-may-drop`: can never match: rule `no-drop`"),
        "{e}"
    );
}

#[test]
fn fallback_is_named_and_denies_unless_configured() {
    let d = policy("").decide(&Req::new("select").input());
    assert_eq!(d.action, Action::Deny);
    assert_eq!(&*d.rule, "default:deny");
    assert_eq!(
        d.message.as_deref(),
        Some("hoop: denied by policy rule default:deny")
    );
    assert_eq!(d.mask.as_deref(), Some("default"));
    let d = policy("[defaults]\naction = \"review\"\nmask = \"none\"\n")
        .decide(&Req::new("select").input());
    assert_eq!((d.action, &*d.rule), (Action::Review, "default:review"));
    assert_eq!((d.mask, d.message), (None, None));
}

#[test]
fn decision_carries_mask_and_message() {
    let p = policy(
        r#"
[defaults]
action = "allow"
mask = "strict"
[mask_profiles.strict]
columns = ["*"]
[mask_profiles.light]
[[rule]]
name = "no-drop"
action = "deny"
statements = ["drop"]
[[rule]]
name = "reports"
action = "allow"
statements = ["select"]
mask = "light"
[[rule]]
name = "raw"
action = "allow"
statements = ["show"]
mask = "none"
"#,
    );
    let d = p.decide(&Req::new("drop").input());
    assert_eq!(
        d.message.as_deref(),
        Some("hoop: denied by policy rule no-drop")
    );
    assert_eq!(d.mask.as_deref(), Some("strict"));
    let d = p.decide(&Req::new("select").input());
    assert_eq!((d.mask.as_deref(), d.message), (Some("light"), None));
    assert_eq!(p.decide(&Req::new("show").input()).mask, None);
    assert_eq!(
        p.decide(&Req::new("insert").input()).mask.as_deref(),
        Some("strict")
    );
    assert_eq!(p.mask_profiles().len(), 2);
    assert!(p.mask_profiles()["strict"].contains_key("columns"));
}

#[test]
fn statements_inner_and_has_where() {
    assert!(denies(
        r#"statements = ["drop", "truncate"]"#,
        &Req::new("truncate")
    ));
    assert!(!denies(
        r#"statements = ["drop", "truncate"]"#,
        &Req::new("select")
    ));
    // A kind name the engine does not know is `unknown`.
    assert!(denies(
        r#"statements = ["unknown"]"#,
        &Req::new("frobnicate")
    ));
    assert!(!denies(
        r#"statements = ["select"]"#,
        &Req::new("frobnicate")
    ));

    let mut prep = Req::new("prepare");
    assert!(!denies(r#"inner = ["delete"]"#, &prep));
    prep.inner = Some("delete");
    assert!(denies(r#"inner = ["delete"]"#, &prep));
    assert!(denies(r#"statements = ["prepare"]"#, &prep));
    assert!(!denies(r#"statements = ["delete"]"#, &prep));

    let mut del = Req::new("delete");
    assert!(!denies("has_where = false", &del), "None is not false");
    del.has_where = Some(true);
    assert!(!denies("has_where = false", &del));
    assert!(denies("has_where = true", &del));
    del.has_where = Some(false);
    assert!(denies("has_where = false", &del));
}

#[test]
fn protocol_target_database_user_uid() {
    let req = Req::new("select");
    assert!(denies(r#"protocol = "postgres""#, &req));
    assert!(!denies(r#"protocol = ["tds", "https"]"#, &req));
    assert!(denies(r#"target = ["pg-*"]"#, &req));
    assert!(!denies(r#"target = "pg-staging""#, &req));
    assert!(denies(r#"database = "app""#, &req));
    assert!(!denies(r#"database = "app_*""#, &req));
    assert!(denies(r#"user = "*_rw""#, &req));
    assert!(!denies(r#"user = "postgres""#, &req));
    assert!(denies("uid = 1000", &req));
    assert!(denies("uid = [0, 1000]", &req));
    assert!(!denies("uid = [0]", &req));
    // Absent database/user (a protocol without them): the condition does not hold.
    let mut none = Req::new("select");
    none.database = None;
    none.user = None;
    assert!(!denies(r#"database = "**""#, &none));
    assert!(!denies(r#"user = "**""#, &none));
}

#[test]
fn identity_kind_attributes_and_claims() {
    let req = Req::new("select");
    assert!(denies(r#"identity = { kind = "oidc" }"#, &req));
    assert!(!denies(
        r#"identity = { kind = ["named", "anonymous"] }"#,
        &req
    ));
    assert!(denies(r#"identity = { provider = "github" }"#, &req));
    assert!(denies(
        r#"identity = { repository = "acme/*", ref = "refs/heads/main" }"#,
        &req
    ));
    assert!(!denies(
        r#"identity = { repository = "acme/*", ref = "refs/heads/dev" }"#,
        &req
    ));
    assert!(denies(
        r#"identity = { subject = "repo:acme/*:ref:refs/heads/*" }"#,
        &req
    ));
    assert!(denies(
        r#"identity = { iss = "https://token.actions.githubusercontent.com" }"#,
        &req
    ));
    // Raw claims: string, number, bool.
    assert!(denies(r#"identity = { team = "plat*" }"#, &req));
    assert!(denies(r#"identity = { run_number = "4?" }"#, &req));
    assert!(denies(r#"identity = { ref_protected = "true" }"#, &req));
    // Absent: does not match, not even `**`.
    assert!(!denies(r#"identity = { environment = "**" }"#, &req));
    let anon = Req::new("select").anonymous();
    assert!(denies(r#"identity = { kind = "anonymous" }"#, &anon));
    assert!(!denies(r#"identity = { repository = "**" }"#, &anon));
}

#[test]
fn unknown_exe_matches_restrictive_rules_only() {
    let mut req = Req::new("select");
    assert!(denies(r#"exe = "/usr/bin/psql""#, &req));
    assert!(hits("allow", r#"exe = "/usr/bin/ps*""#, &req));
    assert!(!denies(r#"exe = "/usr/bin/pg_dump""#, &req));
    req.exe = None;
    assert!(denies(r#"exe = "/usr/bin/psql""#, &req));
    assert!(hits("review", r#"exe = "/usr/bin/psql""#, &req));
    assert!(!hits("allow", r#"exe = "/usr/bin/psql""#, &req));
}

#[test]
fn objects_any_for_restrictive_every_for_allow() {
    let both = Req::new("insert").objects(&[
        obj("relation", "scratch.t", true),
        obj("relation", "public.users", true),
    ]);
    assert!(denies(r#"objects = ["public.users"]"#, &both));
    assert!(!hits("allow", r#"objects = ["scratch.*"]"#, &both));
    assert!(hits(
        "allow",
        r#"objects = ["scratch.*", "public.*"]"#,
        &both
    ));
    // Nothing in scope: an allow rule does not hold vacuously.
    let none = Req::new("select");
    assert!(!hits("allow", r#"objects = ["**"]"#, &none));
    assert!(!denies(r#"objects = ["**"]"#, &none));
}

#[test]
fn objects_access_and_kinds_scope_the_check() {
    let req = Req::new("insert").objects(&[
        obj("relation", "scratch.t", true),
        obj("relation", "public.users", false),
        obj("function", "now", false),
    ]);
    assert!(hits(
        "allow",
        r#"objects = ["scratch.*"]
access = "write""#,
        &req
    ));
    assert!(!hits("allow", r#"objects = ["scratch.*"]"#, &req));
    assert!(denies(
        r#"objects = ["public.users"]
access = "read""#,
        &req
    ));
    assert!(!denies(
        r#"objects = ["public.users"]
access = "write""#,
        &req
    ));
    assert!(hits(
        "allow",
        r#"objects = ["scratch.*", "public.*"]
object_kinds = ["relation"]"#,
        &req
    ));
    assert!(!hits(
        "allow",
        r#"objects = ["scratch.*", "public.*"]"#,
        &req
    ));
    assert!(denies(r#"object_kinds = ["function"]"#, &req));
    assert!(denies(r#"access = "write""#, &req));
    assert!(!denies(r#"object_kinds = ["schema"]"#, &req));
}

#[test]
fn unqualified_objects_are_doubtful_against_a_schema() {
    let req = Req::new("delete").objects(&[obj("relation", "users", true)]);
    // Might be public.users: restrictive rules apply, allow rules do not.
    assert!(denies(r#"objects = ["public.users"]"#, &req));
    assert!(hits("review", r#"objects = ["public.users"]"#, &req));
    assert!(!hits("allow", r#"objects = ["public.users"]"#, &req));
    // A schema part matching everything, or none at all, is certain.
    assert!(hits("allow", r#"objects = ["**.users"]"#, &req));
    assert!(hits("allow", r#"objects = ["users"]"#, &req));
    assert!(!denies(r#"objects = ["public.orders"]"#, &req));
    // Qualified elsewhere: certain no.
    let other = Req::new("delete").objects(&[obj("relation", "audit.users", true)]);
    assert!(!denies(r#"objects = ["public.users"]"#, &other));
    assert!(denies(r#"objects = ["*.users"]"#, &other));
    assert!(denies(r#"objects = ["users"]"#, &other));
}

#[test]
fn object_patterns_split_at_first_dot_outside_brackets() {
    let req = Req::new("select").objects(&[obj("relation", "a.b", false)]);
    assert!(denies(r#"objects = ["{a,x.y}.b"]"#, &req));
    assert!(denies(r#"objects = ["[a.].b"]"#, &req));
    assert!(!denies(r#"objects = ["a.c"]"#, &req));
}

fn builtin_decide(req: &Req) -> (Action, String, Option<String>) {
    let d = Policy::builtin().decide(&req.input());
    (d.action, d.rule.to_string(), d.mask.map(|m| m.to_string()))
}

#[test]
fn default_policy() {
    let def = Some("default".to_string());
    let cases: &[(Req, Action, &str)] = &[
        (
            Req::new("drop").objects(&[obj("relation", "public.users", true)]),
            Action::Deny,
            "deny-drop",
        ),
        (
            Req::new("drop").objects(&[obj("schema", "billing", true)]),
            Action::Deny,
            "deny-drop",
        ),
        (
            Req::new("drop").objects(&[obj("database", "app", true)]),
            Action::Deny,
            "deny-drop",
        ),
        (Req::new("truncate"), Action::Deny, "deny-truncate"),
        (Req::new("unknown"), Action::Review, "review-unknown"),
        (
            Req {
                has_where: Some(false),
                ..Req::new("delete")
            },
            Action::Review,
            "review-without-where",
        ),
        (
            Req {
                has_where: Some(false),
                ..Req::new("update")
            },
            Action::Review,
            "review-without-where",
        ),
        (
            Req {
                has_where: Some(true),
                ..Req::new("delete")
            },
            Action::Allow,
            "allow-rest",
        ),
        (Req::new("select"), Action::Allow, "allow-rest"),
        (Req::new("insert"), Action::Allow, "allow-rest"),
        (Req::new("create"), Action::Allow, "allow-rest"),
        // Anonymous: reads yes, the rest waits for a human; DROP still denied.
        (
            Req::new("select").anonymous(),
            Action::Allow,
            "allow-anonymous-read",
        ),
        (
            Req::new("transaction").anonymous(),
            Action::Allow,
            "allow-anonymous-read",
        ),
        (
            Req::new("set")
                .anonymous()
                .objects(&[obj("setting", "search_path", true)]),
            Action::Allow,
            "allow-anonymous-read",
        ),
        (
            Req::new("set")
                .anonymous()
                .objects(&[obj("setting", "role", true)]),
            Action::Review,
            "review-anonymous-role-change",
        ),
        (
            Req::new("insert").anonymous(),
            Action::Review,
            "review-anonymous",
        ),
        (
            Req::new("create").anonymous(),
            Action::Review,
            "review-anonymous",
        ),
        (
            Req::new("copy_to").anonymous(),
            Action::Review,
            "review-anonymous",
        ),
        (
            Req::new("do").anonymous(),
            Action::Review,
            "review-anonymous",
        ),
        (Req::new("drop").anonymous(), Action::Deny, "deny-drop"),
        (
            Req::new("unknown").anonymous(),
            Action::Review,
            "review-unknown",
        ),
    ];
    for (req, action, rule) in cases {
        let got = builtin_decide(req);
        assert_eq!(
            got,
            (*action, rule.to_string(), def.clone()),
            "{} {:?}",
            req.kind,
            req.identity.kind
        );
    }
    let p = Policy::builtin();
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    assert_eq!(p.origin(), "builtin");
    assert_eq!(p.rule_names().last(), Some("default:deny"));
}

#[test]
fn explain_names_the_deciding_rule_and_why_others_did_not_match() {
    let p = Policy::builtin();
    let req = Req::new("select").anonymous();
    let e = p.explain(&req.input());
    assert_eq!(e.decision, p.decide(&req.input()));
    assert_eq!(e.rule.name, "allow-anonymous-read");
    assert_eq!(e.rule.index, Some(6));
    let skipped: Vec<&str> = e.not_matched.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        skipped,
        [
            "deny-drop",
            "deny-truncate",
            "review-unknown",
            "review-without-where",
            "review-anonymous-role-change"
        ]
    );
    let drop = &e.not_matched[0];
    assert_eq!(drop.conditions.len(), 1);
    assert_eq!(drop.conditions[0].condition, "statements");
    assert_eq!(drop.conditions[0].outcome, Tri::No);
    assert_eq!(drop.conditions[0].value, "select");
    assert_eq!(drop.conditions[0].wants, "drop");
    let text = e.to_string();
    assert!(text.starts_with("decision: allow\n"), "{text}");
    assert!(
        text.contains("rule:     allow-anonymous-read (#6, builtin:"),
        "{text}"
    );
    assert!(
        text.contains("  identity.kind: anonymous — wants anonymous (yes)\n"),
        "{text}"
    );
    assert!(
        text.contains("    statements: select — wants drop (no)\n"),
        "{text}"
    );
    assert!(
        text.contains("#4 review-without-where (review, line"),
        "{text}"
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["decision"]["rule"], "allow-anonymous-read");
    assert_eq!(json["decision"]["action"], "allow");
    assert_eq!(json["decision"]["mask"], "default");
}

#[test]
fn explain_the_fallback_and_doubt() {
    let p = policy(
        r#"
[[rule]]
name = "allow-psql"
action = "allow"
exe = "/usr/bin/psql"
[[rule]]
name = "writes-to-users"
action = "allow"
objects = ["public.users"]
"#,
    );
    let mut req = Req::new("delete").objects(&[obj("relation", "users", true)]);
    req.exe = None;
    let e = p.explain(&req.input());
    assert_eq!(&*e.decision.rule, "default:deny");
    assert_eq!((e.rule.index, e.rule.line), (None, 0));
    assert_eq!(e.not_matched.len(), 2);
    assert_eq!(e.not_matched[0].conditions[0].outcome, Tri::Maybe);
    assert!(e.not_matched[0].conditions[0].value.contains("unknown"));
    let objects = &e.not_matched[1].conditions[0];
    assert_eq!(objects.outcome, Tri::Maybe);
    assert_eq!(objects.value, "relation users (write): maybe");
    assert_eq!(
        objects.wants,
        "every (at least one) object matching public.users"
    );
    let text = e.to_string();
    assert!(text.contains("no rule matched"), "{text}");
    assert!(
        text.contains("message:  hoop: denied by policy rule default:deny"),
        "{text}"
    );
}

#[test]
fn kind_lookup_matches_the_list() {
    for (i, k) in STATEMENT_KINDS.iter().enumerate() {
        assert_eq!(kind_index(k), Some(i as u32), "{k}");
    }
    assert_eq!(kind_index("SELECT"), None);
    assert_eq!(kind_bit("nope"), kind_bit("unknown"));
}

#[test]
fn memo_slots_are_per_field() {
    // r1 computes `target = "pg-*"` (yes) then fails; r2 has the same list on an identity
    // attribute the identity lacks: it must not reuse r1's outcome.
    let text = r#"
[[rule]]
name = "r1"
action = "deny"
target = "pg-*"
database = "nope"
[[rule]]
name = "r2"
action = "deny"
identity = { target = "pg-*" }
[[rule]]
name = "r3"
action = "allow"
target = "pg-*"
"#;
    assert_eq!(decide(text, &Req::new("select")).1, "r3");
}

#[test]
fn memo_keeps_doubt() {
    // The shared exe list is `maybe` for an unknown executable: no for the allow, yes for the deny.
    let text = r#"
[defaults]
action = "allow"
[[rule]]
name = "psql-reads"
action = "allow"
exe = "/usr/bin/psql"
statements = ["select"]
[[rule]]
name = "psql-other"
action = "deny"
exe = "/usr/bin/psql"
"#;
    let mut req = Req::new("select");
    assert_eq!(decide(text, &req).1, "psql-reads");
    req.exe = None;
    assert_eq!(decide(text, &req).1, "psql-other");
}

#[test]
fn beyond_the_memo_slots_and_identity_cache() {
    // 300 shared target lists (more than MEMO_SLOTS) and 20 identity names (more than ID_KEYS).
    let mut text = String::from("[defaults]\naction = \"deny\"\n");
    for k in 0..300 {
        for (j, db) in ["x", "y"].iter().enumerate() {
            text.push_str(&format!(
                "[[rule]]\nname = \"t{k}-{j}\"\naction = \"review\"\ntarget = \"t{k}\"\ndatabase = \"{db}\"\n"
            ));
        }
    }
    for k in 0..20 {
        text.push_str(&format!(
            "[[rule]]\nname = \"c{k}\"\naction = \"allow\"\nidentity = {{ claim{k} = \"v{k}\" }}\n"
        ));
    }
    let p = policy(&text);
    let mut req = Req::new("select");
    req.target = "t299";
    assert_eq!(&*p.decide(&req.input()).rule, "default:deny");
    req.database = Some("y");
    assert_eq!(&*p.decide(&req.input()).rule, "t299-1");
    req.target = "other";
    req.identity.claims.insert("claim19".into(), "v19".into());
    assert_eq!(&*p.decide(&req.input()).rule, "c19");
    req.identity.claims.insert("claim3".into(), "v3".into());
    assert_eq!(&*p.decide(&req.input()).rule, "c3");
}

#[test]
fn policy_is_shareable_across_workers() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Policy>();
    shareable::<Decision>();
}

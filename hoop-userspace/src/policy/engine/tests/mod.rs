//! Matching and precedence; the default policy, `explain` and the memo in their own files.

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

mod builtin;
mod explain;
mod memo;

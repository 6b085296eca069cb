//! The decision point: every request of every protocol is decided here, on its decoded and
//! classified form, never on raw bytes. Protocol sessions build a [`Request`]; the policy in
//! force ([`PolicyState`]: the rule engine of [`engine`] loaded from `[policy] file` or the
//! built-in default, plus its compiled masking profiles) returns a [`Decision`] that names the
//! rule that made it and the masking profile of the response, for the session's events and the
//! audit trail.
//!
//! Order: a target's own `deny_statements` and `review_statements` (config shorthands) come
//! first; then the policy's rules, first match wins ([`engine`] argues why).

mod check;
mod compile;
pub mod engine;
pub mod explain;
pub mod file;
mod glob;
mod when;

use std::{collections::HashMap, path::Path, sync::Arc};

pub use engine::{Action, Decision, Input, Object, Policy};
pub use file::PolicyError;

use crate::{
    classify::{Access, Classification, ObjectKind, ObjectRef},
    config::Target,
    identity::{Identity, ProcessFacts},
    mask::{Masker, ProfileSpec},
};

/// The policy in force: swapped whole on reload, so a request sees one consistent version.
pub struct PolicyState {
    pub policy: Policy,
    pub masks: Masks,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{origin}: mask_profiles.{name}: {reason}")]
    Profile {
        origin: String,
        name: String,
        reason: String,
    },
}

impl PolicyState {
    /// The built-in default policy (see `policy/default.toml`).
    pub fn builtin() -> Self {
        Self::from_policy(Policy::builtin()).expect("the built-in policy compiles")
    }

    /// `path`, or the built-in policy when `None`. Side-effect free: a bad file is an error and
    /// whatever policy is in force stays.
    pub fn load(path: Option<&Path>) -> Result<Self, LoadError> {
        match path {
            None => Ok(Self::builtin()),
            Some(p) => Self::from_policy(Policy::load(p)?),
        }
    }

    fn from_policy(policy: Policy) -> Result<Self, LoadError> {
        let masks = Masks::compile(&policy)?;
        Ok(Self { policy, masks })
    }
}

/// Compiled masking profiles by name. `default` always exists (secrets and PII, unless the
/// policy file redefines it); `none` means no masking. The audit trail always uses the built-in
/// default profile, whatever a session's own.
pub struct Masks {
    audit: Arc<Masker>,
    default: Arc<Masker>,
    profiles: HashMap<String, Arc<Masker>>,
}

impl Masks {
    pub fn builtin() -> Self {
        let d = Arc::new(Masker::default_profile());
        Self {
            audit: d.clone(),
            default: d,
            profiles: HashMap::new(),
        }
    }

    fn compile(policy: &Policy) -> Result<Self, LoadError> {
        let mut m = Self::builtin();
        for (name, table) in policy.mask_profiles() {
            let bad = |reason: String| LoadError::Profile {
                origin: policy.origin().to_string(),
                name: name.clone(),
                reason,
            };
            let spec: ProfileSpec = toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
            let masker = Arc::new(Masker::compile(&spec).map_err(|e| bad(e.to_string()))?);
            if name == "default" {
                m.default = masker.clone();
            }
            m.profiles.insert(name.clone(), masker);
        }
        Ok(m)
    }

    /// What the audit trail and logs always go through, whatever a session's profile.
    pub fn audit(&self) -> &Masker {
        &self.audit
    }

    pub fn default_profile(&self) -> &Arc<Masker> {
        &self.default
    }

    /// The profile a decision names (`None` or `"none"`: no masking).
    pub fn profile(&self, name: Option<&str>) -> Option<Arc<Masker>> {
        match name? {
            "none" => None,
            "default" => Some(self.default.clone()),
            other => Some(
                self.profiles
                    .get(other)
                    .cloned()
                    // validated at load; should a name still be unknown, mask rather than leak
                    .unwrap_or_else(|| self.default.clone()),
            ),
        }
    }
}

/// What a request asks to do, as the decision point sees it (PostgreSQL's classification).
pub struct Request<'a> {
    pub target: &'a Target,
    pub process: &'a ProcessFacts,
    pub identity: &'a Identity,
    /// Database and user for SQL protocols.
    pub database: Option<&'a str>,
    pub user: Option<&'a str>,
    pub statement: &'a Classification,
}

/// Decides one statement: the target's shorthand lists, then the policy.
pub fn decide(state: &PolicyState, req: &Request<'_>) -> Decision {
    let kind = req.statement.kind.as_str();
    // a listed kind also matches where it runs wrapped: PREPARE p AS DELETE, EXECUTE of a
    // prepared DELETE, CREATE TABLE AS SELECT
    let wrapped = req.statement.wrapped().map(|k| k.as_str());
    let t = req.target;
    let shorthand = |list: &[String], action: Action, field: &str| {
        let hit = list
            .iter()
            .find(|k| *k == kind || wrapped == Some(k.as_str()))?;
        let rule = format!("target:{}/{field}:{hit}", t.name);
        let what = if hit == kind {
            format!("{kind} statement")
        } else {
            format!("{hit} statement (in {kind})")
        };
        Some(Decision {
            action,
            message: (action == Action::Deny)
                .then(|| format!("hoop: {what} denied by rule {rule}")),
            rule: rule.into(),
            mask: Some(Arc::from("default")),
        })
    };
    if let Some(d) = shorthand(&t.deny_statements, Action::Deny, "deny_statements") {
        return d;
    }
    if let Some(d) = shorthand(&t.review_statements, Action::Review, "review_statements") {
        return d;
    }
    let objects: Vec<Object<'_>> = req.statement.objects.iter().map(object).collect();
    state.policy.decide(&input(req, &objects))
}

/// The engine's view of a request.
pub fn input<'a>(req: &Request<'a>, objects: &'a [Object<'a>]) -> Input<'a> {
    let c = req.statement;
    Input {
        identity: req.identity,
        exe: req.process.exe.as_deref(),
        uid: req.process.uid,
        target: &req.target.name,
        protocol: req.target.protocol.as_str(),
        database: req.database,
        user: req.user,
        kind: c.kind.as_str(),
        inner: c.inner.map(|k| k.as_str()),
        objects,
        has_where: c.has_where,
    }
}

/// An object as the engine sees it.
pub fn object(o: &ObjectRef) -> Object<'_> {
    Object {
        kind: object_kind(o.kind),
        schema: o.schema.as_deref(),
        name: &o.name,
        write: o.access == Access::Write,
    }
}

fn object_kind(k: ObjectKind) -> &'static str {
    match k {
        ObjectKind::Relation => "relation",
        ObjectKind::Schema => "schema",
        ObjectKind::Database => "database",
        ObjectKind::Role => "role",
        ObjectKind::Function => "function",
        ObjectKind::Type => "type",
        ObjectKind::Extension => "extension",
        ObjectKind::Tablespace => "tablespace",
        ObjectKind::Setting => "setting",
        ObjectKind::Channel => "channel",
        ObjectKind::Other => "other",
    }
}

/// The decision for a request with no statement in it (an empty query string, an Execute of a
/// portal hoopd never saw bound): nothing to run, so nothing to refuse.
pub fn nothing_to_decide() -> Decision {
    Decision {
        action: Action::Allow,
        rule: Arc::from("empty"),
        mask: Some(Arc::from("default")),
        message: None,
    }
}

/// Objects written by a statement, as `schema.name` strings (for events).
pub fn written_objects(c: &Classification) -> Vec<String> {
    c.objects_with(Access::Write).map(qualified).collect()
}

/// Objects read by a statement, as `schema.name` strings (for events).
pub fn read_objects(c: &Classification) -> Vec<String> {
    c.objects_with(Access::Read).map(qualified).collect()
}

fn qualified(o: &ObjectRef) -> String {
    match &o.schema {
        Some(s) => format!("{s}.{}", o.name),
        None => o.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ProcessFacts;

    /// The target shorthands also catch a listed kind wrapped in a statement that runs or keeps
    /// it (PREPARE, CREATE TABLE AS, DECLARE CURSOR), not in a plan-only EXPLAIN.
    #[test]
    fn shorthands_catch_wrapped_kinds() {
        let target: Target = toml::from_str(
            r#"name = "db"
protocol = "postgres"
ports = [5432]
deny_statements = ["delete"]
review_statements = ["select"]"#,
        )
        .unwrap();
        let state = PolicyState::builtin();
        let (process, identity) = (ProcessFacts::default(), Identity::anonymous("test"));
        let decide_sql = |sql: &str| {
            let c = crate::classify::classify(sql).remove(0);
            let d = decide(
                &state,
                &Request {
                    target: &target,
                    process: &process,
                    identity: &identity,
                    database: None,
                    user: None,
                    statement: &c,
                },
            );
            (d.action, d.rule.to_string(), d.message)
        };
        let (action, rule, message) = decide_sql("PREPARE p AS DELETE FROM t WHERE id = $1");
        assert_eq!(
            (action, rule.as_str()),
            (Action::Deny, "target:db/deny_statements:delete")
        );
        assert_eq!(
            message.as_deref(),
            Some(
                "hoop: delete statement (in prepare) denied by rule target:db/deny_statements:delete"
            )
        );
        assert_eq!(decide_sql("DELETE FROM t").0, Action::Deny);
        assert_eq!(
            decide_sql("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d").0,
            Action::Deny
        );
        for sql in [
            "CREATE TABLE x AS SELECT * FROM t",
            "DECLARE c CURSOR FOR SELECT 1",
            "PREPARE q AS SELECT 1",
        ] {
            assert_eq!(
                decide_sql(sql).1,
                "target:db/review_statements:select",
                "{sql}"
            );
        }
        // a plan runs nothing
        assert_eq!(
            decide_sql("EXPLAIN DELETE FROM t").1,
            "allow-anonymous-read"
        );
    }
}

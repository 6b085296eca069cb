//! The decision point: every request of every protocol is decided here, on its decoded and
//! classified form, never on raw bytes. Protocol sessions build a [`Request`]; whatever decides
//! (today the target's `deny_statements`; the policy engine next) returns a [`Decision`] that
//! names the rule that made it, for the session's events and the audit trail.

use std::{collections::HashMap, sync::Arc};

use crate::{
    classify::{Access, Classification, ObjectRef},
    config::Target,
    identity::ProcessFacts,
    mask::Masker,
};

/// The policy in force: swapped whole on reload, so a request sees one consistent version.
pub struct PolicyState {
    pub masks: Masks,
}

impl PolicyState {
    pub fn builtin() -> Self {
        Self {
            masks: Masks::builtin(),
        }
    }
}

/// Compiled masking profiles by name. `default` always exists (secrets and PII); `none` means
/// no masking.
pub struct Masks {
    default: Arc<Masker>,
    profiles: HashMap<String, Arc<Masker>>,
}

impl Masks {
    pub fn builtin() -> Self {
        Self {
            default: Arc::new(Masker::default_profile()),
            profiles: HashMap::new(),
        }
    }

    /// What the audit trail and logs always go through, whatever a session's profile.
    pub fn audit(&self) -> &Masker {
        &self.default
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

/// What a request asks to do, as the decision point sees it (protocol-neutral).
pub struct Request<'a> {
    pub target: &'a Target,
    pub process: &'a ProcessFacts,
    /// Database and user for SQL protocols.
    pub database: Option<&'a str>,
    pub user: Option<&'a str>,
    pub statement: &'a Classification,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
    /// Held for a human approver; forwarded once approved.
    Review,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Review => "review",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// The rule that decided, e.g. `target:pg/deny_statements:drop`, or `default:allow`.
    /// (Borrowed for the common case: deciding must not allocate per statement.)
    pub rule: std::borrow::Cow<'static, str>,
    /// For a denial: what the client is told (names the rule, nothing else of the policy).
    pub message: Option<String>,
}

impl Decision {
    pub fn allow_default() -> Self {
        Self {
            action: Action::Allow,
            rule: std::borrow::Cow::Borrowed("default:allow"),
            message: None,
        }
    }
}

/// Decides one statement.
pub fn decide(req: &Request<'_>) -> Decision {
    let kind = req.statement.kind.as_str();
    if req.target.deny_statements.iter().any(|k| k == kind) {
        let rule = format!("target:{}/deny_statements:{kind}", req.target.name);
        let message = format!("hoop: {kind} statement denied by rule {rule}");
        return Decision {
            action: Action::Deny,
            rule: rule.into(),
            message: Some(message),
        };
    }
    if req.target.review_statements.iter().any(|k| k == kind) {
        let rule = format!("target:{}/review_statements:{kind}", req.target.name);
        return Decision {
            action: Action::Review,
            rule: rule.into(),
            message: None,
        };
    }
    Decision::allow_default()
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

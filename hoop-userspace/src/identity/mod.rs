//! Who opened a connection: the calling process as the kernel recorded it, checked against /proc
//! ([`ProcessFacts`]), and the workload identity derived from it ([`Identity`]): the CI job's
//! validated OIDC token, a fixed identity mapped from the caller's cgroup, or `Anonymous` with
//! the reason none could be established.
//!
//! Resolution ([`Resolver`]): `source` finds the token source from the verified process chain
//! (`lineage`) or a cgroup mapping; a token is requested over `http` or read from a file;
//! `validate` checks it against an `issuer`'s keys; `claims` maps it to an [`Identity`].

mod claims;
pub mod config;
mod http;
mod issuer;
pub mod lineage;
pub mod process;
mod resolver;
mod source;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;

pub use process::ProcessFacts;
pub use resolver::{Resolver, ResolverError};
pub use validate::Rejection;

/// How an identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    /// A token validated against a configured issuer.
    Oidc,
    /// A fixed identity from a cgroup mapping in the config (self-hosted runners without OIDC).
    Named,
    /// Nothing verifiable; `reason` says why.
    Anonymous,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Named => "named",
            Self::Anonymous => "anonymous",
        }
    }
}

/// The workload identity of a session: what policy matches on and what the audit trail records.
///
/// `claims` holds every claim of a validated token (never the token itself); `attributes` holds
/// the provider-neutral names policy rules use (`repository`, `ref`, `workflow`,
/// `job_workflow_ref`, `run_id`, `actor`, `environment`, `pipeline`, `service_connection`,
/// `namespace`, `service_account`, …), filled from the provider's own claim names.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Identity {
    pub kind: IdentityKind,
    /// `github`, `azure-devops`, `federated-file`, `generic`, or the mapping's name for `named`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// For `anonymous`: why no identity could be established (no token, issuer unreachable,
    /// bad signature, expired, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Identity {
    pub fn anonymous(reason: impl Into<String>) -> Self {
        Self {
            kind: IdentityKind::Anonymous,
            provider: None,
            issuer: None,
            subject: None,
            attributes: BTreeMap::new(),
            claims: serde_json::Map::new(),
            reason: Some(reason.into()),
        }
    }

    /// A value by the name policy rules use: `subject`/`sub`, `issuer`/`iss`, `provider`,
    /// then the provider-neutral attributes, then any raw claim that is a string or number.
    pub fn get(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match name {
            "subject" | "sub" => return self.subject.as_deref().map(Cow::Borrowed),
            "issuer" | "iss" => return self.issuer.as_deref().map(Cow::Borrowed),
            "provider" => return self.provider.as_deref().map(Cow::Borrowed),
            "kind" => return Some(Cow::Borrowed(self.kind.as_str())),
            _ => {}
        }
        if let Some(v) = self.attributes.get(name) {
            return Some(Cow::Borrowed(v));
        }
        match self.claims.get(name)? {
            serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
            serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
            serde_json::Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }
}

//! `[identity]` and `[[issuer]]`: where workload tokens come from and which issuers are trusted to
//! sign them. Strict like the rest of the configuration; every key is in `docs/config.md`.

use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;

/// Token sources an issuer may serve; a token is validated only against an issuer that lists the
/// source it came from, so a token file cannot pass as a GitHub Actions token.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// `ACTIONS_ID_TOKEN_REQUEST_URL` + `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    Github,
    /// `SYSTEM_OIDCREQUESTURI` + `SYSTEM_ACCESSTOKEN` (service-connection OIDC request).
    AzureDevops,
    /// `AZURE_FEDERATED_TOKEN_FILE` (AKS workload identity and anything that writes one).
    FederatedFile,
    /// A token file named by a cgroup mapping.
    Generic,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::AzureDevops => "azure-devops",
            Self::FederatedFile => "federated-file",
            Self::Generic => "generic",
        }
    }
}

/// Signature algorithms a token may use. `none` and the HMAC family cannot even be written here:
/// a public key must never serve as a shared secret.
pub const ALLOWED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// `[identity]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// PEM of CAs trusted for token-request endpoints (`ACTIONS_ID_TOKEN_REQUEST_URL`,
    /// `SYSTEM_OIDCREQUESTURI`) in addition to the system roots.
    pub ca: Option<PathBuf>,
    /// Audience requested from GitHub Actions and expected by issuers without their own.
    pub audience: String,
    /// Upper bound on resolving one connection's identity; past it the session is anonymous.
    pub timeout_ms: u64,
    /// Validated identities kept (one per job token), each until its token expires.
    pub cache_size: usize,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_s: u64,
    /// A token with an unknown `kid` refetches the issuer's keys at most this often.
    pub jwks_refetch_interval_ms: u64,
    /// Keys are fetched again when older than this (removed keys stop validating).
    pub jwks_max_age_s: u64,
    /// cgroup mappings, first match wins; used when no token source is in the environment of
    /// the connecting process or its ancestors.
    #[serde(rename = "cgroup")]
    pub cgroups: Vec<CgroupMapping>,
    /// Hosts a token-request URL from a process's environment may name (`host`, or `*.suffix`
    /// for any name under it). hoopd sends that process's bearer token nowhere else.
    pub request_hosts: Vec<String>,
}

/// GitHub-hosted and Azure DevOps Services token endpoints.
pub const DEFAULT_REQUEST_HOSTS: &[&str] = &[
    "*.actions.githubusercontent.com",
    "dev.azure.com",
    "*.visualstudio.com",
];

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            ca: None,
            audience: "hoop".into(),
            timeout_ms: 3000,
            cache_size: 1024,
            leeway_s: 30,
            jwks_refetch_interval_ms: 30_000,
            jwks_max_age_s: 3600,
            cgroups: Vec::new(),
            request_hosts: DEFAULT_REQUEST_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect(),
        }
    }
}

/// `[[identity.cgroup]]`: processes whose cgroup path matches `path` get their identity from
/// `token_file` (validated like any token) or are given the fixed identity `name`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CgroupMapping {
    /// Glob over the cgroup v2 path as in /proc/PID/cgroup (`/actions-runner/*`); `*` stays
    /// within one path segment, `**` spans any number.
    pub path: String,
    /// A token file (read by hoopd in its own mount namespace).
    pub token_file: Option<PathBuf>,
    /// The issuer provider the file's token is validated as; default `generic`.
    pub provider: Option<Provider>,
    /// A fixed identity (kind `named`) for runners without OIDC.
    pub name: Option<String>,
    /// For `name`: the subject; default the name.
    pub subject: Option<String>,
    /// For `name`: attributes policy can match (`repository = "org/app"`, …).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// `[[issuer]]`: an OIDC issuer whose tokens are accepted.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub name: String,
    /// The issuer identifier: exactly the tokens' `iss`; its discovery document is
    /// `<url>/.well-known/openid-configuration`. Must be `https://`.
    pub url: String,
    /// Expected `aud`; default `[identity] audience`.
    pub audience: Option<String>,
    /// PEM of CAs trusted for this issuer's TLS in addition to the system roots.
    pub ca: Option<PathBuf>,
    /// Token sources this issuer serves.
    pub providers: Vec<Provider>,
    /// Accepted signature algorithms; default every one in [`ALLOWED_ALGORITHMS`].
    pub algorithms: Option<Vec<String>>,
}

type Invalid = (String, String);

impl IdentityConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        let err = |k: &str, r: &str| Err((format!("identity.{k}"), r.to_string()));
        if let Some(ca) = &self.ca
            && !ca.is_absolute()
        {
            return err("ca", "must be an absolute path");
        }
        if !valid_audience(&self.audience) {
            return err("audience", AUDIENCE_RULE);
        }
        if self.timeout_ms == 0 {
            return err("timeout_ms", "must be > 0");
        }
        if self.cache_size == 0 {
            return err("cache_size", "must be > 0");
        }
        if self.leeway_s > 300 {
            return err("leeway_s", "must be at most 300 (a small clock skew)");
        }
        if self.jwks_max_age_s == 0 {
            return err("jwks_max_age_s", "must be > 0");
        }
        for (n, m) in self.cgroups.iter().enumerate() {
            m.validate()
                .map_err(|(k, r)| (format!("identity.cgroup[{n}].{k}"), r))?;
        }
        for (n, h) in self.request_hosts.iter().enumerate() {
            if !(crate::config::valid_host(h) || h.parse::<std::net::IpAddr>().is_ok()) {
                return Err((
                    format!("identity.request_hosts[{n}]"),
                    format!(
                        "{h:?}: a host name or IP address, or `*.` and a domain (no scheme, port or path)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether a token-request URL's host is one `request_hosts` allows (names compare without
    /// case; `*.example.com` is any name under example.com, not example.com itself).
    pub fn request_host_allowed(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.request_hosts
            .iter()
            .any(|p| crate::intercept::targets::host_covers(p, host))
    }
}

impl CgroupMapping {
    fn validate(&self) -> Result<(), Invalid> {
        if !self.path.starts_with('/') {
            return Err(("path".into(), "must start with '/'".into()));
        }
        glob::Pattern::new(&self.path).map_err(|e| ("path".into(), e.to_string()))?;
        match (&self.token_file, &self.name) {
            (Some(f), None) if f.is_absolute() => {}
            (Some(_), None) => {
                return Err(("token_file".into(), "must be an absolute path".into()));
            }
            (None, Some(n)) if !n.is_empty() => {}
            _ => {
                return Err((
                    "token_file".into(),
                    "a mapping needs exactly one of token_file and name".into(),
                ));
            }
        }
        if self.token_file.is_some() && (self.subject.is_some() || !self.attributes.is_empty()) {
            return Err((
                "subject".into(),
                "subject and attributes belong to a named mapping; a token brings its own".into(),
            ));
        }
        if self.name.is_some() && self.provider.is_some() {
            return Err(("provider".into(), "only for a token_file mapping".into()));
        }
        Ok(())
    }

    /// Whether `cgroup` (a path as in /proc/PID/cgroup) matches.
    pub fn matches(&self, cgroup: &str) -> bool {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        glob::Pattern::new(&self.path).is_ok_and(|p| p.matches_with(cgroup, opts))
    }
}

const AUDIENCE_RULE: &str = "must be non-empty [A-Za-z0-9-._~:/]";

/// Characters that need no escaping in a URL query, so the audience goes into the GitHub token
/// request as it is written here.
fn valid_audience(a: &str) -> bool {
    !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~:/".contains(c))
}

/// Validates the `[[issuer]]` tables (names unique, URLs https and unique, algorithms allowed).
pub fn validate_issuers(issuers: &[IssuerConfig]) -> Result<(), Invalid> {
    let mut names = std::collections::HashSet::new();
    let mut urls = std::collections::HashSet::new();
    for (n, i) in issuers.iter().enumerate() {
        let key = |f: &str| format!("issuer[{n}].{f}");
        let name_ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if i.name.is_empty() || !i.name.chars().all(name_ok) {
            return Err((key("name"), "must be non-empty [A-Za-z0-9-_.]".into()));
        }
        if !names.insert(i.name.as_str()) {
            return Err((key("name"), format!("duplicate issuer name {:?}", i.name)));
        }
        match i.url.parse::<hyper::Uri>() {
            Ok(u)
                if u.scheme_str() == Some("https") && u.host().is_some() && u.query().is_none() => {
            }
            _ => {
                return Err((
                    key("url"),
                    format!("{:?} is not an https:// issuer URL", i.url),
                ));
            }
        }
        if !urls.insert(i.url.as_str()) {
            return Err((key("url"), format!("issuer {:?} configured twice", i.url)));
        }
        if let Some(a) = &i.audience
            && a.is_empty()
        {
            return Err((key("audience"), "must not be empty".into()));
        }
        if let Some(ca) = &i.ca
            && !ca.is_absolute()
        {
            return Err((key("ca"), "must be an absolute path".into()));
        }
        if i.providers.is_empty() {
            return Err((key("providers"), "at least one provider is required".into()));
        }
        for (j, a) in i.algorithms.iter().flatten().enumerate() {
            if !ALLOWED_ALGORITHMS.contains(&a.as_str()) {
                return Err((
                    key(&format!("algorithms[{j}]")),
                    format!(
                        "{a:?} is not allowed (allowed: {})",
                        ALLOWED_ALGORITHMS.join(", ")
                    ),
                ));
            }
        }
        if i.algorithms.as_ref().is_some_and(Vec::is_empty) {
            return Err((key("algorithms"), "must not be empty".into()));
        }
    }
    Ok(())
}

//! Where a connection's workload token comes from: the environment of the connecting process or
//! its nearest ancestor that has one (GitHub Actions, Azure DevOps, a federated token file read
//! inside the process's own root), else the first cgroup mapping matching its cgroup. Blocking
//! (/proc and file reads): called from `spawn_blocking`.

use std::{collections::BTreeMap, path::Path};

use super::{
    Rejection,
    config::{IdentityConfig, Provider},
    lineage::{self, LineageError, Proc},
};

const GH_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
const GH_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
const ADO_URI: &str = "SYSTEM_OIDCREQUESTURI";
const ADO_TOKEN: &str = "SYSTEM_ACCESSTOKEN";
/// Set by the AzureCLI/AzurePowerShell tasks for their service connection; the others by
/// pipelines that follow the azurerm/azapi Terraform providers' conventions.
const ADO_SC: &[&str] = &[
    "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
    "ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID",
    "ARM_OIDC_AZURE_SERVICE_CONNECTION_ID",
];
const FED_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// The Azure DevOps REST API version of the OIDC token request.
const ADO_API_VERSION: &str = "7.1";

/// A secret that never shows in Debug output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[secret]")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Ask `url` (HTTPS, bearer `auth`) for an ID token.
    Request {
        provider: Provider,
        url: String,
        auth: Secret,
        via: String,
    },
    /// A token already in hand (read from a file).
    Token {
        provider: Provider,
        token: Secret,
        via: String,
    },
    /// A fixed identity from a cgroup mapping.
    Named {
        name: String,
        subject: String,
        attributes: BTreeMap<String, String>,
        via: String,
    },
}

/// Finds the token source of process `pid` (started at `start_ticks`, the kernel's record).
pub fn discover(
    pid: u32,
    start_ticks: u64,
    cgroup: Option<&str>,
    cfg: &IdentityConfig,
) -> Result<Source, Rejection> {
    let unverified = |e: LineageError| Rejection::ProcessUnverified(e.to_string());
    let mut p = Proc::open(pid, start_ticks).map_err(unverified)?;
    let mut incomplete = None;
    for depth in 0..=lineage::MAX_DEPTH {
        let env = match p.env(&env_names()) {
            Ok(env) => env,
            Err(e) if depth == 0 => return Err(unverified(e)),
            Err(_) => break, // an ancestor exited meanwhile: the chain ends here
        };
        match from_env(&p, &env, &cfg.audience) {
            Found::Source(s) => return Ok(s),
            Found::Failed(r) => return Err(r),
            Found::Incomplete(r) => {
                incomplete.get_or_insert(r);
            }
            Found::Nothing => {}
        }
        match p.parent() {
            Some(q) => p = q,
            None => break,
        }
    }
    if let Some(src) = cgroup.and_then(|cg| from_mapping(cg, cfg)) {
        return src;
    }
    Err(incomplete.unwrap_or(Rejection::NoSource))
}

fn env_names() -> Vec<&'static str> {
    let mut v = vec![GH_URL, GH_TOKEN, ADO_URI, ADO_TOKEN, FED_FILE];
    v.extend_from_slice(ADO_SC);
    v
}

enum Found {
    Source(Source),
    Failed(Rejection),
    Incomplete(Rejection),
    Nothing,
}

fn from_env(p: &Proc, env: &[Option<String>], audience: &str) -> Found {
    let get = |i: usize| env[i].as_deref().filter(|v| !v.is_empty());
    let via = |what: &str| format!("{what} of pid {}", p.pid);
    let mut incomplete = None;
    match (get(0), get(1)) {
        (Some(url), Some(tok)) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            return Found::Source(Source::Request {
                provider: Provider::Github,
                url: format!("{url}{sep}audience={audience}"),
                auth: Secret(tok.into()),
                via: via(GH_URL),
            });
        }
        (None, None) => {}
        _ => {
            incomplete = Some(format!(
                "{GH_URL} and {GH_TOKEN} must both be set (pid {})",
                p.pid
            ))
        }
    }
    if let Some(uri) = get(2) {
        let sc = (5..5 + ADO_SC.len()).find_map(get);
        match (get(3), sc) {
            (Some(tok), Some(sc)) if valid_connection_id(sc) && !uri.contains('?') => {
                return Found::Source(Source::Request {
                    provider: Provider::AzureDevops,
                    url: format!("{uri}?api-version={ADO_API_VERSION}&serviceConnectionId={sc}"),
                    auth: Secret(tok.into()),
                    via: via(ADO_URI),
                });
            }
            (Some(_), Some(_)) => {
                incomplete = Some(format!(
                    "{ADO_URI} or the service connection id is malformed (pid {})",
                    p.pid
                ));
            }
            _ => {
                incomplete.get_or_insert(format!(
                    "{ADO_URI} needs {ADO_TOKEN} and a service connection id ({}) (pid {})",
                    ADO_SC[0], p.pid
                ));
            }
        }
    }
    if let Some(path) = get(4) {
        return match p.read_in_root(Path::new(path)) {
            Ok(t) => Found::Source(Source::Token {
                provider: Provider::FederatedFile,
                token: Secret(t),
                via: via(FED_FILE),
            }),
            Err(e) => Found::Failed(Rejection::TokenFile {
                path: format!("{path} (pid {})", p.pid),
                reason: e.to_string(),
            }),
        };
    }
    match incomplete {
        Some(r) => Found::Incomplete(Rejection::SourceIncomplete(r)),
        None => Found::Nothing,
    }
}

/// A GUID, or at least nothing that could change the request's query.
fn valid_connection_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn from_mapping(cgroup: &str, cfg: &IdentityConfig) -> Option<Result<Source, Rejection>> {
    let m = cfg.cgroups.iter().find(|m| m.matches(cgroup))?;
    let via = format!("cgroup mapping {}", m.path);
    if let Some(name) = &m.name {
        return Some(Ok(Source::Named {
            name: name.clone(),
            subject: m.subject.clone().unwrap_or_else(|| name.clone()),
            attributes: m.attributes.clone(),
            via,
        }));
    }
    let path = m.token_file.as_ref()?;
    let read = std::fs::File::open(path)
        .map_err(|e| lineage::FileError::Unreadable(e.to_string()))
        .and_then(|f| lineage::read_token_file(f, None));
    Some(match read {
        Ok(t) => Ok(Source::Token {
            provider: m.provider.unwrap_or(Provider::Generic),
            token: Secret(t),
            via,
        }),
        Err(e) => Err(Rejection::TokenFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::config::CgroupMapping;

    fn own() -> (u32, u64) {
        let pid = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        (
            pid,
            crate::identity::process::stat_start_ticks(&stat).unwrap(),
        )
    }

    fn mapping(path: &str, name: Option<&str>, file: Option<&Path>) -> CgroupMapping {
        CgroupMapping {
            path: path.into(),
            token_file: file.map(Path::to_path_buf),
            provider: None,
            name: name.map(str::to_string),
            subject: None,
            attributes: BTreeMap::from([("repository".into(), "org/app".into())]),
        }
    }

    /// The test process's own environment has no token source (cargo test does not set them).
    #[test]
    fn mapping_applies_without_env_source() {
        let (pid, start) = own();
        let cfg = IdentityConfig {
            cgroups: vec![
                mapping("/other/*", Some("no"), None),
                mapping("/runners/*", Some("pool-a"), None),
            ],
            ..Default::default()
        };
        match discover(pid, start, Some("/runners/job-1"), &cfg) {
            Ok(Source::Named {
                name,
                subject,
                attributes,
                ..
            }) => {
                assert_eq!((name.as_str(), subject.as_str()), ("pool-a", "pool-a"));
                assert_eq!(attributes["repository"], "org/app");
            }
            other => panic!("{other:?}"),
        }
        // `*` does not cross a path separator
        assert_eq!(
            discover(pid, start, Some("/runners/a/b"), &cfg),
            Err(Rejection::NoSource)
        );
        assert!(matches!(
            discover(pid, start + 7, Some("/runners/x"), &cfg),
            Err(Rejection::ProcessUnverified(r)) if r.contains("reused")
        ));
    }

    #[test]
    fn token_file_mapping() {
        let (pid, start) = own();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, " a.b.c \n").unwrap();
        let cfg = IdentityConfig {
            cgroups: vec![mapping("/r/**", None, Some(&f))],
            ..Default::default()
        };
        match discover(pid, start, Some("/r/x/y"), &cfg) {
            Ok(Source::Token {
                provider, token, ..
            }) => {
                assert_eq!(provider, Provider::Generic);
                assert_eq!(token.0, "a.b.c");
                assert_eq!(format!("{token:?}"), "[secret]");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connection_ids() {
        assert!(valid_connection_id("3f1c2b8e-0d6a-4b1e-9c1d-2a7b8e9f0a1b"));
        assert!(!valid_connection_id("x&audience=evil"));
        assert!(!valid_connection_id(""));
    }
}

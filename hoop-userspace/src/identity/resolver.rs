//! The identity of one connection, resolved within `[identity] timeout_ms`: token source (off the
//! runtime, /proc reads), token (HTTPS request or file), validation, claims → [`Identity`].
//! Validated identities are cached per job token until the token expires (bounded), so a job's
//! connections after the first cost no network round trip; concurrent first connections of one
//! job share one request.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rustls::ClientConfig;
use sha2::{Digest, Sha256};

use super::{
    Identity, IdentityKind, ProcessFacts, Rejection,
    config::{IdentityConfig, IssuerConfig, Provider},
    http::{self, Req},
    issuer::Issuer,
    source::{self, Source},
    validate,
};

#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("identity.ca: {0}")]
    RequestCa(crate::tls::TlsError),
    #[error("issuer {name}: {source}")]
    IssuerCa {
        name: String,
        source: crate::tls::TlsError,
    },
}

#[derive(Clone)]
struct Cached {
    identity: Identity,
    /// Token expiry, seconds since the epoch.
    exp: u64,
}

pub struct Resolver {
    cfg: IdentityConfig,
    issuers: Vec<Arc<Issuer>>,
    request_tls: Arc<ClientConfig>,
    cache: quick_cache::sync::Cache<[u8; 32], Cached>,
}

impl Resolver {
    pub fn new(cfg: &IdentityConfig, issuers: &[IssuerConfig]) -> Result<Self, ResolverError> {
        let request_tls =
            crate::tls::upstream_config(cfg.ca.as_deref()).map_err(ResolverError::RequestCa)?;
        let issuers = issuers
            .iter()
            .map(|i| {
                let tls = crate::tls::upstream_config(i.ca.as_deref()).map_err(|source| {
                    ResolverError::IssuerCa {
                        name: i.name.clone(),
                        source,
                    }
                })?;
                Ok(Arc::new(Issuer::new(
                    i,
                    &cfg.audience,
                    tls,
                    Duration::from_millis(cfg.jwks_refetch_interval_ms),
                    Duration::from_secs(cfg.jwks_max_age_s),
                )))
            })
            .collect::<Result<_, ResolverError>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            issuers,
            request_tls,
            cache: quick_cache::sync::Cache::new(cfg.cache_size),
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    /// The identity of the process described by `facts`; `Anonymous` with the reason when none
    /// can be established within the timeout. Never fails.
    pub async fn resolve(&self, facts: &ProcessFacts) -> Identity {
        if self.issuers.is_empty() && self.cfg.cgroups.is_empty() {
            // nothing could vouch for a workload: skip the /proc walk
            return Identity::anonymous("no [[issuer]] or [[identity.cgroup]] configured");
        }
        let t0 = std::time::Instant::now();
        let r = tokio::time::timeout(self.timeout(), self.try_resolve(facts)).await;
        let id = match r {
            Ok(Ok(id)) => id,
            Ok(Err(reason)) => Identity::anonymous(reason.to_string()),
            Err(_) => Identity::anonymous(Rejection::Timeout(self.cfg.timeout_ms).to_string()),
        };
        tracing::debug!(
            pid = facts.pid,
            kind = id.kind.as_str(),
            subject = id.subject.as_deref().unwrap_or(""),
            issuer = id.issuer.as_deref().unwrap_or(""),
            reason = id.reason.as_deref().unwrap_or(""),
            elapsed_us = t0.elapsed().as_micros() as u64,
            "identity resolved"
        );
        id
    }

    async fn try_resolve(&self, facts: &ProcessFacts) -> Result<Identity, Rejection> {
        if let Some(why) = facts.unverified {
            return Err(Rejection::ProcessUnverified(why.into()));
        }
        let start = facts
            .start_ticks
            .ok_or_else(|| Rejection::ProcessUnverified("no start time".into()))?;
        let (pid, cgroup, cfg) = (facts.pid, facts.cgroup.clone(), self.cfg.clone());
        let src = tokio::task::spawn_blocking(move || {
            source::discover(pid, start, cgroup.as_deref(), &cfg)
        })
        .await
        .map_err(|e| Rejection::ProcessUnverified(format!("reading /proc failed: {e}")))??;
        match src {
            Source::Named {
                name,
                subject,
                mut attributes,
                via,
            } => {
                attributes.insert("source".into(), via);
                Ok(Identity {
                    kind: IdentityKind::Named,
                    provider: Some(name),
                    issuer: None,
                    subject: Some(subject),
                    attributes,
                    claims: Default::default(),
                    reason: None,
                })
            }
            Source::Token {
                provider,
                token,
                via,
            } => {
                let key = cache_key(&[b"token", token.0.as_bytes()]);
                let id = self.cached(key, || self.validate(provider, token.0)).await;
                id.map(|id| with_source(id, via))
            }
            Source::Request {
                provider,
                url,
                auth,
                via,
            } => {
                let key = cache_key(&[b"request", url.as_bytes(), auth.0.as_bytes()]);
                let id = self
                    .cached(key, || async move {
                        let token = self.request(provider, &url, &auth.0).await?;
                        self.validate(provider, token).await
                    })
                    .await;
                id.map(|id| with_source(id, via))
            }
        }
    }

    /// The cached identity for `key` while its token is unexpired, else `make`'s (cached on
    /// success; callers waiting on the same key get it without another request).
    async fn cached<F, Fut>(&self, key: [u8; 32], make: F) -> Result<Identity, Rejection>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Cached, Rejection>>,
    {
        let mut make = Some(make);
        loop {
            match self.cache.get_value_or_guard_async(&key).await {
                Ok(c) if c.exp > now() => return Ok(c.identity),
                Ok(_) => {
                    self.cache.remove(&key);
                }
                Err(guard) => {
                    let c = (make.take().expect("one insertion per call"))().await?;
                    let _ = guard.insert(c.clone());
                    return Ok(c.identity);
                }
            }
        }
    }

    async fn validate(&self, provider: Provider, token: String) -> Result<Cached, Rejection> {
        let v = validate::validate(
            &token,
            provider,
            &self.issuers,
            self.cfg.leeway_s,
            self.timeout(),
        )
        .await?;
        let exp = v.exp;
        Ok(Cached {
            identity: super::claims::identity(provider, v),
            exp,
        })
    }

    /// GitHub: GET `url` → `{"value": token}`. Azure DevOps: POST `url` → `{"oidcToken": token}`.
    async fn request(
        &self,
        provider: Provider,
        url: &str,
        auth: &str,
    ) -> Result<String, Rejection> {
        let (method, field) = match provider {
            Provider::AzureDevops => (hyper::Method::POST, "oidcToken"),
            _ => (hyper::Method::GET, "value"),
        };
        // the URL is the process's to choose: its bearer token goes only to an allowed host
        let host = url
            .parse::<hyper::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_string))
            .unwrap_or_default();
        if !self.cfg.request_host_allowed(&host) {
            return Err(Rejection::TokenRequest(format!(
                "{}: {host:?} is not an allowed token-request host ([identity] request_hosts)",
                http::redact_query(url)
            )));
        }
        let req = Req {
            method,
            url,
            bearer: Some(auth),
        };
        let doc = http::json(&self.request_tls, req, self.timeout())
            .await
            .map_err(|e| Rejection::TokenRequest(e.to_string()))?;
        doc.get(field)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Rejection::TokenRequest(format!(
                    "{}: no {field:?} in the response",
                    http::redact_query(url)
                ))
            })
    }
}

/// Where this connection's token came from (the cached identity may be another process's).
fn with_source(mut id: Identity, via: String) -> Identity {
    id.attributes.insert("source".into(), via);
    id
}

fn cache_key(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

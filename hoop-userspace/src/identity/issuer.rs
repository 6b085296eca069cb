//! One trusted issuer: its OpenID discovery document and signing keys (JWKS), fetched over
//! verified TLS and cached. An unknown `kid` refetches the keys (at most once per
//! `jwks_refetch_interval_ms`, so forged kids cannot make hoopd hammer the issuer); keys older
//! than `jwks_max_age_s` are refetched on use, so a rotation is picked up and a removed key stops
//! validating.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{Jwk, JwkSet, PublicKeyUse},
};
use rustls::ClientConfig;

use super::{
    Rejection,
    config::{IssuerConfig, Provider},
    http::{self, FetchError, Req},
};

/// A signing key as published.
pub struct Key {
    pub key: DecodingKey,
    /// The `alg` the JWK declares, if any: the token's must then be the same.
    pub alg: Option<Algorithm>,
}

pub struct Issuer {
    pub name: String,
    pub url: String,
    pub audience: String,
    pub providers: Vec<Provider>,
    pub algorithms: Vec<Algorithm>,
    tls: Arc<ClientConfig>,
    refetch_interval: Duration,
    max_age: Duration,
    keys: tokio::sync::Mutex<KeyState>,
}

#[derive(Default)]
struct KeyState {
    keys: HashMap<String, Arc<Key>>,
    /// Keys without a `kid` (usable only when they are the only key).
    unnamed: Vec<Arc<Key>>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl Issuer {
    pub fn new(
        cfg: &IssuerConfig,
        default_audience: &str,
        tls: Arc<ClientConfig>,
        refetch_interval: Duration,
        max_age: Duration,
    ) -> Self {
        let algorithms = match &cfg.algorithms {
            Some(a) => a.iter().filter_map(|s| s.parse().ok()).collect(),
            None => super::config::ALLOWED_ALGORITHMS
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        };
        Self {
            name: cfg.name.clone(),
            url: cfg.url.clone(),
            audience: cfg
                .audience
                .clone()
                .unwrap_or_else(|| default_audience.into()),
            providers: cfg.providers.clone(),
            algorithms,
            tls,
            refetch_interval,
            max_age,
            keys: Default::default(),
        }
    }

    /// The key for `kid` (or the only key when the token names none). Fetches when the cache is
    /// empty, stale, or lacks `kid` and the rate limit allows.
    pub async fn key(&self, kid: Option<&str>, timeout: Duration) -> Result<Arc<Key>, Rejection> {
        let mut st = self.keys.lock().await;
        let stale = st.fetched.is_none_or(|t| t.elapsed() >= self.max_age);
        let known = st.lookup(kid).is_some();
        let may_refetch = st
            .last_attempt
            .is_none_or(|t| t.elapsed() >= self.refetch_interval);
        // never fetched: always try (bounded by the caller's timeout); stale or unknown kid:
        // at most once per refetch interval
        if st.fetched.is_none() || ((stale || !known) && may_refetch) {
            st.last_attempt = Some(Instant::now());
            match self.fetch(timeout).await {
                Ok(set) => st.replace(set),
                // Stale keys still validate while the issuer is unreachable (availability); an
                // issuer that was never reached validates nothing.
                Err(e) if st.fetched.is_none() => {
                    return Err(Rejection::IssuerUnreachable(e.to_string()));
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.name, error = %e, "JWKS refetch failed; keeping the cached keys")
                }
            }
        }
        match st.lookup(kid) {
            Some(k) => Ok(k),
            None => Err(Rejection::UnknownKid(kid.unwrap_or("(none)").to_string())),
        }
    }

    async fn fetch(&self, timeout: Duration) -> Result<JwkSet, FetchError> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.url.trim_end_matches('/')
        );
        let get = |url| Req {
            method: hyper::Method::GET,
            url,
            bearer: None,
        };
        let doc = http::json(&self.tls, get(&discovery_url), timeout).await?;
        let bad = |reason: String| FetchError::Json {
            host: self.name.clone(),
            reason,
        };
        // OpenID Connect Discovery 1.0 §4.3: the document's issuer must be the one asked for.
        if doc["issuer"].as_str() != Some(self.url.as_str()) {
            return Err(bad(format!(
                "discovery issuer {} is not {}",
                doc["issuer"], self.url
            )));
        }
        let jwks_uri = doc["jwks_uri"]
            .as_str()
            .filter(|u| u.starts_with("https://"))
            .ok_or_else(|| bad("no https jwks_uri in the discovery document".into()))?;
        let set = http::json(&self.tls, get(jwks_uri), timeout).await?;
        let set: JwkSet = serde_json::from_value(set).map_err(|e| bad(e.to_string()))?;
        tracing::info!(issuer = %self.name, keys = set.keys.len(), "issuer keys fetched");
        Ok(set)
    }
}

impl KeyState {
    fn lookup(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        match kid {
            Some(k) => self.keys.get(k).cloned(),
            None if self.keys.len() + self.unnamed.len() == 1 => {
                self.keys.values().chain(&self.unnamed).next().cloned()
            }
            None => None,
        }
    }

    fn replace(&mut self, set: JwkSet) {
        self.keys.clear();
        self.unnamed.clear();
        for jwk in set.keys.iter().filter(|j| is_signing_key(j)) {
            let Some(key) = to_key(jwk) else { continue };
            match &jwk.common.key_id {
                Some(kid) => {
                    self.keys.insert(kid.clone(), Arc::new(key));
                }
                None => self.unnamed.push(Arc::new(key)),
            }
        }
        self.fetched = Some(Instant::now());
    }
}

/// Public signature keys only: an encryption key or a symmetric (`oct`) key in a JWKS is never
/// used to verify a token.
fn is_signing_key(j: &Jwk) -> bool {
    let sig_use = !matches!(
        j.common.public_key_use,
        Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
    );
    let public = !matches!(
        j.algorithm,
        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
            | jsonwebtoken::jwk::AlgorithmParameters::Other(_)
    );
    sig_use && public
}

fn to_key(j: &Jwk) -> Option<Key> {
    let alg = match &j.common.key_algorithm {
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    Some(Key {
        key: DecodingKey::from_jwk(j).ok()?,
        alg,
    })
}

#[cfg(test)]
impl Issuer {
    /// An issuer whose keys are already known (unit tests: no network).
    pub fn with_keys(cfg: &IssuerConfig, set: JwkSet) -> Self {
        let tls = crate::tls::upstream_config(None).unwrap();
        let i = Self::new(
            cfg,
            "hoop",
            tls,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        );
        i.keys.try_lock().unwrap().replace(set);
        i.keys.try_lock().unwrap().last_attempt = Some(Instant::now());
        i
    }
}

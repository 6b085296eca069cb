//! Token validation: the header's `alg` against the allow-list before any key is touched, the
//! issuer by exact `iss` among the configured ones (and only for the token sources it serves),
//! the signature with the issuer's published key for that `kid`, then `aud`, `exp`, `nbf` and
//! `iat` with a small leeway (jsonwebtoken does the signature and registered claims).

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};

use super::{config::Provider, issuer::Issuer};

/// Why a workload got no verified identity; its text is the `reason` of an anonymous identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(
        "no token source in the environment of the process or its ancestors, and no cgroup mapping"
    )]
    NoSource,
    #[error("process not verified: {0}")]
    ProcessUnverified(String),
    #[error("token source incomplete: {0}")]
    SourceIncomplete(String),
    #[error("token file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("token request failed: {0}")]
    TokenRequest(String),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("alg not allowed: {0}")]
    AlgNotAllowed(String),
    #[error("wrong issuer: {0}")]
    WrongIssuer(String),
    #[error("issuer {issuer} does not serve provider {provider}")]
    ProviderNotServed { issuer: String, provider: String },
    #[error("issuer unreachable: {0}")]
    IssuerUnreachable(String),
    #[error("unknown kid {0:?}")]
    UnknownKid(String),
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    #[error("token issued in the future (iat)")]
    IssuedInFuture,
    #[error("wrong audience (expected {0:?})")]
    WrongAudience(String),
    #[error("missing claim {0}")]
    MissingClaim(String),
    #[error("identity resolution timed out after {0} ms (token endpoint or issuer unreachable)")]
    Timeout(u64),
}

/// A validated token's claims and the issuer that vouched for them.
pub struct Validated {
    pub issuer_url: String,
    pub issuer_name: String,
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// `exp`, seconds since the epoch.
    pub exp: u64,
    /// The key that signed it (audited: which issuer key vouched for the session).
    pub kid: Option<String>,
}

#[derive(serde::Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

fn b64_json<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, Rejection> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed(format!("{what} is not base64url")))?;
    serde_json::from_slice(&raw)
        .map_err(|_| Rejection::Malformed(format!("{what} is not a JSON object")))
}

/// Validates `token`, which came from a `provider` source, against `issuers`.
pub async fn validate(
    token: &str,
    provider: Provider,
    issuers: &[std::sync::Arc<Issuer>],
    leeway_s: u64,
    timeout: Duration,
) -> Result<Validated, Rejection> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(Rejection::Malformed(
            "not a three-part JWS compact token".into(),
        ));
    }
    let header: Header = b64_json(parts[0], "header")?;
    let alg_name = header.alg.unwrap_or_default();
    let alg = allowed_alg(&alg_name)?;
    let unverified: serde_json::Map<String, serde_json::Value> = b64_json(parts[1], "payload")?;
    let iss = unverified
        .get("iss")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Rejection::MissingClaim("iss".into()))?;
    let issuer = issuers
        .iter()
        .find(|i| i.url == iss)
        .ok_or_else(|| Rejection::WrongIssuer(format!("{iss} is not a configured issuer")))?;
    if !issuer.providers.contains(&provider) {
        return Err(Rejection::ProviderNotServed {
            issuer: issuer.name.clone(),
            provider: provider.as_str().into(),
        });
    }
    if !issuer.algorithms.contains(&alg) {
        return Err(Rejection::AlgNotAllowed(format!(
            "{alg_name} for issuer {}",
            issuer.name
        )));
    }
    let key = issuer.key(header.kid.as_deref(), timeout).await?;
    if key.alg.is_some_and(|a| a != alg) || key.key.family() != alg.family() {
        return Err(Rejection::AlgNotAllowed(format!(
            "{alg_name} does not match key {:?}",
            header.kid.as_deref().unwrap_or("")
        )));
    }
    let mut v = Validation::new(alg);
    v.leeway = leeway_s;
    v.validate_nbf = true;
    v.set_audience(&[&issuer.audience]);
    v.set_issuer(&[&issuer.url]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data =
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &v)
            .map_err(|e| map_error(e.kind(), &issuer.audience))?;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = data.claims;
    if let Some(iat) = claims.get("iat") {
        match iat.as_u64() {
            Some(iat) if iat <= now + leeway_s => {}
            Some(_) => return Err(Rejection::IssuedInFuture),
            None => return Err(Rejection::Malformed("iat is not a number".into())),
        }
    }
    let exp = claims.get("exp").and_then(|e| e.as_u64()).unwrap_or(0);
    Ok(Validated {
        issuer_url: issuer.url.clone(),
        issuer_name: issuer.name.clone(),
        claims,
        exp,
        kid: header.kid,
    })
}

/// `none` and the HMAC family are refused outright: a public key used as an HMAC secret is the
/// classic forgery.
fn allowed_alg(name: &str) -> Result<Algorithm, Rejection> {
    if !super::config::ALLOWED_ALGORITHMS.contains(&name) {
        let shown = if name.is_empty() { "(missing)" } else { name };
        return Err(Rejection::AlgNotAllowed(shown.chars().take(16).collect()));
    }
    name.parse()
        .map_err(|_| Rejection::AlgNotAllowed(name.to_string()))
}

fn map_error(kind: &ErrorKind, audience: &str) -> Rejection {
    match kind {
        ErrorKind::InvalidSignature => Rejection::BadSignature,
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::ImmatureSignature => Rejection::NotYetValid,
        ErrorKind::InvalidAudience => Rejection::WrongAudience(audience.into()),
        ErrorKind::InvalidIssuer => Rejection::WrongIssuer("iss does not match".into()),
        ErrorKind::MissingRequiredClaim(c) => Rejection::MissingClaim(c.clone()),
        ErrorKind::InvalidAlgorithm => Rejection::AlgNotAllowed("does not match the key".into()),
        ErrorKind::InvalidClaimFormat(c) => Rejection::Malformed(format!("claim {c}")),
        // key format problems and anything else: the token cannot be verified
        other => Rejection::Malformed(format!("{other:?}").chars().take(80).collect()),
    }
}

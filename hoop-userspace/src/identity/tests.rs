//! Validation against every forged variant (alg none, HS256 keyed with the public key, wrong
//! key, wrong iss, wrong aud, expired, not yet valid, unknown kid, …) with real RSA and EC keys.
//! Issuer keys are given directly here; discovery, JWKS over TLS and rotation are exercised
//! against the real oidc-provider in `tests/tests/identity/`.

use std::{sync::Arc, time::Duration};

use base64::Engine;
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet},
};
use serde_json::{Value, json};

use super::{
    config::{IssuerConfig, Provider},
    issuer::Issuer,
    validate::{Rejection, validate},
};

const ISS: &str = "https://issuer.test";
const RSA_A: &[u8] = include_bytes!("testdata/rsa-a.pem");
const RSA_A_PUB: &[u8] = include_bytes!("testdata/rsa-a.pub.pem");
const RSA_B: &[u8] = include_bytes!("testdata/rsa-b.pem");
const EC: &[u8] = include_bytes!("testdata/ec.pem");

fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut j = Jwk::from_encoding_key(key, alg).unwrap();
    j.common.key_id = Some(kid.into());
    j
}

fn rsa_a() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_A).unwrap()
}

fn issuer() -> Arc<Issuer> {
    let ec = EncodingKey::from_ec_pem(EC).unwrap();
    let set = JwkSet {
        keys: vec![
            jwk(&rsa_a(), Algorithm::RS256, "rsa-a"),
            jwk(&ec, Algorithm::ES256, "ec-1"),
        ],
    };
    let cfg = IssuerConfig {
        name: "test".into(),
        url: ISS.into(),
        audience: Some("hoop".into()),
        ca: None,
        providers: vec![Provider::Github, Provider::Generic],
        algorithms: None,
    };
    Arc::new(Issuer::with_keys(&cfg, set))
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": "hoop", "sub": "repo:octo/app:ref:refs/heads/main",
        "iat": now(), "nbf": now() - 5, "exp": now() + 300, "jti": "id-1",
        "repository": "octo/app", "run_id": "77",
    })
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn good(claims: &Value) -> String {
    sign(Algorithm::RS256, "rsa-a", &rsa_a(), claims)
}

fn with(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = claims();
    f(c.as_object_mut().unwrap());
    c
}

async fn check(token: &str, provider: Provider) -> Result<super::validate::Validated, Rejection> {
    validate(token, provider, &[issuer()], 30, Duration::from_secs(1)).await
}

async fn reject(token: &str) -> Rejection {
    match check(token, Provider::Github).await {
        Ok(_) => panic!("forged token accepted"),
        Err(r) => r,
    }
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

#[tokio::test]
async fn valid_rs256_and_es256() {
    let v = check(&good(&claims()), Provider::Github).await.unwrap();
    assert_eq!(v.issuer_url, ISS);
    assert_eq!(v.claims["repository"], "octo/app");
    assert_eq!(v.claims["jti"], "id-1");
    let ec = EncodingKey::from_ec_pem(EC).unwrap();
    let t = sign(Algorithm::ES256, "ec-1", &ec, &claims());
    assert!(check(&t, Provider::Generic).await.is_ok());
}

#[tokio::test]
async fn alg_none_rejected() {
    let header = b64(br#"{"alg":"none","typ":"JWT","kid":"rsa-a"}"#);
    let payload = b64(claims().to_string().as_bytes());
    for t in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.AAAA"),
    ] {
        assert_eq!(reject(&t).await, Rejection::AlgNotAllowed("none".into()));
    }
    let no_alg = b64(br#"{"typ":"JWT"}"#);
    assert!(matches!(
        reject(&format!("{no_alg}.{payload}.x")).await,
        Rejection::AlgNotAllowed(_)
    ));
}

#[tokio::test]
async fn hs256_with_the_public_key_rejected() {
    // the classic confusion attack: the issuer's public key used as an HMAC secret
    for secret in [
        RSA_A_PUB.to_vec(),
        serde_json::to_vec(&jwk(&rsa_a(), Algorithm::RS256, "rsa-a")).unwrap(),
    ] {
        let t = sign(
            Algorithm::HS256,
            "rsa-a",
            &EncodingKey::from_secret(&secret),
            &claims(),
        );
        assert_eq!(reject(&t).await, Rejection::AlgNotAllowed("HS256".into()));
    }
}

#[tokio::test]
async fn wrong_key_and_tampering_rejected() {
    let other = EncodingKey::from_rsa_pem(RSA_B).unwrap();
    assert_eq!(
        reject(&sign(Algorithm::RS256, "rsa-a", &other, &claims())).await,
        Rejection::BadSignature
    );
    // a valid token whose payload is swapped for a more privileged one
    let t = good(&claims());
    let parts: Vec<&str> = t.split('.').collect();
    let evil = b64(with(|c| {
        c.insert("repository".into(), json!("octo/prod"));
    })
    .to_string()
    .as_bytes());
    assert_eq!(
        reject(&format!("{}.{evil}.{}", parts[0], parts[2])).await,
        Rejection::BadSignature
    );
    // an RS256 token naming the EC key: the key does not fit the algorithm
    assert!(matches!(
        reject(&sign(Algorithm::RS256, "ec-1", &rsa_a(), &claims())).await,
        Rejection::AlgNotAllowed(_)
    ));
}

#[tokio::test]
async fn wrong_iss_and_aud_rejected() {
    let t = good(&with(|c| {
        c.insert("iss".into(), json!("https://evil.test"));
    }));
    assert!(matches!(reject(&t).await, Rejection::WrongIssuer(m) if m.contains("evil.test")));
    let t = good(&with(|c| {
        c.insert("aud".into(), json!("someone-else"));
    }));
    assert_eq!(reject(&t).await, Rejection::WrongAudience("hoop".into()));
    let t = good(&with(|c| {
        c.insert("aud".into(), json!(["x", "hoop"]));
    }));
    assert!(
        check(&t, Provider::Github).await.is_ok(),
        "aud array containing ours"
    );
    let t = good(&with(|c| {
        c.remove("aud");
    }));
    assert_eq!(reject(&t).await, Rejection::MissingClaim("aud".into()));
    let t = good(&with(|c| {
        c.remove("sub");
    }));
    assert_eq!(reject(&t).await, Rejection::MissingClaim("sub".into()));
}

#[tokio::test]
async fn time_claims_with_leeway() {
    let t = good(&with(|c| {
        c.insert("exp".into(), json!(now() - 120));
    }));
    assert_eq!(reject(&t).await, Rejection::Expired);
    let t = good(&with(|c| {
        c.insert("exp".into(), json!(now() - 10));
    }));
    assert!(
        check(&t, Provider::Github).await.is_ok(),
        "within the 30 s leeway"
    );
    let t = good(&with(|c| {
        c.remove("exp");
    }));
    assert_eq!(reject(&t).await, Rejection::MissingClaim("exp".into()));
    let t = good(&with(|c| {
        c.insert("nbf".into(), json!(now() + 120));
    }));
    assert_eq!(reject(&t).await, Rejection::NotYetValid);
    let t = good(&with(|c| {
        c.insert("iat".into(), json!(now() + 120));
    }));
    assert_eq!(reject(&t).await, Rejection::IssuedInFuture);
}

#[tokio::test]
async fn unknown_kid_and_provider_rejected() {
    let t = sign(Algorithm::RS256, "rsa-zzz", &rsa_a(), &claims());
    assert_eq!(reject(&t).await, Rejection::UnknownKid("rsa-zzz".into()));
    let r = check(&good(&claims()), Provider::AzureDevops)
        .await
        .err()
        .unwrap();
    assert_eq!(
        r,
        Rejection::ProviderNotServed {
            issuer: "test".into(),
            provider: "azure-devops".into()
        }
    );
}

#[tokio::test]
async fn malformed_tokens_rejected() {
    for t in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.e30.x",
        &format!("{}.!!!.x", b64(br#"{"alg":"RS256"}"#)),
    ] {
        assert!(matches!(reject(t).await, Rejection::Malformed(_)), "{t:?}");
    }
}

mod config {
    use crate::config::Config;

    fn invalid(text: &str) -> String {
        Config::parse(text, "t").unwrap_err().to_string()
    }

    const ISSUER: &str = "[[issuer]]\nname = 'gh'\nurl = 'https://token.actions.githubusercontent.com'\nproviders = ['github']\n";

    #[test]
    fn identity_and_issuers_parse() {
        let cfg = Config::parse(
            &format!(
                "[identity]\ntimeout_ms = 500\naudience = 'api://hoop'\n\
                 [[identity.cgroup]]\npath = '/runners/*'\nname = 'pool-a'\nattributes = {{ repository = 'org/app' }}\n\
                 [[identity.cgroup]]\npath = '/k8s/**'\ntoken_file = '/etc/hoop/token'\nprovider = 'federated-file'\n{ISSUER}"
            ),
            "t",
        )
        .unwrap();
        assert_eq!(cfg.identity.timeout_ms, 500);
        assert_eq!(cfg.identity.cgroups.len(), 2);
        assert_eq!(cfg.issuers[0].providers, [super::Provider::Github]);
        assert!(cfg.identity.cgroups[1].matches("/k8s/pod/x"));
        assert!(!cfg.identity.cgroups[0].matches("/runners/a/b"));
        let d = Config::parse("", "t").unwrap();
        assert_eq!(
            (d.identity.audience.as_str(), d.identity.timeout_ms),
            ("hoop", 3000)
        );
    }

    #[test]
    fn bad_identity_keys_are_named() {
        assert!(invalid("[identity]\ntimeout = 1\n").contains("timeout"));
        assert!(
            invalid("[[issuer]]\nname='a'\nurl='https://a'\nproviders=['github']\nkey='x'\n")
                .contains("key")
        );
        assert!(
            invalid("[[issuer]]\nname='a'\nurl='https://a'\nproviders=['gitlab']\n")
                .contains("gitlab")
        );
        assert!(
            invalid("[[issuer]]\nname='a'\nurl='http://a'\nproviders=['github']\n")
                .contains("issuer[0].url")
        );
        assert!(
            invalid("[[issuer]]\nname='a'\nurl='https://a'\nproviders=[]\n")
                .contains("issuer[0].providers")
        );
        assert!(
            invalid("[[issuer]]\nname='a'\nurl='https://a'\nproviders=['github']\nalgorithms=['HS256']\n")
                .contains("issuer[0].algorithms[0]")
        );
        assert!(
            invalid(&format!("{ISSUER}{}", ISSUER.replace("'gh'", "'gh2'")))
                .contains("configured twice")
        );
        assert!(invalid("[identity]\ntimeout_ms = 0\n").contains("identity.timeout_ms"));
        assert!(invalid("[identity]\naudience = 'a b'\n").contains("identity.audience"));
        assert!(
            invalid("[[identity.cgroup]]\npath = '/x'\nname = 'a'\ntoken_file = '/t'\n")
                .contains("identity.cgroup[0].token_file")
        );
        assert!(
            invalid("[[identity.cgroup]]\npath = 'x'\nname = 'a'\n")
                .contains("identity.cgroup[0].path")
        );
        assert!(
            invalid("[[identity.cgroup]]\npath = '/x'\nname = 'a'\ncolour = 1\n")
                .contains("colour")
        );
    }
}

#[test]
fn token_request_hosts() {
    let cfg = super::config::IdentityConfig::default();
    for ok in [
        "pipelinesghubeus22.actions.githubusercontent.com",
        "PipelinesGHubEUS22.Actions.GitHubUserContent.com",
        "dev.azure.com",
        "contoso.visualstudio.com",
    ] {
        assert!(cfg.request_host_allowed(ok), "{ok}");
    }
    for refused in [
        "actions.githubusercontent.com",
        "evilactions.githubusercontent.com",
        "githubusercontent.com.evil.example",
        "dev.azure.com.evil.example",
        "visualstudio.com",
        "127.0.0.1",
        "localhost",
        "",
    ] {
        assert!(!cfg.request_host_allowed(refused), "{refused}");
    }
    let mut loopback = cfg.clone();
    loopback.request_hosts = vec!["127.0.0.1".into(), "::1".into()];
    assert!(loopback.request_host_allowed("127.0.0.1"));
    assert!(loopback.request_host_allowed("[::1]"));
    assert!(!loopback.request_host_allowed("127.0.0.2"));
    loopback.validate().unwrap();
    for bad in [
        "https://dev.azure.com",
        "dev.azure.com/x",
        "*",
        "*.",
        "a.*.com",
        ".x.com",
    ] {
        let mut c = cfg.clone();
        c.request_hosts = vec![bad.into()];
        let (key, _) = c.validate().unwrap_err();
        assert_eq!(key, "identity.request_hosts[0]", "{bad}");
    }
}

//! Validated claims → [`Identity`]: the provider's own claim names mapped to the provider-neutral
//! attributes policy rules use; every claim kept as it was (never the token).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Identity, IdentityKind, config::Provider, validate::Validated};

/// GitHub Actions claims taken as they are (their names are already the neutral ones).
const GITHUB: &[&str] = &[
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "repository_visibility",
    "ref",
    "ref_type",
    "sha",
    "workflow",
    "workflow_ref",
    "job_workflow_ref",
    "run_id",
    "run_number",
    "run_attempt",
    "actor",
    "actor_id",
    "environment",
    "event_name",
    "runner_environment",
];

pub fn identity(provider: Provider, v: Validated) -> Identity {
    let mut attributes = BTreeMap::new();
    match provider {
        Provider::Github => copy(&v.claims, GITHUB, &mut attributes),
        Provider::AzureDevops => azure_devops(&v.claims, &mut attributes),
        Provider::FederatedFile => kubernetes(&v.claims, &mut attributes),
        Provider::Generic => {}
    }
    attributes.insert("issuer_name".into(), v.issuer_name);
    if let Some(kid) = v.kid {
        attributes.insert("kid".into(), kid);
    }
    Identity {
        kind: IdentityKind::Oidc,
        provider: Some(provider.as_str().into()),
        issuer: Some(v.issuer_url),
        subject: v
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string),
        attributes,
        claims: v.claims,
        reason: None,
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn copy(claims: &Map<String, Value>, names: &[&str], out: &mut BTreeMap<String, String>) {
    for n in names {
        if let Some(s) = claims.get(*n).and_then(scalar) {
            out.insert((*n).to_string(), s);
        }
    }
}

/// Azure DevOps service-connection tokens name the connection in `sub`:
/// `sc://<organization>/<project>/<service connection>`.
fn azure_devops(claims: &Map<String, Value>, out: &mut BTreeMap<String, String>) {
    if let Some(sc) = claims
        .get("sub")
        .and_then(Value::as_str)
        .and_then(|s| s.strip_prefix("sc://"))
    {
        let mut p = sc.splitn(3, '/');
        for name in ["organization", "project", "service_connection"] {
            if let Some(v) = p.next().filter(|v| !v.is_empty()) {
                out.insert(name.into(), v.into());
            }
        }
    }
    copy(
        claims,
        &["pipeline", "pipeline_id", "run_id", "environment"],
        out,
    );
}

/// Kubernetes service-account tokens (AKS workload identity): the `kubernetes.io` claim, or
/// `sub` = `system:serviceaccount:<namespace>:<name>`.
fn kubernetes(claims: &Map<String, Value>, out: &mut BTreeMap<String, String>) {
    let k = &claims.get("kubernetes.io").cloned().unwrap_or(Value::Null);
    let pairs = [
        ("namespace", &k["namespace"]),
        ("service_account", &k["serviceaccount"]["name"]),
        ("pod", &k["pod"]["name"]),
    ];
    for (name, v) in pairs {
        if let Some(s) = scalar(v) {
            out.insert(name.into(), s);
        }
    }
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    if let Some(rest) = sub.strip_prefix("system:serviceaccount:")
        && let Some((ns, sa)) = rest.split_once(':')
    {
        out.entry("namespace".into()).or_insert_with(|| ns.into());
        out.entry("service_account".into())
            .or_insert_with(|| sa.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validated(claims: Value) -> Validated {
        Validated {
            issuer_url: "https://iss".into(),
            issuer_name: "i".into(),
            claims: claims.as_object().unwrap().clone(),
            exp: 0,
            kid: None,
        }
    }

    #[test]
    fn github_claims_become_attributes() {
        let id = identity(
            Provider::Github,
            validated(serde_json::json!({
                "sub": "repo:octo/app:ref:refs/heads/main", "repository": "octo/app",
                "ref": "refs/heads/main", "run_id": "42", "run_attempt": 1, "jti": "j1",
                "job_workflow_ref": "octo/app/.github/workflows/ci.yml@refs/heads/main"
            })),
        );
        assert_eq!(id.kind, IdentityKind::Oidc);
        assert_eq!(id.get("repository").as_deref(), Some("octo/app"));
        assert_eq!(id.get("run_attempt").as_deref(), Some("1"));
        assert_eq!(
            id.get("sub").as_deref(),
            Some("repo:octo/app:ref:refs/heads/main")
        );
        assert_eq!(id.get("jti").as_deref(), Some("j1"));
        assert!(id.get("job_workflow_ref").unwrap().contains("ci.yml"));
    }

    #[test]
    fn azure_devops_and_kubernetes_subjects() {
        let ado = identity(
            Provider::AzureDevops,
            validated(serde_json::json!({"sub": "sc://contoso/web/prod-db"})),
        );
        assert_eq!(ado.get("organization").as_deref(), Some("contoso"));
        assert_eq!(ado.get("project").as_deref(), Some("web"));
        assert_eq!(ado.get("service_connection").as_deref(), Some("prod-db"));
        let k8s = identity(
            Provider::FederatedFile,
            validated(serde_json::json!({
                "sub": "system:serviceaccount:ci:builder",
                "kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "builder"}, "pod": {"name": "p-1"}}
            })),
        );
        assert_eq!(k8s.get("namespace").as_deref(), Some("ci"));
        assert_eq!(k8s.get("service_account").as_deref(), Some("builder"));
        assert_eq!(k8s.get("pod").as_deref(), Some("p-1"));
    }
}

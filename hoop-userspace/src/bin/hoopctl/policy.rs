//! `hoopctl policy check [FILE]` and `hoopctl policy explain …`: work on the policy file alone,
//! no daemon needed (the same loader and engine hoopd uses).

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use clap::{Args as ClapArgs, Subcommand};
use hoop_userspace::{
    classify,
    config::Config,
    identity::{Identity, IdentityKind},
    policy::{self, PolicyState},
};

#[derive(Subcommand)]
pub enum Cmd {
    /// Validate a policy file (default: the configured one, else the built-in policy)
    Check { file: Option<PathBuf> },
    /// The decision and the rule for an identity, target and SQL text
    Explain(Explain),
}

#[derive(ClapArgs)]
pub struct Explain {
    /// Policy file [default: the configured one, else the built-in policy]
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Target name (its `deny_statements`/`review_statements` apply when it is configured)
    #[arg(long)]
    target: String,
    /// Protocol, when the target is not in the configuration
    #[arg(long, default_value = "postgres")]
    protocol: String,
    /// Identity as JSON: {"kind": "oidc"|"named"|"anonymous", "provider", "issuer", "subject",
    /// "attributes": {…}, "claims": {…}} [default: anonymous]
    #[arg(long)]
    identity: Option<String>,
    /// A claim or attribute, NAME=VALUE (repeatable; makes the identity `oidc` unless --identity
    /// says otherwise)
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    claims: Vec<String>,
    #[arg(long)]
    database: Option<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    exe: Option<String>,
    #[arg(long, default_value_t = 0)]
    uid: u32,
    /// Print the explanation as JSON
    #[arg(long)]
    json: bool,
    /// The SQL text (every statement in it is explained)
    sql: String,
}

pub fn run(cmd: &Cmd, config: impl Fn() -> Result<Config, String>) -> Result<ExitCode, String> {
    match cmd {
        Cmd::Check { file } => {
            let path = match file {
                Some(f) => Some(f.clone()),
                None => config()?.policy.file,
            };
            match PolicyState::load(path.as_deref()) {
                Ok(p) => {
                    for w in p.policy.warnings() {
                        eprintln!("warning: {w}");
                    }
                    println!(
                        "{}: ok ({} rules, mask profiles: {})",
                        p.policy.origin(),
                        p.policy.rule_names().count(),
                        p.policy
                            .mask_profiles()
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Explain(a) => explain(a, config),
    }
}

fn explain(a: &Explain, config: impl Fn() -> Result<Config, String>) -> Result<ExitCode, String> {
    let cfg = config().ok();
    let path = a
        .policy
        .clone()
        .or_else(|| cfg.as_ref().and_then(|c| c.policy.file.clone()));
    let state = PolicyState::load(path.as_deref()).map_err(|e| e.to_string())?;
    let identity = identity(a)?;
    let process = hoop_userspace::identity::ProcessFacts {
        uid: a.uid,
        exe: a.exe.clone(),
        ..Default::default()
    };
    let configured = cfg
        .as_ref()
        .and_then(|c| c.targets.iter().find(|t| t.name == a.target).cloned());
    let stmts = classify::classify(&a.sql);
    let mut out = Vec::new();
    for c in &stmts {
        let text = c.span.text(&a.sql);
        let shorthand = configured.as_ref().map(|t| {
            policy::decide(
                &state,
                &policy::Request {
                    target: t,
                    process: &process,
                    identity: &identity,
                    database: a.database.as_deref(),
                    user: a.user.as_deref(),
                    statement: c,
                },
            )
        });
        let objects: Vec<policy::Object<'_>> = c.objects.iter().map(policy::object).collect();
        let input = policy::Input {
            identity: &identity,
            exe: a.exe.as_deref(),
            uid: a.uid,
            target: &a.target,
            protocol: configured
                .as_ref()
                .map_or(a.protocol.as_str(), |t| t.protocol.as_str()),
            database: a.database.as_deref(),
            user: a.user.as_deref(),
            kind: c.kind.as_str(),
            inner: c.inner.map(|k| k.as_str()),
            objects: &objects,
            has_where: c.has_where,
        };
        let ex = state.policy.explain(&input);
        // a target shorthand decided before the policy
        let by_target = shorthand.filter(|d| d.rule.starts_with("target:"));
        if a.json {
            let mut v = serde_json::to_value(&ex).map_err(|e| e.to_string())?;
            v["statement"] = text.into();
            v["kind"] = c.kind.as_str().into();
            if let Some(d) = &by_target {
                v["decision"] = serde_json::to_value(d).map_err(|e| e.to_string())?;
            }
            out.push(v);
        } else {
            println!("statement: {text}");
            println!("kind:      {}", c.kind.as_str());
            match &by_target {
                Some(d) => {
                    println!("decision: {}", d.action.as_str());
                    println!(
                        "rule:     {} (the target's own list, before the policy)",
                        d.rule
                    );
                }
                None => print!("{ex}"),
            }
            println!();
        }
    }
    if a.json {
        println!("{}", serde_json::Value::Array(out));
    }
    Ok(ExitCode::SUCCESS)
}

fn identity(a: &Explain) -> Result<Identity, String> {
    let mut id = match &a.identity {
        None if a.claims.is_empty() => Identity::anonymous("given on the command line"),
        None => Identity {
            kind: IdentityKind::Oidc,
            reason: None,
            ..Identity::anonymous("")
        },
        Some(j) => {
            let v: serde_json::Value =
                serde_json::from_str(j).map_err(|e| format!("--identity: {e}"))?;
            let s = |k: &str| v[k].as_str().map(str::to_string);
            let kind = match v["kind"].as_str().unwrap_or("oidc") {
                "oidc" => IdentityKind::Oidc,
                "named" => IdentityKind::Named,
                "anonymous" => IdentityKind::Anonymous,
                other => return Err(format!("--identity: unknown kind {other:?}")),
            };
            let attributes: BTreeMap<String, String> = v["attributes"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            Identity {
                kind,
                provider: s("provider"),
                issuer: s("issuer"),
                subject: s("subject"),
                attributes,
                claims: v["claims"].as_object().cloned().unwrap_or_default(),
                reason: s("reason"),
            }
        }
    };
    for c in &a.claims {
        let (k, v) = c
            .split_once('=')
            .ok_or_else(|| format!("--claim {c:?}: want NAME=VALUE"))?;
        match k {
            "sub" | "subject" => id.subject = Some(v.into()),
            "iss" | "issuer" => id.issuer = Some(v.into()),
            "provider" => id.provider = Some(v.into()),
            _ => {
                id.claims.insert(k.into(), v.into());
            }
        }
    }
    Ok(id)
}

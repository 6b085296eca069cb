//! Workload identity end to end: the real npm `oidc-provider` over HTTPS on loopback as the
//! issuer (discovery, JWKS, signatures), a GitHub-Actions-style and an Azure-DevOps-style token
//! endpoint minting through it, real client processes in a cgroup with the CI variables in their
//! environment, connecting through the eBPF redirect to a `tcp` target; the identity is read back
//! from the `session.start` audit records and `hoopctl sessions --json`. Also: key rotation
//! mid-run (with the refetch rate limit), failures → anonymous with the reason and bounded delay,
//! the federated token file in another mount namespace, cgroup mappings, pid reuse. Root only.

use std::{
    process::{Command, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use hoop_tests::{Cgroup, Echo, Env, Hoopd, hoopctl_bin, json_lines, oidc::Issuer};
use libtest_mimic::Failed;
use serde_json::{Value, json};

const CLIENT: &str = env!("CARGO_BIN_EXE_hoop-test-client");
const ISSUER_PORT: u16 = 17591;
const ADMIN_PORT: u16 = 17592;
const BLACKHOLE_PORT: u16 = 17593;
const SC_ID: &str = "3f1c2b8e-0d6a-4b1e-9c1d-2a7b8e9f0a1b";
const GH_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
const GH_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
/// `[identity]` keys of most tests: a quick refetch so parallel suites never wait on it.
const ID: &str = "timeout_ms = 2000\njwks_refetch_interval_ms = 200\n";

struct Fixture {
    issuer: Issuer,
    /// Key rotation changes what every test's issuer signs with: one test at a time.
    serial: Mutex<()>,
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

/// A hoopd with a `tcp` echo target and the test issuer configured.
struct Node {
    env: Env,
    _echo: Echo,
    hoopd: Hoopd,
    addr: String,
}

fn node(fx: &Fixture, name: &str, listen: u16, target: u16, identity: &str, tail: &str) -> Node {
    let env = Env::new(name, listen);
    let echo = Echo::start(&format!("127.0.0.2:{target}"));
    let cfg = format!(
        "{}[identity]\nca = \"{ca}\"\nrequest_hosts = [\"127.0.0.1\"]\n{identity}\n\
         [[issuer]]\nname = \"test\"\nurl = \"{url}\"\nca = \"{ca}\"\n\
         providers = [\"github\", \"azure-devops\", \"federated-file\", \"generic\"]\n{tail}",
        env.config(&format!(
            "[[target]]\nname = \"echo\"\nprotocol = \"tcp\"\ncidrs = [\"127.0.0.2/32\"]\nports = [{target}]\n"
        )),
        ca = fx.issuer.ca().display(),
        url = fx.issuer.url(),
    );
    let hoopd = Hoopd::start(&env.write_config(&cfg), None);
    Node {
        env,
        _echo: echo,
        hoopd,
        addr: format!("127.0.0.2:{target}"),
    }
}

impl Node {
    /// The test client in the node's cgroup with exactly `vars` as its environment.
    fn client(&self, vars: &[(&str, &str)], extra: &[&str]) -> Output {
        client_in(&self.env.cgroup, &self.addr, vars, extra)
    }

    /// Identities of the sessions started so far, from the audit trail (`session.start`).
    fn starts(&self) -> Vec<Value> {
        let out = Command::new(hoopctl_bin())
            .args([
                "audit",
                "export",
                "--format",
                "jsonl",
                "--kind",
                "session.start",
                "--dir",
            ])
            .arg(self.env.dir.join("state/audit"))
            .output()
            .unwrap();
        json_lines(&out.stdout)
            .into_iter()
            .map(|r| r["event"].clone())
            .collect()
    }

    /// Waits until `n` sessions have started; returns their start records.
    fn wait_starts(&self, n: usize) -> Result<Vec<Value>, Failed> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.starts();
            if s.len() >= n {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} of {n} sessions: {s:?}\n{}",
                    s.len(),
                    self.hoopd.log_text()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every file of the audit directory (the write-ahead file too) and hoopd's log as one
    /// text (to prove no token reached them).
    fn audit_and_log(&self) -> String {
        self.hoopd.log_text() + &self.env.audit_files_text()
    }
}

fn client_in(cg: &Cgroup, addr: &str, vars: &[(&str, &str)], extra: &[&str]) -> Output {
    cg.command(CLIENT)
        .arg(addr)
        .arg("id")
        .args(extra)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

fn gh_vars<'a>(url: &'a str, token: &'a str) -> [(&'a str, &'a str); 2] {
    [(GH_URL, url), (GH_TOKEN, token)]
}

fn ok(out: &Output) -> Result<(), Failed> {
    check(out.status.success(), || {
        format!("client failed: {}", String::from_utf8_lossy(&out.stdout))
    })
}

fn github_claims() -> Value {
    json!({
        "repository": "octo/app", "repository_owner": "octo", "ref": "refs/heads/main",
        "workflow": "ci", "job_workflow_ref": "octo/app/.github/workflows/ci.yml@refs/heads/main",
        "run_id": "4242", "run_attempt": "1", "actor": "octocat", "environment": "prod",
        "event_name": "push",
    })
}

/// A GitHub Actions job: every connection of the job gets its validated identity (one token
/// request for all of them), a child that dropped the variables inherits it from its shell, the
/// live session shows it, and neither token reaches the log or the audit trail.
fn github_job(fx: &Fixture) -> Result<(), Failed> {
    let _one = fx.serial.lock().unwrap_or_else(|e| e.into_inner());
    let sub = "repo:octo/app:ref:refs/heads/main";
    fx.issuer
        .job("rt-gh-secret-1", sub, github_claims(), json!({}));
    let n = node(fx, "id-gh", 19401, 17501, ID, "");
    let url = fx.issuer.github_url();
    let vars = gh_vars(&url, "rt-gh-secret-1");
    let before = fx.issuer.stats()["gh"].as_u64().unwrap();
    ok(&n.client(&vars, &["--count", "3"]))?;
    ok(&n.client(&vars, &[]))?;
    let starts = n.wait_starts(4)?;
    for s in &starts {
        let id = &s["identity"];
        check(
            id["kind"] == "oidc"
                && id["provider"] == "github"
                && id["subject"] == sub
                && id["issuer"] == fx.issuer.url(),
            || format!("identity: {id}"),
        )?;
        let a = &id["attributes"];
        check(
            a["repository"] == "octo/app"
                && a["run_id"] == "4242"
                && a["actor"] == "octocat"
                && a["environment"] == "prod"
                && a["job_workflow_ref"]
                    .as_str()
                    .is_some_and(|w| w.contains("ci.yml")),
            || format!("attributes: {a}"),
        )?;
        check(
            id["claims"]["jti"].is_string() && id["claims"]["aud"] == "hoop",
            || format!("claims: {id}"),
        )?;
        check(
            s["process"]["exe"]
                .as_str()
                .is_some_and(|e| e.ends_with("hoop-test-client")),
            || s.to_string(),
        )?;
    }
    let took: Vec<u64> = n
        .hoopd
        .logs_matching(|v| v["message"] == "identity resolved")
        .iter()
        .filter_map(|v| v["elapsed_us"].as_u64())
        .collect();
    eprintln!("identity resolution (µs), first of the job then cached: {took:?}");
    let requests = fx.issuer.stats()["gh"].as_u64().unwrap() - before;
    check(requests == 1, || {
        format!("{requests} token requests for one job (cache per job)")
    })?;

    // the connecting process has no variables; its parent shell has them
    let script = format!(
        "env -u {GH_URL} -u {GH_TOKEN} {CLIENT} {} child; true",
        n.addr
    );
    let out = n
        .env
        .cgroup
        .command("sh")
        .args(["-c", &script])
        .env_clear()
        .envs(vars)
        .output()?;
    ok(&out)?;
    let s = n.wait_starts(5)?.pop().unwrap();
    let src = s["identity"]["attributes"]["source"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    check(
        s["identity"]["kind"] == "oidc"
            && src.contains(GH_URL)
            && !src.ends_with(&format!("pid {}", s["process"]["pid"])),
        || format!("ancestor's token not used: {s}"),
    )?;

    // live: hoopctl sessions --json
    let mut held = n
        .env
        .cgroup
        .command(CLIENT)
        .args([n.addr.as_str(), "held", "--wait-stdin"])
        .env_clear()
        .envs(vars)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    n.wait_starts(6)?;
    let out = Command::new(hoopctl_bin())
        .arg("--socket")
        .arg(n.env.socket())
        .args(["sessions", "--json"])
        .output()?;
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let _ = held.kill();
    let _ = held.wait();
    check(
        list[0]["identity"]["kind"] == "oidc"
            && list[0]["identity"]["subject"] == sub
            && list[0]["identity"]["attributes"]["repository"] == "octo/app",
        || format!("sessions --json: {list}"),
    )?;
    let text = n.audit_and_log();
    check(
        !text.contains("rt-gh-secret-1") && !text.contains("eyJ"),
        || "a request token or a JWT reached the log or the audit trail".into(),
    )
}

/// Azure DevOps: the service-connection OIDC request (POST, api-version 7.1, serviceConnectionId,
/// System.AccessToken as bearer) → the connection's organization/project/name; a token whose
/// audience is not ours is refused.
fn azure_devops_job(fx: &Fixture) -> Result<(), Failed> {
    let _one = fx.serial.lock().unwrap_or_else(|e| e.into_inner());
    let extra = json!({"service_connection": SC_ID, "aud": "hoop"});
    fx.issuer
        .job("at-ado-1", "sc://contoso/web/prod-db", json!({}), extra);
    let foreign = json!({"service_connection": SC_ID, "aud": "api://AzureADTokenExchange"});
    fx.issuer
        .job("at-ado-2", "sc://contoso/web/other", json!({}), foreign);
    let n = node(fx, "id-ado", 19402, 17502, ID, "");
    let uri = fx.issuer.ado_url();
    let vars = |tok| {
        [
            ("SYSTEM_OIDCREQUESTURI", uri.clone()),
            ("SYSTEM_ACCESSTOKEN", String::from(tok)),
            ("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", SC_ID.to_string()),
        ]
    };
    for tok in ["at-ado-1", "at-ado-2"] {
        let v = vars(tok);
        let v: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ok(&n.client(&v, &[]))?;
    }
    let s = n.wait_starts(2)?;
    let (good, bad) = (&s[0]["identity"], &s[1]["identity"]);
    let a = &good["attributes"];
    check(
        good["kind"] == "oidc"
            && good["provider"] == "azure-devops"
            && a["organization"] == "contoso"
            && a["project"] == "web"
            && a["service_connection"] == "prod-db",
        || format!("{good}"),
    )?;
    check(
        bad["kind"] == "anonymous"
            && bad["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("wrong audience")),
        || format!("{bad}"),
    )
}

/// Failures are anonymous with the reason; an issuer endpoint that never answers delays the
/// connection by at most the configured timeout.
fn failures_are_anonymous(fx: &Fixture) -> Result<(), Failed> {
    let _one = fx.serial.lock().unwrap_or_else(|e| e.into_inner());
    let n = node(fx, "id-fail", 19403, 17503, "timeout_ms = 1500\n", "");
    let hole = std::net::TcpListener::bind(("127.0.0.1", BLACKHOLE_PORT))?;
    let held = std::sync::Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for s in hole.incoming().flatten() {
            keep.lock().unwrap().push(s); // accepted, never answered
        }
    });
    let gh = fx.issuer.github_url();
    let cases: [(String, &str, &str); 5] = [
        (gh.clone(), "not-a-job", "token request failed"),
        (
            "https://127.0.0.1:1/token".into(),
            "t",
            "token request failed",
        ),
        (
            format!("https://127.0.0.1:{BLACKHOLE_PORT}/token"),
            "t",
            "timed out after 1500 ms",
        ),
        (String::new(), "only-the-token", "token source incomplete"),
        // a host outside `request_hosts` gets no request at all (the black hole would hold it)
        (
            format!("https://localhost:{BLACKHOLE_PORT}/token"),
            "t",
            "\"localhost\" is not an allowed token-request host",
        ),
    ];
    for (i, (url, tok, want)) in cases.iter().enumerate() {
        let t0 = Instant::now();
        let vars: Vec<(&str, &str)> = [(GH_URL, url.as_str()), (GH_TOKEN, *tok)]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let held_before = held.lock().unwrap().len();
        ok(&n.client(&vars, &[]))?;
        let took = t0.elapsed();
        if url.contains("localhost") {
            check(
                held.lock().unwrap().len() == held_before && took < Duration::from_millis(1000),
                || format!("a request went to a host not allowed ({took:?})"),
            )?;
        }
        let s = n.wait_starts(i + 1)?.pop().unwrap();
        let id = &s["identity"];
        check(
            id["kind"] == "anonymous" && id["reason"].as_str().is_some_and(|r| r.contains(want)),
            || format!("case {i}: {id}"),
        )?;
        check(took < Duration::from_millis(1500 + 2500), || {
            format!("case {i} took {took:?}")
        })?;
        if want.starts_with("timed out") {
            check(took >= Duration::from_millis(1400), || {
                format!("timeout case took {took:?}")
            })?;
        }
    }
    Ok(())
}

/// A new signing key mid-run: a token with the unknown kid does not refetch the keys within the
/// rate limit (anonymous, "unknown kid"), then does, and validates with the new key — no restart.
fn key_rotation(fx: &Fixture) -> Result<(), Failed> {
    let _one = fx.serial.lock().unwrap_or_else(|e| e.into_inner());
    fx.issuer.job(
        "rt-rot-1",
        "repo:octo/rot:ref:refs/heads/main",
        github_claims(),
        json!({}),
    );
    fx.issuer.job(
        "rt-rot-2",
        "repo:octo/rot2:ref:refs/heads/main",
        github_claims(),
        json!({}),
    );
    let n = node(
        fx,
        "id-rot",
        19404,
        17504,
        "timeout_ms = 2000\njwks_refetch_interval_ms = 3000\n",
        "",
    );
    let url = fx.issuer.github_url();
    let jwks = || fx.issuer.stats()["jwks"].as_u64().unwrap();
    let jwks0 = jwks();
    let t0 = Instant::now();
    ok(&n.client(&gh_vars(&url, "rt-rot-1"), &[]))?;
    let first = n.wait_starts(1)?.pop().unwrap()["identity"].clone();
    check(first["kind"] == "oidc", || format!("{first}"))?;
    let new_kid = fx.issuer.rotate(false);
    check(first["attributes"]["kid"] != new_kid.as_str(), || {
        format!("{first}")
    })?;
    ok(&n.client(&gh_vars(&url, "rt-rot-2"), &[]))?;
    let limited = n.wait_starts(2)?.pop().unwrap()["identity"].clone();
    check(
        t0.elapsed() < Duration::from_millis(2500)
            && limited["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("unknown kid \"{new_kid}\""))),
        || {
            format!(
                "within the refetch limit: {limited} after {:?}",
                t0.elapsed()
            )
        },
    )?;
    check(jwks() - jwks0 == 1, || {
        format!("{} JWKS fetches within the limit", jwks() - jwks0)
    })?;
    std::thread::sleep(Duration::from_millis(3200).saturating_sub(t0.elapsed()));
    ok(&n.client(&gh_vars(&url, "rt-rot-2"), &[]))?;
    ok(&n.client(&gh_vars(&url, "rt-rot-1"), &[]))?;
    let s = n.wait_starts(4)?;
    let (rotated, old) = (&s[2]["identity"], &s[3]["identity"]);
    check(
        rotated["kind"] == "oidc"
            && rotated["attributes"]["kid"] == new_kid.as_str()
            && rotated["subject"] == "repo:octo/rot2:ref:refs/heads/main",
        || format!("after rotation: {rotated}"),
    )?;
    check(
        old["kind"] == "oidc" && old["attributes"]["kid"] == first["attributes"]["kid"],
        || format!("old job: {old}"),
    )?;
    check(jwks() - jwks0 == 2, || {
        format!("{} JWKS fetches", jwks() - jwks0)
    })
}

mod process;

fn main() {
    hoop_tests::run_root_trials(
        || Fixture {
            issuer: Issuer::start(ISSUER_PORT, ADMIN_PORT),
            serial: Mutex::new(()),
        },
        &[
            ("identity_github_job", github_job),
            ("identity_azure_devops_job", azure_devops_job),
            ("identity_failures_are_anonymous", failures_are_anonymous),
            ("identity_key_rotation", key_rotation),
            (
                "identity_federated_token_file",
                process::federated_token_file,
            ),
            ("identity_cgroup_mapping", process::cgroup_mapping),
            (
                "identity_pid_reuse_not_attributed",
                process::pid_reuse_not_attributed,
            ),
        ],
    )
}

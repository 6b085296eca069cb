//! Policy and real-time masking end to end: psql (text results) and tokio-postgres (binary
//! results) in an intercepted cgroup, a real PostgreSQL 15 behind hoopd. Root only (eBPF):
//! without it every test is reported ignored.

use std::process::Command;

use hoop_tests::{
    Env, Hoopd,
    pg::{self, Postgres},
};
use libtest_mimic::Failed;
use serde_json::Value;

const PG_CLIENT: &str = env!("CARGO_BIN_EXE_hoop-pg-client");
const PG_RAW: &str = env!("CARGO_BIN_EXE_hoop-pg-raw");
const HOST: &str = "127.0.0.2";
const PORT: u16 = 17310;

/// Values that must never leave hoopd unmasked (in results, the audit trail or the log).
const EMAIL: &str = "alice.liddell@example.com";
const CARD: &str = "4111 1111 1111 1111";
const PASSWORD: &str = "correct-horse-battery";
const TOKEN: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

struct Node {
    env: Env,
    hoopd: Hoopd,
}

impl Node {
    fn start(name: &str, listen: u16, pg: &Postgres, extra: &str) -> Self {
        Self::start_with_policy(name, listen, pg, extra, Some(hoop_tests::PERMISSIVE_POLICY))
    }

    /// `policy`: the policy file's text; `None`: no `[policy]` at all (the built-in policy).
    fn start_with_policy(
        name: &str,
        listen: u16,
        pg: &Postgres,
        extra: &str,
        policy: Option<&str>,
    ) -> Self {
        Self::start_full(name, listen, pg, extra, policy, "")
    }

    /// [`Self::start_with_policy`] with more keys in the `[[target]]` (`in_target`).
    fn start_full(
        name: &str,
        listen: u16,
        pg: &Postgres,
        extra: &str,
        policy: Option<&str>,
        in_target: &str,
    ) -> Self {
        let env = Env::new(name, listen);
        let target = format!(
            "{extra}\n[[target]]\nname = \"pg\"\nprotocol = \"postgres\"\ncidrs = [\"{HOST}/32\"]\nports = [{PORT}]\n\
             upstream_ca = \"{}\"\n{in_target}\n",
            pg.ca_path().display()
        );
        let mut text = env.config(&target);
        match policy {
            Some(p) => std::fs::write(env.policy_path(), p).unwrap(),
            None => {
                let line = format!("[policy]\nfile = \"{}\"\n", env.policy_path().display());
                assert!(text.contains(&line));
                text = text.replace(&line, "");
            }
        }
        let cfg = env.write_config(&text);
        let hoopd = Hoopd::start(&cfg, None);
        Self { env, hoopd }
    }

    fn hoopctl(&self, args: &[&str]) -> (i32, String, String) {
        self.env.hoopctl(args)
    }

    /// Approves the first pending approval within 10 s; its statement text.
    fn approve_next(&self) -> Result<String, Failed> {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(a) = self.env.approvals().first() {
                let id = a["id"].as_str().unwrap_or_default();
                let (code, _, err) = self.hoopctl(&["approve", id, "--reason", "policy test"]);
                check(code == 0, || err)?;
                return Ok(a["statement"].as_str().unwrap_or_default().to_string());
            }
            check(std::time::Instant::now() < end, || "nothing held".into())?;
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn psql(&self, sql: &str) -> (bool, String, String) {
        self.psql_with_env(sql, &[])
    }

    /// `psql` with more environment (e.g. `PGOPTIONS`).
    fn psql_with_env(&self, sql: &str, env: &[(&str, &str)]) -> (bool, String, String) {
        let out = self
            .env
            .cgroup
            .command("psql")
            .arg(format!(
                "host={HOST} port={PORT} user=postgres dbname=postgres sslmode=require"
            ))
            .args(["-X", "-At", "-v", "VERBOSITY=verbose", "-c", sql])
            .env("PGPASSWORD", pg::PASSWORD)
            .envs(env.iter().copied())
            .output()
            .expect("psql");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn pg_client(&self, scenario: &str) -> Vec<Value> {
        let out = self
            .env
            .cgroup
            .command(PG_CLIENT)
            .arg(format!(
                "host={HOST} port={PORT} user=postgres password={} dbname=postgres sslmode=require",
                pg::PASSWORD
            ))
            .arg(self.env.dir.join("state/ca/ca.crt"))
            .arg(scenario)
            .output()
            .expect("hoop-pg-client");
        hoop_tests::json_lines(&out.stdout)
    }

    /// `hoop-pg-raw` through hoopd (fast-path calls, extended-protocol messages in any order):
    /// its JSON lines.
    fn raw(&self, steps: &[&str]) -> Vec<Value> {
        let out = self
            .env
            .cgroup
            .command(PG_RAW)
            .args([&format!("{HOST}:{PORT}"), "postgres", pg::PASSWORD])
            .args(steps)
            .output()
            .expect("hoop-pg-raw");
        hoop_tests::json_lines(&out.stdout)
    }

    /// The audit trail's request records (`pg.request`) that `keep` holds for, once what the
    /// requests just sent wrote has reached the segment files.
    fn request_records_where(&self, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        std::thread::sleep(std::time::Duration::from_millis(300));
        self.env
            .audit_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] == "pg.request" && keep(r))
            .collect()
    }

    /// hoopd's log and the audit trail's records (the segment files).
    fn all_output(&self) -> String {
        self.hoopd.log_text() + &self.env.audit_lines().join("\n")
    }

    /// hoopd's log and every file of the audit directory, byte for byte (the write-ahead file
    /// too): where a secret must never be found.
    fn everything_written(&self) -> String {
        self.hoopd.log_text() + &self.env.audit_files_text()
    }
}

mod fastpath;
mod masking;
mod prepared;
mod startup;

/// The built-in policy (no `[policy]` configured) for an anonymous workload: reads allowed and
/// masked, DROP denied naming the rule, other writes held for approval (and run once approved).
fn builtin_policy_anonymous(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start_with_policy("pol-builtin", 19504, pg, "", None);
    let (ok, out, err) = n.psql("SELECT email FROM mask_t");
    check(ok && out.trim() == "****@example.com", || {
        format!("{out} {err}")
    })?;
    let (ok, _, err) = n.psql("DROP TABLE mask_t");
    check(
        !ok && err.contains("42501") && err.contains("deny-drop"),
        || format!("DROP not denied by deny-drop: {err}"),
    )?;
    pg.psql_direct("DROP TABLE IF EXISTS pol_builtin");
    let psql = n
        .env
        .cgroup
        .command("psql")
        .arg(format!(
            "host={HOST} port={PORT} user=postgres dbname=postgres sslmode=require"
        ))
        .args(["-XAtc", "CREATE TABLE pol_builtin (i int)"])
        .env("PGPASSWORD", pg::PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let held = n.approve_next()?;
    let out = psql.wait_with_output()?;
    check(
        held == "CREATE TABLE pol_builtin (i int)" && out.status.success(),
        || format!("{held}: {}", String::from_utf8_lossy(&out.stderr)),
    )?;
    check(
        String::from_utf8_lossy(&out.stderr).contains("review-anonymous"),
        || "the notice does not name the rule".into(),
    )?;
    let exists = pg.psql_direct("SELECT to_regclass('pol_builtin') IS NOT NULL");
    check(exists.trim() == "t", || {
        "approved CREATE did not run".into()
    })?;
    pg.psql_direct("DROP TABLE IF EXISTS pol_builtin");
    Ok(())
}

const RULES: &str = r#"
[defaults]
action = "deny"

[mask_profiles.emails_only]
detectors = ["email"]
default_columns = false

[[rule]]
name = "no-secrets"
action = "deny"
objects = ["secrets.*"]

[[rule]]
name = "reads-unmasked-for-postgres"
action = "allow"
statements = ["select"]
user = "postgres"
database = "postgres"
mask = "emails_only"

[[rule]]
name = "writes-to-scratch"
action = "allow"
statements = ["insert", "create"]
objects = ["public.scratch_*"]
"#;

/// Rules by statement kind, by table, by database user; a named masking profile; the fallback.
fn rules_by_kind_table_and_profile(pg: &Postgres) -> Result<(), Failed> {
    pg.psql_direct(
        "CREATE SCHEMA IF NOT EXISTS secrets; CREATE TABLE IF NOT EXISTS secrets.keys (k text); \
         DROP TABLE IF EXISTS scratch_t",
    );
    let n = Node::start_with_policy("pol-rules", 19505, pg, "", Some(RULES));
    let (ok, _, err) = n.psql("SELECT * FROM secrets.keys");
    check(
        !ok && err.contains("42501") && err.contains("no-secrets"),
        || err.clone(),
    )?;
    // the profile masks e-mails only: the card and the password column pass
    // an unqualified name could resolve into `secrets` (search_path): doubt denies
    let (ok, _, err) = n.psql("SELECT email FROM mask_t");
    check(!ok && err.contains("no-secrets"), || err.clone())?;
    let (ok, out, err) = n.psql("SELECT email, card, password FROM public.mask_t");
    check(
        ok && out.trim() == format!("****@example.com|{CARD}|{PASSWORD}"),
        || format!("{out} {err}"),
    )?;
    let (ok, _, err) = n.psql("CREATE TABLE public.scratch_t (i int)");
    check(ok, || err.clone())?;
    let (ok, _, err) = n.psql("INSERT INTO public.scratch_t VALUES (1)");
    check(ok, || err.clone())?;
    let (ok, _, err) = n.psql("INSERT INTO public.mask_t (id) VALUES (99)");
    check(!ok && err.contains("default:deny"), || err.clone())?;
    // a write to scratch carrying a write elsewhere is not allowed by the scratch rule
    let (ok, _, err) = n.psql(
        "WITH x AS (DELETE FROM public.mask_t WHERE id = 99 RETURNING id) INSERT INTO public.scratch_t SELECT id FROM x",
    );
    check(!ok && err.contains("42501"), || err.clone())?;
    let count = pg.psql_direct("SELECT count(*) FROM scratch_t");
    check(count.trim() == "1", || count.clone())?;
    pg.psql_direct("DROP TABLE IF EXISTS scratch_t");
    Ok(())
}

/// SIGHUP reloads the policy under a live session (its next statement obeys the new one); a
/// bad file keeps the policy in force and the log says why.
fn reload_live(pg: &Postgres) -> Result<(), Failed> {
    use std::io::Write;
    let n = Node::start("pol-reload", 19506, pg, "");
    let mut psql = n
        .env
        .cgroup
        .command("psql")
        .arg(format!(
            "host={HOST} port={PORT} user=postgres dbname=postgres sslmode=require"
        ))
        .args(["-XAt"])
        .env("PGPASSWORD", pg::PASSWORD)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = psql.stdin.take().unwrap();
    let requests = |n: &Node| {
        n.all_output()
            .lines()
            .filter(|l| l.contains("\"kind\":\"pg.request\""))
            .count()
    };
    let wait = |what: &dyn Fn() -> bool| {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !what() && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        what()
    };
    writeln!(stdin, "SELECT 'one';")?;
    check(wait(&|| requests(&n) == 1), || {
        "first statement not seen".into()
    })?;
    std::fs::write(
        n.env.policy_path(),
        "[defaults]\naction = \"allow\"\n[[rule]]\nname = \"no-selects-now\"\naction = \"deny\"\nstatements = [\"select\"]\n",
    )?;
    n.hoopd.signal(libc::SIGHUP);
    check(
        wait(&|| n.hoopd.log_text().contains("policy reloaded")),
        || n.hoopd.log_text(),
    )?;
    writeln!(stdin, "SELECT 'two';")?;
    check(wait(&|| requests(&n) == 2), || {
        "second statement not seen".into()
    })?;
    std::fs::write(
        n.env.policy_path(),
        "[[rule]]\nname = \"broken\"\naction = \"maybe\"\n",
    )?;
    n.hoopd.signal(libc::SIGHUP);
    check(
        wait(&|| n.hoopd.log_text().contains("policy reload failed")),
        || n.hoopd.log_text(),
    )?;
    writeln!(stdin, "SELECT 'three';")?;
    drop(stdin);
    let out = psql.wait_with_output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    check(stdout.trim() == "one", || format!("{stdout}\n{stderr}"))?;
    check(stderr.matches("no-selects-now").count() == 2, || {
        format!("old policy not kept after a bad reload: {stderr}")
    })?;
    let all = n.all_output();
    check(
        all.matches("\"kind\":\"session.start\"").count() == 1
            && all.contains("\"kind\":\"policy.reload\"")
            && all.contains("\"ok\":false"),
        || "reload not audited, or the session was not the same".into(),
    )
}

/// `hoopctl policy check` names the line and rule of each problem; `hoopd check-config` refuses
/// a configuration whose policy is bad (exit 64); `policy explain` names the deciding rule.
fn check_and_explain(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("pol-check", 19507, pg, "");
    let bad = n.env.dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nname = \"a\"\naction = \"deny\"\nstatements = [\"dorp\"]\n\n[[rule]]\nname = \"a\"\naction = \"allow\"\n",
    )?;
    let (code, _, err) = n.hoopctl(&["policy", "check", bad.to_str().unwrap()]);
    check(
        code == 1
            && err.contains("bad.toml:4:")
            && err.contains("dorp")
            && err.contains("duplicate"),
        || format!("{code}: {err}"),
    )?;
    let (code, out, err) = n.hoopctl(&["policy", "check"]);
    check(code == 0 && out.contains("ok"), || format!("{out} {err}"))?;
    // a config pointing at the bad file does not pass check-config
    let cfg = std::fs::read_to_string(n.env.dir.join("hoop.toml"))?.replace(
        &n.env.policy_path().display().to_string(),
        &bad.display().to_string(),
    );
    let cfg_path = n.env.dir.join("bad-config.toml");
    std::fs::write(&cfg_path, cfg)?;
    let st = Command::new(hoop_tests::hoopd_bin())
        .arg("--config")
        .arg(&cfg_path)
        .arg("check-config")
        .output()?;
    check(
        st.status.code() == Some(64) && String::from_utf8_lossy(&st.stderr).contains("dorp"),
        || format!("{st:?}"),
    )?;
    // explain against the built-in policy
    let builtin = n.env.dir.join("builtin.toml");
    std::fs::write(
        &builtin,
        include_str!("../../../hoop-userspace/src/policy/default.toml"),
    )?;
    let (code, out, err) = n.hoopctl(&[
        "policy",
        "explain",
        "--policy",
        builtin.to_str().unwrap(),
        "--target",
        "other",
        "DELETE FROM t; SELECT 1",
    ]);
    check(
        code == 0
            && out.contains("decision: review")
            && out.contains("review-without-where")
            && out.contains("decision: allow"),
        || format!("{out} {err}"),
    )?;
    let (code, out, _) = n.hoopctl(&[
        "policy",
        "explain",
        "--policy",
        builtin.to_str().unwrap(),
        "--target",
        "other",
        "--json",
        "DROP TABLE t",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap_or_default();
    check(
        code == 0
            && v[0]["decision"]["action"] == "deny"
            && v[0]["decision"]["rule"] == "deny-drop",
        || out.clone(),
    )
}

/// Rules on workload identity, with tokens from the real OIDC provider: the main branch of one
/// repository may write, other jobs may only read, anonymous callers get nothing.
fn identity_rules(pg: &Postgres) -> Result<(), Failed> {
    use hoop_tests::oidc::Issuer;
    let issuer = Issuer::start(17597, 17598);
    let claims = |repo: &str, r#ref: &str| {
        serde_json::json!({"repository": repo, "ref": r#ref, "workflow": "ci", "actor": "octocat",
                           "run_id": "7", "environment": "prod"})
    };
    issuer.job(
        "rt-pol-main",
        "repo:acme/api:ref:refs/heads/main",
        claims("acme/api", "refs/heads/main"),
        serde_json::json!({}),
    );
    issuer.job(
        "rt-pol-pr",
        "repo:acme/api:pull_request",
        claims("acme/api", "refs/pull/9/merge"),
        serde_json::json!({}),
    );
    let policy = r#"
[defaults]
action = "deny"
mask = "default"

[[rule]]
name = "api-main-writes"
action = "allow"
identity = { kind = "oidc", repository = "acme/api", ref = "refs/heads/main" }

[[rule]]
name = "ci-reads"
action = "allow"
identity = { kind = "oidc", repository = "acme/*" }
statements = ["select"]
"#;
    let extra = format!(
        "[identity]\nca = \"{ca}\"\nrequest_hosts = [\"127.0.0.1\"]\n[[issuer]]\nname = \"test\"\nurl = \"{url}\"\nca = \"{ca}\"\nproviders = [\"github\"]\n",
        ca = issuer.ca().display(),
        url = issuer.url()
    );
    pg.psql_direct("DROP TABLE IF EXISTS public.id_t; CREATE TABLE public.id_t (i int)");
    let n = Node::start_with_policy("pol-identity", 19508, pg, &extra, Some(policy));
    let run = |token: Option<&str>, sql: &str| {
        let mut c = n.env.cgroup.command("psql");
        c.arg(format!(
            "host={HOST} port={PORT} user=postgres dbname=postgres sslmode=require"
        ))
        .args(["-XAt", "-v", "VERBOSITY=verbose", "-c", sql])
        .env("PGPASSWORD", pg::PASSWORD)
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
        if let Some(t) = token {
            c.env("ACTIONS_ID_TOKEN_REQUEST_URL", issuer.github_url())
                .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", t);
        }
        let out = c.output().expect("psql");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(Some("rt-pol-main"), "INSERT INTO public.id_t VALUES (1)");
    check(ok, || format!("main branch job refused: {err}"))?;
    let (ok, _, err) = run(Some("rt-pol-pr"), "INSERT INTO public.id_t VALUES (2)");
    check(
        !ok && err.contains("42501") && err.contains("default:deny"),
        || err.clone(),
    )?;
    let (ok, out, err) = run(Some("rt-pol-pr"), "SELECT count(*) FROM public.id_t");
    check(ok && out.trim() == "1", || {
        format!("pull-request job cannot read: {err}")
    })?;
    let (ok, _, err) = run(None, "SELECT count(*) FROM public.id_t");
    check(!ok && err.contains("default:deny"), || {
        format!("anonymous read allowed: {err}")
    })?;
    // every decision names its rule, with the identity on the session's records
    let all = n.all_output();
    check(
        all.contains("\"rule\":\"api-main-writes\"")
            && all.contains("\"rule\":\"ci-reads\"")
            && all.contains("repo:acme/api:ref:refs/heads/main")
            && !all.contains("rt-pol-main"),
        || {
            "decisions or identities missing from the audit trail (or a request token leaked)"
                .into()
        },
    )?;
    pg.psql_direct("DROP TABLE IF EXISTS public.id_t");
    Ok(())
}

fn main() {
    hoop_tests::run_root_trials(
        || {
            let pg = Postgres::start("policy", HOST, PORT);
            // read-only for the tests (they run in parallel)
            masking::mask_table(&pg);
            pg
        },
        &[
            ("text_results_masked", masking::text_results_masked),
            ("binary_results_masked", masking::binary_results_masked),
            ("copy_out_masked", masking::copy_out_masked),
            ("undescribed_rows_masked", masking::undescribed_rows_masked),
            ("builtin_policy_anonymous", builtin_policy_anonymous),
            (
                "rules_by_kind_table_and_profile",
                rules_by_kind_table_and_profile,
            ),
            ("reload_live", reload_live),
            ("check_and_explain", check_and_explain),
            ("identity_rules", identity_rules),
            ("fastpath_calls", fastpath::fastpath_calls),
            ("startup_role_decided", startup::startup_role_decided),
            (
                "prepared_statements_decided",
                prepared::prepared_statements_decided,
            ),
            (
                "cursors_read_as_declared",
                prepared::cursors_read_as_declared,
            ),
        ],
    )
}

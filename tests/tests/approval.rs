//! Per-statement human approval inside live PostgreSQL sessions, end to end: psql and
//! tokio-postgres in an intercepted cgroup, a real PostgreSQL 15 behind hoopd, operators deciding
//! with `hoopctl approvals|approve|deny` on the control socket. Root only (eBPF): without it every
//! test is reported ignored.

use std::{
    io::Read,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use hoop_tests::{
    Env, Hoopd, hoopctl_bin,
    pg::{self, Postgres},
};
use libtest_mimic::Failed;
use serde_json::Value;

const PG_CLIENT: &str = env!("CARGO_BIN_EXE_hoop-pg-client");
const HOST: &str = "127.0.0.2";
const PORT: u16 = 17300;

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

struct Node {
    env: Env,
    hoopd: Hoopd,
}

impl Node {
    /// hoopd protecting the server; DELETE statements go to review.
    fn start(name: &str, listen: u16, pg: &Postgres, extra: &str) -> Self {
        let env = Env::new(name, listen);
        let target = format!(
            "{extra}\n[[target]]\nname = \"pg\"\nprotocol = \"postgres\"\ncidrs = [\"{HOST}/32\"]\nports = [{PORT}]\n\
             upstream_ca = \"{}\"\nreview_statements = [\"delete\"]\n",
            pg.ca_path().display()
        );
        let cfg = env.write_config(&env.config(&target));
        let hoopd = Hoopd::start(&cfg, None);
        Self { env, hoopd }
    }

    /// psql in the intercepted cgroup, running `script` from stdin, in the background.
    fn psql_spawn(&self, script: &str) -> Psql {
        let mut c = self
            .env
            .cgroup
            .command("psql")
            .arg(format!(
                "host={HOST} port={PORT} user=postgres dbname=postgres sslmode=require"
            ))
            .args(["-X", "-At", "-v", "VERBOSITY=verbose"])
            .env("PGPASSWORD", pg::PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql");
        use std::io::Write;
        let mut stdin = c.stdin.take().unwrap();
        stdin.write_all(script.as_bytes()).unwrap();
        Psql(c)
    }

    fn hoopctl(&self, args: &[&str]) -> (i32, String, String) {
        self.env.hoopctl(args)
    }

    fn approvals(&self) -> Vec<Value> {
        self.env.approvals()
    }

    /// Waits until `n` approvals are pending; returns them.
    fn wait_pending(&self, n: usize) -> Result<Vec<Value>, Failed> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let a = self.approvals();
            if a.len() >= n {
                return Ok(a);
            }
            if Instant::now() > end {
                return Err(format!(
                    "{} approvals pending, wanted {n}: {}",
                    a.len(),
                    self.hoopd.log_text()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn records(&self, kind: &str) -> Vec<Value> {
        self.env.audit_events(kind)
    }
}

/// A psql run in the background; killed and reaped if a check returns before it is finished.
struct Psql(Child);

impl Drop for Psql {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn finish(mut p: Psql, within: Duration) -> Result<(bool, String, String), Failed> {
    let c = &mut p.0;
    drop(c.stdin.take());
    let end = Instant::now() + within;
    loop {
        if let Some(st) = c.try_wait()? {
            let mut out = String::new();
            let mut err = String::new();
            c.stdout.take().unwrap().read_to_string(&mut out)?;
            c.stderr.take().unwrap().read_to_string(&mut err)?;
            return Ok((st.success(), out, err));
        }
        if Instant::now() > end {
            // killed and reaped by the drop
            return Err("client did not finish".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn table(pg: &Postgres, name: &str, rows: usize) {
    pg.psql_direct(&format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (i int); INSERT INTO {name} SELECT generate_series(1, {rows})"
    ));
}

fn count(pg: &Postgres, name: &str) -> String {
    pg.psql_direct(&format!("SELECT count(*) FROM {name}"))
        .trim()
        .to_string()
}

/// A held DELETE: the client is told at once, the operator sees who/what/which rule, an agent
/// cannot approve its own request, and the approved statement runs exactly once — recorded with
/// the approver and reason.
fn approved_runs_once(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("appr-ok", 19401, pg, "");
    table(pg, "appr_ok", 3);
    let psql = n.psql_spawn(
        "SELECT 'before';\nDELETE FROM appr_ok;\nSELECT 'after', count(*) FROM appr_ok;\n",
    );
    let pending = n.wait_pending(1)?;
    let a = &pending[0];
    for k in [
        "id",
        "session",
        "identity",
        "target",
        "statement",
        "rule",
        "expires_at",
    ] {
        check(!a[k].is_null(), || format!("approval lacks {k}: {a}"))?;
    }
    check(
        a["statement"] == "DELETE FROM appr_ok;"
            && a["rule"] == "target:pg/review_statements:delete"
            && a["target"] == "pg"
            && a["identity"]["kind"] == "anonymous"
            && a["process"]["exe"]
                .as_str()
                .is_some_and(|e| e.ends_with("psql"))
            && a["classification"][0]["has_where"] == false,
        || format!("{a}"),
    )?;
    check(count(pg, "appr_ok") == "3", || "ran before approval".into())?;
    let id = a["id"].as_str().unwrap().to_string();
    // the agent's own cgroup may not approve
    let own = n
        .env
        .cgroup
        .command(hoopctl_bin())
        .arg("--socket")
        .arg(n.env.socket())
        .args(["approve", &id, "--reason", "self-service"])
        .output()?;
    check(
        !own.status.success() && String::from_utf8_lossy(&own.stderr).contains("not authorised"),
        || format!("agent approved itself: {own:?}"),
    )?;
    check(n.approvals().len() == 1, || {
        "self-approval changed state".into()
    })?;
    let (code, _, err) = n.hoopctl(&["approve", &id, "--reason", " "]);
    check(code != 0 && err.contains("reason"), || {
        format!("empty reason accepted: {err}")
    })?;
    let (table_code, table_out, _) = n.hoopctl(&["approvals"]);
    check(
        table_code == 0 && table_out.contains(&id) && table_out.contains("DELETE FROM appr_ok"),
        || table_out.clone(),
    )?;
    let (code, out, err) = n.hoopctl(&["approve", &id[..13], "--reason", "ticket OPS-1"]);
    check(
        code == 0 && out.contains("approved") && out.contains(&id),
        || format!("{out} {err}"),
    )?;
    let (ok, out, err) = finish(psql, Duration::from_secs(10))?;
    check(
        ok && out.contains("before") && out.contains("after|0"),
        || format!("{out}\n{err}"),
    )?;
    check(
        err.contains(&format!("hoop: statement held for approval {id}")),
        || format!("no notice: {err}"),
    )?;
    check(count(pg, "appr_ok") == "0", || {
        "approved delete did not run".into()
    })?;
    // exactly once: a second verdict is refused
    let (code, _, err) = n.hoopctl(&["approve", &id, "--reason", "again"]);
    check(code != 0 && err.contains("no pending approval"), || {
        err.clone()
    })?;
    let reqs = n.records("approval.request");
    let decs = n.records("approval.decision");
    check(
        reqs.len() == 1 && reqs[0]["approval"] == id.as_str(),
        || format!("{reqs:?}"),
    )?;
    check(
        decs.len() == 1
            && decs[0]["outcome"] == "approved"
            && decs[0]["reason"] == "ticket OPS-1"
            && decs[0]["by"]["uid"] == 0,
        || format!("{decs:?}"),
    )?;
    let deletes: Vec<_> = n
        .records("pg.request")
        .into_iter()
        .filter(|r| r["statements"][0]["kind"] == "delete")
        .collect();
    check(
        deletes.len() == 1 && deletes[0]["decision"] == "review",
        || format!("{deletes:?}"),
    )?;
    Ok(())
}

/// Denied inside a transaction: 42501 with the approver's reason, the transaction aborted as
/// PostgreSQL would, nothing deleted, the session usable afterwards.
fn denied_in_transaction(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("appr-deny", 19402, pg, "");
    table(pg, "appr_deny", 2);
    let psql = n.psql_spawn(
        "BEGIN;\nINSERT INTO appr_deny VALUES (10);\nDELETE FROM appr_deny WHERE i = 1;\nSELECT 1;\nCOMMIT;\nSELECT 'usable', count(*) FROM appr_deny;\n",
    );
    let pending = n.wait_pending(1)?;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    let (code, out, err) = n.hoopctl(&["deny", &id, "--reason", "not during business hours"]);
    check(code == 0 && out.contains("denied"), || {
        format!("{out} {err}")
    })?;
    let (_, out, err) = finish(psql, Duration::from_secs(10))?;
    check(
        err.contains("42501") && err.contains("not during business hours") && err.contains("25P02"),
        || format!("{out}\n{err}"),
    )?;
    check(!err.contains("PL/pgSQL"), || err.clone())?;
    check(out.contains("usable|2"), || format!("{out}\n{err}"))?;
    check(count(pg, "appr_deny") == "2", || {
        "denied delete ran or insert committed".into()
    })?;
    let decs = n.records("approval.decision");
    check(
        decs.len() == 1
            && decs[0]["outcome"] == "denied"
            && decs[0]["reason"] == "not during business hours",
        || format!("{decs:?}"),
    )
}

/// Nobody decides: the approval expires into a denial; the session goes on.
fn expired_is_denied(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("appr-exp", 19403, pg, "[approval]\ntimeout_s = 2");
    table(pg, "appr_exp", 1);
    let t = Instant::now();
    let psql = n.psql_spawn("DELETE FROM appr_exp;\nSELECT 'usable';\n");
    let (_, out, err) = finish(psql, Duration::from_secs(15))?;
    check(t.elapsed() >= Duration::from_secs(2), || {
        "expired too early".into()
    })?;
    check(
        err.contains("42501") && err.contains("expired after 2s"),
        || err.clone(),
    )?;
    check(out.contains("usable"), || format!("{out}\n{err}"))?;
    check(count(pg, "appr_exp") == "1", || "expired delete ran".into())?;
    check(n.approvals().is_empty(), || {
        "expired approval still listed".into()
    })?;
    let decs = n.records("approval.decision");
    check(decs.len() == 1 && decs[0]["outcome"] == "expired", || {
        format!("{decs:?}")
    })
}

/// The client goes away while waiting: the request is withdrawn, a late approval is refused,
/// and nothing runs.
fn client_gone_withdraws(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("appr-gone", 19404, pg, "");
    table(pg, "appr_gone", 1);
    let mut psql = n.psql_spawn("DELETE FROM appr_gone;\n");
    let pending = n.wait_pending(1)?;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    psql.0.kill()?;
    psql.0.wait()?;
    let end = Instant::now() + Duration::from_secs(5);
    while !n.approvals().is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    check(n.approvals().is_empty(), || {
        "withdrawn approval still listed".into()
    })?;
    let (code, _, err) = n.hoopctl(&["approve", &id, "--reason", "late"]);
    check(code != 0 && err.contains("no pending approval"), || {
        err.clone()
    })?;
    std::thread::sleep(Duration::from_millis(300));
    check(count(pg, "appr_gone") == "1", || {
        "withdrawn delete ran".into()
    })?;
    let decs = n.records("approval.decision");
    check(decs.len() == 1 && decs[0]["outcome"] == "withdrawn", || {
        format!("{decs:?}")
    })
}

/// Extended protocol (tokio-postgres, binary parameters): every execution of a reviewed
/// prepared statement is approved on its own; approved ones run once each, a denied one fails
/// and the connection stays usable.
fn extended_protocol(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("appr-ext", 19405, pg, "");
    table(pg, "appr_ext", 5);
    let client = n
        .env
        .cgroup
        .command(PG_CLIENT)
        .arg(format!(
            "host={HOST} port={PORT} user=postgres password={} dbname=postgres sslmode=require",
            pg::PASSWORD
        ))
        .arg(n.env.dir.join("state/ca/ca.crt"))
        .arg("review_extended")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // executions: i = 1 (approve), i = 2 (deny), i = 3 (approve)
    for verdict in ["approve", "deny", "approve"] {
        let end = Instant::now() + Duration::from_secs(10);
        let a = loop {
            let a = n.approvals();
            if let Some(a) = a.into_iter().next() {
                break a;
            }
            check(Instant::now() < end, || "no approval appeared".into())?;
            std::thread::sleep(Duration::from_millis(30));
        };
        check(
            a["statement"] == "DELETE FROM appr_ext WHERE i = $1",
            || format!("{a}"),
        )?;
        let id = a["id"].as_str().unwrap();
        let (code, _, err) = n.hoopctl(&[verdict, id, "--reason", "extended test"]);
        check(code == 0, || err.clone())?;
    }
    let out = client.wait_with_output()?;
    let lines = hoop_tests::json_lines(&out.stdout);
    check(
        out.status.success() && lines.iter().any(|l| l["ok"] == true),
        || format!("{lines:?} {}", String::from_utf8_lossy(&out.stderr)),
    )?;
    check(count(pg, "appr_ext") == "3", || {
        format!("rows left {}", count(pg, "appr_ext"))
    })?;
    let decs = n.records("approval.decision");
    let outcomes: Vec<_> = decs
        .iter()
        .map(|d| d["outcome"].as_str().unwrap_or(""))
        .collect();
    check(outcomes == ["approved", "denied", "approved"], || {
        format!("{outcomes:?}")
    })
}

fn main() {
    hoop_tests::run_root_trials(
        || Postgres::start("approval", HOST, PORT),
        &[
            ("approved_runs_once", approved_runs_once),
            ("denied_in_transaction", denied_in_transaction),
            ("expired_is_denied", expired_is_denied),
            ("client_gone_withdraws", client_gone_withdraws),
            ("extended_protocol", extended_protocol),
        ],
    )
}

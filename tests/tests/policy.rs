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
        let env = Env::new(name, listen);
        let target = format!(
            "{extra}\n[[target]]\nname = \"pg\"\nprotocol = \"postgres\"\ncidrs = [\"{HOST}/32\"]\nports = [{PORT}]\n\
             upstream_ca = \"{}\"\n",
            pg.ca_path().display()
        );
        let cfg = env.write_config(&env.config(&target));
        let hoopd = Hoopd::start(&cfg, None);
        Self { env, hoopd }
    }

    fn psql(&self, sql: &str) -> (bool, String, String) {
        let out = self
            .env
            .cgroup
            .command("psql")
            .arg(format!(
                "host={HOST} port={PORT} user=postgres dbname=postgres sslmode=require"
            ))
            .args(["-X", "-At", "-v", "VERBOSITY=verbose", "-c", sql])
            .env("PGPASSWORD", pg::PASSWORD)
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

    /// Everything hoopd wrote: its log and its audit trail.
    fn all_output(&self) -> String {
        let mut s = self.hoopd.log_text();
        let dir = self.env.dir.join("state/audit");
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        s
    }
}

fn mask_table(pg: &Postgres) {
    pg.psql_direct(&format!(
        "DROP TABLE IF EXISTS mask_t; \
         CREATE TABLE mask_t (id int PRIMARY KEY, email text UNIQUE, card varchar(40), password text, \
                              doc jsonb, note text, api_token text); \
         INSERT INTO mask_t VALUES (1, '{EMAIL}', '{CARD}', '{PASSWORD}', \
             '{{\"owner\": \"{EMAIL}\", \"n\": 7}}', 'call +44 20 7946 0958 today', '{TOKEN}')"
    ));
}

/// Text results (psql): every detector's value and the column rules masked, shapes kept;
/// a server error quoting a value masked; nothing of it in the log or the audit trail.
fn text_results_masked(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("mask-text", 19501, pg, "");
    let (ok, out, err) =
        n.psql("SELECT id, email, card, password, doc, note, api_token FROM mask_t");
    check(ok, || err.clone())?;
    let cols: Vec<&str> = out.trim().split('|').collect();
    check(cols.len() == 7, || out.clone())?;
    check(cols[0] == "1", || out.clone())?;
    check(cols[1] == "****@example.com", || format!("email: {out}"))?;
    check(cols[2] == "**** **** **** 1111", || format!("card: {out}"))?;
    check(!cols[3].contains(PASSWORD), || {
        format!("password column: {out}")
    })?;
    check(
        cols[4].contains("****@example.com") && cols[4].contains("\"n\": 7"),
        || format!("jsonb: {out}"),
    )?;
    check(cols[5] == "call +** ** **** **58 today", || {
        format!("phone: {out}")
    })?;
    check(!cols[6].contains(TOKEN), || format!("token: {out}"))?;
    // the direct path is untouched: hoopd masks, the data is intact
    let direct = pg.psql_direct("SELECT email FROM mask_t");
    check(direct.trim() == EMAIL, || direct.clone())?;
    // a server error quoting the value (unique violation's DETAIL)
    let (ok, _, err) = n.psql(&format!(
        "INSERT INTO mask_t (id, email) VALUES (2, '{EMAIL}')"
    ));
    check(
        !ok && err.contains("23505") && err.contains("****@example.com") && !err.contains(EMAIL),
        || format!("error not masked: {err}"),
    )?;
    // a NOTICE raised with a value
    let (ok, _, err) = n.psql(&format!(
        "DO $$BEGIN RAISE NOTICE 'card on file: {CARD}'; END$$"
    ));
    check(
        ok && err.contains("**** **** **** 1111") && !err.contains(CARD),
        || format!("notice not masked: {err}"),
    )?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let all = n.all_output();
    for secret in [EMAIL, CARD, PASSWORD, TOKEN] {
        check(!all.contains(secret), || {
            format!("{secret} reached the log or the audit trail")
        })?;
    }
    // but the audit trail does record what was asked and a (masked) excerpt of the answer
    check(
        all.contains("INSERT INTO mask_t (id, email) VALUES (2, '****@example.com')")
            && all.contains("\"excerpt\":\"1 | ****@example.com"),
        || "audit lacks masked text / excerpt".into(),
    )
}

/// Binary results (tokio-postgres): text, varchar and jsonb decoded and masked, lengths right
/// (the client decodes every value), non-text columns untouched.
fn binary_results_masked(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("mask-binary", 19502, pg, "");
    let lines = n.pg_client("masked_binary");
    let line = lines.first().cloned().unwrap_or_default();
    check(line["ok"] == true, || format!("{lines:?}"))?;
    let v: Value = serde_json::from_str(line["detail"].as_str().unwrap_or("")).unwrap_or_default();
    check(
        v["email"] == "****@example.com"
            && v["card"] == "**** **** **** 1111"
            && v["id"] == 1
            && v["doc"]["owner"] == "****@example.com"
            && v["doc"]["n"] == 7
            && v["note"] == "call +** ** **** **58 today"
            && v["password"]
                .as_str()
                .is_some_and(|p| !p.contains(PASSWORD)),
        || format!("{v}"),
    )?;
    let all = n.all_output();
    check(!all.contains(EMAIL) && !all.contains(PASSWORD), || {
        "a secret reached the log or the audit trail".into()
    })
}

/// COPY TO in text format is masked row by row.
fn copy_out_masked(pg: &Postgres) -> Result<(), Failed> {
    let n = Node::start("mask-copy", 19503, pg, "");
    let (ok, out, err) = n.psql("COPY (SELECT email, card FROM mask_t) TO STDOUT");
    check(ok, || err.clone())?;
    check(
        out.trim() == "****@example.com\t**** **** **** 1111",
        || format!("{out:?}"),
    )?;
    let direct = Command::new("psql")
        .arg(pg.conninfo("require"))
        .args(["-XAtc", "COPY (SELECT email FROM mask_t) TO STDOUT"])
        .env("PGPASSWORD", pg::PASSWORD)
        .output()?;
    check(
        String::from_utf8_lossy(&direct.stdout).trim() == EMAIL,
        || "direct COPY changed".into(),
    )
}

fn main() {
    hoop_tests::run_root_trials(
        || {
            let pg = Postgres::start("policy", HOST, PORT);
            // read-only for the tests (they run in parallel)
            mask_table(&pg);
            pg
        },
        &[
            ("text_results_masked", text_results_masked),
            ("binary_results_masked", binary_results_masked),
            ("copy_out_masked", copy_out_masked),
        ],
    )
}

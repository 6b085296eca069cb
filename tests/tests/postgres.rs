//! PostgreSQL through hoopd via the eBPF redirect (the real path), against a real PostgreSQL 15
//! (TLS + SCRAM) with real clients: psql in every sslmode, pgbench in every query mode,
//! tokio-postgres with rustls. Root only (eBPF): without it every test is reported ignored.

use std::{process::Command, time::Duration};

use hoop_tests::{
    Env, Hoopd, json_lines,
    pg::{self, Postgres},
};
use libtest_mimic::Failed;
use serde_json::Value;

const PG_CLIENT: &str = env!("CARGO_BIN_EXE_hoop-pg-client");
const TEST_CLIENT: &str = env!("CARGO_BIN_EXE_hoop-test-client");
const HOST: &str = "127.0.0.2";
const PORT: u16 = 17200;

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

/// A hoopd protecting the shared server as a `postgres` target, in its own cgroup.
struct Proxy {
    env: Env,
    hoopd: Hoopd,
}

impl Proxy {
    fn start(name: &str, listen: u16, pg: &Postgres) -> Self {
        Self::start_with(name, listen, pg, "")
    }

    /// With `extra` appended to the configuration (whole tables, e.g. `[proxy]`).
    fn start_with(name: &str, listen: u16, pg: &Postgres, extra: &str) -> Self {
        let env = Env::new(name, listen);
        let target = format!(
            "[[target]]\nname = \"pg\"\nprotocol = \"postgres\"\ncidrs = [\"{HOST}/32\"]\nports = [{PORT}]\n\
             upstream_ca = \"{}\"\ndeny_statements = [\"drop\", \"truncate\"]\n{extra}",
            pg.ca_path().display()
        );
        let cfg = env.write_config(&env.config(&target));
        let hoopd = Hoopd::start(&cfg, None);
        Self { env, hoopd }
    }

    fn node_ca(&self) -> String {
        self.env.dir.join("state/ca/ca.crt").display().to_string()
    }

    /// psql in the cgroup: (success, stdout, stderr).
    fn psql(
        &self,
        conninfo: &str,
        password: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> (bool, String, String) {
        let mut cmd = self.env.cgroup.command("psql");
        cmd.arg(conninfo)
            .arg("-X")
            .args(args)
            .env("PGPASSWORD", password);
        run_with_stdin(cmd, stdin)
    }

    /// hoopd still serves a client: psql gets an answer through it.
    fn check_alive(&self) -> Result<(), Failed> {
        let (ok, out, err) = self.psql(
            &conninfo("postgres", "require"),
            pg::PASSWORD,
            &["-Atc", "SELECT 'alive'"],
            None,
        );
        check(ok && out.trim() == "alive", || {
            format!("hoopd unusable: {out} {err}")
        })
    }

    fn statements(&self) -> Vec<Value> {
        self.hoopd.logs_matching(|v| v["event"] == "statement")
    }
}

fn run_with_stdin(mut cmd: Command, stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn conninfo(user: &str, sslmode: &str) -> String {
    format!(
        "host={HOST} port={PORT} user={user} dbname=postgres sslmode={sslmode} connect_timeout=10"
    )
}

/// psql with sslmode disable/prefer/require/verify-full (node CA as root): the upstream leg is
/// TLS in every case, and the session is recorded with the process that opened it.
fn psql_every_sslmode(pg: &Postgres) -> Result<(), Failed> {
    let p = Proxy::start("pg-ssl", 19101, pg);
    let q = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    for mode in ["disable", "prefer", "require", "verify-full"] {
        let mut ci = conninfo("postgres", mode);
        if mode == "verify-full" {
            ci.push_str(&format!(" sslrootcert={}", p.node_ca()));
        }
        let (ok, out, err) = p.psql(&ci, pg::PASSWORD, &["-Atc", q], None);
        check(ok && out.trim() == "t", || {
            format!("sslmode={mode}: {out} {err}")
        })?;
    }
    // verify-full against a CA that is not the node's must fail: the client really verifies
    let ci = format!(
        "{} sslrootcert={}",
        conninfo("postgres", "verify-full"),
        pg.ca_path().display()
    );
    let (ok, _, err) = p.psql(&ci, pg::PASSWORD, &["-Atc", "SELECT 1"], None);
    check(!ok && err.contains("certificate verify failed"), || {
        format!("foreign CA accepted: {err}")
    })?;
    let ends = hoop_tests::session_ends(&p.hoopd);
    check(
        ends.len() >= 4
            && ends
                .iter()
                .all(|e| e["exe"].as_str().is_some_and(|x| x.ends_with("psql"))),
        || format!("{ends:?}"),
    )
}

/// SCRAM (with channel binding upstream), MD5, cleartext with a token-sized password; a wrong
/// password gives the client exactly the error it gets going direct.
fn credentials_relayed(pg: &Postgres) -> Result<(), Failed> {
    let p = Proxy::start("pg-auth", 19102, pg);
    let token = pg::token_password();
    for (user, pw) in [
        ("postgres", pg::PASSWORD),
        (pg::MD5_USER, pg::PASSWORD),
        (pg::CLEAR_USER, token.as_str()),
    ] {
        let (ok, out, err) = p.psql(
            &conninfo(user, "require"),
            pw,
            &["-Atc", "SELECT current_user"],
            None,
        );
        check(ok && out.trim() == user, || format!("{user}: {out} {err}"))?;
    }
    let scram = p.hoopd.logs_matching(|v| {
        v["message"] == "upstream authenticated" && v["mechanism"] == "SCRAM-SHA-256-PLUS"
    });
    check(!scram.is_empty(), || {
        format!("no SCRAM-SHA-256-PLUS upstream: {}", p.hoopd.log_text())
    })?;
    for user in ["postgres", pg::MD5_USER] {
        let (ok, _, proxied) = p.psql(
            &conninfo(user, "require"),
            "wrong",
            &["-Atc", "SELECT 1"],
            None,
        );
        let direct = Command::new("psql")
            .arg(conninfo(user, "require"))
            .args(["-XAtc", "SELECT 1"])
            .env("PGPASSWORD", "wrong")
            .output()?;
        let direct = String::from_utf8_lossy(&direct.stderr).into_owned();
        check(!ok && proxied == direct, || {
            format!("{user}: proxied {proxied:?} vs direct {direct:?}")
        })?;
    }
    check(
        !p.hoopd.log_text().contains(pg::PASSWORD) && !p.hoopd.log_text().contains(&token[..40]),
        || "a password reached the log".into(),
    )
}

/// Denied statements: 42501 naming the rule, the session stays usable, a transaction is aborted
/// as PostgreSQL would, and every statement has an event with its decision.
fn deny_statements(pg: &Postgres) -> Result<(), Failed> {
    let p = Proxy::start("pg-deny", 19103, pg);
    let script = "\\set VERBOSITY verbose\nCREATE TABLE IF NOT EXISTS deny_psql (i int);\nDROP TABLE deny_psql;\n\
                  SELECT 'usable', count(*) FROM deny_psql;\nBEGIN;\nINSERT INTO deny_psql VALUES (1);\n\
                  TRUNCATE deny_psql;\nSELECT 1;\nCOMMIT;\nSELECT 'after', count(*) FROM deny_psql;\n";
    let (_, out, err) = p.psql(
        &conninfo("postgres", "require"),
        pg::PASSWORD,
        &["-At"],
        Some(script),
    );
    check(
        err.contains(
            "ERROR:  42501: hoop: drop statement denied by rule target:pg/deny_statements:drop",
        ),
        || err.clone(),
    )?;
    check(
        err.contains("42501: hoop: truncate statement denied"),
        || err.clone(),
    )?;
    check(err.contains("25P02"), || {
        format!("transaction not aborted: {err}")
    })?;
    check(!err.contains("PL/pgSQL"), || {
        format!("implementation detail leaked: {err}")
    })?;
    check(out.contains("usable|0") && out.contains("after|0"), || {
        format!("{out}\n{err}")
    })?;
    check(
        pg.psql_direct("SELECT count(*) FROM deny_psql").trim() == "0",
        || "table dropped or insert committed".into(),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let events = p.statements();
    let denied: Vec<&Value> = events.iter().filter(|e| e["decision"] == "deny").collect();
    check(
        denied.len() == 2
            && denied[0]["rule"] == "target:pg/deny_statements:drop"
            && denied[0]["outcome"] == "denied",
        || format!("{denied:?}"),
    )?;
    // the text is normalized: constants (here 'usable') never reach the log
    let sel = events
        .iter()
        .find(|e| e["statement"] == "SELECT $1, count(*) FROM deny_psql");
    check(
        sel.is_some_and(|e| e["rows"] == 1 && e["decision"] == "allow" && e["tag"] == "SELECT 1"),
        || format!("{events:?}"),
    )?;
    check(!p.hoopd.log_text().contains("usable"), || {
        "a literal reached the log".into()
    })?;
    check(
        events
            .iter()
            .any(|e| e["kind"] == "select" && e["outcome"] == "error" && e["tag"] == "25P02"),
        || format!("{events:?}"),
    )
}

/// pgbench in all three query modes through the redirect.
fn pgbench_modes(pg: &Postgres) -> Result<(), Failed> {
    let p = Proxy::start("pg-bench", 19104, pg);
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "1"])
        .arg(conninfo("postgres", "require"))
        .env("PGPASSWORD", pg::PASSWORD)
        .output()?;
    check(init.status.success(), || {
        String::from_utf8_lossy(&init.stderr).into_owned()
    })?;
    for mode in ["simple", "extended", "prepared"] {
        let mut cmd = p.env.cgroup.command("pgbench");
        cmd.args(["-n", "-M", mode, "-c", "4", "-t", "100"])
            .arg(conninfo("postgres", "require"))
            .env("PGPASSWORD", pg::PASSWORD);
        let (ok, out, err) = run_with_stdin(cmd, None);
        check(
            ok && out.contains("number of transactions actually processed: 400/400"),
            || format!("{mode}: {out} {err}"),
        )?;
    }
    Ok(())
}

/// tokio-postgres with rustls (verifying the node CA): prepared statements, binary results,
/// transactions, COPY in and out, cancel_token, LISTEN/NOTIFY, a denied Parse.
fn tokio_postgres_client(pg: &Postgres) -> Result<(), Failed> {
    let p = Proxy::start("pg-tokio", 19105, pg);
    let ci = format!(
        "host={HOST} port={PORT} user=postgres password={} dbname=postgres sslmode=require",
        pg::PASSWORD
    );
    let out = p
        .env
        .cgroup
        .command(PG_CLIENT)
        .args([
            ci.as_str(),
            &p.node_ca(),
            "prepared",
            "binary",
            "transaction",
            "copy",
            "cancel",
            "notify",
            "deny_extended",
        ])
        .output()?;
    let lines = json_lines(&out.stdout);
    check(out.status.success() && lines.len() == 7, || {
        format!("{lines:#?}\n{}", String::from_utf8_lossy(&out.stderr))
    })?;
    check(
        p.hoopd.log_text().contains("cancel request forwarded"),
        || "cancel did not go through hoopd".into(),
    )
}

/// A PostgreSQL 17+ client's direct TLS (`sslnegotiation=direct`: no SSLRequest, ALPN
/// `postgresql`) through hoopd, whose upstream (PostgreSQL 15) knows only SSLRequest: queries,
/// a transaction and a cancel work; a direct client without ALPN is refused as PostgreSQL
/// refuses it, and a plain `sslnegotiation=postgres` client offering ALPN still works.
fn tokio_postgres_direct_tls(pg: &Postgres) -> Result<(), Failed> {
    let p = Proxy::start("pg-direct", 19108, pg);
    let ci = |negotiation: &str| {
        format!(
            "host={HOST} port={PORT} user=postgres password={} dbname=postgres sslmode=require \
             sslnegotiation={negotiation}",
            pg::PASSWORD
        )
    };
    let run = |conninfo: &str, alpn: bool, scenarios: &[&str]| {
        let mut cmd = p.env.cgroup.command(PG_CLIENT);
        cmd.arg(conninfo).arg(p.node_ca()).args(scenarios);
        if !alpn {
            cmd.env("HOOP_PG_CLIENT_NO_ALPN", "1");
        }
        cmd.output()
    };
    let direct = ci("direct");
    let out = run(&direct, true, &["prepared", "transaction", "cancel"])?;
    let lines = json_lines(&out.stdout);
    check(out.status.success() && lines.len() == 3, || {
        format!(
            "direct TLS: {lines:#?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    check(
        p.hoopd.log_text().contains("cancel request forwarded"),
        || "the direct client's cancel did not go through hoopd".into(),
    )?;
    // the statements were seen and decided like any others
    std::thread::sleep(Duration::from_millis(300));
    let seen = p.statements();
    check(
        seen.iter().any(|s| {
            s["decision"] == "allow"
                && s["statement"]
                    .as_str()
                    .is_some_and(|t| t.contains("$1::int4 * $3"))
        }),
        || format!("no statement event for the direct client's query: {seen:#?}"),
    )?;
    let out = run(&direct, false, &["prepared"])?;
    let detail = json_lines(&out.stdout)
        .first()
        .map(|l| l["detail"].to_string())
        .unwrap_or_default();
    check(!out.status.success() && detail.contains("ALPN"), || {
        format!("direct TLS without ALPN was not refused as PostgreSQL refuses it: {detail}")
    })?;
    let out = run(&ci("postgres"), true, &["prepared"])?;
    check(out.status.success(), || {
        format!(
            "SSLRequest client offering ALPN: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A 1,000,000-row result through hoopd is byte-identical to the direct one.
fn large_result_identical(pg: &Postgres) -> Result<(), Failed> {
    let p = Proxy::start("pg-large", 19106, pg);
    let q = "SELECT g, md5(g::text), now()::date FROM generate_series(1, 1000000) g";
    let (ok, proxied, err) = p.psql(
        &conninfo("postgres", "require"),
        pg::PASSWORD,
        &["-Atc", q],
        None,
    );
    check(ok, || err)?;
    let direct = Command::new("psql")
        .arg(conninfo("postgres", "require"))
        .args(["-XAtc", q])
        .env("PGPASSWORD", pg::PASSWORD)
        .output()?;
    let direct = String::from_utf8_lossy(&direct.stdout);
    check(proxied.len() > 40_000_000 && proxied == direct, || {
        format!(
            "proxied {} bytes, direct {} bytes",
            proxied.len(),
            direct.len()
        )
    })
}

/// Malformed and oversized input from a raw socket: the session ends cleanly, hoopd survives.
fn malformed_input_survived(pg: &Postgres) -> Result<(), Failed> {
    let p = Proxy::start("pg-bad", 19107, pg);
    let addr = format!("{HOST}:{PORT}");
    let cases = [
        "67617262616765206e6f7420612073746172747570207061636b6574", // text, not a startup packet
        "7fffffff00030000",                                         // claims a 2 GiB startup packet
        "fffffff000030000",                                         // negative length
        "0000000804d2162f16030100",                                 // SSLRequest, then not TLS
        "0000000804d2162f",                                         // SSLRequest, then silence
        "16030100040000000000",                                     // direct TLS, then not TLS
    ];
    for bytes in cases {
        let (ok, lines) = p.env.client(
            TEST_CLIENT,
            &addr,
            bytes,
            &["--hex", "--timeout-ms", "3000"],
        );
        // at most the one-byte answer to SSLRequest (or to a direct TLS handshake, a TLS
        // alert record), then the connection ends
        let reply = lines
            .first()
            .and_then(|l| l["reply"].as_str())
            .unwrap_or("");
        let alert = bytes.starts_with("16") && reply.starts_with('\u{15}') && reply.len() == 7;
        check(!ok || reply.is_empty() || reply == "S" || alert, || {
            format!("{bytes:?}: {lines:?}")
        })?;
    }
    p.check_alive()
}

/// A client that connects and sends nothing is disconnected after `[proxy]
/// startup_timeout_ms` (PostgreSQL's `authentication_timeout` cannot see it: hoopd has not
/// connected upstream yet), and its session ends with an error saying why.
fn stalled_startup_disconnected(pg: &Postgres) -> Result<(), Failed> {
    use std::io::{BufRead, Write};
    let p = Proxy::start_with("pg-stall", 19109, pg, "[proxy]\nstartup_timeout_ms = 500\n");
    let mut client = p
        .env
        .cgroup
        .command(TEST_CLIENT)
        .args([&format!("{HOST}:{PORT}"), "0000000804d2162f"])
        .args(["--hex", "--wait-stdin", "--timeout-ms", "10000"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdout = std::io::BufReader::new(client.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    check(line.contains("\"connected\":1"), || {
        format!("client did not connect: {line}")
    })?;
    // connected and silent, well past the limit
    std::thread::sleep(Duration::from_millis(2000));
    let ended = p.hoopd.logs_matching(|v| {
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("startup_timeout_ms"))
    });
    // now the SSLRequest: the connection is gone, so no `S` comes back
    client.stdin.take().expect("piped").write_all(b"go\n")?;
    line.clear();
    stdout.read_line(&mut line)?;
    let _ = client.wait();
    check(ended.len() == 1, || {
        format!(
            "no session ended for the stalled client: {}",
            p.hoopd.log_text()
        )
    })?;
    let reply: Value = serde_json::from_str(line.trim()).unwrap_or_default();
    check(reply["reply"] != "S", || {
        format!("the stalled connection was still served: {line}")
    })?;
    // a client that goes on at once is unaffected
    p.check_alive()
}

/// A client message over `[proxy] max_client_message_bytes` ends the session with a FATAL
/// error that says so (not a bare disconnect); one under it goes through; hoopd is unaffected.
fn oversized_message_refused(pg: &Postgres) -> Result<(), Failed> {
    let p = Proxy::start_with(
        "pg-big",
        19110,
        pg,
        "[proxy]\nmax_client_message_bytes = 1048576\n",
    );
    let query = |n: usize| format!("SELECT length('{}');\n", "x".repeat(n));
    let ci = conninfo("postgres", "require");
    let (ok, out, err) = p.psql(&ci, pg::PASSWORD, &["-At"], Some(&query(900_000)));
    check(ok && out.trim() == "900000", || {
        format!("a 900 kB query under the limit: {out} {err}")
    })?;
    let (ok, out, err) = p.psql(
        &ci,
        pg::PASSWORD,
        &["-At", "-v", "VERBOSITY=verbose"],
        Some(&query(1_100_000)),
    );
    check(
        !ok && err.contains("FATAL:  54000: hoop: a message of")
            && err
                .contains("exceeds the limit of 1048576 bytes ([proxy] max_client_message_bytes)"),
        || format!("a 1.1 MB query over the limit: {out} {err}"),
    )?;
    p.check_alive()
}

fn main() {
    hoop_tests::run_root_trials(
        || Postgres::start("proxy", HOST, PORT),
        &[
            ("psql_every_sslmode", psql_every_sslmode),
            ("credentials_relayed", credentials_relayed),
            ("deny_statements", deny_statements),
            ("pgbench_modes", pgbench_modes),
            ("tokio_postgres_client", tokio_postgres_client),
            ("tokio_postgres_direct_tls", tokio_postgres_direct_tls),
            ("large_result_identical", large_result_identical),
            ("malformed_input_survived", malformed_input_survived),
            ("stalled_startup_disconnected", stalled_startup_disconnected),
            ("oversized_message_refused", oversized_message_refused),
        ],
    )
}

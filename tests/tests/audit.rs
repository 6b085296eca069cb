//! The audit trail end to end: real PostgreSQL sessions through hoopd, then `hoopctl audit`
//! on the directory — untampered verifies; every kind of tampering fails at the right place;
//! kill -9 under pgbench loses no record of a statement the server executed. Root only.

use std::{path::Path, process::Command, time::Duration};

use hoop_tests::{
    Env, Hoopd, hoopctl_bin,
    pg::{self, Postgres},
};
use libtest_mimic::Failed;

const HOST: &str = "127.0.0.2";

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

fn pg_target(pg: &Postgres) -> String {
    format!(
        "[[target]]\nname = \"pg\"\nprotocol = \"postgres\"\ncidrs = [\"{HOST}/32\"]\nports = [{}]\nupstream_ca = \"{}\"\n",
        pg.port,
        pg.ca_path().display()
    )
}

fn conninfo(pg: &Postgres) -> String {
    format!(
        "host={HOST} port={} user=postgres dbname=postgres sslmode=require",
        pg.port
    )
}

/// `hoopctl audit verify --dir DIR [--key K]`: (exit code, stdout).
fn verify(dir: &Path, key: Option<&Path>) -> (i32, String) {
    let mut c = Command::new(hoopctl_bin());
    c.args(["audit", "verify", "--dir"]).arg(dir);
    if let Some(k) = key {
        c.arg("--key").arg(k);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A copy of the state dir's audit trail (with the public key beside it, as hoopd lays it out).
fn copy_trail(state: &Path, to: &Path) -> std::path::PathBuf {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(state.join("audit"))
        .arg(state.join("audit.key.pub"))
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    to.join("audit")
}

fn segment(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("seg-"))
        .unwrap()
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(p: &Path, l: &[String]) {
    std::fs::write(p, l.join("\n") + "\n").unwrap();
}

/// Sessions leave verifiable records; each way of tampering is caught, at the record.
fn tampering_is_detected(pg: &Postgres) -> Result<(), Failed> {
    let env = Env::new("audit-tamper", 19201);
    let cfg = env.write_config(&env.config(&pg_target(pg)));
    let mut h = Hoopd::start(&cfg, None);
    let psql = env
        .cgroup
        .command("psql")
        .arg(conninfo(pg))
        .args(["-XAtc", "SELECT 1", "-c", "SELECT 2", "-c", "SELECT 3"])
        // text the record must escape (tab, newline, quote, backslash) and non-ASCII
        .args(["-c", "SELECT 'tab\there \"q\" \\ é' AS \"new\nline\""])
        .env("PGPASSWORD", pg::PASSWORD)
        .output()?;
    check(psql.status.success(), || {
        String::from_utf8_lossy(&psql.stderr).into_owned()
    })?;
    h.signal(libc::SIGTERM);
    check(h.wait_exit(Duration::from_secs(10)) == Some(0), || {
        h.log_text()
    })?;
    let state = env.dir.join("state");
    let (code, out) = verify(&state.join("audit"), None);
    check(code == 0 && out.starts_with("ok:"), || {
        format!("untampered trail: {out}")
    })?;
    let records: Vec<serde_json::Value> = lines(&segment(&state.join("audit")))
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let kinds: Vec<String> = records
        .iter()
        .map(|v| v["kind"].as_str().unwrap_or("").to_string())
        .collect();
    let escaped = "SELECT 'tab\there \"q\" \\ é' AS \"new\nline\"";
    check(
        records
            .iter()
            .any(|v| v["kind"] == "pg.request" && v["event"]["text"] == escaped),
        || format!("no pg.request record with the text {escaped:?}"),
    )?;
    for k in [
        "daemon.start",
        "session.start",
        "pg.request",
        "pg.response",
        "session.end",
        "daemon.stop",
    ] {
        check(kinds.iter().any(|x| x == k), || {
            format!("no {k} record in {kinds:?}")
        })?;
    }

    export_takes_rfc3339_times(&state.join("audit"), &records)?;

    let work = env.dir.join("tamper");
    // (what to do to the segment, why it must fail)
    type Tamper = fn(&Path);
    let cases: [(&str, Tamper); 4] = [
        ("edited byte", |seg| {
            let mut l = lines(seg);
            let i = l.iter().position(|x| x.contains("\"rows\":1")).unwrap();
            l[i] = l[i].replacen("\"rows\":1", "\"rows\":7", 1);
            write_lines(seg, &l);
        }),
        ("deleted record", |seg| {
            let mut l = lines(seg);
            let i = l.iter().position(|x| x.contains("pg.request")).unwrap();
            l.remove(i);
            write_lines(seg, &l);
        }),
        ("reordered records", |seg| {
            let mut l = lines(seg);
            let i = l.iter().position(|x| x.contains("pg.request")).unwrap();
            l.swap(i, i + 1);
            write_lines(seg, &l);
        }),
        ("truncated segment", |seg| {
            let mut l = lines(seg);
            l.truncate(l.len() - 3);
            write_lines(seg, &l);
        }),
    ];
    for (what, tamper) in cases {
        let dir = copy_trail(&state, &work);
        let seg = segment(&dir);
        tamper(&seg);
        let (code, out) = verify(&dir, None);
        let name = seg.file_name().unwrap().to_string_lossy().into_owned();
        check(
            code == 1
                && out.contains("FAILED")
                && (out.contains(&name) || out.contains("checkpoint")),
            || format!("{what}: exit {code}: {out}"),
        )?;
    }
    // a foreign key: the trail does not verify against another node's key
    let other = env.dir.join("other");
    std::fs::create_dir_all(&other)?;
    let foreign = hoop_userspace_key(&other);
    let (code, out) = verify(&state.join("audit"), Some(&foreign));
    check(code == 1 && out.contains("FAILED"), || {
        format!("foreign key accepted: {out}")
    })?;
    // an inclusion proof for a record verifies against the signed checkpoint
    let proof = Command::new(hoopctl_bin())
        .args(["audit", "prove", "3", "--dir"])
        .arg(state.join("audit"))
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&proof.stdout).unwrap_or_default();
    check(
        proof.status.success() && v["verified_with_node_key"] == true,
        || String::from_utf8_lossy(&proof.stderr).into_owned(),
    )
}

/// `hoopctl audit export --since/--until` split the trail at a record's time given in any RFC
/// 3339 spelling (here with an offset instead of the log's own `Z` form): since is inclusive,
/// until exclusive, together every record once; a time that is not RFC 3339 is refused.
fn export_takes_rfc3339_times(dir: &Path, records: &[serde_json::Value]) -> Result<(), Failed> {
    let export = |args: &[&str]| -> Result<(bool, Vec<serde_json::Value>, String), Failed> {
        let out = Command::new(hoopctl_bin())
            .args(["audit", "export", "--dir"])
            .arg(dir)
            .args(args)
            .output()?;
        let recs = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        Ok((
            out.status.success(),
            recs,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let time = |r: &serde_json::Value| r["time"].as_str().unwrap_or_default().to_string();
    let at = records
        .iter()
        .find(|r| r["kind"] == "pg.request")
        .map(time)
        .ok_or("no pg.request record")?;
    // 2026-12-07T21:50:12.123456789Z -> 2026-12-07T21:50:12.123456789+00:00
    let typed = at.replace('Z', "+00:00");
    let (ok, since, err) = export(&["--since", &typed])?;
    check(ok, || err.clone())?;
    let (ok, until, err) = export(&["--until", &typed])?;
    check(ok, || err.clone())?;
    let want_since: Vec<_> = records.iter().filter(|r| time(r) >= at).collect();
    let want_until: Vec<_> = records.iter().filter(|r| time(r) < at).collect();
    check(
        !want_since.is_empty()
            && !want_until.is_empty()
            && since.iter().eq(want_since.iter().copied())
            && until.iter().eq(want_until.iter().copied()),
        || {
            format!(
                "split at {typed}: since {} (want {}), until {} (want {})",
                since.len(),
                want_since.len(),
                until.len(),
                want_until.len()
            )
        },
    )?;
    let (ok, _, err) = export(&["--since", "last tuesday"])?;
    check(!ok && err.contains("RFC 3339"), || {
        format!("a bad time was taken: {err}")
    })
}

/// Another node's public key: run a hoopd with another state dir just long enough to create it.
fn hoop_userspace_key(dir: &Path) -> std::path::PathBuf {
    let env = Env::new("audit-other", 19203);
    let cfg = env.write_config(&format!(
        "{}\n[audit]\ndir = \"{}/audit\"\nkey_path = \"{}/audit.key\"\n",
        env.config(""),
        dir.display(),
        dir.display()
    ));
    drop(Hoopd::start(&cfg, None));
    dir.join("audit.key.pub")
}

/// kill -9 under pgbench load, restart: the trail verifies (the torn tail is recorded) and every
/// statement PostgreSQL logged as executed has its request record.
fn kill9_loses_no_executed_statement(_: &Postgres) -> Result<(), Failed> {
    let pg = Postgres::start_with(
        "audit-kill",
        HOST,
        17301,
        "log_statement = 'all'\nlog_line_prefix = '%a|'\n",
    );
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "1"])
        .arg(conninfo(&pg))
        .env("PGPASSWORD", pg::PASSWORD)
        .output()?;
    check(init.status.success(), || {
        String::from_utf8_lossy(&init.stderr).into_owned()
    })?;
    let env = Env::new("audit-kill", 19202);
    // No timed filing while the load runs (the longest interval there is): every record the
    // kill finds sealed is in the write-ahead file, whatever the kill's timing against the
    // sync thread's rounds. (At 1 s a round could land just before the kill and file them all.)
    let cfg = env.write_config(&format!(
        "{}\n[audit]\nsync_interval_ms = 60000\n",
        env.config(&pg_target(&pg))
    ));
    let mut h = Hoopd::start(&cfg, None);
    let bench_err = env.dir.join("pgbench.err");
    let mut bench = env
        .cgroup
        .command("pgbench")
        .args(["-n", "-M", "simple", "-c", "4", "-T", "10"])
        .arg(conninfo(&pg))
        .env("PGPASSWORD", pg::PASSWORD)
        .env("PGAPPNAME", "hoopkill")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&bench_err)?)
        .spawn()?;
    std::thread::sleep(Duration::from_millis(2500));
    // the kill must land while the sessions run: a client that ended closes its session, and
    // that record's own write files everything before it
    let running = bench.try_wait()?.is_none();
    h.kill9();
    let _ = bench.wait();
    let bench_log = || std::fs::read_to_string(&bench_err).unwrap_or_default();
    check(running, || {
        format!(
            "pgbench ended before the kill:\n{}\nhoopd:\n{}",
            bench_log(),
            h.log_text()
        )
    })?;
    let state = env.dir.join("state");
    // before the restart: the statements last recorded are only in the write-ahead file
    let (_, out) = verify(&state.join("audit"), None);
    let unfiled: u64 = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("and ")?
                .split_once(" records after them in the write-ahead file")?
                .0
                .parse()
                .ok()
        })
        .unwrap_or(0);
    check(unfiled > 0, || {
        format!(
            "nothing left to file after kill -9: {out}\npgbench:\n{}\nhoopd:\n{}",
            bench_log(),
            h.log_text()
        )
    })?;
    let mut h2 = Hoopd::start(&cfg, None);
    h2.signal(libc::SIGTERM); // a clean stop: final checkpoint
    check(h2.wait_exit(Duration::from_secs(10)) == Some(0), || {
        h2.log_text()
    })?;
    check(
        h2.log_text()
            .contains("filed records from the write-ahead file"),
        || format!("the restart did not file them:\n{}", h2.log_text()),
    )?;
    let (code, out) = verify(&state.join("audit"), None);
    check(code == 0, || format!("after kill -9: {out}"))?;
    let executed: Vec<String> = std::fs::read_to_string(pg.log_path())?
        .lines()
        .filter_map(|l| l.split_once("hoopkill|").map(|(_, rest)| rest.to_string()))
        .filter_map(|l| {
            l.split_once("LOG:  statement: ")
                .map(|(_, s)| s.to_string())
        })
        .collect();
    check(executed.len() > 100, || {
        format!("only {} statements ran", executed.len())
    })?;
    let mut recorded = std::collections::HashSet::new();
    for l in lines(&segment(&state.join("audit"))) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l)
            && v["kind"] == "pg.request"
        {
            recorded.insert(v["event"]["text_sha256"].as_str().unwrap_or("").to_string());
        }
    }
    use sha2::Digest;
    let missing: Vec<&String> = executed
        .iter()
        .filter(|s| !recorded.contains(&hex(&sha2::Sha256::digest(s.as_bytes()))))
        .collect();
    check(missing.is_empty(), || {
        format!(
            "{} of {} executed statements have no record, e.g. {:?}",
            missing.len(),
            executed.len(),
            missing.first()
        )
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    hoop_tests::run_root_trials(
        || Postgres::start("audit", HOST, 17300),
        &[
            ("tampering_is_detected", tampering_is_detected),
            (
                "kill9_loses_no_executed_statement",
                kill9_loses_no_executed_statement,
            ),
        ],
    )
}

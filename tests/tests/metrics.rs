//! What hoopd tells the outside world: the Prometheus endpoint scraped with a real client (curl)
//! during a proxied PostgreSQL session (real PostgreSQL 15, real psql), the systemd readiness
//! protocol over a real notify socket, and log lines fit for the journal. Root only.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::MetadataExt, net::UnixDatagram},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hoop_tests::{
    Env,
    pg::{self, Postgres},
};
use libtest_mimic::Failed;

const PG_HOST: &str = "127.0.0.5";
const PG_PORT: u16 = 17500;

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

/// The value of the series `key` (name with labels, exactly as exposed).
fn value(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until `key` has `want` (5 s at most); the last scrape.
fn wait_metric(port: u16, key: &str, want: f64) -> Result<String, Failed> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(port)?;
        if value(&text, key) == Some(want) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            return Err(format!("{key} never reached {want}:\n{text}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scrape(port: u16) -> Result<String, Failed> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()?;
    check(out.status.success(), || format!("curl: {out:?}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// psql in the env's cgroup, fed statements one line at a time, its output collected.
struct Psql {
    child: std::process::Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Psql {
    fn start(env: &Env) -> Self {
        let conninfo = format!(
            "host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres sslmode=require connect_timeout=10"
        );
        let mut child = env
            .cgroup
            .command("psql")
            .arg(conninfo)
            .args(["-X", "-At"])
            .env("PGPASSWORD", pg::PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql");
        let collect = |r: Box<dyn std::io::Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let sink = buf.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    let mut s = sink.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
            buf
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Self { child, out, err }
    }

    fn send(&mut self, sql: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(sql.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn wait_output(&self, marker: &str) -> Result<(), Failed> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.out.lock().unwrap().contains(marker) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "psql never printed {marker:?}: {} {}",
            self.out.lock().unwrap(),
            self.err.lock().unwrap()
        )
        .into())
    }
}

/// Scraped during and after a real psql session through hoopd: sessions, statements by
/// decision, added latency, audit progress, eBPF numbers and a statement held for approval all
/// add up.
fn metrics_during_a_postgres_session(pg: &Postgres) -> Result<(), Failed> {
    const PORT: u16 = 19451;
    const N: u64 = 20;
    let env = Env::new("metrics-pg", 19401);
    let cfg = env.config(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{PORT}\"\n\
         [[target]]\nname = \"pg\"\nprotocol = \"postgres\"\ncidrs = [\"{PG_HOST}/32\"]\nports = [{PG_PORT}]\n\
         upstream_ca = \"{}\"\ndeny_statements = [\"truncate\"]\nreview_statements = [\"delete\"]\n",
        pg.ca_path().display()
    ));
    let _hoopd = hoop_tests::Hoopd::start(&env.write_config(&cfg), None);
    let idle = scrape(PORT)?;
    check(
        value(&idle, "hoop_sessions_live{protocol=\"postgres\"}") == Some(0.0),
        || idle.clone(),
    )?;
    let mut psql = Psql::start(&env);
    for i in 0..N {
        psql.send(&format!("SELECT {i} AS n;\n"));
    }
    psql.send("TRUNCATE hoop_metrics_never;\nSELECT 'marker';\n");
    psql.wait_output("marker")?;
    let t = Instant::now();
    let live = scrape(PORT)?;
    let scrape_time = t.elapsed();
    let v = |k: &str| value(&live, k).ok_or_else(|| format!("{k} missing:\n{live}"));
    let pgl = |name: &str, extra: &str| format!("{name}{{protocol=\"postgres\"{extra}}}");
    check(v(&pgl("hoop_sessions_live", ""))? == 1.0, || live.clone())?;
    check(v(&pgl("hoop_sessions_total", ""))? == 1.0, || live.clone())?;
    // N + the marker allowed, the TRUNCATE denied before it reached the server
    check(
        v(&pgl("hoop_statements_total", ",decision=\"allow\""))? == (N + 1) as f64,
        || live.clone(),
    )?;
    check(
        v(&pgl("hoop_statements_total", ",decision=\"deny\""))? == 1.0,
        || live.clone(),
    )?;
    check(
        v(&pgl("hoop_statements_total", ",decision=\"refused\""))? == 0.0,
        || live.clone(),
    )?;
    let count = v(&pgl("hoop_statement_added_latency_seconds_count", ""))?;
    let sum = v(&pgl("hoop_statement_added_latency_seconds_sum", ""))?;
    let inf = v(&pgl(
        "hoop_statement_added_latency_seconds_bucket",
        ",le=\"+Inf\"",
    ))?;
    check(count == (N + 2) as f64 && inf == count, || live.clone())?;
    let mean = sum / count;
    eprintln!(
        "added latency: mean {:.1} µs over {count} requests",
        mean * 1e6
    );
    check(mean > 0.0 && mean < 0.05, || {
        format!("mean added latency {mean} s")
    })?;
    check(v("hoop_ebpf_redirects_total")? >= 1.0, || live.clone())?;
    check(
        v("hoop_ebpf_map_entries{map=\"HOOP_TARGETS_V4\"}")? == 1.0,
        || live.clone(),
    )?;
    check(
        v("hoop_ebpf_map_capacity{map=\"HOOP_BY_CLIENT\"}")? == 65536.0,
        || live.clone(),
    )?;
    // request + response per statement, plus daemon and session records
    check(
        v("hoop_audit_records_total")? >= (2 * (N + 2)) as f64,
        || live.clone(),
    )?;
    check(
        v("hoop_audit_failed")? == 0.0 && v("hoop_audit_durable_lag_seconds")? < 1.0,
        || live.clone(),
    )?;
    check(v("hoop_approvals_pending")? == 0.0, || live.clone())?;
    // the workers' pollers ran (default `busy_poll_us`): every read wakes its worker's poller,
    // which ends by running out or by finding a thread waiting for a CPU (which of the two
    // depends on the machine's load)
    let stops = v("hoop_worker_busy_poll_stops_total{reason=\"ran_out\"}")?
        + v("hoop_worker_busy_poll_stops_total{reason=\"cpu_busy\"}")?;
    check(stops >= 1.0, || live.clone())?;
    check(scrape_time < Duration::from_secs(1), || {
        format!("scrape took {scrape_time:?}")
    })?;
    // a DELETE is held for an approver; psql waits for it
    psql.send("DELETE FROM hoop_metrics_never;\n");
    let held = wait_metric(PORT, "hoop_approvals_pending", 1.0)?;
    check(
        value(&held, &pgl("hoop_statements_total", ",decision=\"review\"")) == Some(1.0)
            && value(
                &held,
                &pgl("hoop_statement_added_latency_seconds_count", ""),
            ) == Some(count),
        || held.clone(),
    )?;
    // the client goes away: its request is withdrawn
    psql.child.kill()?;
    psql.child.wait()?;
    wait_metric(PORT, "hoop_approvals_pending", 0.0)?;
    let after = wait_metric(PORT, &pgl("hoop_sessions_live", ""), 0.0)?;
    check(
        value(&after, &pgl("hoop_sessions_live", "")) == Some(0.0)
            && value(&after, &pgl("hoop_sessions_total", "")) == Some(1.0),
        || after.clone(),
    )
}

/// READY=1 only once the programs are pinned, the guard is in place and the listener accepts;
/// RELOADING=1 (with MONOTONIC_USEC) and READY=1 around SIGHUP, also when the new file is
/// invalid; STOPPING=1 on SIGTERM.
fn notify_protocol(_: &Postgres) -> Result<(), Failed> {
    let env = Env::new("notify", 19402);
    let cfg = env.config(
        "[metrics]\nenabled = false\n[[target]]\nname = \"t\"\nprotocol = \"tcp\"\ncidrs = [\"127.0.0.7/32\"]\nports = [17700]\n",
    );
    let path = env.write_config(&cfg);
    let sock_path = env.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path)?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut child = Command::new(hoop_tests::hoopd_bin())
        .arg("--config")
        .arg(&path)
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(Stdio::null())
        .spawn()?;
    let recv = || -> Result<String, Failed> {
        let mut buf = [0u8; 4096];
        let n = sock
            .recv(&mut buf)
            .map_err(|e| format!("no notification: {e}"))?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let first = recv()?;
    // state at the moment READY arrives
    let count = |d: &str| {
        std::fs::read_dir(format!("{}/{d}", env.pin_dir()))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let (links, progs) = (count("links"), count("progs"));
    let guard = Command::new("nft")
        .args(["list", "table", "inet", &env.nft_table()])
        .output()?
        .status
        .success();
    let listening = std::net::TcpStream::connect(("127.0.0.1", 19402)).is_ok();
    let result = (|| {
        check(
            first.contains("READY=1\n") && first.contains("STATUS=protecting 1 targets"),
            || format!("first notification: {first:?}"),
        )?;
        check(links > 0 && links == progs && guard && listening, || {
            format!("READY with links={links}/{progs} guard={guard} listening={listening}")
        })?;
        for config in [cfg.as_str(), "[listen]\nbogus = 1\n"] {
            std::fs::write(&path, config)?;
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
            let reloading = recv()?;
            check(
                reloading.contains("RELOADING=1\n") && reloading.contains("MONOTONIC_USEC="),
                || format!("{reloading:?}"),
            )?;
            let ready = recv()?;
            check(ready.contains("READY=1\n"), || {
                format!("after reload: {ready:?}")
            })?;
        }
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let stopping = recv()?;
        check(stopping.contains("STOPPING=1\n"), || {
            format!("{stopping:?}")
        })?;
        let st = child.wait()?;
        check(st.success(), || format!("exit {st}"))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Journald-friendly lines: no colour unless stderr is a terminal (and NO_COLOR is unset), and
/// no timestamp when stderr is the journal (JOURNAL_STREAM names it).
fn journal_friendly_logs(_: &Postgres) -> Result<(), Failed> {
    let env = Env::new("logs", 19403);
    // the listener's port is taken, so hoopd logs an error and exits at once
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let cfg = env.write_config(&format!(
        "[listen]\naddress = \"127.0.0.1:{port}\"\n[state]\ndir = \"{}\"\n",
        env.dir.join("state").display()
    ));
    let hoopd = hoop_tests::hoopd_bin();
    let run_to_file = |journal: bool| -> Result<String, Failed> {
        let log = env.dir.join("stderr.log");
        let file = std::fs::File::create(&log)?;
        let meta = file.metadata()?;
        let mut cmd = Command::new(&hoopd);
        cmd.arg("--config")
            .arg(&cfg)
            .stderr(file)
            .env_remove("NO_COLOR");
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        } else {
            cmd.env_remove("JOURNAL_STREAM");
        }
        cmd.status()?;
        Ok(std::fs::read_to_string(&log)?)
    };
    let line = |text: &str| -> String {
        text.lines()
            .find(|l| l.contains("hoopd failed"))
            .unwrap_or_default()
            .to_string()
    };
    let journal = line(&run_to_file(true)?);
    check(
        !journal.is_empty()
            && !journal.contains('\u{1b}')
            && !journal.trim_start().starts_with("20"),
        || format!("journal line: {journal:?}"),
    )?;
    let file = line(&run_to_file(false)?);
    check(!file.contains('\u{1b}') && file.starts_with("20"), || {
        format!("file line: {file:?}")
    })?;
    // a terminal: `script` gives hoopd a pty
    let on_tty = |no_color: bool| -> Result<String, Failed> {
        let mut cmd = Command::new("script");
        cmd.args(["-qec"])
            .arg(format!("{} --config {}", hoopd.display(), cfg.display()))
            .arg("/dev/null")
            .env_remove("JOURNAL_STREAM");
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let out = cmd.output()?;
        Ok(line(&String::from_utf8_lossy(&out.stdout)))
    };
    let tty = on_tty(false)?;
    check(tty.contains('\u{1b}'), || {
        format!("no colour on a terminal: {tty:?}")
    })?;
    let plain = on_tty(true)?;
    check(!plain.is_empty() && !plain.contains('\u{1b}'), || {
        format!("NO_COLOR: {plain:?}")
    })
}

fn main() {
    hoop_tests::run_root_trials(
        || Postgres::start("metrics", PG_HOST, PG_PORT),
        &[
            (
                "metrics_during_a_postgres_session",
                metrics_during_a_postgres_session,
            ),
            ("notify_protocol", notify_protocol),
            ("journal_friendly_logs", journal_friendly_logs),
        ],
    )
}

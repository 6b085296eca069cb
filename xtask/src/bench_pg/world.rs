//! The benchmark's world: PostgreSQL, the measured and the strict hoopd (each in a cgroup
//! with the eBPF redirect), and pgbouncer — started together, stopped and removed on drop.

use super::*;

/// Everything the benchmark starts; stopped and removed on drop, also on error or panic.
pub(super) struct World {
    pub(super) dir: PathBuf,
    hoopd: Option<Child>,
    hoopd_strict: Option<Child>,
    bouncer: Option<Child>,
    pub(super) cgroup: Cgroup,
    cgroup_strict: Cgroup,
    pub(super) pg: Postgres,
}

impl World {
    pub(super) fn start() -> Result<Self> {
        if !Postgres::available() {
            bail!(
                "PostgreSQL 15 is not installed ({}): run `cargo xtask deps`",
                pg::PG_BIN
            );
        }
        // a listener already there would answer for the one we start, and the numbers would lie
        for (host, port) in [
            (PG_HOST, PG_PORT),
            (BOUNCER_HOST, BOUNCER_PORT),
            ("127.0.0.1", LISTEN_PORT),
            ("127.0.0.1", metrics_port(Via::Hoopd)),
            ("127.0.0.1", metrics_port(Via::HoopdStrict)),
        ] {
            if TcpStream::connect((host, port)).is_ok() {
                bail!("{host}:{port} is already in use: stop what listens there");
            }
        }
        let dir = std::env::temp_dir().join(format!("hoop-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let pg = Postgres::start("bench", PG_HOST, PG_PORT);
        let mut w = Self {
            dir,
            hoopd: None,
            hoopd_strict: None,
            bouncer: None,
            cgroup: Cgroup::new("bench-pg"),
            cgroup_strict: Cgroup::new("bench-pg-strict"),
            pg,
        };
        let init = Command::new("pgbench")
            .args(["-i", "-q", "-s", "1"])
            .arg(conninfo(PG_HOST, PG_PORT))
            .env("PGPASSWORD", pg::PASSWORD)
            .output()
            .context("spawn pgbench (Debian postgresql-client-15: `cargo xtask deps`)")?;
        if !init.status.success() {
            bail!(
                "pgbench -i failed: {}",
                String::from_utf8_lossy(&init.stderr)
            );
        }
        w.start_hoopd(false)?;
        w.start_hoopd(true)?;
        w.start_pgbouncer()?;
        Ok(w)
    }

    fn hoopd_config(&self, strict: bool) -> PathBuf {
        self.dir.join(if strict {
            "hoop-strict.toml"
        } else {
            "hoop.toml"
        })
    }

    pub(super) fn state_dir(&self, via: Via) -> PathBuf {
        match via {
            Via::HoopdStrict => self.dir.join("state-strict"),
            _ => self.dir.join("state"),
        }
    }

    /// The measured hoopd (`written` audit, the default) or the strict one.
    fn start_hoopd(&mut self, strict: bool) -> Result<()> {
        let (port, pins, table, cgroup, via) = if strict {
            let c = &self.cgroup_strict;
            (
                STRICT_LISTEN_PORT,
                STRICT_PIN_DIR,
                STRICT_NFT_TABLE,
                c,
                Via::HoopdStrict,
            )
        } else {
            (LISTEN_PORT, PIN_DIR, NFT_TABLE, &self.cgroup, Via::Hoopd)
        };
        // HOOP_BENCH_WORKERS sets `[listen] workers` (default: hoopd's, one per CPU)
        let workers = std::env::var("HOOP_BENCH_WORKERS").unwrap_or_else(|_| "0".into());
        let workers: usize = workers
            .parse()
            .with_context(|| format!("HOOP_BENCH_WORKERS={workers:?}: want a count"))?;
        let busy_poll = crate::bench::busy_poll_setting()?
            .map(|us| format!("busy_poll_us = {us}\n"))
            .unwrap_or_default();
        let config = format!(
            "[listen]\nworkers = {workers}\n{busy_poll}address = \"127.0.0.1:{port}\"\naddress6 = \"[::1]:{port}\"\n[intercept]\ncgroup = \"{}\"\n\
             pin_dir = \"{pins}\"\nnft_table = \"{table}\"\n[state]\ndir = \"{}\"\n[control]\nsocket = \"{}\"\n\
             [audit]\ndurability = \"{}\"\n[dns]\nport = {dns_port}\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[[target]]\n\
             name = \"pg\"\nprotocol = \"postgres\"\ncidrs = [\"{PG_HOST}/32\"]\nports = [{PG_PORT}]\n\
             upstream_ca = \"{}\"\ndeny_statements = [\"drop\", \"truncate\"]\n",
            cgroup.path.display(),
            self.state_dir(via).display(),
            self.dir
                .join(if strict {
                    "control-strict.sock"
                } else {
                    "control.sock"
                })
                .display(),
            if strict { "strict" } else { "written" },
            self.pg.ca_path().display(),
            // the two hoopds run side by side: each its own DNS forwarder port
            dns_port = port + 2000,
            metrics_port = metrics_port(via),
        );
        let path = self.hoopd_config(strict);
        std::fs::write(&path, config)?;
        // pins a crashed earlier run left behind would look attached before this hoopd is
        let _ = hoopd_teardown(&path);
        let log = self.dir.join(if strict {
            "hoopd-strict.log"
        } else {
            "hoopd.log"
        });
        // HOOP_LOG=warn: no per-statement or per-session records in the measured path
        let child = Command::new(hoopd_bin())
            .arg("--config")
            .arg(&path)
            .env("HOOP_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .context("spawn hoopd")?;
        let slot = if strict {
            &mut self.hoopd_strict
        } else {
            &mut self.hoopd
        };
        let child = slot.insert(child);
        let links = Path::new(pins).join("links");
        wait_ready("hoopd", child, &log, || {
            std::fs::read_dir(&links).is_ok_and(|d| d.count() == hoop_tests::PINNED_LINKS)
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    fn start_pgbouncer(&mut self) -> Result<()> {
        let dir = self.dir.join("pgbouncer");
        std::fs::create_dir_all(&dir)?;
        // the server's own SCRAM secret: pgbouncer checks the client's proof with it and reuses
        // that proof to log in to the server (SCRAM pass-through), as a production setup would
        let secret = self
            .pg
            .psql_direct("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'");
        std::fs::write(
            dir.join("userlist.txt"),
            format!("\"postgres\" \"{}\"\n", secret.trim()),
        )?;
        let data = self.pg.dir.join("data");
        let ini = format!(
            "[databases]\npostgres = host={PG_HOST} port={PG_PORT} dbname=postgres\n[pgbouncer]\n\
             listen_addr = {BOUNCER_HOST}\nlisten_port = {BOUNCER_PORT}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {}\npool_mode = session\nmax_client_conn = 100\n\
             default_pool_size = 20\nlog_connections = 0\nlog_disconnections = 0\n\
             client_tls_sslmode = require\nclient_tls_cert_file = {}\nclient_tls_key_file = {}\n\
             server_tls_sslmode = verify-full\nserver_tls_ca_file = {}\n",
            dir.join("userlist.txt").display(),
            data.join("server.crt").display(),
            data.join("server.key").display(),
            self.pg.ca_path().display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini)?;
        crate::status(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
        )?;
        let log = dir.join("pgbouncer.log");
        // it refuses to run as root; -u drops to postgres after start-up, and the child stays
        // pgbouncer itself (not a runuser wrapper), so killing it on drop stops it
        let child = Command::new("pgbouncer")
            .args(["-u", "postgres"])
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .context("spawn pgbouncer (Debian package pgbouncer: `cargo xtask deps`)")?;
        let child = self.bouncer.insert(child);
        wait_ready("pgbouncer", child, &log, || {
            TcpStream::connect((BOUNCER_HOST, BOUNCER_PORT)).is_ok()
        })
    }

    /// Seconds psql takes to fetch `sql`'s result (to /dev/null) through `via`.
    pub(super) fn psql_seconds(&self, via: Via, sql: &str) -> Result<f64> {
        let mut cmd = match via {
            Via::Direct => Command::new("psql"),
            Via::Hoopd => self.cgroup.command("psql"),
            _ => bail!("psql_seconds: direct or hoopd only"),
        };
        cmd.arg(conninfo(PG_HOST, PG_PORT))
            .args(["-XAtq", "-o", "/dev/null", "-c", sql])
            .env("PGPASSWORD", pg::PASSWORD);
        let t = Instant::now();
        let out = cmd.output().context("spawn psql")?;
        let secs = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!("psql via {via:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(secs)
    }

    /// Runs one pgbench load through `via`; fails on any failed transaction or aborted client.
    pub(super) fn pgbench(&self, via: Via, load: &Load, seconds: u32) -> Result<Sample> {
        let (mut cmd, host, port) = match via {
            Via::Direct => (Command::new("pgbench"), PG_HOST, PG_PORT),
            // the client joins the cgroup, connects to the server's own address, and is redirected
            Via::Hoopd => (self.cgroup.command("pgbench"), PG_HOST, PG_PORT),
            Via::HoopdStrict => (self.cgroup_strict.command("pgbench"), PG_HOST, PG_PORT),
            Via::Pgbouncer => (Command::new("pgbench"), BOUNCER_HOST, BOUNCER_PORT),
        };
        let threads = load
            .clients
            .min(std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        cmd.args(["-n", "-S", "-M", load.mode])
            .args([
                "-c",
                &load.clients.to_string(),
                "-j",
                &threads.to_string(),
                "-T",
                &seconds.to_string(),
            ])
            .args(load.connect_each.then_some("-C"))
            .arg(conninfo(host, port))
            .env("PGPASSWORD", pg::PASSWORD);
        // the proxy's CPU time over the run (all its threads), for its cost per transaction
        let proxy = match via {
            Via::Direct => None,
            Via::Hoopd => self.hoopd.as_ref(),
            Via::HoopdStrict => self.hoopd_strict.as_ref(),
            Via::Pgbouncer => self.bouncer.as_ref(),
        }
        .map(Child::id);
        // hoopd's busy polling spins in CPU that was idle (see `busy_poll_us`): counted apart
        let polling = || match via {
            Via::Hoopd | Via::HoopdStrict => busy_poll_seconds(metrics_port(via)).map(Some),
            _ => Ok(None),
        };
        // the scrape first: its own CPU is not the run's
        let polled_before = polling()?;
        let cpu_before = proxy.map(cpu_seconds).transpose()?;
        let out = cmd.output().context("spawn pgbench")?;
        let cpu = match (proxy, cpu_before) {
            (Some(pid), Some(before)) => Some(cpu_seconds(pid)? - before),
            _ => None,
        };
        let polled = match (polling()?, polled_before) {
            (Some(after), Some(before)) => Some(after - before),
            _ => None,
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let failed: Option<u64> = field(&stdout, "number of failed transactions: ");
        let processed: Option<u64> = field(&stdout, "number of transactions actually processed: ");
        let sample = field(&stdout, "tps = ").zip(field(&stdout, "latency average = "));
        match (out.status.success(), failed, processed, sample) {
            (true, Some(0), Some(n), Some((tps, latency_ms))) if n > 0 => Ok(Sample {
                tps,
                latency_ms,
                proxy_cpu_us: cpu.map(|s| s * 1e6 / n as f64),
                polled_us: polled.map(|s| s * 1e6 / n as f64),
            }),
            _ => bail!(
                "pgbench {} via {via:?}: {}\n{stdout}{}\n(logs in {})",
                load.label(),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.dir.display()
            ),
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for (strict, slot) in [(false, &mut self.hoopd), (true, &mut self.hoopd_strict)] {
            if let Some(mut c) = slot.take() {
                let _ = c.kill();
                let _ = c.wait();
                // removes the pins (detaching the programs) and the nftables guard
                if !hoopd_teardown(&self.dir.join(if strict {
                    "hoop-strict.toml"
                } else {
                    "hoop.toml"
                })) {
                    eprintln!(
                        "bench: `hoopd teardown` failed: remove {PIN_DIR}* and nft tables inet {NFT_TABLE}* by hand"
                    );
                }
            }
        }
        if let Some(mut c) = self.bouncer.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // then the fields: the cgroup (its processes killed) and PostgreSQL (stopped)
    }
}

/// CPU time (user + system, every thread, in seconds) process `pid` has used so far, from
/// /proc/PID/stat (clock ticks, 10 ms each: over a 10 s run at half a CPU, 0.2% resolution).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // fields after the command name, which is in parentheses and may hold spaces
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path}: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the name
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .with_context(|| format!("{path}: field {} unreadable", i + 3))
    };
    // SAFETY: sysconf has no preconditions
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        bail!("sysconf(_SC_CLK_TCK) failed");
    }
    Ok((ticks(11)? + ticks(12)?) / hz as f64)
}

/// Where the measured (or strict) hoopd serves its metrics.
fn metrics_port(via: Via) -> u16 {
    match via {
        Via::HoopdStrict => STRICT_LISTEN_PORT + 3000,
        _ => LISTEN_PORT + 3000,
    }
}

/// `hoop_worker_busy_poll_seconds_total` from the hoopd serving metrics on `port`.
fn busy_poll_seconds(port: u16) -> Result<f64> {
    use std::io::{Read, Write};
    const METRIC: &str = "hoop_worker_busy_poll_seconds_total ";
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("hoopd metrics on 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    body.lines()
        .find_map(|l| l.strip_prefix(METRIC))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {} in hoopd's metrics", METRIC.trim()))
}

fn hoopd_bin() -> PathBuf {
    root().join("target/release/hoopd")
}

fn hoopd_teardown(config: &Path) -> bool {
    Command::new(hoopd_bin())
        .arg("--config")
        .arg(config)
        .arg("teardown")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn conninfo(host: &str, port: u16) -> String {
    format!(
        "host={host} port={port} user=postgres dbname=postgres sslmode=require connect_timeout=10"
    )
}

/// Waits up to 20 s for `ready`; fails at once, with the log's tail, when the process exits.
fn wait_ready(what: &str, child: &mut Child, log: &Path, ready: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        let exited = child.try_wait()?;
        if exited.is_some() || Instant::now() > deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let why = exited.map_or("not ready after 20 s".to_string(), |st| {
                format!("exited ({st})")
            });
            bail!("{what} {why}; {}:\n{}", log.display(), tail.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

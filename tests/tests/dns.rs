//! End-to-end tests of name-based targets (issue: learning DNS answers). A real DNS server
//! (Debian's dnsmasq) answers test names under the Azure suffixes with loopback addresses; real
//! clients (psql, dig, getent, the test client through glibc's resolver) run in the test's cgroup
//! with a private /etc/resolv.conf (a mount namespace of their own, bind-mounted: the machine's
//! file is never touched). They need root; without it each is reported `ignored`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use hoop_tests::{Echo, Env, Hoopd, pg::Postgres, session_ends};
use libtest_mimic::Failed;
use serde_json::Value;

const CLIENT: &str = env!("CARGO_BIN_EXE_hoop-test-client");
const PG: &str = "*.postgres.database.azure.com";
const PRIVATELINK: &str = "*.privatelink.postgres.database.azure.com";

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

/// dnsmasq on `addr`:53 with `records` (`name=ip` host records, `name>target` CNAMEs) and
/// `ttl` seconds on every answer. Killed on drop.
struct Dns {
    addr: String,
    child: Child,
}

impl Dns {
    fn start(addr: &str, ttl: u32, records: &[&str]) -> Self {
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "-k",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            "--pid-file=",
            "--log-facility=-",
        ])
        .arg(format!("--listen-address={addr}"))
        .arg(format!("--local-ttl={ttl}"));
        for r in records {
            if let Some((name, ip)) = r.split_once('=') {
                cmd.arg(format!("--host-record={name},{ip}"));
            } else if let Some((name, target)) = r.split_once('>') {
                cmd.arg(format!("--cname={name},{target},{ttl}"));
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (xtask test installs dnsmasq-base)");
        let dns = Self {
            addr: addr.to_string(),
            child,
        };
        // ready when it answers (asked from outside every test cgroup: direct)
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let out = dig_outside(&dns.addr, "ready.invalid", &[]);
            if String::from_utf8_lossy(&out.stdout).contains("status:") {
                return dns;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dnsmasq on {addr} did not start");
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dig_outside(server: &str, name: &str, extra: &[&str]) -> Output {
    Command::new("dig")
        .arg(format!("@{server}"))
        .arg(name)
        .args(["+tries=1", "+time=1"])
        .args(extra)
        .output()
        .expect("dig (xtask test installs bind9-dnsutils)")
}

/// A private resolv.conf naming `server`, for `in_cgroup`.
fn resolv_conf(env: &Env, server: &str) -> PathBuf {
    let p = env.dir.join("resolv.conf");
    std::fs::write(
        &p,
        format!("nameserver {server}\noptions timeout:1 attempts:2\n"),
    )
    .unwrap();
    p
}

/// Runs `program args` in the env's cgroup, in a mount namespace of its own where `resolv`
/// is bind-mounted over /etc/resolv.conf.
fn in_cgroup(env: &Env, resolv: &Path, program: &str, args: &[&str]) -> Output {
    env.cgroup
        .command("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
        ])
        .arg(resolv)
        .arg(program)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The test client in the cgroup, resolving `host:port` with glibc; its JSON lines.
fn client(env: &Env, resolv: &Path, hostport: &str, msg: &str) -> (bool, Vec<Value>) {
    let out = in_cgroup(
        env,
        resolv,
        CLIENT,
        &[hostport, msg, "--timeout-ms", "3000"],
    );
    (out.status.success(), hoop_tests::json_lines(&out.stdout))
}

fn target(name: &str, protocol: &str, hosts: &[&str], port: u16, extra: &str) -> String {
    let hosts = hosts
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[target]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nhosts = [{hosts}]\nports = [{port}]\n{extra}"
    )
}

/// A config whose hoopd uses the test server for its own lookups, with extra `[dns]` keys.
fn config(env: &Env, targets: &str, server: &str, extra: &str) -> String {
    env.config_dns(targets, &format!("resolvers = [\"{server}:53\"]\n{extra}"))
}

fn wait_session_end(h: &mut Hoopd, n: usize) -> Result<Vec<Value>, Failed> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while session_ends(h).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ends = session_ends(h);
    check(ends.len() == n, || {
        format!("{} sessions, expected {n}\n{}", ends.len(), h.log_text())
    })?;
    Ok(ends)
}

/// psql resolves `db1.postgres.database.azure.com` through glibc and connects: the connect is
/// redirected to hoopd, the session carries the name, and the TLS leaf hoopd presents is for
/// that name (verify-full against the node CA, with SNI off so the name comes from DNS learning).
fn psql_resolves_and_is_redirected(_: &()) -> Result<(), Failed> {
    check(Postgres::available(), || {
        "PostgreSQL 15 not installed".into()
    })?;
    let name = "db1.postgres.database.azure.com";
    let dns = Dns::start("127.0.0.151", 300, &[&format!("{name}=127.0.0.21")]);
    let pg = Postgres::start_named("dns", "127.0.0.21", 17101, &[name]);
    let env = Env::new("dnspg", 19101);
    let ca = pg.ca_path();
    let t = target(
        "azure-postgres",
        "postgres",
        &[PG, PRIVATELINK],
        17101,
        &format!("upstream_ca = \"{}\"\n", ca.display()),
    );
    let cfg = env.write_config(&config(&env, &t, &dns.addr, ""));
    let mut h = Hoopd::start(&cfg, None);
    let resolv = resolv_conf(&env, &dns.addr);
    let node_ca = env.dir.join("state/ca/ca.crt");
    let conninfo = format!(
        "host={name} port=17101 user=postgres dbname=postgres sslmode=verify-full sslsni=0 sslrootcert={} connect_timeout=5",
        node_ca.display()
    );
    let out = env
        .cgroup
        .command("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
        ])
        .arg(&resolv)
        .args([
            "psql",
            &conninfo,
            "-XAtc",
            "select 'via-' || host(inet_server_addr())",
        ])
        .env("PGPASSWORD", hoop_tests::pg::PASSWORD)
        .output()?;
    check(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "via-127.0.0.21",
        || format!("{}\n{}", text(&out), h.log_text()),
    )?;
    let learned = h.wait_log(
        |v| v["message"] == "learned a protected address",
        Duration::from_secs(2),
    )?;
    check(learned.to_string().contains(name), || learned.to_string())?;
    let end = &wait_session_end(&mut h, 1)?[0];
    check(end["host"] == name, || {
        format!("session without the name: {end}")
    })?;
    check(end["orig.dst"] == "127.0.0.21:17101", || end.to_string())?;
    check(end["target_name"] == "azure-postgres", || end.to_string())?;
    // the audit trail's session.start carries the name too
    let out = Command::new(hoop_tests::hoopctl_bin())
        .args(["audit", "--dir"])
        .arg(env.dir.join("state/audit"))
        .args(["export", "--format", "jsonl", "--kind", "session.start"])
        .output()?;
    let records = hoop_tests::json_lines(&out.stdout);
    check(
        records.len() == 1
            && records[0]
                .to_string()
                .contains(&format!("\"host\":\"{name}\"")),
        || text(&out),
    )
}

/// An unprotected name is answered and connected to directly; a protected one on the same
/// port is redirected — both through glibc with the same resolver.
fn unprotected_name_goes_direct(_: &()) -> Result<(), Failed> {
    let dns = Dns::start(
        "127.0.0.152",
        300,
        &[
            "plain.example.com=127.0.0.23",
            "db3.postgres.database.azure.com=127.0.0.24",
        ],
    );
    let plain = Echo::start("127.0.0.23:17102");
    let prot = Echo::start("127.0.0.24:17102");
    let env = Env::new("dnsplain", 19102);
    let t = target("pg", "tcp", &[PG], 17102, "");
    let cfg = env.write_config(&config(&env, &t, &dns.addr, ""));
    let mut h = Hoopd::start(&cfg, None);
    let resolv = resolv_conf(&env, &dns.addr);
    let (ok, lines) = client(&env, &resolv, "plain.example.com:17102", "p");
    check(ok && lines[0]["reply"] == "p-0", || {
        format!("{lines:?}\n{}", h.log_text())
    })?;
    let (ok, lines) = client(&env, &resolv, "db3.postgres.database.azure.com:17102", "q");
    check(ok && lines[0]["reply"] == "q-0", || {
        format!("{lines:?}\n{}", h.log_text())
    })?;
    let ends = wait_session_end(&mut h, 1)?;
    check(ends[0]["host"] == "db3.postgres.database.azure.com", || {
        ends[0].to_string()
    })?;
    check(ends[0]["orig.dst"] == "127.0.0.24:17102", || {
        ends[0].to_string()
    })?;
    check(plain.accepted() == 1 && prot.accepted() == 1, || {
        format!("plain {} prot {}", plain.accepted(), prot.accepted())
    })?;
    // the answer the client got is the resolver's own (getent through glibc)
    let out = in_cgroup(&env, &resolv, "getent", &["ahostsv4", "plain.example.com"]);
    check(
        String::from_utf8_lossy(&out.stdout).contains("127.0.0.23"),
        || text(&out),
    )
}

/// A name that is not itself protected but CNAMEs into privatelink is protected, and the
/// session carries the name the agent asked for.
fn cname_chain_into_privatelink(_: &()) -> Result<(), Failed> {
    let asked = "db2.postgres.database.azure.com";
    let dns = Dns::start(
        "127.0.0.153",
        300,
        &[
            &format!("{asked}>db2.privatelink.postgres.database.azure.com"),
            "db2.privatelink.postgres.database.azure.com=127.0.0.25",
        ],
    );
    let echo = Echo::start("127.0.0.25:17103");
    let env = Env::new("dnscname", 19103);
    // only the privatelink suffix is protected: the chain must be followed to see it
    let t = target("pl", "tcp", &[PRIVATELINK], 17103, "");
    let cfg = env.write_config(&config(&env, &t, &dns.addr, ""));
    let mut h = Hoopd::start(&cfg, None);
    let resolv = resolv_conf(&env, &dns.addr);
    let (ok, lines) = client(&env, &resolv, &format!("{asked}:17103"), "c");
    check(ok && lines[0]["reply"] == "c-0", || {
        format!("{lines:?}\n{}", h.log_text())
    })?;
    let ends = wait_session_end(&mut h, 1)?;
    check(ends[0]["host"] == asked, || ends[0].to_string())?;
    check(echo.accepted() == 1, || "echo".into())
}

/// A learned address stops being protected after its TTL (min_ttl 0, grace irrelevant: no
/// session is live), and the nftables guard follows.
fn ttl_expiry_removes_the_entry(_: &()) -> Result<(), Failed> {
    let dns = Dns::start(
        "127.0.0.154",
        2,
        &["db5.postgres.database.azure.com=127.0.0.26"],
    );
    let echo = Echo::start("127.0.0.26:17104");
    let env = Env::new("dnsttl", 19104);
    let t = target("pg", "tcp", &[PG], 17104, "");
    let cfg = env.write_config(&config(&env, &t, &dns.addr, "min_ttl_s = 0\ngrace_s = 0"));
    let mut h = Hoopd::start(&cfg, None);
    let resolv = resolv_conf(&env, &dns.addr);
    let (ok, lines) = client(&env, &resolv, "db5.postgres.database.azure.com:17104", "t");
    check(ok && lines[0]["reply"] == "t-0", || format!("{lines:?}"))?;
    wait_session_end(&mut h, 1)?;
    let nft = || {
        let o = Command::new("nft")
            .args(["list", "table", "inet", &env.nft_table()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while !nft().contains("127.0.0.26") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    check(nft().contains("127.0.0.26"), || {
        format!("guard without the learned address:\n{}", nft())
    })?;
    // by address, no lookup: redirected while the entry lives
    let (ok, _) = env.client(CLIENT, "127.0.0.26:17104", "u", &[]);
    check(ok, || "second connect".into())?;
    wait_session_end(&mut h, 2)?;
    h.wait_log(
        |v| v["message"] == "learned address expired",
        Duration::from_secs(6),
    )?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while nft().contains("127.0.0.26") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    check(!nft().contains("127.0.0.26"), || {
        format!("guard still has it:\n{}", nft())
    })?;
    let (ok, lines) = env.client(CLIENT, "127.0.0.26:17104", "v", &[]);
    check(ok && lines[0]["reply"] == "v-0", || format!("{lines:?}"))?;
    std::thread::sleep(Duration::from_millis(300));
    check(session_ends(&h).len() == 2, || {
        "redirected after expiry".into()
    })?;
    check(echo.accepted() == 3, || format!("echo {}", echo.accepted()))
}

/// DNS over TCP (dig +tcp) is steered and learned too; dig sees the resolver as the answer's
/// source, and the answer is the resolver's.
fn tcp_dns_is_learned(_: &()) -> Result<(), Failed> {
    let dns = Dns::start(
        "127.0.0.155",
        300,
        &[
            "db6.postgres.database.azure.com=127.0.0.27",
            "db7.postgres.database.azure.com=127.0.0.28",
        ],
    );
    let _e = Echo::start("127.0.0.27:17105");
    let _f = Echo::start("127.0.0.28:17105");
    let env = Env::new("dnstcp", 19105);
    let t = target("pg", "tcp", &[PG], 17105, "");
    let cfg = env.write_config(&config(&env, &t, &dns.addr, ""));
    let mut h = Hoopd::start(&cfg, None);
    let dig = |name: &str, tcp: bool| {
        let mut c = env.cgroup.command("dig");
        c.arg(format!("@{}", dns.addr))
            .arg(name)
            .args(["+tries=1", "+time=2"]);
        c.arg(if tcp { "+tcp" } else { "+notcp" });
        c.output().unwrap()
    };
    for (name, tcp, ip) in [
        ("db6.postgres.database.azure.com", true, "127.0.0.27"),
        ("db7.postgres.database.azure.com", false, "127.0.0.28"),
    ] {
        let out = dig(name, tcp);
        let s = String::from_utf8_lossy(&out.stdout);
        check(
            s.contains(ip) && s.contains(&format!("SERVER: {}#53", dns.addr)),
            || format!("{name} tcp={tcp}: {}\n{}", text(&out), h.log_text()),
        )?;
        let (ok, lines) = env.client(CLIENT, &format!("{ip}:17105"), "x", &[]);
        check(ok && lines[0]["reply"] == "x-0", || format!("{lines:?}"))?;
    }
    let ends = wait_session_end(&mut h, 2)?;
    let hosts: Vec<&str> = ends.iter().filter_map(|e| e["host"].as_str()).collect();
    check(
        hosts.contains(&"db6.postgres.database.azure.com")
            && hosts.contains(&"db7.postgres.database.azure.com"),
        || format!("{hosts:?}"),
    )?;
    let stats = h
        .logs_matching(|v| v["message"] == "learned a protected address")
        .len();
    check(stats == 2, || format!("{stats} learned"))
}

/// A resolver addressed over IPv6 (`nameserver ::1`): glibc's dual-stack socket is steered
/// through the forwarder's v4-mapped slot address, accepts the answer (glibc checks that it
/// comes from `::1`), and the address is learned. A socket that is IPv6-only cannot reach the
/// slot address: its lookups fail (closed) — dig's, here.
fn ipv6_resolver(_: &()) -> Result<(), Failed> {
    let _dns = Dns::start("::1", 300, &["db9.postgres.database.azure.com=127.0.0.32"]);
    let _e = Echo::start("127.0.0.32:17108");
    let env = Env::new("dns6", 19108);
    let t = target("pg", "tcp", &[PG], 17108, "");
    let cfg = env.write_config(&config(&env, &t, "[::1]", ""));
    let mut h = Hoopd::start(&cfg, None);
    let resolv = resolv_conf(&env, "::1");
    let (ok, lines) = client(&env, &resolv, "db9.postgres.database.azure.com:17108", "x");
    check(ok && lines[0]["reply"] == "x-0", || {
        format!("{lines:?}\n{}", h.log_text())
    })?;
    let ends = wait_session_end(&mut h, 1)?;
    check(ends[0]["host"] == "db9.postgres.database.azure.com", || {
        ends[0].to_string()
    })?;
    let out = env
        .cgroup
        .command("dig")
        .args([
            "@::1",
            "db9.postgres.database.azure.com",
            "+tries=1",
            "+time=1",
        ])
        .output()?;
    check(
        !String::from_utf8_lossy(&out.stdout).contains("127.0.0.32"),
        || format!("an IPv6-only socket bypassed the forwarder: {}", text(&out)),
    )
}

/// hoopd killed: lookups of protected names fail (UDP and TCP, via glibc and dig), every other
/// lookup still works, and addresses learned before stay redirected (refused, never direct).
fn forwarder_killed_fails_closed(_: &()) -> Result<(), Failed> {
    let dns = Dns::start(
        "127.0.0.156",
        300,
        &[
            "db8.postgres.database.azure.com=127.0.0.29",
            "plain.example.com=127.0.0.30",
        ],
    );
    let echo = Echo::start("127.0.0.29:17106");
    let env = Env::new("dnskill", 19106);
    let t = target("pg", "tcp", &[PG], 17106, "");
    let cfg = env.write_config(&config(&env, &t, &dns.addr, ""));
    let mut h = Hoopd::start(&cfg, None);
    let resolv = resolv_conf(&env, &dns.addr);
    let (ok, _) = client(&env, &resolv, "db8.postgres.database.azure.com:17106", "a");
    check(ok, || h.log_text())?;
    h.kill9();
    let getent = |name: &str| in_cgroup(&env, &resolv, "getent", &["ahostsv4", name]);
    let out = getent("plain.example.com");
    check(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("127.0.0.30"),
        || format!("unprotected lookup broken with hoopd down: {}", text(&out)),
    )?;
    let out = getent("db8.postgres.database.azure.com");
    check(!out.status.success() && out.stdout.is_empty(), || {
        format!("protected lookup answered with hoopd down: {}", text(&out))
    })?;
    for tcp in ["+notcp", "+tcp"] {
        let out = env
            .cgroup
            .command("dig")
            .arg(format!("@{}", dns.addr))
            .args([
                "db8.postgres.database.azure.com",
                "+tries=1",
                "+time=1",
                tcp,
            ])
            .output()?;
        check(
            !String::from_utf8_lossy(&out.stdout).contains("127.0.0.29"),
            || format!("dig {tcp} got the protected answer: {}", text(&out)),
        )?;
    }
    // the address learned before stays redirected: refused while hoopd is down
    let (ok, lines) = env.client(CLIENT, "127.0.0.29:17106", "b", &[]);
    check(!ok && lines[0]["kind"] == "ConnectionRefused", || {
        format!("{lines:?}")
    })?;
    check(echo.accepted() == 1, || {
        format!("direct connection: {}", echo.accepted())
    })?;
    // a restarted hoopd keeps what was learned (connect by address, no new lookup: redirected,
    // with the name), and serves protected lookups again
    let mut h2 = Hoopd::start(&cfg, None);
    let (ok, lines) = env.client(CLIENT, "127.0.0.29:17106", "c", &[]);
    check(ok && lines[0]["reply"] == "c-0", || {
        format!("{lines:?}\n{}", h2.log_text())
    })?;
    let ends = wait_session_end(&mut h2, 1)?;
    check(ends[0]["host"] == "db8.postgres.database.azure.com", || {
        ends[0].to_string()
    })?;
    let (ok, lines) = client(&env, &resolv, "db8.postgres.database.azure.com:17106", "d");
    check(ok && lines[0]["reply"] == "d-0", || {
        format!("{lines:?}\n{}", h2.log_text())
    })?;
    wait_session_end(&mut h2, 2)?;
    check(echo.accepted() == 3, || format!("echo {}", echo.accepted()))
}

/// Exact names are resolved by hoopd at start (with its own marked queries), so a process that
/// resolved before hoopd started — here: a connect by address — is covered.
fn exact_name_resolved_at_start(_: &()) -> Result<(), Failed> {
    let dns = Dns::start("127.0.0.157", 300, &["management.azure.com=127.0.0.31"]);
    let _echo = Echo::start("127.0.0.31:17107");
    let env = Env::new("dnsexact", 19107);
    let t = target("arm", "tcp", &["management.azure.com"], 17107, "");
    let cfg = env.write_config(&config(&env, &t, &dns.addr, ""));
    let mut h = Hoopd::start(&cfg, Some(&env.cgroup));
    let (ok, lines) = env.client(CLIENT, "127.0.0.31:17107", "e", &[]);
    check(ok && lines[0]["reply"] == "e-0", || {
        format!("{lines:?}\n{}", h.log_text())
    })?;
    let ends = wait_session_end(&mut h, 1)?;
    check(ends[0]["host"] == "management.azure.com", || {
        ends[0].to_string()
    })
}

fn main() {
    hoop_tests::run_root_trials(
        || (),
        &[
            (
                "psql_resolves_and_is_redirected",
                psql_resolves_and_is_redirected,
            ),
            ("unprotected_name_goes_direct", unprotected_name_goes_direct),
            ("cname_chain_into_privatelink", cname_chain_into_privatelink),
            ("ttl_expiry_removes_the_entry", ttl_expiry_removes_the_entry),
            ("tcp_dns_is_learned", tcp_dns_is_learned),
            (
                "forwarder_killed_fails_closed",
                forwarder_killed_fails_closed,
            ),
            ("ipv6_resolver", ipv6_resolver),
            ("exact_name_resolved_at_start", exact_name_resolved_at_start),
        ],
    )
}

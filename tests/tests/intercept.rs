//! End-to-end tests of the interception datapath (issue: transparent interception). They need
//! root (eBPF, cgroups, nftables); without it each is reported `ignored`, never passed, and with
//! `HOOP_REQUIRE_ROOT=1` (CI) a missing root fails the run.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use hoop_tests::{Echo, Env, Hoopd, pg::Postgres, send_line, session_ends};
use libtest_mimic::Failed;
use serde_json::Value;

const CLIENT: &str = env!("CARGO_BIN_EXE_hoop-test-client");

fn tcp_target(name: &str, cidrs: &str, ports: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nprotocol = \"tcp\"\ncidrs = [{cidrs}]\nports = [{ports}]\n"
    )
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

/// v4 client in the cgroup is redirected (hoopd records it with the right process facts and
/// byte counts); the same connect from outside goes direct.
fn redirect_inside_direct_outside(_: &()) -> Result<(), Failed> {
    let env = Env::new("v4", 19001);
    let echo = Echo::start("127.0.0.2:17001");
    let cfg = env.write_config(&env.config(&tcp_target("echo", "\"127.0.0.2/32\"", "17001")));
    let mut h = Hoopd::start(&cfg, None);
    let child = env
        .cgroup
        .command(CLIENT)
        .args(["127.0.0.2:17001", "hello"])
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    let lines = hoop_tests::json_lines(&out.stdout);
    check(out.status.success(), || format!("client failed: {lines:?}"))?;
    check(lines[0]["reply"] == "hello-0", || format!("{lines:?}"))?;
    let end = h.wait_log(|v| v["event"] == "session_end", Duration::from_secs(5))?;
    check(end["pid"] == pid, || format!("pid {pid} vs {end}"))?;
    check(end["orig.dst"] == "127.0.0.2:17001", || end.to_string())?;
    check(end["cgroup_id"] == env.cgroup.id(), || {
        format!("cgroup id {} vs {end}", env.cgroup.id())
    })?;
    check(
        end["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("hoop-test-client")),
        || end.to_string(),
    )?;
    check(
        end["cgroup"]
            .as_str()
            .is_some_and(|c| env.cgroup.path.ends_with(c.trim_start_matches('/'))),
        || end.to_string(),
    )?;
    check(end["process_unverified"] == "", || end.to_string())?;
    check(end["bytes_up"] == 7 && end["bytes_down"] == 7, || {
        end.to_string()
    })?;
    check(
        end["target_name"] == "echo" && end["proto"] == "tcp",
        || end.to_string(),
    )?;
    // outside the cgroup: direct to the server, no new session
    let (ok, lines) = Env::client_outside(CLIENT, "127.0.0.2:17001", "direct");
    check(ok && lines[0]["reply"] == "direct-0", || {
        format!("{lines:?}")
    })?;
    std::thread::sleep(Duration::from_millis(200));
    check(session_ends(&h).len() == 1, || h.log_text())?;
    check(echo.accepted() == 2, || {
        format!("echo saw {}", echo.accepted())
    })
}

/// IPv6 and IPv4-mapped destinations are redirected too, and getpeername shows the original.
fn ipv6_and_v4_mapped_with_getpeername(_: &()) -> Result<(), Failed> {
    let env = Env::new("v6", 19002);
    let _e6 = Echo::start("[::1]:17002");
    let _e4 = Echo::start("127.0.0.2:17002");
    let cfg = env.write_config(&env.config(&tcp_target(
        "echo",
        "\"::1/128\", \"127.0.0.2/32\"",
        "17002",
    )));
    let h = Hoopd::start(&cfg, None);
    for (addr, peer) in [
        ("[::1]:17002", "[::1]:17002"),
        ("[::ffff:127.0.0.2]:17002", "[::ffff:127.0.0.2]:17002"),
        ("127.0.0.2:17002", "127.0.0.2:17002"),
    ] {
        let (ok, lines) = env.client(CLIENT, addr, "x", &[]);
        check(ok, || format!("{addr}: {lines:?}"))?;
        check(lines[0]["peer"] == peer, || {
            format!("{addr}: getpeername {lines:?}")
        })?;
    }
    std::thread::sleep(Duration::from_millis(300));
    let ends = session_ends(&h);
    check(ends.len() == 3, || h.log_text())?;
    let dsts: Vec<&str> = ends.iter().filter_map(|e| e["orig.dst"].as_str()).collect();
    check(
        dsts.contains(&"[::1]:17002")
            && dsts.iter().filter(|d| **d == "127.0.0.2:17002").count() == 2,
        || format!("{dsts:?}"),
    )
}

/// hoopd itself inside the attached cgroup: its upstream connects carry its mark and are not
/// redirected back to itself.
fn hoopd_inside_cgroup_not_looped(_: &()) -> Result<(), Failed> {
    let env = Env::new("self", 19003);
    let _echo = Echo::start("127.0.0.2:17003");
    let cfg = env.write_config(&env.config(&tcp_target("echo", "\"127.0.0.2/32\"", "17003")));
    let h = Hoopd::start(&cfg, Some(&env.cgroup));
    let (ok, lines) = env.client(CLIENT, "127.0.0.2:17003", "loop", &[]);
    check(ok && lines[0]["reply"] == "loop-0", || {
        format!("{lines:?}\n{}", h.log_text())
    })?;
    std::thread::sleep(Duration::from_millis(200));
    check(session_ends(&h).len() == 1, || h.log_text())
}

/// kill -9: protected connects are refused (not direct) while the pins stay; a restart re-adopts
/// the same pins and serves again.
fn fail_closed_and_readopt(_: &()) -> Result<(), Failed> {
    let env = Env::new("restart", 19004);
    let echo = Echo::start("127.0.0.2:17004");
    let cfg = env.write_config(&env.config(&tcp_target("echo", "\"127.0.0.2/32\"", "17004")));
    let mut h = Hoopd::start(&cfg, None);
    check(env.client(CLIENT, "127.0.0.2:17004", "a", &[]).0, || {
        "before kill".into()
    })?;
    h.kill9();
    let (ok, lines) = env.client(CLIENT, "127.0.0.2:17004", "b", &[]);
    check(!ok && lines[0]["kind"] == "ConnectionRefused", || {
        format!("expected refused: {lines:?}")
    })?;
    check(echo.accepted() == 1, || {
        format!("direct connection slipped through: {}", echo.accepted())
    })?;
    let links = std::path::Path::new(&env.pin_dir()).join("links");
    check(
        std::fs::read_dir(&links)?.count() == hoop_tests::PINNED_LINKS,
        || "links not pinned".into(),
    )?;
    let mut h2 = Hoopd::start(&cfg, None);
    h2.wait_log(
        |v| v["message"] == "replaced the previous hoopd's link",
        Duration::from_secs(1),
    )?;
    let (ok, lines) = env.client(CLIENT, "127.0.0.2:17004", "c", &[]);
    check(ok && lines[0]["reply"] == "c-0", || format!("{lines:?}"))?;
    check(
        std::fs::read_dir(&links)?.count() == hoop_tests::PINNED_LINKS,
        || "links after restart".into(),
    )
}

/// With the programs detached (link pins removed) the nftables guard drops the direct path
/// from the cgroup, and only from it.
fn guard_drops_when_detached(_: &()) -> Result<(), Failed> {
    let env = Env::new("guard", 19005);
    let echo = Echo::start("127.0.0.2:17005");
    let cfg = env.write_config(&env.config(&tcp_target("echo", "\"127.0.0.2/32\"", "17005")));
    let mut h = Hoopd::start(&cfg, None);
    h.kill9();
    for e in std::fs::read_dir(std::path::Path::new(&env.pin_dir()).join("links"))? {
        std::fs::remove_file(e?.path())?; // last reference: the programs detach
    }
    // links are released asynchronously after their last reference goes: until then the
    // (dead) listener still refuses
    let mut attempt = 0;
    let (ok, lines) = loop {
        let (ok, lines) = env.client(CLIENT, "127.0.0.2:17005", "raw", &["--timeout-ms", "1500"]);
        attempt += 1;
        if lines[0]["kind"] != "ConnectionRefused" || attempt == 10 {
            break (ok, lines);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    check(!ok && lines[0]["kind"] == "TimedOut", || {
        format!("expected a drop (timeout): {lines:?}")
    })?;
    check(echo.accepted() == 0, || "direct path open".into())?;
    let table = Command::new("nft")
        .args(["list", "table", "inet", &env.nft_table()])
        .output()?;
    let text = String::from_utf8_lossy(&table.stdout);
    let v4_rule = text
        .lines()
        .find(|l| l.contains("ip daddr"))
        .unwrap_or_default();
    let dropped: u64 = v4_rule
        .split("packets ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    check(dropped >= 1, || {
        format!("guard counter did not move: {text}")
    })?;
    let (ok, _) = Env::client_outside(CLIENT, "127.0.0.2:17005", "outside");
    check(ok && echo.accepted() == 1, || {
        "outside the scope must stay direct".into()
    })
}

/// 200 concurrent clients through the redirect.
fn concurrent_200(_: &()) -> Result<(), Failed> {
    let env = Env::new("conc", 19006);
    let _echo = Echo::start("127.0.0.2:17006");
    let cfg = env.write_config(&env.config(&tcp_target("echo", "\"127.0.0.2/32\"", "17006")));
    let h = Hoopd::start(&cfg, None);
    let (ok, lines) = env.client(
        CLIENT,
        "127.0.0.2:17006",
        "c",
        &["--count", "200", "--timeout-ms", "20000"],
    );
    let good = lines
        .iter()
        .filter(|l| l["ok"] == true && l["reply"] == format!("c-{}", l["i"]))
        .count();
    check(ok && good == 200, || {
        format!(
            "{good}/200 ok; failures: {:?}",
            lines
                .iter()
                .filter(|l| l["ok"] != true)
                .take(3)
                .collect::<Vec<_>>()
        )
    })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while session_ends(&h).len() < 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    check(session_ends(&h).len() == 200, || {
        format!("{} session records", session_ends(&h).len())
    })
}

/// A connection to the listener that the kernel did not redirect is closed, never forwarded.
fn listener_without_record_refused(_: &()) -> Result<(), Failed> {
    let env = Env::new("norec", 19007);
    let echo = Echo::start("127.0.0.2:17007");
    let cfg = env.write_config(&env.config(&tcp_target("echo", "\"127.0.0.2/32\"", "17007")));
    let mut h = Hoopd::start(&cfg, None);
    let (ok, lines) = Env::client_outside(CLIENT, "127.0.0.1:19007", "sneak");
    let refused = !ok || lines[0]["reply"] == "";
    check(refused, || {
        format!("listener answered a direct connection: {lines:?}")
    })?;
    h.wait_log(
        |v| v["message"] == "connection without a redirect record refused",
        Duration::from_secs(3),
    )?;
    check(echo.accepted() == 0, || "forwarded".into())?;
    check(
        env.client(CLIENT, "127.0.0.2:17007", "after", &[]).0,
        || "hoopd unusable after".into(),
    )
}

/// Invalid configuration: exit 64 with the key named, for `check-config` and for `run`.
fn bad_config_exits_64(_: &()) -> Result<(), Failed> {
    let env = Env::new("badcfg", 19008);
    let cases = [
        ("[listen]\nadress = \"127.0.0.1:1\"\n", "adress"),
        (
            "[[target]]\nname='a'\nprotocol='tcp'\ncidrs=['10.0.0.0/33']\nports=[1]\n",
            "10.0.0.0/33",
        ),
        (
            "[[target]]\nname='a'\nprotocol='tcp'\ncidrs=['10.0.0.0/8']\nports=['9-1']\n",
            "target[0].ports[0]",
        ),
        ("[intercept]\npin_dir = 'relative'\n", "intercept.pin_dir"),
    ];
    for (text, key) in cases {
        let p = env.dir.join("bad.toml");
        std::fs::write(&p, text)?;
        for sub in [&["check-config"][..], &[][..]] {
            let out = Command::new(hoop_tests::hoopd_bin())
                .arg("--config")
                .arg(&p)
                .args(sub)
                .output()?;
            let err = String::from_utf8_lossy(&out.stderr);
            check(out.status.code() == Some(64), || {
                format!("{sub:?} {text:?}: exit {:?}", out.status.code())
            })?;
            check(err.contains(key), || format!("{text:?}: {err}"))?;
        }
    }
    let missing = Command::new(hoop_tests::hoopd_bin())
        .args(["--config", "/nonexistent/hoop.toml", "check-config"])
        .output()?;
    check(missing.status.code() == Some(64), || {
        "missing explicit config".into()
    })
}

/// SIGHUP adds and removes targets live; an open session survives the reload.
fn sighup_adds_and_removes_targets(_: &()) -> Result<(), Failed> {
    let env = Env::new("hup", 19009);
    let a = Echo::start("127.0.0.2:17009");
    let b = Echo::start("127.0.0.3:17009");
    let cfg = env.write_config(&env.config(&tcp_target("a", "\"127.0.0.2/32\"", "17009")));
    let mut h = Hoopd::start(&cfg, None);
    let mut held = env
        .cgroup
        .command(CLIENT)
        .args(["127.0.0.2:17009", "held", "--wait-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = std::io::BufReader::new(held.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line)?; // first line: the connection's addresses
    check(
        env.client(CLIENT, "127.0.0.3:17009", "b1", &[]).0 && session_ends(&h).is_empty(),
        || "b redirected before reload".into(),
    )?;
    env.write_config(&env.config(&tcp_target("b", "\"127.0.0.3/32\"", "17009")));
    h.signal(libc::SIGHUP);
    h.wait_log(
        |v| v["message"] == "targets applied",
        Duration::from_secs(5),
    )?;
    check(env.client(CLIENT, "127.0.0.3:17009", "b2", &[]).0, || {
        "b after reload".into()
    })?;
    h.wait_log(
        |v| v["event"] == "session_end" && v["target_name"] == "b",
        Duration::from_secs(3),
    )?;
    check(env.client(CLIENT, "127.0.0.2:17009", "a2", &[]).0, || {
        "a direct after removal".into()
    })?;
    send_line(&mut held, "go");
    let status = held.wait()?;
    check(status.success(), || {
        "held session broke across the reload".into()
    })?;
    h.wait_log(
        |v| v["event"] == "session_end" && v["target_name"] == "a",
        Duration::from_secs(3),
    )?;
    let a_sessions = session_ends(&h)
        .iter()
        .filter(|v| v["target_name"] == "a")
        .count();
    check(a_sessions == 1, || {
        format!("a sessions {a_sessions}: removal did not take")
    })?;
    // a bad file keeps the running config
    std::fs::write(env.dir.join("hoop.toml"), "[listen]\nbogus = 1\n")?;
    h.signal(libc::SIGHUP);
    h.wait_log(
        |v| v["message"] == "reload failed; keeping the running configuration",
        Duration::from_secs(5),
    )?;
    check(env.client(CLIENT, "127.0.0.3:17009", "b3", &[]).0, || {
        "b after bad reload".into()
    })?;
    check(a.accepted() == 2 && b.accepted() == 3, || {
        format!("a {} b {}", a.accepted(), b.accepted())
    })
}

/// A real PostgreSQL on 127.0.0.2 reached by real psql through the redirect (protocol tcp:
/// TLS and SCRAM end to end).
fn psql_through_tcp_target(_: &()) -> Result<(), Failed> {
    check(Postgres::available(), || {
        "PostgreSQL 15 server not installed (xtask test installs it)".into()
    })?;
    let pg = Postgres::start("intercept", "127.0.0.2", 17010);
    let env = Env::new("psql", 19010);
    let cfg = env.write_config(&env.config(&tcp_target("pg", "\"127.0.0.2/32\"", "17010")));
    let mut h = Hoopd::start(&cfg, None);
    let out = env
        .cgroup
        .command("psql")
        .arg(pg.conninfo("require"))
        .args([
            "-XAtc",
            "select 'through-' || 40 + 2, current_setting('ssl')",
        ])
        .env("PGPASSWORD", hoop_tests::pg::PASSWORD)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    check(
        out.status.success() && stdout.trim() == "through-42|on",
        || format!("{stdout} {}", String::from_utf8_lossy(&out.stderr)),
    )?;
    let end = h.wait_log(|v| v["event"] == "session_end", Duration::from_secs(5))?;
    check(
        end["exe"].as_str().is_some_and(|e| e.contains("psql")),
        || end.to_string(),
    )?;
    check(end["bytes_down"].as_u64().unwrap_or(0) > 1000, || {
        end.to_string()
    })?;
    Ok(())
}

/// A target whose protocol this hoopd cannot inspect yet is refused, not passed through.
fn unsupported_protocol_fails_closed(_: &()) -> Result<(), Failed> {
    let env = Env::new("unsup", 19011);
    let echo = Echo::start("127.0.0.2:17011");
    let t = "[[target]]\nname = \"sql\"\nprotocol = \"tds\"\ncidrs = [\"127.0.0.2/32\"]\nports = [17011]\n";
    let cfg = env.write_config(&env.config(t));
    let mut h = Hoopd::start(&cfg, None);
    let (_, lines) = env.client(CLIENT, "127.0.0.2:17011", "x", &[]);
    check(lines[0]["reply"] != "x-0", || format!("{lines:?}"))?;
    let end = h.wait_log(
        |v: &Value| v["event"] == "session_end",
        Duration::from_secs(3),
    )?;
    check(
        end["outcome"] == "error" && end["error"].as_str().is_some_and(|e| e.contains("tds")),
        || end.to_string(),
    )?;
    check(echo.accepted() == 0, || "passed through".into())
}

/// `hoopd teardown` detaches and unpins everything and removes the guard: direct again.
fn teardown_removes_everything(_: &()) -> Result<(), Failed> {
    let env = Env::new("teardown", 19012);
    let echo = Echo::start("127.0.0.2:17012");
    let cfg = env.write_config(&env.config(&tcp_target("echo", "\"127.0.0.2/32\"", "17012")));
    let mut h = Hoopd::start(&cfg, None);
    h.kill9();
    let out = Command::new(hoop_tests::hoopd_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("teardown")
        .output()?;
    check(out.status.success(), || {
        String::from_utf8_lossy(&out.stderr).to_string()
    })?;
    check(!std::path::Path::new(&env.pin_dir()).exists(), || {
        "pin dir left behind".into()
    })?;
    let table = Command::new("nft")
        .args(["list", "table", "inet", &env.nft_table()])
        .output()?;
    check(!table.status.success(), || "guard table left behind".into())?;
    // detach is asynchronous (last link reference); then the connect goes direct
    let mut ok = false;
    for _ in 0..20 {
        if env.client(CLIENT, "127.0.0.2:17012", "direct", &[]).0 && echo.accepted() > 0 {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check(ok, || "not direct after teardown".into())
}

/// A pin directory another user made first (bpffs's root is 1777 here: anyone can) could have
/// hoopd's links unpinned under it, detaching the redirect: hoopd refuses it and attaches
/// nothing.
fn foreign_pin_dir_refused(_: &()) -> Result<(), Failed> {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new("pinown", 19013);
    let pins = std::path::PathBuf::from(env.pin_dir());
    let _ = std::fs::remove_dir_all(&pins);
    std::fs::create_dir(&pins)?;
    std::os::unix::fs::chown(&pins, Some(65534), Some(65534))?;
    let cfg = env.write_config(&env.config(&tcp_target("echo", "\"127.0.0.2/32\"", "17013")));
    let mut h = Hoopd::spawn(&cfg, None);
    let mut exited = None;
    for _ in 0..200 {
        exited = h.child.try_wait()?;
        if exited.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = h.log_text();
    let _ = h.child.kill();
    let owner = std::fs::metadata(&pins)?.uid();
    let attached = pins.join("links").exists();
    let _ = std::fs::remove_dir_all(&pins);
    check(exited.is_some_and(|s| !s.success()), || {
        format!("hoopd ran with a foreign pin dir ({exited:?}):\n{logs}")
    })?;
    check(logs.contains("owned by uid 65534"), || logs.clone())?;
    check(owner == 65534 && !attached, || {
        format!("pins made under the foreign dir (owner {owner}, links {attached})")
    })
}

fn main() {
    hoop_tests::run_root_trials(
        || (),
        &[
            (
                "redirect_inside_direct_outside",
                redirect_inside_direct_outside,
            ),
            (
                "ipv6_and_v4_mapped_with_getpeername",
                ipv6_and_v4_mapped_with_getpeername,
            ),
            (
                "hoopd_inside_cgroup_not_looped",
                hoopd_inside_cgroup_not_looped,
            ),
            ("fail_closed_and_readopt", fail_closed_and_readopt),
            ("guard_drops_when_detached", guard_drops_when_detached),
            ("concurrent_200", concurrent_200),
            (
                "listener_without_record_refused",
                listener_without_record_refused,
            ),
            ("bad_config_exits_64", bad_config_exits_64),
            ("foreign_pin_dir_refused", foreign_pin_dir_refused),
            (
                "sighup_adds_and_removes_targets",
                sighup_adds_and_removes_targets,
            ),
            ("psql_through_tcp_target", psql_through_tcp_target),
            (
                "unsupported_protocol_fails_closed",
                unsupported_protocol_fails_closed,
            ),
            ("teardown_removes_everything", teardown_removes_everything),
        ],
    )
}

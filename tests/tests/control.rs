//! The control socket and hoopctl: live sessions (table, JSON, watch), kill, authorisation by
//! SO_PEERCRED (root/operators only, never an agent's cgroup), a clear error when hoopd is down.
//! Root only.

use std::{
    io::BufRead,
    process::{Command, Stdio},
    time::Duration,
};

use hoop_tests::{Echo, Env, Hoopd, hoopctl_bin, send_line};
use libtest_mimic::Failed;
use serde_json::Value;

const CLIENT: &str = env!("CARGO_BIN_EXE_hoop-test-client");

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

fn hoopctl(env: &Env, args: &[&str]) -> (i32, String, String) {
    env.hoopctl(args)
}

fn echo_env(name: &str, port: u16, target_port: u16) -> (Env, Echo, Hoopd) {
    let env = Env::new(name, port);
    let echo = Echo::start(&format!("127.0.0.2:{target_port}"));
    let t = format!(
        "[[target]]\nname = \"echo\"\nprotocol = \"tcp\"\ncidrs = [\"127.0.0.2/32\"]\nports = [{target_port}]\n"
    );
    let cfg = env.write_config(&env.config(&t));
    let h = Hoopd::start(&cfg, None);
    (env, echo, h)
}

/// A held session shows in `sessions --json` and the table, `watch` streams its start, and
/// `kill` ends it.
fn sessions_watch_and_kill(_: &()) -> Result<(), Failed> {
    let (env, _echo, mut h) = echo_env("ctl-sessions", 19301, 17401);
    let mut watch = Command::new(hoopctl_bin())
        .arg("--socket")
        .arg(env.socket())
        .arg("watch")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut watch_out = std::io::BufReader::new(watch.stdout.take().unwrap());
    let mut held = env
        .cgroup
        .command(CLIENT)
        .args(["127.0.0.2:17401", "held", "--wait-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut first = String::new();
    std::io::BufReader::new(held.stdout.as_mut().unwrap()).read_line(&mut first)?;
    h.wait_log(
        |v| v["message"] == "session started",
        Duration::from_secs(3),
    )?;
    let (code, out, err) = hoopctl(&env, &["sessions", "--json"]);
    let list: Value = serde_json::from_str(&out).unwrap_or_default();
    check(
        code == 0 && list.as_array().is_some_and(|a| a.len() == 1),
        || format!("{code} {out} {err}"),
    )?;
    let s = &list[0];
    for k in [
        "id",
        "state",
        "target",
        "protocol",
        "identity",
        "process",
        "statements",
        "bytes_in",
        "bytes_out",
    ] {
        check(!s[k].is_null(), || format!("missing {k} in {s}"))?;
    }
    check(
        s["process"]["pid"] == held.id() && s["target"] == "echo" && s["protocol"] == "tcp",
        || s.to_string(),
    )?;
    check(
        s["process"]["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("hoop-test-client")),
        || s.to_string(),
    )?;
    let id = s["id"].as_str().unwrap().to_string();
    let (code, table, _) = hoopctl(&env, &["sessions"]);
    check(
        code == 0 && table.contains(&id) && table.contains("hoop-test-client"),
        || table.clone(),
    )?;
    let (code, shown, _) = hoopctl(&env, &["session", "show", &id[..8]]);
    check(code == 0 && shown.contains(&id), || shown.clone())?;
    // the watcher saw the session start
    let mut seen = false;
    for _ in 0..5 {
        let mut line = String::new();
        watch_out.read_line(&mut line)?;
        if line.contains("session_start") && line.contains(&id) {
            seen = true;
            break;
        }
    }
    let _ = watch.kill();
    check(seen, || "watch did not stream the session start".into())?;
    let (code, out, err) = hoopctl(&env, &["kill", &id]);
    check(code == 0 && out.contains(&id), || format!("{out} {err}"))?;
    let end = h.wait_log(|v| v["event"] == "session_end", Duration::from_secs(3))?;
    check(
        end["error"]
            .as_str()
            .is_some_and(|e| e.contains("killed by an operator")),
        || end.to_string(),
    )?;
    send_line(&mut held, "go");
    let status = held.wait()?;
    check(!status.success(), || {
        "the killed session still answered".into()
    })?;
    let (_, out, _) = hoopctl(&env, &["sessions", "--json"]);
    check(out.trim() == "[]", || out)
}

/// A process in a cgroup that opened intercepted sessions is refused, so is an unprivileged uid;
/// hoopctl says clearly when hoopd is down.
fn callers_are_authorised(_: &()) -> Result<(), Failed> {
    let (env, _echo, mut h) = echo_env("ctl-auth", 19302, 17402);
    let (ok, _) = env.client(CLIENT, "127.0.0.2:17402", "x", &[]);
    check(ok, || "session".into())?;
    let out = env
        .cgroup
        .command(hoopctl_bin())
        .arg("--socket")
        .arg(env.socket())
        .args(["sessions", "--json"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    check(
        !out.status.success() && err.contains("not authorised") && err.contains("intercepted"),
        || format!("agent cgroup accepted: {err}"),
    )?;
    h.wait_log(
        |v| v["message"] == "control caller refused",
        Duration::from_secs(3),
    )?;
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(hoopctl_bin())
        .arg("--socket")
        .arg(env.socket())
        .arg("sessions")
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    check(
        !out.status.success() && (err.contains("not allowed") || err.contains("not authorised")),
        || format!("nobody accepted: {err}"),
    )?;
    h.kill9();
    let (code, _, err) = hoopctl(&env, &["sessions"]);
    check(code != 0 && err.contains("hoopd is not running"), || err)
}

fn main() {
    hoop_tests::run_root_trials(
        || (),
        &[
            ("sessions_watch_and_kill", sessions_watch_and_kill),
            ("callers_are_authorised", callers_are_authorised),
        ],
    )
}

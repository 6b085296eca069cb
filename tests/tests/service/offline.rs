//! The unit and the install, checked without a running systemd: `systemd-analyze verify` and
//! `security`, `hoopd install --root` into an empty directory and `uninstall`, and hoopd
//! bounded to exactly the unit's capabilities.

use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::Command,
    time::Duration,
};

use hoop_tests::Echo;
use libtest_mimic::Failed;

use super::{check, exposure};

fn unit_source() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/hoopd.service")
}

/// The unit with ExecStart= pointing at the binary under test (verify checks it exists).
fn unit_for_test(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(unit_source()).unwrap();
    let bin = hoop_tests::hoopd_bin();
    let p = dir.join("hoopd.service");
    std::fs::write(&p, text.replace("/usr/bin/hoopd", bin.to_str().unwrap())).unwrap();
    p
}

pub(super) fn unit_verifies_and_scores_well(_: &()) -> Result<(), Failed> {
    let dir = tempdir("verify");
    let unit = unit_for_test(&dir);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    check(out.status.success() && err.trim().is_empty(), || {
        format!("systemd-analyze verify: {:?} {err}", out.status)
    })?;
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let score = exposure(&text).ok_or_else(|| format!("no score in: {text}"))?;
    eprintln!("systemd-analyze security (offline): exposure {score}");
    check(score <= 3.0, || format!("exposure {score} > 3.0:\n{text}"))
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hoop-test-svc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every entry under `dir` with its mode and owner.
fn listing(dir: &Path) -> BTreeMap<String, (u32, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            out.insert(rel, (m.permissions().mode() & 0o7777, m.uid()));
        }
    }
    out
}

/// `hoopd install --root` into an empty directory: every file, its mode and the trust-store
/// entry; a second install changes nothing; uninstall leaves the directory empty.
pub(super) fn install_into_an_empty_root(_: &()) -> Result<(), Failed> {
    let root = tempdir("root");
    let hoopd = hoop_tests::hoopd_bin();
    let install = || {
        Command::new(&hoopd)
            .arg("install")
            .arg("--root")
            .arg(&root)
            .output()
    };
    let out = install()?;
    check(out.status.success(), || format!("install: {out:?}"))?;
    let l = listing(&root);
    let want = [
        ("usr/bin/hoopd", 0o755),
        ("usr/bin/hoopctl", 0o755),
        ("usr/lib/systemd/system/hoopd.service", 0o644),
        ("usr/lib/sysusers.d/hoop.conf", 0o644),
        ("usr/lib/tmpfiles.d/hoop.conf", 0o644),
        ("usr/share/doc/hoop/config.md", 0o644),
        ("etc/hoop/hoop.toml", 0o644),
        (
            "etc/systemd/system/multi-user.target.wants/hoopd.service",
            0o777,
        ),
        ("var/lib/hoop", 0o700),
        ("var/lib/hoop/ca", 0o755),
        ("var/lib/hoop/ca/ca.crt", 0o644),
        ("var/lib/hoop/ca/ca.key", 0o600),
        ("var/lib/hoop/audit.key", 0o600),
        ("var/lib/hoop/audit.key.pub", 0o644),
        ("usr/local/share/ca-certificates/hoop-node-ca.crt", 0o644),
    ];
    for (p, mode) in want {
        let got = l.get(p).copied();
        check(got == Some((mode, 0)), || {
            format!("{p}: {got:?}, want mode {mode:o} owner root")
        })?;
    }
    let read = |p: &str| std::fs::read(root.join(p)).unwrap();
    check(
        read("usr/local/share/ca-certificates/hoop-node-ca.crt") == read("var/lib/hoop/ca/ca.crt"),
        || "the trust-store entry is not the node CA".into(),
    )?;
    check(read("usr/bin/hoopd") == std::fs::read(&hoopd)?, || {
        "installed hoopd differs".into()
    })?;
    let enabled = Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["is-enabled", "hoopd.service"])
        .output()?;
    check(
        String::from_utf8_lossy(&enabled.stdout).trim() == "enabled",
        || format!("systemctl --root is-enabled: {enabled:?}"),
    )?;
    let again = install()?;
    let text = String::from_utf8_lossy(&again.stdout);
    check(
        again.status.success() && !text.contains("installed "),
        || format!("a second install rewrote files: {text}"),
    )?;
    check(listing(&root) == l, || {
        "a second install changed the tree".into()
    })?;
    let out = Command::new(&hoopd)
        .arg("uninstall")
        .arg("--root")
        .arg(&root)
        .output()?;
    check(out.status.success(), || format!("uninstall: {out:?}"))?;
    let left = listing(&root);
    check(left.is_empty(), || format!("left behind: {left:?}"))?;
    std::fs::remove_dir(&root)?;
    Ok(())
}

/// `CAP_X` names of the unit's CapabilityBoundingSet=, lower-cased without the prefix, as
/// setpriv takes them.
fn unit_capabilities() -> Vec<String> {
    let text = std::fs::read_to_string(unit_source()).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet= in the unit");
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

/// hoopd as root but bounded to `caps`, as the unit runs it; waits for "hoopd ready".
fn hoopd_bounded(cfg: &Path, caps: &[String]) -> Result<hoop_tests::Hoopd, Failed> {
    use std::io::BufRead;
    let bounding: String = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut child = Command::new("setpriv")
        .arg(format!("--bounding-set={bounding}"))
        .arg("--inh-caps=-all")
        .arg(hoop_tests::hoopd_bin())
        .arg("--config")
        .arg(cfg)
        .env("HOOP_LOG_FORMAT", "json")
        .env("HOOP_LOG", "warn,hoop=info")
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = logs.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let v = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
            sink.lock().unwrap().push(v);
        }
    });
    let mut h = hoop_tests::Hoopd { child, logs };
    h.wait_log(|v| v["message"] == "hoopd ready", Duration::from_secs(20))
        .map_err(|log| format!("hoopd with {bounding} not ready:\n{log}"))?;
    Ok(h)
}

/// The unit's capability set is enough for the whole data path, and CAP_SYS_PTRACE is what lets
/// hoopd see who another user's process is (the other capabilities are needed to start at all:
/// removing any one of them stops the load, the attach or the guard).
pub(super) fn capabilities_of_the_unit_suffice(_: &()) -> Result<(), Failed> {
    const CLIENT: &str = env!("CARGO_BIN_EXE_hoop-test-client");
    let caps = unit_capabilities();
    let env = hoop_tests::Env::new("svc-caps", 19404);
    let echo = Echo::start("127.0.0.8:17800");
    let cfg = env.write_config(&env.config(
        "[metrics]\nenabled = false\n[[target]]\nname = \"echo\"\nprotocol = \"tcp\"\ncidrs = [\"127.0.0.8/32\"]\nports = [17800]\n",
    ));
    let without_ptrace: Vec<String> = caps
        .iter()
        .filter(|c| *c != "sys_ptrace")
        .cloned()
        .collect();
    for (set, attributed) in [(&caps, true), (&without_ptrace, false)] {
        let h = hoopd_bounded(&cfg, set)?;
        // a process of another user, in the intercepted cgroup
        let out = env
            .cgroup
            .command("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                CLIENT,
                "127.0.0.8:17800",
                "hi",
            ])
            .output()?;
        check(out.status.success(), || format!("client: {out:?}"))?;
        let mut h = h;
        let end = h
            .wait_log(|v| v["event"] == "session_end", Duration::from_secs(5))
            .map_err(|l| format!("no session end: {l}"))?;
        let exe = end["exe"].as_str().unwrap_or("");
        check(
            exe.ends_with("hoop-test-client") == attributed && end["uid"] == 65534,
            || format!("caps {set:?}: session_end {end}"),
        )?;
        h.kill9();
    }
    check(echo.accepted() == 2, || {
        format!("echo saw {}", echo.accepted())
    })
}

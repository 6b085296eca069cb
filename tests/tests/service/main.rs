//! The node as a runner image ships it: the unit passes `systemd-analyze verify` and scores well
//! on `systemd-analyze security`; `hoopd install --root` lays out every file with its mode and
//! `uninstall` takes all of it away; and under a real systemd (booted in namespaces of its own,
//! see `hoop_tests::systemd`) the hardened unit starts (READY only once the node protects),
//! reloads, stops fail-closed, refuses to start on an invalid configuration (ExecStartPre), and an
//! install + uninstall on that live system leaves nothing behind. Root only. The checks that need
//! no running systemd (the unit, the install, the capability set) are in `offline.rs`.

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use hoop_tests::{Echo, systemd::Systemd};
use libtest_mimic::Failed;

mod offline;
use offline::{
    capabilities_of_the_unit_suffice, install_into_an_empty_root, unit_verifies_and_scores_well,
};

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}

/// "Overall exposure level for hoopd.service: 2.6 OK" → 2.6
fn exposure(security_output: &str) -> Option<f64> {
    let line = security_output
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    line.split(": ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

const SVC_PORT: u16 = 979;
const SVC_DNS: u16 = 19453;
const SVC_METRICS: u16 = 19452;
const ECHO: &str = "127.0.0.6:17600";

fn svc_config(pins: &str, table: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:{SVC_PORT}\"\naddress6 = \"[::1]:{SVC_PORT}\"\n\
         [intercept]\npin_dir = \"{pins}\"\nnft_table = \"{table}\"\n\
         [metrics]\nlisten = \"127.0.0.1:{SVC_METRICS}\"\n[dns]\nport = {SVC_DNS}\n\
         [[target]]\nname = \"echo\"\nprotocol = \"tcp\"\ncidrs = [\"127.0.0.6/32\"]\nports = [17600]\n"
    )
}

/// Host-side clean-up if the test fails half-way: the pins and the table are host state.
struct HostState {
    pins: String,
    table: String,
}

impl Drop for HostState {
    fn drop(&mut self) {
        let cfg =
            std::env::temp_dir().join(format!("hoop-test-svc-td-{}.toml", std::process::id()));
        let text = format!(
            "[intercept]\npin_dir = \"{}\"\nnft_table = \"{}\"\n",
            self.pins, self.table
        );
        if std::fs::write(&cfg, text).is_ok() {
            let _ = Command::new(hoop_tests::hoopd_bin())
                .arg("--config")
                .arg(&cfg)
                .arg("teardown")
                .output();
            let _ = std::fs::remove_file(cfg);
        }
    }
}

fn scrape(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The hardened unit under a real systemd, from install to uninstall.
fn service_under_systemd(_: &()) -> Result<(), Failed> {
    if let Some(why) = Systemd::unavailable() {
        return Err(format!("cannot boot a test systemd here: {why}").into());
    }
    let bins = hoop_tests::hoopd_bin().parent().unwrap().to_path_buf();
    let sd = Systemd::boot("svc", &bins);
    let before = sd.upper();
    let host = HostState {
        pins: format!("/sys/fs/bpf/hoop_test_svc_{}", std::process::id()),
        table: "hoop_test_svc".into(),
    };
    let echo = Echo::start(ECHO);
    installed_on_a_live_system(&sd)?;
    sd.write("/etc/hoop/hoop.toml", &svc_config(&host.pins, &host.table));
    started_only_when_protecting(&sd, &echo)?;
    reloads_and_stops_fail_closed(&sd, &host)?;
    invalid_config_keeps_it_from_starting(&sd, &host)?;
    uninstalled_without_a_trace(&sd, &host, &before)
}

fn installed_on_a_live_system(sd: &Systemd) -> Result<(), Failed> {
    let (ok, out, err) = sd.sh("/run/hoop-test-bin/hoopd install");
    check(ok, || format!("install: {out}{err}"))?;
    for line in [
        "created the group hoop-operators",
        "updated the trust store",
        "enabled hoopd.service",
    ] {
        check(out.contains(line), || {
            format!("install did not say {line:?}: {out}")
        })?;
    }
    let facts = [
        ("systemctl is-enabled hoopd.service", "enabled"),
        ("stat -c %a:%U:%G /run/hoop", "2750:root:hoop-operators"),
        (
            "stat -c %a /var/lib/hoop /var/lib/hoop/ca/ca.key | tr '\\n' ' '",
            "700 600",
        ),
        (
            "getent group hoop-operators | cut -d: -f1",
            "hoop-operators",
        ),
        // the system bundle verify-mode clients use now trusts the node CA
        (
            "openssl verify -CAfile /etc/ssl/certs/ca-certificates.crt /var/lib/hoop/ca/ca.crt",
            "/var/lib/hoop/ca/ca.crt: OK",
        ),
        (
            "readlink /etc/ssl/certs/hoop-node-ca.pem",
            "/usr/local/share/ca-certificates/hoop-node-ca.crt",
        ),
    ];
    for (cmd, want) in facts {
        let (_, out, err) = sd.sh(cmd);
        check(out.trim() == want, || {
            format!("{cmd}: {out:?} {err}, want {want:?}")
        })?;
    }
    check(java_trusts_node_ca(sd) != Some(false), || {
        "the Java trust store (ca-certificates-java hook) lacks the node CA".into()
    })?;
    let (ok, _, err) = sd.sh("systemd-analyze verify hoopd.service");
    check(ok && err.trim().is_empty(), || format!("verify: {err}"))?;
    let (_, out, _) = sd.sh("systemd-analyze security --no-pager hoopd.service");
    let score = exposure(&out).ok_or_else(|| format!("no score: {out}"))?;
    eprintln!("systemd-analyze security (live): exposure {score}");
    check(score <= 3.0, || format!("exposure {score}:\n{out}"))
}

fn started_only_when_protecting(sd: &Systemd, echo: &Echo) -> Result<(), Failed> {
    let (ok, _, err) = sd.sh("systemctl start hoopd.service");
    check(ok, || {
        format!("start: {err}\n{}", sd.journal("hoopd.service"))
    })?;
    // Type=notify: `systemctl start` returned, so the listener already accepts
    check(
        std::net::TcpStream::connect(("127.0.0.1", SVC_PORT)).is_ok(),
        || "listener not up when systemctl start returned".into(),
    )?;
    check(
        sd.prop("hoopd.service", "StatusText")
            .starts_with("protecting 1 targets"),
        || format!("status: {}", sd.prop("hoopd.service", "StatusText")),
    )?;
    let journal = sd.journal("hoopd.service");
    let ready = journal.find("hoopd ready");
    let started = journal.find("Started hoopd.service");
    check(
        ready.is_some() && started.is_some() && ready < started,
        || format!("READY before the node was ready:\n{journal}"),
    )?;
    check(!journal.contains('\u{1b}'), || {
        format!("ANSI escapes in the journal:\n{journal}")
    })?;
    // a workload of another user, in the attached cgroup tree, goes through hoopd
    let (ok, out, err) = sd.sh(&format!(
        "systemd-run --wait --pipe -q -p User=nobody /run/hoop-test-bin/hoop-test-client {ECHO} hi"
    ));
    check(ok && out.contains("\"reply\":\"hi-0\""), || {
        format!("client: {out} {err}")
    })?;
    check(echo.accepted() == 1, || {
        format!("echo saw {}", echo.accepted())
    })?;
    // an operator (a member of hoop-operators) reaches the control socket; the socket got its
    // group from the setgid /run/hoop, not from a CAP_CHOWN hoopd does not have
    let (_, group, _) = sd.sh("stat -c %G /run/hoop/control.sock");
    check(group.trim() == "hoop-operators", || {
        format!("socket group {group}")
    })?;
    let (ok, out, err) = sd.sh(
        "useradd --system --no-create-home -G hoop-operators hoopop && \
         runuser -u hoopop -- /usr/bin/hoopctl sessions --json; rc=$?; userdel hoopop; exit $rc",
    );
    check(ok && out.trim_start().starts_with('['), || {
        format!("operator: {out} {err}")
    })?;
    let metrics = scrape(SVC_METRICS);
    check(
        metrics.contains("hoop_sessions_total{protocol=\"tcp\"} 1")
            && metrics.contains("hoop_ebpf_redirects_total 1"),
        || format!("metrics:\n{metrics}"),
    )?;
    // busy polling works inside the sandbox: it needs /proc/loadavg (hidden by ProcSubset=pid),
    // and the client's reads woke a worker's poller, which stopped one way or the other
    let journal = sd.journal("hoopd.service");
    check(!journal.contains("busy polling off"), || {
        format!("busy polling is off under the unit:\n{journal}")
    })?;
    // and so does its CPU pressure gate (/proc/pressure/cpu, also hidden by ProcSubset=pid)
    check(!journal.contains("no CPU pressure information"), || {
        format!("busy polling without its CPU pressure gate under the unit:\n{journal}")
    })?;
    // so does the audit trail's write-ahead file (a shared mapping, fallocate'd)
    check(!journal.contains("no write-ahead file"), || {
        format!("no write-ahead file under the unit:\n{journal}")
    })?;
    let stops: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("hoop_worker_busy_poll_stops_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    check(stops >= 1.0, || format!("no busy poll ran:\n{metrics}"))
}

fn reloads_and_stops_fail_closed(sd: &Systemd, host: &HostState) -> Result<(), Failed> {
    let pid = sd.prop("hoopd.service", "MainPID");
    let (ok, _, err) = sd.sh("systemctl reload hoopd.service");
    check(ok, || format!("reload: {err}"))?;
    wait_for(|| {
        sd.journal("hoopd.service")
            .contains("configuration reloaded")
    })?;
    check(sd.prop("hoopd.service", "MainPID") == pid, || {
        "reload restarted hoopd".into()
    })?;
    // the log line comes before the reload ends (targets re-resolved, policy reloaded, then
    // READY=1): systemd shows `reloading` until then, and must come back to `active`
    wait_for(|| sd.prop("hoopd.service", "ActiveState") == "active").map_err(|_| {
        Failed::from(format!(
            "not active after reload: {}",
            sd.prop("hoopd.service", "ActiveState")
        ))
    })?;
    let (ok, _, err) = sd.sh("systemctl stop hoopd.service");
    check(ok, || format!("stop: {err}"))?;
    check(
        sd.journal("hoopd.service").contains("hoopd stopping"),
        || "no stop record".into(),
    )?;
    guard_in_place(host, true)?;
    // fail closed: the redirect stays and nobody listens
    let (ok, out, _) = sd.sh(&format!(
        "systemd-run --wait --pipe -q -p User=nobody /run/hoop-test-bin/hoop-test-client {ECHO} x"
    ));
    check(!ok && out.contains("\"ok\":false"), || {
        format!("connected while stopped: {out}")
    })
}

fn guard_in_place(host: &HostState, want: bool) -> Result<(), Failed> {
    let count = |d: &str| {
        std::fs::read_dir(format!("{}/{d}", host.pins))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let links = count("links");
    let all_linked = links > 0 && links == count("progs");
    let table = Command::new("nft")
        .args(["list", "table", "inet", &host.table])
        .output()?
        .status
        .success();
    check((all_linked && table) == want, || {
        format!("pinned links {links}, nft table {table}; wanted present={want}")
    })
}

fn invalid_config_keeps_it_from_starting(sd: &Systemd, host: &HostState) -> Result<(), Failed> {
    let good = svc_config(&host.pins, &host.table);
    sd.write(
        "/etc/hoop/hoop.toml",
        &format!("{good}\n[proxy]\nconnect_timout_ms = 5\n"),
    );
    let (ok, _, _) = sd.sh("systemctl start hoopd.service");
    check(!ok, || "started with an invalid configuration".into())?;
    let journal = sd.journal("hoopd.service");
    check(
        journal.contains("connect_timout_ms") && journal.contains("status=64/USAGE"),
        || format!("ExecStartPre did not refuse naming the key:\n{journal}"),
    )?;
    check(sd.prop("hoopd.service", "ExecMainPID") == "0", || {
        format!(
            "hoopd run was started: {}",
            sd.prop("hoopd.service", "ExecMainPID")
        )
    })?;
    guard_in_place(host, true)?;
    sd.write("/etc/hoop/hoop.toml", &good);
    sd.sh("systemctl reset-failed hoopd.service");
    let (ok, _, err) = sd.sh("systemctl start hoopd.service");
    check(ok, || format!("start after the fix: {err}"))
}

fn uninstalled_without_a_trace(
    sd: &Systemd,
    host: &HostState,
    before: &BTreeMap<String, hoop_tests::systemd::Entry>,
) -> Result<(), Failed> {
    let (ok, _, err) = sd.sh("/usr/bin/hoopd uninstall");
    check(!ok && err.contains("--discard-audit"), || {
        format!("uninstall deleted an audit trail without being asked: {err}")
    })?;
    let (ok, out, err) = sd.sh("/usr/bin/hoopd uninstall --discard-audit");
    check(ok, || format!("uninstall: {out}{err}"))?;
    guard_in_place(host, false)?;
    check(!Path::new(&host.pins).exists(), || {
        "pin directory left".into()
    })?;
    for (cmd, want_ok) in [
        ("systemctl cat hoopd.service", false),
        ("getent group hoop-operators", false),
        ("test -e /run/hoop", false),
        ("test -e /var/lib/hoop", false),
    ] {
        let (ok, _, _) = sd.sh(cmd);
        check(ok == want_ok, || format!("{cmd}: still there"))?;
    }
    check(java_trusts_node_ca(sd) != Some(true), || {
        "the Java trust store still has the node CA".into()
    })?;
    let after = sd.upper();
    let left: Vec<String> = after
        .iter()
        .filter(|(p, e)| before.get(*p) != Some(e) && !same_as_host(p, e) && !noise(p))
        .map(|(p, e)| format!("{p} ({})", e.0))
        .collect();
    check(left.is_empty(), || format!("left behind: {left:#?}"))
}

/// Whether the Java trust store (when the ca-certificates-java hook maintains one) has the
/// node CA; `None` without keytool.
fn java_trusts_node_ca(sd: &Systemd) -> Option<bool> {
    let (ok, out, _) =
        sd.sh("command -v keytool >/dev/null && keytool -list -cacerts -storepass changeit");
    ok.then(|| out.contains("debian:hoop-node-ca.pem"))
}

/// An upper-layer entry that only restates the host's file: rewritten with the same content,
/// or (update-ca-certificates does this to a certificate copied into /etc/ssl/certs by hand) a
/// symlink to a file with the same content.
fn same_as_host(rel: &str, e: &hoop_tests::systemd::Entry) -> bool {
    let p = Path::new("/").join(rel);
    let host = std::fs::symlink_metadata(&p);
    match e.0 {
        'l' if host.as_ref().is_ok_and(|m| m.is_file()) => {
            let target = std::path::PathBuf::from(String::from_utf8_lossy(&e.1).into_owned());
            std::fs::read(target).ok() == std::fs::read(&p).ok()
        }
        'l' => std::fs::read_link(&p).is_ok_and(|t| t.into_os_string().into_encoded_bytes() == e.1),
        'f' => std::fs::read(&p).is_ok_and(|b| b == e.1),
        _ => false,
    }
}

/// What the system's tools write on their own: the journal, systemd's state, login records,
/// shadow-utils' `-` backups of the files it edits, and the bookkeeping of the trust store's
/// hooks (ca-certificates-java runs dpkg triggers and rebuilds its keystore, whose bytes
/// change on every rebuild — its content is checked with keytool instead).
fn noise(rel: &str) -> bool {
    [
        "var/log/journal/",
        "var/lib/systemd/",
        "var/log/wtmp",
        "var/log/btmp",
        "var/log/lastlog",
        "tmp/",
        "var/lib/dpkg/triggers/",
        "var/lib/ca-certificates-java/",
    ]
    .iter()
    .any(|p| rel.starts_with(p))
        || [
            "etc/group-",
            "etc/gshadow-",
            "etc/passwd-",
            "etc/shadow-",
            "var/lib/dpkg/status-old",
            "var/log/dpkg.log",
            "etc/ssl/certs/java/cacerts",
        ]
        .contains(&rel)
}

fn wait_for(cond: impl Fn() -> bool) -> Result<(), Failed> {
    for _ in 0..100 {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("timed out".into())
}

fn main() {
    hoop_tests::run_root_trials(
        || (),
        &[
            (
                "unit_verifies_and_scores_well",
                unit_verifies_and_scores_well,
            ),
            ("install_into_an_empty_root", install_into_an_empty_root),
            (
                "capabilities_of_the_unit_suffice",
                capabilities_of_the_unit_suffice,
            ),
            ("service_under_systemd", service_under_systemd),
        ],
    )
}

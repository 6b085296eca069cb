//! What the test suite needs from apt and npm, installed when missing (CI starts from a fresh machine).

use std::process::Command;

use anyhow::Result;

use crate::status;

/// Real servers and clients of the tests: PostgreSQL 15 (server + psql + pgbench), nftables for
/// the guard, openssl for test certificates, util-linux for runuser/unshare/nsenter, pgbouncer
/// for benchmarks, dnsmasq (the DNS server) and dig for the DNS-learning tests; for the service
/// tests systemd (PID 1 of a test container, systemd-analyze, sysusers, tmpfiles),
/// ca-certificates (update-ca-certificates), passwd (groupdel), curl (the metrics scraper) and
/// bsdutils (`script`, a terminal for the log test).
const TEST_PACKAGES: &[&str] = &[
    "postgresql-15",
    "postgresql-client-15",
    "postgresql-contrib",
    "nftables",
    "openssl",
    "util-linux",
    "iproute2",
    "pgbouncer",
    "dnsmasq-base",
    "bind9-dnsutils",
    "systemd",
    "ca-certificates",
    "passwd",
    "curl",
    "bsdutils",
];

pub fn install_test_deps() -> Result<()> {
    install_apt()?;
    install_npm()
}

/// The identity tests' issuer (`tests/oidc`, npm `oidc-provider`): `npm ci` from the committed
/// lock file whenever it is newer than the installed tree. Node itself comes with the image; when
/// it does not, Debian's nodejs and npm are installed.
fn install_npm() -> Result<()> {
    let dir = crate::root().join("tests/oidc");
    if Command::new("node").arg("--version").output().is_err() {
        apt_install(&["nodejs", "npm"])?;
    }
    let lock = std::fs::metadata(dir.join("package-lock.json"))?.modified()?;
    let installed = std::fs::metadata(dir.join("node_modules/.package-lock.json"))
        .and_then(|m| m.modified())
        .ok();
    if installed.is_some_and(|t| t >= lock) {
        return Ok(());
    }
    eprintln!("xtask: npm ci in {}", dir.display());
    status(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir),
    )
}

fn install_apt() -> Result<()> {
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)?;
    // Debian starts a default cluster on install; the tests run their own clusters.
    let _ = Command::new("pg_ctlcluster")
        .args(["15", "main", "stop"])
        .status();
    Ok(())
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    eprintln!("xtask: installing {}", pkgs.join(" "));
    status(Command::new("apt-get").args(["update", "-qq"]))?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

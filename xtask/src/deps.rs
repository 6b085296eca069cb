//! What the test suite needs from apt, installed when missing (CI starts from a fresh machine).

use std::process::Command;

use anyhow::Result;

use crate::status;

/// Real servers and clients of the tests: PostgreSQL 15 (server + psql + pgbench), nftables for
/// the guard, openssl for test certificates, util-linux for runuser, pgbouncer for benchmarks.
const TEST_PACKAGES: &[&str] = &[
    "postgresql-15",
    "postgresql-client-15",
    "postgresql-contrib",
    "nftables",
    "openssl",
    "util-linux",
    "iproute2",
    "pgbouncer",
];

pub fn install_test_deps() -> Result<()> {
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    status(Command::new("apt-get").args(["update", "-qq"]))?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    // Debian starts a default cluster on install; the tests run their own clusters.
    let _ = Command::new("pg_ctlcluster")
        .args(["15", "main", "stop"])
        .status();
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

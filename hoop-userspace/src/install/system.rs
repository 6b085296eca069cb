//! What install changes beyond its own files, through the system's own tools: the CA trust
//! store (`update-ca-certificates`), the operators group (`systemd-sysusers`, `groupdel`),
//! `/run/hoop` (`systemd-tmpfiles`) and the unit's enablement (the symlink `systemctl enable`
//! makes, plus `systemctl daemon-reload` when systemd runs).
//!
//! On `/` the tools run as they are. For another root (an image being built) they run where
//! they support it (`--root`), or inside the root with `chroot` when the root has them — the
//! image's own `update-ca-certificates` writes the image's own links. A root without the tool
//! gets the file in place and a note: the image's next run of the tool picks it up.

use std::{path::Path, process::Command};

use super::{InstallError, Report, files::Root};

pub const TRUST_FILE: &str = "/usr/local/share/ca-certificates/hoop-node-ca.crt";
pub const UPDATE_CA: &str = "/usr/sbin/update-ca-certificates";
pub const OPERATORS_GROUP: &str = "hoop-operators";

/// Runs a tool; its output goes into the error when it fails.
pub fn run(cmd: &mut Command) -> Result<(), InstallError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| InstallError::Tool {
        command: shown.clone(),
        output: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(InstallError::Tool {
            command: shown,
            output: format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// systemd is the running init (so `systemctl` and `systemd-tmpfiles` act on the live system).
pub fn systemd_running() -> bool {
    sd_notify::booted().unwrap_or(false)
}

/// Rebuilds the trust store of `root` after the node CA file was placed or removed. `fresh`
/// (for a removal) rebuilds the links from scratch: Debian's tool leaves the links of a deleted
/// certificate behind otherwise.
pub fn update_trust_store(
    root: &Root,
    fresh: bool,
    report: &mut Report,
) -> Result<(), InstallError> {
    let mut cmd = if root.is_host() {
        Command::new(UPDATE_CA)
    } else if root.at(UPDATE_CA).exists() && root.at("/bin/sh").exists() {
        let mut c = Command::new("chroot");
        c.arg(&root.dir).arg(UPDATE_CA);
        c
    } else {
        report.note(format!(
            "{} has no {UPDATE_CA}: the node CA reaches the trust bundle at the image's next `update-ca-certificates`",
            root.dir.display()
        ));
        return Ok(());
    };
    if fresh {
        cmd.arg("--fresh");
    }
    run(&mut cmd)?;
    report.did(format!("updated the trust store ({UPDATE_CA})"));
    Ok(())
}

/// Whether `group` is in the root's /etc/group.
pub fn group_exists(root: &Root, group: &str) -> bool {
    std::fs::read_to_string(root.at("/etc/group"))
        .is_ok_and(|t| t.lines().any(|l| l.split(':').next() == Some(group)))
}

/// Creates the operators group from the sysusers snippet. Returns whether it was created.
pub fn create_group(
    root: &Root,
    snippet: &Path,
    report: &mut Report,
) -> Result<bool, InstallError> {
    if group_exists(root, OPERATORS_GROUP) {
        return Ok(false);
    }
    if !root.at("/etc/group").exists() {
        report.note(format!(
            "{} has no /etc/group: systemd-sysusers creates {OPERATORS_GROUP} from the snippet at boot",
            root.dir.display()
        ));
        return Ok(false);
    }
    let mut cmd = Command::new("systemd-sysusers");
    if !root.is_host() {
        cmd.arg(format!("--root={}", root.dir.display()));
    }
    run(cmd.arg(snippet))?;
    report.did(format!("created the group {OPERATORS_GROUP}"));
    Ok(true)
}

pub fn delete_group(root: &Root, report: &mut Report) -> Result<(), InstallError> {
    if !group_exists(root, OPERATORS_GROUP) {
        return Ok(());
    }
    let mut cmd = Command::new("groupdel");
    if !root.is_host() {
        cmd.arg("--root").arg(&root.dir);
    }
    run(cmd.arg(OPERATORS_GROUP))?;
    report.did(format!("deleted the group {OPERATORS_GROUP}"));
    Ok(())
}

/// Creates `/run/hoop` now, when systemd runs this host (at boot, systemd-tmpfiles does).
pub fn create_runtime_dir(
    root: &Root,
    snippet: &Path,
    report: &mut Report,
) -> Result<(), InstallError> {
    if root.is_host() && systemd_running() {
        run(Command::new("systemd-tmpfiles")
            .arg("--create")
            .arg(snippet))?;
        report.did("created /run/hoop (systemd-tmpfiles)".to_string());
    }
    Ok(())
}

/// `systemctl daemon-reload` when systemd runs this host, so it sees the unit change.
pub fn reload_systemd(root: &Root, report: &mut Report) -> Result<(), InstallError> {
    if root.is_host() && systemd_running() {
        run(Command::new("systemctl").arg("daemon-reload"))?;
        report.did("reloaded systemd".to_string());
    }
    Ok(())
}

/// Stops and disables the service when systemd runs this host.
pub fn stop_service(root: &Root, report: &mut Report) -> Result<(), InstallError> {
    if root.is_host() && systemd_running() {
        run(Command::new("systemctl").args(["disable", "--now", "hoopd.service"]))?;
        report.did("stopped and disabled hoopd.service".to_string());
    }
    Ok(())
}

//! What install changes beyond its own files, through the system's own tools: the CA trust
//! store (`update-ca-certificates`), the operators group (`systemd-sysusers`, `groupdel`),
//! `/run/hoop` (`systemd-tmpfiles`) and the unit's enablement (the symlink `systemctl enable`
//! makes, plus `systemctl daemon-reload` when systemd runs).
//!
//! On `/` the tools run as they are. For another root (an image being built) they run where
//! they support it (`--root`), or inside the root with `chroot` when the root has them — the
//! image's own `update-ca-certificates` writes the image's own links. A root without the tool
//! gets the file in place and a note: the image's next run of the tool picks it up.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use super::{InstallError, Report, files::Root};

pub const TRUST_FILE: &str = "/usr/local/share/ca-certificates/hoop-node-ca.crt";
pub const UPDATE_CA: &str = "/usr/sbin/update-ca-certificates";
const HOOKS_DIR: &str = "/etc/ca-certificates/update.d";
/// The link update-ca-certificates made for the node CA.
const TRUST_LINK: &str = "/etc/ssl/certs/hoop-node-ca.pem";
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

/// Tells the trust store's hooks (ca-certificates-java keeps a keystore of its own) that the
/// node CA is gone. `update-ca-certificates` reports removals to its hooks only for certificates
/// of its own configuration, never for a deleted local one — measured on Debian 12: after
/// `--fresh` Java still trusted a removed local CA — so uninstall sends the `-` line the hook
/// protocol defines itself.
pub fn tell_hooks_removed(root: &Root, report: &mut Report) {
    let Ok(entries) = std::fs::read_dir(root.at(HOOKS_DIR)) else {
        return;
    };
    let mut hooks: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // run-parts' naming rule: what update-ca-certificates would run
        .filter(|n| {
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .collect();
    hooks.sort();
    for name in hooks {
        let hook = format!("{HOOKS_DIR}/{name}");
        let mut cmd = if root.is_host() {
            Command::new(&hook)
        } else {
            let mut c = Command::new("chroot");
            c.arg(&root.dir).arg(&hook);
            c
        };
        let ran = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                let _ = child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(format!("-{TRUST_LINK}\n").as_bytes());
                child.wait_with_output()
            });
        match ran {
            Ok(out) if out.status.success() => report.did(format!(
                "told the trust store hook {name} the node CA is gone"
            )),
            Ok(out) => report.note(format!(
                "trust store hook {name} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => report.note(format!("trust store hook {name}: {e}")),
        }
    }
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

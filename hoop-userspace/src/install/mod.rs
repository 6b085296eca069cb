//! Installation for image builders: `hoopd install [--root DIR]` lays out the binaries, the
//! unit and its sysusers/tmpfiles snippets, the default configuration, the state directory with
//! the node CA (also added to the system trust store) and the audit key, and enables the
//! service; `hoopd uninstall` reverses every step, tears down the pins and the guard, and
//! leaves no file behind. Both are idempotent.
//!
//! What install created (directories, the operators group) is recorded in
//! `<state>/install.json`, so uninstall removes exactly that and nothing that was there before.

mod files;
mod system;
#[cfg(test)]
mod tests;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub use files::Root;
use files::{ensure_dir, io_err, remove_empty_dir, remove_file, write_file};
pub use system::{OPERATORS_GROUP, TRUST_FILE};

use crate::config::{self, Config};

pub const BIN_DIR: &str = "/usr/bin";
pub const UNIT: &str = "/usr/lib/systemd/system/hoopd.service";
pub const WANTS_LINK: &str = "/etc/systemd/system/multi-user.target.wants/hoopd.service";
pub const SYSUSERS: &str = "/usr/lib/sysusers.d/hoop.conf";
pub const TMPFILES: &str = "/usr/lib/tmpfiles.d/hoop.conf";
pub const DOC: &str = "/usr/share/doc/hoop/config.md";
const RECORD: &str = "install.json";

const UNIT_TEXT: &str = include_str!("../../../systemd/hoopd.service");
const SYSUSERS_TEXT: &str = include_str!("../../../systemd/hoop.sysusers");
const TMPFILES_TEXT: &str = include_str!("../../../systemd/hoop.tmpfiles");
const DOC_TEXT: &str = include_str!("../../../docs/config.md");

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("root {path}: {reason}")]
    BadRoot { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("`{command}` failed: {output}")]
    Tool { command: String, output: String },
    #[error(
        "{dir} holds an audit trail ({segments} segment files): export it (`hoopctl audit export`) and run uninstall with --discard-audit to delete it"
    )]
    AuditTrailPresent { dir: PathBuf, segments: usize },
    #[error("hoopd is running (its control socket {0} answers): stop it first")]
    Running(PathBuf),
    #[error("{binary} is missing beside {beside}: install needs both binaries")]
    MissingBinary { binary: PathBuf, beside: PathBuf },
    #[error("removing the pins and the guard: {0}")]
    Teardown(#[from] crate::intercept::InterceptError),
}

impl InstallError {
    /// The configuration is at fault (hoopd exits 64 for it).
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_))
    }
}

/// What install and uninstall did, for the operator.
#[derive(Debug, Default)]
pub struct Report {
    pub done: Vec<String>,
    pub notes: Vec<String>,
}

impl Report {
    fn did(&mut self, s: String) {
        self.done.push(s);
    }

    fn note(&mut self, s: String) {
        self.notes.push(s);
    }
}

/// Persisted in the state directory: what uninstall must undo beyond the known files.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    version: String,
    /// Directories install created, outermost first.
    created_dirs: Vec<PathBuf>,
    created_group: bool,
}

/// Where the binaries come from: this hoopd and the hoopctl beside it.
pub struct Binaries {
    pub hoopd: PathBuf,
    pub hoopctl: PathBuf,
}

impl Binaries {
    pub fn beside_current_exe() -> Result<Self, InstallError> {
        let hoopd = std::env::current_exe().map_err(io_err(Path::new("/proc/self/exe")))?;
        let hoopctl = hoopd.with_file_name("hoopctl");
        if !hoopctl.exists() {
            return Err(InstallError::MissingBinary {
                binary: hoopctl,
                beside: hoopd,
            });
        }
        Ok(Self { hoopd, hoopctl })
    }
}

/// Installs into `root`. An existing configuration is kept (and must validate); an existing CA
/// and audit key are kept.
pub fn install(root: &Root, bins: &Binaries) -> Result<Report, InstallError> {
    let mut report = Report::default();
    let mut created = Vec::new();
    place_files(root, bins, &mut created, &mut report)?;
    let cfg_path = root.at(config::DEFAULT_PATH);
    if cfg_path.exists() {
        report.note(format!("kept the existing {}", config::DEFAULT_PATH));
    } else {
        write_file(&cfg_path, config::EMBEDDED_DEFAULT.as_bytes(), 0o644)?;
        report.did(format!(
            "wrote the default configuration {}",
            config::DEFAULT_PATH
        ));
    }
    let cfg = Config::parse(&read(&cfg_path)?, &cfg_path.display().to_string())?;
    let state = root.at(&cfg.state.dir);
    let previous = read_record(&state);
    ensure_dir(&state, 0o700, &mut created)?;
    let ca = crate::tls::NodeCa::load_or_create(&state)?;
    let audit = cfg.audit_config();
    crate::audit::keys::load_or_generate(&root.at(&audit.key_path))?;
    report.did(format!(
        "node CA {} and audit key {} in place",
        cfg.state.dir.join(crate::tls::CA_CERT_FILE).display(),
        audit.key_path.display()
    ));
    let trust = root.at(TRUST_FILE);
    ensure_dir(trust.parent().unwrap(), 0o755, &mut created)?;
    let pem = fs::read(ca.cert_path()).map_err(io_err(ca.cert_path()))?;
    if write_file(&trust, &pem, 0o644)? {
        report.did(format!("node CA added to the trust store as {TRUST_FILE}"));
    }
    system::update_trust_store(root, false, &mut report)?;
    let created_group = system::create_group(root, &root.at(SYSUSERS), &mut report)?;
    system::create_runtime_dir(root, &root.at(TMPFILES), &mut report)?;
    enable(root, &mut created, &mut report)?;
    system::reload_systemd(root, &mut report)?;
    // a re-install keeps what the first install created
    let mut record = previous.unwrap_or_default();
    record.version = env!("CARGO_PKG_VERSION").into();
    record.created_group |= created_group;
    record.created_dirs.extend(created);
    write_file(
        &state.join(RECORD),
        &serde_json::to_vec_pretty(&record).expect("serializable"),
        0o600,
    )?;
    Ok(report)
}

fn place_files(
    root: &Root,
    bins: &Binaries,
    created: &mut Vec<PathBuf>,
    report: &mut Report,
) -> Result<(), InstallError> {
    ensure_dir(&root.at(BIN_DIR), 0o755, created)?;
    for (src, name) in [(&bins.hoopd, "hoopd"), (&bins.hoopctl, "hoopctl")] {
        let dst = root.at(BIN_DIR).join(name);
        if same_file(src, &dst) {
            continue;
        }
        if write_file(&dst, &fs::read(src).map_err(io_err(src))?, 0o755)? {
            report.did(format!("installed {BIN_DIR}/{name}"));
        }
    }
    let texts = [
        (UNIT, UNIT_TEXT),
        (SYSUSERS, SYSUSERS_TEXT),
        (TMPFILES, TMPFILES_TEXT),
        (DOC, DOC_TEXT),
    ];
    for (path, text) in texts {
        let p = root.at(path);
        ensure_dir(p.parent().unwrap(), 0o755, created)?;
        if write_file(&p, text.as_bytes(), 0o644)? {
            report.did(format!("installed {path}"));
        }
    }
    ensure_dir(
        &root.at(Path::new(config::DEFAULT_PATH).parent().unwrap()),
        0o755,
        created,
    )
}

/// What `systemctl enable hoopd.service` does for `WantedBy=multi-user.target`.
fn enable(
    root: &Root,
    created: &mut Vec<PathBuf>,
    report: &mut Report,
) -> Result<(), InstallError> {
    let link = root.at(WANTS_LINK);
    ensure_dir(link.parent().unwrap(), 0o755, created)?;
    if fs::read_link(&link).is_ok_and(|t| t == Path::new(UNIT)) {
        return Ok(());
    }
    remove_file(&link)?;
    std::os::unix::fs::symlink(UNIT, &link).map_err(io_err(&link))?;
    report.did(format!("enabled hoopd.service ({WANTS_LINK})"));
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn read(p: &Path) -> Result<String, InstallError> {
    fs::read_to_string(p).map_err(io_err(p))
}

fn read_record(state: &Path) -> Option<Record> {
    serde_json::from_slice(&fs::read(state.join(RECORD)).ok()?).ok()
}

/// Uninstall options.
#[derive(Debug, Default, Clone, Copy)]
pub struct UninstallOptions {
    /// Delete an audit trail the daemon wrote (refused otherwise).
    pub discard_audit: bool,
}

/// Reverses [`install`]: stops the service, removes the pins and the guard (on `/`), the trust
/// store entry, every installed file, the state directory, and what install created.
pub fn uninstall(root: &Root, opts: UninstallOptions) -> Result<Report, InstallError> {
    let mut report = Report::default();
    let cfg_path = root.at(config::DEFAULT_PATH);
    let cfg = match fs::read_to_string(&cfg_path) {
        Ok(text) => Config::parse(&text, &cfg_path.display().to_string())?,
        Err(_) => Config::parse(config::EMBEDDED_DEFAULT, "embedded default config")?,
    };
    let state = root.at(&cfg.state.dir);
    let audit = cfg.audit_config();
    check_audit_trail(&root.at(&audit.dir), opts)?;
    if root.at(UNIT).exists() {
        system::stop_service(root, &mut report)?;
    }
    if root.is_host() {
        check_not_running(&cfg.control.socket)?;
        crate::intercept::teardown(&cfg.intercept.pin_dir, &cfg.intercept.nft_table)?;
        report.did(format!(
            "removed the pins {} and the nftables table inet {}",
            cfg.intercept.pin_dir.display(),
            cfg.intercept.nft_table
        ));
        remove_file(&cfg.control.socket)?;
        for dir in [cfg.control.socket.parent(), Some(Path::new("/run/hoop"))]
            .into_iter()
            .flatten()
        {
            remove_empty_dir(dir);
        }
    } else {
        report.note(
            "pins and nftables guard are host state, not part of an image root: untouched".into(),
        );
    }
    let record = read_record(&state).unwrap_or_default();
    if remove_file(&root.at(TRUST_FILE))? {
        report.did(format!("removed {TRUST_FILE}"));
        system::update_trust_store(root, true, &mut report)?;
        system::tell_hooks_removed(root, &mut report);
    }
    for path in [
        WANTS_LINK,
        UNIT,
        SYSUSERS,
        TMPFILES,
        DOC,
        config::DEFAULT_PATH,
    ] {
        if remove_file(&root.at(path))? {
            report.did(format!("removed {path}"));
        }
    }
    for name in ["hoopd", "hoopctl"] {
        if remove_file(&root.at(BIN_DIR).join(name))? {
            report.did(format!("removed {BIN_DIR}/{name}"));
        }
    }
    if state.exists() {
        fs::remove_dir_all(&state).map_err(io_err(&state))?;
        report.did(format!(
            "removed the state directory {}",
            cfg.state.dir.display()
        ));
    }
    if record.created_group {
        system::delete_group(root, &mut report)?;
    }
    for d in record.created_dirs.iter().rev() {
        remove_empty_dir(d);
    }
    system::reload_systemd(root, &mut report)?;
    if report.done.is_empty() {
        report.note("nothing was installed".into());
    }
    Ok(report)
}

/// Refuses to delete an audit trail unless asked to: it is the node's evidence.
fn check_audit_trail(dir: &Path, opts: UninstallOptions) -> Result<(), InstallError> {
    let segments = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
                .count()
        })
        .unwrap_or(0);
    if segments > 0 && !opts.discard_audit {
        return Err(InstallError::AuditTrailPresent {
            dir: dir.to_path_buf(),
            segments,
        });
    }
    Ok(())
}

/// A hoopd whose control socket answers would keep running with its programs torn down.
fn check_not_running(socket: &Path) -> Result<(), InstallError> {
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(InstallError::Running(socket.to_path_buf()));
    }
    Ok(())
}

/// Mode bits of `p` (tests and reports).
pub fn mode(p: &Path) -> Option<u32> {
    fs::symlink_metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

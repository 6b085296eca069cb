//! `hoopd install` / `hoopd uninstall`: put the node into a root (an image being built, or `/`)
//! and take it out again.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use hoop_userspace::install::{self, Binaries, InstallError, Report, Root, UninstallOptions};

use crate::EXIT_CONFIG;

#[derive(Args)]
pub struct InstallArgs {
    /// Root of the target system (an image being built, or the running system)
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

#[derive(Args)]
pub struct UninstallArgs {
    /// Root of the target system
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Also delete an audit trail the daemon wrote (uninstall refuses otherwise)
    #[arg(long)]
    discard_audit: bool,
}

pub fn install(args: InstallArgs) -> ExitCode {
    let run = || {
        require_root()?;
        let root = Root::new(&args.root)?;
        install::install(&root, &Binaries::beside_current_exe()?)
    };
    finish("install", run())
}

pub fn uninstall(args: UninstallArgs) -> ExitCode {
    let run = || {
        require_root()?;
        let root = Root::new(&args.root)?;
        let opts = UninstallOptions {
            discard_audit: args.discard_audit,
        };
        install::uninstall(&root, opts)
    };
    finish("uninstall", run())
}

fn require_root() -> Result<(), InstallError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(InstallError::BadRoot {
            path: "/".into(),
            reason: "install and uninstall need root (file ownership, trust store, groups)".into(),
        });
    }
    Ok(())
}

fn finish(what: &str, r: Result<Report, InstallError>) -> ExitCode {
    match r {
        Ok(report) => {
            for line in &report.done {
                println!("{line}");
            }
            for line in &report.notes {
                println!("note: {line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hoopd {what}: {e}");
            if e.is_config() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

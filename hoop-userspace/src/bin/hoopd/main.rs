//! `hoopd`: the hoop node daemon.

mod install;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use hoop_userspace::{config::Config, daemon, intercept, telemetry};

/// EX_USAGE: an invalid configuration.
pub const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "hoopd",
    version,
    about = "hoop node: transparent, audited access to protected endpoints"
)]
struct Cli {
    /// Configuration file [default: /etc/hoop/hoop.toml, else the embedded default]
    #[arg(long, global = true, env = "HOOP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default)
    Run,
    /// Validate the configuration and exit (64 when invalid)
    CheckConfig,
    /// Detach and unpin the eBPF programs and remove the nftables guard
    Teardown,
    /// Install the node into a root (binaries, unit, config, state, node CA in the trust store,
    /// audit key, service enabled)
    Install(install::InstallArgs),
    /// Reverse `install`, including the pins and the guard (on /)
    Uninstall(install::UninstallArgs),
}

fn main() -> ExitCode {
    telemetry::init();
    let cli = Cli::parse();
    let command = match cli.command.unwrap_or(Command::Run) {
        Command::Install(a) => return install::install(a),
        Command::Uninstall(a) => return install::uninstall(a),
        other => other,
    };
    let (cfg, origin) = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hoopd: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !matches!(command, Command::Teardown) {
        // the policy is part of the configuration: a bad one keeps hoopd from starting
        if let Err(e) = hoop_userspace::policy::PolicyState::load(cfg.policy.file.as_deref()) {
            eprintln!("hoopd: invalid policy: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    match command {
        Command::Install(_) | Command::Uninstall(_) => unreachable!("handled above"),
        Command::CheckConfig => {
            println!(
                "{origin}: ok ({} targets, policy {})",
                cfg.targets.len(),
                cfg.policy
                    .file
                    .as_ref()
                    .map_or("built-in".into(), |p| p.display().to_string())
            );
            ExitCode::SUCCESS
        }
        Command::Teardown => {
            match intercept::teardown(&cfg.intercept.pin_dir, &cfg.intercept.nft_table) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hoopd: teardown: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => run(cfg, cli.config, origin),
    }
}

fn run(cfg: Config, path: Option<PathBuf>, origin: String) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hoopd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(daemon::run(cfg, path, origin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain = error_chain(&e);
            tracing::error!(error = %chain, "hoopd failed");
            eprintln!("hoopd: {chain}");
            ExitCode::FAILURE
        }
    }
}

/// `e: cause: cause…`, so the errno behind an eBPF failure is not lost.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

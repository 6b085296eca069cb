//! `hoopctl`: the operator CLI of hoop node. One file per subcommand.

mod audit;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use hoop_userspace::config::Config;

#[derive(Parser)]
#[command(name = "hoopctl", version, about = "Operate a hoop node")]
struct Cli {
    /// hoopd's configuration (to find the audit directory) [default: /etc/hoop/hoop.toml, else
    /// the embedded default]
    #[arg(long, global = true, env = "HOOP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The audit trail: verify, tail, export, prove (work on the directory; no daemon needed)
    Audit(audit::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = || Config::load(cli.config.as_deref()).map(|(c, _)| c);
    let result = match &cli.command {
        Command::Audit(args) => audit::run(args, config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hoopctl: {e}");
            ExitCode::from(2)
        }
    }
}

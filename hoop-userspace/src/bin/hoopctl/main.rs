//! `hoopctl`: the operator CLI of hoop node. One file per subcommand.

mod approvals;
mod audit;
mod kill;
mod policy;
mod session;
mod sessions;
mod watch;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use hoop_userspace::{config::Config, control::client::Client};

#[derive(Parser)]
#[command(name = "hoopctl", version, about = "Operate a hoop node")]
struct Cli {
    /// hoopd's configuration (to find the audit directory) [default: /etc/hoop/hoop.toml, else
    /// the embedded default]
    #[arg(long, global = true, env = "HOOP_CONFIG")]
    config: Option<PathBuf>,
    /// hoopd's control socket [default: `[control] socket` of the configuration]
    #[arg(long, global = true, env = "HOOP_SOCKET")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Live sessions (table, or --json; --watch refreshes)
    Sessions(sessions::Args),
    /// One session
    #[command(subcommand)]
    Session(session::Cmd),
    /// End a live session
    Kill { id: String },
    /// Requests waiting for approval
    Approvals {
        #[arg(long)]
        json: bool,
    },
    /// Release a held request (it runs once)
    Approve {
        /// approval id (or a unique prefix)
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Refuse a held request
    Deny {
        /// approval id (or a unique prefix)
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Stream live events as JSON lines
    Watch,
    /// The policy: check a file, explain a decision (no daemon needed)
    #[command(subcommand)]
    Policy(policy::Cmd),
    /// Ask hoopd to reload its configuration (as SIGHUP does)
    Reload,
    /// The audit trail: verify, tail, export, prove (work on the directory; no daemon needed)
    Audit(audit::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = || Config::load(cli.config.as_deref()).map(|(c, _)| c);
    let socket = || -> Result<PathBuf, String> {
        match &cli.socket {
            Some(s) => Ok(s.clone()),
            None => config()
                .map(|c| c.control.socket)
                .map_err(|e| e.to_string()),
        }
    };
    let connect = || socket().and_then(|s| Client::connect(&s));
    let result = match &cli.command {
        Command::Audit(args) => audit::run(args, config),
        Command::Policy(cmd) => policy::run(cmd, || config().map_err(|e| e.to_string())),
        Command::Sessions(args) => connect().and_then(|mut c| sessions::run(args, &mut c)),
        Command::Session(cmd) => connect().and_then(|mut c| session::run(cmd, &mut c)),
        Command::Kill { id } => connect().and_then(|mut c| kill::run(id, &mut c)),
        Command::Approvals { json } => connect().and_then(|mut c| approvals::run(*json, &mut c)),
        Command::Approve { id, reason } => {
            connect().and_then(|mut c| approvals::decide(&mut c, id, reason, true))
        }
        Command::Deny { id, reason } => {
            connect().and_then(|mut c| approvals::decide(&mut c, id, reason, false))
        }
        Command::Watch => connect().and_then(|mut c| watch::run(&mut c)),
        Command::Reload => connect().and_then(|mut c| {
            c.call(&hoop_userspace::control::Request::Reload)
                .map(|_| ExitCode::SUCCESS)
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hoopctl: {e}");
            ExitCode::from(2)
        }
    }
}

//! `hoopctl session show ID`: one session with its recent statements, decisions and rules.

use std::process::ExitCode;

use hoop_userspace::control::{Request, client::Client};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Show a live session (id or unique prefix) as JSON
    Show { id: String },
}

pub fn run(cmd: &Cmd, client: &mut Client) -> Result<ExitCode, String> {
    let Cmd::Show { id } = cmd;
    let s = client.call(&Request::Session { id: id.clone() })?;
    println!(
        "{}",
        serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
    );
    Ok(ExitCode::SUCCESS)
}

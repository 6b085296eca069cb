//! `hoopctl kill ID`: end a live session now.

use std::process::ExitCode;

use hoop_userspace::control::{Request, client::Client};

pub fn run(id: &str, client: &mut Client) -> Result<ExitCode, String> {
    let r = client.call(&Request::Kill { id: id.to_string() })?;
    println!("killed {}", r["killed"].as_str().unwrap_or(id));
    Ok(ExitCode::SUCCESS)
}

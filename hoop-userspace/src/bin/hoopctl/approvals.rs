//! `hoopctl approvals [--json]`: requests held for a human decision.

use std::process::ExitCode;

use hoop_userspace::control::{Request, client::Client};

pub fn run(json: bool, client: &mut Client) -> Result<ExitCode, String> {
    let list = client.call(&Request::Approvals)?;
    if json {
        println!("{list}");
    } else if list.as_array().is_none_or(Vec::is_empty) {
        println!("no requests waiting for approval");
    } else {
        for a in list.as_array().into_iter().flatten() {
            println!("{a}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `hoopctl approvals [--json]`: requests held for a human decision; `hoopctl approve|deny ID
//! --reason …`: decide one.

use std::process::ExitCode;

use hoop_userspace::control::{Request, client::Client};

pub fn run(json: bool, client: &mut Client) -> Result<ExitCode, String> {
    let list = client.call(&Request::Approvals)?;
    let items = list.as_array().cloned().unwrap_or_default();
    if json {
        println!("{list}");
    } else if items.is_empty() {
        println!("no requests waiting for approval");
    } else {
        let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("-").to_string();
        println!(
            "{:<36}  {:<8}  {:<12}  {:<24}  {:<20}  STATEMENT",
            "ID", "SESSION", "TARGET", "IDENTITY", "EXPIRES"
        );
        for a in &items {
            let who = a["identity"]["subject"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| s(&a["identity"], "kind"));
            let stmt: String = s(a, "statement").chars().take(60).collect();
            println!(
                "{:<36}  {:<8}  {:<12}  {:<24}  {:<20}  {}",
                s(a, "id"),
                s(a, "session").chars().take(8).collect::<String>(),
                s(a, "target"),
                who,
                s(a, "expires_at"),
                stmt.replace('\n', " ")
            );
            println!("{:>38}rule {}", "", s(a, "rule"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn decide(
    client: &mut Client,
    id: &str,
    reason: &str,
    approve: bool,
) -> Result<ExitCode, String> {
    let (id, reason) = (id.to_string(), reason.to_string());
    let req = if approve {
        Request::Approve { id, reason }
    } else {
        Request::Deny { id, reason }
    };
    let r = client.call(&req)?;
    println!(
        "{} {}",
        r["verdict"].as_str().unwrap_or("decided"),
        r["id"].as_str().unwrap_or("")
    );
    Ok(ExitCode::SUCCESS)
}

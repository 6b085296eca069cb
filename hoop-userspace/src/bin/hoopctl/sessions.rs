//! `hoopctl sessions [--json] [--watch]`: live sessions; `--watch` refreshes like top.

use std::{process::ExitCode, time::Duration};

use hoop_userspace::control::{Request, client::Client};
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (an array of session objects)
    #[arg(long)]
    json: bool,
    /// Refresh every second until interrupted
    #[arg(long)]
    watch: bool,
}

pub fn run(args: &Args, client: &mut Client) -> Result<ExitCode, String> {
    loop {
        let sessions = client.call(&Request::Sessions)?;
        if args.json {
            println!("{sessions}");
        } else {
            if args.watch {
                print!("\x1b[2J\x1b[H"); // clear, home
            }
            print_table(&sessions);
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn print_table(sessions: &Value) {
    println!(
        "{:<36}  {:<10}  {:<24}  {:<12}  {:<10}  {:<16}  {:>6}  {:>6}  {:>10}  {:>10}  STATE",
        "ID",
        "IDENTITY",
        "PROCESS",
        "TARGET",
        "PROTOCOL",
        "DATABASE/USER",
        "AGE",
        "STMTS",
        "BYTES_IN",
        "BYTES_OUT"
    );
    for s in sessions.as_array().into_iter().flatten() {
        let exe = s["process"]["exe"].as_str().unwrap_or("?");
        let exe = exe.rsplit('/').next().unwrap_or(exe);
        let process = format!("{}({})", exe, s["process"]["pid"]);
        let db = format!(
            "{}/{}",
            s["database"].as_str().unwrap_or("-"),
            s["user"].as_str().unwrap_or("-")
        );
        println!(
            "{:<36}  {:<10}  {:<24}  {:<12}  {:<10}  {:<16}  {:>5}s  {:>6}  {:>10}  {:>10}  {}",
            s["id"].as_str().unwrap_or(""),
            s["identity"]["kind"].as_str().unwrap_or(""),
            process,
            s["target"].as_str().unwrap_or(""),
            s["protocol"].as_str().unwrap_or(""),
            db,
            s["age_s"],
            s["statements"],
            s["bytes_in"],
            s["bytes_out"],
            s["state"].as_str().unwrap_or("")
        );
    }
}

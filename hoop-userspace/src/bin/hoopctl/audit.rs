//! `hoopctl audit verify|tail|export|prove`: read the audit directory directly, so an auditor
//! can check a copy of it on another machine.

use std::{io::Write, path::PathBuf, process::ExitCode, time::Duration};

use clap::Subcommand;
use hoop_userspace::{
    audit::{self, Filter, VerifyOptions},
    config::{Config, ConfigError},
};

#[derive(clap::Args)]
pub struct Args {
    /// Audit directory [default: from hoopd's configuration]
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check every record, the hash chain, the Merkle checkpoints and their signatures;
    /// exit 0 only when everything verifies
    Verify {
        /// The node's public key (`audit.key.pub`) the checkpoints must be signed with; without
        /// it the key stored in the directory is used (a foreign key is still detected when the
        /// directory's own key does not match its chain)
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Print the last records (JSON lines); `-f` keeps following
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        lines: usize,
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Export records as JSON lines, filtered
    Export {
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
        /// Records at or after this time: RFC 3339 (2026-12-07T10:00:00Z, a fraction and a
        /// ±hh:mm offset allowed) or a date (its midnight UTC)
        #[arg(long)]
        since: Option<String>,
        /// Records before this time (same forms)
        #[arg(long)]
        until: Option<String>,
        /// Only records of this session id
        #[arg(long)]
        session: Option<String>,
        /// Only records of this kind (e.g. pg.request)
        #[arg(long)]
        kind: Option<String>,
    },
    /// Inclusion proof of record SEQ against a signed checkpoint, verified, as JSON
    Prove {
        seq: u64,
        /// Tree size of the checkpoint to prove against [default: the latest]
        #[arg(long)]
        tree_size: Option<u64>,
    },
}

pub fn run(
    args: &Args,
    config: impl Fn() -> Result<Config, ConfigError>,
) -> Result<ExitCode, String> {
    let (dir, pubkey) = match &args.dir {
        // a copied directory: the public key is expected beside it, as hoopd lays it out
        Some(d) => (d.clone(), d.parent().unwrap_or(d).join("audit.key.pub")),
        None => {
            let a = config().map_err(|e| e.to_string())?.audit_config();
            (a.dir, audit::keys::public_key_path(&a.key_path))
        }
    };
    match &args.command {
        Cmd::Verify { key } => verify(&dir, key.as_deref()),
        Cmd::Tail { lines, follow } => tail(&dir, *lines, *follow),
        Cmd::Export {
            since,
            until,
            session,
            kind,
            ..
        } => {
            let time = |s: &Option<String>| -> Result<_, String> {
                s.as_deref().map(audit::time::parse_rfc3339).transpose()
            };
            let mut filter = Filter {
                since: time(since)?,
                until: time(until)?,
                kind: kind.clone(),
                ..Filter::default()
            };
            if let Some(s) = session {
                filter
                    .fields
                    .push(("/session".into(), serde_json::Value::String(s.clone())));
            }
            export(&dir, filter)
        }
        Cmd::Prove { seq, tree_size } => prove(&dir, &pubkey, *seq, *tree_size),
    }
}

fn verify(dir: &std::path::Path, key: Option<&std::path::Path>) -> Result<ExitCode, String> {
    let expected_key = match key {
        Some(k) => Some(
            audit::keys::read_public_key(k)
                .map_err(|e| e.to_string())?
                .ok_or(format!("{}: no key", k.display()))?,
        ),
        None => None,
    };
    let report =
        audit::verify_dir(dir, &VerifyOptions { expected_key }).map_err(|e| e.to_string())?;
    if report.is_ok() {
        println!(
            "ok: {} records in {} segments, {} checkpoints verified, tree size {}, root {}",
            report.records,
            report.segments.len(),
            report.checkpoints_checked,
            report.tree_size,
            report.root.map(hex::encode).unwrap_or_default()
        );
        print_unfiled(&report);
        return Ok(ExitCode::SUCCESS);
    }
    for p in &report.problems {
        println!("FAILED: {p}");
    }
    print_unfiled(&report);
    Ok(ExitCode::from(1))
}

fn print_unfiled(report: &audit::VerifyReport) {
    if report.unfiled > 0 {
        println!(
            "and {} records after them in the write-ahead file (hoopd was stopped before \
             filing them; its next start files them)",
            report.unfiled
        );
    }
}

fn print_line(out: &mut impl Write, line: &[u8]) -> Result<(), String> {
    out.write_all(line)
        .and_then(|_| out.write_all(b"\n"))
        .map_err(|e| e.to_string())
}

fn export(dir: &std::path::Path, filter: Filter) -> Result<ExitCode, String> {
    let mut out = std::io::stdout().lock();
    for entry in audit::read(dir, filter).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|p| format!("unreadable record: {p}"))?;
        print_line(&mut out, &entry.line)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn tail(dir: &std::path::Path, n: usize, follow: bool) -> Result<ExitCode, String> {
    let mut last = std::collections::VecDeque::with_capacity(n + 1);
    for entry in audit::read(dir, Filter::default()).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|p| format!("unreadable record: {p}"))?;
        last.push_back(entry.line);
        if last.len() > n {
            last.pop_front();
        }
    }
    let mut out = std::io::stdout().lock();
    for l in &last {
        print_line(&mut out, l)?;
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    drop(out);
    let mut f = audit::Follower::new(dir, Filter::default());
    let _ = f.poll(); // skip what was printed
    loop {
        for entry in f.poll().map_err(|e| e.to_string())? {
            let entry = entry.map_err(|p| format!("unreadable record: {p}"))?;
            print_line(&mut std::io::stdout().lock(), &entry.line)?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn prove(
    dir: &std::path::Path,
    pubkey: &std::path::Path,
    seq: u64,
    tree_size: Option<u64>,
) -> Result<ExitCode, String> {
    let proof = audit::prove(dir, seq, tree_size).map_err(|e| e.to_string())?;
    let key = audit::keys::read_public_key(pubkey).map_err(|e| e.to_string())?;
    let key = key.ok_or_else(|| format!("{}: node public key not found", pubkey.display()))?;
    let verified = proof
        .verify(&key)
        .map(|_| true)
        .map_err(|e| format!("proof does not verify: {e}"))?;
    let mut v = proof.to_json();
    v["verified_with_node_key"] = serde_json::Value::Bool(verified);
    println!("{v}");
    Ok(ExitCode::SUCCESS)
}

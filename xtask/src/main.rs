//! `cargo xtask`: build (eBPF + user space), run, test, bench, deps. On a fresh machine go
//! through `xtask/bootstrap.sh`, which installs the toolchain this needs first.

mod bench;
mod bench_pg;
mod deps;
mod fuzz;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the eBPF object (bpfel-unknown-none, release)
    BuildEbpf,
    /// Build the eBPF object, hoopd and the test binaries
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build (release) and run hoopd; arguments after `--` go to hoopd
    Run {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Install what the tests need, build, and run the whole test suite
    Test {
        /// Extra arguments for `cargo test`
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Install the apt packages the tests need (idempotent)
    Deps,
    /// Benchmarks: eBPF hook cost, TCP passthrough and PostgreSQL (vs direct and pgbouncer), as
    /// ratios measured in one run
    Bench,
    /// Run the libFuzzer targets (wire decoders, classifier) on the stable toolchain
    Fuzz {
        /// Seconds per target
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Targets to run (default: all)
        targets: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::BuildEbpf => build_ebpf(),
        Cmd::Build { release } => build(release),
        Cmd::Run { args } => run(&args),
        Cmd::Test { args } => test(&args),
        Cmd::Deps => deps::install_test_deps(),
        Cmd::Bench => bench::run(),
        Cmd::Fuzz { seconds, targets } => fuzz::run(&targets, seconds),
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

pub fn status(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("spawn {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

fn build_ebpf() -> Result<()> {
    status(cargo().args([
        "build",
        "--locked",
        "-p",
        "hoop-ebpf",
        "--release",
        "--target",
        "bpfel-unknown-none",
    ]))
}

pub fn ebpf_object() -> PathBuf {
    root().join("target/bpfel-unknown-none/release/hoop-ebpf")
}

fn build(release: bool) -> Result<()> {
    build_ebpf()?;
    let mut c = cargo();
    c.args([
        "build",
        "--locked",
        "-p",
        "hoop-userspace",
        "-p",
        "hoop-tests",
        "--bins",
    ])
    .env("HOOP_EBPF_OBJ", ebpf_object());
    if release {
        c.arg("--release");
    }
    status(&mut c)
}

fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (eBPF, cgroups, nftables): run it with sudo");
    }
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    require_root("hoopd")?;
    build(true)?;
    let bin = root().join("target/release/hoopd");
    use std::os::unix::process::CommandExt;
    Err(Command::new(&bin).args(args).exec()).with_context(|| format!("exec {}", bin.display()))
}

fn test(args: &[String]) -> Result<()> {
    require_root("the test suite")?;
    deps::install_test_deps()?;
    build(false)?;
    let mut c = cargo();
    c.args(["test", "--locked", "--workspace", "--no-fail-fast"])
        .args(args)
        .env("HOOP_EBPF_OBJ", ebpf_object())
        .env("HOOPD_BIN", root().join("target/debug/hoopd"))
        .env("HOOP_REQUIRE_ROOT", "1");
    run_and_summarise(&mut c)
}

/// Runs `cargo test`, echoing its output, and ends with one line totalling every test binary's
/// result (the last `test result:` line alone would be a doc-test binary's, usually empty).
fn run_and_summarise(c: &mut Command) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("spawn cargo test")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(['.', ';']).map(str::trim) {
                let mut w = part.split_whitespace();
                if let (Some(n), Some(what)) =
                    (w.next().and_then(|n| n.parse::<u64>().ok()), w.next())
                {
                    match what {
                        "passed" => passed += n,
                        "failed" => failed += n,
                        "ignored" => ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let st = child.wait()?;
    println!("summary: {passed} passed, {failed} failed, {ignored} skipped");
    if !st.success() {
        bail!("cargo test failed: {st}");
    }
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

//! `cargo xtask fuzz`: runs the libFuzzer targets of `hoop-userspace/fuzz` on the stable
//! toolchain this machine has.
//!
//! cargo-fuzz needs nightly only for its sanitizer flags. libFuzzer itself needs the
//! SanitizerCoverage instrumentation, which stable rustc gives through `-C passes=sancov-module`
//! and LLVM options (the flags cargo-fuzz passes, minus AddressSanitizer: the code under test is
//! safe Rust, and what libFuzzer catches here is a panic — with debug assertions and overflow
//! checks on — a hang, or runaway memory). Corpora persist under `target/fuzz/corpus/<target>`,
//! seeded from the captured sessions in `hoop-userspace/testdata`; a crashing input is saved
//! under `target/fuzz/artifacts/<target>/` and fails the run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{root, status};

/// Every target in `hoop-userspace/fuzz/Cargo.toml`, with the captures that seed it.
const TARGETS: &[(&str, Seeds)] = &[
    ("frontend", Seeds::Captures(".fe.bin")),
    ("backend", Seeds::Captures(".be.bin")),
    ("startup", Seeds::Captures(".fe.bin")),
    ("classify", Seeds::Sql),
];

enum Seeds {
    /// Captured byte streams of one direction (file name suffix).
    Captures(&'static str),
    /// A few statements of each kind the classifier tells apart.
    Sql,
}

const SQL_SEEDS: &[&str] = &[
    "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
    "WITH d AS (DELETE FROM t WHERE x RETURNING *) SELECT * FROM d",
    "INSERT INTO t VALUES ($1, 'a''b') ON CONFLICT DO NOTHING",
    "UPDATE t SET a = a + 1; DROP TABLE u; COMMIT",
    "COPY t TO STDOUT WITH (FORMAT csv)",
    "DO $$BEGIN RAISE NOTICE 'x'; END$$",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO r",
    "SET search_path = x; EXPLAIN ANALYZE SELECT 1",
];

const RUSTFLAGS: &str = "--cfg fuzzing -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    -Cdebug-assertions -Coverflow-checks";

/// The target triple the fuzz binaries are built for (explicit, so RUSTFLAGS reach only them
/// and not build scripts).
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

pub fn run(only: &[String], seconds: u32) -> Result<()> {
    for t in only {
        if !TARGETS.iter().any(|(name, _)| name == t) {
            let known: Vec<_> = TARGETS.iter().map(|(n, _)| *n).collect();
            bail!("no fuzz target {t:?}; the targets are {}", known.join(", "));
        }
    }
    let dir = root().join("target/fuzz");
    let manifest = root().join("hoop-userspace/fuzz/Cargo.toml");
    status(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "build",
                "--locked",
                "--release",
                "--bins",
                "--target",
                TRIPLE,
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .env("RUSTFLAGS", RUSTFLAGS)
            .env("CARGO_TARGET_DIR", dir.join("build")),
    )?;
    for (name, seeds) in TARGETS {
        if !only.is_empty() && !only.iter().any(|t| t == name) {
            continue;
        }
        let corpus = dir.join("corpus").join(name);
        let artifacts = dir.join("artifacts").join(name);
        seed(&corpus, seeds)?;
        std::fs::create_dir_all(&artifacts)?;
        println!("fuzz {name}: {seconds} s, corpus {}", corpus.display());
        let bin = dir.join("build").join(TRIPLE).join("release").join(name);
        let st = Command::new(&bin)
            .arg(&corpus)
            .arg(format!("-max_total_time={seconds}"))
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .status()
            .with_context(|| format!("spawn {}", bin.display()))?;
        if !st.success() {
            bail!(
                "fuzz target {name} found a failing input ({st}): see {}",
                artifacts.display()
            );
        }
    }
    Ok(())
}

/// Puts the seeds into an empty corpus (a corpus that grew is left as it is).
fn seed(corpus: &Path, seeds: &Seeds) -> Result<()> {
    std::fs::create_dir_all(corpus)?;
    if std::fs::read_dir(corpus)?.next().is_some() {
        return Ok(());
    }
    match seeds {
        Seeds::Captures(suffix) => {
            let testdata = root().join("hoop-userspace/testdata");
            for e in std::fs::read_dir(&testdata)
                .with_context(|| format!("read {}", testdata.display()))?
            {
                let p: PathBuf = e?.path();
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                if name.ends_with(suffix) {
                    std::fs::copy(&p, corpus.join(&*name))?;
                }
            }
        }
        Seeds::Sql => {
            for (i, sql) in SQL_SEEDS.iter().enumerate() {
                std::fs::write(corpus.join(format!("seed-{i}.sql")), sql)?;
            }
        }
    }
    Ok(())
}

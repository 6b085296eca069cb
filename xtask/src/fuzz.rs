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

use crate::{cargo, root, status};

/// Every target in `hoop-userspace/fuzz/Cargo.toml`, with the captures that seed it.
const TARGETS: &[(&str, Seeds)] = &[
    ("frontend", Seeds::Captures(".fe.bin")),
    ("backend", Seeds::Captures(".be.bin")),
    ("startup", Seeds::Captures(".fe.bin")),
    ("classify", Seeds::Texts(SQL_SEEDS)),
    ("mask", Seeds::Texts(MASK_SEEDS)),
    ("audit_line", Seeds::Texts(AUDIT_SEEDS)),
];

enum Seeds {
    /// Captured byte streams of one direction (file name suffix).
    Captures(&'static str),
    /// Literal seeds.
    Texts(&'static [&'static str]),
}

/// Values each masking detector looks for, near misses, and SQL around them.
const MASK_SEEDS: &[&str] = &[
    "ann@example.com, 4111 1111 1111 1111, DE89 3704 0044 0532 0130 00, +44 20 7946 0958",
    "Server=h;Password=hunter2;AccountKey=abc==; postgres://u:p@h/db",
    "https://a.blob.core.windows.net/c?sv=1&sig=AbCdEf0123%2Bxyz&se=2",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln -----BEGIN RSA PRIVATE KEY-----",
    "ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5 github_pat_11ABCDEFG0123456789_abcdef",
    "SELECT * FROM pgbench_accounts WHERE aid = 12345 AND note = 'x(555) 123-4567'",
];

/// A record and a checkpoint line as hoopd writes them (the hashes and the signature need not
/// verify: the parsers are what is fuzzed).
const AUDIT_SEEDS: &[&str] = &[
    r#"{"event":{"config":"/etc/hoop/hoop.toml","version":"0.1.0"},"hash":"a144a0ef201a22b800bdec34a5ab8e69ac49b247c9992f17a4c583ead9e692b3","kind":"daemon.start","prev":"3a63be2db2368991a089249bb5235796d28385f44d0e9209d0e485c8c892305a","seq":1,"time":"2026-11-27T14:08:50.608043787Z","v":1}"#,
    r#"{"head":"0af1b75df3598af46b4e354fa00681eba87e50ea04e472aa45b978d6c7dcc718","key":"c624953dcd4e999d8a99846942d6c2f26363047db46147d7c14ae4c9668d88aa","prev":"139b810a4cf2ed2dab5ed263cce40440ddaaa7c0a97c4f9b635e4ed24b9d53b9","root":"5d55ff68eb302de4f9a56e0f71bd43d40d09e7ba7d14a53c6f5e1ccf629a6a85","sig":"273c6f07402754400f34d66966c011697999c418ab77b9d637565d79caf1066b4ad364d61ad695f91773d3c4da3df70ffcc89f53e52da6f7efdea1f3f1374e0f","time":"2026-11-27T19:27:55.252918358Z","tree_size":8,"v":1}"#,
];

/// A few statements of each kind the classifier tells apart.
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
        cargo()
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
        Seeds::Texts(texts) => {
            for (i, text) in texts.iter().enumerate() {
                std::fs::write(corpus.join(format!("seed-{i}")), text)?;
            }
        }
    }
    Ok(())
}

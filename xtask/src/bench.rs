//! `cargo xtask bench`: the interception datapath's costs, each measured against its baseline in
//! the same run and printed as a ratio (no timed assertions anywhere):
//! - hook cost on unprotected connects: connect/close loop from the cgroup with hoopd's programs
//!   attached vs detached;
//! - TCP passthrough through hoopd vs direct: throughput and round-trip latency;
//! - PostgreSQL through hoopd and through pgbouncer vs direct (`bench_pg`).
//!
//! `HOOP_BENCH_ONLY=pg` runs only the PostgreSQL part; `HOOP_BENCH_SECONDS` sets each run's
//! length and `HOOP_BENCH_ROUNDS` the PostgreSQL table's rounds per row (median shown). For iterating on the relay: `HOOP_BENCH_PG_LOADS=simple/8,prepared/8` measures only
//! those rows, and `HOOP_BENCH_PG_HOLD=FILE` starts everything and waits until FILE (which names
//! the hoopd cgroup to run clients in) is removed, for profiling by hand; `HOOP_BENCH_WORKERS`
//! sets the PostgreSQL part's hoopd's `[listen] workers`, and `HOOP_BENCH_BUSY_POLL_US` the
//! `busy_poll_us` of the PostgreSQL and passthrough parts' hoopds (default: hoopd's own).

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{build, require_root, root};

const LISTEN: &str = "127.0.0.1:19900";
const PROTECTED: &str = "127.0.0.2:18001";
const UNPROTECTED: &str = "127.0.0.3:18002";
const CONNECTS: &str = "20000";
const STREAM_BYTES: &str = "4294967296"; // 4 GiB
const RTTS: &str = "20000";
const ROUNDS: usize = 5;

struct Bench {
    dir: PathBuf,
    cgroup: PathBuf,
    config: PathBuf,
    bin: PathBuf,
    children: Vec<Child>,
}

pub fn run() -> Result<()> {
    require_root("the benchmarks")?;
    // the same servers and clients as the tests (nft, PostgreSQL, pgbouncer, pgbench, …): a
    // fresh machine's `bootstrap.sh bench` has none of them
    crate::deps::install_test_deps()?;
    build(true)?;
    // HOOP_BENCH_ONLY=part[,part]: hook, audit, policy, mask, pg (default: all, in that order)
    let only = std::env::var("HOOP_BENCH_ONLY").ok();
    let want = |part: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|x| x.trim() == part))
    };
    if want("hook") {
        let mut b = Bench::setup()?;
        let result = b.measure();
        b.teardown();
        // on failure hoopd's log stays for a look
        if result.is_ok() {
            let _ = std::fs::remove_dir_all(&b.dir);
        }
        result?;
    }
    // the engines alone (release builds): audit records/s in both durability modes, policy
    // decisions per rule count, masking cost per row
    for part in ["audit", "policy", "mask"] {
        if want(part) {
            crate::status(crate::cargo().args([
                "bench",
                "--locked",
                "-p",
                "hoop-userspace",
                "--bench",
                part,
            ]))?;
        }
    }
    if want("pg") {
        crate::bench_pg::run()?;
    }
    Ok(())
}

impl Bench {
    fn setup() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("hoop-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let cg_root = cgroup2_root()?;
        let cgroup = cg_root.join(format!("hoop-bench-{}", std::process::id()));
        std::fs::create_dir_all(&cgroup)?;
        let config = dir.join("hoop.toml");
        write_config(&config, &cgroup, &dir, true)?;
        let bin = root().join("target/release");
        let mut b = Self {
            dir,
            cgroup,
            config,
            bin,
            children: Vec::new(),
        };
        for (mode, addr) in [("serve", PROTECTED), ("sink", UNPROTECTED)] {
            let c = Command::new(b.bin.join("hoop-bench"))
                .args([mode, addr])
                .stdout(Stdio::null())
                .spawn()?;
            b.children.push(c);
        }
        Ok(b)
    }

    fn start_hoopd(&mut self) -> Result<Child> {
        let child = Command::new(self.bin.join("hoopd"))
            .arg("--config")
            .arg(&self.config)
            .stderr(std::fs::File::create(self.dir.join("hoopd.log"))?)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.cgroup_programs_attached() || TcpStream::connect(LISTEN).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "hoopd did not start; see {}",
                    self.dir.join("hoopd.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(child)
    }

    fn cgroup_programs_attached(&self) -> bool {
        std::fs::read_dir("/sys/fs/bpf/hoop_bench/links")
            .is_ok_and(|d| d.count() == hoop_tests::PINNED_LINKS)
    }

    /// Stops hoopd and removes its pins, which detaches the programs.
    fn stop_hoopd(&self, mut child: Child) -> Result<()> {
        child.kill()?;
        child.wait()?;
        crate::status(
            Command::new(self.bin.join("hoopd"))
                .arg("--config")
                .arg(&self.config)
                .arg("teardown"),
        )
    }

    fn client(&self, in_cgroup: bool, args: &[&str]) -> Result<f64> {
        let mut cmd = Command::new(self.bin.join("hoop-bench"));
        cmd.args(args);
        if in_cgroup {
            let procs = self.cgroup.join("cgroup.procs");
            use std::os::unix::process::CommandExt;
            // SAFETY: only open/write/close between fork and exec.
            unsafe { cmd.pre_exec(move || std::fs::write(&procs, b"0")) };
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!(
                "hoop-bench {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("bench output")
    }

    fn measure(&mut self) -> Result<()> {
        println!(
            "hook cost: {CONNECTS} connect/close cycles to an unprotected server from the cgroup, {ROUNDS} rounds"
        );
        // three arms, interleaved: eBPF programs only, programs + nftables guard, neither
        let (mut progs, mut guarded, mut off) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            for (guard, arm) in [(false, &mut progs), (true, &mut guarded)] {
                write_config(&self.config, &self.cgroup, &self.dir, guard)?;
                let h = self.start_hoopd()?;
                arm.push(self.client(true, &["connect-loop", UNPROTECTED, CONNECTS])?);
                self.stop_hoopd(h)?;
            }
            off.push(self.client(true, &["connect-loop", UNPROTECTED, CONNECTS])?);
        }
        let (progs, guarded, off) = (median(progs), median(guarded), median(off));
        println!(
            "  programs attached {progs:.0} ns/connect, detached {off:.0} ns/connect: ratio {:.3} (goal <= 1.05)",
            progs / off
        );
        println!(
            "  programs + nftables guard {guarded:.0} ns/connect: ratio {:.3} (the guard's rule runs on every packet of the cgroup)",
            guarded / off
        );

        let h = self.start_hoopd()?;
        println!(
            "passthrough: {PROTECTED}, through hoopd (client in cgroup; busy polling {}) vs direct (outside), {ROUNDS} rounds",
            busy_poll_label()
        );
        let (mut tp_p, mut tp_d, mut rtt_p, mut rtt_d) = (vec![], vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            tp_p.push(self.client(true, &["stream", PROTECTED, STREAM_BYTES])?);
            tp_d.push(self.client(false, &["stream", PROTECTED, STREAM_BYTES])?);
            rtt_p.push(self.client(true, &["rtt", PROTECTED, RTTS])?);
            rtt_d.push(self.client(false, &["rtt", PROTECTED, RTTS])?);
        }
        let (tp_p, tp_d, rtt_p, rtt_d) = (median(tp_p), median(tp_d), median(rtt_p), median(rtt_d));
        println!(
            "  throughput: hoopd {tp_p:.0} MiB/s, direct {tp_d:.0} MiB/s: ratio {:.3}",
            tp_p / tp_d
        );
        println!(
            "  round trip (64 B): hoopd {rtt_p:.1} µs, direct {rtt_d:.1} µs: added {:.1} µs, ratio {:.2}",
            rtt_p - rtt_d,
            rtt_p / rtt_d
        );
        self.stop_hoopd(h)
    }

    fn teardown(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(self.bin.join("hoopd"))
            .arg("--config")
            .arg(&self.config)
            .arg("teardown")
            .status();
        let _ = std::fs::write(self.cgroup.join("cgroup.kill"), b"1");
        std::thread::sleep(Duration::from_millis(100));
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

fn write_config(
    path: &std::path::Path,
    cgroup: &std::path::Path,
    dir: &std::path::Path,
    guard: bool,
) -> Result<()> {
    let busy_poll = busy_poll_setting()?
        .map(|us| format!("busy_poll_us = {us}\n"))
        .unwrap_or_default();
    let text = format!(
        "[listen]\n{busy_poll}address = \"{LISTEN}\"\naddress6 = \"[::1]:19900\"\n[intercept]\ncgroup = \"{}\"\n\
         pin_dir = \"/sys/fs/bpf/hoop_bench\"\nnft_table = \"hoop_bench\"\nguard = {guard}\n[state]\ndir = \"{}\"\n\
         [control]\nsocket = \"{}\"\n\
         [[target]]\nname = \"bench\"\nprotocol = \"tcp\"\ncidrs = [\"127.0.0.2/32\"]\nports = [18001]\n",
        cgroup.display(),
        dir.join("state").display(),
        dir.join("control.sock").display()
    );
    Ok(std::fs::write(path, text)?)
}

/// `HOOP_BENCH_BUSY_POLL_US`: hoopd's `[listen] busy_poll_us` (unset: hoopd's default).
pub fn busy_poll_setting() -> Result<Option<u64>> {
    match std::env::var("HOOP_BENCH_BUSY_POLL_US") {
        Err(_) => Ok(None),
        Ok(v) => v
            .parse()
            .map(Some)
            .with_context(|| format!("HOOP_BENCH_BUSY_POLL_US={v:?}: want microseconds")),
    }
}

/// How the bench's hoopd busy-polls, for the headers.
pub fn busy_poll_label() -> String {
    match busy_poll_setting() {
        Ok(Some(0)) => "off".to_string(),
        Ok(Some(us)) => format!("up to {us} µs"),
        _ => "hoopd's default".to_string(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cgroup2_root() -> Result<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    info.lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mp = pre.split(' ').nth(4)?;
            post.starts_with("cgroup2 ").then(|| PathBuf::from(mp))
        })
        .context("no cgroup2 mount")
}

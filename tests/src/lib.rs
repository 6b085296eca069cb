//! Harness for hoop's end-to-end tests: real hoopd processes, real clients in cgroups the test
//! creates, real servers on loopback addresses. Everything a test creates (cgroup, pins, nftables
//! table) is removed when its guard drops.

pub mod oidc;
pub mod pg;
pub mod systemd;

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

/// One root-only end-to-end test over a shared fixture `C`.
pub type RootTest<C> = (&'static str, fn(&C) -> Result<(), libtest_mimic::Failed>);

/// Runs root-only trials: without root each is reported `ignored` (never passed), and with
/// `HOOP_REQUIRE_ROOT=1` (CI) a missing root fails the run. `setup` builds the shared fixture
/// (a PostgreSQL server, …) only when the trials will run; it is dropped before exiting.
pub fn run_root_trials<C: Send + Sync + 'static>(
    setup: impl FnOnce() -> C,
    tests: &[RootTest<C>],
) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    let root = is_root();
    if !root {
        if std::env::var("HOOP_REQUIRE_ROOT").is_ok_and(|v| v == "1") {
            eprintln!("HOOP_REQUIRE_ROOT=1 but not running as root");
            std::process::exit(1);
        }
        eprintln!("note: not root; every test below is ignored (needs eBPF, cgroups, nftables)");
    }
    let ctx = (root && !args.list).then(|| Arc::new(setup()));
    let trials = tests
        .iter()
        .map(|&(name, f)| {
            let ctx = ctx.clone();
            libtest_mimic::Trial::test(name, move || {
                // a panicked trial on this thread left its list behind: those dirs stay
                take_scratch();
                let result = f(ctx.as_deref().expect("fixture set up"));
                clean_scratch(name, take_scratch(), result.is_ok());
                result
            })
            .with_ignored_flag(!root)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(ctx);
    // the shared fixture's directories (set up on this thread), once it has stopped
    clean_scratch("fixture", take_scratch(), !conclusion.has_failed());
    conclusion.exit()
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Registers a directory a test made (an [`Env`]'s, a PostgreSQL data directory): removed once
/// its trial has passed and everything in it stopped; kept, and named, when the trial fails or
/// with `HOOP_KEEP_TEST_DIRS=1` — the logs, audit trail and server data are the evidence.
pub fn scratch_dir(dir: &Path) {
    SCRATCH.with(|s| s.borrow_mut().push(dir.to_owned()));
}

fn take_scratch() -> Vec<PathBuf> {
    SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

fn clean_scratch(trial: &str, dirs: Vec<PathBuf>, passed: bool) {
    let keep = std::env::var_os("HOOP_KEEP_TEST_DIRS").is_some_and(|v| !v.is_empty() && v != "0");
    if !passed && !dirs.is_empty() {
        let names: Vec<_> = dirs.iter().map(|d| d.display().to_string()).collect();
        eprintln!("{trial}: kept for a look: {}", names.join(" "));
    }
    if passed && !keep {
        for d in dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The workspace's target directory (tests run from `tests/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The hoopd binary under test: `HOOPD_BIN`, else the workspace's debug build.
pub fn hoopd_bin() -> PathBuf {
    let p = std::env::var_os("HOOPD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/hoopd"));
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask build` (or set HOOPD_BIN)",
        p.display()
    );
    p
}

/// hoopctl, beside hoopd.
pub fn hoopctl_bin() -> PathBuf {
    hoopd_bin().with_file_name("hoopctl")
}

pub fn cgroup2_root() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mp = pre.split(' ').nth(4)?;
            (post.starts_with("cgroup2 ")).then(|| PathBuf::from(mp))
        })
        .expect("cgroup2 mounted")
}

/// A child cgroup of the cgroup v2 root, removed (its processes killed) on drop.
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn new(name: &str) -> Self {
        let path = cgroup2_root().join(format!("hoop-test-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir(&path);
        Self { path }
    }

    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.path).unwrap().ino()
    }

    /// A command whose process joins this cgroup before exec.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let procs = self.path.join("cgroup.procs");
        // SAFETY: only async-signal-safe work between fork and exec: open/write/close.
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, b"0"));
        }
        cmd
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), b"1");
        for _ in 0..100 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A TCP echo server on a loopback address (outside every test cgroup); counts connections.
pub struct Echo {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl Echo {
    pub fn start(addr: &str) -> Self {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind echo {addr}: {e}"));
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let _ = std::io::copy(&mut r, &mut s);
                    let _ = s.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self { addr, accepted }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Links hoopd pins when attached: connect4/6, sock_ops, getpeername4/6, sendmsg4/6,
/// recvmsg4/6 and the DNS egress filter.
pub const PINNED_LINKS: usize = 10;

/// The policy every test env starts with: everything allowed, responses masked (default).
pub const PERMISSIVE_POLICY: &str = "# hoop tests: allow everything, mask responses\n[defaults]\naction = \"allow\"\nmask = \"default\"\n";

/// One test's private world: cgroup, pin dir, nftables table, state dir, listener port.
pub struct Env {
    pub name: String,
    pub cgroup: Cgroup,
    pub dir: PathBuf,
    pub listen_port: u16,
}

impl Env {
    pub fn new(name: &str, listen_port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("hoop-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        scratch_dir(&dir);
        // tests run as anonymous workloads; the built-in policy would hold their writes for
        // approval, so each env starts with a permissive policy (tests of policy rewrite it)
        std::fs::write(dir.join("policy.toml"), PERMISSIVE_POLICY).unwrap();
        Self {
            name: name.replace('-', "_"),
            cgroup: Cgroup::new(name),
            dir,
            listen_port,
        }
    }

    pub fn pin_dir(&self) -> String {
        format!("/sys/fs/bpf/hoop_test_{}_{}", self.name, std::process::id())
    }

    pub fn nft_table(&self) -> String {
        format!("hoop_test_{}", self.name)
    }

    /// A config attaching to this env's cgroup with the given `[[target]]` tables appended.
    pub fn config(&self, targets: &str) -> String {
        self.config_dns(targets, "")
    }

    /// This env's DNS forwarder port (listen port + 2000: tests run side by side).
    pub fn dns_port(&self) -> u16 {
        self.listen_port + 2000
    }

    /// Like `config`, with extra `[dns]` keys (`dns_keys`, one per line).
    pub fn config_dns(&self, targets: &str, dns_keys: &str) -> String {
        format!(
            "[listen]\naddress = \"127.0.0.1:{p}\"\naddress6 = \"[::1]:{p}\"\n\
             [intercept]\ncgroup = \"{cg}\"\npin_dir = \"{pins}\"\nnft_table = \"{t}\"\n\
             [state]\ndir = \"{state}\"\n[control]\nsocket = \"{sock}\"\n\
             [policy]\nfile = \"{policy}\"\n[dns]\nport = {dp}\n{dns_keys}\n{targets}",
            dp = self.dns_port(),
            p = self.listen_port,
            cg = self.cgroup.path.display(),
            pins = self.pin_dir(),
            t = self.nft_table(),
            state = self.dir.join("state").display(),
            sock = self.socket().display(),
            policy = self.policy_path().display(),
        )
    }

    /// This env's policy file (permissive until a test writes its own).
    pub fn policy_path(&self) -> PathBuf {
        self.dir.join("policy.toml")
    }

    /// This env's control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// hoopctl against this env's socket and config: (exit code, stdout, stderr).
    pub fn hoopctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(hoopctl_bin())
            .arg("--socket")
            .arg(self.socket())
            .arg("--config")
            .arg(self.dir.join("hoop.toml"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Requests held for approval right now (`hoopctl approvals --json`).
    pub fn approvals(&self) -> Vec<Value> {
        let (_, out, _) = self.hoopctl(&["approvals", "--json"]);
        serde_json::from_str::<Value>(&out)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Every file of this env's audit directory, byte for byte (the write-ahead file too, read
    /// lossily as text): where a secret must never be found.
    pub fn audit_files_text(&self) -> String {
        let dir = self.dir.join("state/audit");
        let mut all = String::new();
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            all.push_str(&String::from_utf8_lossy(&bytes));
        }
        all
    }

    /// Every line of this env's audit trail so far (the segment files, in order).
    pub fn audit_lines(&self) -> Vec<String> {
        let dir = self.dir.join("state/audit");
        let mut segs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        segs.retain(|p| p.to_string_lossy().contains("seg-"));
        segs.sort();
        segs.iter()
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The events of this env's audit records of `kind`, in order.
    pub fn audit_events(&self, kind: &str) -> Vec<Value> {
        self.audit_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] == kind)
            .map(|r| r["event"].clone())
            .collect()
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let p = self.dir.join("hoop.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs the test client in this env's cgroup; returns (success, one JSON value per line).
    pub fn client(
        &self,
        client_bin: &str,
        addr: &str,
        msg: &str,
        extra: &[&str],
    ) -> (bool, Vec<Value>) {
        let out = self
            .cgroup
            .command(client_bin)
            .arg(addr)
            .arg(msg)
            .args(extra)
            .output()
            .unwrap();
        (out.status.success(), json_lines(&out.stdout))
    }

    /// The test client outside every test cgroup (the direct path).
    pub fn client_outside(client_bin: &str, addr: &str, msg: &str) -> (bool, Vec<Value>) {
        let out = Command::new(client_bin)
            .arg(addr)
            .arg(msg)
            .output()
            .unwrap();
        (out.status.success(), json_lines(&out.stdout))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // a config of our own: the test may have left an invalid hoop.toml behind on purpose
        let cfg = self.dir.join("teardown.toml");
        std::fs::write(&cfg, self.config("")).unwrap();
        let _ = Command::new(hoopd_bin())
            .arg("--config")
            .arg(&cfg)
            .arg("teardown")
            .output();
    }
}

pub fn json_lines(b: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(b)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A running hoopd with its JSON log captured.
pub struct Hoopd {
    pub child: Child,
    pub logs: Arc<Mutex<Vec<Value>>>,
}

impl Hoopd {
    /// Starts hoopd on `config` (optionally inside `cgroup`) and waits for "hoopd ready".
    pub fn start(config: &Path, cgroup: Option<&Cgroup>) -> Self {
        let mut h = Self::spawn(config, cgroup);
        if let Err(logs) = h.wait_log(|v| v["message"] == "hoopd ready", Duration::from_secs(20)) {
            let _ = h.child.kill();
            panic!("hoopd did not become ready; log:\n{logs}");
        }
        h
    }

    pub fn spawn(config: &Path, cgroup: Option<&Cgroup>) -> Self {
        let mut cmd = match cgroup {
            Some(cg) => cg.command(hoopd_bin()),
            None => Command::new(hoopd_bin()),
        };
        let mut child = cmd
            .arg("--config")
            .arg(config)
            .env("HOOP_LOG_FORMAT", "json")
            .env("HOOP_LOG", "warn,hoop=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hoopd");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push(v);
            }
        });
        Self { child, logs }
    }

    /// Waits for a log record matching `pred`; on timeout returns the whole log as text.
    pub fn wait_log(
        &mut self,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.logs.lock().unwrap().iter().find(|v| pred(v)) {
                return Ok(v.clone());
            }
            if Instant::now() > deadline || self.child.try_wait().ok().flatten().is_some() {
                std::thread::sleep(Duration::from_millis(50));
                return Err(self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs_matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| pred(v))
            .cloned()
            .collect()
    }

    pub fn log_text(&self) -> String {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// kill -9 and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Hoopd {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Session-end records in a hoopd log.
pub fn session_ends(h: &Hoopd) -> Vec<Value> {
    h.logs_matching(|v| v["event"] == "session_end")
}

/// Writes one line to a child's stdin.
pub fn send_line(child: &mut Child, line: &str) {
    let stdin = child.stdin.as_mut().expect("piped stdin");
    stdin.write_all(line.as_bytes()).unwrap();
    stdin.write_all(b"\n").unwrap();
    stdin.flush().unwrap();
}

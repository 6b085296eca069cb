//! A real systemd for the service tests: `/lib/systemd/systemd` as PID 1 of its own pid, mount
//! and cgroup namespaces, booted over an overlay of the host's root, so `hoopd.service` runs
//! exactly as systemd runs it on a runner (Type=notify, ExecStartPre, the sandbox, reload, stop)
//! even where systemd is not the host's init.
//!
//! Nothing it writes reaches the host's files: the overlay's upper layer is a tmpfs of that
//! mount namespace (readable from here through the `unshare` process's root, see [`upper`]).
//! It shares the host's network namespace, bpffs and nftables — the test's pins and table have
//! names of their own. Units that would touch the host kernel (sysctl, modules, udev, binfmt) are
//! masked inside, and /sys and /proc/sys are read-only there.
//!
//! [`upper`]: Systemd::upper

use std::{
    collections::BTreeMap,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// Run by `unshare` as PID 1 of the new namespaces; execs systemd at the end.
const INNER: &str = r#"
set -e
W="$1"; BIN="$2"
mount -t tmpfs -o mode=0755 tmpfs "$W/mnt"
mkdir -p "$W/mnt/upper" "$W/mnt/work" "$W/mnt/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$W/mnt/upper,workdir=$W/mnt/work" "$W/mnt/root"
R="$W/mnt/root"
mount -t proc proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro "$R/proc/sys"
mount --rbind /dev "$R/dev"
mount -t sysfs -o ro sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount --bind /sys/fs/bpf "$R/sys/fs/bpf"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
mkdir -p "$R/run/hoop-test-bin"
mount --bind -o ro "$BIN" "$R/run/hoop-test-bin"
rm -rf "$R"/etc/systemd/system/*.wants
for u in systemd-sysctl.service systemd-modules-load.service systemd-binfmt.service \
  proc-sys-fs-binfmt_misc.automount systemd-udevd.service systemd-udev-trigger.service \
  systemd-firstboot.service systemd-repart.service systemd-pcrphase.service \
  systemd-pcrphase-sysinit.service sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-kernel-config.mount sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount \
  kmod-static-nodes.service timers.target systemd-pstore.service systemd-timesyncd.service \
  getty.target console-getty.service systemd-logind.service cryptsetup.target; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"
done
printf '[Unit]\nDescription=hoop test\nRequires=basic.target\nAfter=basic.target\n' \
  > "$R/etc/systemd/system/hoop-test.target"
cd "$R"
exec chroot . /usr/bin/env container=hoop-test /lib/systemd/systemd --unit=hoop-test.target --show-status=no
"#;

pub struct Systemd {
    unshare: Child,
    /// systemd's pid (in the host's pid namespace).
    pid: u32,
    work: PathBuf,
    cgroup: PathBuf,
}

/// What a file in the overlay's upper layer is: type and content (or link target).
pub type Entry = (char, Vec<u8>);

impl Systemd {
    /// Why this host cannot boot a test systemd, if it cannot.
    pub fn unavailable() -> Option<String> {
        let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !Path::new("/lib/systemd/systemd").exists() {
            Some("no /lib/systemd/systemd".into())
        } else if !fs.contains("overlay") {
            Some("no overlayfs".into())
        } else if !Path::new("/sys/fs/bpf").exists() {
            Some("no bpffs at /sys/fs/bpf".into())
        } else {
            None
        }
    }

    /// Boots systemd; `bin_dir` (hoopd, hoopctl, test clients) is mounted at
    /// `/run/hoop-test-bin` inside, read-only. Waits until the system is up.
    pub fn boot(name: &str, bin_dir: &Path) -> Self {
        let work = std::env::temp_dir().join(format!("hoop-sd-{name}-{}", std::process::id()));
        std::fs::create_dir_all(work.join("mnt")).unwrap();
        std::fs::write(work.join("inner.sh"), INNER).unwrap();
        let cgroup = crate::cgroup2_root().join(format!("hoop-sd-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&cgroup).unwrap();
        let procs = cgroup.join("cgroup.procs");
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--cgroup",
            "--propagation",
            "private",
        ])
        .args(["--kill-child", "/bin/bash"])
        .arg(work.join("inner.sh"))
        .arg(&work)
        .arg(bin_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe work between fork and exec: open/write/close.
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, b"0"));
        }
        let unshare = cmd.spawn().expect("spawn unshare");
        let mut sd = Self {
            pid: 0,
            unshare,
            work,
            cgroup,
        };
        sd.pid = sd.wait_for_init();
        sd.wait_until_up();
        sd
    }

    fn wait_for_init(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        let child = format!("/proc/{}/task/{0}/children", self.unshare.id());
        while Instant::now() < deadline {
            if let Some(pid) = std::fs::read_to_string(&child)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                && std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|e| e.ends_with("systemd"))
            {
                return pid;
            }
            if let Ok(Some(st)) = self.unshare.try_wait() {
                let mut err = String::new();
                use std::io::Read;
                let _ = self.unshare.stderr.take().unwrap().read_to_string(&mut err);
                panic!("the test systemd did not start ({st}): {err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the test systemd did not start within 20 s");
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.run(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the test systemd is not up: {state}; {}",
                String::from_utf8_lossy(&self.run(&["systemctl", "--failed", "--no-pager"]).stdout)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a command inside (its namespaces and root).
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg("-t")
            .arg(self.pid.to_string())
            .args(["-m", "-p", "-C", "-r", "-w", "--"])
            .args(args)
            .output()
            .expect("nsenter")
    }

    /// `sh -c script` inside; (success, stdout, stderr).
    pub fn sh(&self, script: &str) -> (bool, String, String) {
        let out = self.run(&["sh", "-c", script]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Writes a file inside.
    pub fn write(&self, path: &str, text: &str) {
        use std::io::Write;
        let mut child = Command::new("nsenter")
            .arg("-t")
            .arg(self.pid.to_string())
            .args(["-m", "-p", "-C", "-r", "-w", "--", "sh", "-c"])
            .arg(format!("mkdir -p \"$(dirname {path})\" && cat > {path}"))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "write {path}");
    }

    /// One unit property (`systemctl show -p NAME --value`).
    pub fn prop(&self, unit: &str, name: &str) -> String {
        let out = self.run(&["systemctl", "show", "-p", name, "--value", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The unit's journal, message text only.
    pub fn journal(&self, unit: &str) -> String {
        let out = self.run(&["journalctl", "-u", unit, "--no-pager", "-o", "cat"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every file, symlink and whiteout in the overlay's upper layer — everything written inside
    /// since boot — by path relative to the root.
    pub fn upper(&self) -> BTreeMap<String, Entry> {
        let upper = PathBuf::from(format!("/proc/{}/root", self.unshare.id()))
            .join(self.work.strip_prefix("/").unwrap())
            .join("mnt/upper");
        let mut out = BTreeMap::new();
        walk(&upper, &upper, &mut out);
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(base).unwrap().display().to_string();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(base, &p, out);
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).unwrap_or_default();
            out.insert(rel, ('l', t.into_os_string().into_encoded_bytes()));
        } else if ft.is_char_device() {
            out.insert(rel, ('w', Vec::new())); // an overlay whiteout: a lower file deleted
        } else {
            out.insert(rel, ('f', std::fs::read(&p).unwrap_or_default()));
        }
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        // unshare ignores SIGTERM while it waits; SIGKILL makes it kill systemd (--kill-child),
        // and the pid namespace goes with its init.
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        for _ in 0..100 {
            if remove_cgroup_tree(&self.cgroup) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Removes a cgroup and its children (depth first); false while processes are still exiting.
fn remove_cgroup_tree(dir: &Path) -> bool {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    std::fs::remove_dir(dir).is_ok() || !dir.exists()
}

//! Host facts the interceptor needs: where cgroup v2 and bpffs are mounted, and mounting bpffs.

use std::{
    ffi::CString,
    io,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where bpffs is mounted by convention; hoopd mounts it there when it is missing.
const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// The scope hoopd attaches to: a cgroup v2 directory and its place in the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupScope {
    /// Absolute path of the cgroup directory.
    pub path: PathBuf,
    /// Mount point of the cgroup v2 hierarchy.
    pub root: PathBuf,
    /// Path relative to the hierarchy's root ("" for the root itself).
    pub relative: PathBuf,
    /// Depth below the root (0 for the root): nftables' `socket cgroupv2 level`.
    pub level: usize,
    /// Inode number of the directory, which is the kernel's cgroup id.
    pub id: u64,
}

impl CgroupScope {
    pub fn is_root(&self) -> bool {
        self.level == 0
    }

    /// Resolves `configured`, or the hierarchy's root when `None`.
    pub fn resolve(configured: Option<&Path>) -> io::Result<Self> {
        let root = cgroup2_mount()?;
        let path = match configured {
            Some(p) => p.canonicalize()?,
            None => root.clone(),
        };
        let relative = path
            .strip_prefix(&root)
            .map_err(|_| {
                io::Error::other(format!(
                    "{} is not inside the cgroup v2 hierarchy at {}",
                    path.display(),
                    root.display()
                ))
            })?
            .to_path_buf();
        if !path.join("cgroup.procs").exists() {
            return Err(io::Error::other(format!(
                "{} is not a cgroup v2 directory",
                path.display()
            )));
        }
        let id = std::fs::metadata(&path)?.ino();
        let level = relative.components().count();
        Ok(Self {
            path,
            root,
            relative,
            level,
            id,
        })
    }

    /// The path of a cgroup given as in /proc/PID/cgroup ("/a/b") under this hierarchy.
    pub fn is_within(&self, proc_cgroup_path: &str) -> bool {
        let p = Path::new(proc_cgroup_path.trim_start_matches('/'));
        p.starts_with(&self.relative)
    }
}

/// Mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> io::Result<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    info.lines()
        .find_map(|l| {
            // "... mountpoint opts - fstype source superopts"
            let (pre, post) = l.split_once(" - ")?;
            let mount_point = pre.split(' ').nth(4)?;
            (post.split(' ').next()? == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .ok_or_else(|| io::Error::other("no cgroup v2 hierarchy is mounted"))
}

fn is_bpffs(p: &Path) -> io::Result<bool> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and a properly sized out-parameter.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Makes sure `pin_dir` lives on a bpffs, mounting one at /sys/fs/bpf if that is where it
/// belongs and none is there, then creates it (0700).
pub fn ensure_pin_dir(pin_dir: &Path) -> io::Result<()> {
    let mut existing = pin_dir;
    while !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    if !is_bpffs(existing)? {
        if !pin_dir.starts_with(BPFFS_MOUNT) {
            return Err(io::Error::other(format!(
                "{} is not on a bpffs",
                pin_dir.display()
            )));
        }
        std::fs::create_dir_all(BPFFS_MOUNT)?;
        let (src, target) = (
            CString::new("bpf").unwrap(),
            CString::new(BPFFS_MOUNT).unwrap(),
        );
        // SAFETY: plain mount(2) with NUL-terminated strings and no data.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        tracing::info!(mount = BPFFS_MOUNT, "mounted bpffs");
    }
    std::fs::create_dir_all(pin_dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(pin_dir, std::fs::Permissions::from_mode(0o700))?;
    check_private_dir(pin_dir)
}

/// Refuses a directory someone else could change under hoopd: it must be a real directory (not
/// a symlink) owned by root or hoopd's user and writable by nobody else, and each directory above it
/// owned by root or hoopd's user and either writable by nobody else or sticky (bpffs's root is
/// usually 1777). Otherwise an unprivileged process could have created the pin directory first,
/// or rename it away, and unpin hoopd's links — which detaches the redirect. `chmod 0700` by
/// root does not help: the owner can change the mode back.
pub fn check_private_dir(dir: &Path) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let refuse = |p: &Path, why: String| {
        Err(io::Error::other(format!(
            "{}: {why}; refusing to keep pins there (another user could replace or remove \
             them): remove it, or point [intercept] pin_dir elsewhere",
            p.display()
        )))
    };
    let md = std::fs::symlink_metadata(dir)?;
    if !md.file_type().is_dir() {
        return refuse(dir, "not a directory (a symbolic link?)".into());
    }
    if md.uid() != euid && md.uid() != 0 {
        return refuse(dir, format!("owned by uid {}", md.uid()));
    }
    if md.mode() & 0o022 != 0 {
        return refuse(
            dir,
            format!("mode {:o} lets others write", md.mode() & 0o7777),
        );
    }
    // the directories above, as they really are (symbolic links resolved)
    let real = std::fs::canonicalize(dir)?;
    for p in real.ancestors().skip(1) {
        let md = std::fs::metadata(p)?;
        if md.uid() != 0 && md.uid() != euid {
            return refuse(p, format!("owned by uid {}", md.uid()));
        }
        if md.mode() & 0o022 != 0 && md.mode() & 0o1000 == 0 {
            return refuse(
                p,
                format!(
                    "mode {:o}: others can write and it is not sticky",
                    md.mode() & 0o7777
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn pin_dirs_others_could_change_are_refused() {
        let base = std::env::temp_dir().join(format!("hoop-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("pins");
        std::fs::create_dir_all(&dir).unwrap();
        mode(&base, 0o755);
        mode(&dir, 0o700);
        check_private_dir(&dir).unwrap();

        mode(&dir, 0o770);
        let e = check_private_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("lets others write"), "{e}");
        mode(&dir, 0o700);

        // a parent anyone can write to, without the sticky bit, lets them rename the pins away
        mode(&base, 0o777);
        let e = check_private_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("not sticky"), "{e}");
        mode(&base, 0o1777);
        check_private_dir(&dir).unwrap();
        mode(&base, 0o755);

        let link = base.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let e = check_private_dir(&link).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");

        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
            // SAFETY: a NUL-terminated path; 65534 is nobody.
            assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
            let e = check_private_dir(&dir).unwrap_err().to_string();
            assert!(e.contains("owned by uid 65534"), "{e}");
        } else {
            eprintln!("skipped: a pin directory owned by another user (needs root to chown)");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}

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
    Ok(())
}

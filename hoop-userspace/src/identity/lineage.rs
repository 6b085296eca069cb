//! The connecting process and its ancestors, each pinned by an open /proc/PID directory whose
//! start time was checked: everything read through that handle (environment, credentials, files
//! in the process's root) belongs to that very process, since a /proc directory of an exited
//! process stops answering and a reused pid gets a new directory. Blocking: run it off the
//! runtime (`spawn_blocking`).

use std::{
    ffi::CString,
    fs::File,
    io::{self, Read},
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::Path,
};

use super::process::stat_start_ticks;

/// Ancestors examined above the connecting process (a job's step is a few levels below the
/// runner; this bounds the walk on any host).
pub const MAX_DEPTH: usize = 32;
/// /proc/PID/environ beyond this is not read (the kernel's own ARG_MAX-sized limit is larger;
/// CI environments are far smaller).
const ENVIRON_MAX: u64 = 1 << 20;
/// A token file larger than this is not a token.
pub const TOKEN_FILE_MAX: u64 = 64 << 10;

/// One process, verified.
pub struct Proc {
    dir: File,
    pub pid: u32,
    pub start_ticks: u64,
    ppid: u32,
}

/// The process's file-access credentials, as the kernel checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub fsuid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineageError {
    #[error("process exited")]
    Exited,
    #[error("pid reused by another process")]
    Reused,
    #[error("/proc/{pid}/{what} unreadable: {reason}")]
    Unreadable {
        pid: u32,
        what: &'static str,
        reason: String,
    },
}

impl Proc {
    /// Opens `pid` and checks its start time equals `start_ticks` (the kernel's record).
    pub fn open(pid: u32, start_ticks: u64) -> Result<Self, LineageError> {
        let p = Self::open_any(pid)?;
        if p.start_ticks != start_ticks {
            return Err(LineageError::Reused);
        }
        Ok(p)
    }

    fn open_any(pid: u32) -> Result<Self, LineageError> {
        let dir = File::open(format!("/proc/{pid}")).map_err(|_| LineageError::Exited)?;
        let stat = read_at(&dir, "stat", 4096).map_err(|_| LineageError::Exited)?;
        let stat = String::from_utf8_lossy(&stat);
        let (Some(start_ticks), Some(ppid)) = (stat_start_ticks(&stat), stat_ppid(&stat)) else {
            return Err(LineageError::Unreadable {
                pid,
                what: "stat",
                reason: "unexpected format".into(),
            });
        };
        Ok(Self {
            dir,
            pid,
            start_ticks,
            ppid,
        })
    }

    /// The parent, if it is still the process that created this one: it must have started no
    /// later than this process (a pid reused after the parent exited belongs to a younger one).
    pub fn parent(&self) -> Option<Self> {
        if self.ppid <= 1 {
            return None;
        }
        let p = Self::open_any(self.ppid).ok()?;
        (p.start_ticks <= self.start_ticks).then_some(p)
    }

    /// The value of `name` in the process's initial environment (what it was started with).
    pub fn env(&self, names: &[&str]) -> Result<Vec<Option<String>>, LineageError> {
        let raw = read_at(&self.dir, "environ", ENVIRON_MAX)
            .map_err(|e| self.unreadable("environ", e))?;
        Ok(names
            .iter()
            .map(|n| {
                raw.split(|b| *b == 0).find_map(|kv| {
                    let v = kv.strip_prefix(n.as_bytes())?.strip_prefix(b"=")?;
                    String::from_utf8(v.to_vec()).ok()
                })
            })
            .collect())
    }

    pub fn creds(&self) -> Result<Creds, LineageError> {
        let raw =
            read_at(&self.dir, "status", 1 << 16).map_err(|e| self.unreadable("status", e))?;
        parse_creds(&String::from_utf8_lossy(&raw)).ok_or_else(|| LineageError::Unreadable {
            pid: self.pid,
            what: "status",
            reason: "no Uid/Gid lines".into(),
        })
    }

    /// Reads `path` as the process would: resolved inside its own root (so inside its mount
    /// namespace, absolute symlinks included), and only if its credentials may read the file.
    pub fn read_in_root(&self, path: &Path) -> Result<String, FileError> {
        let creds = self
            .creds()
            .map_err(|e| FileError::Unreadable(e.to_string()))?;
        let root = open_at(&self.dir, "root", libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|e| FileError::Unreadable(format!("root: {e}")))?;
        let file =
            openat2_in_root(&root, path).map_err(|e| FileError::Unreadable(e.to_string()))?;
        read_token_file(file, Some(&creds))
    }

    fn unreadable(&self, what: &'static str, e: io::Error) -> LineageError {
        if e.raw_os_error() == Some(libc::ESRCH) || e.kind() == io::ErrorKind::NotFound {
            LineageError::Exited
        } else {
            LineageError::Unreadable {
                pid: self.pid,
                what,
                reason: e.to_string(),
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("not readable by the process (uid {uid})")]
    Denied { uid: u32 },
    #[error("not a regular file of at most 64 KiB")]
    NotAToken,
}

/// Reads a token file (trimmed), refusing one that `creds` could not read itself: a process must
/// not borrow another workload's token by pointing at a file it has no access to. ACLs and
/// capabilities are not considered (fail closed).
pub fn read_token_file(mut file: File, creds: Option<&Creds>) -> Result<String, FileError> {
    let meta = file
        .metadata()
        .map_err(|e| FileError::Unreadable(e.to_string()))?;
    if !meta.is_file() || meta.len() > TOKEN_FILE_MAX {
        return Err(FileError::NotAToken);
    }
    if let Some(c) = creds
        && !may_read(c, meta.uid(), meta.gid(), meta.mode())
    {
        return Err(FileError::Denied { uid: c.fsuid });
    }
    let mut s = String::new();
    (&mut file)
        .take(TOKEN_FILE_MAX)
        .read_to_string(&mut s)
        .map_err(|_| FileError::NotAToken)?;
    Ok(s.trim().to_string())
}

fn may_read(c: &Creds, uid: u32, gid: u32, mode: u32) -> bool {
    if c.fsuid == 0 {
        return true;
    }
    if c.fsuid == uid {
        return mode & 0o400 != 0;
    }
    if c.fsgid == gid || c.groups.contains(&gid) {
        return mode & 0o040 != 0;
    }
    mode & 0o004 != 0
}

fn parse_creds(status: &str) -> Option<Creds> {
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
    };
    // Uid/Gid: real, effective, saved, filesystem
    let uid = field("Uid:")?;
    let gid = field("Gid:")?;
    Some(Creds {
        fsuid: *uid.get(3)?,
        fsgid: *gid.get(3)?,
        groups: field("Groups:").unwrap_or_default(),
    })
}

/// Field 4 of /proc/PID/stat, counted from the last ')' like the start time.
fn stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn open_at(dir: &File, name: &str, flags: i32) -> io::Result<File> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid directory fd and NUL-terminated path; the returned fd is owned by File.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is not owned elsewhere.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn read_at(dir: &File, name: &str, max: u64) -> io::Result<Vec<u8>> {
    let f = open_at(dir, name, libc::O_RDONLY)?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): `path` resolved as if `root` were `/`,
/// `..` and absolute symlinks included, and no /proc magic link leads out.
fn openat2_in_root(root: &File, path: &Path) -> io::Result<File> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open_how is plain data; zeroed is a valid value that we then fill.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid fd, NUL-terminated path, a properly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat2 and is not owned elsewhere.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Proc {
        let pid = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        Proc::open(pid, stat_start_ticks(&stat).unwrap()).unwrap()
    }

    #[test]
    fn wrong_start_time_is_reuse() {
        let m = me();
        assert_eq!(
            Proc::open(m.pid, m.start_ticks + 1).err(),
            Some(LineageError::Reused)
        );
    }

    #[test]
    fn reads_own_env_and_parent() {
        let m = me();
        let v = m.env(&["PATH", "HOOP_SURELY_UNSET_VAR"]).unwrap();
        assert_eq!(v[0].as_deref(), std::env::var("PATH").ok().as_deref());
        assert_eq!(v[1], None);
        let p = m.parent().expect("parent");
        assert!(p.start_ticks <= m.start_ticks);
        assert_eq!(p.pid, std::os::unix::process::parent_id());
    }

    #[test]
    fn creds_and_permission_bits() {
        let c = me().creds().unwrap();
        // SAFETY: geteuid has no preconditions.
        assert_eq!(c.fsuid, unsafe { libc::geteuid() });
        let user = Creds {
            fsuid: 1000,
            fsgid: 1000,
            groups: vec![27],
        };
        assert!(may_read(&user, 1000, 0, 0o400));
        assert!(!may_read(&user, 1000, 0, 0o044)); // owner bits rule for the owner
        assert!(may_read(&user, 0, 27, 0o040));
        assert!(!may_read(&user, 0, 0, 0o640));
        assert!(may_read(&user, 0, 0, 0o644));
    }

    #[test]
    fn reads_file_in_own_root() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "abc.def.ghi\n").unwrap();
        assert_eq!(me().read_in_root(&f).unwrap(), "abc.def.ghi");
        assert!(matches!(
            me().read_in_root(dir.path()),
            Err(FileError::NotAToken)
        ));
        assert!(matches!(
            me().read_in_root(&dir.path().join("missing")),
            Err(FileError::Unreadable(_))
        ));
    }

    #[test]
    fn status_parsing() {
        let s = "Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t9 10 \n";
        assert_eq!(
            parse_creds(s),
            Some(Creds {
                fsuid: 4,
                fsgid: 8,
                groups: vec![9, 10]
            })
        );
        assert_eq!(stat_ppid("12 (a) b)) S 34 12 12"), Some(34));
    }
}

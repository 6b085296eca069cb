//! The bpffs layout under `pin_dir` and the attach-then-replace dance that keeps a redirect in
//! place across hoopd restarts.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, SockOps,
        links::{FdLink, PinnedLink},
    },
};
use hoop_common::progs;

use super::InterceptError;

pub struct Pins {
    root: PathBuf,
}

impl Pins {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    fn progs(&self) -> PathBuf {
        self.root.join("progs")
    }

    /// Mounts bpffs if needed and creates the directories.
    pub fn create(&self) -> io::Result<()> {
        super::sys::ensure_pin_dir(&self.root)?;
        for d in [self.maps(), self.links(), self.progs()] {
            std::fs::create_dir_all(&d)?;
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
            super::sys::check_private_dir(&d)?;
        }
        Ok(())
    }

    /// Loads and attaches every program to `cgroup`, pins program and link, and only then
    /// releases the link a previous hoopd pinned (which detaches its program).
    ///
    /// Attach mode `Single` means flags 0, which is what BPF_LINK_CREATE accepts for cgroups:
    /// cgroup links are always multi-attach, so old and new links coexist for the hand-over and
    /// programs attached at other levels of the hierarchy keep running.
    pub fn attach_all(&self, ebpf: &mut Ebpf, cgroup: &File) -> Result<(), InterceptError> {
        for name in progs::ALL {
            let prog = ebpf.program_mut(name).ok_or(InterceptError::Program {
                name,
                source: aya::programs::ProgramError::InvalidName { name: name.into() },
            })?;
            let perr = |source| InterceptError::Program { name, source };
            let link: FdLink = if name == progs::SOCK_OPS {
                let p: &mut SockOps = prog.try_into().map_err(perr)?;
                p.load().map_err(perr)?;
                let id = p.attach(cgroup, CgroupAttachMode::Single).map_err(perr)?;
                p.take_link(id)
                    .map_err(perr)?
                    .try_into()
                    .map_err(|source| InterceptError::Link { name, source })?
            } else if name == progs::DNS_GUARD {
                let p: &mut CgroupSkb = prog.try_into().map_err(perr)?;
                p.load().map_err(perr)?;
                let id = p
                    .attach(
                        cgroup,
                        CgroupSkbAttachType::Egress,
                        CgroupAttachMode::Single,
                    )
                    .map_err(perr)?;
                p.take_link(id)
                    .map_err(perr)?
                    .try_into()
                    .map_err(|source| InterceptError::Link { name, source })?
            } else {
                let p: &mut CgroupSockAddr = prog.try_into().map_err(perr)?;
                p.load().map_err(perr)?;
                let id = p.attach(cgroup, CgroupAttachMode::Single).map_err(perr)?;
                p.take_link(id)
                    .map_err(perr)?
                    .try_into()
                    .map_err(|source| InterceptError::Link { name, source })?
            };
            self.replace_link(name, link)?;
            let prog_pin = self.progs().join(name);
            remove_if_exists(&prog_pin).map_err(|source| InterceptError::Pin {
                path: prog_pin.clone(),
                source,
            })?;
            ebpf.program_mut(name)
                .expect("present above")
                .pin(&prog_pin)
                .map_err(|e| InterceptError::Pin {
                    path: prog_pin,
                    source: io::Error::other(e),
                })?;
        }
        Ok(())
    }

    /// Pins `link` as `links/<name>`, releasing the link pinned there before (if any) only after
    /// the new one is attached and pinned.
    fn replace_link(&self, name: &str, link: FdLink) -> Result<(), InterceptError> {
        let path = self.links().join(name);
        // bpffs refuses names containing a dot
        let staging = self.links().join(format!("{name}_new"));
        let pin_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| InterceptError::Pin { path: p, source }
        };
        remove_if_exists(&staging).map_err(pin_err(&staging))?;
        let new = link.pin(&staging).map_err(|e| InterceptError::Pin {
            path: staging.clone(),
            source: io::Error::other(e),
        })?;
        if path.exists() {
            match PinnedLink::from_pin(&path) {
                // dropping the unpinned FdLink closes the last reference: the old program detaches
                Ok(old) => drop(old.unpin().map_err(pin_err(&path))?),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "stale link pin; replacing");
                    remove_if_exists(&path).map_err(pin_err(&path))?;
                }
            }
            tracing::info!(link = name, "replaced the previous hoopd's link");
        }
        std::fs::rename(&staging, &path).map_err(pin_err(&path))?;
        drop(new); // the pin keeps the link; this only closes our fd
        Ok(())
    }

    /// Unpins everything: links first (detaching the programs), then programs and maps.
    pub fn remove_all(&self) -> io::Result<()> {
        for dir in [self.links(), self.progs(), self.maps()] {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries {
                    std::fs::remove_file(e?.path())?;
                }
                std::fs::remove_dir(&dir)?;
            }
        }
        if self.root.exists() {
            std::fs::remove_dir(&self.root)?;
        }
        Ok(())
    }
}

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

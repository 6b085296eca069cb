//! File operations of install/uninstall under a root directory: paths mapped into the root,
//! atomic writes with exact modes, and a record of the directories install had to create (so
//! uninstall can remove exactly those).

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use super::InstallError;

/// A target root: `/` for the running system, or an image being built.
#[derive(Debug, Clone)]
pub struct Root {
    pub dir: PathBuf,
}

impl Root {
    pub fn new(dir: &Path) -> Result<Self, InstallError> {
        let bad = |reason: &str| InstallError::BadRoot {
            path: dir.to_path_buf(),
            reason: reason.to_string(),
        };
        if !dir.is_absolute() {
            return Err(bad("must be an absolute path"));
        }
        let dir = dir.canonicalize().map_err(|e| bad(&e.to_string()))?;
        if !dir.is_dir() {
            return Err(bad("is not a directory"));
        }
        Ok(Self { dir })
    }

    pub fn is_host(&self) -> bool {
        self.dir == Path::new("/")
    }

    /// `abs` (an absolute path on the target system) inside this root.
    pub fn at(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.dir.join(abs.strip_prefix("/").unwrap_or(abs))
    }
}

pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and missing parents (parents 0755, `dir` itself `mode`), appending every
/// directory it created to `created` (outermost first). An existing `dir` gets `mode`.
pub fn ensure_dir(dir: &Path, mode: u32, created: &mut Vec<PathBuf>) -> Result<(), InstallError> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        cur = match cur.parent() {
            Some(p) => p,
            None => break,
        };
    }
    for d in missing.iter().rev() {
        let m = if d == dir { mode } else { 0o755 };
        match fs::DirBuilder::new().mode(m).create(d) {
            Ok(()) => created.push(d.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(d)(e)),
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_err(dir))
}

/// Writes `bytes` to `path` with `mode` through a temporary file and a rename, so a reader (or
/// a running binary being replaced) never sees a half-written file. A file that already has
/// these contents and mode is left alone (an image layer does not change for nothing); returns
/// whether it was written.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<bool, InstallError> {
    let same_mode = fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o7777 == mode);
    if same_mode && fs::read(path).is_ok_and(|b| b == bytes) {
        return Ok(false);
    }
    let tmp = path.with_file_name(format!(
        ".{}.hoop-install.{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            // the umask may have narrowed the mode
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.sync_all()
        });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    Ok(true)
}

/// Removes a file or symlink; true if it was there.
pub fn remove_file(path: &Path) -> Result<bool, InstallError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Removes `dir` if it is empty; true if it was removed.
pub fn remove_empty_dir(dir: &Path) -> bool {
    fs::remove_dir(dir).is_ok()
}

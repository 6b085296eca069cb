//! The node's ed25519 checkpoint key: generated once (mode 0600) under the configured path,
//! its public half written beside it as `<key>.pub`; both as one line of hex.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::error::AuditError;

/// `<key path>.pub`
pub fn public_key_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Loads the key, or creates it if absent. Refuses a key file that group or others can access:
/// anyone who can read it can forge checkpoints.
pub fn load_or_generate(path: &Path) -> Result<SigningKey, AuditError> {
    let key = match fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(AuditError::KeyPermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
            load_existing(path)?
        }
        Err(e) if e.kind() == ErrorKind::NotFound => generate(path)?,
        Err(e) => return Err(AuditError::io(path, e)),
    };
    write_public_key(&public_key_path(path), &key.verifying_key())?;
    Ok(key)
}

fn generate(path: &Path) -> Result<SigningKey, AuditError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| AuditError::io(path, std::io::Error::other(e.to_string())))?;
    let key = SigningKey::from_bytes(&seed);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| AuditError::io(parent, e))?;
    }
    // Write a private temp file, then link it into place: a crash never leaves a half-written
    // key under the real name, and a concurrent generator's key is never overwritten.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = write_new(&tmp, format!("{}\n", hex::encode(seed)).as_bytes(), 0o600);
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_parent(path)?;
            Ok(key)
        }
        // Lost a race with another generator: use its key.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => load_existing(path),
        Err(e) => Err(AuditError::io(path, e)),
    }
}

fn load_existing(path: &Path) -> Result<SigningKey, AuditError> {
    let text = fs::read_to_string(path).map_err(|e| AuditError::io(path, e))?;
    let seed = parse_hex32(&text).ok_or_else(|| AuditError::KeyMalformed {
        path: path.to_owned(),
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_parent(path: &Path) -> Result<(), AuditError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io(parent, e))
}

/// Writes a public key file (mode 0644) unless it already holds this key.
pub fn write_public_key(path: &Path, key: &VerifyingKey) -> Result<(), AuditError> {
    let text = format!("{}\n", hex::encode(key.as_bytes()));
    if fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, text.as_bytes(), 0o644).map_err(|e| AuditError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| AuditError::io(path, e))?;
    sync_parent(path)
}

/// Reads a public key file; None if absent or malformed.
pub fn read_public_key(path: &Path) -> Result<Option<VerifyingKey>, AuditError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(parse_hex32(&text).and_then(|b| VerifyingKey::from_bytes(&b).ok())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuditError::io(path, e)),
    }
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim_end_matches('\n'), &mut out)
        .ok()
        .map(|()| out)
}

#[cfg(test)]
mod tests;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;

#[test]
fn generates_0600_then_reloads_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/audit.key");
    let k1 = load_or_generate(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let k2 = load_or_generate(&path).unwrap();
    assert_eq!(k1.to_bytes(), k2.to_bytes());
    let public = read_public_key(&public_key_path(&path)).unwrap().unwrap();
    assert_eq!(public, k1.verifying_key());
    let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 2, "only the key and its .pub");
}

#[test]
fn refuses_readable_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.key");
    load_or_generate(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        load_or_generate(&path),
        Err(AuditError::KeyPermissions { mode: 0o644, .. })
    ));
}

#[test]
fn refuses_malformed_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.key");
    fs::write(&path, "not hex\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        load_or_generate(&path),
        Err(AuditError::KeyMalformed { .. })
    ));
}

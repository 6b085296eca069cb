use std::collections::BTreeMap;

use super::*;

/// A root with stand-in binaries beside it.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: Root,
    bins: Binaries,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fs::create_dir(tmp.path().join("root")).unwrap();
    let bins = Binaries {
        hoopd: bin.join("hoopd"),
        hoopctl: bin.join("hoopctl"),
    };
    fs::write(&bins.hoopd, b"#!/bin/sh\necho hoopd\n").unwrap();
    fs::write(&bins.hoopctl, b"#!/bin/sh\necho hoopctl\n").unwrap();
    let root = Root::new(&tmp.path().join("root")).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        bins,
    }
}

/// Every entry under `dir`: relative path → (mode, symlink target or file bytes).
fn tree(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&p).unwrap();
            let content = if meta.is_symlink() {
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                fs::read(&p).unwrap()
            };
            out.insert(rel, (meta.permissions().mode() & 0o7777, content));
        }
    }
    out
}

#[test]
fn install_lays_out_every_file_with_its_mode() {
    let f = fixture();
    install(&f.root, &f.bins).unwrap();
    let t = tree(&f.root.dir);
    let mode = |p: &str| t.get(p).unwrap_or_else(|| panic!("{p} missing: {t:#?}")).0;
    for (p, m) in [
        ("usr/bin/hoopd", 0o755),
        ("usr/bin/hoopctl", 0o755),
        ("usr/lib/systemd/system/hoopd.service", 0o644),
        ("usr/lib/sysusers.d/hoop.conf", 0o644),
        ("usr/lib/tmpfiles.d/hoop.conf", 0o644),
        ("usr/share/doc/hoop/config.md", 0o644),
        ("etc/hoop", 0o755),
        ("etc/hoop/hoop.toml", 0o644),
        ("var/lib/hoop", 0o700),
        ("var/lib/hoop/ca", 0o755),
        ("var/lib/hoop/ca/ca.crt", 0o644),
        ("var/lib/hoop/ca/ca.key", 0o600),
        ("var/lib/hoop/audit.key", 0o600),
        ("var/lib/hoop/audit.key.pub", 0o644),
        ("var/lib/hoop/install.json", 0o600),
        ("usr/local/share/ca-certificates/hoop-node-ca.crt", 0o644),
    ] {
        assert_eq!(mode(p), m, "{p}");
    }
    assert_eq!(t["usr/bin/hoopd"].1, fs::read(&f.bins.hoopd).unwrap());
    assert_eq!(
        t["etc/hoop/hoop.toml"].1,
        config::EMBEDDED_DEFAULT.as_bytes()
    );
    assert_eq!(
        t["usr/local/share/ca-certificates/hoop-node-ca.crt"].1, t["var/lib/hoop/ca/ca.crt"].1,
        "the trust store entry is the node CA"
    );
    assert_eq!(
        t["etc/systemd/system/multi-user.target.wants/hoopd.service"].1,
        UNIT.as_bytes(),
        "enabled as systemctl enable would"
    );
    assert!(
        String::from_utf8_lossy(&t["usr/lib/tmpfiles.d/hoop.conf"].1)
            .contains("d /run/hoop 2750 root hoop-operators")
    );
}

#[test]
fn reinstall_changes_nothing_and_keeps_keys_and_config() {
    let f = fixture();
    install(&f.root, &f.bins).unwrap();
    let cfg = f.root.at(config::DEFAULT_PATH);
    let custom = format!("{}\n[metrics]\nenabled = false\n", config::EMBEDDED_DEFAULT);
    fs::write(&cfg, &custom).unwrap();
    let before = tree(&f.root.dir);
    let report = install(&f.root, &f.bins).unwrap();
    assert_eq!(
        tree(&f.root.dir),
        before,
        "a second install changes no file"
    );
    assert!(
        report.done.iter().all(|l| !l.starts_with("installed")),
        "{:?}",
        report.done
    );
    assert_eq!(fs::read_to_string(&cfg).unwrap(), custom);
}

#[test]
fn uninstall_leaves_nothing_behind_and_is_idempotent() {
    let f = fixture();
    install(&f.root, &f.bins).unwrap();
    install(&f.root, &f.bins).unwrap();
    uninstall(&f.root, UninstallOptions::default()).unwrap();
    assert_eq!(tree(&f.root.dir), BTreeMap::new());
    let again = uninstall(&f.root, UninstallOptions::default()).unwrap();
    assert!(again.done.is_empty(), "{:?}", again.done);
}

#[test]
fn uninstall_keeps_what_was_there_before() {
    let f = fixture();
    let mine = f.root.at("/usr/bin/other-tool");
    fs::create_dir_all(mine.parent().unwrap()).unwrap();
    fs::write(&mine, b"x").unwrap();
    install(&f.root, &f.bins).unwrap();
    uninstall(&f.root, UninstallOptions::default()).unwrap();
    let t = tree(&f.root.dir);
    assert_eq!(
        t.keys().collect::<Vec<_>>(),
        ["usr", "usr/bin", "usr/bin/other-tool"]
    );
}

#[test]
fn invalid_existing_config_is_named() {
    let f = fixture();
    let cfg = f.root.at(config::DEFAULT_PATH);
    fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    fs::write(&cfg, "[metrics]\nlisten = '0.0.0.0:1'\n").unwrap();
    let e = install(&f.root, &f.bins).unwrap_err();
    assert!(e.is_config(), "{e}");
    assert!(e.to_string().contains("metrics.listen"), "{e}");
}

#[test]
fn uninstall_refuses_to_delete_an_audit_trail_unless_asked() {
    let f = fixture();
    install(&f.root, &f.bins).unwrap();
    let audit = f.root.at("/var/lib/hoop/audit");
    fs::create_dir_all(&audit).unwrap();
    fs::write(audit.join("seg-00000000000000000000.log"), b"{}\n").unwrap();
    let e = uninstall(&f.root, UninstallOptions::default()).unwrap_err();
    assert!(
        matches!(e, InstallError::AuditTrailPresent { segments: 1, .. }),
        "{e}"
    );
    assert!(
        f.root.at(UNIT).exists(),
        "nothing removed after the refusal"
    );
    let opts = UninstallOptions {
        discard_audit: true,
    };
    uninstall(&f.root, opts).unwrap();
    assert_eq!(tree(&f.root.dir), BTreeMap::new());
}

#[test]
fn custom_state_dir_is_used_and_removed() {
    let f = fixture();
    let cfg = f.root.at(config::DEFAULT_PATH);
    fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    fs::write(&cfg, "[state]\ndir = '/srv/hoop/state'\n").unwrap();
    install(&f.root, &f.bins).unwrap();
    assert_eq!(mode(&f.root.at("/srv/hoop/state")), Some(0o700));
    assert!(f.root.at("/srv/hoop/state/ca/ca.key").exists());
    uninstall(&f.root, UninstallOptions::default()).unwrap();
    // /etc/hoop was there before install (the test made it for the configuration)
    let left: Vec<String> = tree(&f.root.dir).into_keys().collect();
    assert_eq!(left, ["etc", "etc/hoop"]);
}

#[test]
fn group_is_created_in_a_root_with_etc_group_and_removed_again() {
    if std::process::Command::new("systemd-sysusers")
        .arg("--version")
        .output()
        .is_err()
        // SAFETY: geteuid has no preconditions.
        || unsafe { libc::geteuid() } != 0
    {
        eprintln!("skipped: needs root and systemd-sysusers");
        return;
    }
    let f = fixture();
    let etc = f.root.at("/etc");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("group"), "root:x:0:\n").unwrap();
    fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let report = install(&f.root, &f.bins).unwrap();
    assert!(system::group_exists(&f.root, OPERATORS_GROUP), "{report:?}");
    uninstall(&f.root, UninstallOptions::default()).unwrap();
    assert!(!system::group_exists(&f.root, OPERATORS_GROUP));
}

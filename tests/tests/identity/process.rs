//! The process side of identity: the federated token file read through the client's own
//! mount namespace, cgroup mappings, and a reused pid never credited with the old identity.

use super::*;

/// AKS workload identity: `AZURE_FEDERATED_TOKEN_FILE` names a file on a tmpfs mounted only in
/// the client's own mount namespace (hoopd must read it through the process's root); a file the
/// process itself could not read is refused.
pub(super) fn federated_token_file(fx: &Fixture) -> Result<(), Failed> {
    let _one = fx.serial.lock().unwrap_or_else(|e| e.into_inner());
    let claims = json!({"kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "builder"}, "pod": {"name": "runner-7"}}});
    fx.issuer.job(
        "k8s-1",
        "system:serviceaccount:ci:builder",
        claims,
        json!({}),
    );
    let token = fx.issuer.mint("k8s-1", "hoop");
    let n = node(fx, "id-fed", 19406, 17506, ID, "");
    let mnt = n.env.dir.join("ns-only");
    std::fs::create_dir_all(&mnt)?;
    let script = format!(
        "mount -t tmpfs tmpfs {m} && cat > {m}/token && AZURE_FEDERATED_TOKEN_FILE={m}/token exec {CLIENT} {} fed",
        n.addr,
        m = mnt.display()
    );
    let mut child = n
        .env
        .cgroup
        .command("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    use std::io::Write;
    child.stdin.take().unwrap().write_all(token.as_bytes())?;
    ok(&child.wait_with_output()?)?;
    check(!mnt.join("token").exists(), || {
        "the token file leaked into hoopd's mount namespace".into()
    })?;
    let id = n.wait_starts(1)?.pop().unwrap()["identity"].clone();
    let a = &id["attributes"];
    check(
        id["kind"] == "oidc"
            && id["provider"] == "federated-file"
            && a["namespace"] == "ci"
            && a["service_account"] == "builder"
            && a["pod"] == "runner-7",
        || format!("{id}"),
    )?;
    // root-only 0600 file, client running as nobody: not its token
    let f = n.env.dir.join("root-only-token");
    std::fs::write(&f, &token)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))?;
    let out = n
        .env
        .cgroup
        .command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            CLIENT,
            &n.addr,
            "nobody",
        ])
        .env_clear()
        .env("AZURE_FEDERATED_TOKEN_FILE", &f)
        .output()?;
    ok(&out)?;
    let id = n.wait_starts(2)?.pop().unwrap()["identity"].clone();
    check(
        id["kind"] == "anonymous"
            && id["reason"]
                .as_str()
                .is_some_and(|r| r.contains("not readable by the process (uid 65534)")),
        || format!("{id}"),
    )?;
    check(!n.audit_and_log().contains("eyJ"), || {
        "the token reached the log or the audit trail".into()
    })
}

/// cgroup mappings: a runner cgroup without OIDC gets a fixed named identity; another gets its
/// identity from a configured token file (validated like any token, as provider `generic`).
pub(super) fn cgroup_mapping(fx: &Fixture) -> Result<(), Failed> {
    let _one = fx.serial.lock().unwrap_or_else(|e| e.into_inner());
    fx.issuer.job(
        "svc-1",
        "svc:nightly-etl",
        json!({"team": "data"}),
        json!({}),
    );
    let tok_file =
        std::env::temp_dir().join(format!("hoop-test-id-map-token-{}", std::process::id()));
    std::fs::write(&tok_file, fx.issuer.mint("svc-1", "hoop"))?;
    let mappings = format!(
        "[[identity.cgroup]]\npath = \"/hoop-test-id-map-*/pool-a\"\nname = \"runner-pool-a\"\n\
         attributes = {{ repository = \"octo/legacy\", environment = \"staging\" }}\n\
         [[identity.cgroup]]\npath = \"/hoop-test-id-map-*/etl/**\"\ntoken_file = \"{}\"\n",
        tok_file.display()
    );
    let n = node(fx, "id-map", 19407, 17507, &format!("{ID}{mappings}"), "");
    let sub = |name: &str| {
        let p = n.env.cgroup.path.join(name);
        std::fs::create_dir_all(&p).unwrap();
        Cgroup { path: p }
    };
    let (pool, etl) = (sub("pool-a"), sub("etl"));
    let etl_job = Cgroup {
        path: etl.path.join("job-9"),
    };
    std::fs::create_dir_all(&etl_job.path)?;
    ok(&client_in(&pool, &n.addr, &[], &[]))?;
    ok(&client_in(&etl_job, &n.addr, &[], &[]))?;
    ok(&n.client(&[], &[]))?; // the parent cgroup itself matches no mapping
    let s = n.wait_starts(3)?;
    let by_cg = |suffix: &str| {
        s.iter()
            .find(|r| {
                r["process"]["cgroup"]
                    .as_str()
                    .is_some_and(|c| c.ends_with(suffix))
            })
            .map(|r| r["identity"].clone())
            .unwrap_or_default()
    };
    let named = by_cg("/pool-a");
    check(
        named["kind"] == "named"
            && named["provider"] == "runner-pool-a"
            && named["subject"] == "runner-pool-a"
            && named["attributes"]["repository"] == "octo/legacy",
        || format!("named: {named}"),
    )?;
    let filed = by_cg("/etl/job-9");
    check(
        filed["kind"] == "oidc"
            && filed["provider"] == "generic"
            && filed["subject"] == "svc:nightly-etl"
            && filed["claims"]["team"] == "data",
        || format!("token file: {filed}"),
    )?;
    let none = by_cg(&format!("hoop-test-id-map-{}", std::process::id()));
    drop((etl_job, etl, pool));
    let _ = std::fs::remove_file(&tok_file);
    check(none["kind"] == "anonymous", || format!("unmapped: {none}"))
}

/// A token-bearing process connects and exits before hoopd looks (hoopd is stopped meanwhile);
/// another process with a valid token of its own takes its pid: the session is attributed to
/// neither (anonymous: pid reused).
pub(super) fn pid_reuse_not_attributed(fx: &Fixture) -> Result<(), Failed> {
    let _one = fx.serial.lock().unwrap_or_else(|e| e.into_inner());
    fx.issuer.job(
        "rt-reuse-a",
        "repo:octo/a:ref:refs/heads/main",
        github_claims(),
        json!({}),
    );
    fx.issuer.job(
        "rt-reuse-b",
        "repo:evil/b:ref:refs/heads/main",
        github_claims(),
        json!({}),
    );
    let n = node(fx, "id-reuse", 19408, 17508, ID, "");
    let url = fx.issuer.github_url();
    let mut reused = None;
    for attempt in 0..10 {
        n.hoopd.signal(libc::SIGSTOP);
        let a = n
            .env
            .cgroup
            .command(CLIENT)
            .args([n.addr.as_str(), "a", "--timeout-ms", "300"])
            .env_clear()
            .envs(gh_vars(&url, "rt-reuse-a"))
            .stdout(Stdio::null())
            .spawn()?;
        let pid = a.id();
        let _ = a.wait_with_output()?; // connected (the kernel completed the handshake), then gave up
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())?;
        let mut b = Command::new("sleep")
            .arg("30")
            .env_clear()
            .envs(gh_vars(&url, "rt-reuse-b"))
            .spawn()?;
        let got = b.id();
        n.hoopd.signal(libc::SIGCONT);
        let starts = n.wait_starts(attempt + 1)?;
        let _ = b.kill();
        let _ = b.wait();
        let s = starts
            .into_iter()
            .find(|s| s["process"]["pid"] == pid)
            .unwrap_or_default();
        check(s["identity"]["kind"] == "anonymous", || {
            format!("attributed: {s}")
        })?;
        if got == pid {
            reused = Some(s);
            break;
        }
    }
    let s = reused.ok_or("another process took the pid every time; reuse not exercised")?;
    check(
        s["process"]["unverified"] == "pid reused by another process"
            && s["identity"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("pid reused")),
        || format!("{s}"),
    )
}

//! hoopd assembled: bind the listener, attach the redirect, install the guard, serve, and apply
//! configuration changes on SIGHUP without dropping live sessions.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
};

use crate::{
    audit::AuditLog,
    config::{Config, ConfigError},
    intercept::{
        self, Intercept, guard,
        targets::{Resolved, TargetSet},
    },
    metrics::Metrics,
    policy::PolicyState,
    proxy::{self, Node, postgres::PgContext},
    service,
    tls::NodeCa,
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("state directory {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Intercept(#[from] intercept::InterceptError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("control socket {path}: {source}")]
    Control {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit trail: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Identity(#[from] crate::identity::ResolverError),
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::LoadError),
    #[error("DNS forwarder on port {port}: {source}")]
    Dns { port: u16, source: std::io::Error },
    #[error("connection workers: {0}")]
    Workers(std::io::Error),
}

/// How often learned addresses are expired and the guard and the learned file follow them.
const LEARNED_TICK: Duration = Duration::from_secs(1);

fn learned_path(cfg: &Config) -> PathBuf {
    crate::dns::learned_file(cfg)
}

/// Runs hoopd until SIGTERM/SIGINT. The pinned redirect and the guard stay after exit.
pub async fn run(
    mut cfg: Config,
    config_path: Option<PathBuf>,
    origin: String,
) -> Result<(), DaemonError> {
    create_state_dir(&cfg)?;
    let listeners = bind(&mut cfg).await?;
    // bound before the programs attach: they steer DNS only while the forwarder is there
    let dns_sockets = match cfg.dns.capture {
        true => Some(crate::dns::bind(&cfg).map_err(|source| DaemonError::Dns {
            port: cfg.dns.port,
            source,
        })?),
        false => None,
    };
    intercept::report_pending_wildcards(&cfg);
    let mut resolved = crate::dns::client::resolve_hosts(&cfg, &Resolved::new()).await;
    let set = TargetSet::build(&cfg, &resolved);
    let learned = intercept::learned::Learned::load(&learned_path(&cfg)).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read the learned DNS addresses; starting without them");
        Default::default()
    });
    let ca = Arc::new(NodeCa::load_or_create(&cfg.state.dir)?);
    // opening re-verifies the whole trail: on a large one that outlasts systemd's start
    // timeout unless every segment pushes it further
    let audit = AuditLog::open_with_progress(cfg.audit_config(), &mut |v| {
        crate::service::starting(&format!(
            "verifying the audit trail: segment {} of {} ({} records so far)",
            v.segment + 1,
            v.segments,
            v.records
        ));
    })?;
    for r in audit.recoveries() {
        tracing::warn!(recovery = ?r, "audit trail: torn tail truncated and recorded");
    }
    audit.append(
        "daemon.start",
        &serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "config": origin}),
    )?;
    let policy = PolicyState::load(cfg.policy.file.as_deref())?;
    audit.append("policy.load", &policy_record(&policy))?;
    let identity = crate::identity::Resolver::new(&cfg.identity, &cfg.issuers)?;
    let intercept = Intercept::start(&cfg, &set, learned)?;
    let mut guarded = sorted_pairs(&intercept);
    apply_guard(&cfg, intercept.scope(), &set, &guarded)?;
    let metrics = Metrics::new();
    let node = Arc::new(Node {
        policy: RwLock::new(Arc::new(policy)),
        approvals: crate::approval::Approvals::new(Duration::from_secs(cfg.approval.timeout_s)),
        audit: audit.clone(),
        sessions: Default::default(),
        agent_cgroups: Default::default(),
        bus: Arc::new(tokio::sync::broadcast::channel(1024).0),
        intercept,
        pg: Arc::new(PgContext::new(ca, cfg.intercept.mark, metrics.clone())),
        metrics,
        targets: RwLock::new(Arc::new(set)),
        mark: cfg.intercept.mark,
        shutdown: tokio::sync::Notify::new(),
        settings: RwLock::new(cfg.proxy.settings()),
        identity: RwLock::new(Arc::new(identity)),
    });
    let workers = Arc::new(
        proxy::Workers::start(cfg.listen.worker_count(), &node, cfg.listen.busy_poll())
            .map_err(DaemonError::Workers)?,
    );
    for l in listeners {
        tokio::spawn(proxy::serve(l, workers.clone()));
    }
    if let Some(sockets) = dns_sockets {
        crate::dns::spawn(sockets, node.clone(), &cfg);
    }
    let control = crate::control::bind(&cfg.control)?;
    tokio::spawn(crate::control::serve(
        control,
        node.clone(),
        cfg.control.clone(),
    ));
    let metrics_at = serve_metrics(&cfg, &node).await;
    let addrs: Vec<String> = cfg.listen_addrs().iter().map(ToString::to_string).collect();
    tracing::info!(config = %origin, listen = ?addrs, targets = cfg.targets.len(), metrics = ?metrics_at, "hoopd ready");
    service::ready(&status(&cfg));

    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut refresh = tokio::time::interval(Duration::from_secs(cfg.proxy.resolve_interval_s));
    refresh.tick().await;
    let mut learned_tick = tokio::time::interval(LEARNED_TICK);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                service::reloading();
                let reloaded = reload(&cfg, config_path.as_deref());
                let ev = serde_json::json!({"ok": reloaded.is_some(), "targets": reloaded.as_ref().map(|c| c.targets.len())});
                if let Err(e) = audit.append("config.reload", &ev) {
                    tracing::error!(error = %e, "audit trail: cannot record the reload");
                }
                if let Some(new) = reloaded {
                    reload_identity(&node, &cfg, &new);
                    cfg = new;
                    resolved = crate::dns::client::resolve_hosts(&cfg, &resolved).await;
                    retarget(&node, &cfg, &resolved);
                    guarded = sorted_pairs(&node.intercept);
                }
                reload_policy(&node, &cfg);
                service::reloaded(&status(&cfg));
            }
            _ = refresh.tick() => {
                let fresh = crate::dns::client::resolve_hosts(&cfg, &resolved).await;
                if fresh != resolved {
                    resolved = fresh;
                    retarget(&node, &cfg, &resolved);
                    guarded = sorted_pairs(&node.intercept);
                }
            }
            _ = learned_tick.tick() => follow_learned(&node, &cfg, &mut guarded),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    service::stopping();
    // live sessions end first, so their `session.end` records precede `daemon.stop`
    node.shutdown.notify_waiters();
    let drain = tokio::time::Instant::now() + Duration::from_secs(3);
    while !node.sessions.lock().unwrap().is_empty() && tokio::time::Instant::now() < drain {
        node.shutdown.notify_waiters();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = node.intercept.stats();
    tracing::info!(
        redirected = s.redirected,
        dns_redirected = s.dns_redirected,
        dns_direct = s.dns_direct,
        dns_dropped = s.dns_dropped,
        dns_no_slot = s.dns_no_slot,
        "hoopd stopping; redirect and guard stay in place (fail closed)"
    );
    audit.append(
        "daemon.stop",
        &serde_json::json!({"redirected": s.redirected}),
    )?;
    drop(node);
    // the last handle: a final signed checkpoint, then the log closes
    audit.close()?;
    Ok(())
}

/// Binds and serves the metrics endpoint. A failure to bind is logged and the node runs on
/// without it: observability must not take protection down.
async fn serve_metrics(cfg: &Config, node: &Arc<Node>) -> Option<SocketAddr> {
    if !cfg.metrics.enabled {
        return None;
    }
    match TcpListener::bind(cfg.metrics.listen).await {
        Ok(l) => {
            let at = l.local_addr().ok();
            tokio::spawn(crate::metrics::serve(l, node.clone()));
            at
        }
        Err(e) => {
            tracing::error!(addr = %cfg.metrics.listen, error = %e, "metrics endpoint unavailable; running without it");
            None
        }
    }
}

/// The one-line state `systemctl status` shows.
fn status(cfg: &Config) -> String {
    format!(
        "protecting {} targets; listening on {}",
        cfg.targets.len(),
        cfg.listen.address
    )
}

fn create_state_dir(cfg: &Config) -> Result<(), DaemonError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = &cfg.state.dir;
    let err = |source| DaemonError::State {
        path: dir.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// Binds the listeners. An IPv6 listener that cannot bind (no IPv6 loopback) is dropped with a
/// warning: IPv6 connects then go to the IPv4 listener through its v4-mapped address.
async fn bind(cfg: &mut Config) -> Result<Vec<TcpListener>, DaemonError> {
    let v4 = cfg.listen.address;
    let mut out = vec![
        TcpListener::bind(v4)
            .await
            .map_err(|source| DaemonError::Listen { addr: v4, source })?,
    ];
    if let Some(v6) = cfg.listen.address6 {
        match TcpListener::bind(v6).await {
            Ok(l) => out.push(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                tracing::warn!(addr = %v6, error = %e, "no IPv6 listener; IPv6 connects use the IPv4 one");
                cfg.listen.address6 = None;
            }
            Err(source) => return Err(DaemonError::Listen { addr: v6, source }),
        }
    }
    Ok(out)
}

/// Expires learned addresses (keeping those with live sessions) and, when the learned set
/// changed, writes it to the state directory and brings the guard in line.
fn follow_learned(node: &Node, cfg: &Config, guarded: &mut Vec<(std::net::IpAddr, u32)>) {
    let set = node.targets();
    let live = |ip: std::net::IpAddr| {
        let ip = intercept::targets::canonical(ip);
        node.sessions
            .lock()
            .unwrap()
            .values()
            .any(|s| intercept::targets::canonical(s.orig_dst.ip()) == ip)
    };
    if let Err(e) = node.intercept.expire_learned(&set, live, cfg.dns.grace_s) {
        tracing::error!(error = %e, "expiring learned addresses failed");
    }
    let now = sorted_pairs(&node.intercept);
    if now == *guarded {
        return;
    }
    if let Err(e) = node.intercept.save_learned(&learned_path(cfg)) {
        tracing::error!(error = %e, "cannot save the learned DNS addresses");
    }
    match apply_guard(cfg, node.intercept.scope(), &set, &now) {
        Ok(()) => *guarded = now,
        Err(e) => tracing::error!(error = %e, "updating the nftables guard failed; retrying"),
    }
}

fn sorted_pairs(i: &Intercept) -> Vec<(std::net::IpAddr, u32)> {
    let mut v = i.learned_pairs();
    v.sort();
    v
}

fn apply_guard(
    cfg: &Config,
    scope: &intercept::CgroupScope,
    set: &TargetSet,
    learned: &[(std::net::IpAddr, u32)],
) -> Result<(), DaemonError> {
    if !cfg.intercept.guard {
        tracing::warn!("nftables guard disabled by configuration (intercept.guard = false)");
        return Ok(());
    }
    let spec = guard::GuardSpec {
        table: &cfg.intercept.nft_table,
        mark: cfg.intercept.mark,
        scope,
    };
    guard::apply(&spec, set, learned).map_err(|e| DaemonError::Intercept(e.into()))
}

/// Loads the configuration again; `None` (old one kept) when it is invalid. Listener and
/// interception settings need a restart; target and proxy settings apply now.
fn reload(old: &Config, path: Option<&std::path::Path>) -> Option<Config> {
    let mut new = match Config::load(path) {
        Ok((c, _)) => c,
        Err(e) => {
            let e: ConfigError = e;
            tracing::error!(error = %e, "reload failed; keeping the running configuration");
            return None;
        }
    };
    if new.listen != old.listen
        || new.intercept != old.intercept
        || new.state != old.state
        || new.control != old.control
        || new.audit != old.audit
        || new.dns != old.dns
        || new.metrics != old.metrics
    {
        tracing::warn!(
            "listen, intercept, state, control, audit, dns and metrics changes take effect at the next restart"
        );
        new.dns = old.dns.clone();
        new.listen = old.listen.clone();
        new.intercept = old.intercept.clone();
        new.state = old.state.clone();
        new.control = old.control.clone();
        new.audit = old.audit.clone();
        new.metrics = old.metrics.clone();
    }
    tracing::info!(targets = new.targets.len(), "configuration reloaded");
    intercept::report_pending_wildcards(&new);
    Some(new)
}

/// Loads the policy file again; a bad one keeps the policy in force and says why (log and audit
/// trail). Live sessions decide their next request by the new policy.
fn reload_policy(node: &Node, cfg: &Config) {
    match PolicyState::load(cfg.policy.file.as_deref()) {
        Ok(p) => {
            let mut rec = policy_record(&p);
            rec["ok"] = true.into();
            if let Err(e) = node.audit.append("policy.reload", &rec) {
                // no record, no change: the audit trail must say which policy decided
                tracing::error!(error = %e, "audit trail: cannot record the policy reload; policy kept");
                return;
            }
            tracing::info!(policy = %p.policy.origin(), rules = p.policy.rule_names().count(), "policy reloaded");
            *node.policy.write().unwrap() = Arc::new(p);
        }
        Err(e) => {
            tracing::error!(error = %e, "policy reload failed; keeping the policy in force");
            let _ = node.audit.append(
                "policy.reload",
                &serde_json::json!({"ok": false, "error": e.to_string()}),
            );
        }
    }
}

/// What the audit trail records of a policy: where from, its rules, its warnings.
fn policy_record(p: &PolicyState) -> serde_json::Value {
    serde_json::json!({
        "origin": p.policy.origin(),
        "rules": p.policy.rule_names().collect::<Vec<_>>(),
        "mask_profiles": p.policy.mask_profiles().keys().collect::<Vec<_>>(),
        "warnings": p.policy.warnings(),
    })
}

/// Rebuilds the identity resolver when `[identity]` or `[[issuer]]` changed (its caches start
/// empty); a CA file that cannot be read keeps the running resolver.
fn reload_identity(node: &Node, old: &Config, new: &Config) {
    if new.identity == old.identity && new.issuers == old.issuers {
        return;
    }
    match crate::identity::Resolver::new(&new.identity, &new.issuers) {
        Ok(r) => {
            *node.identity.write().unwrap() = Arc::new(r);
            tracing::info!(
                issuers = new.issuers.len(),
                "identity configuration applied"
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "identity configuration not applied; keeping the running one")
        }
    }
}

/// Moves the data path to the targets of `cfg`: kernel maps (add before remove), then the guard
/// (one atomic nft transaction), then the user-space view used to dispatch new connections.
fn retarget(node: &Node, cfg: &Config, resolved: &Resolved) {
    let mut set = TargetSet::build(cfg, resolved);
    set.inherit_ids(&node.targets.read().unwrap());
    match node.intercept.sync_targets(&set) {
        Ok(conflicts) => conflicts
            .iter()
            .for_each(|c| tracing::warn!(conflict = %c, "overlapping targets")),
        Err(e) => tracing::error!(error = %e, "updating the target maps failed"),
    }
    let learned = sorted_pairs(&node.intercept);
    if let Err(e) = apply_guard(cfg, node.intercept.scope(), &set, &learned) {
        tracing::error!(error = %e, "updating the nftables guard failed; the previous guard stays");
    }
    *node.settings.write().unwrap() = cfg.proxy.settings();
    node.approvals
        .set_timeout(Duration::from_secs(cfg.approval.timeout_s));
    node.pg.reset_upstream_tls();
    *node.targets.write().unwrap() = Arc::new(set);
    tracing::info!(
        entries = node.targets.read().unwrap().entries().len(),
        "targets applied"
    );
}

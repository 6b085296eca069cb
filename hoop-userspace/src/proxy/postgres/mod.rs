//! Protocol `postgres`: a transparent PostgreSQL proxy. The client keeps its connection string;
//! hoopd terminates its TLS with a node-CA leaf for the name it asked for, opens verified TLS to
//! the real server, relays the client's own credentials, and puts every statement through the
//! decision point before it reaches the server.
//!
//! Phases, one file each: `startup` (SSLRequest/GSSENCRequest/CancelRequest/StartupMessage on
//! the client side; SSLRequest + verified TLS on the upstream side), `auth` (credential relay),
//! `relay` (the query phase: classification, decision, statement events), `cancel` (cancel keys).

mod auth;
mod cancel;
mod io;
mod relay;
mod settings;
mod startup;

use std::{collections::HashMap, sync::Arc, time::Duration};

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

pub use cancel::CancelRegistry;

use crate::{
    classify::ClassifyCache,
    config::Target,
    session::Session,
    tls::{NodeCa, TlsError},
    wire::postgres::{DecodeError, EncodeError},
};

/// What every PostgreSQL session shares.
pub struct PgContext {
    pub ca: Arc<NodeCa>,
    pub cancels: CancelRegistry,
    pub classify: ClassifyCache,
    pub mark: u32,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Verified upstream client configs, per target name (built on first use).
    upstream_tls: std::sync::Mutex<HashMap<String, Arc<rustls::ClientConfig>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("client: {0}")]
    ClientIo(std::io::Error),
    #[error("client protocol: {0}")]
    ClientProtocol(DecodeError),
    #[error("client: {0}")]
    ClientRefused(String),
    #[error("client TLS handshake: {0}")]
    ClientTls(std::io::Error),
    #[error("upstream {addr}: {source}")]
    UpstreamConnect {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("upstream: {0}")]
    UpstreamIo(std::io::Error),
    #[error("upstream protocol: {0}")]
    UpstreamProtocol(DecodeError),
    #[error("masking the upstream's response: {0}")]
    UpstreamMasking(String),
    #[error("upstream refused TLS and the target requires it (upstream_tls = \"require\")")]
    UpstreamTlsRefused,
    #[error("upstream TLS to {name}: {source}")]
    UpstreamTls {
        name: String,
        source: std::io::Error,
    },
    #[error("upstream authentication: {0}")]
    UpstreamAuth(String),
    #[error("TLS setup: {0}")]
    Tls(#[from] TlsError),
    #[error("audit trail: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("encoding: {0}")]
    Encode(#[from] EncodeError),
    #[error("the session was not ready within {}s of the connection (TLS, startup and authentication; [proxy] startup_timeout_ms)", .0.as_secs_f64())]
    StartupTimeout(Duration),
}

impl PgContext {
    pub fn new(ca: Arc<NodeCa>, mark: u32, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self {
            metrics,
            ca,
            cancels: CancelRegistry::default(),
            classify: ClassifyCache::new(64 << 20, 64 << 10),
            mark,
            upstream_tls: Default::default(),
        }
    }

    fn upstream_tls(&self, target: &Target) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let mut m = self.upstream_tls.lock().unwrap();
        if let Some(c) = m.get(&target.name) {
            return Ok(c.clone());
        }
        let c = crate::tls::upstream_config(target.upstream_ca.as_deref())?;
        m.insert(target.name.clone(), c.clone());
        Ok(c)
    }

    /// Forgets cached upstream TLS configs (after a reload changed `upstream_ca`).
    pub fn reset_upstream_tls(&self) {
        self.upstream_tls.lock().unwrap().clear();
    }
}

/// The node's services a session uses besides the PostgreSQL context.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    pub audit: &'a crate::audit::AuditLog,
    pub approvals: &'a crate::approval::Approvals,
    pub policy: &'a std::sync::RwLock<Arc<crate::policy::PolicyState>>,
}

/// Where the upstream is and which name its certificate must carry.
#[derive(Clone)]
pub struct Upstream {
    pub addr: std::net::SocketAddr,
    pub server_name: ServerName<'static>,
    pub tls: Arc<rustls::ClientConfig>,
    pub require_tls: bool,
    pub mark: u32,
    pub connect_timeout: Duration,
}

/// Runs one PostgreSQL session (or forwards one cancel request) to completion. Everything
/// before the query phase (TLS, the startup packet, authentication with the server) must be
/// done within `settings.startup`, as PostgreSQL bounds it with `authentication_timeout`: a
/// client that connects and stalls does not hold a session (and its socket) for ever.
pub async fn run(
    ctx: &Arc<PgContext>,
    services: Services<'_>,
    session: &Arc<Session>,
    client: TcpStream,
    host_hint: Option<String>,
    settings: crate::proxy::Settings,
) -> Result<(), PgError> {
    let started = tokio::time::timeout(
        settings.startup,
        start(ctx, services, session, client, host_hint, settings.connect),
    )
    .await
    .map_err(|_| PgError::StartupTimeout(settings.startup))??;
    match started {
        Some((authed, params)) => {
            relay::run(ctx, services, session, authed, &params, settings).await
        }
        None => Ok(()),
    }
}

/// The session up to its query phase: the authenticated pair and the client's startup
/// parameters, or `None` when the connection carried a cancel request (forwarded).
async fn start(
    ctx: &Arc<PgContext>,
    services: Services<'_>,
    session: &Arc<Session>,
    client: TcpStream,
    host_hint: Option<String>,
    connect_timeout: Duration,
) -> Result<Option<(auth::Authed, Vec<(String, String)>)>, PgError> {
    let target = &session.target.config;
    let default_host = host_hint
        .clone()
        .unwrap_or_else(|| session.orig_dst.ip().to_string());
    let opening = startup::accept(client, &ctx.ca, &default_host).await?;
    // The name the upstream's certificate must carry: what the client asked for (SNI), else the
    // configured name the address came from, else the address itself.
    let name = opening
        .sni()
        .map(str::to_string)
        .or(host_hint)
        .unwrap_or_else(|| session.orig_dst.ip().to_string());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|_| PgError::ClientRefused(format!("bad server name {name:?}")))?;
    let upstream = Upstream {
        addr: session.orig_dst,
        server_name,
        tls: ctx.upstream_tls(target)?,
        require_tls: target.upstream_tls == crate::config::UpstreamTls::Require,
        mark: ctx.mark,
        connect_timeout,
    };
    match opening {
        startup::Opening::Cancel { pid, secret, .. } => {
            cancel::forward(ctx, pid, &secret).await?;
            Ok(None)
        }
        startup::Opening::Startup {
            mut client,
            version,
            params,
            buffered,
        } => {
            // a role asked for at startup is decided as the SET it stands for
            let pol = services.policy.read().unwrap().clone();
            if let Some(message) = settings::refusal(&ctx.classify, &pol, session, &params) {
                startup::refuse_client(&mut client, "42501", &message).await;
                return Err(PgError::ClientRefused(message));
            }
            let server = startup::connect_upstream(&upstream).await?;
            let start = auth::Start {
                version,
                params: &params,
                buffered,
            };
            let authed = auth::relay(ctx, client, server, start, &upstream).await?;
            Ok(Some((authed, params)))
        }
    }
}

//! The listener side of the data path: accept a redirected connection, recover where it was
//! going and who made it, and dispatch on the target's protocol.

pub mod busy_poll;
pub mod postgres;
pub mod stream;
pub mod tcp;
pub mod upstream;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hoop_common::OrigDst;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tracing::Instrument;

use crate::{
    config::Protocol,
    identity::ProcessFacts,
    intercept::{Intercept, targets::TargetSet},
    session::Session,
};

/// What every connection handler shares; the target set is swapped on reload.
pub struct Node {
    pub audit: crate::audit::AuditLog,
    /// Requests held for a human approver.
    pub approvals: crate::approval::Approvals,
    /// The policy in force (decisions and masking profiles), swapped on reload.
    pub policy: RwLock<Arc<crate::policy::PolicyState>>,
    /// Live sessions, for the control API.
    pub sessions: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, Arc<Session>>>,
    /// cgroups (as /proc paths) that opened intercepted sessions: their processes are agents and
    /// never operators on the control socket.
    pub agent_cgroups: std::sync::Mutex<std::collections::HashSet<String>>,
    pub bus: crate::session::Bus,
    pub intercept: Intercept,
    pub pg: Arc<postgres::PgContext>,
    pub targets: RwLock<Arc<TargetSet>>,
    pub mark: u32,
    /// Notified when hoopd stops: live sessions end and record their end first.
    pub shutdown: tokio::sync::Notify,
    /// `[proxy]`'s settings, swapped on reload (a session keeps the ones it started with).
    pub settings: RwLock<Settings>,
    /// Workload identity of each connection (bounded by `[identity] timeout_ms`).
    /// Swapped on reload when `[identity]` or `[[issuer]]` change.
    pub identity: RwLock<Arc<crate::identity::Resolver>>,
    /// What the data path counts for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// To connect to an upstream.
    pub connect: Duration,
    /// From a client's connection to its session being ready for requests.
    pub startup: Duration,
    /// The largest message a client may send (what one session may make hoopd buffer).
    pub max_client_message: usize,
}

impl Node {
    pub fn targets(&self) -> Arc<TargetSet> {
        self.targets.read().unwrap().clone()
    }
}

/// The connection workers: one thread per CPU (`[listen] workers`), each running a
/// single-threaded runtime. A session lives on one worker whole — both directions, TLS, the
/// decision, masking and its audit writes — so a statement's round trip never wakes another
/// thread and a session's state stays on one core. A new connection goes to the worker with
/// the fewest live sessions. With `busy_poll` (`[listen] busy_poll_us`) a worker that has just
/// read keeps polling into idle CPU before it sleeps (see `busy_poll`).
pub struct Workers {
    workers: Vec<Worker>,
    next: AtomicUsize,
}

struct Worker {
    tx: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    live: Arc<AtomicUsize>,
}

impl Workers {
    /// Starts `n` (≥ 1) worker threads serving `node`'s connections, each polling up to
    /// `busy_poll` after a read (zero: never).
    pub fn start(n: usize, node: &Arc<Node>, busy_poll: Duration) -> std::io::Result<Self> {
        let idle = if busy_poll.is_zero() {
            None
        } else {
            match busy_poll::IdleCpu::open() {
                Ok(idle) => Some(idle),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "busy polling off: /proc/loadavg is needed to poll only into idle CPU"
                    );
                    None
                }
            }
        };
        let mut workers = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let idle = idle.clone();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("hoop-conn-{i}"))
                .build()?;
            let (tx, mut rx) = mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr)>();
            let live = Arc::new(AtomicUsize::new(0));
            let (node, count) = (node.clone(), live.clone());
            std::thread::Builder::new()
                .name(format!("hoop-conn-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        if let Some(idle) = idle {
                            tokio::spawn(busy_poll::run(busy_poll, idle));
                        }
                        while let Some((stream, peer)) = rx.recv().await {
                            let stream = match TcpStream::from_std(stream) {
                                Ok(s) => s,
                                Err(e) => {
                                    count.fetch_sub(1, Ordering::Relaxed);
                                    tracing::error!(error = %e, "cannot take over a connection");
                                    continue;
                                }
                            };
                            let (node, live) = (node.clone(), Live(count.clone()));
                            tokio::spawn(async move {
                                let _live = live;
                                handle(node, stream, peer).await;
                            });
                        }
                    })
                })?;
            workers.push(Worker { tx, live });
        }
        Ok(Self {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// Hands a connection to the least loaded worker (ties: round robin).
    fn dispatch(&self, stream: TcpStream, peer: SocketAddr) {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.workers.len();
        let w = (0..n)
            .map(|k| &self.workers[(start + k) % n])
            .min_by_key(|w| w.live.load(Ordering::Relaxed))
            .expect("at least one worker");
        // deregistered from this runtime's reactor; the worker registers it with its own
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, client.addr = %peer, "cannot hand a connection over");
                return;
            }
        };
        w.live.fetch_add(1, Ordering::Relaxed);
        if w.tx.send((stream, peer)).is_err() {
            w.live.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(client.addr = %peer, "connection worker gone; connection refused");
        }
    }
}

/// A worker's live-session count, given back when the session's task ends (also by a panic).
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts until the listener fails; each connection runs in its own task on a worker.
pub async fn serve(listener: TcpListener, workers: Arc<Workers>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => workers.dispatch(stream, peer),
            Err(e) => {
                // EMFILE and friends: back off instead of spinning
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub fn orig_addr(o: &OrigDst) -> SocketAddr {
    let ip = crate::intercept::targets::canonical(IpAddr::from(o.addr));
    SocketAddr::new(ip, u16::from_be(o.port_be))
}

async fn handle(node: Arc<Node>, stream: TcpStream, peer: SocketAddr) {
    // Only a connection the kernel redirected has a record; anything else (someone connecting
    // to the listener directly) is closed, never forwarded.
    let Some(orig) = node.intercept.take_orig(peer) else {
        tracing::warn!(client.addr = %peer, "connection without a redirect record refused");
        return;
    };
    let dst = orig_addr(&orig);
    let targets = node.targets();
    let Some(target) = targets
        .by_id(orig.target_id)
        .or_else(|| targets.lookup(dst.ip(), dst.port()))
        .cloned()
    else {
        tracing::warn!(client.addr = %peer, orig.dst = %dst, "redirected connection matches no target; refused");
        return;
    };
    // the name the agent asked for: learned from its DNS answer, else the configured name the
    // address was resolved from
    let host = node
        .intercept
        .learned_host(dst.ip())
        .or_else(|| targets.host_for(dst.ip()).map(str::to_string));
    let process = ProcessFacts::read(&orig);
    if let Some(cg) = &process.cgroup {
        node.agent_cgroups.lock().unwrap().insert(cg.clone());
    }
    let resolver = node.identity.read().unwrap().clone();
    let identity = resolver.resolve(&process).await;
    let session = Arc::new(Session::new(
        target,
        peer,
        dst,
        process,
        identity,
        node.bus.clone(),
    ));
    session.details.lock().unwrap().host = host;
    let span = tracing::info_span!(
        "session",
        session.id = %session.id,
        client.addr = %peer,
        orig.dst = %dst,
        proto = session.target.config.protocol.as_str()
    );
    async move {
        // no record, no session: an audit trail that cannot write refuses the connection
        if let Err(e) = node.audit.append("session.start", &session.start_record()) {
            tracing::error!(error = %e, "audit trail unavailable; connection refused");
            return;
        }
        node.sessions.lock().unwrap().insert(session.id, session.clone());
        // logged once the session is listed (operators and tests act on this line)
        tracing::info!(target_name = %session.target.config.name, pid = session.process.pid, "session started");
        let _live = node.metrics.session(session.target.config.protocol);
        session.publish(|| serde_json::json!({"event": "session_start", "session": session.snapshot()}));
        let result = tokio::select! {
            r = dispatch(&node, &session, stream) => r,
            _ = session.kill.notified() => Err(SessionError::Killed),
            _ = node.shutdown.notified() => Err(SessionError::Stopping),
        };
        session.publish(|| serde_json::json!({"event": "session_end", "session": session.snapshot()}));
        let (outcome, error) = match &result {
            Ok(()) => ("closed", None),
            Err(e) => ("error", Some(e.to_string())),
        };
        session.emit_end(outcome, error.as_deref());
        if let Err(e) = node.audit.append("session.end", &session.end_record(outcome, error.as_deref())) {
            tracing::error!(error = %e, "audit trail: cannot record the session end");
        }
        // listed until its end is recorded: shutdown waits for the list to empty
        node.sessions.lock().unwrap().remove(&session.id);
    }
    .instrument(span)
    .await
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("upstream {addr}: {source}")]
    UpstreamConnect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("relay: {0}")]
    Relay(std::io::Error),
    #[error("protocol {0} is not supported by this hoopd yet; connection refused")]
    Unsupported(&'static str),
    #[error("killed by an operator")]
    Killed,
    #[error("hoopd is stopping")]
    Stopping,
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::PgError),
}

async fn dispatch(
    node: &Node,
    session: &Arc<Session>,
    client: TcpStream,
) -> Result<(), SessionError> {
    let _ = client.set_nodelay(true);
    let settings = *node.settings.read().unwrap();
    match session.target.config.protocol {
        Protocol::Tcp => {}
        Protocol::Postgres => {
            let host = session.details.lock().unwrap().host.clone();
            let services = postgres::Services {
                audit: &node.audit,
                approvals: &node.approvals,
                policy: &node.policy,
            };
            return Ok(postgres::run(&node.pg, services, session, client, host, settings).await?);
        }
        // Fail closed: a protocol we cannot inspect is not passed through blindly.
        other => return Err(SessionError::Unsupported(other.as_str())),
    }
    let upstream = upstream::connect(session.orig_dst, node.mark, settings.connect)
        .await
        .map_err(|source| SessionError::UpstreamConnect {
            addr: session.orig_dst,
            source,
        })?;
    tcp::run(session, client, upstream)
        .await
        .map_err(SessionError::Relay)
}

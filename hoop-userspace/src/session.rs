//! A proxied connection as the node sees it: who (process facts), where (target, original
//! destination), and what passed (byte counts). Protocol sessions add statements to it.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime},
};

use crate::{
    identity::{Identity, ProcessFacts},
    intercept::targets::TargetInfo,
};

/// Command-line arguments that may carry credentials (URIs with a user part, `password=`,
/// tokens) are replaced before they reach the audit trail.
/// The rest goes through the default masking profile (a `-c` argument can quote personal data).
fn redact_cmdline(args: &[String]) -> Vec<String> {
    static MASKER: std::sync::LazyLock<crate::mask::Masker> =
        std::sync::LazyLock::new(crate::mask::Masker::default_profile);
    const SECRET_WORDS: [&str; 5] = ["password", "passwd", "secret", "token", "key="];
    args.iter()
        .map(|a| {
            let lower = a.to_ascii_lowercase();
            let uri_creds = a.contains("://") && a.contains('@');
            if uri_creds || SECRET_WORDS.iter().any(|w| lower.contains(w)) {
                "[redacted]".to_string()
            } else {
                MASKER.mask_text(a).into_owned()
            }
        })
        .collect()
}

pub struct Session {
    pub id: uuid::Uuid,
    pub target: Arc<TargetInfo>,
    pub client: SocketAddr,
    /// The destination the client asked for.
    pub orig_dst: SocketAddr,
    pub process: ProcessFacts,
    /// The workload identity, resolved before the session starts; attached to every event.
    pub identity: Identity,
    pub started: Instant,
    pub started_at: SystemTime,
    /// Client → upstream bytes.
    pub bytes_up: AtomicU64,
    /// Upstream → client bytes.
    pub bytes_down: AtomicU64,
    /// Requests (statements) seen.
    pub statements: AtomicU64,
    /// Set by the protocol once known (database and user for SQL), plus recent statements.
    pub details: std::sync::Mutex<Details>,
    /// `hoopctl kill`: the session ends at once.
    pub kill: tokio::sync::Notify,
    /// Live events for `hoopctl sessions --watch`/control `watch` subscribers.
    pub bus: Bus,
}

/// Where live events go (a broadcast channel; sending costs nothing without subscribers).
pub type Bus = Arc<tokio::sync::broadcast::Sender<Arc<str>>>;

/// How many recent statements `hoopctl session show` keeps per session.
const RECENT: usize = 100;

#[derive(Default)]
pub struct Details {
    /// The host name the client asked for (learned from its DNS answer or configured), if known.
    pub host: Option<String>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub recent: std::collections::VecDeque<RecentStatement>,
}

impl Session {
    pub fn new(
        target: Arc<TargetInfo>,
        client: SocketAddr,
        orig_dst: SocketAddr,
        process: ProcessFacts,
        identity: Identity,
        bus: Bus,
    ) -> Self {
        Self {
            statements: AtomicU64::new(0),
            details: Default::default(),
            kill: tokio::sync::Notify::new(),
            bus,
            id: uuid::Uuid::now_v7(),
            target,
            client,
            orig_dst,
            process,
            identity,
            started: Instant::now(),
            started_at: SystemTime::now(),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
        }
    }

    pub fn add_up(&self, n: u64) {
        self.bytes_up.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_down(&self, n: u64) {
        self.bytes_down.fetch_add(n, Ordering::Relaxed);
    }

    /// Publishes a live event (only serialized when someone listens).
    pub fn publish(&self, event: impl FnOnce() -> serde_json::Value) {
        if self.bus.receiver_count() > 0 {
            let _ = self.bus.send(event().to_string().into());
        }
    }

    /// Records a finished statement for `hoopctl session show` and live watchers.
    pub fn record_statement(&self, summary: RecentStatement) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.publish(|| serde_json::json!({"event": "statement", "session": self.id.to_string(), "statement": &summary}));
        let mut d = self.details.lock().unwrap();
        if d.recent.len() == RECENT {
            d.recent.pop_front();
        }
        d.recent.push_back(summary);
    }

    /// The operator's view of the session (`hoopctl sessions --json`).
    pub fn snapshot(&self) -> serde_json::Value {
        let p = &self.process;
        let d = self.details.lock().unwrap();
        serde_json::json!({
            "id": self.id.to_string(),
            "state": "active",
            "target": self.target.config.name,
            "protocol": self.target.config.protocol.as_str(),
            "identity": self.identity,
            "process": {"pid": p.pid, "exe": p.exe, "cgroup": p.cgroup, "uid": p.uid},
            "client": self.client.to_string(),
            "orig_dst": self.orig_dst.to_string(),
            "host": d.host,
            "database": d.database,
            "user": d.user,
            "statements": self.statements.load(Ordering::Relaxed),
            "bytes_in": self.bytes_up.load(Ordering::Relaxed),
            "bytes_out": self.bytes_down.load(Ordering::Relaxed),
            "age_s": self.started.elapsed().as_secs(),
        })
    }

    /// The audit record of the session's start: who and where (identity and process facts).
    pub fn start_record(&self) -> serde_json::Value {
        let p = &self.process;
        let host = self.details.lock().unwrap().host.clone();
        serde_json::json!({
            "host": host,
            "session": self.id.to_string(),
            "target": self.target.config.name,
            "protocol": self.target.config.protocol.as_str(),
            "client": self.client.to_string(),
            "orig_dst": self.orig_dst.to_string(),
            "identity": self.identity,
            "process": {
                "pid": p.pid, "tid": p.tid, "uid": p.uid, "gid": p.gid, "cgroup_id": p.cgroup_id,
                "exe": p.exe, "cgroup": p.cgroup, "start_ticks": p.start_ticks,
                "cmdline": p.cmdline.as_deref().map(redact_cmdline),
                "unverified": p.unverified,
            },
        })
    }

    /// The audit record of the session's end.
    pub fn end_record(&self, outcome: &str, error: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "session": self.id.to_string(),
            "outcome": outcome,
            "error": error,
            "bytes_up": self.bytes_up.load(Ordering::Relaxed),
            "bytes_down": self.bytes_down.load(Ordering::Relaxed),
            "duration_ms": self.started.elapsed().as_millis() as u64,
        })
    }

    /// The structured session record, emitted when the session ends. The command line is left
    /// out on purpose: it can carry secrets (connection URIs with passwords).
    pub fn emit_end(&self, outcome: &str, error: Option<&str>) {
        let p = &self.process;
        let host = self.details.lock().unwrap().host.clone();
        tracing::info!(
            event = "session_end",
            session.id = %self.id,
            target_name = %self.target.config.name,
            proto = self.target.config.protocol.as_str(),
            client.addr = %self.client,
            orig.dst = %self.orig_dst,
            host = host.as_deref().unwrap_or(""),
            pid = p.pid,
            uid = p.uid,
            gid = p.gid,
            cgroup_id = p.cgroup_id,
            exe = p.exe.as_deref().unwrap_or(""),
            cgroup = p.cgroup.as_deref().unwrap_or(""),
            process_unverified = p.unverified.unwrap_or(""),
            bytes_up = self.bytes_up.load(Ordering::Relaxed),
            bytes_down = self.bytes_down.load(Ordering::Relaxed),
            duration_ms = self.started.elapsed().as_millis() as u64,
            outcome,
            error = error.unwrap_or(""),
            "session ended"
        );
    }
}

/// A finished statement as operators see it (`hoopctl session show`, `hoopctl watch`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentStatement {
    pub kind: &'static str,
    pub decision: &'static str,
    pub rule: Arc<str>,
    pub outcome: &'static str,
    pub detail: String,
    pub rows: u64,
    /// Sequence number of the request's audit record.
    pub request: Option<u64>,
}

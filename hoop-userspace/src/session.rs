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

use crate::{identity::ProcessFacts, intercept::targets::TargetInfo};

pub struct Session {
    pub id: uuid::Uuid,
    pub target: Arc<TargetInfo>,
    pub client: SocketAddr,
    /// The destination the client asked for.
    pub orig_dst: SocketAddr,
    pub process: ProcessFacts,
    pub started: Instant,
    pub started_at: SystemTime,
    /// Client → upstream bytes.
    pub bytes_up: AtomicU64,
    /// Upstream → client bytes.
    pub bytes_down: AtomicU64,
}

impl Session {
    pub fn new(target: Arc<TargetInfo>, client: SocketAddr, orig_dst: SocketAddr, process: ProcessFacts) -> Self {
        Self {
            id: uuid::Uuid::now_v7(),
            target,
            client,
            orig_dst,
            process,
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

    /// The structured session record, emitted when the session ends. The command line is left
    /// out on purpose: it can carry secrets (connection URIs with passwords).
    pub fn emit_end(&self, outcome: &str, error: Option<&str>) {
        let p = &self.process;
        tracing::info!(
            event = "session_end",
            session.id = %self.id,
            target_name = %self.target.config.name,
            proto = self.target.config.protocol.as_str(),
            client.addr = %self.client,
            orig.dst = %self.orig_dst,
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

//! Per-request human approval, protocol-neutral: a protocol session holding a request it may not
//! forward on its own asks here for a [`Ticket`]; operators list pending requests and approve or
//! deny them over the control socket; the session waits for the [`Verdict`] (or the timeout) and
//! then forwards the request exactly once or refuses it.
//!
//! Exactly once: a request is decided by whoever removes its entry from the registry first — an
//! operator's verdict or the ticket's own expiry — under one lock, so an approval racing the
//! timeout is either delivered or reported to the operator as too late, never both. A ticket
//! dropped while pending (the client went away, the session was killed) removes its entry, and a
//! later verdict for it is refused.

use std::{
    collections::HashMap,
    sync::{
        Mutex, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tokio::sync::oneshot;

/// Who decided, from the control socket's peer credentials.
pub type Approver = crate::control::Caller;

/// How a held request ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verdict {
    Approved {
        by: Approver,
        reason: String,
    },
    Denied {
        by: Approver,
        reason: String,
    },
    /// Nobody decided within the timeout: treated as a denial.
    Expired {
        after_s: u64,
    },
}

impl Verdict {
    pub fn approved(&self) -> bool {
        matches!(self, Self::Approved { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Approved { .. } => "approved",
            Self::Denied { .. } => "denied",
            Self::Expired { .. } => "expired",
        }
    }
}

/// What operators see of a pending request (`hoopctl approvals --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub id: String,
    pub session: String,
    pub identity: serde_json::Value,
    pub process: serde_json::Value,
    pub target: String,
    pub protocol: String,
    pub database: Option<String>,
    pub user: Option<String>,
    /// The request as the operator must judge it (statement text, masked).
    pub statement: String,
    /// Classification, e.g. `[{"kind": "delete", "writes": ["public.t"], "has_where": false}]`.
    pub classification: serde_json::Value,
    pub rule: String,
    pub requested_at: String,
    pub expires_at: String,
}

struct Entry {
    view: Pending,
    tx: oneshot::Sender<Verdict>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("no pending approval {0} (decided, expired, or its client went away)")]
    NotPending(String),
    #[error("approval id {0} is ambiguous; give more of it")]
    Ambiguous(String),
    #[error("a reason is required")]
    NoReason,
}

/// Every pending approval of the node.
pub struct Approvals {
    pending: Mutex<HashMap<uuid::Uuid, Entry>>,
    timeout: RwLock<Duration>,
    count: AtomicUsize,
}

impl Approvals {
    pub fn new(timeout: Duration) -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            timeout: RwLock::new(timeout),
            count: AtomicUsize::new(0),
        }
    }

    pub fn set_timeout(&self, t: Duration) {
        *self.timeout.write().unwrap() = t;
    }

    pub fn timeout(&self) -> Duration {
        *self.timeout.read().unwrap()
    }

    /// Pending approvals right now (for metrics).
    pub fn pending_count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Registers a held request; `fill` completes the operator's view given its id and times.
    pub fn request(&self, fill: impl FnOnce(&str, &str, &str) -> Pending) -> Ticket<'_> {
        let id = uuid::Uuid::now_v7();
        let timeout = self.timeout();
        let now = SystemTime::now();
        let expires = now + timeout;
        let view = fill(&id.to_string(), &rfc3339(now), &rfc3339(expires));
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, Entry { view, tx });
        self.count.fetch_add(1, Ordering::Relaxed);
        Ticket {
            id,
            reg: self,
            rx,
            deadline: tokio::time::Instant::now() + timeout,
            timeout,
            done: false,
        }
    }

    /// The pending requests, oldest first.
    pub fn list(&self) -> Vec<Pending> {
        let m = self.pending.lock().unwrap();
        let mut v: Vec<_> = m.iter().map(|(id, e)| (*id, e.view.clone())).collect();
        v.sort_by_key(|(id, _)| *id);
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// An operator's verdict on `id` (full id or a unique prefix). Returns the full id.
    pub fn resolve(
        &self,
        id: &str,
        approve: bool,
        by: Approver,
        reason: &str,
    ) -> Result<String, ResolveError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ResolveError::NoReason);
        }
        let mut m = self.pending.lock().unwrap();
        let mut hits = m.keys().filter(|k| k.to_string().starts_with(id));
        let key = match (hits.next(), hits.next()) {
            (Some(k), None) if !id.is_empty() => *k,
            (Some(_), Some(_)) => return Err(ResolveError::Ambiguous(id.into())),
            _ => return Err(ResolveError::NotPending(id.into())),
        };
        let entry = m.remove(&key).expect("key found above");
        self.count.fetch_sub(1, Ordering::Relaxed);
        let reason = reason.to_string();
        let verdict = if approve {
            Verdict::Approved { by, reason }
        } else {
            Verdict::Denied { by, reason }
        };
        // the receiver is dropped only after its entry is removed (Ticket::drop), under this lock
        entry
            .tx
            .send(verdict)
            .map_err(|_| ResolveError::NotPending(id.into()))?;
        Ok(key.to_string())
    }

    /// Removes `id` if still pending; true if this call removed it.
    fn withdraw(&self, id: &uuid::Uuid) -> bool {
        let removed = self.pending.lock().unwrap().remove(id).is_some();
        if removed {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }
}

/// One held request, waiting for its verdict. Dropping it withdraws the request.
pub struct Ticket<'a> {
    pub id: uuid::Uuid,
    reg: &'a Approvals,
    rx: oneshot::Receiver<Verdict>,
    deadline: tokio::time::Instant,
    pub timeout: Duration,
    done: bool,
}

impl Ticket<'_> {
    /// Waits for the verdict; the timeout gives `Expired`. Cancel-safe (usable in `select!`).
    pub async fn wait(&mut self) -> Verdict {
        if let Ok(Ok(v)) = tokio::time::timeout_at(self.deadline, &mut self.rx).await {
            self.done = true;
            return v;
        }
        self.done = true;
        if self.reg.withdraw(&self.id) {
            return Verdict::Expired {
                after_s: self.timeout.as_secs(),
            };
        }
        // an operator removed it first: their verdict is in the channel (sent under the lock)
        match self.rx.try_recv() {
            Ok(v) => v,
            Err(_) => Verdict::Expired {
                after_s: self.timeout.as_secs(),
            },
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.reg.withdraw(&self.id);
        }
    }
}

/// RFC 3339 UTC with seconds, for operators.
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Approver {
        Approver {
            uid: 0,
            gid: 0,
            pid: Some(1),
            exe: None,
            cgroup: None,
        }
    }

    fn view(id: &str, at: &str, exp: &str) -> Pending {
        Pending {
            id: id.into(),
            session: "s".into(),
            identity: serde_json::json!({"kind": "anonymous"}),
            process: serde_json::json!({}),
            target: "pg".into(),
            protocol: "postgres".into(),
            database: None,
            user: None,
            statement: "DELETE FROM t".into(),
            classification: serde_json::json!([]),
            rule: "r".into(),
            requested_at: at.into(),
            expires_at: exp.into(),
        }
    }

    #[tokio::test]
    async fn approve_delivers_once_and_clears() {
        let reg = Approvals::new(Duration::from_secs(30));
        let mut t = reg.request(view);
        assert_eq!(reg.list().len(), 1);
        assert_eq!(reg.pending_count(), 1);
        let id = t.id.to_string();
        assert_eq!(
            reg.resolve(&id, true, caller(), " "),
            Err(ResolveError::NoReason)
        );
        assert_eq!(reg.resolve(&id[..8], true, caller(), "ok"), Ok(id.clone()));
        assert!(t.wait().await.approved());
        assert!(reg.list().is_empty());
        assert_eq!(reg.pending_count(), 0);
        assert_eq!(
            reg.resolve(&id, false, caller(), "late"),
            Err(ResolveError::NotPending(id.clone()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_expires_and_refuses_late_verdicts() {
        let reg = Approvals::new(Duration::from_secs(5));
        let mut t = reg.request(view);
        let id = t.id.to_string();
        let v = t.wait().await;
        assert_eq!(v.name(), "expired");
        assert!(reg.list().is_empty());
        assert!(reg.resolve(&id, true, caller(), "too late").is_err());
    }

    #[tokio::test]
    async fn dropped_ticket_withdraws() {
        let reg = Approvals::new(Duration::from_secs(30));
        let t = reg.request(view);
        let id = t.id.to_string();
        drop(t);
        assert!(reg.list().is_empty());
        assert_eq!(reg.pending_count(), 0);
        assert_eq!(
            reg.resolve(&id, true, caller(), "gone"),
            Err(ResolveError::NotPending(id.clone()))
        );
    }

    #[tokio::test]
    async fn deny_carries_reason_and_ambiguous_prefix_refused() {
        let reg = Approvals::new(Duration::from_secs(30));
        let mut a = reg.request(view);
        let _b = reg.request(view);
        // uuid v7 ids made in the same millisecond share their first characters
        assert!(matches!(
            reg.resolve("0", true, caller(), "x"),
            Err(ResolveError::Ambiguous(_) | ResolveError::NotPending(_))
        ));
        assert!(reg.resolve("", true, caller(), "x").is_err());
        reg.resolve(&a.id.to_string(), false, caller(), "not on prod")
            .unwrap();
        match a.wait().await {
            Verdict::Denied { reason, .. } => assert_eq!(reason, "not on prod"),
            v => panic!("{v:?}"),
        }
        assert_eq!(reg.list().len(), 1);
    }
}

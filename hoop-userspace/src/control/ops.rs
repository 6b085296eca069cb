//! What each control request does.

use serde_json::json;
use tokio::net::unix::OwnedWriteHalf;

use super::{Caller, Request, Response, send};
use crate::proxy::Node;

pub fn handle(node: &Node, caller: &Caller, req: Request) -> Response {
    match req {
        Request::Sessions => {
            let sessions = node.sessions.lock().unwrap();
            let mut list: Vec<_> = sessions.values().map(|s| s.snapshot()).collect();
            list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            Response::ok(serde_json::Value::Array(list))
        }
        Request::Session { id } => match find(node, &id) {
            Some(s) => {
                let mut v = s.snapshot();
                v["recent_statements"] = json!(s.details.lock().unwrap().recent);
                Response::ok(v)
            }
            None => Response::err(format!("no live session {id}")),
        },
        Request::Kill { id } => match find(node, &id) {
            Some(s) => {
                s.kill.notify_one();
                Response::ok(json!({"killed": s.id.to_string()}))
            }
            None => Response::err(format!("no live session {id}")),
        },
        Request::Approvals => Response::ok(json!(node.approvals.list())),
        // the approver is the caller as the kernel reports it; the session side audits the
        // verdict with it (and this request is already audited with the caller)
        Request::Approve { ref id, ref reason } | Request::Deny { ref id, ref reason } => {
            let approve = matches!(req, Request::Approve { .. });
            match node.approvals.resolve(id, approve, caller.clone(), reason) {
                Ok(full) => Response::ok(json!({
                    "id": full,
                    "verdict": if approve { "approved" } else { "denied" },
                })),
                Err(e) => Response::err(e.to_string()),
            }
        }
        Request::Reload => {
            // the same path as SIGHUP, so both behave alike
            // SAFETY: kill(2) on our own pid.
            unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
            Response::ok(json!({"reload": "requested"}))
        }
        Request::Watch => Response::err("watch streams; it is handled by the connection"),
    }
}

/// A session by full id or unique prefix.
fn find(node: &Node, id: &str) -> Option<std::sync::Arc<crate::session::Session>> {
    let sessions = node.sessions.lock().unwrap();
    let mut hits = sessions
        .values()
        .filter(|s| s.id.to_string().starts_with(id));
    let first = hits.next()?.clone();
    hits.next().is_none().then_some(first)
}

/// Streams live events (session start/end, statements) until the caller goes away.
pub async fn watch(node: &Node, wr: &mut OwnedWriteHalf) -> std::io::Result<()> {
    let mut rx = node.bus.subscribe();
    send(wr, &Response::ok(json!({"watching": true}))).await?;
    loop {
        match rx.recv().await {
            Ok(ev) => {
                let v: serde_json::Value = serde_json::from_str(&ev).unwrap_or_default();
                send(wr, &Response::ok(v)).await?;
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                send(wr, &Response::ok(json!({"event": "lagged", "missed": n}))).await?;
            }
            Err(_) => return Ok(()),
        }
    }
}

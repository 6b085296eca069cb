//! The operator API on a Unix socket: JSON lines, one request and one response per line (the
//! `watch` request then streams events). Callers are authorised by SO_PEERCRED: root or members
//! of the operators group — and never a process in a cgroup that opened intercepted sessions,
//! so an agent cannot operate (or later approve) its own requests. Every action is audited with
//! its caller.

pub mod client;
mod ops;

use std::{io, os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::{config::Control, proxy::Node};

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Sessions,
    Session {
        id: String,
    },
    Kill {
        id: String,
    },
    Watch,
    Approvals,
    /// Release a held request; it runs once.
    Approve {
        id: String,
        reason: String,
    },
    /// Refuse a held request.
    Deny {
        id: String,
        reason: String,
    },
    Reload,
}

/// The answer: `{"ok": true, "data": …}` or `{"ok": false, "error": "…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Self {
        Self {
            ok: true,
            data: Some(data),
            error: None,
        }
    }

    pub fn err(e: impl Into<String>) -> Self {
        Self {
            ok: false,
            data: None,
            error: Some(e.into()),
        }
    }
}

/// Binds the socket (replacing a stale one), mode 0660, group = the operators group if it exists.
pub fn bind(cfg: &Control) -> Result<UnixListener, crate::daemon::DaemonError> {
    let err = |source| crate::daemon::DaemonError::Control {
        path: cfg.socket.clone(),
        source,
    };
    if let Some(dir) = cfg.socket.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(&cfg.socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let l = UnixListener::bind(&cfg.socket).map_err(err)?;
    std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    if let Some(gid) = group_id(&cfg.operators_group) {
        std::os::unix::fs::chown(&cfg.socket, Some(0), Some(gid)).map_err(err)?;
    }
    Ok(l)
}

pub async fn serve(listener: UnixListener, node: Arc<Node>, cfg: Control) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let (node, cfg) = (node.clone(), cfg.clone());
                tokio::spawn(async move {
                    if let Err(e) = connection(s, &node, &cfg).await {
                        tracing::debug!(error = %e, "control connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Who is calling, from the kernel (SO_PEERCRED) and /proc.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    pub exe: Option<String>,
    pub cgroup: Option<String>,
}

async fn connection(s: UnixStream, node: &Node, cfg: &Control) -> io::Result<()> {
    let cred = s.peer_cred()?;
    let pid = cred.pid();
    let proc_dir = pid.map(|p| format!("/proc/{p}"));
    let read = |f: &str| {
        proc_dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(Path::new(d).join(f)).ok())
    };
    let caller = Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        pid,
        exe: proc_dir
            .as_ref()
            .and_then(|d| std::fs::read_link(Path::new(d).join("exe")).ok())
            .map(|p| p.display().to_string()),
        cgroup: read("cgroup").and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        }),
    };
    let (rd, mut wr) = s.into_split();
    let mut lines = BufReader::new(rd).lines();
    let authorised = authorize(&caller, read("status").as_deref(), node, cfg);
    while let Some(line) = lines.next_line().await? {
        // refused after reading the request, so the caller reads the answer instead of a reset
        if let Err(why) = &authorised {
            let _ = node.audit.append(
                "control.refused",
                &serde_json::json!({"caller": caller, "reason": why}),
            );
            tracing::warn!(uid = caller.uid, pid = ?caller.pid, reason = %why, "control caller refused");
            return send(&mut wr, &Response::err(format!("not authorised: {why}"))).await;
        }
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                send(&mut wr, &Response::err(format!("bad request: {e}"))).await?;
                continue;
            }
        };
        let audited = serde_json::json!({"caller": caller, "request": req});
        if let Err(e) = node.audit.append("control", &audited) {
            // every control action is audited: no record, no action
            send(
                &mut wr,
                &Response::err(format!("audit trail unavailable: {e}")),
            )
            .await?;
            continue;
        }
        if matches!(req, Request::Watch) {
            return ops::watch(node, &mut wr).await;
        }
        send(&mut wr, &ops::handle(node, &caller, req)).await?;
    }
    Ok(())
}

pub(crate) async fn send(wr: &mut (impl AsyncWriteExt + Unpin), r: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
    line.push(b'\n');
    wr.write_all(&line).await
}

/// Root or the operators group, and not an agent's cgroup.
fn authorize(
    c: &Caller,
    proc_status: Option<&str>,
    node: &Node,
    cfg: &Control,
) -> Result<(), String> {
    if let Some(cg) = &c.cgroup {
        let agents = node.agent_cgroups.lock().unwrap();
        let cg_path = Path::new(cg);
        if agents.iter().any(|a| cg_path.starts_with(a)) {
            return Err(format!("cgroup {cg} runs intercepted workloads"));
        }
    }
    if c.uid == 0 {
        return Ok(());
    }
    let Some(gid) = group_id(&cfg.operators_group) else {
        return Err(format!(
            "uid {} is not root and group {} does not exist",
            c.uid, cfg.operators_group
        ));
    };
    let groups: Vec<u32> = proc_status
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Groups:")))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if c.gid == gid || groups.contains(&gid) {
        Ok(())
    } else {
        Err(format!(
            "uid {} is neither root nor in group {}",
            c.uid, cfg.operators_group
        ))
    }
}

/// The gid of `name` from /etc/group.
fn group_id(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == name)
                .then(|| f.nth(1)?.parse().ok())
                .flatten()
        })
}

//! Requests held for a human approver: the hold itself (register, record, notify the client,
//! wait while watching the client) and what follows the verdict.

use std::sync::Mutex;

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, ReadHalf};

use super::{
    ClientState, Cx, Refusal, Shared,
    events::{Pending, StatementOutcome},
    read_more, refuse,
};
use crate::{
    approval::{self, Verdict},
    proxy::{postgres::PgError, stream::Stream},
    wire::postgres::{
        Frame,
        backend::{ErrorNotice, Severity},
    },
};

/// A request held for approval, with the frame that is forwarded if it is approved.
pub(super) struct Hold {
    pub(super) frame: Frame,
    pub(super) pending: Pending,
    pub(super) extended: bool,
}

/// Client bytes read ahead while a request is held (beyond this, TCP pushes back).
const HOLD_READ_AHEAD: usize = 1 << 20;

/// Holds a reviewed request until an operator decides (or the approval expires): registers it,
/// records that, tells the client, and meanwhile watches the client so that one that goes away
/// withdraws its request. Returns false if the client went away.
pub(super) async fn hold(
    cx: &Cx<'_>,
    st: &mut ClientState,
    shared: &Mutex<Shared>,
    h: Hold,
    rd: &mut ReadHalf<Stream>,
    buf: &mut BytesMut,
    out: &mut BytesMut,
) -> Result<bool, PgError> {
    let Hold {
        frame,
        pending,
        extended,
    } = h;
    let s = cx.session;
    let classification = pending.statements_summary();
    let mut ticket = cx.approvals.request(|id, at, expires| approval::Pending {
        id: id.to_string(),
        session: s.id.to_string(),
        identity: serde_json::to_value(&s.identity).unwrap_or_default(),
        process: serde_json::json!({
            "pid": s.process.pid, "uid": s.process.uid, "exe": s.process.exe,
            "cgroup": s.process.cgroup,
        }),
        target: s.target.config.name.clone(),
        protocol: s.target.config.protocol.as_str().to_string(),
        database: cx.who.database.map(str::to_string),
        user: cx.who.user.map(str::to_string),
        statement: cx.pol().masks.audit().mask_text(&pending.text).into_owned(),
        classification: classification.clone(),
        rule: pending.decision.rule.to_string(),
        requested_at: at.to_string(),
        expires_at: expires.to_string(),
    });
    let id = ticket.id.to_string();
    let record = serde_json::json!({
        "approval": id,
        "session": s.id.to_string(),
        "request": pending.request_seq,
        "rule": pending.decision.rule,
        "statements": classification,
        "timeout_s": ticket.timeout.as_secs(),
    });
    if let Err(e) = cx.audit.append_written("approval.request", &record) {
        tracing::error!(error = %e, "audit trail unavailable; held request refused");
        drop(ticket);
        let refusal = Refusal {
            code: "58030",
            message: "hoop: audit trail unavailable; request refused".into(),
        };
        let mut sh = shared.lock().unwrap();
        return refuse(out, &mut sh, st, pending, &refusal, extended).map(|()| true);
    }
    tracing::info!(approval = %id, rule = %pending.decision.rule, "request held for approval");
    s.publish(|| serde_json::json!({"event": "approval_requested", "session": s.id.to_string(), "approval": id}));
    let mut notice = BytesMut::new();
    let message = format!(
        "hoop: statement held for approval {id} (rule {}); an operator must approve it within {}s",
        pending.decision.rule,
        ticket.timeout.as_secs()
    );
    ErrorNotice {
        severity: Severity::Notice,
        code: "00000",
        message: &message,
        detail: None,
        hint: Some("an operator runs: hoopctl approve <id> --reason ... (or hoopctl deny)"),
    }
    .encode_notice(&mut notice)?;
    cx.client_wr
        .lock()
        .await
        .write_all(&notice)
        .await
        .map_err(PgError::ClientIo)?;
    let verdict = loop {
        tokio::select! {
            v = ticket.wait() => break Some(v),
            n = read_more(rd, buf), if buf.len() < HOLD_READ_AHEAD => match n {
                Ok(0) | Err(_) => break None,
                Ok(_) => {}
            },
        }
    };
    let Some(verdict) = verdict else {
        drop(ticket);
        let _ = cx.audit.append_written(
            "approval.decision",
            &serde_json::json!({"approval": id, "session": s.id.to_string(), "outcome": "withdrawn", "reason": "client disconnected while waiting"}),
        );
        pending.finish(cx, StatementOutcome::Interrupted);
        return Ok(false);
    };
    let mut record = serde_json::to_value(&verdict).unwrap_or_default();
    record["approval"] = id.clone().into();
    record["session"] = s.id.to_string().into();
    let written = cx.audit.append_written("approval.decision", &record);
    s.publish(|| serde_json::json!({"event": "approval_decided", "session": s.id.to_string(), "approval": id, "outcome": verdict.name()}));
    let refusal = match (&verdict, written) {
        (_, Err(e)) => {
            tracing::error!(error = %e, "audit trail unavailable; held request refused");
            Refusal {
                code: "58030",
                message: "hoop: audit trail unavailable; request refused".into(),
            }
        }
        (Verdict::Approved { .. }, Ok(r)) => {
            st.receipts.push(r);
            out.extend_from_slice(frame.wire());
            shared.lock().unwrap().pending.push_back(pending);
            return Ok(true);
        }
        (Verdict::Denied { reason, by }, Ok(r)) => {
            st.receipts.push(r);
            Refusal {
                code: "42501",
                message: format!(
                    "hoop: statement denied by an approver (uid {}) for approval {id}: {reason}",
                    by.uid
                ),
            }
        }
        (Verdict::Expired { after_s }, Ok(r)) => {
            st.receipts.push(r);
            Refusal {
                code: "42501",
                message: format!(
                    "hoop: approval {id} expired after {after_s}s without a decision; statement not run"
                ),
            }
        }
    };
    let mut sh = shared.lock().unwrap();
    refuse(out, &mut sh, st, pending, &refusal, extended).map(|()| true)
}

//! The query phase: both directions stream frame by frame (forwarded frames are never decoded
//! beyond their header); statements are classified and decided before they reach the server.
//!
//! A denied statement is not forwarded. In its place hoopd sends the server a statement that
//! fails with SQLSTATE 42501 and the rule's name (`DO … RAISE EXCEPTION`), so the *server*
//! produces the error at exactly the protocol position where the statement would have failed:
//! inside a transaction it aborts it as PostgreSQL would, in the extended protocol the server
//! skips to Sync as PostgreSQL does, and the session stays usable — fidelity by construction,
//! not by imitation. In the extended protocol the replacement is an unnamed Parse/Bind/Execute
//! whose ParseComplete and BindComplete the client never sees.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::{PgContext, PgError, auth::Authed};
use crate::audit::{AuditLog, Durability, Receipt};
use crate::{
    classify::Classification,
    policy::{self, Action, Decision},
    proxy::stream::Stream,
    session::Session,
    wire::postgres::{
        BackendMessage, Direction, Frame, FrameSplitter, FrontendMessage, Limits,
        backend::{ErrorNotice, Severity},
        frontend::{Execute, Query, Target, encode_bind, encode_parse},
    },
};

mod events;

use events::{Pending, PendingKind, StatementOutcome};

const CHUNK: usize = 64 * 1024;

/// State both directions touch: what the server still owes answers for.
#[derive(Default)]
struct Shared {
    pending: VecDeque<Pending>,
    /// ParseComplete/BindComplete of replacement statements, not to be shown to the client.
    swallow: usize,
    /// Batches (a Query, or messages up to Sync) the client has closed.
    batches_sent: u64,
    /// Batches the server has answered (ReadyForQuery seen).
    batches_done: u64,
}

struct Prepared {
    text: Arc<str>,
    stmts: Arc<[Classification]>,
}

/// Client-side bookkeeping of the extended protocol.
#[derive(Default)]
struct ClientState {
    prepared: HashMap<String, Prepared>,
    portals: HashMap<String, String>,
    /// After a denied Parse: drop the client's messages until Sync (the server would).
    skip_until_sync: bool,
    terminated: bool,
    /// Audit records written for this read's requests (awaited in strict mode).
    receipts: Vec<Receipt>,
}

pub struct Who<'a> {
    pub database: Option<&'a str>,
    pub user: Option<&'a str>,
}

/// What both directions of one session need.
pub struct Cx<'a> {
    pub ctx: &'a PgContext,
    pub audit: &'a AuditLog,
    pub session: &'a Session,
    pub who: &'a Who<'a>,
}

pub async fn run(
    ctx: &Arc<PgContext>,
    audit: &AuditLog,
    session: &Arc<Session>,
    authed: Authed,
    params: &[(String, String)],
) -> Result<(), PgError> {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let user = param("user");
    let who = Who {
        database: param("database").or(user),
        user,
    };
    {
        let mut d = session.details.lock().unwrap();
        d.database = who.database.map(str::to_string);
        d.user = who.user.map(str::to_string);
    }
    // `_cancel` (not `_`) keeps the cancel key registered until the session ends
    let Authed {
        client,
        server,
        client_buf,
        server_buf,
        cancel_guard: _cancel,
    } = authed;
    let (crd, cwr) = tokio::io::split(client);
    let (srd, swr) = tokio::io::split(server);
    let shared = Mutex::new(Shared::default());
    let cx = Cx {
        ctx,
        audit,
        session,
        who: &who,
    };
    let up = client_to_server(&cx, crd, swr, client_buf, &shared);
    let down = server_to_client(&cx, srd, cwr, server_buf, &shared);
    let result = tokio::select! {
        r = up => r,
        r = down => r,
    };
    for p in shared.lock().unwrap().pending.drain(..) {
        p.finish(&cx, StatementOutcome::Interrupted);
    }
    result
}

async fn client_to_server(
    cx: &Cx<'_>,
    mut rd: ReadHalf<Stream>,
    mut wr: WriteHalf<Stream>,
    mut buf: BytesMut,
    shared: &Mutex<Shared>,
) -> Result<(), PgError> {
    let splitter = FrameSplitter::new(Direction::Frontend, Limits::DEFAULT);
    let mut state = ClientState::default();
    let mut out = BytesMut::with_capacity(CHUNK);
    let strict = cx.audit.durability() == Durability::Strict;
    loop {
        {
            let mut sh = shared.lock().unwrap();
            while let Some(frame) = splitter
                .next_frame(&mut buf)
                .map_err(PgError::ClientProtocol)?
            {
                cx.session.add_up(frame.wire().len() as u64);
                on_client_frame(cx, &mut state, &mut sh, frame, &mut out)?;
            }
        }
        // strict durability: nothing is forwarded before the fdatasync covering its record
        // (one group commit for every record of this read)
        if strict {
            for r in state.receipts.drain(..) {
                r.durable().await?;
            }
        } else {
            state.receipts.clear();
        }
        if !out.is_empty() {
            wr.write_all(&out).await.map_err(PgError::UpstreamIo)?;
            out.clear();
        }
        if state.terminated {
            return Ok(());
        }
        if read_more(&mut rd, &mut buf)
            .await
            .map_err(PgError::ClientIo)?
            == 0
        {
            let _ = wr.shutdown().await;
            return Ok(());
        }
    }
}

fn decide_all(cx: &Cx<'_>, stmts: &[Classification]) -> Decision {
    for s in stmts {
        let req = policy::Request {
            target: &cx.session.target.config,
            process: &cx.session.process,
            database: cx.who.database,
            user: cx.who.user,
            statement: s,
        };
        let d = policy::decide(&req);
        if d.action == Action::Deny {
            return d;
        }
    }
    Decision::allow_default()
}

fn on_client_frame(
    cx: &Cx<'_>,
    st: &mut ClientState,
    sh: &mut Shared,
    frame: Frame,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    let tag = frame.tag();
    if st.skip_until_sync && tag != b'S' && tag != b'X' {
        return Ok(());
    }
    match tag {
        b'Q' => {
            let FrontendMessage::Query(q) = super::io::frontend(&frame)? else {
                unreachable!()
            };
            let stmts = cx.ctx.classify.classify(q.sql);
            let decision = decide_all(cx, &stmts);
            let batch = sh.batches_sent;
            sh.batches_sent += 1;
            let mut pending = Pending::new(
                PendingKind::Simple { next: 0 },
                q.sql.into(),
                stmts,
                decision,
                batch,
            );
            match admit(cx, st, &mut pending) {
                Ok(()) => {
                    out.extend_from_slice(frame.wire());
                    sh.pending.push_back(pending);
                }
                Err(refusal) => {
                    Query {
                        sql: &refusal.sql(),
                    }
                    .encode(out)?;
                    sh.pending.push_back(pending.refused(refusal.code));
                }
            }
        }
        b'P' => {
            let FrontendMessage::Parse(p) = super::io::frontend(&frame)? else {
                unreachable!()
            };
            let stmts = cx.ctx.classify.classify(p.query);
            let decision = decide_all(cx, &stmts);
            if decision.action == Action::Deny {
                // decided at Parse: the statement never reaches the server, even prepared
                let mut pending = Pending::new(
                    PendingKind::Extended,
                    p.query.into(),
                    stmts,
                    decision,
                    sh.batches_sent,
                );
                let refusal = admit(cx, st, &mut pending).expect_err("a denial is refused");
                refuse_extended(out, sh, st, pending, &refusal)?;
            } else {
                st.prepared.insert(
                    p.name.to_string(),
                    Prepared {
                        text: p.query.into(),
                        stmts,
                    },
                );
                out.extend_from_slice(frame.wire());
            }
        }
        b'B' => {
            let FrontendMessage::Bind(b) = super::io::frontend(&frame)? else {
                unreachable!()
            };
            st.portals
                .insert(b.portal.to_string(), b.statement.to_string());
            out.extend_from_slice(frame.wire());
        }
        b'E' => {
            let FrontendMessage::Execute(e) = super::io::frontend(&frame)? else {
                unreachable!()
            };
            let prepared = st.portals.get(e.portal).and_then(|s| st.prepared.get(s));
            let (text, stmts) = match prepared {
                Some(p) => (p.text.clone(), p.stmts.clone()),
                None => (Arc::from(""), Arc::from(Vec::new())),
            };
            let mut pending = Pending::new(
                PendingKind::Extended,
                text,
                stmts,
                Decision::allow_default(),
                sh.batches_sent,
            );
            match admit(cx, st, &mut pending) {
                Ok(()) => {
                    out.extend_from_slice(frame.wire());
                    sh.pending.push_back(pending);
                }
                // the portal is the client's; run the refusal instead, then skip to Sync
                Err(refusal) => refuse_extended(out, sh, st, pending, &refusal)?,
            }
        }
        b'C' => {
            if let FrontendMessage::Close(c) = super::io::frontend(&frame)? {
                match c.target {
                    Target::Statement => drop(st.prepared.remove(c.name)),
                    Target::Portal => drop(st.portals.remove(c.name)),
                }
            }
            out.extend_from_slice(frame.wire());
        }
        b'S' => {
            st.skip_until_sync = false;
            sh.batches_sent += 1;
            out.extend_from_slice(frame.wire());
        }
        b'X' => {
            st.terminated = true;
            out.extend_from_slice(frame.wire());
        }
        _ => out.extend_from_slice(frame.wire()),
    }
    Ok(())
}

/// Extended protocol: the server runs the refusal (unnamed Parse/Bind/Execute) in the request's
/// place; its ParseComplete and BindComplete are swallowed, and the client's messages up to Sync
/// are skipped, as the server itself would after an error.
fn refuse_extended(
    out: &mut BytesMut,
    sh: &mut Shared,
    st: &mut ClientState,
    pending: Pending,
    refusal: &Refusal,
) -> Result<(), PgError> {
    encode_parse(out, "", &refusal.sql(), std::iter::empty())?;
    encode_bind(out, "", "", &[], std::iter::empty(), &[])?;
    Execute {
        portal: "",
        max_rows: 0,
    }
    .encode(out)?;
    sh.swallow += 2;
    st.skip_until_sync = true;
    sh.pending.push_back(pending.refused(refusal.code));
    Ok(())
}

/// Why a request does not reach the server, and the statement the server runs instead.
struct Refusal {
    code: &'static str,
    message: String,
}

impl Refusal {
    /// Fails with `code` and the message, at the request's place in the protocol.
    fn sql(&self) -> String {
        format!(
            "DO $hoop_refused$BEGIN RAISE EXCEPTION USING ERRCODE = '{}', MESSAGE = '{}'; END$hoop_refused$",
            self.code,
            self.message.replace('\'', "''")
        )
    }
}

/// Write before forward: the request's audit record is written first; a denied request, or
/// one whose record cannot be written, is refused.
fn admit(cx: &Cx<'_>, st: &mut ClientState, p: &mut Pending) -> Result<(), Refusal> {
    match cx.audit.append_written("pg.request", &p.request_record(cx)) {
        Ok(r) => {
            p.request_seq = Some(r.seq());
            st.receipts.push(r);
        }
        Err(e) => {
            tracing::error!(error = %e, "audit trail unavailable; request refused");
            return Err(Refusal {
                code: "58030",
                message: "hoop: audit trail unavailable; request refused".into(),
            });
        }
    }
    if p.decision.action == Action::Deny {
        let message = p
            .decision
            .message
            .clone()
            .unwrap_or_else(|| format!("hoop: denied by rule {}", p.decision.rule));
        return Err(Refusal {
            code: "42501",
            message,
        });
    }
    Ok(())
}

/// Reads what the peer has sent into `buf`, growing it a chunk at a time; 0 at end of stream.
async fn read_more(rd: &mut ReadHalf<Stream>, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(CHUNK);
    }
    rd.read_buf(buf).await
}

async fn server_to_client(
    cx: &Cx<'_>,
    mut rd: ReadHalf<Stream>,
    mut wr: WriteHalf<Stream>,
    mut buf: BytesMut,
    shared: &Mutex<Shared>,
) -> Result<(), PgError> {
    let splitter = FrameSplitter::new(Direction::Backend, Limits::DEFAULT);
    let mut out = BytesMut::with_capacity(CHUNK);
    loop {
        let mut finished = Vec::new();
        {
            let mut sh = shared.lock().unwrap();
            while let Some(frame) = splitter
                .next_frame(&mut buf)
                .map_err(PgError::UpstreamProtocol)?
            {
                on_server_frame(&mut sh, &frame, &mut out, &mut finished)?;
            }
        }
        for (p, outcome) in finished {
            p.finish(cx, outcome);
        }
        if !out.is_empty() {
            cx.session.add_down(out.len() as u64);
            wr.write_all(&out).await.map_err(PgError::ClientIo)?;
            out.clear();
        }
        if read_more(&mut rd, &mut buf)
            .await
            .map_err(PgError::UpstreamIo)?
            == 0
        {
            let _ = wr.shutdown().await;
            return Ok(());
        }
    }
}

fn on_server_frame(
    sh: &mut Shared,
    frame: &Frame,
    out: &mut BytesMut,
    finished: &mut Vec<(Pending, StatementOutcome)>,
) -> Result<(), PgError> {
    match frame.tag() {
        b'D' => {
            if let Some(p) = sh.pending.front_mut() {
                p.rows += 1;
            }
        }
        b'1' | b'2' if sh.swallow > 0 => {
            sh.swallow -= 1;
            return Ok(());
        }
        b'C' | b'I' | b's' => {
            let tag = match BackendMessage::parse(frame.raw()).map_err(PgError::UpstreamProtocol)? {
                BackendMessage::CommandComplete(c) => c.tag.to_string(),
                BackendMessage::PortalSuspended => "suspended".into(),
                _ => String::new(),
            };
            complete_front(sh, StatementOutcome::Complete(tag), finished);
        }
        b'E' => {
            let BackendMessage::ErrorResponse(e) =
                BackendMessage::parse(frame.raw()).map_err(PgError::UpstreamProtocol)?
            else {
                unreachable!("tag E is ErrorResponse")
            };
            let code = e.code().unwrap_or("").to_string();
            sh.swallow = 0;
            let refused = sh.pending.front().and_then(|p| match p.kind {
                PendingKind::Refused { code } => Some(code),
                _ => None,
            });
            if refused == Some(code.as_str()) {
                // our replacement's error, without the PL/pgSQL context of how it was raised
                let message = e.get(b'M').unwrap_or("hoop: request refused");
                let refused_code = refused.unwrap();
                ErrorNotice {
                    severity: Severity::Error,
                    code: refused_code,
                    message,
                    detail: None,
                    hint: None,
                }
                .encode_error(out)?;
                complete_front(sh, StatementOutcome::Error(code), finished);
                return Ok(());
            }
            complete_front(sh, StatementOutcome::Error(code), finished);
        }
        b'Z' => {
            sh.batches_done += 1;
            while sh
                .pending
                .front()
                .is_some_and(|p| p.batch < sh.batches_done)
            {
                sh.pending.pop_front().unwrap().drain_unexecuted(finished);
            }
        }
        _ => {}
    }
    out.extend_from_slice(frame.wire());
    Ok(())
}

/// Attributes a completion to the oldest statement still waiting for one.
fn complete_front(
    sh: &mut Shared,
    outcome: StatementOutcome,
    finished: &mut Vec<(Pending, StatementOutcome)>,
) {
    let Some(front) = sh.pending.front_mut() else {
        return;
    };
    match front.kind {
        PendingKind::Simple { next: i } => {
            let errored = matches!(outcome, StatementOutcome::Error(_));
            finished.push((front.statement_at(i), outcome));
            front.kind = if errored || i + 1 >= front.stmts.len().max(1) {
                // an error ends a simple query: the statements after it never ran
                PendingKind::Drained
            } else {
                PendingKind::Simple { next: i + 1 }
            };
        }
        PendingKind::Extended | PendingKind::Refused { .. } => {
            let p = sh.pending.pop_front().unwrap();
            finished.push((p, outcome));
        }
        PendingKind::Drained => {}
    }
}

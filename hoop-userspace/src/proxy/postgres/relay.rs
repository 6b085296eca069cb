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
}

pub struct Who<'a> {
    pub database: Option<&'a str>,
    pub user: Option<&'a str>,
}

pub async fn run(ctx: &Arc<PgContext>, session: &Arc<Session>, authed: Authed, params: &[(String, String)]) -> Result<(), PgError> {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let user = param("user");
    let who = Who { database: param("database").or(user), user };
    // `_cancel` (not `_`) keeps the cancel key registered until the session ends
    let Authed { client, server, client_buf, server_buf, cancel_guard: _cancel } = authed;
    let (crd, cwr) = tokio::io::split(client);
    let (srd, swr) = tokio::io::split(server);
    let shared = Mutex::new(Shared::default());
    let up = client_to_server(ctx, session, &who, crd, swr, client_buf, &shared);
    let down = server_to_client(session, &who, srd, cwr, server_buf, &shared);
    let result = tokio::select! {
        r = up => r,
        r = down => r,
    };
    for p in shared.lock().unwrap().pending.drain(..) {
        p.emit(session, &who, StatementOutcome::Interrupted);
    }
    result
}

async fn client_to_server(
    ctx: &PgContext,
    session: &Session,
    who: &Who<'_>,
    mut rd: ReadHalf<Stream>,
    mut wr: WriteHalf<Stream>,
    mut buf: BytesMut,
    shared: &Mutex<Shared>,
) -> Result<(), PgError> {
    let splitter = FrameSplitter::new(Direction::Frontend, Limits::DEFAULT);
    let mut state = ClientState::default();
    let mut out = BytesMut::with_capacity(CHUNK);
    loop {
        {
            let mut sh = shared.lock().unwrap();
            while let Some(frame) = splitter.next_frame(&mut buf).map_err(PgError::ClientProtocol)? {
                session.add_up(frame.wire().len() as u64);
                on_client_frame(ctx, session, who, &mut state, &mut sh, frame, &mut out)?;
            }
        }
        if !out.is_empty() {
            wr.write_all(&out).await.map_err(PgError::UpstreamIo)?;
            out.clear();
        }
        if state.terminated {
            return Ok(());
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(CHUNK);
        }
        if rd.read_buf(&mut buf).await.map_err(PgError::ClientIo)? == 0 {
            let _ = wr.shutdown().await;
            return Ok(());
        }
    }
}

fn decide_all(ctx: &PgContext, session: &Session, who: &Who<'_>, stmts: &[Classification]) -> Decision {
    let _ = ctx;
    for s in stmts {
        let req = policy::Request {
            target: &session.target.config,
            process: &session.process,
            database: who.database,
            user: who.user,
            statement: s,
        };
        let d = policy::decide(&req);
        if d.action == Action::Deny {
            return d;
        }
    }
    Decision::allow_default()
}

fn first_denied_kind(stmts: &[Classification], d: &Decision) -> &'static str {
    stmts.iter().map(|s| s.kind.as_str()).find(|k| d.rule.ends_with(&format!(":{k}"))).unwrap_or("statement")
}

/// The statement the server runs instead of a denied one: fails with 42501 naming the rule.
fn denial_sql(message: &str) -> String {
    format!(
        "DO $hoop_denied$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = '{}'; END$hoop_denied$",
        message.replace('\'', "''")
    )
}

fn on_client_frame(
    ctx: &PgContext,
    session: &Session,
    who: &Who<'_>,
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
            let FrontendMessage::Query(q) = super::io::frontend(&frame)? else { unreachable!() };
            let stmts = ctx.classify.classify(q.sql);
            let decision = decide_all(ctx, session, who, &stmts);
            let batch = sh.batches_sent;
            sh.batches_sent += 1;
            if decision.action == Action::Deny {
                let msg = decision.deny_message(first_denied_kind(&stmts, &decision));
                Query { sql: &denial_sql(&msg) }.encode(out)?;
                sh.pending.push_back(Pending::new(PendingKind::Denied, q.sql.into(), stmts, decision, batch));
            } else {
                out.extend_from_slice(frame.wire());
                sh.pending.push_back(Pending::new(PendingKind::Simple { next: 0 }, q.sql.into(), stmts, decision, batch));
            }
        }
        b'P' => {
            let FrontendMessage::Parse(p) = super::io::frontend(&frame)? else { unreachable!() };
            let stmts = ctx.classify.classify(p.query);
            let decision = decide_all(ctx, session, who, &stmts);
            if decision.action == Action::Deny {
                let msg = decision.deny_message(first_denied_kind(&stmts, &decision));
                encode_parse(out, "", &denial_sql(&msg), std::iter::empty())?;
                encode_bind(out, "", "", &[], std::iter::empty(), &[])?;
                Execute { portal: "", max_rows: 0 }.encode(out)?;
                sh.swallow += 2;
                st.skip_until_sync = true;
                sh.pending.push_back(Pending::new(PendingKind::Denied, p.query.into(), stmts, decision, sh.batches_sent));
            } else {
                st.prepared.insert(p.name.to_string(), Prepared { text: p.query.into(), stmts });
                out.extend_from_slice(frame.wire());
            }
        }
        b'B' => {
            let FrontendMessage::Bind(b) = super::io::frontend(&frame)? else { unreachable!() };
            st.portals.insert(b.portal.to_string(), b.statement.to_string());
            out.extend_from_slice(frame.wire());
        }
        b'E' => {
            let FrontendMessage::Execute(e) = super::io::frontend(&frame)? else { unreachable!() };
            let prepared = st.portals.get(e.portal).and_then(|s| st.prepared.get(s));
            let (text, stmts) = match prepared {
                Some(p) => (p.text.clone(), p.stmts.clone()),
                None => (Arc::from(""), Arc::from(Vec::new())),
            };
            sh.pending.push_back(Pending::new(PendingKind::Extended, text, stmts, Decision::allow_default(), sh.batches_sent));
            out.extend_from_slice(frame.wire());
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

async fn server_to_client(
    session: &Session,
    who: &Who<'_>,
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
            while let Some(frame) = splitter.next_frame(&mut buf).map_err(PgError::UpstreamProtocol)? {
                on_server_frame(&mut sh, &frame, &mut out, &mut finished)?;
            }
        }
        for (p, outcome) in finished {
            p.emit(session, who, outcome);
        }
        if !out.is_empty() {
            session.add_down(out.len() as u64);
            wr.write_all(&out).await.map_err(PgError::ClientIo)?;
            out.clear();
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(CHUNK);
        }
        if rd.read_buf(&mut buf).await.map_err(PgError::UpstreamIo)? == 0 {
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
            let BackendMessage::ErrorResponse(e) = BackendMessage::parse(frame.raw()).map_err(PgError::UpstreamProtocol)?
            else {
                unreachable!("tag E is ErrorResponse")
            };
            let code = e.code().unwrap_or("").to_string();
            sh.swallow = 0;
            let denied = sh.pending.front().is_some_and(|p| matches!(p.kind, PendingKind::Denied));
            if denied && code == "42501" {
                // our replacement's error, without the PL/pgSQL context of how it was raised
                let message = e.get(b'M').unwrap_or("hoop: statement denied");
                ErrorNotice { severity: Severity::Error, code: "42501", message, detail: None, hint: None }.encode_error(out)?;
                complete_front(sh, StatementOutcome::Error(code), finished);
                return Ok(());
            }
            complete_front(sh, StatementOutcome::Error(code), finished);
        }
        b'Z' => {
            sh.batches_done += 1;
            while sh.pending.front().is_some_and(|p| p.batch < sh.batches_done) {
                sh.pending.pop_front().unwrap().drain_unexecuted(finished);
            }
        }
        _ => {}
    }
    out.extend_from_slice(frame.wire());
    Ok(())
}

/// Attributes a completion to the oldest statement still waiting for one.
fn complete_front(sh: &mut Shared, outcome: StatementOutcome, finished: &mut Vec<(Pending, StatementOutcome)>) {
    let Some(front) = sh.pending.front_mut() else { return };
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
        PendingKind::Extended | PendingKind::Denied => {
            let p = sh.pending.pop_front().unwrap();
            finished.push((p, outcome));
        }
        PendingKind::Drained => {}
    }
}

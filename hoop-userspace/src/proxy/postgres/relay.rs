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
//!
//! A request the decision sends to review is held: its record is written, it is registered with
//! the node's approvals, the client gets a NoticeResponse naming the approval at once, and the
//! client's later messages wait behind it. Approved, it is forwarded exactly once; denied or
//! expired, it is refused as a denial is. In the extended protocol the hold is on Execute (a
//! Parse runs nothing), so every execution of a reviewed prepared statement is approved on its
//! own. A client that goes away while waiting withdraws the request.
//!
//! What a prepared statement runs is decided as what it is, whichever way it is run: the
//! protocol's named statements and SQL's PREPARE share one namespace, tracked as the server
//! holds it ([`prepared`]).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::{PgContext, PgError, Services, auth::Authed};
use crate::audit::{AuditLog, Durability, Receipt};
use crate::{
    approval::Approvals,
    classify::Classification,
    mask::{Masker, pg::RowPlan},
    policy::{Decision, PolicyState},
    proxy::stream::Stream,
    session::Session,
    wire::postgres::{Direction, Frame, FrameSplitter, Limits, frontend::Target},
};

mod admit;
mod client;
mod events;
mod hold;
mod prepared;
mod results;
mod server;

use admit::{Refusal, decide_all, refuse};

use client::{on_client_frame, tell_client};
use events::{ExtShape, Pending, StatementOutcome};
use hold::hold;
use server::on_server_frame;

const CHUNK: usize = 64 * 1024;
const POSTGRES: crate::config::Protocol = crate::config::Protocol::Postgres;

/// State both directions touch: what the server still owes answers for.
#[derive(Default)]
struct Shared {
    pending: VecDeque<Pending>,
    /// BindComplete of replacement statements, not to be shown to the client.
    swallow: usize,
    /// Parse and Close answers the server owes: (batch, what).
    expects: VecDeque<(u64, Expect)>,
    /// The session's prepared statements and cursors as the server holds them (both
    /// directions: admitted by the client's, confirmed by the server's).
    names: prepared::Names,
    /// Batches (a Query, or messages up to Sync) the client has closed.
    batches_sent: u64,
    /// Batches the server has answered (ReadyForQuery seen).
    batches_done: u64,
    /// Describe requests the server has yet to answer.
    describes: VecDeque<Describing>,
    /// The RowDescriptions the server gave for named statements and portals, for masking the
    /// rows of later Executes that come without one.
    stmt_desc: HashMap<String, Frame>,
    portal_desc: HashMap<String, Frame>,
    /// The masking plan of the result streaming now (from its RowDescription, or built at its
    /// first row).
    plan: Option<Arc<RowPlan>>,
    /// The last plan built, and what from (`results::plan_for`).
    plan_memo: Option<(results::PlanKey, Arc<RowPlan>)>,
}

/// A Describe the server has yet to answer.
struct Describing {
    batch: u64,
    target: Target,
    name: String,
    /// Sent by hoopd (for masking): its answer is kept, not shown to the client.
    ours: bool,
}

/// A protocol message whose answer (ParseComplete, CloseComplete) the server owes, in the
/// order the answers come.
enum Expect {
    /// The client's Parse: a named statement's definition, confirmed by ParseComplete.
    Parse(Option<prepared::OpId>),
    /// The Parse of a refusal hoopd staged: its ParseComplete is not shown to the client.
    OurParse,
    /// The client's Close: of a named statement, confirmed by CloseComplete.
    Close(Option<prepared::OpId>),
}

/// Client-side bookkeeping of the extended protocol.
#[derive(Default)]
struct ClientState {
    /// Bound portals: the statement each was bound from and the result formats its Bind asked
    /// for (a Bind identical to the portal's last one keeps it: no allocation per execution).
    portals: HashMap<String, Arc<ExtShape>>,
    /// After a denied Parse: drop the client's messages until Sync (the server would).
    skip_until_sync: bool,
    terminated: bool,
    /// Audit records written for this read's requests (awaited in strict mode).
    receipts: Vec<Receipt>,
    /// What the last simple Query's shape decided (see [`ShapeMemo`]).
    shape: Option<Arc<ShapeMemo>>,
}

/// A simple Query's decision and the start of its audit record, kept for the next Query of
/// the same shape: the classification cache hands every text of one template (literals
/// aside) the same classification, and the decision depends on nothing else that varies
/// within a session — so a client repeating a statement with new literals is decided and its
/// record's fixed part encoded once, not per text. Valid while the policy is the same.
struct ShapeMemo {
    stmts: Arc<[Classification]>,
    policy: Arc<PolicyState>,
    decision: Decision,
    masker: Option<Arc<Masker>>,
    prefix: crate::audit::EventPrefix,
}

impl ClientState {
    /// The memo for `stmts` under `pol`: the last one if it is for them, else a new one.
    fn shape_memo(
        &mut self,
        cx: &Cx<'_>,
        pol: &Arc<PolicyState>,
        stmts: Arc<[Classification]>,
    ) -> Arc<ShapeMemo> {
        if let Some(m) = &self.shape
            && Arc::ptr_eq(&m.stmts, &stmts)
            && Arc::ptr_eq(&m.policy, pol)
        {
            return m.clone();
        }
        let decision = decide_all(cx, pol, &stmts);
        let memo = Arc::new(ShapeMemo {
            prefix: events::request_prefix(cx, &stmts, &decision),
            masker: Cx::masker_for(pol, &decision),
            stmts,
            decision,
            policy: pol.clone(),
        });
        self.shape = Some(memo.clone());
        memo
    }
}

pub struct Who<'a> {
    pub database: Option<&'a str>,
    pub user: Option<&'a str>,
}

/// What both directions of one session need.
pub struct Cx<'a> {
    pub ctx: &'a PgContext,
    pub audit: &'a AuditLog,
    pub approvals: &'a Approvals,
    pub policy: &'a std::sync::RwLock<Arc<PolicyState>>,
    pub session: &'a Session,
    pub who: &'a Who<'a>,
    /// The client's write half: the server-to-client direction writes whole frames under it,
    /// so a notice of our own (approval pending) lands between frames.
    pub client_wr: &'a tokio::sync::Mutex<WriteHalf<Stream>>,
}

impl Cx<'_> {
    /// The policy in force now (reloads apply to the next request).
    pub fn pol(&self) -> Arc<PolicyState> {
        self.policy.read().unwrap().clone()
    }

    /// The masking profile for the response of a request so decided.
    fn masker_for(pol: &PolicyState, decision: &Decision) -> Option<Arc<Masker>> {
        pol.masks.profile(decision.mask.as_deref())
    }
}

pub async fn run(
    ctx: &Arc<PgContext>,
    services: Services<'_>,
    session: &Arc<Session>,
    authed: Authed,
    params: &[(String, String)],
    settings: crate::proxy::Settings,
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
    let client_wr = tokio::sync::Mutex::new(cwr);
    let cx = Cx {
        ctx,
        audit: services.audit,
        approvals: services.approvals,
        policy: services.policy,
        session,
        who: &who,
        client_wr: &client_wr,
    };
    let limits = Limits {
        frontend_large: settings.max_client_message,
        ..Limits::DEFAULT
    };
    let up = client_to_server(&cx, crd, swr, client_buf, &shared, limits);
    let down = server_to_client(&cx, srd, server_buf, &shared);
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
    limits: Limits,
) -> Result<(), PgError> {
    let splitter = FrameSplitter::new(Direction::Frontend, limits);
    let mut state = ClientState::default();
    let mut out = BytesMut::with_capacity(CHUNK);
    let strict = cx.audit.durability() == Durability::Strict;
    loop {
        let mut held = None;
        let mut malformed = None;
        let arrived = std::time::Instant::now();
        {
            // one look at the shared policy per read (a reload applies from the next one)
            let pol = cx.pol();
            let mut sh = shared.lock().unwrap();
            loop {
                let frame = match splitter.next_frame(&mut buf) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        malformed = Some(e);
                        break;
                    }
                };
                cx.session.add_up(frame.wire().len() as u64);
                held = on_client_frame(cx, &pol, &mut state, &mut sh, frame, &mut out)?;
                if held.is_some() {
                    // later messages wait behind the held request
                    break;
                }
            }
        }
        if let Some(e) = malformed {
            // the session ends here: what this read admitted before it is not forwarded (its
            // records end as interrupted)
            return Err(tell_client(cx, e).await);
        }
        // a held request's wait is the approver's, not hoopd's: not observed
        let requests = state
            .receipts
            .len()
            .saturating_sub(usize::from(held.is_some()));
        // strict durability: nothing is forwarded before the fdatasync covering its record
        // (one group commit for every record of this read)
        if strict {
            for r in state.receipts.drain(..) {
                r.durable().await?;
            }
        } else {
            state.receipts.clear();
        }
        // hoopd's delay ends at the hand-over: the send's own time is left out, as the kernel
        // often runs the upstream it wakes on this CPU before the call returns (measured at
        // pgbench -c 1: 24% of sends, ~130 µs each — the server's work, not hoopd's)
        let added = arrived.elapsed();
        if !out.is_empty() {
            wr.write_all(&out).await.map_err(PgError::UpstreamIo)?;
            out.clear();
        }
        cx.ctx.metrics.forwarded(POSTGRES, added, requests);
        if let Some(h) = held {
            if !hold(cx, &mut state, shared, h, &mut rd, &mut buf, &mut out).await? {
                // the client went away while its request waited
                let _ = wr.shutdown().await;
                return Ok(());
            }
            continue;
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
                on_server_frame(cx, &mut sh, &frame, &mut out, &mut finished)?;
            }
        }
        for (p, outcome) in finished {
            p.finish(cx, outcome);
        }
        if !out.is_empty() {
            cx.session.add_down(out.len() as u64);
            cx.client_wr
                .lock()
                .await
                .write_all(&out)
                .await
                .map_err(PgError::ClientIo)?;
            out.clear();
        }
        if read_more(&mut rd, &mut buf)
            .await
            .map_err(PgError::UpstreamIo)?
            == 0
        {
            let _ = cx.client_wr.lock().await.shutdown().await;
            return Ok(());
        }
    }
}

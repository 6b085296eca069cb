//! The client-to-server direction, message by message: each statement classified, decided and
//! recorded before it is forwarded (or refused in its place); extended-protocol bookkeeping;
//! fast-path calls decided like statements; a malformed message answered with a FATAL error.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::admit::{RecordFrom, Refusal, admit, decide_all, refuse, stricter};
use super::events::{ExtShape, Pending, PendingKind};
use super::hold::Hold;
use super::prepared::{Def, OpId, Resolved, defined_by, running};
use super::{ClientState, Cx, Describing, Expect, PgError, Shared};
use crate::{
    classify::{Classification, PreparedOp},
    policy::{self, Action, Decision, PolicyState},
    wire::postgres::{Frame, FrontendMessage, frontend::Target},
};

pub(super) fn on_client_frame(
    cx: &Cx<'_>,
    pol: &Arc<PolicyState>,
    st: &mut ClientState,
    sh: &mut Shared,
    frame: Frame,
    out: &mut BytesMut,
) -> Result<Option<Hold>, PgError> {
    let tag = frame.tag();
    if st.skip_until_sync && tag != b'S' && tag != b'X' {
        return Ok(None);
    }
    match tag {
        b'Q' => {
            let FrontendMessage::Query(q) = super::super::io::frontend(&frame)? else {
                unreachable!()
            };
            let stmts = cx.ctx.classify.classify(q.sql);
            let batch = sh.batches_sent;
            sh.batches_sent += 1;
            // a simple Query destroys the unnamed statement
            sh.names.statements.forget_unnamed();
            if stmts.iter().any(|c| c.prepared.is_some()) {
                // PREPARE, EXECUTE, DEALLOCATE: decided with what they define and run
                let sql = sql_prepared(cx, pol, sh, &stmts, q.sql, batch);
                let mut pending = Pending::new(
                    PendingKind::Simple { next: 0 },
                    q.sql.into(),
                    sql.stmts,
                    sql.decision,
                    batch,
                );
                pending.masker = Cx::masker_for(pol, &pending.decision);
                pending.ops = sql.ops;
                let admitted = admit(cx, pol, st, &mut pending, RecordFrom::Fresh);
                return settle(admitted, frame, pending, false, out, sh, st);
            }
            let memo = st.shape_memo(cx, pol, stmts);
            let mut pending = Pending::new(
                PendingKind::Simple { next: 0 },
                q.sql.into(),
                memo.stmts.clone(),
                memo.decision.clone(),
                batch,
            );
            pending.masker = memo.masker.clone();
            let admitted = admit(cx, pol, st, &mut pending, RecordFrom::Prefix(&memo.prefix));
            return settle(admitted, frame, pending, false, out, sh, st);
        }
        b'P' => {
            let FrontendMessage::Parse(p) = super::super::io::frontend(&frame)? else {
                unreachable!()
            };
            // a statement parsed again under a name has a new shape
            sh.stmt_desc.remove(p.name);
            let stmts = cx.ctx.classify.classify(p.query);
            let decision = decide_all(cx, pol, &stmts);
            if decision.action == Action::Deny {
                // decided at Parse: the statement never reaches the server, even prepared
                let mut pending = Pending::new(
                    PendingKind::Extended,
                    p.query.into(),
                    stmts,
                    decision,
                    sh.batches_sent,
                );
                let refusal = admit(cx, pol, st, &mut pending, RecordFrom::Fresh)
                    .expect_err("a denial is refused");
                refuse(out, sh, st, pending, &refusal, true)?;
            } else {
                let def = Def::new(p.query.into(), stmts, decision);
                let op = sh.names.statements.define(p.name, sh.batches_sent, def);
                sh.expects.push_back((sh.batches_sent, Expect::Parse(op)));
                out.extend_from_slice(frame.wire());
            }
        }
        b'B' => {
            let FrontendMessage::Bind(b) = super::super::io::frontend(&frame)? else {
                unreachable!()
            };
            // the portal keeps what the statement holds now
            let def = sh.names.statements.resolve(b.statement, sh.batches_sent);
            let same = st.portals.get(b.portal).is_some_and(|s| {
                s.statement == b.statement
                    && s.def.same(&def)
                    && s.formats.iter().copied().eq(b.result_formats.iter())
            });
            if !same {
                st.portals.insert(
                    b.portal.to_string(),
                    Arc::new(ExtShape {
                        portal: b.portal.to_string(),
                        statement: b.statement.to_string(),
                        formats: b.result_formats.iter().collect(),
                        def,
                        bound: true,
                    }),
                );
            }
            sh.portal_desc.remove(b.portal);
            out.extend_from_slice(frame.wire());
        }
        b'E' => {
            let FrontendMessage::Execute(e) = super::super::io::frontend(&frame)? else {
                unreachable!()
            };
            // a portal not bound through the protocol: a cursor SQL declared (decided below as
            // its DECLARE's query), or none, which the server answers with an error
            let shape = st.portals.get(e.portal).cloned().unwrap_or_else(|| {
                Arc::new(ExtShape {
                    portal: e.portal.to_string(),
                    statement: String::new(),
                    formats: Arc::from(Vec::new()),
                    def: Resolved::Missing,
                    bound: false,
                })
            });
            let batch = sh.batches_sent;
            // the definition whose request record this Execute reuses (and stores)
            let mut cached: Option<&Arc<Def>> = None;
            let mut ops = Vec::new();
            let nothing = |d: Decision| (Arc::from(""), Arc::from(Vec::new()), d);
            let (text, stmts, decision) = match &shape.def {
                Resolved::One(d) if d.touches_prepared() => {
                    // SQL PREPARE/EXECUTE/DEALLOCATE through the protocol: resolved as it runs
                    let sql = sql_prepared(cx, pol, sh, &d.stmts, &d.text, batch);
                    ops = sql.ops;
                    (d.text.clone(), sql.stmts, sql.decision)
                }
                Resolved::One(d) => {
                    cached = Some(d);
                    (d.text.clone(), d.stmts.clone(), d.decision.clone())
                }
                // a portal SQL declared (a cursor): read as what its DECLARE made
                Resolved::Missing if !shape.bound => {
                    match sh.names.cursors.resolve(e.portal, batch) {
                        Resolved::One(d) => (d.text.clone(), d.stmts.clone(), d.decision.clone()),
                        Resolved::Ambiguous => nothing(ambiguous(e.portal)),
                        Resolved::Missing => nothing(policy::nothing_to_decide()),
                    }
                }
                // bound to a statement no Parse or PREPARE of this session made: the server
                // failed the Bind (and skips this refusal with the Execute), unless something
                // hoopd cannot see (a function) made it — then it is not run undecided
                Resolved::Missing => nothing(unknown_statement(&shape.statement)),
                Resolved::Ambiguous => nothing(ambiguous(&shape.statement)),
            };
            let mut pending = Pending::new(PendingKind::Extended, text, stmts, decision, batch);
            pending.masker = Cx::masker_for(pol, &pending.decision);
            pending.ops = ops;
            let admitted = match cached {
                Some(d) => {
                    let mut record = d.record.lock().unwrap().clone();
                    let admitted = admit(cx, pol, st, &mut pending, RecordFrom::Cache(&mut record));
                    *d.record.lock().unwrap() = record;
                    admitted
                }
                None => admit(cx, pol, st, &mut pending, RecordFrom::Fresh),
            };
            if admitted.is_ok() && pending.masker.is_some() {
                describe_for_masking(sh, &shape, out)?;
            }
            pending.shape = Some(shape);
            // refused: the portal is the client's; the refusal runs instead, then skip to Sync
            return settle(admitted, frame, pending, true, out, sh, st);
        }
        b'C' => {
            if let FrontendMessage::Close(c) = super::super::io::frontend(&frame)? {
                let op = match c.target {
                    Target::Statement => {
                        sh.stmt_desc.remove(c.name);
                        if c.name.is_empty() {
                            sh.names.statements.forget_unnamed();
                            None
                        } else {
                            Some(sh.names.statements.drop_name(Some(c.name), sh.batches_sent))
                        }
                    }
                    Target::Portal => {
                        st.portals.remove(c.name);
                        sh.portal_desc.remove(c.name);
                        None
                    }
                };
                sh.expects.push_back((sh.batches_sent, Expect::Close(op)));
            }
            out.extend_from_slice(frame.wire());
        }
        b'D' => {
            if let FrontendMessage::Describe(d) = super::super::io::frontend(&frame)? {
                sh.describes.push_back(Describing {
                    batch: sh.batches_sent,
                    target: d.target,
                    name: d.name.to_string(),
                    ours: false,
                });
            }
            out.extend_from_slice(frame.wire());
        }
        b'F' => {
            let FrontendMessage::FunctionCall(f) = super::super::io::frontend(&frame)? else {
                unreachable!()
            };
            // decided, recorded and answered as one request (the server ends it with
            // ReadyForQuery, as a simple Query)
            let text: Arc<str> = format!(
                "-- fast-path function call: function oid {}, {} argument(s)",
                f.function_oid,
                f.args.len()
            )
            .into();
            let stmts: Arc<[Classification]> = Arc::from([Classification::fastpath(text.len())]);
            let decision = unmaskable(decide_all(cx, pol, &stmts), pol);
            let batch = sh.batches_sent;
            sh.batches_sent += 1;
            let mut pending = Pending::new(
                PendingKind::Simple { next: 0 },
                text,
                stmts,
                decision,
                batch,
            );
            let admitted = admit(cx, pol, st, &mut pending, RecordFrom::Fresh);
            return settle(admitted, frame, pending, false, out, sh, st);
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
    Ok(None)
}

/// Masking places a row's values by its columns' names and types, from the RowDescription the
/// rows belong to. Through the protocol rows come without one: a client that described neither
/// the portal nor its statement (a driver that knows its columns, a hand-made client) would
/// have them masked by their values alone, a column rule (`password`, `*_token`) unapplied.
/// So hoopd describes the portal itself, ahead of the Execute, and keeps the answer from the
/// client.
fn describe_for_masking(
    sh: &mut Shared,
    shape: &ExtShape,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    let known = sh.portal_desc.contains_key(&shape.portal)
        || (shape.bound && sh.stmt_desc.contains_key(&shape.statement));
    let asked = sh.describes.iter().any(|d| match d.target {
        Target::Portal => d.name == shape.portal,
        Target::Statement => shape.bound && d.name == shape.statement,
    });
    if known || asked {
        return Ok(());
    }
    crate::wire::postgres::frontend::Describe {
        target: Target::Portal,
        name: &shape.portal,
    }
    .encode(out)?;
    sh.describes.push_back(Describing {
        batch: sh.batches_sent,
        target: Target::Portal,
        name: shape.portal.clone(),
        ours: true,
    });
    Ok(())
}

/// Ends the session on a message hoopd will not take, telling the client why first (as
/// PostgreSQL does with a FATAL error, not a bare disconnect): SQLSTATE 54000 for a message
/// over the size limit, naming the setting; 08P01 for anything else malformed. Sent under the
/// client's write lock, so it lands between the server's frames.
pub(super) async fn tell_client(cx: &Cx<'_>, e: crate::wire::postgres::DecodeError) -> PgError {
    use crate::wire::postgres::DecodeError;
    let (code, message) = match &e {
        DecodeError::TooLong { len, limit, .. } => (
            "54000",
            format!(
                "hoop: a message of {len} bytes exceeds the limit of {limit} bytes ([proxy] max_client_message_bytes)"
            ),
        ),
        other => ("08P01", format!("hoop: invalid message: {other}")),
    };
    let mut out = BytesMut::new();
    let notice = crate::wire::postgres::backend::ErrorNotice {
        severity: crate::wire::postgres::backend::Severity::Fatal,
        code,
        message: &message,
        detail: None,
        hint: None,
    };
    if notice.encode_error(&mut out).is_ok() {
        let mut wr = cx.client_wr.lock().await;
        let _ = wr.write_all(&out).await;
        let _ = wr.flush().await;
    }
    PgError::ClientProtocol(e)
}

/// What becomes of an admitted request (a Query, an Execute, a fast-path call): held for
/// review (later messages wait behind it), forwarded and awaited, or refused in its place.
fn settle(
    admitted: Result<(), Refusal>,
    frame: Frame,
    pending: Pending,
    extended: bool,
    out: &mut BytesMut,
    sh: &mut Shared,
    st: &mut ClientState,
) -> Result<Option<Hold>, PgError> {
    match admitted {
        Ok(()) if pending.decision.action == Action::Review => Ok(Some(Hold {
            frame,
            pending,
            extended,
        })),
        Ok(()) => {
            out.extend_from_slice(frame.wire());
            sh.pending.push_back(pending);
            Ok(None)
        }
        Err(refusal) => refuse(out, sh, st, pending, &refusal, extended).map(|()| None),
    }
}

/// A fast-path call's result is one value with no column, so no masking profile can apply to
/// it: forwarded only under a decision whose profile is `none`. Allowed (or sent to review)
/// under any other profile, it is denied instead — fail closed, never unmasked by accident.
fn unmaskable(decision: Decision, pol: &PolicyState) -> Decision {
    if decision.action == Action::Deny || Cx::masker_for(pol, &decision).is_none() {
        return decision;
    }
    let profile = decision.mask.as_deref().unwrap_or("default");
    Decision {
        action: Action::Deny,
        message: Some(format!(
            "hoop: a fast-path function call's result cannot be masked; refused under masking profile {profile} (rule {}); a rule with mask = \"none\" can allow it",
            decision.rule
        )),
        ..decision
    }
}

/// A request's statements that define, run or drop prepared statements, resolved against the
/// session's (in order: a PREPARE earlier in the string defines what an EXECUTE later in it
/// runs).
struct SqlPrepared {
    /// Each EXECUTE described with what it runs ([`running`]); the rest as classified.
    stmts: Arc<[Classification]>,
    /// The operations registered, by statement.
    ops: Vec<(usize, OpId)>,
    /// The request's decision: over its statements so described, and at least as strict as
    /// the decisions of the definitions it runs (made when they were made), a definition's
    /// denial (what it defines could never run), a denial when what an EXECUTE runs is unknown
    /// or cannot be known yet.
    decision: Decision,
}

fn sql_prepared(
    cx: &Cx<'_>,
    pol: &Arc<PolicyState>,
    sh: &mut Shared,
    stmts: &[Classification],
    text: &str,
    batch: u64,
) -> SqlPrepared {
    let mut out = Vec::with_capacity(stmts.len());
    let mut ops = Vec::new();
    let mut floor = policy::nothing_to_decide();
    for (i, c) in stmts.iter().enumerate() {
        let Some(op) = &c.prepared else {
            out.push(c.clone());
            continue;
        };
        let cursors = op.on_cursor();
        match op {
            PreparedOp::Run(name) | PreparedOp::Fetch(name) => {
                match sh.names.of(cursors).resolve(name, batch) {
                    Resolved::One(d) => {
                        out.push(running(c, &d));
                        floor = stricter(floor, d.decision.clone());
                    }
                    // a cursor a function opened (refcursor) is the server's: read as it is
                    Resolved::Missing if cursors => out.push(c.clone()),
                    Resolved::Missing => {
                        // none in this session: the server fails it, unless something hoopd cannot
                        // see (a function) made it — then it is not run undecided
                        out.push(c.clone());
                        floor = stricter(floor, unknown_statement(name));
                    }
                    Resolved::Ambiguous => {
                        out.push(c.clone());
                        floor = stricter(floor, ambiguous(name));
                    }
                }
            }
            PreparedOp::Define(name) | PreparedOp::DeclareCursor(name) => {
                if !cursors {
                    // a description of the name's old definition must not place these rows
                    sh.stmt_desc.remove(&**name);
                }
                let stmts: Arc<[Classification]> = Arc::from([defined_by(c)]);
                let decision = decide_all(cx, pol, &stmts);
                if decision.action == Action::Deny {
                    floor = stricter(floor, decision.clone());
                }
                let def = Def::new(c.span.text(text).into(), stmts, decision);
                let names = sh.names.of(cursors);
                ops.extend(names.define(name, batch, def).map(|id| (i, id)));
                out.push(c.clone());
            }
            PreparedOp::Drop(name) | PreparedOp::CloseCursor(name) => {
                if !cursors {
                    sh.stmt_desc.remove(&**name);
                }
                let names = sh.names.of(cursors);
                ops.push((i, names.drop_name(Some(name), batch)));
                out.push(c.clone());
            }
            PreparedOp::DropAll | PreparedOp::CloseAllCursors => {
                if !cursors {
                    sh.stmt_desc.retain(|name, _| name.is_empty());
                }
                let names = sh.names.of(cursors);
                ops.push((i, names.drop_name(None, batch)));
                out.push(c.clone());
            }
        }
    }
    let stmts: Arc<[Classification]> = out.into();
    SqlPrepared {
        decision: stricter(decide_all(cx, pol, &stmts), floor),
        stmts,
        ops,
    }
}

/// The denial of an Execute of a statement the session never defined.
fn unknown_statement(name: &str) -> Decision {
    denial(
        "prepared-statement-unknown",
        format!(
            "hoop: prepared statement \"{name}\" was not made by this session's Parse or PREPARE; refused"
        ),
    )
}

/// The denial of a statement run while its name could still hold more than one definition.
fn ambiguous(name: &str) -> Decision {
    denial(
        "prepared-statement-in-flight",
        format!(
            "hoop: \"{name}\" is being redefined and the server has not yet answered; refused because what it would run cannot be known (wait for ReadyForQuery before running it)"
        ),
    )
}

/// A denial by hoopd's own rule `rule`.
fn denial(rule: &str, message: String) -> Decision {
    Decision {
        action: Action::Deny,
        rule: Arc::from(rule),
        message: Some(message),
        mask: Some(Arc::from("default")),
    }
}

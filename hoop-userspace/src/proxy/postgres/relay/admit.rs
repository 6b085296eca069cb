//! The decision point of a request: the strictest decision over its statements, the audit
//! record written before it is forwarded (write before forward), and the refusal the server runs
//! in its place when it is denied or cannot be recorded.

use std::sync::Arc;

use bytes::BytesMut;

use super::{ClientState, Cx, POSTGRES, PgError, Shared, events::Pending};
use crate::{
    audit::{EventPrefix, Prepared as AuditPrepared},
    classify::Classification,
    policy::{self, Action, Decision, PolicyState},
    wire::postgres::frontend::{Execute, Query, encode_bind, encode_parse},
};

/// A request record encoded once, valid while the policy it was masked under is in force.
#[derive(Clone)]
pub(super) struct RecordCache {
    pub(super) policy: Arc<PolicyState>,
    pub(super) record: Arc<AuditPrepared>,
}

/// The strictest decision over a string's statements: a denial wins, then a review.
pub(super) fn decide_all(cx: &Cx<'_>, pol: &PolicyState, stmts: &[Classification]) -> Decision {
    let mut review = None;
    let mut first = None;
    for s in stmts {
        let req = policy::Request {
            target: &cx.session.target.config,
            process: &cx.session.process,
            identity: &cx.session.identity,
            database: cx.who.database,
            user: cx.who.user,
            statement: s,
        };
        let d = policy::decide(pol, &req);
        match d.action {
            Action::Deny => return d,
            Action::Review if review.is_none() => review = Some(d),
            Action::Review => {}
            // of the allowed statements, one whose response is masked speaks for the string
            // (one result plan per string: masking never loses to another statement's `none`)
            _ => {
                if first
                    .as_ref()
                    .is_none_or(|f: &Decision| f.mask.is_none() && d.mask.is_some())
                {
                    first = Some(d);
                }
            }
        }
    }
    review.or(first).unwrap_or_else(policy::nothing_to_decide)
}

/// The stricter of two decisions, as over a string's statements: a denial wins, then a review;
/// of two allows, the one whose response is masked.
pub(super) fn stricter(a: Decision, b: Decision) -> Decision {
    let rank = |d: &Decision| match d.action {
        Action::Deny => 2,
        Action::Review => 1,
        _ => 0,
    };
    match rank(&a).cmp(&rank(&b)) {
        std::cmp::Ordering::Less => b,
        std::cmp::Ordering::Greater => a,
        std::cmp::Ordering::Equal if a.mask.is_none() && b.mask.is_some() => b,
        std::cmp::Ordering::Equal => a,
    }
}

/// Runs the refusal in the request's place. Simple protocol: a Query. Extended protocol: an
/// unnamed Parse/Bind/Execute whose ParseComplete and BindComplete are swallowed; the client's
/// messages up to Sync are skipped, as the server itself would after an error.
pub(super) fn refuse(
    out: &mut BytesMut,
    sh: &mut Shared,
    st: &mut ClientState,
    pending: Pending,
    refusal: &Refusal,
    extended: bool,
) -> Result<(), PgError> {
    // either way the refusal replaces the unnamed statement, as the client's own would
    sh.names.statements.forget_unnamed();
    if !extended {
        Query {
            sql: &refusal.sql(),
        }
        .encode(out)?;
        sh.pending.push_back(pending.refused(refusal.code));
        return Ok(());
    }
    encode_parse(out, "", &refusal.sql(), std::iter::empty())?;
    encode_bind(out, "", "", &[], std::iter::empty(), &[])?;
    Execute {
        portal: "",
        max_rows: 0,
    }
    .encode(out)?;
    sh.expects
        .push_back((sh.batches_sent, super::Expect::OurParse));
    sh.swallow += 1;
    st.skip_until_sync = true;
    sh.pending.push_back(pending.refused(refusal.code));
    Ok(())
}

/// Why a request does not reach the server, and the statement the server runs instead.
pub(super) struct Refusal {
    pub(super) code: &'static str,
    pub(super) message: String,
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

/// Where a request's audit record comes from.
pub(super) enum RecordFrom<'a> {
    /// Encoded whole for this request.
    Fresh,
    /// A prepared statement's: used while its policy is in force, else encoded again and
    /// stored there.
    Cache(&'a mut Option<RecordCache>),
    /// Completed from the session's prefix for this shape of request (simple protocol).
    Prefix(&'a EventPrefix),
}

/// Write before forward: the request's audit record is written first; a denied request, or
/// one whose record cannot be written, is refused.
pub(super) fn admit(
    cx: &Cx<'_>,
    pol: &Arc<PolicyState>,
    st: &mut ClientState,
    p: &mut Pending,
    from: RecordFrom<'_>,
) -> Result<(), Refusal> {
    let n = p.stmts.len().max(1);
    let appended = match from {
        RecordFrom::Fresh => p
            .request_record(cx, pol)
            .and_then(|r| cx.audit.append_prepared(&r)),
        RecordFrom::Prefix(prefix) => p
            .request_record_from(cx, pol, prefix)
            .and_then(|r| cx.audit.append_prepared(&r)),
        RecordFrom::Cache(cache) => match cache {
            Some(c) if Arc::ptr_eq(&c.policy, pol) => Ok(c.record.clone()),
            _ => p.request_record(cx, pol).map(|record| {
                let record = Arc::new(record);
                *cache = Some(RecordCache {
                    policy: pol.clone(),
                    record: record.clone(),
                });
                record
            }),
        }
        .and_then(|r| cx.audit.append_prepared(&r)),
    };
    match appended {
        Ok(r) => {
            p.request_seq = Some(r.seq());
            st.receipts.push(r);
            cx.ctx
                .metrics
                .decided(POSTGRES, p.decision.action.as_str(), n);
        }
        Err(e) => {
            cx.ctx.metrics.decided(POSTGRES, "refused", n);
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

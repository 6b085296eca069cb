//! The server-to-client direction, frame by frame: results masked as they stream, Describe
//! answers kept for later Executes, completions attributed to the statement they finish, and
//! the refusals hoopd staged shown as the errors they stand for.

use bytes::BytesMut;

use super::events::{Pending, PendingKind, StatementOutcome};
use super::results::data_row;
use super::{Cx, Expect, PgError, Shared, results};
use crate::mask::pg::mask_error_notice;
use crate::wire::postgres::{
    BackendMessage, Frame,
    backend::{ErrorNotice, Severity},
    frontend::Target,
};

pub(super) fn on_server_frame(
    cx: &Cx<'_>,
    sh: &mut Shared,
    frame: &Frame,
    out: &mut BytesMut,
    finished: &mut Vec<(Pending, StatementOutcome)>,
) -> Result<(), PgError> {
    match frame.tag() {
        b'D' => return data_row(cx, sh, frame, out),
        b'T' => {
            let simple = matches!(
                sh.pending.front().map(|p| &p.kind),
                Some(PendingKind::Simple { .. })
            );
            if simple {
                // a simple query's result: its rows follow
                let masker = sh.pending.front().and_then(|p| p.masker.clone());
                sh.plan = match masker {
                    Some(m) => Some(results::simple_plan(&m, frame, &mut sh.plan_memo)?),
                    None => None,
                };
            } else if let Some(d) = sh.describes.pop_front() {
                // a Describe's answer: kept for the Executes that follow
                match d.target {
                    Target::Statement => sh.stmt_desc.insert(d.name, frame.clone()),
                    Target::Portal => sh.portal_desc.insert(d.name, frame.clone()),
                };
                if d.ours {
                    return Ok(());
                }
            }
        }
        b'n' => {
            if let Some(d) = sh.describes.pop_front() {
                match d.target {
                    Target::Statement => sh.stmt_desc.remove(&d.name),
                    Target::Portal => sh.portal_desc.remove(&d.name),
                };
                if d.ours {
                    return Ok(());
                }
            }
        }
        b'H' => {
            // CopyOutResponse: overall format 1 is binary, which masking cannot read
            let binary = frame.body().first() == Some(&1);
            let masked = sh.pending.front().is_some_and(|p| p.masker.is_some());
            if binary && masked {
                return Err(PgError::ClientRefused(
                    "binary COPY TO is refused while responses are masked".into(),
                ));
            }
        }
        b'd' => {
            if let Some(m) = sh.pending.front().and_then(|p| p.masker.as_ref()) {
                // COPY TO sends one row per CopyData (text or CSV): masked as text
                let masked = m.mask_bytes(frame.body());
                if let std::borrow::Cow::Owned(data) = masked {
                    crate::wire::postgres::copy::encode_copy_data(out, &data)?;
                    return Ok(());
                }
            }
        }
        b'N' => {
            let pol = cx.pol();
            let m = sh
                .pending
                .front()
                .and_then(|p| p.masker.clone())
                .unwrap_or_else(|| pol.masks.default_profile().clone());
            mask_error_notice(&m, frame.wire(), out)
                .map_err(|e| PgError::UpstreamMasking(e.to_string()))?;
            return Ok(());
        }
        b'1' => match sh.expects.pop_front().map(|(_, e)| e) {
            // the ParseComplete of a refusal hoopd staged
            Some(Expect::OurParse) => return Ok(()),
            Some(Expect::Parse(Some(id))) => sh.names.confirm(&id),
            _ => {}
        },
        b'2' if sh.swallow > 0 => {
            sh.swallow -= 1;
            return Ok(());
        }
        b'3' => {
            if let Some((_, Expect::Close(Some(id)))) = sh.expects.pop_front() {
                sh.names.confirm(&id);
            }
        }
        b'C' | b'I' | b's' | b'V' => {
            sh.plan = None;
            let tag = match BackendMessage::parse(frame.raw()).map_err(PgError::UpstreamProtocol)? {
                BackendMessage::CommandComplete(c) => c.tag.to_string(),
                BackendMessage::PortalSuspended => "suspended".into(),
                // a fast-path call's result (forwarded only unmasked by decision)
                BackendMessage::FunctionCallResponse(_) => "FUNCTION CALL".into(),
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
            // the server's own error: its text can quote values (a duplicate key, a bad input)
            let masker = sh.pending.front().and_then(|p| p.masker.clone());
            sh.plan = None;
            complete_front(sh, StatementOutcome::Error(code), finished);
            if let Some(m) = masker {
                mask_error_notice(&m, frame.wire(), out)
                    .map_err(|e| PgError::UpstreamMasking(e.to_string()))?;
                return Ok(());
            }
        }
        b'Z' => {
            sh.plan = None;
            sh.batches_done += 1;
            // Describes of answered batches that got no answer (an error skipped them)
            while sh
                .describes
                .front()
                .is_some_and(|d| d.batch < sh.batches_done)
            {
                sh.describes.pop_front();
            }
            // Parses and Closes an error skipped; what the server did not confirm failed
            while sh
                .expects
                .front()
                .is_some_and(|(b, _)| *b < sh.batches_done)
            {
                sh.expects.pop_front();
            }
            sh.names.batches_done(sh.batches_done);
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
    if matches!(outcome, StatementOutcome::Complete(_)) && !front.ops.is_empty() {
        // what the statement did to the session's prepared statements took effect
        let done = match front.kind {
            PendingKind::Simple { next } => Some(next),
            PendingKind::Extended => None,
            _ => Some(usize::MAX),
        };
        for (i, id) in &front.ops {
            if done.is_none_or(|d| d == *i) {
                sh.names.confirm(id);
            }
        }
    }
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

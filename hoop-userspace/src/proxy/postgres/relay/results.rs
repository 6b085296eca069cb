//! Result rows on their way to the client: masked by the request's profile with a plan built
//! from the RowDescription the rows belong to, and the first one kept (masked) for the audit
//! trail.

use std::{collections::HashMap, sync::Arc};

use bytes::BytesMut;

use super::{Cx, Shared, events::Pending};
use crate::{
    mask::{
        Masker,
        pg::{ColumnSpec, RowPlan},
    },
    proxy::postgres::PgError,
    wire::postgres::{BackendMessage, Format, Frame},
};

/// A result row: counted, masked by the request's profile, and the first one kept (masked) as
/// the response record's excerpt.
pub(super) fn data_row(
    cx: &Cx<'_>,
    sh: &mut Shared,
    frame: &Frame,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    let Some(p) = sh.pending.front_mut() else {
        out.extend_from_slice(frame.wire());
        return Ok(());
    };
    p.rows += 1;
    let start = out.len();
    match &p.masker {
        Some(m) => {
            if sh.plan.is_none() {
                sh.plan = Some(plan_for(
                    m,
                    p,
                    &sh.stmt_desc,
                    &sh.portal_desc,
                    frame,
                    &mut sh.plan_memo,
                )?);
            }
            let plan = sh.plan.as_ref().expect("set above");
            if plan.inspects() {
                plan.mask_data_row(frame.wire(), out)
                    .map_err(|e| PgError::UpstreamMasking(e.to_string()))?;
            } else {
                out.extend_from_slice(frame.wire());
            }
        }
        None => out.extend_from_slice(frame.wire()),
    }
    if p.excerpt.is_none() {
        let row = excerpt(&out[start..]);
        // the audit trail never gets a value its default profile would mask
        let pol = cx.pol();
        p.excerpt = Some(pol.masks.audit().mask_text(&row).into_owned());
    }
    Ok(())
}

/// The masking plan for rows that came without a RowDescription of their own: the Execute's
/// portal (Describe P) or statement (Describe S, with Bind's result formats); failing both, every
/// column is read as text in the format Bind asked for — masking never skips a row it cannot
/// place.
fn plan_for(
    m: &Arc<Masker>,
    p: &Pending,
    stmt_desc: &HashMap<String, Frame>,
    portal_desc: &HashMap<String, Frame>,
    row: &Frame,
    memo: &mut Option<(PlanKey, Arc<RowPlan>)>,
) -> Result<Arc<RowPlan>, PgError> {
    let shape = p.shape.as_deref();
    let no_formats = || Arc::from(Vec::new());
    let formats = shape.map_or_else(no_formats, |s| s.formats.clone());
    if let Some(f) = shape.and_then(|s| portal_desc.get(&s.portal)) {
        let key = PlanKey::new(m, PlanSource::Described(f.clone()));
        return memoized(memo, key, || described_plan(m, f));
    }
    if let Some((s, f)) = shape.and_then(|s| stmt_desc.get(&s.statement).map(|f| (s, f))) {
        let key = PlanKey::new(m, PlanSource::Statement(f.clone(), formats.clone()));
        return memoized(memo, key, || {
            let BackendMessage::RowDescription(rd) =
                BackendMessage::parse(f.raw()).map_err(PgError::UpstreamProtocol)?
            else {
                unreachable!("only RowDescriptions are stored")
            };
            let cols: Vec<ColumnSpec<'_>> = rd
                .fields()
                .enumerate()
                .map(|(i, f)| ColumnSpec {
                    name: f.name,
                    type_oid: f.type_oid,
                    format: s.format(i),
                })
                .collect();
            Ok(RowPlan::new(m.clone(), cols))
        });
    }
    let columns = row
        .body()
        .get(..2)
        .map_or(0, |c| i16::from_be_bytes([c[0], c[1]]).max(0) as usize);
    let key = PlanKey::new(m, PlanSource::Columns(columns, formats.clone()));
    memoized(memo, key, || {
        const TEXT_OID: u32 = 25;
        let cols: Vec<ColumnSpec<'_>> = (0..columns)
            .map(|i| ColumnSpec {
                name: "",
                type_oid: TEXT_OID,
                format: shape.map_or(Format::Text, |s| s.format(i)),
            })
            .collect();
        Ok(RowPlan::new(m.clone(), cols))
    })
}

/// The plan of a simple query's result, from its RowDescription.
pub(super) fn simple_plan(
    m: &Arc<Masker>,
    rd: &Frame,
    memo: &mut Option<(PlanKey, Arc<RowPlan>)>,
) -> Result<Arc<RowPlan>, PgError> {
    let key = PlanKey::new(m, PlanSource::Described(rd.clone()));
    memoized(memo, key, || described_plan(m, rd))
}

fn described_plan(m: &Arc<Masker>, f: &Frame) -> Result<RowPlan, PgError> {
    match BackendMessage::parse(f.raw()).map_err(PgError::UpstreamProtocol)? {
        BackendMessage::RowDescription(rd) => {
            Ok(RowPlan::from_row_description(m.clone(), &rd, None))
        }
        _ => unreachable!("tag T is RowDescription"),
    }
}

/// What a masking plan is built from: a session running the same statement again (every
/// transaction of a workload) gets the last plan back instead of a new one per result.
pub(super) struct PlanKey {
    /// The profile's address (the memo's plan holds the profile, so it cannot be reused).
    masker: usize,
    source: PlanSource,
}

#[derive(PartialEq)]
enum PlanSource {
    /// From this RowDescription, formats as it states them.
    Described(Frame),
    /// From a statement's RowDescription with Bind's result formats.
    Statement(Frame, Arc<[Format]>),
    /// Every column as text, in Bind's formats.
    Columns(usize, Arc<[Format]>),
}

impl PlanKey {
    fn new(m: &Arc<Masker>, source: PlanSource) -> Self {
        PlanKey {
            masker: Arc::as_ptr(m) as usize,
            source,
        }
    }
}

fn memoized(
    memo: &mut Option<(PlanKey, Arc<RowPlan>)>,
    key: PlanKey,
    build: impl FnOnce() -> Result<RowPlan, PgError>,
) -> Result<Arc<RowPlan>, PgError> {
    if let Some((k, plan)) = memo
        && k.masker == key.masker
        && k.source == key.source
    {
        return Ok(plan.clone());
    }
    let plan = Arc::new(build()?);
    *memo = Some((key, plan.clone()));
    Ok(plan)
}

/// A short rendering of a DataRow for the audit trail: text values as they are, binary ones by
/// their size, cut at 200 characters.
fn excerpt(wire: &[u8]) -> String {
    const MAX: usize = 200;
    let mut s = String::new();
    let body = wire.get(5..).unwrap_or_default();
    let n = body
        .get(..2)
        .map_or(0, |c| i16::from_be_bytes([c[0], c[1]]).max(0) as usize);
    let mut pos = 2;
    for i in 0..n {
        if s.len() >= MAX {
            break;
        }
        if i > 0 {
            s.push_str(" | ");
        }
        let Some(len) = body.get(pos..pos + 4) else {
            break;
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        pos += 4;
        if len < 0 {
            s.push_str("NULL");
            continue;
        }
        let Some(v) = body.get(pos..pos + len as usize) else {
            break;
        };
        pos += len as usize;
        match std::str::from_utf8(v) {
            Ok(t) if !t.chars().any(char::is_control) => s.push_str(t),
            _ => s.push_str(&format!("<{len} bytes>")),
        }
    }
    if s.len() > MAX {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

//! PostgreSQL adapter: masks DataRow values in text and binary formats, and the text fields of
//! NoticeResponse/ErrorResponse, re-encoding with recomputed lengths.
//!
//! The relay builds one [`RowPlan`] per result (from RowDescription, with the formats Bind asked
//! for when the description came from a statement Describe) and calls
//! [`RowPlan::mask_data_row`] for every DataRow. A row with nothing to mask is appended to the
//! output as received: one pass over its column lengths, no allocation.
//!
//! The DataRow walk is hand-written rather than `BackendMessage::parse` + `Values::iter`: those
//! validate in one pass and iterate in a second; this path runs for every row, so it validates
//! while it inspects. Errors are the upstream's (a malformed or mismatched row): the relay must
//! close the session, as for any upstream protocol error.
mod array;
mod notice;
pub mod types;

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::Masker;
use super::structured::Elem;
use crate::wire::postgres::backend::RowDescription;
use crate::wire::postgres::{Format, Formats};
use types::ColAction;

pub use notice::mask_error_notice;

/// A result column as the plan needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSpec<'a> {
    pub name: &'a str,
    pub type_oid: u32,
    pub format: Format,
}

/// Why a message could not be masked. Never a partial write: `out` is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("upstream {what} is malformed: {reason}")]
    UpstreamMalformed {
        what: &'static str,
        reason: &'static str,
    },
    #[error("upstream DataRow has {row} columns, its RowDescription {plan}")]
    ColumnCountMismatch { plan: usize, row: usize },
    #[error("masked {what} would exceed the protocol's message size")]
    TooLong { what: &'static str },
}

/// What masking did to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Appended as received.
    Unchanged,
    /// Appended re-encoded, with masked values.
    Masked,
}

/// How to mask the rows of one result: an action per column, decided once.
#[derive(Debug, Clone)]
pub struct RowPlan {
    masker: Arc<Masker>,
    cols: Box<[ColAction]>,
    inspects: bool,
}

impl RowPlan {
    pub fn new<'a>(masker: Arc<Masker>, columns: impl IntoIterator<Item = ColumnSpec<'a>>) -> Self {
        let cols: Box<[ColAction]> = columns
            .into_iter()
            .map(|c| types::action(c.type_oid, c.format, masker.column_masked(c.name)))
            .collect();
        let inspects = cols.iter().any(|c| *c != ColAction::Pass);
        RowPlan {
            masker,
            cols,
            inspects,
        }
    }

    /// From a RowDescription. `result_formats`: the Bind's result-format codes when the
    /// description came from Describe of a statement (whose formats are all text); `None` to use
    /// the formats in the description (simple query, Describe of a portal).
    pub fn from_row_description(
        masker: Arc<Masker>,
        rd: &RowDescription<'_>,
        result_formats: Option<&Formats<'_>>,
    ) -> Self {
        let cols = rd.fields().enumerate().map(|(i, f)| ColumnSpec {
            name: f.name,
            type_oid: f.type_oid,
            format: result_formats.map_or(f.format, |fs| fs.for_value(i)),
        });
        RowPlan::new(masker, cols.collect::<Vec<_>>())
    }

    /// Whether any column can change (if not, rows can be forwarded without calling in).
    pub fn inspects(&self) -> bool {
        self.inspects
    }

    pub fn len(&self) -> usize {
        self.cols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }

    /// Appends DataRow `wire` (the whole frame: `'D'`, length, body) to `out`, masked. On error
    /// nothing is appended.
    pub fn mask_data_row(&self, wire: &[u8], out: &mut BytesMut) -> Result<Outcome, MaskError> {
        let body = frame_body(wire, b'D', "DataRow")?;
        let count = body.get(..2).ok_or(malformed("truncated column count"))?;
        let count = i16::from_be_bytes([count[0], count[1]]);
        if usize::try_from(count).ok() != Some(self.cols.len()) {
            return Err(MaskError::ColumnCountMismatch {
                plan: self.cols.len(),
                row: count.max(0) as usize,
            });
        }
        let mut pos = 2;
        for (i, col) in self.cols.iter().enumerate() {
            let (value, next) = read_value(body, pos)?;
            if let Some(v) = value
                && *col != ColAction::Pass
                && let Some(new) = self.mask_value(col, v)
            {
                return self.rewrite(wire, body, (i, pos, next), new, out);
            }
            pos = next;
        }
        if pos != body.len() {
            return Err(malformed("bytes after the last column"));
        }
        out.extend_from_slice(wire);
        Ok(Outcome::Unchanged)
    }

    /// Slow path, from column `i` (at `pos..next` in `body`) whose new value is `first`.
    fn rewrite(
        &self,
        wire: &[u8],
        body: &[u8],
        (i, pos, next): (usize, usize, usize),
        first: NewValue<'_>,
        out: &mut BytesMut,
    ) -> Result<Outcome, MaskError> {
        let start = out.len();
        out.reserve(wire.len() + 64);
        out.put_u8(b'D');
        out.put_i32(0);
        out.put_slice(&body[..pos]);
        let result = (|| {
            put_value(out, first)?;
            let mut pos = next;
            for col in &self.cols[i + 1..] {
                let (value, next) = read_value(body, pos)?;
                let new = match (value, col) {
                    (None, _) | (_, ColAction::Pass) => None,
                    (Some(v), col) => self.mask_value(col, v),
                };
                match new {
                    Some(new) => put_value(out, new)?,
                    None => out.put_slice(&body[pos..next]),
                }
                pos = next;
            }
            if pos != body.len() {
                return Err(malformed("bytes after the last column"));
            }
            let len = i32::try_from(out.len() - start - 1)
                .map_err(|_| MaskError::TooLong { what: "DataRow" })?;
            out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
            Ok(Outcome::Masked)
        })();
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// The replacement for non-NULL value `v` of a column with action `col`, if it changes.
    fn mask_value<'p>(&'p self, col: &'p ColAction, v: &[u8]) -> Option<NewValue<'p>> {
        let m = &*self.masker;
        let owned = |o: Option<Vec<u8>>| o.map(NewValue::Owned);
        match col {
            ColAction::Pass => None,
            ColAction::Text(elem) => owned(m.mask_elem(*elem, v)),
            ColAction::TextArray(elem) => owned(m.mask_text_array(v, *elem)),
            ColAction::BinaryArray(elem) => match array::mask_binary_array(m, v, *elem) {
                Ok(o) => owned(o),
                Err(array::BadArray) => Some(NewValue::Owned(bad_array(v, *elem))),
            },
            ColAction::Whole(None) => Some(NewValue::Null),
            ColAction::Whole(Some(w)) => (**w != *v).then_some(NewValue::Borrowed(w)),
        }
    }
}

/// A binary array that would not decode is replaced by an empty one of its element type (read
/// from the header when present, else the element kind's base type).
fn bad_array(v: &[u8], elem: Elem) -> Vec<u8> {
    let elem_oid = match v.get(8..12) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => match elem {
            Elem::Plain => types::oid::TEXT,
            Elem::Json => types::oid::JSON,
            Elem::JsonbBinary => types::oid::JSONB,
        },
    };
    types::empty_array(elem_oid).to_vec()
}

enum NewValue<'p> {
    Null,
    Borrowed(&'p [u8]),
    Owned(Vec<u8>),
}

fn put_value(out: &mut BytesMut, v: NewValue<'_>) -> Result<(), MaskError> {
    let bytes: &[u8] = match &v {
        NewValue::Null => {
            out.put_i32(-1);
            return Ok(());
        }
        NewValue::Borrowed(b) => b,
        NewValue::Owned(b) => b,
    };
    let n = i32::try_from(bytes.len()).map_err(|_| MaskError::TooLong { what: "DataRow" })?;
    out.put_i32(n);
    out.put_slice(bytes);
    Ok(())
}

fn malformed(reason: &'static str) -> MaskError {
    MaskError::UpstreamMalformed {
        what: "DataRow",
        reason,
    }
}

/// The value at `pos` (`None` = NULL) and where the next one starts.
#[inline]
fn read_value(body: &[u8], pos: usize) -> Result<(Option<&[u8]>, usize), MaskError> {
    let len = body
        .get(pos..pos + 4)
        .ok_or(malformed("truncated column length"))?;
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    let start = pos + 4;
    if len == -1 {
        return Ok((None, start));
    }
    let n = usize::try_from(len).map_err(|_| malformed("negative column length"))?;
    let end = start
        .checked_add(n)
        .filter(|&e| e <= body.len())
        .ok_or(malformed("column runs past the message"))?;
    Ok((Some(&body[start..end]), end))
}

/// The body of frame `wire` after checking its type byte and length field.
fn frame_body<'a>(wire: &'a [u8], tag: u8, what: &'static str) -> Result<&'a [u8], MaskError> {
    let bad = |reason| MaskError::UpstreamMalformed { what, reason };
    let header = wire
        .first_chunk::<5>()
        .ok_or(bad("shorter than its header"))?;
    if header[0] != tag {
        return Err(bad("unexpected message type"));
    }
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if usize::try_from(len).ok() != Some(wire.len() - 1) {
        return Err(bad("length field does not match the frame"));
    }
    Ok(&wire[5..])
}

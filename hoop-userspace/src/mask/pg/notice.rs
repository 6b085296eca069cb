//! NoticeResponse and ErrorResponse: every human-readable field (message, detail, hint, where,
//! internal query, object names...) is masked as free text; the fields clients act on —
//! severity, SQLSTATE, positions, source file/line/routine — pass untouched.
use bytes::{BufMut, BytesMut};

use super::{MaskError, Outcome, frame_body};
use crate::mask::Masker;
use crate::wire::postgres::backend::field;

/// Fields never masked: clients parse them, and they carry no data.
const STRUCTURAL: &[u8] = &[
    field::SEVERITY,
    field::SEVERITY_RAW,
    field::CODE,
    field::POSITION,
    b'p', // internal position
    b'F', // source file
    b'L', // source line
    b'R', // source routine
];

/// Appends ErrorResponse/NoticeResponse `wire` (whole frame, tag `E` or `N`) to `out` with its
/// text fields masked. On error nothing is appended.
pub fn mask_error_notice(
    masker: &Masker,
    wire: &[u8],
    out: &mut BytesMut,
) -> Result<Outcome, MaskError> {
    let (tag, what) = match wire.first() {
        Some(b'N') => (b'N', "NoticeResponse"),
        _ => (b'E', "ErrorResponse"),
    };
    let body = frame_body(wire, tag, what)?;
    let bad = |reason| MaskError::UpstreamMalformed { what, reason };
    // First pass: validate, and find whether anything changes.
    let mut changed = false;
    for f in fields(body) {
        let (code, value) = f.map_err(bad)?;
        if !STRUCTURAL.contains(&code) && !changed {
            changed = masker.mask_plain(value).is_some();
        }
    }
    if !changed {
        out.extend_from_slice(wire);
        return Ok(Outcome::Unchanged);
    }
    let start = out.len();
    out.reserve(wire.len() + 32);
    out.put_u8(tag);
    out.put_i32(0);
    for f in fields(body) {
        let (code, value) = f.map_err(bad)?;
        out.put_u8(code);
        match (STRUCTURAL.contains(&code), masker.mask_plain(value)) {
            // Replacements hold no NUL (custom ones are checked at compile), so the C string holds.
            (false, Some(m)) => out.put_slice(&m),
            _ => out.put_slice(value),
        }
        out.put_u8(0);
    }
    out.put_u8(0);
    let Ok(len) = i32::try_from(out.len() - start - 1) else {
        out.truncate(start);
        return Err(MaskError::TooLong { what });
    };
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    Ok(Outcome::Masked)
}

/// The `(code, value)` fields of a body, then a check that the terminator ends it.
fn fields(body: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), &'static str>> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let r = rest?;
        let Some((&code, tail)) = r.split_first() else {
            rest = None;
            return Some(Err("missing terminator"));
        };
        if code == 0 {
            rest = None;
            return (!tail.is_empty()).then_some(Err("bytes after the terminator"));
        }
        let Some(end) = memchr::memchr(0, tail) else {
            rest = None;
            return Some(Err("unterminated field"));
        };
        rest = Some(&tail[end + 1..]);
        Some(Ok((code, &tail[..end])))
    })
}

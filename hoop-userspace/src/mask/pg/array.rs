//! Binary-format arrays (`array_send`): header, dimensions, then length-prefixed elements.
//! Textual elements are masked one by one and the array rebuilt with recomputed lengths.
use super::super::Masker;
use super::super::structured::Elem;

/// At most this many dimensions (PostgreSQL's `MAXDIM`).
const MAXDIM: usize = 6;

/// Why a binary array could not be decoded. PostgreSQL never sends one; the caller masks the
/// whole value rather than forward something it could not inspect.
#[derive(Debug)]
pub(crate) struct BadArray;

/// Masks the textual elements of binary array `v`; `Ok(None)` when nothing changed.
pub(crate) fn mask_binary_array(
    m: &Masker,
    v: &[u8],
    elem: Elem,
) -> Result<Option<Vec<u8>>, BadArray> {
    let i32_at = |at: usize| -> Result<i32, BadArray> {
        let b = v.get(at..at + 4).ok_or(BadArray)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let ndim = usize::try_from(i32_at(0)?).map_err(|_| BadArray)?;
    if ndim > MAXDIM {
        return Err(BadArray);
    }
    let mut items: usize = if ndim == 0 { 0 } else { 1 };
    for d in 0..ndim {
        let len = usize::try_from(i32_at(12 + d * 8)?).map_err(|_| BadArray)?;
        items = items.checked_mul(len).ok_or(BadArray)?;
    }
    let header = 12 + ndim * 8;
    if header > v.len() {
        return Err(BadArray);
    }
    // Each element takes at least its 4-byte length: bounds the count before the walk.
    if items > (v.len() - header) / 4 {
        return Err(BadArray);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut pos = header;
    for _ in 0..items {
        let len = i32_at(pos)?;
        let start = pos + 4;
        let (value, next) = match len {
            -1 => (None, start),
            n => {
                let n = usize::try_from(n).map_err(|_| BadArray)?;
                let end = start
                    .checked_add(n)
                    .filter(|&e| e <= v.len())
                    .ok_or(BadArray)?;
                (Some(&v[start..end]), end)
            }
        };
        let masked = value.and_then(|e| m.mask_elem(elem, e));
        match (&mut out, masked) {
            (None, None) => {}
            (None, Some(new)) => {
                let mut o = Vec::with_capacity(v.len() + 16);
                o.extend_from_slice(&v[..pos]);
                put_elem(&mut o, &new)?;
                out = Some(o);
            }
            (Some(o), Some(new)) => put_elem(o, &new)?,
            (Some(o), None) => o.extend_from_slice(&v[pos..next]),
        }
        pos = next;
    }
    if pos != v.len() {
        return Err(BadArray);
    }
    Ok(out)
}

fn put_elem(o: &mut Vec<u8>, e: &[u8]) -> Result<(), BadArray> {
    let n = i32::try_from(e.len()).map_err(|_| BadArray)?;
    o.extend_from_slice(&n.to_be_bytes());
    o.extend_from_slice(e);
    Ok(())
}

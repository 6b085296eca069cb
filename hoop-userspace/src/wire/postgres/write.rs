//! Frame writing helpers: the length field is patched after the body, so it is
//! always recomputed from what was actually written.
use bytes::{BufMut, BytesMut};

use super::error::EncodeError;

/// Writes one frame into `dst`: optional type byte, Int32 length, then whatever
/// `body` writes. On error `dst` is truncated back, so no partial frame leaks out.
pub(crate) fn frame(
    dst: &mut BytesMut,
    tag: Option<u8>,
    body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = dst.len();
    if let Some(tag) = tag {
        dst.put_u8(tag);
    }
    let len_at = dst.len();
    dst.put_i32(0);
    if let Err(e) = body(dst) {
        dst.truncate(start);
        return Err(e);
    }
    let len = dst.len() - len_at;
    let Ok(len32) = i32::try_from(len) else {
        dst.truncate(start);
        return Err(EncodeError::TooLong { len });
    };
    dst[len_at..len_at + 4].copy_from_slice(&len32.to_be_bytes());
    Ok(())
}

/// Infallible variant for fixed-size messages.
pub(crate) fn fixed(dst: &mut BytesMut, tag: u8, body: &[u8]) {
    dst.reserve(5 + body.len());
    dst.put_u8(tag);
    // Bodies passed here are a handful of bytes, so the cast cannot truncate.
    dst.put_i32(4 + body.len() as i32);
    dst.put_slice(body);
}

pub(crate) fn cstr(dst: &mut BytesMut, s: &str, field: &'static str) -> Result<(), EncodeError> {
    cbytes(dst, s.as_bytes(), field)
}

pub(crate) fn cbytes(dst: &mut BytesMut, s: &[u8], field: &'static str) -> Result<(), EncodeError> {
    if s.contains(&0) {
        return Err(EncodeError::NulInString { field });
    }
    dst.put_slice(s);
    dst.put_u8(0);
    Ok(())
}

pub(crate) fn count(dst: &mut BytesMut, n: usize, field: &'static str) -> Result<(), EncodeError> {
    let n16 = i16::try_from(n).map_err(|_| EncodeError::TooMany { field, count: n })?;
    dst.put_i16(n16);
    Ok(())
}

/// Int32 length (-1 for NULL) followed by the value bytes.
pub(crate) fn value(dst: &mut BytesMut, v: Option<&[u8]>) -> Result<(), EncodeError> {
    match v {
        None => dst.put_i32(-1),
        Some(v) => {
            let n = i32::try_from(v.len()).map_err(|_| EncodeError::TooLong { len: v.len() })?;
            dst.put_i32(n);
            dst.put_slice(v);
        }
    }
    Ok(())
}

//! Bounds-checked cursor over one message body; every read failure is a typed error.
use super::error::{DecodeError, Direction, Tag};

/// Reads big-endian fields from a message body. All methods return typed errors
/// instead of panicking, so hostile bodies cannot take the daemon down.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    dir: Direction,
    tag: Tag,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], dir: Direction, tag: u8) -> Self {
        Reader {
            buf,
            dir,
            tag: Tag(tag),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn truncated(&self, field: &'static str) -> DecodeError {
        DecodeError::Truncated {
            dir: self.dir,
            tag: self.tag,
            field,
        }
    }

    pub(crate) fn invalid(&self, field: &'static str, value: i64) -> DecodeError {
        DecodeError::InvalidValue {
            dir: self.dir,
            tag: self.tag,
            field,
            value,
        }
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(self.truncated(field));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.bytes(1, field)?[0])
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        let b = self.bytes(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let b = self.bytes(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A non-negative i16 count (the protocol sends counts as signed Int16).
    pub(crate) fn count(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = self.i16(field)?;
        usize::try_from(n).map_err(|_| self.invalid(field, n.into()))
    }

    /// Bytes up to (not including) the next NUL; consumes the NUL.
    pub(crate) fn cbytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let Some(end) = self.buf.iter().position(|&b| b == 0) else {
            return Err(self.truncated(field));
        };
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let raw = self.cbytes(field)?;
        self.utf8(raw, field)
    }

    pub(crate) fn utf8(&self, raw: &'a [u8], field: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 {
            dir: self.dir,
            tag: self.tag,
            field,
        })
    }

    /// A length-prefixed value: Int32 length (-1 = NULL) then that many bytes.
    pub(crate) fn value(&mut self, field: &'static str) -> Result<Option<&'a [u8]>, DecodeError> {
        let len = self.i32(field)?;
        if len == -1 {
            return Ok(None);
        }
        let n = usize::try_from(len).map_err(|_| self.invalid(field, len.into()))?;
        self.bytes(n, field).map(Some)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Succeeds only if the whole body was consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                dir: self.dir,
                tag: self.tag,
                extra: self.buf.len(),
            })
        }
    }
}

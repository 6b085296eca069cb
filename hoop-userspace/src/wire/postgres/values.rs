//! Validated list views shared by several messages: format codes, OIDs and
//! length-prefixed values. Validation happens once at decode; iteration is then
//! infallible and allocation-free.
use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::read::Reader;
use super::write;

/// A value format code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    pub fn code(self) -> i16 {
        match self {
            Format::Text => 0,
            Format::Binary => 1,
        }
    }

    fn from_code(code: i16) -> Option<Format> {
        match code {
            0 => Some(Format::Text),
            1 => Some(Format::Binary),
            _ => None,
        }
    }
}

/// A list of Int16 format codes, each checked to be 0 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats<'a>(&'a [u8]);

impl<'a> Formats<'a> {
    pub(crate) fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        let n = r.count(field)?;
        let raw = r.bytes(n * 2, field)?;
        for pair in raw.chunks_exact(2) {
            let code = i16::from_be_bytes([pair[0], pair[1]]);
            if Format::from_code(code).is_none() {
                return Err(r.invalid(field, code.into()));
            }
        }
        Ok(Formats(raw))
    }

    pub fn len(&self) -> usize {
        self.0.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<Format> {
        let b = self.0.get(i * 2..i * 2 + 2)?;
        // Codes were validated in `read`; Text is only a fallback for the impossible case.
        Some(Format::from_code(i16::from_be_bytes([b[0], b[1]])).unwrap_or(Format::Text))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Format> + 'a {
        let raw = self.0;
        (0..raw.len() / 2).map(move |i| Formats(raw).get(i).unwrap_or(Format::Text))
    }

    /// Writes the count and codes back unchanged.
    pub(crate) fn put(&self, dst: &mut BytesMut) {
        // The count came from an Int16 field, so it fits.
        dst.put_i16(self.len() as i16);
        dst.put_slice(self.0);
    }

    /// The format of value `i` under the protocol's rule: no codes means all
    /// text, one code applies to every value, otherwise one code per value.
    pub fn for_value(&self, i: usize) -> Format {
        match self.len() {
            0 => Format::Text,
            1 => self.get(0).unwrap_or(Format::Text),
            _ => self.get(i).unwrap_or(Format::Text),
        }
    }
}

pub(crate) fn put_formats(
    dst: &mut BytesMut,
    formats: &[Format],
    field: &'static str,
) -> Result<(), EncodeError> {
    write::count(dst, formats.len(), field)?;
    for f in formats {
        dst.put_i16(f.code());
    }
    Ok(())
}

/// A list of Int32 type OIDs (0 = unspecified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oids<'a>(&'a [u8]);

impl<'a> Oids<'a> {
    pub(crate) fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        let n = r.count(field)?;
        Ok(Oids(r.bytes(n * 4, field)?))
    }

    pub fn len(&self) -> usize {
        self.0.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.0
            .chunks_exact(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A counted list of length-prefixed values where length -1 is SQL NULL, as in
/// Bind parameters and DataRow columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Values<'a> {
    count: usize,
    raw: &'a [u8],
}

impl<'a> Values<'a> {
    pub(crate) fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, DecodeError> {
        let count = r.count(field)?;
        let mut probe = r.clone();
        let before = probe.remaining();
        for _ in 0..count {
            probe.value(field)?;
        }
        let raw = r.bytes(before - probe.remaining(), field)?;
        Ok(Values { count, raw })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The values in order; `None` is NULL.
    pub fn iter(&self) -> ValueIter<'a> {
        ValueIter {
            remaining: self.count,
            raw: self.raw,
        }
    }

    /// Total bytes of the encoded values, for sizing a rewrite buffer.
    pub fn encoded_len(&self) -> usize {
        self.raw.len()
    }
}

impl<'a> IntoIterator for Values<'a> {
    type Item = Option<&'a [u8]>;
    type IntoIter = ValueIter<'a>;
    fn into_iter(self) -> ValueIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Values`].
#[derive(Debug, Clone)]
pub struct ValueIter<'a> {
    remaining: usize,
    raw: &'a [u8],
}

impl<'a> Iterator for ValueIter<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let (len, rest) = self.raw.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        let Ok(n) = usize::try_from(len) else {
            self.raw = rest;
            return Some(None);
        };
        // Lengths were validated in `Values::read`; stop rather than panic if not.
        let value = rest.get(..n)?;
        self.raw = &rest[n..];
        Some(Some(value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

pub(crate) fn put_values<'v>(
    dst: &mut BytesMut,
    values: impl IntoIterator<Item = Option<&'v [u8]>>,
    field: &'static str,
) -> Result<(), EncodeError> {
    let count_at = dst.len();
    dst.put_i16(0);
    let mut n = 0usize;
    for v in values {
        write::value(dst, v)?;
        n += 1;
    }
    let n16 = i16::try_from(n).map_err(|_| EncodeError::TooMany { field, count: n })?;
    dst[count_at..count_at + 2].copy_from_slice(&n16.to_be_bytes());
    Ok(())
}

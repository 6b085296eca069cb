//! COPY sub-protocol messages: CopyData/CopyDone (both directions), CopyFail
//! (client) and CopyIn/Out/BothResponse (server).
use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::read::Reader;
use super::values::{Format, Formats};
use super::write;

/// CopyData: one chunk of COPY payload, in either direction.
pub fn encode_copy_data(dst: &mut BytesMut, data: &[u8]) -> Result<(), EncodeError> {
    write::frame(dst, Some(b'd'), |dst| {
        dst.put_slice(data);
        Ok(())
    })
}

/// CopyDone, in either direction.
pub fn encode_copy_done(dst: &mut BytesMut) {
    write::fixed(dst, b'c', &[]);
}

/// CopyFail: the client aborts COPY FROM STDIN with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyFail<'a> {
    pub message: &'a str,
}

impl<'a> CopyFail<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(CopyFail {
            message: r.cstr("error message")?,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::frame(dst, Some(b'f'), |dst| {
            write::cstr(dst, self.message, "error message")
        })
    }
}

/// CopyInResponse ('G'), CopyOutResponse ('H') or CopyBothResponse ('W').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyResponse<'a> {
    /// Text (0) means every column is text; binary (1) means COPY BINARY.
    pub format: Format,
    pub column_formats: Formats<'a>,
}

impl<'a> CopyResponse<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let format = match r.u8("overall format")? {
            0 => Format::Text,
            1 => Format::Binary,
            other => return Err(r.invalid("overall format", other.into())),
        };
        Ok(CopyResponse {
            format,
            column_formats: Formats::read(r, "column formats")?,
        })
    }

    /// Encodes with type byte `tag` ('G', 'H' or 'W').
    pub fn encode(&self, dst: &mut BytesMut, tag: u8) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag), |dst| {
            dst.put_u8(self.format.code() as u8);
            self.column_formats.put(dst);
            Ok(())
        })
    }
}

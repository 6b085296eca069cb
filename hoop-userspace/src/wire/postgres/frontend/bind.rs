//! Bind: parameter values for a prepared statement, decoded without copying.
use bytes::BytesMut;

use super::tag;
use crate::wire::postgres::error::{DecodeError, EncodeError};
use crate::wire::postgres::read::Reader;
use crate::wire::postgres::values::{Format, Formats, Values, put_formats, put_values};
use crate::wire::postgres::write;

/// Bind `statement` ("" = unnamed) to `portal` with parameter values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// Parameter format codes; use [`Bind::param_format`] for the effective one.
    pub param_formats: Formats<'a>,
    /// Parameter values in order; `None` is NULL.
    pub params: Values<'a>,
    /// Result column format codes, same 0/1/n rule as parameters.
    pub result_formats: Formats<'a>,
}

impl<'a> Bind<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let portal = r.cstr("portal name")?;
        let statement = r.cstr("statement name")?;
        let param_formats = Formats::read(r, "parameter formats")?;
        let params = Values::read(r, "parameters")?;
        // The server rejects a format list that is neither 0, 1 nor one per value.
        if param_formats.len() > 1 && param_formats.len() != params.len() {
            return Err(r.invalid("parameter format count", param_formats.len() as i64));
        }
        let result_formats = Formats::read(r, "result formats")?;
        Ok(Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    /// The format of parameter `i` after applying the protocol's 0/1/n rule.
    pub fn param_format(&self, i: usize) -> Format {
        self.param_formats.for_value(i)
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag::BIND), |dst| {
            write::cstr(dst, self.portal, "portal name")?;
            write::cstr(dst, self.statement, "statement name")?;
            self.param_formats.put(dst);
            put_values(dst, self.params.iter(), "parameters")?;
            self.result_formats.put(dst);
            Ok(())
        })
    }
}

/// Bind from parts, e.g. with rewritten parameter values.
pub fn encode_bind<'v>(
    dst: &mut BytesMut,
    portal: &str,
    statement: &str,
    param_formats: &[Format],
    params: impl IntoIterator<Item = Option<&'v [u8]>>,
    result_formats: &[Format],
) -> Result<(), EncodeError> {
    write::frame(dst, Some(tag::BIND), |dst| {
        write::cstr(dst, portal, "portal name")?;
        write::cstr(dst, statement, "statement name")?;
        put_formats(dst, param_formats, "parameter formats")?;
        put_values(dst, params, "parameters")?;
        put_formats(dst, result_formats, "result formats")
    })
}

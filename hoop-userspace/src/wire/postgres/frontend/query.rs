//! Simple and extended query messages except Bind: Query, Parse, Describe,
//! Execute, Close, and the legacy FunctionCall.
use bytes::{BufMut, BytesMut};

use super::tag;
use crate::wire::postgres::error::{DecodeError, EncodeError};
use crate::wire::postgres::read::Reader;
use crate::wire::postgres::values::{Format, Formats, Oids, Values, put_values};
use crate::wire::postgres::write;

/// Query: one simple-protocol SQL string (may hold several statements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    pub sql: &'a str,
}

impl<'a> Query<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Query {
            sql: r.cstr("query string")?,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag::QUERY), |dst| {
            write::cstr(dst, self.sql, "query string")
        })
    }
}

/// Parse: prepare `query` as statement `name` ("" = unnamed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a str,
    pub query: &'a str,
    /// Parameter type OIDs the client pinned (0 = let the server infer).
    pub param_types: Oids<'a>,
}

impl<'a> Parse<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Parse {
            name: r.cstr("statement name")?,
            query: r.cstr("query string")?,
            param_types: Oids::read(r, "parameter types")?,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_parse(dst, self.name, self.query, self.param_types.iter())
    }
}

/// Parse from parts, for a proxy that rewrites or synthesizes statements.
pub fn encode_parse(
    dst: &mut BytesMut,
    name: &str,
    query: &str,
    param_types: impl ExactSizeIterator<Item = u32>,
) -> Result<(), EncodeError> {
    write::frame(dst, Some(tag::PARSE), |dst| {
        write::cstr(dst, name, "statement name")?;
        write::cstr(dst, query, "query string")?;
        write::count(dst, param_types.len(), "parameter types")?;
        param_types.for_each(|oid| dst.put_u32(oid));
        Ok(())
    })
}

/// What Describe and Close refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// 'S': a prepared statement.
    Statement,
    /// 'P': a portal.
    Portal,
}

impl Target {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("target")? {
            b'S' => Ok(Target::Statement),
            b'P' => Ok(Target::Portal),
            other => Err(r.invalid("target", other.into())),
        }
    }

    fn byte(self) -> u8 {
        match self {
            Target::Statement => b'S',
            Target::Portal => b'P',
        }
    }
}

/// Describe a statement or portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Describe<'a> {
    pub target: Target,
    pub name: &'a str,
}

impl<'a> Describe<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Describe {
            target: Target::read(r)?,
            name: r.cstr("name")?,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_target(dst, tag::DESCRIBE, self.target, self.name)
    }
}

/// Close a statement or portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    pub target: Target,
    pub name: &'a str,
}

impl<'a> Close<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Close {
            target: Target::read(r)?,
            name: r.cstr("name")?,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_target(dst, tag::CLOSE, self.target, self.name)
    }
}

fn encode_target(
    dst: &mut BytesMut,
    tag: u8,
    target: Target,
    name: &str,
) -> Result<(), EncodeError> {
    write::frame(dst, Some(tag), |dst| {
        dst.put_u8(target.byte());
        write::cstr(dst, name, "name")
    })
}

/// Execute a portal, returning at most `max_rows` rows (0 = all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    pub portal: &'a str,
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Execute {
            portal: r.cstr("portal name")?,
            max_rows: r.i32("row limit")?,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag::EXECUTE), |dst| {
            write::cstr(dst, self.portal, "portal name")?;
            dst.put_i32(self.max_rows);
            Ok(())
        })
    }
}

/// FunctionCall: the legacy fast-path interface (libpq's large-object calls
/// use it). It runs a function by OID without SQL, so policy must see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionCall<'a> {
    pub function_oid: u32,
    pub arg_formats: Formats<'a>,
    pub args: Values<'a>,
    pub result_format: Format,
}

impl<'a> FunctionCall<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let function_oid = r.i32("function oid")? as u32;
        let arg_formats = Formats::read(r, "argument formats")?;
        let args = Values::read(r, "arguments")?;
        let result_format = match r.i16("result format")? {
            0 => Format::Text,
            1 => Format::Binary,
            other => return Err(r.invalid("result format", other.into())),
        };
        Ok(FunctionCall {
            function_oid,
            arg_formats,
            args,
            result_format,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag::FUNCTION_CALL), |dst| {
            dst.put_u32(self.function_oid);
            self.arg_formats.put(dst);
            put_values(dst, self.args.iter(), "arguments")?;
            dst.put_i16(self.result_format.code());
            Ok(())
        })
    }
}

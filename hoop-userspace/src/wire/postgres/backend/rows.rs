//! Result-set messages: RowDescription, DataRow and ParameterDescription. DataRow
//! is what masking rewrites, so its encoder takes any iterator of new values.
use bytes::{BufMut, BytesMut};

use super::tag;
use crate::wire::postgres::error::{DecodeError, Direction, EncodeError};
use crate::wire::postgres::read::Reader;
use crate::wire::postgres::values::{Format, Oids, Values, put_values};
use crate::wire::postgres::write;

/// One column of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    pub name: &'a str,
    /// OID of the source table, 0 if the column is not a plain table column.
    pub table_oid: u32,
    /// Attribute number within that table, 0 if none.
    pub column_attr: i16,
    pub type_oid: u32,
    /// `pg_type.typlen`; negative means variable width.
    pub type_size: i16,
    pub type_modifier: i32,
    pub format: Format,
}

impl<'a> FieldDescription<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(FieldDescription {
            name: r.cstr("field name")?,
            table_oid: r.i32("table oid")? as u32,
            column_attr: r.i16("column number")?,
            type_oid: r.i32("type oid")? as u32,
            type_size: r.i16("type size")?,
            type_modifier: r.i32("type modifier")?,
            format: match r.i16("format code")? {
                0 => Format::Text,
                1 => Format::Binary,
                other => return Err(r.invalid("format code", other.into())),
            },
        })
    }

    fn put(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::cstr(dst, self.name, "field name")?;
        dst.put_u32(self.table_oid);
        dst.put_i16(self.column_attr);
        dst.put_u32(self.type_oid);
        dst.put_i16(self.type_size);
        dst.put_i32(self.type_modifier);
        dst.put_i16(self.format.code());
        Ok(())
    }
}

/// RowDescription, validated once; iterate with [`RowDescription::fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowDescription<'a> {
    count: usize,
    raw: &'a [u8],
}

impl<'a> RowDescription<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let count = r.count("field count")?;
        let raw = r.clone().rest();
        for _ in 0..count {
            FieldDescription::read(r)?;
        }
        let used = raw.len() - r.remaining();
        Ok(RowDescription {
            count,
            raw: &raw[..used],
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The columns in order.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = FieldDescription<'a>> + 'a {
        let mut r = Reader::new(self.raw, Direction::Backend, tag::ROW_DESCRIPTION);
        // Every field was decoded successfully in `read`, so this never stops early;
        // the placeholder keeps the iterator total without a panic path.
        (0..self.count).map(move |_| FieldDescription::read(&mut r).unwrap_or(PLACEHOLDER))
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag::ROW_DESCRIPTION), |dst| {
            write::count(dst, self.count, "fields")?;
            dst.put_slice(self.raw);
            Ok(())
        })
    }
}

const PLACEHOLDER: FieldDescription<'static> = FieldDescription {
    name: "",
    table_oid: 0,
    column_attr: 0,
    type_oid: 0,
    type_size: 0,
    type_modifier: 0,
    format: Format::Text,
};

/// RowDescription from parts, e.g. after retyping masked columns as text.
pub fn encode_row_description(
    dst: &mut BytesMut,
    fields: &[FieldDescription<'_>],
) -> Result<(), EncodeError> {
    write::frame(dst, Some(tag::ROW_DESCRIPTION), |dst| {
        write::count(dst, fields.len(), "fields")?;
        fields.iter().try_for_each(|f| f.put(dst))
    })
}

/// DataRow: one result row; `None` columns are NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRow<'a> {
    pub values: Values<'a>,
}

impl<'a> DataRow<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(DataRow {
            values: Values::read(r, "columns")?,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_data_row(dst, self.values)
    }
}

/// DataRow from (possibly rewritten) column values; the length is recomputed.
pub fn encode_data_row<'v>(
    dst: &mut BytesMut,
    values: impl IntoIterator<Item = Option<&'v [u8]>>,
) -> Result<(), EncodeError> {
    write::frame(dst, Some(tag::DATA_ROW), |dst| {
        put_values(dst, values, "columns")
    })
}

/// ParameterDescription: the parameter types of a described statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterDescription<'a> {
    pub types: Oids<'a>,
}

impl<'a> ParameterDescription<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(ParameterDescription {
            types: Oids::read(r, "parameter types")?,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag::PARAMETER_DESCRIPTION), |dst| {
            write::count(dst, self.types.len(), "parameter types")?;
            self.types.iter().for_each(|oid| dst.put_u32(oid));
            Ok(())
        })
    }
}

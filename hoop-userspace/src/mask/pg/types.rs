//! PostgreSQL types as masking sees them: which hold text to inspect (and how to decode it in
//! each format), and the value that stands in for a whole masked value of each type — a valid
//! value of the same type, so clients that decode it do not fail.
use crate::wire::postgres::Format;

use super::super::structured::{Elem, JSONB_MASKED};

/// Built-in type OIDs (`pg_type.dat`).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const MONEY: u32 = 790;
    pub const MACADDR: u32 = 829;
    pub const MACADDR8: u32 = 774;
    pub const INET: u32 = 869;
    pub const CIDR: u32 = 650;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const VARBIT: u32 = 1562;
    pub const NUMERIC: u32 = 1700;
    pub const RECORD: u32 = 2249;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
    /// First OID of user-defined objects (`FirstNormalObjectId`): extension and user types.
    pub const FIRST_NORMAL: u32 = 16384;
}

/// How a type is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeClass {
    /// text, varchar, bpchar, name, unknown, xml (`Plain`); json (`Json`); jsonb (`Json` as text,
    /// `JsonbBinary` in binary).
    Textual { text: Elem, binary: Elem },
    /// An array; `elem` is set when its elements are textual.
    Array {
        elem_oid: u32,
        elem: Option<(Elem, Elem)>,
    },
    /// A non-textual built-in with a known neutral value (text form, binary form).
    Scalar {
        text: &'static [u8],
        binary: &'static [u8],
    },
    /// Anything else: user-defined and extension types, record, geometric, range, ...
    Other,
}

const PLAIN: (Elem, Elem) = (Elem::Plain, Elem::Plain);
const JSON_ELEMS: (Elem, Elem) = (Elem::Json, Elem::Json);
const JSONB_ELEMS: (Elem, Elem) = (Elem::Json, Elem::JsonbBinary);

pub(crate) fn class(type_oid: u32) -> TypeClass {
    use TypeClass::*;
    use oid::*;
    let textual = |(text, binary): (Elem, Elem)| Textual { text, binary };
    let scalar = |text, binary| Scalar { text, binary };
    let array = |elem_oid, elem| Array { elem_oid, elem };
    match type_oid {
        TEXT | VARCHAR | BPCHAR | NAME | UNKNOWN | XML => textual(PLAIN),
        JSON => textual(JSON_ELEMS),
        JSONB => textual(JSONB_ELEMS),
        1009 => array(TEXT, Some(PLAIN)),
        1015 => array(VARCHAR, Some(PLAIN)),
        1014 => array(BPCHAR, Some(PLAIN)),
        1003 => array(NAME, Some(PLAIN)),
        143 => array(XML, Some(PLAIN)),
        199 => array(JSON, Some(JSON_ELEMS)),
        3807 => array(JSONB, Some(JSONB_ELEMS)),
        BOOL => scalar(b"f", &[0]),
        CHAR => scalar(b"*", b"*"),
        INT2 => scalar(b"0", &[0; 2]),
        INT4 | OID => scalar(b"0", &[0; 4]),
        INT8 => scalar(b"0", &[0; 8]),
        FLOAT4 => scalar(b"0", &[0; 4]),
        FLOAT8 => scalar(b"0", &[0; 8]),
        // ndigits 0, weight 0, sign positive, dscale 0: zero.
        NUMERIC => scalar(b"0", &[0; 8]),
        MONEY => scalar(b"0.00", &[0; 8]),
        BYTEA => scalar(b"\\x", b""),
        DATE => scalar(b"2000-01-01", &[0; 4]),
        TIME => scalar(b"00:00:00", &[0; 8]),
        TIMETZ => scalar(b"00:00:00+00", &[0; 12]),
        TIMESTAMP => scalar(b"2000-01-01 00:00:00", &[0; 8]),
        TIMESTAMPTZ => scalar(b"2000-01-01 00:00:00+00", &[0; 8]),
        INTERVAL => scalar(b"00:00:00", &[0; 16]),
        UUID => scalar(b"00000000-0000-0000-0000-000000000000", &[0; 16]),
        // family AF_INET (2), bits, is_cidr, 4 address bytes.
        INET => scalar(b"0.0.0.0", &[2, 32, 0, 4, 0, 0, 0, 0]),
        CIDR => scalar(b"0.0.0.0/0", &[2, 0, 1, 4, 0, 0, 0, 0]),
        MACADDR => scalar(b"00:00:00:00:00:00", &[0; 6]),
        MACADDR8 => scalar(b"00:00:00:00:00:00:00:00", &[0; 8]),
        // Zero-length bit string.
        VARBIT => scalar(b"", &[0; 4]),
        1000 => array(BOOL, None),
        1001 => array(BYTEA, None),
        1002 => array(CHAR, None),
        1005 => array(INT2, None),
        1007 => array(INT4, None),
        1016 => array(INT8, None),
        1021 => array(FLOAT4, None),
        1022 => array(FLOAT8, None),
        1028 => array(OID, None),
        1231 => array(NUMERIC, None),
        791 => array(MONEY, None),
        1182 => array(DATE, None),
        1183 => array(TIME, None),
        1270 => array(TIMETZ, None),
        1115 => array(TIMESTAMP, None),
        1185 => array(TIMESTAMPTZ, None),
        1187 => array(INTERVAL, None),
        2951 => array(UUID, None),
        1041 => array(INET, None),
        651 => array(CIDR, None),
        1040 => array(MACADDR, None),
        775 => array(MACADDR8, None),
        1563 => array(VARBIT, None),
        _ => Other,
    }
}

/// What a column does to each non-NULL value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ColAction {
    /// Forwarded as is.
    Pass,
    /// Inspected as text of this kind.
    Text(Elem),
    /// A text-form array with elements of this kind.
    TextArray(Elem),
    /// A binary array with elements of this kind.
    BinaryArray(Elem),
    /// Replaced whole (column rule); `None` is SQL NULL.
    Whole(Option<Box<[u8]>>),
}

/// The action for a column of `type_oid` sent in `format`, masked whole if `whole`.
pub(crate) fn action(type_oid: u32, format: Format, whole: bool) -> ColAction {
    use ColAction as A;
    let text = format == Format::Text;
    let bytes = |b: &[u8]| A::Whole(Some(b.into()));
    match (class(type_oid), whole) {
        (TypeClass::Textual { text: t, binary: b }, false) => A::Text(if text { t } else { b }),
        (TypeClass::Textual { text: t, binary: b }, true) => match if text { t } else { b } {
            Elem::Plain => bytes(b"****"),
            Elem::Json => bytes(b"\"****\""),
            Elem::JsonbBinary => bytes(JSONB_MASKED),
        },
        (
            TypeClass::Array {
                elem: Some((t, b)), ..
            },
            false,
        ) => {
            if text {
                A::TextArray(t)
            } else {
                A::BinaryArray(b)
            }
        }
        (TypeClass::Array { .. }, false) | (TypeClass::Scalar { .. }, false) => A::Pass,
        (TypeClass::Array { elem_oid, .. }, true) => {
            if text {
                bytes(b"{}")
            } else {
                bytes(&empty_array(elem_oid))
            }
        }
        (TypeClass::Scalar { text: t, binary: b }, true) => bytes(if text { t } else { b }),
        // User-defined types (citext, hstore, enums, composites) and anonymous records: in text
        // form they are strings to every client, so they are inspected as plain text.
        (TypeClass::Other, false) if text && is_user_or_record(type_oid) => A::Text(Elem::Plain),
        (TypeClass::Other, false) => A::Pass,
        (TypeClass::Other, true) if text => bytes(b"****"),
        // No valid binary value of an unknown type can be made up: NULL (documented).
        (TypeClass::Other, true) => A::Whole(None),
    }
}

fn is_user_or_record(type_oid: u32) -> bool {
    type_oid >= oid::FIRST_NORMAL || type_oid == oid::RECORD
}

/// A binary zero-dimensional array (`{}`) of `elem_oid`.
pub(crate) fn empty_array(elem_oid: u32) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[8..].copy_from_slice(&elem_oid.to_be_bytes());
    v
}

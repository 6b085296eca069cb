//! The PostgreSQL adapter, checked by decoding its output with the wire codec (and binary values
//! with `postgres-protocol`'s decoders, as a client would).

use bytes::{BufMut, BytesMut};
use postgres_protocol::types as pp;

use crate::mask::Masker;
use crate::mask::pg::types::oid;
use crate::mask::pg::{ColumnSpec, MaskError, Outcome, RowPlan, mask_error_notice};
use crate::wire::postgres::backend::{
    self, BackendMessage, ErrorNotice, FieldDescription, Severity, encode_data_row,
    encode_row_description,
};
use crate::wire::postgres::{Format, RawFrame, frontend};

pub(super) fn plan(cols: &[(&str, u32, Format)]) -> RowPlan {
    let m = super::default_arc();
    RowPlan::new(
        m,
        cols.iter().map(|&(name, type_oid, format)| ColumnSpec {
            name,
            type_oid,
            format,
        }),
    )
}

pub(super) fn row(values: &[Option<&[u8]>]) -> BytesMut {
    let mut b = BytesMut::new();
    encode_data_row(&mut b, values.iter().copied()).unwrap();
    b
}

/// Decodes `wire` as exactly one DataRow (the codec checks every length) and returns its values.
pub(super) fn decode_row(wire: &[u8]) -> Vec<Option<Vec<u8>>> {
    let (msg, n) = backend::decode(wire).unwrap().expect("a whole frame");
    assert_eq!(n, wire.len(), "exactly one message");
    let BackendMessage::DataRow(r) = msg else {
        panic!("not a DataRow: {msg:?}")
    };
    r.values.iter().map(|v| v.map(<[u8]>::to_vec)).collect()
}

fn mask(plan: &RowPlan, wire: &[u8]) -> (Outcome, BytesMut) {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let o = plan.mask_data_row(wire, &mut out).unwrap();
    assert_eq!(&out[..6], b"prefix", "appends, never touches what is there");
    (o, out.split_off(6))
}

#[test]
fn pgbench_rows_pass_untouched() {
    let spaces = [b' '; 84];
    for f in [Format::Text, Format::Binary] {
        let p = plan(&[
            ("aid", oid::INT4, f),
            ("bid", oid::INT4, f),
            ("abalance", oid::INT4, f),
            ("filler", oid::BPCHAR, f),
        ]);
        assert!(p.inspects());
        let w = if f == Format::Text {
            row(&[Some(b"1"), Some(b"1"), Some(b"0"), Some(&spaces)])
        } else {
            row(&[
                Some(&1i32.to_be_bytes()),
                Some(&1i32.to_be_bytes()),
                Some(&0i32.to_be_bytes()),
                Some(&spaces),
            ])
        };
        let (o, out) = mask(&p, &w);
        assert_eq!(o, Outcome::Unchanged);
        assert_eq!(out, w);
    }
}

#[test]
fn text_values_are_masked_with_lengths_recomputed() {
    let p = plan(&[
        ("id", oid::INT8, Format::Text),
        ("note", oid::TEXT, Format::Text),
        ("n", oid::VARCHAR, Format::Text),
        ("x", oid::TEXT, Format::Text),
    ]);
    let w = row(&[
        Some(b"4111111111111111"),
        Some(b"mail ann@example.com, card 4111 1111 1111 1111"),
        None,
        Some(b"keep"),
    ]);
    let (o, out) = mask(&p, &w);
    assert_eq!(o, Outcome::Masked);
    let v = decode_row(&out);
    assert_eq!(
        v[0].as_deref(),
        Some(&b"4111111111111111"[..]),
        "int8 is never inspected"
    );
    assert_eq!(
        v[1].as_deref(),
        Some(&b"mail ****@example.com, card **** **** **** 1111"[..])
    );
    assert_eq!(v[2], None);
    assert_eq!(v[3].as_deref(), Some(&b"keep"[..]));
}

#[test]
fn column_rules_replace_whole_values_text_format() {
    let cases: &[(u32, &[u8], &[u8])] = &[
        (oid::TEXT, b"hunter2", b"****"),
        (oid::INT4, b"1234", b"0"),
        (oid::BOOL, b"t", b"f"),
        (oid::NUMERIC, b"12.5", b"0"),
        (oid::DATE, b"1990-04-01", b"2000-01-01"),
        (
            oid::TIMESTAMPTZ,
            b"2024-01-01 10:00:00+00",
            b"2000-01-01 00:00:00+00",
        ),
        (
            oid::UUID,
            b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            b"00000000-0000-0000-0000-000000000000",
        ),
        (oid::BYTEA, b"\\xdeadbeef", b"\\x"),
        (oid::JSON, br#"{"a":1}"#, br#""****""#),
        (oid::JSONB, br#"{"a": 1}"#, br#""****""#),
        (1009, b"{a,b}", b"{}"),
        (1007, b"{1,2}", b"{}"),
        (600, b"(1,2)", b"****"),
        (16500, b"enum_value", b"****"),
    ];
    for &(ty, input, want) in cases {
        let p = plan(&[("api_key", ty, Format::Text)]);
        let (_, out) = mask(&p, &row(&[Some(input)]));
        assert_eq!(decode_row(&out)[0].as_deref(), Some(want), "type {ty}");
    }
}

#[test]
fn column_rules_replace_whole_values_binary_format() {
    let masked = |ty: u32, input: &[u8]| -> Option<Vec<u8>> {
        let p = plan(&[("password", ty, Format::Binary)]);
        let (_, out) = mask(&p, &row(&[Some(input)]));
        decode_row(&out).remove(0)
    };
    assert_eq!(
        pp::text_from_sql(&masked(oid::TEXT, b"x").unwrap()).unwrap(),
        "****"
    );
    assert_eq!(
        pp::text_from_sql(&masked(oid::VARCHAR, b"x").unwrap()).unwrap(),
        "****"
    );
    assert!(!pp::bool_from_sql(&masked(oid::BOOL, &[1]).unwrap()).unwrap());
    assert_eq!(
        pp::char_from_sql(&masked(oid::CHAR, b"y").unwrap()).unwrap(),
        b'*' as i8
    );
    assert_eq!(
        pp::int2_from_sql(&masked(oid::INT2, &7i16.to_be_bytes()).unwrap()).unwrap(),
        0
    );
    assert_eq!(
        pp::int4_from_sql(&masked(oid::INT4, &7i32.to_be_bytes()).unwrap()).unwrap(),
        0
    );
    assert_eq!(
        pp::int8_from_sql(&masked(oid::INT8, &7i64.to_be_bytes()).unwrap()).unwrap(),
        0
    );
    assert_eq!(
        pp::float8_from_sql(&masked(oid::FLOAT8, &1.5f64.to_be_bytes()).unwrap()).unwrap(),
        0.0
    );
    assert_eq!(
        pp::float4_from_sql(&masked(oid::FLOAT4, &1.5f32.to_be_bytes()).unwrap()).unwrap(),
        0.0
    );
    assert_eq!(
        pp::date_from_sql(&masked(oid::DATE, &[0, 0, 1, 0]).unwrap()).unwrap(),
        0
    );
    assert_eq!(
        pp::timestamp_from_sql(&masked(oid::TIMESTAMPTZ, &[1; 8]).unwrap()).unwrap(),
        0
    );
    assert_eq!(
        pp::time_from_sql(&masked(oid::TIME, &[1; 8]).unwrap()).unwrap(),
        0
    );
    assert_eq!(
        pp::uuid_from_sql(&masked(oid::UUID, &[7; 16]).unwrap()).unwrap(),
        [0; 16]
    );
    assert_eq!(
        pp::macaddr_from_sql(&masked(oid::MACADDR, &[7; 6]).unwrap()).unwrap(),
        [0; 6]
    );
    assert_eq!(
        pp::bytea_from_sql(&masked(oid::BYTEA, &[7; 6]).unwrap()),
        b""
    );
    let inet = masked(oid::INET, &[2, 32, 0, 4, 10, 0, 0, 1]).unwrap();
    assert_eq!(inet, [2, 32, 0, 4, 0, 0, 0, 0]);
    let numeric = masked(oid::NUMERIC, &[0, 1, 0, 0, 0, 0, 0, 0, 0, 12]).unwrap();
    assert_eq!(numeric, [0; 8], "ndigits 0, weight 0, positive, dscale 0");
    assert_eq!(
        pp::varbit_from_sql(&masked(oid::VARBIT, &[0, 0, 0, 3, 0xe0]).unwrap())
            .unwrap()
            .len(),
        0
    );
    let jsonb = masked(oid::JSONB, b"\x01{}").unwrap();
    assert_eq!(jsonb, b"\x01\"****\"");
    let arr = masked(1009, &[0; 12]).unwrap();
    let a = pp::array_from_sql(&arr).unwrap();
    assert_eq!(
        (a.element_type(), {
            use fallible_iterator::FallibleIterator;
            a.dimensions().count().unwrap()
        }),
        (oid::TEXT, 0)
    );
    let arr = masked(1007, &[0; 12]).unwrap();
    assert_eq!(pp::array_from_sql(&arr).unwrap().element_type(), oid::INT4);
    // No valid binary value of an unknown type can be made up: NULL (documented).
    assert_eq!(masked(600, &[0; 16]), None);
    assert_eq!(masked(16500, b"x"), None);
}

#[test]
fn binary_text_and_json_values_are_masked() {
    let p = plan(&[
        ("a", oid::TEXT, Format::Binary),
        ("b", oid::JSONB, Format::Binary),
        ("c", oid::JSON, Format::Binary),
        ("d", oid::BPCHAR, Format::Binary),
    ]);
    let w = row(&[
        Some(b"to a@b.co"),
        Some(b"\x01{\"e\": \"x@y.org\", \"password\": \"p\"}"),
        Some(b"[\"4111111111111111\"]"),
        Some(b"z@z.io    "),
    ]);
    let (o, out) = mask(&p, &w);
    assert_eq!(o, Outcome::Masked);
    let v = decode_row(&out);
    assert_eq!(v[0].as_deref(), Some(&b"to ****@b.co"[..]));
    assert_eq!(
        v[1].as_deref(),
        Some(&b"\x01{\"e\": \"****@y.org\", \"password\": \"****\"}"[..])
    );
    assert_eq!(v[2].as_deref(), Some(&b"[\"************1111\"]"[..]));
    assert_eq!(v[3].as_deref(), Some(&b"****@z.io    "[..]));
}

fn text_array(elems: &[Option<&str>], elem_oid: u32) -> Vec<u8> {
    let mut b = BytesMut::new();
    pp::array_to_sql(
        [pp::ArrayDimension {
            len: elems.len() as i32,
            lower_bound: 1,
        }],
        elem_oid,
        elems.iter(),
        |e, buf| match e {
            Some(s) => {
                pp::text_to_sql(s, buf);
                Ok(postgres_protocol::IsNull::No)
            }
            None => Ok(postgres_protocol::IsNull::Yes),
        },
        &mut b,
    )
    .unwrap();
    b.to_vec()
}

#[test]
fn binary_arrays_of_text_are_masked_element_by_element() {
    let p = plan(&[
        ("tags", 1009, Format::Binary),
        ("ids", 1007, Format::Binary),
    ]);
    let arr = text_array(
        &[
            Some("a@b.co"),
            None,
            Some("plain"),
            Some("+44 20 7946 0958"),
        ],
        oid::TEXT,
    );
    let ints = {
        let mut b = BytesMut::new();
        pp::array_to_sql(
            [pp::ArrayDimension {
                len: 1,
                lower_bound: 1,
            }],
            oid::INT4,
            [7i32],
            |v, buf| {
                pp::int4_to_sql(v, buf);
                Ok(postgres_protocol::IsNull::No)
            },
            &mut b,
        )
        .unwrap();
        b.to_vec()
    };
    let (o, out) = mask(&p, &row(&[Some(&arr), Some(&ints)]));
    assert_eq!(o, Outcome::Masked);
    let v = decode_row(&out);
    let a = pp::array_from_sql(v[0].as_deref().unwrap()).unwrap();
    assert_eq!(a.element_type(), oid::TEXT);
    let elems: Vec<Option<&str>> = {
        use fallible_iterator::FallibleIterator;
        a.values()
            .map(|e| Ok(e.map(|b| std::str::from_utf8(b).unwrap())))
            .collect()
            .unwrap()
    };
    assert_eq!(
        elems,
        [
            Some("****@b.co"),
            None,
            Some("plain"),
            Some("+** ** **** **58")
        ]
    );
    assert_eq!(v[1].as_deref(), Some(&ints[..]));
    // unchanged arrays stay unchanged
    let clean = text_array(&[Some("x"), None], oid::TEXT);
    assert_eq!(
        mask(&p, &row(&[Some(&clean), Some(&ints)])).0,
        Outcome::Unchanged
    );
}

#[test]
fn malformed_binary_arrays_fail_closed() {
    let p = plan(&[("tags", 1009, Format::Binary)]);
    let mut bad = text_array(&[Some("a@b.co")], oid::TEXT);
    bad.truncate(bad.len() - 1);
    let (_, out) = mask(&p, &row(&[Some(&bad)]));
    let a = decode_row(&out).remove(0).unwrap();
    assert_eq!(
        {
            use fallible_iterator::FallibleIterator;
            pp::array_from_sql(&a)
                .unwrap()
                .dimensions()
                .count()
                .unwrap()
        },
        0
    );
}

#[test]
fn text_arrays_and_user_types() {
    let p = plan(&[
        ("a", 1009, Format::Text),
        ("b", 16400, Format::Text),
        ("c", 16400, Format::Binary),
    ]);
    let w = row(&[
        Some(b"{x,y@z.co}"),
        Some(b"(\"q@r.co\",1)"),
        Some(b"q@r.co"),
    ]);
    let (_, out) = mask(&p, &w);
    let v = decode_row(&out);
    assert_eq!(v[0].as_deref(), Some(&b"{x,\"****@z.co\"}"[..]));
    assert_eq!(v[1].as_deref(), Some(&b"(\"****@r.co\",1)"[..]));
    assert_eq!(
        v[2].as_deref(),
        Some(&b"q@r.co"[..]),
        "binary user types are not decoded"
    );
}

#[test]
fn from_row_description_uses_bind_formats_when_given() {
    let fields = [FieldDescription {
        name: "secret",
        table_oid: 0,
        column_attr: 0,
        type_oid: oid::INT4,
        type_size: 4,
        type_modifier: -1,
        format: Format::Text,
    }];
    let mut b = BytesMut::new();
    encode_row_description(&mut b, &fields).unwrap();
    let Some((BackendMessage::RowDescription(rd), _)) = backend::decode(&b).unwrap() else {
        panic!()
    };
    let m = super::default_arc();
    let text = RowPlan::from_row_description(m.clone(), &rd, None);
    let (_, out) = mask(&text, &row(&[Some(b"42")]));
    assert_eq!(decode_row(&out)[0].as_deref(), Some(&b"0"[..]));
    let mut bind = BytesMut::new();
    frontend::encode_bind(&mut bind, "", "", &[], [], &[Format::Binary]).unwrap();
    let Some((frontend::FrontendMessage::Bind(bind), _)) = frontend::decode(&bind).unwrap() else {
        panic!()
    };
    let formats = bind.result_formats;
    let bin = RowPlan::from_row_description(m, &rd, Some(&formats));
    let (_, out) = mask(&bin, &row(&[Some(&42i32.to_be_bytes())]));
    assert_eq!(decode_row(&out)[0].as_deref(), Some(&[0u8; 4][..]));
}

#[test]
fn malformed_rows_are_errors_and_write_nothing() {
    let p = plan(&[
        ("a", oid::TEXT, Format::Text),
        ("b", oid::TEXT, Format::Text),
    ]);
    let good = row(&[Some(b"a@b.co"), Some(b"x")]);
    let mut out = BytesMut::new();
    let err = |w: &[u8], out: &mut BytesMut| p.mask_data_row(w, out).unwrap_err();
    assert_eq!(
        err(&row(&[Some(b"a@b.co")]), &mut out),
        MaskError::ColumnCountMismatch { plan: 2, row: 1 }
    );
    let mut trailing = good.clone();
    trailing.put_u8(0);
    let n = ((trailing.len() - 1) as i32).to_be_bytes();
    trailing[1..5].copy_from_slice(&n);
    assert!(matches!(
        err(&trailing, &mut out),
        MaskError::UpstreamMalformed { .. }
    ));
    let mut short = good.clone();
    short.truncate(good.len() - 1);
    let n = ((short.len() - 1) as i32).to_be_bytes();
    short[1..5].copy_from_slice(&n);
    assert!(matches!(
        err(&short, &mut out),
        MaskError::UpstreamMalformed { .. }
    ));
    let mut tag = good.clone();
    tag[0] = b'T';
    assert!(matches!(
        err(&tag, &mut out),
        MaskError::UpstreamMalformed { .. }
    ));
    assert!(out.is_empty());
}

#[test]
fn notices_and_errors_have_their_text_masked() {
    let mut b = BytesMut::new();
    ErrorNotice {
        severity: Severity::Error,
        code: "23505",
        message: "duplicate key value violates unique constraint \"users_email_key\"",
        detail: Some("Key (email)=(ann@example.com) already exists."),
        hint: Some("card 4111111111111111"),
    }
    .encode_error(&mut b)
    .unwrap();
    let m = Masker::default_profile();
    let mut out = BytesMut::new();
    assert_eq!(
        mask_error_notice(&m, &b, &mut out).unwrap(),
        Outcome::Masked
    );
    let msg = BackendMessage::parse(RawFrame {
        tag: out[0],
        body: &out[5..],
    })
    .unwrap();
    let BackendMessage::ErrorResponse(f) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(f.code(), Some("23505"));
    assert_eq!(f.severity(), Some("ERROR"));
    assert_eq!(
        f.detail(),
        Some("Key (email)=(****@example.com) already exists.")
    );
    assert_eq!(f.hint(), Some("card ************1111"));
    assert_eq!(
        f.message(),
        Some("duplicate key value violates unique constraint \"users_email_key\"")
    );
    assert_eq!(backend::decode(&out).unwrap().unwrap().1, out.len());

    let mut n = BytesMut::new();
    ErrorNotice {
        severity: Severity::Notice,
        code: "00000",
        message: "nothing",
        detail: None,
        hint: None,
    }
    .encode_notice(&mut n)
    .unwrap();
    let mut out = BytesMut::new();
    assert_eq!(
        mask_error_notice(&m, &n, &mut out).unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(out, n);
    let mut bad = n.clone();
    bad.truncate(n.len() - 1);
    let n = ((bad.len() - 1) as i32).to_be_bytes();
    bad[1..5].copy_from_slice(&n);
    let mut out = BytesMut::new();
    assert!(mask_error_notice(&m, &bad, &mut out).is_err());
    assert!(out.is_empty());
}

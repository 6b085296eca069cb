//! Properties: whatever the input, masking never panics, DataRow output always re-parses with
//! the same shape, JSON stays JSON, and masking text twice changes nothing more than once.

use bytes::BytesMut;
use proptest::prelude::*;

use super::default;
use super::pg::{decode_row, row};
use crate::mask::pg::{ColumnSpec, RowPlan, types::oid};
use crate::wire::postgres::Format;

/// Things detectors look for, valid and almost valid, to splice into random text.
const FRAGMENTS: &[&str] = &[
    "ann@example.com",
    "a.b+c@mail.example.org",
    "x@y",
    "@",
    "4111111111111111",
    "4111 1111 1111 1111",
    "4111111111111112",
    "5500-0055-5555-5559",
    "DE89370400440532013000",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "+44 20 7946 0958",
    "(555) 123-4567",
    "555-123-4567",
    "06 12 34 56 78",
    "2024-01-15",
    "Password=hunter2;",
    "pwd = 'a b'",
    "AccountKey=abc==",
    "postgres://u:p@h/db",
    "sig=AbCdEf0123%2Bxyz",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----",
    "ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5",
    "github_pat_11ABCDEFG0123456789_abcdef",
    "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst",
    "****",
    "\"",
    "\\",
    "{",
    "}",
    ",",
    ":",
    " ",
    "\n",
    "é",
    "名",
    "0",
    "12",
    "-",
    ".",
    "=",
    ";",
    "/",
];

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => proptest::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => "\\PC{0,8}",
        1 => "[0-9 .+()-]{0,12}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

const TYPES: &[u32] = &[
    oid::TEXT,
    oid::VARCHAR,
    oid::BPCHAR,
    oid::NAME,
    oid::JSON,
    oid::JSONB,
    oid::XML,
    oid::INT4,
    oid::INT8,
    oid::BOOL,
    oid::NUMERIC,
    oid::UUID,
    oid::DATE,
    oid::BYTEA,
    1009,
    1015,
    199,
    3807,
    1007,
    600,
    2249,
    16400,
];
const NAMES: &[&str] = &["id", "note", "password", "user_token", "email", "ssn"];

/// SQL around a `?` where a text goes: keys, `=`, `_` and blanks next to the fragments.
fn sql_context() -> impl Strategy<Value = String> {
    proptest::sample::select(
        &[
            "SELECT * FROM pgbench_accounts WHERE aid = '?'",
            "UPDATE t SET password = '?' WHERE x_y = 1",
            "UPDATE t SET client_secret\t=\t? WHERE x_y = 1",
            "SELECT 'Server=h;Pwd  =?'",
            "SELECT 'Server=h;SharedAccessKey=?'",
            "SELECT 'https://h/c?sv=1&sig=?'",
            "SELECT 'github?', 'gh?', '?_pat_'",
            "?",
        ][..],
    )
    .prop_map(str::to_string)
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        text().prop_map(serde_json::Value::String),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::from(4111111111111111u64)),
        any::<bool>().prop_map(serde_json::Value::Bool),
        Just(serde_json::Value::Null),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    proptest::sample::select(NAMES).prop_map(str::to_string),
                    text()
                ],
                inner,
                0..4
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mask_text_is_idempotent(s in text()) {
        let once = default().mask_text(&s).into_owned();
        let twice = default().mask_text(&once);
        prop_assert_eq!(&*twice, &*once);
        prop_assert!(matches!(twice, std::borrow::Cow::Borrowed(_)), "second pass must not copy");
    }

    /// The gate is only a shortcut: with it, a text is masked exactly as running every enabled
    /// detector over it would (here with SQL around the fragments, where `=` and `_` abound).
    #[test]
    fn the_gate_never_hides_a_detection(s in text(), sql in sql_context()) {
        let m = default();
        for s in [s.clone(), sql.replace('?', &s)] {
            let gated = m.mask_once(s.as_bytes());
            let every = m.rewrite(s.as_bytes(), m.enabled, false);
            prop_assert_eq!(gated, every, "{:?}", s);
        }
    }

    #[test]
    fn masking_never_panics_on_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let m = default();
        let _ = m.mask_bytes(&b);
        let _ = m.mask_json(&b);
        let _ = m.mask_text_array(&b, crate::mask::structured::Elem::Plain);
        let _ = m.mask_text_array(&b, crate::mask::structured::Elem::Json);
        let _ = m.mask_text(&String::from_utf8_lossy(&b));
        let plan = super::pg::plan(&[("a", 1009, Format::Binary), ("password", oid::JSONB, Format::Binary)]);
        let mut out = BytesMut::new();
        if plan.mask_data_row(&b, &mut out).is_ok() {
            decode_row(&out);
        }
        let _ = crate::mask::pg::mask_error_notice(m, &b, &mut BytesMut::new());
    }

    #[test]
    fn json_stays_json(v in json_value()) {
        let s = serde_json::to_string(&v).unwrap();
        if let Some(out) = default().mask_json(s.as_bytes()) {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out);
            prop_assert!(parsed.is_ok(), "{} -> {}", s, String::from_utf8_lossy(&out));
        }
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        if let Some(out) = default().mask_json(pretty.as_bytes()) {
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
        }
    }

    #[test]
    fn data_rows_stay_valid(
        cols in proptest::collection::vec(
            (proptest::sample::select(NAMES), proptest::sample::select(TYPES), any::<bool>(),
             proptest::option::weighted(0.8, prop_oneof![
                 text().prop_map(String::into_bytes),
                 proptest::collection::vec(any::<u8>(), 0..40),
                 json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
             ])),
            0..8)
    ) {
        let specs: Vec<ColumnSpec> = cols.iter().map(|(name, ty, bin, _)| ColumnSpec {
            name, type_oid: *ty, format: if *bin { Format::Binary } else { Format::Text },
        }).collect();
        let plan = RowPlan::new(super::default_arc(), specs.iter().copied());
        let values: Vec<Option<&[u8]>> = cols.iter().map(|c| c.3.as_deref()).collect();
        let wire = row(&values);
        let mut out = BytesMut::new();
        plan.mask_data_row(&wire, &mut out).unwrap();
        let got = decode_row(&out);
        prop_assert_eq!(got.len(), values.len());
        for ((spec, before), after) in specs.iter().zip(&values).zip(&got) {
            let may_null = spec.format == Format::Binary && default().column_masked(spec.name)
                && matches!(crate::mask::pg::types::class(spec.type_oid), crate::mask::pg::types::TypeClass::Other);
            prop_assert!(before.is_some() == after.is_some() || may_null, "NULL-ness changed for {:?}", spec);
        }
    }

    #[test]
    fn binary_text_arrays_stay_valid(elems in proptest::collection::vec(proptest::option::of(text()), 0..6)) {
        use fallible_iterator::FallibleIterator;
        let mut b = BytesMut::new();
        postgres_protocol::types::array_to_sql(
            [postgres_protocol::types::ArrayDimension { len: elems.len() as i32, lower_bound: 1 }],
            oid::TEXT,
            elems.iter(),
            |e, buf| match e {
                Some(s) => { postgres_protocol::types::text_to_sql(s, buf); Ok(postgres_protocol::IsNull::No) }
                None => Ok(postgres_protocol::IsNull::Yes),
            },
            &mut b,
        ).unwrap();
        let plan = super::pg::plan(&[("a", 1009, Format::Binary)]);
        let mut out = BytesMut::new();
        plan.mask_data_row(&row(&[Some(&b)]), &mut out).unwrap();
        let v = decode_row(&out).remove(0).unwrap();
        let a = postgres_protocol::types::array_from_sql(&v).unwrap();
        let got: Vec<Option<String>> = a.values()
            .map(|e| Ok(e.map(|b| String::from_utf8(b.to_vec()).unwrap()))).collect().unwrap();
        let want: Vec<Option<String>> = elems.iter().map(|e| e.as_ref().map(|s| default().mask_text(s).into_owned())).collect();
        prop_assert_eq!(got, want);
    }
}

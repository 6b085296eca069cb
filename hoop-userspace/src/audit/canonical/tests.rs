use serde_json::{Value, json};

use super::*;

#[test]
fn sorts_keys_and_drops_whitespace() {
    let v: Value =
        serde_json::from_str(r#"{ "b": 1, "a": {"z": [1, 2.5, "x"], "y": null} }"#).unwrap();
    assert_eq!(
        to_vec(&v).unwrap(),
        br#"{"a":{"y":null,"z":[1,2.5,"x"]},"b":1}"#
    );
}

#[test]
fn escapes_strings_like_serde_json() {
    let v = json!({"q": "a\"b\\c\n\u{1}é/"});
    assert_eq!(
        to_vec(&v).unwrap(),
        "{\"q\":\"a\\\"b\\\\c\\n\\u0001é/\"}".as_bytes()
    );
}

#[test]
fn reparsing_is_a_fixed_point() {
    let v = json!({"f": [0.1, 1e300, -0.0, 12345678901234567890u64, -5], "s": "\u{2028}"});
    let once = to_vec(&v).unwrap();
    let again = to_vec(&serde_json::from_slice(&once).unwrap()).unwrap();
    assert_eq!(once, again);
}

#[test]
fn refuses_too_deep() {
    let mut v = json!(1);
    for _ in 0..=MAX_DEPTH {
        v = json!([v]);
    }
    assert!(to_vec(&v).is_none());
    let mut ok = json!(1);
    for _ in 0..MAX_DEPTH {
        ok = json!([ok]);
    }
    let bytes = to_vec(&ok).unwrap();
    assert!(serde_json::from_slice::<Value>(&bytes).is_ok());
}

#[derive(serde::Serialize)]
struct Sorted<'a> {
    a: Option<&'a str>,
    b: u64,
    c: Vec<Inner>,
    d: &'a str,
}

#[derive(serde::Serialize)]
struct Inner {
    x: bool,
    y: Option<u64>,
}

#[test]
fn typed_events_with_sorted_fields_encode_canonically() {
    let ev = Sorted {
        a: None,
        b: u64::MAX,
        c: vec![
            Inner { x: true, y: None },
            Inner {
                x: false,
                y: Some(7),
            },
        ],
        d: "quote \" back \\ control \u{2} é",
    };
    let mut typed = Vec::new();
    write_sorted(&mut typed, &ev);
    assert_eq!(typed, to_vec(&serde_json::to_value(&ev).unwrap()).unwrap());
}

#[derive(serde::Serialize)]
struct Unsorted {
    b: u64,
    a: u64,
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "typed audit event not canonical")]
fn typed_events_out_of_order_are_caught() {
    write_sorted(&mut Vec::new(), &Unsorted { b: 1, a: 2 });
}

proptest::proptest! {
    /// The fast path of `write_str` and serde_json's escaping agree on every string.
    #[test]
    fn write_str_escapes_as_serde_json(s in "(?s).{0,40}", ascii in "[ -~\\t\\n\\x00-\\x1f]{0,40}") {
        for s in [&s, &ascii] {
            let mut fast = Vec::new();
            write_str(&mut fast, s);
            proptest::prop_assert_eq!(fast, serde_json::to_vec(s).unwrap());
        }
    }
}

#[test]
fn an_object_written_field_by_field_is_canonical() {
    let mut out = Vec::new();
    Obj::open(&mut out)
        .opt_str("a", None)
        .bool("b", true)
        .u64("c", u64::MAX)
        .opt_u64("d", None)
        .opt_u64("e", Some(0))
        .raw("f", br#"[{"x":1}]"#)
        .str("g", "tab\t\"")
        .opt_str("h", Some(""))
        .close();
    let v = json!({"a": null, "b": true, "c": u64::MAX, "d": null, "e": 0, "f": [{"x": 1}],
        "g": "tab\t\"", "h": ""});
    assert_eq!(out, to_vec(&v).unwrap());
    let mut empty = Vec::new();
    Obj::open(&mut empty).close();
    assert_eq!(empty, b"{}");
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "canonical object")]
fn an_object_refuses_keys_out_of_order() {
    let mut out = Vec::new();
    Obj::open(&mut out).u64("b", 1).u64("a", 2);
}

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

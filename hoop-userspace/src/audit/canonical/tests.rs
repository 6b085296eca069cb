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

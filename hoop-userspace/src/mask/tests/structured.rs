//! JSON and text-form arrays: masked inside, still valid after.
use crate::mask::structured::Elem;

use super::default;

fn json(s: &str) -> Option<String> {
    default()
        .mask_json(s.as_bytes())
        .map(|v| String::from_utf8(v).unwrap())
}

fn array(s: &str, elem: Elem) -> Option<String> {
    default()
        .mask_text_array(s.as_bytes(), elem)
        .map(|v| String::from_utf8(v).unwrap())
}

#[test]
fn json_strings_are_masked_and_stay_valid() {
    assert_eq!(
        json(r#"{"contact": "mail a@b.co", "n": 1}"#).as_deref(),
        Some(r#"{"contact": "mail ****@b.co", "n": 1}"#)
    );
    // escapes are decoded before detection and re-encoded after
    assert_eq!(
        json(r#"{"k": "line1\nbob\u0040example.com \"q\""}"#).as_deref(),
        Some(r#"{"k": "line1\n****@example.com \"q\""}"#)
    );
    let pem =
        r#"{"key": "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"}"#;
    assert_eq!(
        json(pem).as_deref(),
        Some(r#"{"key": "-----BEGIN EC PRIVATE KEY-----****-----END EC PRIVATE KEY-----\n"}"#)
    );
    assert_eq!(
        json(r#"{"a": "nothing here", "b": [1, 2.5, true, null]}"#),
        None
    );
}

#[test]
fn json_numbers_that_are_cards_become_zero() {
    assert_eq!(
        json(r#"{"pan": 4111111111111111}"#).as_deref(),
        Some(r#"{"pan": 0}"#)
    );
    assert_eq!(json("[4111111111111112]"), None);
}

#[test]
fn json_keys_matching_column_rules_mask_their_values() {
    assert_eq!(
        json(r#"{"user": "ann", "password": "hunter2", "pin": 1234, "ok": true}"#).as_deref(),
        Some(r#"{"user": "ann", "password": "****", "pin": 1234, "ok": true}"#)
    );
    assert_eq!(
        json(r#"{"api_key": 12345, "x": {"client_secret": {"v": ["a", 7, {"k": "s"}], "w": false}}, "y": "z"}"#)
            .as_deref(),
        Some(r#"{"api_key": 0, "x": {"client_secret": {"v": ["****", 0, {"k": "****"}], "w": false}}, "y": "z"}"#)
    );
    // already masked: unchanged
    assert_eq!(json(r#"{"password": "****", "token": 0}"#), None);
}

#[test]
fn malformed_json_falls_back_to_plain_masking() {
    assert_eq!(
        json(r#"{"a": "x@y.co"#).as_deref(),
        Some(r#"{"a": "****@y.co"#)
    );
    assert_eq!(
        json(r#"{"a": "\q a@b.co"}"#).as_deref(),
        Some(r#"{"a": "\q ****@b.co"}"#)
    );
}

#[test]
fn text_arrays_requote_changed_elements() {
    assert_eq!(
        array("{a,b@c.de,NULL}", Elem::Plain).as_deref(),
        Some(r#"{a,"****@c.de",NULL}"#)
    );
    assert_eq!(
        array(r#"{"x \"y\" a@b.co","4111 1111 1111 1111"}"#, Elem::Plain).as_deref(),
        Some(r#"{"x \"y\" ****@b.co","**** **** **** 1111"}"#)
    );
    assert_eq!(
        array("[0:1]={{a@b.co,z},{y,x}}", Elem::Plain).as_deref(),
        Some(r#"[0:1]={{"****@b.co",z},{y,x}}"#)
    );
    assert_eq!(array("{plain,words}", Elem::Plain), None);
    assert_eq!(
        array(r#"{"{\"password\": \"p\"}"}"#, Elem::Json).as_deref(),
        Some(r#"{"{\"password\": \"****\"}"}"#)
    );
}

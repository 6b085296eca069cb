use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::*;

fn sealed(kind: &str, event: &Value, seq: u64, prev: &Hash) -> (Vec<u8>, Hash) {
    let p = Prepared::new(kind, event, false).unwrap();
    let mut out = Vec::new();
    let t = UNIX_EPOCH + Duration::new(1_779_703_872, 42);
    let h = p.seal(seq, prev, t, &mut out);
    (out, h)
}

#[test]
fn sealed_line_is_canonical_and_hash_checks() {
    let event =
        json!({"session": "s-1", "sql": "SELECT 1", "rows": [1, 2], "masked": {"b": 1, "a": 2}});
    let (line, hash) = sealed("pg.query", &event, 7, &[3u8; 32]);
    assert_eq!(*line.last().unwrap(), b'\n');
    let body = &line[..line.len() - 1];
    let rec = Record::parse_line(body).unwrap();
    assert_eq!(
        (rec.seq, rec.hash, rec.prev, rec.kind.as_str()),
        (7, hash, [3u8; 32], "pg.query")
    );
    assert_eq!(rec.time, "2026-05-25T10:11:12.000000042Z");
    assert_eq!(rec.event, event);
    assert_eq!(rec.to_line(), body);
    // The documented rule: hash = SHA-256(canonical record without its "hash" member).
    let mut v: Value = serde_json::from_slice(body).unwrap();
    v.as_object_mut().unwrap().remove("hash");
    assert_eq!(sha256(&canonical::to_vec(&v).unwrap()), hash);
    assert_eq!(
        canonical::to_vec(&serde_json::from_slice(body).unwrap()).unwrap(),
        body
    );
}

#[test]
fn any_edited_byte_is_caught() {
    let (line, _) = sealed("k", &json!({"user": "alice", "n": 10}), 1, &[0u8; 32]);
    let body = &line[..line.len() - 1];
    for i in 0..body.len() {
        for delta in [1u8, 0x20] {
            let mut edited = body.to_vec();
            edited[i] ^= delta;
            assert!(
                Record::parse_line(&edited).is_err(),
                "edit at byte {i} ({delta}) passed"
            );
        }
    }
}

#[test]
fn whitespace_and_reordering_are_not_canonical() {
    let (line, _) = sealed("k", &json!({"a": 1}), 1, &[0u8; 32]);
    let body = std::str::from_utf8(&line[..line.len() - 1]).unwrap();
    let spaced = body.replacen(",", ", ", 1);
    assert_eq!(
        Record::parse_line(spaced.as_bytes()),
        Err(VerifyError::NotCanonical)
    );
}

#[test]
fn reserved_and_bad_kinds_are_refused() {
    assert!(matches!(
        Prepared::new("audit.prune", &json!(1), false),
        Err(AuditError::ReservedKind { .. })
    ));
    assert!(Prepared::new("audit.prune", &json!(1), true).is_ok());
    assert!(matches!(
        Prepared::new("", &json!(1), false),
        Err(AuditError::InvalidKind { len: 0 })
    ));
}

#[test]
fn genesis_depends_on_key() {
    assert_ne!(genesis(&[1u8; 32]), genesis(&[2u8; 32]));
    assert_eq!(parse_hash(&hex::encode([0xabu8; 32])), Some([0xabu8; 32]));
    assert_eq!(parse_hash(&hex::encode([0xabu8; 32]).to_uppercase()), None);
}

#[test]
fn byte_level_recipe_for_auditors() {
    // docs/audit.md: the preimage is the line minus the LAST occurrence of `"hash":"<64 hex>",`
    // (an event may itself contain a "hash" key, but only before the top-level member).
    let event = json!({"hash": "not-the-record-hash", "nested": {"hash": "x"}});
    let (line, hash) = sealed("k\"hash\":\"", &event, 3, &[1u8; 32]);
    let body = &line[..line.len() - 1];
    let pos = body.windows(8).rposition(|w| w == b"\"hash\":\"").unwrap();
    assert_eq!(&body[pos + 8..pos + 72], hex::encode(hash).as_bytes());
    let preimage = [&body[..pos], &body[pos + 74..]].concat();
    assert_eq!(sha256(&preimage), hash);
}

#[test]
fn hex32_is_lower_hex() {
    // every byte value, at every position's parity
    for k in 0..16 {
        let h: Hash = std::array::from_fn(|i| (k * 32 + i * 37 + 5) as u8);
        assert_eq!(&hex32(&h)[..], hex::encode(h).as_bytes());
    }
    for k in 0..8 {
        let h: Hash = std::array::from_fn(|i| (k * 32 + i) as u8);
        assert_eq!(&hex32(&h)[..], hex::encode(h).as_bytes());
    }
}

/// A record completed from an [`EventPrefix`] is byte for byte, and hash for hash, the record
/// written whole — and the one the `Value` path encodes, so the verifier accepts it.
#[test]
fn a_record_resumed_from_its_prefix_equals_the_whole_record() {
    let t = UNIX_EPOCH + Duration::new(1_779_703_872, 42);
    let texts = [
        "SELECT 1",
        "quote \" back \\ nl \n ctl \u{1} é \u{2028}",
        "",
    ];
    for (i, text) in texts.iter().enumerate() {
        let write_head = |out: &mut Vec<u8>| {
            canonical::Obj::open(out)
                .opt_str("database", Some("postgres"))
                .str("rule", "target:pg/deny:drop");
        };
        let write_rest = |out: &mut Vec<u8>| {
            canonical::Obj::resume(out, "rule")
                .str("text", text)
                .u64("text_len", text.len() as u64)
                .opt_str("user", None)
                .close();
        };
        let prefix = EventPrefix::new(write_head);
        let resumed = Prepared::resume("pg.request", &prefix, write_rest).unwrap();
        let whole = Prepared::written("pg.request", |out| {
            write_head(out);
            write_rest(out);
        })
        .unwrap();
        let value = json!({"database": "postgres", "rule": "target:pg/deny:drop",
            "text": text, "text_len": text.len(), "user": null});
        let by_value = Prepared::new("pg.request", &value, false).unwrap();
        let seal = |p: &Prepared| {
            let mut out = b"earlier line\n".to_vec();
            let h = p.seal(i as u64, &[9u8; 32], t, &mut out);
            (out, h)
        };
        let (line, hash) = seal(&resumed);
        assert_eq!((line.clone(), hash), seal(&whole));
        assert_eq!((line.clone(), hash), seal(&by_value));
        let rec = Record::parse_line(&line[13..line.len() - 1]).unwrap();
        assert_eq!((rec.hash, rec.event), (hash, value));
    }
    assert!(Prepared::resume("audit.prune", &EventPrefix::new(|_| {}), |_| {}).is_err());
}

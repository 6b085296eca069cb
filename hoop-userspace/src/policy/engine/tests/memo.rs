//! The memo of per-field matches, the kind lookup, and sharing a policy across workers.

use super::*;

#[test]
fn kind_lookup_matches_the_list() {
    for (i, k) in STATEMENT_KINDS.iter().enumerate() {
        assert_eq!(kind_index(k), Some(i as u32), "{k}");
    }
    assert_eq!(kind_index("SELECT"), None);
    assert_eq!(kind_bit("nope"), kind_bit("unknown"));
}

#[test]
fn memo_slots_are_per_field() {
    // r1 computes `target = "pg-*"` (yes) then fails; r2 has the same list on an identity
    // attribute the identity lacks: it must not reuse r1's outcome.
    let text = r#"
[[rule]]
name = "r1"
action = "deny"
target = "pg-*"
database = "nope"
[[rule]]
name = "r2"
action = "deny"
identity = { target = "pg-*" }
[[rule]]
name = "r3"
action = "allow"
target = "pg-*"
"#;
    assert_eq!(decide(text, &Req::new("select")).1, "r3");
}

#[test]
fn memo_keeps_doubt() {
    // The shared exe list is `maybe` for an unknown executable: no for the allow, yes for the deny.
    let text = r#"
[defaults]
action = "allow"
[[rule]]
name = "psql-reads"
action = "allow"
exe = "/usr/bin/psql"
statements = ["select"]
[[rule]]
name = "psql-other"
action = "deny"
exe = "/usr/bin/psql"
"#;
    let mut req = Req::new("select");
    assert_eq!(decide(text, &req).1, "psql-reads");
    req.exe = None;
    assert_eq!(decide(text, &req).1, "psql-other");
}

#[test]
fn beyond_the_memo_slots_and_identity_cache() {
    // 300 shared target lists (more than MEMO_SLOTS) and 20 identity names (more than ID_KEYS).
    let mut text = String::from("[defaults]\naction = \"deny\"\n");
    for k in 0..300 {
        for (j, db) in ["x", "y"].iter().enumerate() {
            text.push_str(&format!(
                "[[rule]]\nname = \"t{k}-{j}\"\naction = \"review\"\ntarget = \"t{k}\"\ndatabase = \"{db}\"\n"
            ));
        }
    }
    for k in 0..20 {
        text.push_str(&format!(
            "[[rule]]\nname = \"c{k}\"\naction = \"allow\"\nidentity = {{ claim{k} = \"v{k}\" }}\n"
        ));
    }
    let p = policy(&text);
    let mut req = Req::new("select");
    req.target = "t299";
    assert_eq!(&*p.decide(&req.input()).rule, "default:deny");
    req.database = Some("y");
    assert_eq!(&*p.decide(&req.input()).rule, "t299-1");
    req.target = "other";
    req.identity.claims.insert("claim19".into(), "v19".into());
    assert_eq!(&*p.decide(&req.input()).rule, "c19");
    req.identity.claims.insert("claim3".into(), "v3".into());
    assert_eq!(&*p.decide(&req.input()).rule, "c3");
}

#[test]
fn policy_is_shareable_across_workers() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Policy>();
    shareable::<Decision>();
}

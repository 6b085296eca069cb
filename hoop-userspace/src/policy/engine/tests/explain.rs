//! `explain`: the deciding rule, and why the others did not match.

use super::*;

#[test]
fn explain_names_the_deciding_rule_and_why_others_did_not_match() {
    let p = Policy::builtin();
    let req = Req::new("select").anonymous();
    let e = p.explain(&req.input());
    assert_eq!(e.decision, p.decide(&req.input()));
    assert_eq!(e.rule.name, "allow-anonymous-read");
    assert_eq!(e.rule.index, Some(7));
    let skipped: Vec<&str> = e.not_matched.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        skipped,
        [
            "deny-drop",
            "deny-truncate",
            "deny-fastpath",
            "review-unknown",
            "review-without-where",
            "review-anonymous-role-change"
        ]
    );
    let drop = &e.not_matched[0];
    assert_eq!(drop.conditions.len(), 1);
    assert_eq!(drop.conditions[0].condition, "statements");
    assert_eq!(drop.conditions[0].outcome, Tri::No);
    assert_eq!(drop.conditions[0].value, "select");
    assert_eq!(drop.conditions[0].wants, "drop");
    let text = e.to_string();
    assert!(text.starts_with("decision: allow\n"), "{text}");
    assert!(
        text.contains("rule:     allow-anonymous-read (#7, builtin:"),
        "{text}"
    );
    assert!(
        text.contains("  identity.kind: anonymous — wants anonymous (yes)\n"),
        "{text}"
    );
    assert!(
        text.contains("    statements: select — wants drop (no)\n"),
        "{text}"
    );
    assert!(
        text.contains("#5 review-without-where (review, line"),
        "{text}"
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["decision"]["rule"], "allow-anonymous-read");
    assert_eq!(json["decision"]["action"], "allow");
    assert_eq!(json["decision"]["mask"], "default");
}

#[test]
fn explain_the_fallback_and_doubt() {
    let p = policy(
        r#"
[[rule]]
name = "allow-psql"
action = "allow"
exe = "/usr/bin/psql"
[[rule]]
name = "writes-to-users"
action = "allow"
objects = ["public.users"]
"#,
    );
    let mut req = Req::new("delete").objects(&[obj("relation", "users", true)]);
    req.exe = None;
    let e = p.explain(&req.input());
    assert_eq!(&*e.decision.rule, "default:deny");
    assert_eq!((e.rule.index, e.rule.line), (None, 0));
    assert_eq!(e.not_matched.len(), 2);
    assert_eq!(e.not_matched[0].conditions[0].outcome, Tri::Maybe);
    assert!(e.not_matched[0].conditions[0].value.contains("unknown"));
    let objects = &e.not_matched[1].conditions[0];
    assert_eq!(objects.outcome, Tri::Maybe);
    assert_eq!(objects.value, "relation users (write): maybe");
    assert_eq!(
        objects.wants,
        "every (at least one) object matching public.users"
    );
    let text = e.to_string();
    assert!(text.contains("no rule matched"), "{text}");
    assert!(
        text.contains("message:  hoop: denied by policy rule default:deny"),
        "{text}"
    );
}

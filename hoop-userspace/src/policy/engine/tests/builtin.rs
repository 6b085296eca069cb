//! The built-in policy, decided request by request.

use super::*;

fn builtin_decide(req: &Req) -> (Action, String, Option<String>) {
    let d = Policy::builtin().decide(&req.input());
    (d.action, d.rule.to_string(), d.mask.map(|m| m.to_string()))
}

#[test]
fn default_policy() {
    let def = Some("default".to_string());
    let cases: &[(Req, Action, &str)] = &[
        (
            Req::new("drop").objects(&[obj("relation", "public.users", true)]),
            Action::Deny,
            "deny-drop",
        ),
        (
            Req::new("drop").objects(&[obj("schema", "billing", true)]),
            Action::Deny,
            "deny-drop",
        ),
        (
            Req::new("drop").objects(&[obj("database", "app", true)]),
            Action::Deny,
            "deny-drop",
        ),
        (Req::new("truncate"), Action::Deny, "deny-truncate"),
        (Req::new("unknown"), Action::Review, "review-unknown"),
        (
            Req {
                has_where: Some(false),
                ..Req::new("delete")
            },
            Action::Review,
            "review-without-where",
        ),
        (
            Req {
                has_where: Some(false),
                ..Req::new("update")
            },
            Action::Review,
            "review-without-where",
        ),
        (
            Req {
                has_where: Some(true),
                ..Req::new("delete")
            },
            Action::Allow,
            "allow-rest",
        ),
        (Req::new("select"), Action::Allow, "allow-rest"),
        (Req::new("insert"), Action::Allow, "allow-rest"),
        (Req::new("create"), Action::Allow, "allow-rest"),
        // Anonymous: reads yes, the rest waits for a human; DROP still denied.
        (
            Req::new("select").anonymous(),
            Action::Allow,
            "allow-anonymous-read",
        ),
        (
            Req::new("transaction").anonymous(),
            Action::Allow,
            "allow-anonymous-read",
        ),
        (
            Req::new("set")
                .anonymous()
                .objects(&[obj("setting", "search_path", true)]),
            Action::Allow,
            "allow-anonymous-read",
        ),
        (
            Req::new("set")
                .anonymous()
                .objects(&[obj("setting", "role", true)]),
            Action::Review,
            "review-anonymous-role-change",
        ),
        (
            Req::new("insert").anonymous(),
            Action::Review,
            "review-anonymous",
        ),
        (
            Req::new("create").anonymous(),
            Action::Review,
            "review-anonymous",
        ),
        (
            Req::new("copy_to").anonymous(),
            Action::Review,
            "review-anonymous",
        ),
        (
            Req::new("do").anonymous(),
            Action::Review,
            "review-anonymous",
        ),
        (Req::new("drop").anonymous(), Action::Deny, "deny-drop"),
        (
            Req::new("unknown").anonymous(),
            Action::Review,
            "review-unknown",
        ),
    ];
    for (req, action, rule) in cases {
        let got = builtin_decide(req);
        assert_eq!(
            got,
            (*action, rule.to_string(), def.clone()),
            "{} {:?}",
            req.kind,
            req.identity.kind
        );
    }
    let p = Policy::builtin();
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    assert_eq!(p.origin(), "builtin");
    assert_eq!(p.rule_names().last(), Some("default:deny"));
}

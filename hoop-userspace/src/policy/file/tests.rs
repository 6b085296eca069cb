//! Parsing and validation: every error names origin, line, column and rule.

use super::*;

/// The problems of an invalid `text`.
fn problems(text: &str) -> Vec<Problem> {
    match Policy::parse(text, "p.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(PolicyError::Invalid { problems }) => problems,
        Err(e) => panic!("{e}"),
    }
}

/// The single problem of `text`, as (line, column, rule name, message).
fn one(text: &str) -> (usize, usize, Option<String>, String) {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    let p = p.into_iter().next().unwrap();
    (p.line, p.column, p.rule.and_then(|r| r.1), p.message)
}

const HEAD: &str = "[[rule]]\nname = \"a\"\naction = \"allow\"\nstatements = [\"select\"]\n";

#[test]
fn syntax_error_names_its_line() {
    let (line, col, rule, msg) = one(&format!("{HEAD}[[rule]]\nname = \"b\nx = 1\n"));
    assert_eq!((line, rule), (6, None), "{msg}");
    assert!(col >= 1);
    assert!(msg.contains("string"), "{msg}");
}

#[test]
fn unknown_key_names_line_and_rule() {
    let text = format!("{HEAD}[[rule]]\nname = \"b\"\nactoin = \"deny\"\naction = \"deny\"\n");
    let (line, col, rule, msg) = one(&text);
    assert_eq!((line, col, rule.as_deref()), (7, 1, Some("b")), "{msg}");
    assert!(msg.contains("unknown field `actoin`"), "{msg}");
    let p = &problems(&text)[0];
    assert_eq!(p.rule, Some((2, Some("b".into()))));
    assert_eq!(
        p.to_string(),
        format!("p.toml:7:1: rule #2 `b`: {}", p.message)
    );
    // Top level and [defaults].
    let (line, _, rule, msg) = one("[defaults]\naction = \"deny\"\nfallback = 1\n");
    assert_eq!((line, rule), (3, None), "{msg}");
    let (line, _, _, msg) = one(&format!("{HEAD}\n[policy]\nx = 1\n"));
    assert_eq!(line, 6, "{msg}");
    assert!(msg.contains("unknown field `policy`"), "{msg}");
}

#[test]
fn unknown_action_and_missing_fields() {
    let (line, col, rule, msg) = one("[[rule]]\nname = \"a\"\naction = \"permit\"\n");
    assert_eq!((line, col, rule.as_deref()), (3, 10, Some("a")), "{msg}");
    assert!(msg.contains("unknown variant `permit`"), "{msg}");
    let (_, _, _, msg) = one("[[rule]]\nname = \"a\"\n");
    assert!(msg.contains("missing field `action`"), "{msg}");
}

#[test]
fn unknown_statement_kind_points_at_the_element() {
    let text =
        "[[rule]]\nname = \"a\"\naction = \"deny\"\nstatements = [\n  \"drop\",\n  \"dorp\",\n]\n";
    let (line, col, rule, msg) = one(text);
    assert_eq!((line, col, rule.as_deref()), (6, 3, Some("a")), "{msg}");
    assert!(
        msg.starts_with("unknown statement kind `dorp` in `statements`"),
        "{msg}"
    );
    let (line, _, _, msg) = one("[[rule]]\nname = \"a\"\naction = \"deny\"\ninner = \"selct\"\n");
    assert_eq!(line, 4, "{msg}");
}

#[test]
fn bad_globs_protocols_kinds_and_names() {
    let (line, col, _, msg) =
        one("[[rule]]\nname = \"a\"\naction = \"deny\"\ntarget = [\"ok\", \"pg-[0-9\"]\n");
    assert_eq!((line, col), (4, 17), "{msg}");
    assert!(msg.starts_with("`target`: bad glob `pg-[0-9`"), "{msg}");
    let (line, _, _, msg) =
        one("[[rule]]\nname = \"a\"\naction = \"deny\"\n[rule.identity]\nrepository = \"{acme\"\n");
    assert_eq!(line, 5, "{msg}");
    assert!(msg.contains("identity.repository"), "{msg}");
    let (line, _, _, msg) = one("[[rule]]\nname = \"a\"\naction = \"deny\"\nobjects = \"a.[b\"\n");
    assert_eq!(line, 4, "{msg}");
    let (_, _, _, msg) = one("[[rule]]\nname = \"a\"\naction = \"deny\"\nprotocol = \"pg\"\n");
    assert!(msg.starts_with("unknown protocol `pg`"), "{msg}");
    let (_, _, _, msg) =
        one("[[rule]]\nname = \"a\"\naction = \"deny\"\nobject_kinds = [\"table\"]\n");
    assert!(msg.starts_with("unknown object kind `table`"), "{msg}");
    let (_, _, _, msg) =
        one("[[rule]]\nname = \"a\"\naction = \"deny\"\nidentity = { kind = \"human\" }\n");
    assert!(msg.starts_with("unknown identity kind `human`"), "{msg}");
    let (line, col, _, msg) = one("[[rule]]\nname = \"a b\"\naction = \"deny\"\n");
    assert_eq!((line, col), (2, 8), "{msg}");
    assert!(msg.starts_with("bad rule name `a b`"), "{msg}");
    let (line, _, _, msg) = one("[[rule]]\nname = \"a\"\naction = \"deny\"\nuid = [0, -1]\n");
    assert_eq!(line, 4, "{msg}");
}

#[test]
fn empty_lists_never_match() {
    let (line, _, _, msg) = one("[[rule]]\nname = \"a\"\naction = \"deny\"\nstatements = []\n");
    assert_eq!(line, 4);
    assert_eq!(msg, "`statements` is an empty list, which never matches");
    let (_, _, _, msg) = one("[[rule]]\nname = \"a\"\naction = \"deny\"\nuid = []\n");
    assert!(msg.contains("`uid` is an empty list"), "{msg}");
}

#[test]
fn mask_profiles_must_be_declared() {
    let (line, col, rule, msg) =
        one("[[rule]]\nname = \"a\"\naction = \"allow\"\nmask = \"pii\"\n");
    assert_eq!((line, col, rule.as_deref()), (4, 8, Some("a")), "{msg}");
    assert!(
        msg.starts_with("mask profile `pii` is not declared"),
        "{msg}"
    );
    assert!(msg.contains("[mask_profiles.pii]"), "{msg}");
    let ok = Policy::parse(
        "[mask_profiles.pii]\ncolumns = [\"email\"]\n[[rule]]\nname = \"a\"\naction = \"allow\"\nmask = \"pii\"\n",
        "p",
    )
    .unwrap();
    assert_eq!(
        ok.mask_profiles()["pii"]["columns"][0].as_str(),
        Some("email")
    );
    let (line, _, _, msg) = one("[defaults]\nmask = \"pii\"\n");
    assert_eq!(line, 2, "{msg}");
    let (line, _, _, msg) = one("[mask_profiles.none]\nx = 1\n");
    assert_eq!(line, 1, "{msg}");
    assert!(msg.contains("reserved"), "{msg}");
    // `default` may be declared (to configure it); built-ins need no declaration.
    Policy::parse("[mask_profiles.default]\nextra = true\n", "p").unwrap();
    Policy::parse("[defaults]\nmask = \"none\"\n", "p").unwrap();
}

#[test]
fn duplicate_rule_names() {
    let text =
        format!("{HEAD}[[rule]]\nname = \"a\"\naction = \"deny\"\nstatements = [\"drop\"]\n");
    let (line, _, rule, msg) = one(&text);
    assert_eq!((line, rule.as_deref()), (6, Some("a")));
    assert_eq!(msg, "duplicate rule name (first at line 2)");
}

#[test]
fn rules_that_can_never_match() {
    // After a rule without conditions.
    let (line, _, rule, msg) = one(
        "[[rule]]\nname = \"all\"\naction = \"allow\"\n[[rule]]\nname = \"late\"\naction = \"deny\"\nstatements = [\"drop\"]\n",
    );
    assert_eq!((line, rule.as_deref()), (5, Some("late")));
    assert!(msg.contains("rule `all` (line 2) comes first"), "{msg}");
    // A broader earlier rule: superset of kinds, `**`, fewer identity conditions.
    let text = r#"
[[rule]]
name = "broad"
action = "review"
statements = ["update", "delete"]
target = "**"
[[rule]]
name = "narrow"
action = "deny"
statements = ["delete"]
target = "pg-*"
identity = { repository = "acme/*" }
"#;
    let (line, _, _, msg) = one(text);
    assert_eq!(line, 8, "{msg}");
    // Contradictions inside one rule.
    let (_, _, _, msg) = one(
        "[[rule]]\nname = \"a\"\naction = \"deny\"\nidentity = { kind = \"anonymous\", repository = \"x\" }\n",
    );
    assert!(
        msg.contains("anonymous identities have no attributes"),
        "{msg}"
    );
    let (_, _, _, msg) = one(
        "[[rule]]\nname = \"a\"\naction = \"deny\"\nstatements = [\"select\"]\ninner = [\"delete\"]\n",
    );
    assert!(msg.contains("`inner` is set only for"), "{msg}");
    let (_, _, _, msg) = one(
        "[[rule]]\nname = \"a\"\naction = \"deny\"\nstatements = [\"select\", \"insert\"]\nhas_where = false\n",
    );
    assert!(msg.contains("`has_where`"), "{msg}");
}

#[test]
fn rules_that_only_look_shadowed_are_accepted() {
    // An allow on an executable does not match an unknown executable; the deny below does.
    Policy::parse(
        r#"
[[rule]]
name = "psql-ok"
action = "allow"
exe = "/usr/bin/psql"
[[rule]]
name = "psql-drop"
action = "deny"
exe = "/usr/bin/psql"
statements = ["drop"]
"#,
        "p",
    )
    .unwrap();
    // Different patterns: the checker does not claim to know.
    Policy::parse(
        r#"
[[rule]]
name = "x"
action = "deny"
target = "pg-*"
[[rule]]
name = "y"
action = "deny"
target = "pg-prod"
"#,
        "p",
    )
    .unwrap();
    // Allow on objects (every) before deny on the same objects (any).
    Policy::parse(
        r#"
[[rule]]
name = "x"
action = "allow"
objects = ["scratch.*"]
[[rule]]
name = "y"
action = "deny"
objects = ["scratch.*"]
"#,
        "p",
    )
    .unwrap();
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = r#"
[[rule]]
name = "a"
action = "deny"
statements = ["dorp"]
[[rule]]
name = "b"
action = "allow"
mask = "nope"
target = "[x"
"#;
    let p = problems(text);
    let got: Vec<(usize, Option<usize>)> = p
        .iter()
        .map(|p| (p.line, p.rule.as_ref().map(|r| r.0)))
        .collect();
    assert_eq!(got, [(5, Some(1)), (9, Some(2)), (10, Some(2))], "{p:#?}");
    let text = PolicyError::Invalid { problems: p }.to_string();
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.starts_with("p.toml:5:15: rule #1 `a`: unknown statement kind `dorp`"),
        "{text}"
    );
}

#[test]
fn warnings_for_likely_mistakes() {
    let p = Policy::parse(
        r#"
[[rule]]
name = "a"
action = "deny"
objects = ["public.Users"]
identity = { repositry = "acme/*", team = "x" }
"#,
        "p.toml",
    )
    .unwrap();
    let w = p.warnings();
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(
        w.iter()
            .any(|w| w.starts_with("p.toml:3: rule `a`: identity.repositry"))
    );
    assert!(
        w.iter()
            .any(|w| w.contains("`public.Users` has upper-case"))
    );
}

#[test]
fn load_reads_files_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "[[rule]]\nname = \"a\"\naction = \"maybe\"\n").unwrap();
    let e = Policy::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:3:10: rule #1 `a`:", path.display())),
        "{e}"
    );
    std::fs::write(&path, HEAD).unwrap();
    let p = Policy::load(&path).unwrap();
    assert_eq!(p.origin(), path.display().to_string());
    let missing = dir.path().join("nope.toml");
    let e = Policy::load(&missing).unwrap_err();
    assert!(matches!(e, PolicyError::Read { .. }));
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn the_builtin_text_is_the_builtin_policy() {
    let p = Policy::parse(BUILTIN, "x").unwrap();
    assert_eq!(
        p.rule_names().count(),
        Policy::builtin().rule_names().count()
    );
    assert!(p.mask_profiles().is_empty());
}

#[test]
fn columns_count_characters() {
    // `é` is two bytes: the column is in characters.
    let (line, col, _, msg) =
        one("# é\n[[rule]]\nname = \"a\"\naction = \"deny\"\ntarget = [\"é*\", \"[x\"]\n");
    assert_eq!((line, col), (5, 17), "{msg}");
}

#[test]
fn the_documented_example_validates_and_behaves_as_described() {
    let doc = include_str!("../../../../docs/policy.md");
    let start = doc.find("```toml\n").expect("a toml example") + "```toml\n".len();
    let text = &doc[start..start + doc[start..].find("```").unwrap()];
    let p = Policy::parse(text, "docs/policy.md").unwrap_or_else(|e| panic!("{e}"));
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
    let names: Vec<&str> = p.rule_names().collect();
    assert_eq!(
        names,
        [
            "migrations-may-drop",
            "no-drop",
            "ci-writes-scratch-only",
            "billing-reads-masked",
            "everything-else-waits",
            "default:deny"
        ]
    );
    assert!(p.mask_profiles().contains_key("reports"));
}

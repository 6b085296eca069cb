//! Profile parsing and compile errors: each names the field and rule at fault.
use crate::mask::{DetectorKind, MaskSpecError, Masker, ProfileSpec};

fn compile_err(toml_body: &str) -> MaskSpecError {
    let spec: ProfileSpec = toml::from_str(toml_body).expect("profile parses");
    Masker::compile(&spec).expect_err("profile must not compile")
}

#[test]
fn empty_table_is_the_default_profile() {
    let spec: ProfileSpec = toml::from_str("").unwrap();
    assert_eq!(spec, ProfileSpec::default());
    assert_eq!(spec.detectors, DetectorKind::ALL.to_vec());
    assert!(spec.default_columns);
}

#[test]
fn full_profile_parses_as_in_the_docs() {
    #[derive(serde::Deserialize)]
    struct Policy {
        mask_profiles: std::collections::BTreeMap<String, ProfileSpec>,
    }
    let doc = r#"
        [mask_profiles.support]
        detectors = ["email", "credit_card", "iban", "phone"]
        default_columns = false
        columns = ["*_pin", "dob"]
        phone = { min_digits = 10, international_only = true }

        [[mask_profiles.support.custom]]
        name = "employee id"
        pattern = 'EMP-\d{6}'
        replacement = "EMP-######"
    "#;
    let p: Policy = toml::from_str(doc).unwrap();
    let spec = &p.mask_profiles["support"];
    assert_eq!(spec.detectors.len(), 4);
    assert_eq!(spec.phone.min_digits, 10);
    let m = Masker::compile(spec).unwrap();
    assert!(m.column_masked("CARD_PIN"));
    assert!(m.column_masked("dob"));
    assert!(!m.column_masked("password"), "default rules are off");
    assert_eq!(m.mask_text("EMP-123456 a@b.co"), "EMP-###### ****@b.co");
}

#[test]
fn unknown_fields_and_detectors_are_rejected() {
    let e = toml::from_str::<ProfileSpec>("detector = []").unwrap_err();
    assert!(e.to_string().contains("unknown field `detector`"), "{e}");
    let e = toml::from_str::<ProfileSpec>(r#"detectors = ["emails"]"#).unwrap_err();
    assert!(e.to_string().contains("unknown variant `emails`"), "{e}");
    let e = toml::from_str::<ProfileSpec>("phone = { digits = 3 }").unwrap_err();
    assert!(e.to_string().contains("unknown field `digits`"), "{e}");
    let e = toml::from_str::<ProfileSpec>("[[custom]]\nname = \"x\"\npatern = \"a\"").unwrap_err();
    assert!(e.to_string().contains("unknown field `patern`"), "{e}");
}

#[test]
fn compile_errors_name_the_rule() {
    let e = compile_err(
        "[[custom]]\nname = \"ok\"\npattern = \"a\"\n[[custom]]\nname = \"broken\"\npattern = \"(\"",
    );
    assert!(matches!(&e, MaskSpecError::CustomPattern { index: 1, name, .. } if name == "broken"));
    assert!(
        e.to_string()
            .starts_with("custom[1] (\"broken\"): invalid pattern"),
        "{e}"
    );

    let e = compile_err("[[custom]]\nname = \"star\"\npattern = \"a*\"");
    assert_eq!(
        e.to_string(),
        "custom[0] (\"star\"): pattern matches the empty string"
    );

    let e = compile_err("[[custom]]\nname = \"loop\"\npattern = \"x+\"\nreplacement = \"xx\"");
    assert!(
        matches!(e, MaskSpecError::CustomReplacementMatches { index: 0, .. }),
        "{e}"
    );

    let e = compile_err("[[custom]]\nname = \"nl\"\npattern = \"q\"\nreplacement = \"a\\nb\"");
    assert!(
        matches!(e, MaskSpecError::CustomReplacementControl { .. }),
        "{e}"
    );

    let e = compile_err("[[custom]]\nname = \" \"\npattern = \"q\"");
    assert_eq!(e, MaskSpecError::CustomNameEmpty { index: 0 });

    let e = compile_err(
        "[[custom]]\nname = \"d\"\npattern = \"q\"\n[[custom]]\nname = \"d\"\npattern = \"r\"",
    );
    assert!(matches!(
        e,
        MaskSpecError::CustomNameDuplicate { index: 1, .. }
    ));

    let e = compile_err(r#"columns = ["ok", ""]"#);
    assert_eq!(e, MaskSpecError::EmptyColumnGlob { index: 1 });
    assert_eq!(e.to_string(), "columns[1] is empty");

    let e = compile_err("phone = { min_digits = 3 }");
    assert_eq!(
        e.to_string(),
        "phone.min_digits = 3: must be between 7 and 15"
    );
}

#[test]
fn column_rules() {
    let m = Masker::default_profile();
    for name in [
        "password",
        "PASSWORD",
        "user_password",
        "password_hash",
        "secret",
        "client_secret",
        "access_token",
        "token",
        "api_key",
        "ssn",
        "SSN",
        "cvv",
        "private_key",
    ] {
        assert!(m.column_masked(name), "{name} should be masked");
    }
    for name in [
        "id",
        "email",
        "secretary",
        "tokenizer",
        "passwords_count2",
        "name",
        "token_type",
    ] {
        assert!(!m.column_masked(name), "{name} should not be masked");
    }
    let g = super::masker(
        r#"default_columns = false
                             columns = ["a?c", "*.x", "(y)"]"#,
    );
    assert!(g.column_masked("abc") && g.column_masked("AXC"));
    assert!(!g.column_masked("abbc"));
    assert!(
        g.column_masked("t.x") && !g.column_masked("tx"),
        "'.' is literal"
    );
    assert!(
        g.column_masked("(y)") && !g.column_masked("y"),
        "parentheses are literal"
    );
}

#[test]
fn masker_is_send_sync_and_debug_lists_detectors() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Masker>();
    let d = format!("{:?}", super::masker(r#"detectors = ["jwt", "iban"]"#));
    assert!(
        d.contains("\"iban\"") && d.contains("\"jwt\"") && !d.contains("email"),
        "{d}"
    );
}

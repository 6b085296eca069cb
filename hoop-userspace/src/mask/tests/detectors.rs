//! One block per detector: what is found, what is left alone, and the exact replacement.
use super::{masked, unchanged};

#[test]
fn email() {
    assert_eq!(
        masked("mail alice.b+tag@example.com now"),
        "mail ****@example.com now"
    );
    assert_eq!(masked("a@b.co"), "****@b.co");
    assert_eq!(
        masked("<bob@mail.sub.example.org>"),
        "<****@mail.sub.example.org>"
    );
    assert_eq!(masked("x@y@example.com"), "x@****@example.com");
    unchanged("user@localhost");
    unchanged("@example.com");
    unchanged("alice@");
    unchanged("1@2.3");
    unchanged("price: 3 @ 4.50");
}

#[test]
fn credit_card() {
    assert_eq!(masked("4111111111111111"), "************1111");
    assert_eq!(
        masked("card 4111 1111 1111 1111."),
        "card **** **** **** 1111."
    );
    assert_eq!(masked("5500-0055-5555-5559"), "****-****-****-5559");
    assert_eq!(masked("amex 3782 822463 10005"), "amex **** ****** *0005");
    assert_eq!(masked("6011111111111117"), "************1117");
    // 19 digits (Visa allows 13-19)
    assert_eq!(masked("4111111111111111110"), "***************1110");
    // a valid card followed by another group is still found
    assert_eq!(masked("4111 1111 1111 1111 12"), "**** **** **** 1111 12");
}

#[test]
fn credit_card_negatives() {
    unchanged("4111111111111112"); // Luhn fails
    unchanged("4111 1111 1111 1112");
    unchanged("1111111111111117"); // no card starts with 1 (Luhn-valid)
    unchanged("8111111111111113"); // nor with 8
    unchanged("41111111111111110000"); // 20 digits: too long, no boundary inside
    unchanged("411111111111"); // 12 digits
    unchanged("4111 1111-1111 1111"); // mixed separators
    unchanged("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"); // single-digit groups
    unchanged("id_4111111111111111"); // glued to a word
    unchanged("order 2024-01-15 12:30:00 #98765");
}

#[test]
fn luhn_edge_cases() {
    use crate::mask::checks::luhn;
    let l = |s: &str| luhn(s.bytes());
    assert!(l("0"));
    assert!(l("79927398713"));
    assert!(!l("79927398710"));
    assert!(l("4111111111111111"));
    assert!(l("0000000000000000"));
    // doubling 9 gives 18 -> 9
    assert!(l("91"));
    assert!(!l("19"));
}

#[test]
fn iban() {
    assert_eq!(masked("DE89370400440532013000"), "DE****************3000");
    assert_eq!(
        masked("IBAN: DE89 3704 0044 0532 0130 00;"),
        "IBAN: DE** **** **** **** **30 00;"
    );
    assert_eq!(masked("GB82WEST12345698765432"), "GB****************5432");
    assert_eq!(
        masked("FR1420041010050500013M02606"),
        "FR*********************2606"
    );
    assert_eq!(masked("NO9386011117947"), "NO*********7947");
    assert_eq!(
        masked("pay to NL91ABNA0417164300."),
        "pay to NL************4300."
    );
}

#[test]
fn iban_negatives() {
    unchanged("DE89370400440532013001"); // mod 97 fails
    unchanged("DE8937040044053201300"); // one short for DE
    unchanged("DE893704004405320130000"); // one long for DE
    unchanged("XX89370400440532013000"); // no such country
    unchanged("de89370400440532013000"); // lowercase
    unchanged("DE89 3704 0044 0532 0130 00X");
    unchanged("DE89  3704 0044 0532 0130 00"); // double space
}

#[test]
fn mod97_edge_cases() {
    use crate::mask::checks::iban_mod97;
    assert!(iban_mod97(b"GB82WEST12345698765432"));
    assert!(!iban_mod97(b"GB82WEST12345698765433"));
    // check digits 00, 01 and 99 are never produced by the algorithm
    assert!(!iban_mod97(b"GB00WEST12345698765432"));
    assert!(!iban_mod97(b"GB8"));
    assert!(!iban_mod97(b"gb82west12345698765432"));
}

#[test]
fn phone() {
    assert_eq!(masked("call +1 555 123 4567"), "call +* *** *** **67");
    assert_eq!(masked("+44 20 7946 0958"), "+** ** **** **58");
    assert_eq!(masked("+4915112345678"), "+***********78");
    assert_eq!(masked("tel (555) 123-4567"), "tel (***) ***-**67");
    assert_eq!(masked("555-123-4567"), "***-***-**67");
    assert_eq!(masked("555.123.4567"), "***.***.**67");
    assert_eq!(masked("06 12 34 56 78"), "** ** ** ** 78");
    assert_eq!(masked("020 7946 0958"), "*** **** **58");
}

#[test]
fn phone_negatives() {
    unchanged("2024-01-15");
    unchanged("15.01.2024");
    unchanged("01/02/2024");
    unchanged("12:30:45");
    unchanged("192.168.100.200");
    unchanged("10.0.0.1");
    unchanged("id 1234567890"); // bare digits: no separators, no '+'
    unchanged("555-123-45678");
    unchanged("1555-123-4567x");
    unchanged("555-123.4567"); // mixed separators
    unchanged("v1.2.3-456.789.0123");
    unchanged("+12345"); // too few digits
    unchanged("+1234567890123456"); // more than E.164's 15
    unchanged("3+4567890123");
    unchanged("0800-1200");
    unchanged("123-45-6789");
}

#[test]
fn phone_options() {
    let m = super::masker(
        r#"phone = { min_digits = 11, international_only = true }
           detectors = ["phone"]"#,
    );
    assert_eq!(m.mask_text("+44 20 7946 0958"), "+** ** **** **58");
    assert_eq!(m.mask_text("+33 1 23 45 67"), "+33 1 23 45 67");
    assert_eq!(
        super::default().mask_text("+33 1 23 45 67"),
        "+** * ** ** 67"
    );
    assert_eq!(m.mask_text("555-123-4567"), "555-123-4567");
}

fn b64(n: usize) -> String {
    (0..n)
        .map(|i| b"AbCdEfGh0123+/xyZ"[i % 17] as char)
        .collect()
}

#[test]
fn azure_storage_key() {
    let key = format!("{}==", b64(86));
    assert_eq!(masked(&format!("key: {key}")), "key: ****");
    unchanged(&format!("{}==", b64(85)));
    unchanged(&format!("x{}==", b64(86)));
}

#[test]
fn azure_sas() {
    let url =
        "https://acct.blob.core.windows.net/c?sv=2022-11-02&ss=b&sig=AbCdEf0123%2Bxyz%3D&se=2030";
    assert_eq!(
        masked(url),
        "https://acct.blob.core.windows.net/c?sv=2022-11-02&ss=b&sig=****&se=2030"
    );
    unchanged("signature=abcdefghijklmnop");
    unchanged("sig=short");
}

#[test]
fn connection_strings() {
    assert_eq!(
        masked("Server=db;User Id=sa;Password=Sup3r$ecret;Encrypt=true"),
        "Server=db;User Id=sa;Password=****;Encrypt=true"
    );
    assert_eq!(
        masked("uid=sa;PWD = 'a b c';x=1"),
        "uid=sa;PWD = '****';x=1"
    );
    assert_eq!(masked("Password=\"p;w\"x"), "Password=\"****\"x");
    assert_eq!(masked("Driver={x};Pwd={p;w};"), "Driver={x};Pwd={****};");
    assert_eq!(
        masked(
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc+/def==;EndpointSuffix=core.windows.net"
        ),
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=****;EndpointSuffix=core.windows.net"
    );
    assert_eq!(
        masked("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=Zm9vYmFy="),
        "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=****"
    );
    assert_eq!(
        masked("postgres://app:s3cr3t@db.internal:5432/app"),
        "postgres://app:****@db.internal:5432/app"
    );
    assert_eq!(masked("redis://:pw@10.0.0.1/0"), "redis://:****@10.0.0.1/0");
    unchanged("password authentication failed for user \"app\"");
    unchanged("Password=;");
    unchanged("https://example.com:8443/path");
}

#[test]
fn jwt() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    assert_eq!(
        masked(&format!("Bearer {jwt}")),
        "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.****.****"
    );
    unchanged("eyJhbGciOiJIUzI1NiJ9");
    unchanged("keyJaaaa.bbbb.cccc");
}

#[test]
fn pem_private_key() {
    let pem =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc+/=\n-----END RSA PRIVATE KEY-----";
    assert_eq!(
        masked(&format!("key:\n{pem}\ntrailer")),
        "key:\n-----BEGIN RSA PRIVATE KEY-----****-----END RSA PRIVATE KEY-----\ntrailer"
    );
    assert_eq!(
        masked("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg"),
        "-----BEGIN PRIVATE KEY-----****-----END PRIVATE KEY-----"
    );
    assert_eq!(
        masked(
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----"
        ),
        "-----BEGIN PGP PRIVATE KEY BLOCK-----****-----END PGP PRIVATE KEY BLOCK-----"
    );
    unchanged("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
    unchanged("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----");
}

#[test]
fn github_tokens() {
    let body36 = "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5";
    for p in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        assert_eq!(
            masked(&format!("token {p}{body36}")),
            format!("token {p}****")
        );
    }
    let pat =
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123";
    assert_eq!(masked(pat), "github_pat_****");
    unchanged("ghp_short");
    unchanged(&format!("xghp_{body36}"));
    unchanged(&format!("ghx_{body36}"));
}

#[test]
fn azure_devops_pat() {
    let legacy = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst";
    assert_eq!(legacy.len(), 52);
    assert_eq!(masked(&format!("pat={legacy}")), "pat=****");
    assert_eq!(
        masked(&format!("{}:{legacy} end", "x".repeat(30))),
        format!("{}:**** end", "x".repeat(30))
    );
    let new = format!("{}AZDO{}", "A1b2C3d4".repeat(10).get(..76).unwrap(), "Zz09");
    assert_eq!(new.len(), 84);
    assert_eq!(masked(&format!("{new}.")), "****.");
    unchanged(&format!("{legacy}a")); // 53
    unchanged(&"abcdefghijklmnopqrstuvwxyz".repeat(2)); // 52 letters, no digit
    unchanged(&format!("{legacy}8")); // glued to a non-base32 alphanumeric
}

#[test]
fn overlapping_detections_mask_once() {
    // A storage key inside a connection string: the connection string (earlier start) wins.
    let key = format!("{}==", b64(86));
    assert_eq!(masked(&format!("AccountKey={key};")), "AccountKey=****;");
    // URL userinfo and e-mail-shaped host part.
    assert_eq!(
        masked("https://u:p4ss@mail.example.com/x"),
        "https://u:****@mail.example.com/x"
    );
}

#[test]
fn detectors_can_be_turned_off() {
    let m = super::masker(r#"detectors = ["email"]"#);
    assert_eq!(
        m.mask_text("a@b.co 4111111111111111"),
        "****@b.co 4111111111111111"
    );
    let none = super::masker("detectors = []");
    assert_eq!(
        none.mask_text("a@b.co 4111111111111111"),
        "a@b.co 4111111111111111"
    );
}

#[test]
fn custom_rules() {
    let m = super::masker(
        r#"detectors = []
           [[custom]]
           name = "employee id"
           pattern = 'EMP-\d{6}'
           replacement = "EMP-######"
           [[custom]]
           name = "internal host"
           pattern = '(?i)\b[a-z0-9-]+\.corp\.example\b'"#,
    );
    assert_eq!(
        m.mask_text("EMP-123456 on db1.corp.example"),
        "EMP-###### on ****"
    );
    assert_eq!(m.mask_text("EMP-12345"), "EMP-12345");
}

#[test]
fn non_ascii_text_survives() {
    assert_eq!(
        masked("Grüße an jürgen@example.de, Ωmega"),
        "Grüße an ****@example.de, Ωmega"
    );
    assert_eq!(
        masked("名前 Password=秘密の鍵; 終わり"),
        "名前 Password=****; 終わり"
    );
}

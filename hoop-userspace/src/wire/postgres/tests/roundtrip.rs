//! Encoders for messages the proxy synthesizes or rewrites: encode, decode back,
//! compare fields; encoders refuse input that would corrupt framing.
use bytes::BytesMut;
use proptest::prelude::*;

use crate::wire::postgres::backend::{
    self, Authentication, BackendKeyData, BackendMessage, CommandComplete, ErrorNotice,
    FieldDescription, ParameterStatus, Severity, TransactionStatus, encode_auth_sasl,
    encode_data_row, encode_row_description,
};
use crate::wire::postgres::error::EncodeError;
use crate::wire::postgres::frontend::{self, FrontendMessage, encode_bind};
use crate::wire::postgres::startup::{self, ProtocolVersion, StartupPacket};
use crate::wire::postgres::values::Format;

fn one_backend(buf: &[u8]) -> BackendMessage<'_> {
    let (msg, n) = backend::decode(buf).unwrap().unwrap();
    assert_eq!(n, buf.len());
    msg
}

fn one_frontend(buf: &[u8]) -> FrontendMessage<'_> {
    let (msg, n) = frontend::decode(buf).unwrap().unwrap();
    assert_eq!(n, buf.len());
    msg
}

#[test]
fn error_and_notice_responses() {
    let e = ErrorNotice {
        severity: Severity::Error,
        code: "42501",
        message: "hoop: DELETE without WHERE is not allowed",
        detail: Some("table public.accounts"),
        hint: Some("add a WHERE clause"),
    };
    let mut buf = BytesMut::new();
    e.encode_error(&mut buf).unwrap();
    let BackendMessage::ErrorResponse(f) = one_backend(&buf) else {
        panic!()
    };
    assert_eq!(
        (f.severity(), f.code(), f.message()),
        (Some("ERROR"), Some("42501"), Some(e.message))
    );
    assert_eq!(
        (f.detail(), f.hint(), f.get(b'S')),
        (e.detail, e.hint, Some("ERROR"))
    );

    let mut buf = BytesMut::new();
    ErrorNotice {
        severity: Severity::Notice,
        detail: None,
        hint: None,
        ..e
    }
    .encode_notice(&mut buf)
    .unwrap();
    let BackendMessage::NoticeResponse(f) = one_backend(&buf) else {
        panic!()
    };
    assert_eq!(
        (f.severity(), f.detail(), f.iter().count()),
        (Some("NOTICE"), None, 4)
    );

    let mut buf = BytesMut::from(&b"keep"[..]);
    assert_eq!(
        ErrorNotice { code: "4250", ..e }.encode_error(&mut buf),
        Err(EncodeError::OutOfRange { field: "SQLSTATE" })
    );
    assert_eq!(
        ErrorNotice {
            message: "a\0b",
            ..e
        }
        .encode_error(&mut buf),
        Err(EncodeError::NulInString {
            field: "error field"
        })
    );
    assert_eq!(&buf[..], b"keep", "a failed encode leaves no partial frame");
}

#[test]
fn ready_for_query_key_data_parameter_status_command_complete() {
    for status in [
        TransactionStatus::Idle,
        TransactionStatus::InTransaction,
        TransactionStatus::Failed,
    ] {
        let mut buf = BytesMut::new();
        status.encode_ready_for_query(&mut buf);
        assert_eq!(one_backend(&buf), BackendMessage::ReadyForQuery(status));
    }
    for key in [&[1u8, 2, 3, 4][..], &[9; 32]] {
        let mut buf = BytesMut::new();
        BackendKeyData {
            pid: 4242,
            secret_key: key,
        }
        .encode(&mut buf)
        .unwrap();
        assert_eq!(
            one_backend(&buf),
            BackendMessage::BackendKeyData(BackendKeyData {
                pid: 4242,
                secret_key: key
            })
        );
    }
    assert!(
        BackendKeyData {
            pid: 1,
            secret_key: &[1, 2]
        }
        .encode(&mut BytesMut::new())
        .is_err()
    );
    let mut buf = BytesMut::new();
    let ps = ParameterStatus {
        name: "application_name",
        value: "hoop",
    };
    ps.encode(&mut buf).unwrap();
    assert_eq!(one_backend(&buf), BackendMessage::ParameterStatus(ps));
    for (tag, command, rows) in [
        ("INSERT 0 5", "INSERT", Some(5)),
        ("SELECT 10", "SELECT", Some(10)),
        ("CREATE TABLE", "CREATE TABLE", None),
    ] {
        let mut buf = BytesMut::new();
        CommandComplete { tag }.encode(&mut buf).unwrap();
        let BackendMessage::CommandComplete(c) = one_backend(&buf) else {
            panic!()
        };
        assert_eq!((c.tag, c.command(), c.rows()), (tag, command, rows));
    }
}

#[test]
fn authentication_requests() {
    let all = [
        Authentication::Ok,
        Authentication::CleartextPassword,
        Authentication::Md5Password { salt: [1, 2, 3, 4] },
        Authentication::SaslContinue(b"r=abc,s=xyz,i=4096"),
        Authentication::SaslFinal(b"v=proof"),
        Authentication::GssContinue(b"token"),
    ];
    for auth in all {
        let mut buf = BytesMut::new();
        auth.encode(&mut buf).unwrap();
        assert_eq!(one_backend(&buf), BackendMessage::Authentication(auth));
    }
    let mut buf = BytesMut::new();
    encode_auth_sasl(&mut buf, &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]).unwrap();
    let BackendMessage::Authentication(Authentication::Sasl(m)) = one_backend(&buf) else {
        panic!()
    };
    assert_eq!(
        m.iter().collect::<Vec<_>>(),
        ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    );
}

#[test]
fn rewritten_data_row_and_row_description() {
    let row = [Some(&b"42"[..]), None, Some(b"")];
    let mut buf = BytesMut::new();
    encode_data_row(&mut buf, row).unwrap();
    let BackendMessage::DataRow(decoded) = one_backend(&buf) else {
        panic!()
    };
    assert_eq!(decoded.values.iter().collect::<Vec<_>>(), row);
    // Masking: replace column 0, keep the rest, length recomputed.
    let mut masked = BytesMut::new();
    encode_data_row(
        &mut masked,
        decoded
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| if i == 0 { Some(&b"****"[..]) } else { v }),
    )
    .unwrap();
    let BackendMessage::DataRow(m) = one_backend(&masked) else {
        panic!()
    };
    assert_eq!(
        m.values.iter().collect::<Vec<_>>(),
        [Some(&b"****"[..]), None, Some(b"")]
    );
    assert_eq!(masked.len(), buf.len() + 2);

    let fields = [FieldDescription {
        name: "email",
        table_oid: 16384,
        column_attr: 2,
        type_oid: 25,
        type_size: -1,
        type_modifier: -1,
        format: Format::Text,
    }];
    let mut buf = BytesMut::new();
    encode_row_description(&mut buf, &fields).unwrap();
    let BackendMessage::RowDescription(d) = one_backend(&buf) else {
        panic!()
    };
    assert_eq!(d.fields().collect::<Vec<_>>(), fields);
}

#[test]
fn startup_phase_encoders() {
    let mut buf = BytesMut::new();
    startup::encode_startup(
        &mut buf,
        ProtocolVersion::V3_0,
        [
            ("user", "alice"),
            ("database", "app"),
            ("application_name", "hoop"),
        ],
    )
    .unwrap();
    let (StartupPacket::Startup { version, params }, n) = startup::decode(&buf).unwrap().unwrap()
    else {
        panic!()
    };
    assert_eq!((version, n), (ProtocolVersion::V3_0, buf.len()));
    assert_eq!(
        params.iter().collect::<Vec<_>>(),
        [
            ("user", "alice"),
            ("database", "app"),
            ("application_name", "hoop")
        ]
    );
    assert!(
        startup::encode_startup(&mut BytesMut::new(), ProtocolVersion::V3_0, [("", "x")]).is_err()
    );

    let mut buf = BytesMut::new();
    startup::encode_ssl_request(&mut buf);
    assert_eq!(
        startup::decode(&buf).unwrap().unwrap(),
        (StartupPacket::SslRequest, 8)
    );
    let mut buf = BytesMut::new();
    startup::encode_cancel_request(&mut buf, 77, &[1, 2, 3, 4]).unwrap();
    assert_eq!(
        startup::decode(&buf).unwrap().unwrap(),
        (
            StartupPacket::CancelRequest {
                pid: 77,
                secret_key: &[1, 2, 3, 4]
            },
            16
        )
    );
}

#[test]
fn password_and_sasl_responses() {
    let mut buf = BytesMut::new();
    frontend::encode_password(&mut buf, "md5abc").unwrap();
    let FrontendMessage::AuthResponse(p) = one_frontend(&buf) else {
        panic!()
    };
    assert_eq!(p.password(), Ok("md5abc"));

    for data in [Some(&b"n,,n=,r=nonce"[..]), None] {
        let mut buf = BytesMut::new();
        frontend::encode_sasl_initial_response(&mut buf, "SCRAM-SHA-256", data).unwrap();
        let FrontendMessage::AuthResponse(p) = one_frontend(&buf) else {
            panic!()
        };
        let init = p.sasl_initial().unwrap();
        assert_eq!((init.mechanism, init.data), ("SCRAM-SHA-256", data));
        assert!(p.password().is_err(), "a SASL body is not a password");
    }
    let mut buf = BytesMut::new();
    frontend::encode_sasl_response(&mut buf, b"c=biws,r=x,p=y").unwrap();
    let FrontendMessage::AuthResponse(p) = one_frontend(&buf) else {
        panic!()
    };
    assert_eq!(p.sasl_response(), b"c=biws,r=x,p=y");
}

proptest! {
    #[test]
    fn data_rows_round_trip(values in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)), 0..20)) {
        let mut buf = BytesMut::new();
        encode_data_row(&mut buf, values.iter().map(|v| v.as_deref())).unwrap();
        let BackendMessage::DataRow(row) = one_backend(&buf) else { panic!() };
        prop_assert!(row.values.iter().eq(values.iter().map(|v| v.as_deref())));
    }

    #[test]
    fn binds_round_trip(
        portal in "[a-z]{0,8}", statement in "[a-z0-9_]{0,8}",
        params in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)), 0..8),
        binary in any::<bool>(),
    ) {
        let formats = if binary { vec![Format::Binary] } else { vec![] };
        let mut buf = BytesMut::new();
        encode_bind(&mut buf, &portal, &statement, &formats, params.iter().map(|p| p.as_deref()), &[Format::Text]).unwrap();
        let FrontendMessage::Bind(b) = one_frontend(&buf) else { panic!() };
        prop_assert_eq!((b.portal, b.statement), (portal.as_str(), statement.as_str()));
        prop_assert!(b.params.iter().eq(params.iter().map(|p| p.as_deref())));
        for i in 0..params.len() {
            prop_assert_eq!(b.param_format(i), if binary { Format::Binary } else { Format::Text });
        }
    }

    #[test]
    fn queries_round_trip(sql in "[^\u{0}]{0,200}") {
        let mut buf = BytesMut::new();
        frontend::Query { sql: &sql }.encode(&mut buf).unwrap();
        prop_assert_eq!(one_frontend(&buf), FrontendMessage::Query(frontend::Query { sql: &sql }));
    }
}

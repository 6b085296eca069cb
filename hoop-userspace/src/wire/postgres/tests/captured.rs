//! Decodes traffic recorded from a real PostgreSQL 15 server and its clients
//! (psql, pgbench, asyncpg): every byte must decode, and re-encoding every
//! decoded message must reproduce the recorded frame exactly.
use bytes::BytesMut;

use super::{CANCEL_REQUEST, CAPTURES, Capture, split_backend, split_frontend};
use crate::wire::postgres::backend::{self, Authentication, BackendMessage, TransactionStatus};
use crate::wire::postgres::frontend::{self, FrontendMessage};
use crate::wire::postgres::startup::{self, ProtocolVersion, StartupPacket};
use crate::wire::postgres::values::Format;

fn capture(name: &str) -> &'static Capture {
    CAPTURES
        .iter()
        .find(|c| c.name == name)
        .expect("known capture")
}

fn frontend_msgs(c: &Capture) -> Vec<FrontendMessage<'static>> {
    split_frontend(c.fe)
        .frames
        .iter()
        .map(|f| frontend::decode(f).unwrap().unwrap().0)
        .collect()
}

fn backend_msgs(c: &Capture) -> Vec<BackendMessage<'static>> {
    split_backend(c.be)
        .frames
        .iter()
        .map(|f| backend::decode(f).unwrap().unwrap().0)
        .collect()
}

#[test]
fn every_captured_message_decodes_and_reencodes_byte_exact() {
    let mut total = 0;
    for c in CAPTURES {
        let fe = split_frontend(c.fe);
        for pkt in &fe.startup {
            let (msg, n) = startup::decode(pkt).unwrap().unwrap();
            assert_eq!(n, pkt.len(), "{}", c.name);
            let mut out = BytesMut::new();
            msg.encode(&mut out).unwrap();
            assert_eq!(&out[..], *pkt, "{}: startup packet re-encode", c.name);
        }
        for frame in &fe.frames {
            let (msg, n) = frontend::decode(frame)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name))
                .unwrap();
            assert_eq!(n, frame.len());
            let mut out = BytesMut::new();
            msg.encode(&mut out).unwrap();
            assert_eq!(&out[..], *frame, "{}: {msg:?}", c.name);
            total += 1;
        }
        for frame in &split_backend(c.be).frames {
            let (msg, n) = backend::decode(frame)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name))
                .unwrap();
            assert_eq!(n, frame.len());
            let mut out = BytesMut::new();
            msg.encode(&mut out).unwrap();
            assert_eq!(&out[..], *frame, "{}: {msg:?}", c.name);
            total += 1;
        }
    }
    assert!(total > 300, "captures look truncated: {total} messages");
}

#[test]
fn simple_session_startup_and_scram() {
    let c = capture("simple");
    let fe = split_frontend(c.fe);
    assert_eq!(
        startup::decode(fe.startup[0]).unwrap().unwrap().0,
        StartupPacket::SslRequest
    );
    let StartupPacket::Startup { version, params } =
        startup::decode(fe.startup[1]).unwrap().unwrap().0
    else {
        panic!("expected StartupMessage");
    };
    assert_eq!(version, ProtocolVersion::V3_0);
    assert_eq!(params.get("user"), Some("hoop"));
    assert_eq!(params.get("database"), Some("hoop"));
    assert_eq!(
        split_backend(c.be).preamble,
        b"N",
        "server refused SSL with 'N'"
    );

    let be = backend_msgs(c);
    let BackendMessage::Authentication(Authentication::Sasl(mechs)) = be[0] else {
        panic!("{:?}", be[0])
    };
    assert_eq!(mechs.iter().collect::<Vec<_>>(), ["SCRAM-SHA-256"]);
    assert!(
        matches!(be[1], BackendMessage::Authentication(Authentication::SaslContinue(d)) if d.starts_with(b"r="))
    );
    assert!(
        matches!(be[2], BackendMessage::Authentication(Authentication::SaslFinal(d)) if d.starts_with(b"v="))
    );
    assert_eq!(be[3], BackendMessage::Authentication(Authentication::Ok));

    let fe_msgs = frontend_msgs(c);
    let FrontendMessage::AuthResponse(first) = fe_msgs[0] else {
        panic!()
    };
    let init = first.sasl_initial().unwrap();
    assert_eq!(init.mechanism, "SCRAM-SHA-256");
    assert!(init.data.unwrap().starts_with(b"n,,n=,r="));
    let FrontendMessage::AuthResponse(second) = fe_msgs[1] else {
        panic!()
    };
    assert!(second.sasl_response().starts_with(b"c=biws,r="));
}

#[test]
fn simple_session_queries_rows_errors_notices_copy() {
    let c = capture("simple");
    let queries: Vec<&str> = frontend_msgs(c)
        .iter()
        .filter_map(|m| match m {
            FrontendMessage::Query(q) => Some(q.sql),
            _ => None,
        })
        .collect();
    assert!(queries[0].starts_with("CREATE TABLE t"));
    assert!(
        queries
            .iter()
            .any(|q| q.contains("SELECT count(*) FROM t") && q.contains("; SELECT now()"))
    );
    assert!(
        frontend_msgs(c)
            .iter()
            .any(|m| matches!(m, FrontendMessage::CopyData(d) if d.starts_with(b"3\tcarol\t\\N")))
    );

    let be = backend_msgs(c);
    let server_version = be.iter().find_map(|m| match m {
        BackendMessage::ParameterStatus(p) if p.name == "server_version" => Some(p.value),
        _ => None,
    });
    assert!(server_version.unwrap().starts_with("15."));
    let desc = be
        .iter()
        .find_map(|m| {
            if let BackendMessage::RowDescription(d) = m {
                Some(*d)
            } else {
                None
            }
        })
        .unwrap();
    let names: Vec<_> = desc
        .fields()
        .map(|f| (f.name, f.type_oid, f.format))
        .collect();
    assert_eq!(
        names,
        [
            ("id", 23, Format::Text),
            ("name", 25, Format::Text),
            ("note", 25, Format::Text)
        ]
    );
    assert!(desc.fields().all(|f| f.table_oid != 0));
    let first_row = be
        .iter()
        .find_map(|m| {
            if let BackendMessage::DataRow(r) = m {
                Some(*r)
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(
        first_row.values.iter().collect::<Vec<_>>(),
        [Some(&b"1"[..]), Some(b"alice"), None]
    );

    let errors: Vec<_> = be
        .iter()
        .filter_map(|m| {
            if let BackendMessage::ErrorResponse(e) = m {
                Some(*e)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(errors[0].code(), Some("22012"));
    assert_eq!(errors[0].severity(), Some("ERROR"));
    assert_eq!(errors[0].message(), Some("division by zero"));
    assert_eq!(errors[1].code(), Some("42703"), "undefined column");
    let notice = be
        .iter()
        .find_map(|m| {
            if let BackendMessage::NoticeResponse(n) = m {
                Some(*n)
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(notice.message(), Some("hello 42"));
    let note = be.iter().find_map(|m| {
        if let BackendMessage::NotificationResponse(n) = m {
            Some(*n)
        } else {
            None
        }
    });
    assert_eq!(
        note.map(|n| (n.channel, n.payload)),
        Some(("ch", "payload"))
    );
    assert!(be.contains(&BackendMessage::ReadyForQuery(TransactionStatus::Failed)));
    assert!(be.contains(&BackendMessage::ReadyForQuery(
        TransactionStatus::InTransaction
    )));
    assert!(be.iter().any(|m| matches!(m, BackendMessage::CopyOutResponse(r) if r.format == Format::Text && r.column_formats.len() == 3)));
    assert!(
        be.iter()
            .any(|m| matches!(m, BackendMessage::CopyInResponse(_)))
    );
    assert!(be.iter().any(|m| matches!(m, BackendMessage::CommandComplete(c) if c.tag == "COPY 2" && c.rows() == Some(2))));
}

#[test]
fn extended_session_binds_binary_and_null_parameters() {
    let c = capture("extended");
    let fe = frontend_msgs(c);
    let insert = fe.iter().find_map(|m| match m {
        FrontendMessage::Parse(p) if p.query.starts_with("INSERT INTO kv") => Some(*p),
        _ => None,
    });
    assert!(insert.is_some());
    let binds: Vec<_> = fe
        .iter()
        .filter_map(|m| {
            if let FrontendMessage::Bind(b) = m {
                Some(*b)
            } else {
                None
            }
        })
        .collect();
    let with_null = binds
        .iter()
        .find(|b| b.params.iter().any(|v| v.is_none()))
        .expect("a NULL parameter");
    assert_eq!(with_null.params.len(), 3);
    assert_eq!(
        with_null.param_format(0),
        Format::Binary,
        "asyncpg sends binary parameters"
    );
    assert_eq!(
        with_null.params.iter().next().unwrap(),
        Some(&[0, 0, 0, 1][..])
    );
    assert!(fe.iter().any(|m| matches!(m, FrontendMessage::Describe(_))));
    assert!(fe.iter().any(|m| matches!(m, FrontendMessage::Flush)));

    let be = backend_msgs(c);
    assert!(be.contains(&BackendMessage::ParseComplete));
    assert!(be.contains(&BackendMessage::NoData));
    assert!(be.iter().any(
        |m| matches!(m, BackendMessage::ParameterDescription(p) if p.types.iter().eq([23, 25, 17]))
    ));
    let err = be.iter().find_map(|m| {
        if let BackendMessage::ErrorResponse(e) = m {
            Some(*e)
        } else {
            None
        }
    });
    assert_eq!(err.and_then(|e| e.code()), Some("22012"));
}

#[test]
fn pgbench_prepared_session() {
    let fe = frontend_msgs(capture("pgbench"));
    let parses: Vec<_> = fe
        .iter()
        .filter_map(|m| {
            if let FrontendMessage::Parse(p) = m {
                Some(p.name)
            } else {
                None
            }
        })
        .collect();
    assert!(
        parses.len() >= 7 && parses.iter().all(|n| n.starts_with('P')),
        "{parses:?}"
    );
    let binds = fe
        .iter()
        .filter(|m| matches!(m, FrontendMessage::Bind(b) if b.statement.starts_with('P')))
        .count();
    assert_eq!(binds, 14, "2 transactions x 7 statements");
    let executes = fe
        .iter()
        .filter(|m| matches!(m, FrontendMessage::Execute(e) if e.max_rows == 0))
        .count();
    assert_eq!(executes, 14);
}

#[test]
fn md5_and_cleartext_password_sessions() {
    let md5 = capture("md5");
    let be = backend_msgs(md5);
    assert!(matches!(
        be[0],
        BackendMessage::Authentication(Authentication::Md5Password { .. })
    ));
    let FrontendMessage::AuthResponse(p) = frontend_msgs(md5)[0] else {
        panic!()
    };
    let hash = p.password().unwrap();
    assert!(hash.starts_with("md5") && hash.len() == 35, "{hash}");

    let clear = capture("cleartext");
    assert_eq!(
        backend_msgs(clear)[0],
        BackendMessage::Authentication(Authentication::CleartextPassword)
    );
    let FrontendMessage::AuthResponse(p) = frontend_msgs(clear)[0] else {
        panic!()
    };
    assert_eq!(p.password().unwrap(), "clearpw");
}

#[test]
fn cancel_request_matches_backend_key_data() {
    let key = backend_msgs(capture("cancel"))
        .into_iter()
        .find_map(|m| {
            if let BackendMessage::BackendKeyData(k) = m {
                Some(k)
            } else {
                None
            }
        })
        .unwrap();
    let (pkt, n) = startup::decode(CANCEL_REQUEST).unwrap().unwrap();
    assert_eq!(n, 16);
    assert_eq!(
        pkt,
        StartupPacket::CancelRequest {
            pid: key.pid,
            secret_key: key.secret_key
        }
    );
    let err = backend_msgs(capture("cancel")).into_iter().find_map(|m| {
        if let BackendMessage::ErrorResponse(e) = m {
            Some(e)
        } else {
            None
        }
    });
    assert_eq!(err.and_then(|e| e.code()), Some("57014"), "query_canceled");
}

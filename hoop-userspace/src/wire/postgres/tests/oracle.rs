//! Differential tests against `postgres-protocol` (rust-postgres): it decodes
//! the same captured server traffic, and its frontend encoders must produce the
//! same bytes as ours.
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message as Pp;
use postgres_protocol::message::frontend as ppf;

use super::{CAPTURES, split_backend};
use crate::wire::postgres::backend::{self, Authentication as A, BackendMessage as B};
use crate::wire::postgres::frontend::{self, Close, Describe, Execute, FrontendMessage, Target};
use crate::wire::postgres::startup::{self, ProtocolVersion};
use crate::wire::postgres::values::Format;

#[test]
fn backend_decoding_agrees_with_postgres_protocol() {
    for c in CAPTURES {
        let frames = split_backend(c.be).frames;
        let mut stream = BytesMut::from(&frames.concat()[..]);
        for frame in frames {
            let theirs = Pp::parse(&mut stream).unwrap().unwrap();
            let ours = backend::decode(frame).unwrap().unwrap().0;
            compare(c.name, &ours, &theirs);
        }
    }
}

fn compare(name: &str, ours: &B<'_>, theirs: &Pp) {
    match (ours, theirs) {
        (B::Authentication(A::Ok), Pp::AuthenticationOk)
        | (B::Authentication(A::CleartextPassword), Pp::AuthenticationCleartextPassword)
        | (B::ParseComplete, Pp::ParseComplete)
        | (B::BindComplete, Pp::BindComplete)
        | (B::NoData, Pp::NoData)
        | (B::CopyDone, Pp::CopyDone)
        | (B::CopyInResponse(_), Pp::CopyInResponse(_)) => {}
        (B::Authentication(A::Md5Password { salt }), Pp::AuthenticationMd5Password(b)) => {
            assert_eq!(*salt, b.salt())
        }
        (B::Authentication(A::Sasl(m)), Pp::AuthenticationSasl(b)) => {
            assert!(m.iter().eq(b.mechanisms().iterator().map(Result::unwrap)))
        }
        (B::Authentication(A::SaslContinue(d)), Pp::AuthenticationSaslContinue(b)) => {
            assert_eq!(*d, b.data())
        }
        (B::Authentication(A::SaslFinal(d)), Pp::AuthenticationSaslFinal(b)) => {
            assert_eq!(*d, b.data())
        }
        (B::ParameterStatus(p), Pp::ParameterStatus(b)) => {
            assert_eq!((p.name, p.value), (b.name().unwrap(), b.value().unwrap()))
        }
        (B::BackendKeyData(k), Pp::BackendKeyData(b)) => {
            assert_eq!(
                (k.pid, k.secret_key),
                (b.process_id(), &b.secret_key().to_be_bytes()[..])
            )
        }
        (B::ReadyForQuery(s), Pp::ReadyForQuery(b)) => assert_eq!(s.byte(), b.status()),
        (B::CommandComplete(c), Pp::CommandComplete(b)) => assert_eq!(c.tag, b.tag().unwrap()),
        (B::RowDescription(d), Pp::RowDescription(b)) => {
            let theirs: Vec<_> = b
                .fields()
                .map(|f| Ok((f.name().to_owned(), f.type_oid(), f.table_oid(), f.format())))
                .collect()
                .unwrap();
            let ours: Vec<_> = d
                .fields()
                .map(|f| (f.name.to_owned(), f.type_oid, f.table_oid, f.format.code()))
                .collect();
            assert_eq!(ours, theirs);
        }
        (B::DataRow(r), Pp::DataRow(b)) => {
            let buf = b.buffer();
            let theirs: Vec<Option<&[u8]>> = b
                .ranges()
                .map(|r| Ok(r.map(|r| &buf[r])))
                .collect()
                .unwrap();
            assert!(r.values.iter().eq(theirs));
        }
        (B::ErrorResponse(e), Pp::ErrorResponse(b)) => {
            let theirs: Vec<(u8, Vec<u8>)> = b
                .fields()
                .map(|f| Ok((f.type_(), f.value_bytes().to_vec())))
                .collect()
                .unwrap();
            assert_eq!(error_fields(e), theirs);
        }
        (B::NoticeResponse(e), Pp::NoticeResponse(b)) => {
            let theirs: Vec<(u8, Vec<u8>)> = b
                .fields()
                .map(|f| Ok((f.type_(), f.value_bytes().to_vec())))
                .collect()
                .unwrap();
            assert_eq!(error_fields(e), theirs);
        }
        (B::NotificationResponse(n), Pp::NotificationResponse(b)) => {
            assert_eq!(
                (n.pid, n.channel, n.payload),
                (b.process_id(), b.channel().unwrap(), b.message().unwrap())
            )
        }
        (B::ParameterDescription(p), Pp::ParameterDescription(b)) => {
            assert!(
                p.types
                    .iter()
                    .eq(b.parameters().iterator().map(Result::unwrap))
            )
        }
        (B::CopyOutResponse(r), Pp::CopyOutResponse(b)) => {
            assert_eq!(r.format.code() as u8, b.format());
            assert!(
                r.column_formats
                    .iter()
                    .map(Format::code)
                    .eq(b.column_formats().iterator().map(|f| f.unwrap() as i16))
            );
        }
        (B::CopyData(d), Pp::CopyData(b)) => assert_eq!(*d, b.data()),
        (ours, _) => panic!("{name}: {ours:?} decoded differently by postgres-protocol"),
    }
}

fn error_fields(e: &crate::wire::postgres::backend::ErrorFields<'_>) -> Vec<(u8, Vec<u8>)> {
    e.iter().map(|(c, v)| (c, v.as_bytes().to_vec())).collect()
}

#[test]
fn frontend_encoders_match_postgres_protocol_bytes() {
    let check = |ours: &dyn Fn(&mut BytesMut), theirs: &dyn Fn(&mut BytesMut)| {
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        ours(&mut a);
        theirs(&mut b);
        assert_eq!(a, b);
    };
    let params = [("user", "alice"), ("database", "app")];
    check(
        &|d| startup::encode_startup(d, ProtocolVersion::V3_0, params).unwrap(),
        &|d| ppf::startup_message(params, d).unwrap(),
    );
    check(&|d| startup::encode_ssl_request(d), &|d| {
        ppf::ssl_request(d)
    });
    check(
        &|d| startup::encode_cancel_request(d, 123, &7i32.to_be_bytes()).unwrap(),
        &|d| ppf::cancel_request(123, 7, d),
    );
    check(&|d| frontend::encode_password(d, "secret").unwrap(), &|d| {
        ppf::password_message(b"secret", d).unwrap()
    });
    check(
        &|d| {
            frontend::encode_sasl_initial_response(d, "SCRAM-SHA-256", Some(b"n,,n=,r=x")).unwrap()
        },
        &|d| ppf::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=x", d).unwrap(),
    );
    check(
        &|d| frontend::encode_sasl_response(d, b"c=biws").unwrap(),
        &|d| ppf::sasl_response(b"c=biws", d).unwrap(),
    );
    check(
        &|d| frontend::Query { sql: "select 1" }.encode(d).unwrap(),
        &|d| ppf::query("select 1", d).unwrap(),
    );
    check(
        &|d| frontend::encode_parse(d, "s1", "select $1", [23u32].into_iter()).unwrap(),
        &|d| ppf::parse("s1", "select $1", [23u32], d).unwrap(),
    );
    check(
        &|d| {
            Describe {
                target: Target::Statement,
                name: "s1",
            }
            .encode(d)
            .unwrap()
        },
        &|d| ppf::describe(b'S', "s1", d).unwrap(),
    );
    check(
        &|d| {
            Close {
                target: Target::Portal,
                name: "p",
            }
            .encode(d)
            .unwrap()
        },
        &|d| ppf::close(b'P', "p", d).unwrap(),
    );
    check(
        &|d| {
            Execute {
                portal: "p",
                max_rows: 10,
            }
            .encode(d)
            .unwrap()
        },
        &|d| ppf::execute("p", 10, d).unwrap(),
    );
    check(&|d| FrontendMessage::Sync.encode(d).unwrap(), &|d| {
        ppf::sync(d)
    });
    check(&|d| FrontendMessage::Flush.encode(d).unwrap(), &|d| {
        ppf::flush(d)
    });
    check(&|d| FrontendMessage::Terminate.encode(d).unwrap(), &|d| {
        ppf::terminate(d)
    });
    check(&|d| FrontendMessage::CopyDone.encode(d).unwrap(), &|d| {
        ppf::copy_done(d)
    });
    let values: [Option<&[u8]>; 2] = [Some(b"42"), None];
    check(
        &|d| {
            frontend::encode_bind(d, "", "s1", &[Format::Binary], values, &[Format::Text]).unwrap()
        },
        &|d| {
            let ser = |v: Option<&[u8]>,
                       buf: &mut BytesMut|
             -> Result<
                postgres_protocol::IsNull,
                Box<dyn std::error::Error + Sync + Send>,
            > {
                match v {
                    Some(v) => {
                        buf.extend_from_slice(v);
                        Ok(postgres_protocol::IsNull::No)
                    }
                    None => Ok(postgres_protocol::IsNull::Yes),
                }
            };
            ppf::bind("", "s1", [1i16], values, ser, [0i16], d)
                .map_err(|_| ())
                .unwrap()
        },
    );
}

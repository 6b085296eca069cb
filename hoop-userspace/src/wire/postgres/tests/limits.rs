//! Hostile framing: bad lengths, oversized bodies, unknown tags and malformed
//! bodies all become typed errors, decided from as few bytes as possible.
use bytes::BytesMut;

use crate::wire::postgres::error::{DecodeError, Direction, Tag};
use crate::wire::postgres::frame::{FrameSplitter, Limits, split_frame};
use crate::wire::postgres::{backend, frontend, startup};

#[test]
fn negative_and_short_lengths_are_rejected_from_the_header() {
    for len in [-1i32, i32::MIN, 0, 3] {
        let mut buf = vec![b'Q'];
        buf.extend_from_slice(&len.to_be_bytes());
        let err = frontend::decode(&buf).unwrap_err();
        assert_eq!(
            err,
            DecodeError::BadLength {
                dir: Direction::Frontend,
                tag: Tag(b'Q'),
                len
            }
        );
        assert!(matches!(
            backend::decode(&buf),
            Err(DecodeError::BadLength { .. })
        ));
    }
}

#[test]
fn oversized_frames_are_rejected_before_the_body_arrives() {
    let limits = Limits {
        frontend_large: 100,
        ..Limits::DEFAULT
    };
    let header = |tag: u8, body: i32| {
        let mut b = vec![tag];
        b.extend_from_slice(&(body + 4).to_be_bytes());
        b
    };
    assert_eq!(
        frontend::decode_with(&header(b'Q', 100), &limits),
        Ok(None),
        "at the limit: wait for body"
    );
    let err = frontend::decode_with(&header(b'Q', 101), &limits).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooLong {
            dir: Direction::Frontend,
            tag: Tag(b'Q'),
            len: 101,
            limit: 100
        }
    );
    // Control messages get PostgreSQL's small-message limit.
    assert!(matches!(
        frontend::decode(&header(b'S', 10_001)),
        Err(DecodeError::TooLong { limit: 10_000, .. })
    ));
    assert!(matches!(
        frontend::decode(&header(b'p', 70_000)),
        Err(DecodeError::TooLong { limit: 65_535, .. })
    ));
    assert!(matches!(
        backend::decode(&header(b'D', i32::MAX - 4)),
        Err(DecodeError::TooLong { .. })
    ));
    assert_eq!(
        backend::decode(&header(b'D', 1 << 30)),
        Ok(None),
        "1 GiB row is allowed by default"
    );
    let splitter = FrameSplitter::new(Direction::Frontend, limits);
    assert_eq!(splitter.missing(&header(b'Q', 50)), Some(50));
    assert_eq!(
        splitter.missing(&header(b'Q', 500)),
        None,
        "never reserve past the limit"
    );
}

#[test]
fn splitter_cuts_zero_copy_frames() {
    let mut buf = BytesMut::new();
    frontend::Query { sql: "select 1" }
        .encode(&mut buf)
        .unwrap();
    frontend::FrontendMessage::Sync.encode(&mut buf).unwrap();
    buf.extend_from_slice(&[b'X', 0, 0]);
    let base = buf.as_ptr();
    let splitter = FrameSplitter::new(Direction::Frontend, Limits::DEFAULT);
    let q = splitter.next_frame(&mut buf).unwrap().unwrap();
    assert_eq!(
        q.wire().as_ptr(),
        base,
        "frame shares the read buffer's memory"
    );
    assert_eq!(q.tag(), b'Q');
    let msg = frontend::FrontendMessage::parse(q.raw()).unwrap();
    assert_eq!(
        msg,
        frontend::FrontendMessage::Query(frontend::Query { sql: "select 1" })
    );
    assert_eq!(splitter.next_frame(&mut buf).unwrap().unwrap().tag(), b'S');
    assert_eq!(splitter.next_frame(&mut buf).unwrap(), None);
    assert_eq!(buf.len(), 3, "partial frame stays buffered");
}

#[test]
fn unknown_tags_and_malformed_bodies_are_typed_errors() {
    let frame = |tag: u8, body: &[u8]| {
        let mut b = vec![tag];
        b.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        b.extend_from_slice(body);
        b
    };
    assert_eq!(
        frontend::decode(&frame(b'!', b"")),
        Err(DecodeError::UnknownTag {
            dir: Direction::Frontend,
            tag: Tag(b'!')
        })
    );
    assert!(matches!(
        backend::decode(&frame(b'Q', b"x\0")),
        Err(DecodeError::UnknownTag { .. })
    ));
    assert!(matches!(
        frontend::decode(&frame(b'Q', b"no nul")),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(matches!(
        frontend::decode(&frame(b'Q', b"a\0b")),
        Err(DecodeError::TrailingBytes { extra: 1, .. })
    ));
    assert!(matches!(
        frontend::decode(&frame(b'Q', b"\xff\0")),
        Err(DecodeError::InvalidUtf8 { .. })
    ));
    assert!(matches!(
        frontend::decode(&frame(b'S', b"x")),
        Err(DecodeError::TrailingBytes { .. })
    ));
    assert!(matches!(
        backend::decode(&frame(b'Z', b"X")),
        Err(DecodeError::InvalidValue { .. })
    ));
    assert!(matches!(
        backend::decode(&frame(b'R', &[0, 0, 0, 42])),
        Err(DecodeError::InvalidValue { .. })
    ));
    // DataRow claiming 2 columns but holding one; a column length of -2.
    assert!(matches!(
        backend::decode(&frame(b'D', &[0, 2, 0, 0, 0, 1, b'x'])),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(matches!(
        backend::decode(&frame(b'D', &[0, 1, 255, 255, 255, 254])),
        Err(DecodeError::InvalidValue { .. })
    ));
    // Negative column count.
    assert!(matches!(
        backend::decode(&frame(b'D', &[255, 255])),
        Err(DecodeError::InvalidValue { .. })
    ));
    // Bind with format code 2, and with 2 format codes for 1 value.
    let bind = |formats: &[u8]| {
        let mut b = b"\0\0".to_vec();
        b.extend_from_slice(formats);
        b.extend_from_slice(&[0, 1, 0, 0, 0, 1, b'7', 0, 0]);
        frame(b'B', &b)
    };
    assert!(frontend::decode(&bind(&[0, 1, 0, 1])).is_ok());
    assert!(matches!(
        frontend::decode(&bind(&[0, 1, 0, 2])),
        Err(DecodeError::InvalidValue { .. })
    ));
    assert!(matches!(
        frontend::decode(&bind(&[0, 2, 0, 0, 0, 1])),
        Err(DecodeError::InvalidValue { .. })
    ));
}

#[test]
fn startup_packet_errors() {
    let pkt = |len: i32, code: u32, rest: &[u8]| {
        let mut b = len.to_be_bytes().to_vec();
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(rest);
        b
    };
    assert_eq!(
        startup::decode(&pkt(7, 0, b"")),
        Err(DecodeError::StartupLength { len: 7 })
    );
    assert_eq!(
        startup::decode(&pkt(-8, 0, b"")),
        Err(DecodeError::StartupLength { len: -8 })
    );
    assert_eq!(
        startup::decode(&pkt(10_001, 0, b"")),
        Err(DecodeError::StartupLength { len: 10_001 })
    );
    assert_eq!(
        startup::decode(&pkt(8, 2 << 16, b"")),
        Err(DecodeError::UnsupportedProtocol { code: 2 << 16 })
    );
    assert!(matches!(
        startup::decode(&pkt(12, startup::SSL_REQUEST_CODE, b"abcd")),
        Err(DecodeError::StartupMalformed { .. })
    ));
    assert!(matches!(
        startup::decode(&pkt(12, startup::CANCEL_REQUEST_CODE, &[0, 0, 0, 1])),
        Err(DecodeError::StartupMalformed { .. })
    ));
    // Parameters must end with the terminator, in pairs, with non-empty names.
    for body in [
        &b"user\0x\0"[..],
        b"user\0x",
        b"user\0x\0y\0\0",
        b"\0x\0\0",
        b"user\0\xff\0\0",
    ] {
        let p = pkt(8 + body.len() as i32, 3 << 16, body);
        assert!(
            matches!(
                startup::decode(&p),
                Err(DecodeError::StartupMalformed { .. })
            ),
            "{body:?}"
        );
    }
    // Protocol 3.2 cancel request with a 32-byte key.
    let mut key = vec![0, 0, 0, 9];
    key.extend_from_slice(&[7; 32]);
    let packet = pkt(8 + key.len() as i32, startup::CANCEL_REQUEST_CODE, &key);
    let (msg, _) = startup::decode(&packet).unwrap().unwrap();
    assert_eq!(
        msg,
        startup::StartupPacket::CancelRequest {
            pid: 9,
            secret_key: &[7; 32]
        }
    );
    assert_eq!(
        startup::decode_encryption_response(b"X"),
        Err(DecodeError::BadEncryptionResponse { byte: Tag(b'X') })
    );
}

#[test]
fn split_frame_reports_only_the_frame_length() {
    let buf = [b'S', 0, 0, 0, 4, b'S', 0];
    let (frame, n) = split_frame(&buf, Direction::Frontend, &Limits::DEFAULT)
        .unwrap()
        .unwrap();
    assert_eq!(
        (frame.tag, frame.body, n, frame.wire_len()),
        (b'S', &[][..], 5, 5)
    );
}

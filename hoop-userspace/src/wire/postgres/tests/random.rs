//! Random and mutated input: decoding never panics, and any input that is
//! accepted re-encodes to exactly the bytes that were consumed.
use bytes::BytesMut;
use proptest::prelude::*;

use super::{CAPTURES, split_backend, split_frontend};
use crate::wire::postgres::{backend, frontend, startup};

const FRONTEND_TAGS: &[u8] = b"QPBDECSHXdcfpF";
const BACKEND_TAGS: &[u8] = b"RSKZTDCEN123ntIsGHWdcAvV";

/// Decodes `buf` every way the proxy might and checks the accept => identity property.
fn check(buf: &[u8]) {
    if let Ok(Some((msg, n))) = frontend::decode(buf) {
        let mut out = BytesMut::new();
        msg.encode(&mut out).unwrap();
        assert_eq!(&out[..], &buf[..n], "{msg:?}");
    }
    if let Ok(Some((msg, n))) = backend::decode(buf) {
        let mut out = BytesMut::new();
        msg.encode(&mut out).unwrap();
        assert_eq!(&out[..], &buf[..n], "{msg:?}");
    }
    if let Ok(Some((msg, n))) = startup::decode(buf) {
        let mut out = BytesMut::new();
        msg.encode(&mut out).unwrap();
        assert_eq!(&out[..], &buf[..n], "{msg:?}");
    }
    let _ = startup::decode_encryption_response(buf);
}

fn framed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![tag];
    b.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    b.extend_from_slice(body);
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
        check(&buf);
    }

    #[test]
    fn random_bodies_under_valid_headers(
        tag in proptest::sample::select([FRONTEND_TAGS, BACKEND_TAGS].concat()),
        body in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8), any::<u8>()], 0..64),
    ) {
        check(&framed(tag, &body));
    }
}

/// Deterministic xorshift so failures reproduce without a seed file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_captured_frames_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut frames: Vec<&[u8]> = Vec::new();
    for c in CAPTURES {
        let fe = split_frontend(c.fe);
        frames.extend(fe.startup);
        frames.extend(fe.frames);
        frames.extend(split_backend(c.be).frames);
    }
    for _ in 0..20 {
        for frame in &frames {
            let mut m = frame.to_vec();
            for _ in 0..1 + rng.next() % 3 {
                // Mostly mutate the body so the header stays plausible.
                let at = (5 + rng.next() as usize) % m.len();
                m[at] = match rng.next() % 4 {
                    0 => 0,
                    1 => 0xff,
                    _ => rng.next() as u8,
                };
            }
            check(&m);
        }
    }
}

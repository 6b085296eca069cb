//! linkerd-style `check_all_prefixes`: every strict prefix of a message is
//! "need more bytes", the whole decodes, and trailing bytes change nothing.
use super::{CANCEL_REQUEST, CAPTURES, split_backend, split_frontend};
use crate::wire::postgres::{backend, frontend, startup};

macro_rules! check_all_prefixes {
    ($decode:path, $whole:expr) => {{
        let whole: &[u8] = $whole;
        let full = $decode(whole)
            .expect("whole message decodes")
            .expect("whole message is complete");
        assert_eq!(full.1, whole.len());
        for cut in 0..whole.len() {
            assert_eq!(
                $decode(&whole[..cut]),
                Ok(None),
                "prefix of {cut}/{} bytes",
                whole.len()
            );
        }
        let mut longer = whole.to_vec();
        longer.extend_from_slice(b"\x00Zjunk");
        assert_eq!(
            $decode(&longer),
            Ok(Some(full)),
            "trailing bytes must not change the result"
        );
    }};
}

#[test]
fn every_captured_frame_passes_all_prefixes() {
    for c in CAPTURES {
        let fe = split_frontend(c.fe);
        for pkt in fe.startup {
            check_all_prefixes!(startup::decode, pkt);
        }
        for frame in fe.frames {
            check_all_prefixes!(frontend::decode, frame);
        }
        for frame in split_backend(c.be).frames {
            check_all_prefixes!(backend::decode, frame);
        }
    }
    check_all_prefixes!(startup::decode, CANCEL_REQUEST);
}

#[test]
fn whole_captured_streams_decode_message_by_message() {
    // Feeding a stream in arbitrary chunk sizes must give the same messages as
    // feeding it whole, which is what the proxy's read loop does.
    for c in CAPTURES {
        let frames = split_backend(c.be).frames;
        let stream: Vec<u8> = frames.concat();
        for chunk in [1, 3, 7, 64, 1500] {
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some((_, n)) = backend::decode(&buf).unwrap() {
                    got.push(buf.drain(..n).collect::<Vec<u8>>());
                }
            }
            assert!(buf.is_empty());
            assert_eq!(got.len(), frames.len(), "{} chunk {chunk}", c.name);
        }
    }
}

//! Codec tests: captured real traffic, all-prefixes, round trips, limits and
//! random input. Captures live in `testdata/` (see its README).
mod captured;
mod limits;
mod oracle;
mod prefixes;
mod random;
mod roundtrip;

use super::startup::{self, EncryptionResponse, StartupPacket};
use super::{Direction, Limits, split_frame};

/// One recorded connection: client bytes and server bytes.
pub(super) struct Capture {
    pub name: &'static str,
    pub fe: &'static [u8],
    pub be: &'static [u8],
}

macro_rules! capture {
    ($name:literal) => {
        Capture {
            name: $name,
            fe: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/testdata/",
                $name,
                ".fe.bin"
            )),
            be: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/testdata/",
                $name,
                ".be.bin"
            )),
        }
    };
}

pub(super) const CAPTURES: &[Capture] = &[
    capture!("simple"),
    capture!("extended"),
    capture!("pgbench"),
    capture!("pgbench-setup"),
    capture!("md5"),
    capture!("cleartext"),
    capture!("cancel"),
];

pub(super) const CANCEL_REQUEST: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/cancel-request.fe.bin"
));

/// A client stream cut into its startup packets and typed frames.
pub(super) struct Split<'a> {
    pub startup: Vec<&'a [u8]>,
    pub frames: Vec<&'a [u8]>,
    /// Bytes before the typed frames that were not a frame (the SSL answer).
    pub preamble: &'a [u8],
}

/// Splits a client stream: startup packets until the StartupMessage, then frames.
pub(super) fn split_frontend(mut buf: &[u8]) -> Split<'_> {
    let mut startup = Vec::new();
    loop {
        let (pkt, n) = startup::decode(buf)
            .expect("startup packet")
            .expect("complete startup packet");
        startup.push(&buf[..n]);
        buf = &buf[n..];
        if matches!(
            pkt,
            StartupPacket::Startup { .. } | StartupPacket::CancelRequest { .. }
        ) {
            break;
        }
    }
    Split {
        startup,
        frames: frames(buf, Direction::Frontend),
        preamble: &[],
    }
}

/// Splits a server stream, first consuming an SSL answer byte if present.
pub(super) fn split_backend(buf: &[u8]) -> Split<'_> {
    let skip = match startup::decode_encryption_response(buf) {
        Ok(Some((EncryptionResponse::Rejected, n))) => n,
        _ => 0,
    };
    Split {
        startup: Vec::new(),
        frames: frames(&buf[skip..], Direction::Backend),
        preamble: &buf[..skip],
    }
}

fn frames(mut buf: &[u8], dir: Direction) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (_, n) = split_frame(buf, dir, &Limits::DEFAULT)
            .expect("frame")
            .expect("complete frame");
        out.push(&buf[..n]);
        buf = &buf[n..];
    }
    out
}

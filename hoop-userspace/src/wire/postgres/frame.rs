//! Framing: split typed messages (`tag`, Int32 length, body) off a byte stream.
//!
//! This is the hot path of the proxy: it reads five header bytes, checks the
//! length against [`Limits`] before a single body byte is buffered, and hands
//! out the frame without decoding it. Frames the proxy only forwards are never
//! decoded; [`Frame`] keeps them as a refcounted [`Bytes`] slice of the
//! connection buffer, so forwarding is zero-copy.
use bytes::{Bytes, BytesMut};

use super::error::{DecodeError, Direction, Tag};

/// Size of the type byte plus the length field.
pub const HEADER_LEN: usize = 5;

/// Per-direction message size limits. Oversized frames are rejected as soon as
/// their header arrives, so a peer cannot make the proxy buffer gigabytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Client messages that carry data: Query, Parse, Bind, CopyData, CopyFail,
    /// FunctionCall. Default 64 MiB; raise it for clients that bind huge values.
    pub frontend_large: usize,
    /// Client authentication responses ('p'). Default 65 535, PostgreSQL's
    /// `PG_MAX_AUTH_TOKEN_LENGTH`.
    pub frontend_auth: usize,
    /// Every other client message (Sync, Describe, Execute, ...). Default
    /// 10 000, PostgreSQL's `PQ_SMALL_MESSAGE_LIMIT`: the server rejects larger ones.
    pub frontend_small: usize,
    /// Any server message. Default 1 GiB: the server cannot build a bigger row.
    pub backend: usize,
    /// Startup-phase packets. Default 10 000, PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`.
    pub startup: usize,
}

impl Limits {
    /// The defaults documented on each field.
    pub const DEFAULT: Limits = Limits {
        frontend_large: 64 << 20,
        frontend_auth: 65_535,
        frontend_small: 10_000,
        backend: 1 << 30,
        startup: 10_000,
    };

    /// Largest body accepted for `tag` sent in direction `dir`.
    #[inline]
    pub fn max_body(&self, dir: Direction, tag: u8) -> usize {
        match dir {
            Direction::Backend => self.backend,
            Direction::Frontend => match tag {
                b'Q' | b'P' | b'B' | b'd' | b'f' | b'F' => self.frontend_large,
                b'p' => self.frontend_auth,
                _ => self.frontend_small,
            },
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// A borrowed, undecoded message: its type byte and body (length field excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrame<'a> {
    pub tag: u8,
    pub body: &'a [u8],
}

impl RawFrame<'_> {
    /// Length of the whole frame on the wire.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }
}

/// Splits the first typed frame off `buf`. `Ok(None)` means more bytes are
/// needed; the `usize` is how many bytes the frame occupies.
#[inline]
pub fn split_frame<'a>(
    buf: &'a [u8],
    dir: Direction,
    limits: &Limits,
) -> Result<Option<(RawFrame<'a>, usize)>, DecodeError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let tag = header[0];
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len < 4 {
        return Err(DecodeError::BadLength {
            dir,
            tag: Tag(tag),
            len,
        });
    }
    // len >= 4 was checked just above, so this cannot wrap.
    let body_len = len as usize - 4;
    let limit = limits.max_body(dir, tag);
    if body_len > limit {
        return Err(DecodeError::TooLong {
            dir,
            tag: Tag(tag),
            len: body_len,
            limit,
        });
    }
    let total = HEADER_LEN + body_len;
    match buf.get(HEADER_LEN..total) {
        Some(body) => Ok(Some((RawFrame { tag, body }, total))),
        None => Ok(None),
    }
}

/// An owned frame cut from the connection buffer without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    dir: Direction,
    bytes: Bytes,
}

impl Frame {
    /// Which peer sent it.
    pub fn direction(&self) -> Direction {
        self.dir
    }

    /// The type byte.
    pub fn tag(&self) -> u8 {
        self.bytes[0]
    }

    /// The body, length field excluded.
    pub fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// The whole frame as received, ready to forward.
    pub fn wire(&self) -> &Bytes {
        &self.bytes
    }

    /// Gives the wire bytes back, e.g. to queue them for writing.
    pub fn into_wire(self) -> Bytes {
        self.bytes
    }

    /// The borrowed view used by the typed decoders.
    pub fn raw(&self) -> RawFrame<'_> {
        RawFrame {
            tag: self.tag(),
            body: self.body(),
        }
    }
}

/// Cuts [`Frame`]s off a `BytesMut` read buffer for one direction.
#[derive(Debug, Clone, Copy)]
pub struct FrameSplitter {
    pub dir: Direction,
    pub limits: Limits,
}

impl FrameSplitter {
    pub fn new(dir: Direction, limits: Limits) -> Self {
        FrameSplitter { dir, limits }
    }

    /// Takes the next complete frame out of `buf`, or `Ok(None)` if it is not
    /// all there yet. `Bytes::split_to` + `freeze` share the allocation.
    pub fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let n = match split_frame(buf, self.dir, &self.limits)? {
            Some((_, n)) => n,
            None => return Ok(None),
        };
        Ok(Some(Frame {
            dir: self.dir,
            bytes: buf.split_to(n).freeze(),
        }))
    }

    /// Bytes still missing for the frame at the head of `buf` once its header is
    /// known, so the I/O layer can reserve once instead of growing repeatedly.
    /// `None` if nothing is missing or the header is invalid (which
    /// [`next_frame`](Self::next_frame) reports as an error).
    pub fn missing(&self, buf: &[u8]) -> Option<usize> {
        let header = buf.first_chunk::<HEADER_LEN>()?;
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let body = usize::try_from(len).ok()?.checked_sub(4)?;
        if body > self.limits.max_body(self.dir, header[0]) {
            return None;
        }
        (HEADER_LEN + body)
            .checked_sub(buf.len())
            .filter(|&n| n > 0)
    }
}

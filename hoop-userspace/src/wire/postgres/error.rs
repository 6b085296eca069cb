//! Typed decode/encode errors: every malformed input becomes one of these, never a panic.
use std::fmt;

/// Which peer produced the bytes being decoded. `D`, `S`, `E`, `C` mean different
/// messages in each direction, so every decode is tied to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (libpq's "frontend").
    Frontend,
    /// Server to client (libpq's "backend").
    Backend,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Frontend => "client",
            Direction::Backend => "upstream",
        })
    }
}

/// A message type byte, printed as a character when it is one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag(pub u8);

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", self.0 as char)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

/// Why bytes from a peer could not be decoded. Once framing fails the stream
/// cannot be resynchronised, so the caller should close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The length field is negative or smaller than itself (4).
    #[error("{dir} message {tag}: invalid length field {len}")]
    BadLength { dir: Direction, tag: Tag, len: i32 },
    /// The declared body exceeds the configured limit; rejected before buffering it.
    #[error("{dir} message {tag}: body of {len} bytes exceeds the limit of {limit}")]
    TooLong {
        dir: Direction,
        tag: Tag,
        len: usize,
        limit: usize,
    },
    /// A type byte this direction does not define.
    #[error("{dir} message {tag}: unknown message type")]
    UnknownTag { dir: Direction, tag: Tag },
    /// The body ended before `field` was complete.
    #[error("{dir} message {tag}: body ends inside {field}")]
    Truncated {
        dir: Direction,
        tag: Tag,
        field: &'static str,
    },
    /// The body has bytes after the last field.
    #[error("{dir} message {tag}: {extra} unexpected trailing bytes")]
    TrailingBytes {
        dir: Direction,
        tag: Tag,
        extra: usize,
    },
    /// A string field is not valid UTF-8 (hoop pins `client_encoding` to UTF8).
    #[error("{dir} message {tag}: {field} is not valid UTF-8")]
    InvalidUtf8 {
        dir: Direction,
        tag: Tag,
        field: &'static str,
    },
    /// A field holds a value the protocol does not allow.
    #[error("{dir} message {tag}: invalid {field} {value}")]
    InvalidValue {
        dir: Direction,
        tag: Tag,
        field: &'static str,
        value: i64,
    },
    /// A startup-phase packet (no type byte) has an impossible length.
    #[error("client startup packet: invalid length {len}")]
    StartupLength { len: i32 },
    /// A startup packet with a protocol version or request code hoop does not speak.
    #[error("client startup packet: unsupported protocol code {code:#010x}")]
    UnsupportedProtocol { code: u32 },
    /// A startup-phase packet body is malformed.
    #[error("client startup packet: malformed {field}")]
    StartupMalformed { field: &'static str },
    /// The one-byte answer to SSLRequest/GSSENCRequest is none of 'S', 'N', 'G', 'E'.
    #[error("upstream answered the encryption request with {byte}")]
    BadEncryptionResponse { byte: Tag },
}

/// Why a message could not be encoded. Encoders never write a partial frame
/// on error: the destination buffer is truncated back to where it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A C-string field contains NUL, which would end it early and corrupt framing.
    #[error("{field} contains a NUL byte")]
    NulInString { field: &'static str },
    /// The frame would not fit the protocol's i32 length field.
    #[error("message of {len} bytes exceeds the protocol maximum")]
    TooLong { len: usize },
    /// More items than the protocol's i16 count field can carry.
    #[error("{field}: {count} items exceed the protocol maximum of 32767")]
    TooMany { field: &'static str, count: usize },
    /// A field is outside the range the protocol allows.
    #[error("{field} is out of range")]
    OutOfRange { field: &'static str },
}

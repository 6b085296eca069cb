//! Startup phase: packets without a type byte (StartupMessage, SSLRequest,
//! GSSENCRequest, CancelRequest) and the one-byte answer to an encryption request.
use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError, Tag};
use super::frame::Limits;
use super::write;

/// SSLRequest code: 1234 in the high half, 5679 in the low half.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// GSSENCRequest code (1234, 5680).
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// CancelRequest code (1234, 5678).
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// Protocol 3.2 (PostgreSQL 18) allows cancel keys up to 256 bytes; 3.0 uses 4.
const MAX_CANCEL_KEY: usize = 256;

/// A protocol version from a StartupMessage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolVersion {
    pub major: u16,
    pub minor: u16,
}

impl ProtocolVersion {
    pub const V3_0: ProtocolVersion = ProtocolVersion { major: 3, minor: 0 };
    /// PostgreSQL 18's protocol: variable-length cancel keys.
    pub const V3_2: ProtocolVersion = ProtocolVersion { major: 3, minor: 2 };

    fn code(self) -> u32 {
        (u32::from(self.major) << 16) | u32::from(self.minor)
    }
}

/// A client's first packet on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupPacket<'a> {
    /// StartupMessage. A 3.x minor version the server does not know is still
    /// accepted here: the server answers it with NegotiateProtocolVersion.
    Startup {
        version: ProtocolVersion,
        params: StartupParams<'a>,
    },
    SslRequest,
    GssEncRequest,
    /// CancelRequest; `secret_key` is 4 bytes under 3.0 and up to 256 under 3.2.
    CancelRequest {
        pid: i32,
        secret_key: &'a [u8],
    },
}

/// Decodes one startup packet with the default limits.
pub fn decode(buf: &[u8]) -> Result<Option<(StartupPacket<'_>, usize)>, DecodeError> {
    decode_with(buf, &Limits::DEFAULT)
}

/// Decodes one startup packet. `Ok(None)` means more bytes are needed.
pub fn decode_with<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(StartupPacket<'a>, usize)>, DecodeError> {
    let Some(len) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = i32::from_be_bytes(*len);
    let total = usize::try_from(len)
        .ok()
        .filter(|&n| (8..=limits.startup).contains(&n));
    let Some(total) = total else {
        return Err(DecodeError::StartupLength { len });
    };
    let Some(packet) = buf.get(4..total) else {
        return Ok(None);
    };
    let (code, body) = packet.split_at(4);
    let code = u32::from_be_bytes([code[0], code[1], code[2], code[3]]);
    let msg = match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE if !body.is_empty() => {
            return Err(DecodeError::StartupMalformed {
                field: "encryption request length",
            });
        }
        SSL_REQUEST_CODE => StartupPacket::SslRequest,
        GSSENC_REQUEST_CODE => StartupPacket::GssEncRequest,
        CANCEL_REQUEST_CODE => cancel(body)?,
        _ if code >> 16 == 3 => StartupPacket::Startup {
            version: ProtocolVersion {
                major: 3,
                minor: code as u16,
            },
            params: StartupParams::parse(body)?,
        },
        _ => return Err(DecodeError::UnsupportedProtocol { code }),
    };
    Ok(Some((msg, total)))
}

fn cancel(body: &[u8]) -> Result<StartupPacket<'_>, DecodeError> {
    let Some((pid, key)) = body.split_first_chunk::<4>() else {
        return Err(DecodeError::StartupMalformed {
            field: "cancel request pid",
        });
    };
    if !(4..=MAX_CANCEL_KEY).contains(&key.len()) {
        return Err(DecodeError::StartupMalformed {
            field: "cancel request key",
        });
    }
    Ok(StartupPacket::CancelRequest {
        pid: i32::from_be_bytes(*pid),
        secret_key: key,
    })
}

/// StartupMessage parameters: validated `name\0value\0` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupParams<'a>(&'a [u8]);

impl<'a> StartupParams<'a> {
    fn parse(body: &'a [u8]) -> Result<Self, DecodeError> {
        // Like the server, require the list terminator to be the last byte.
        let Some((&0, pairs)) = body.split_last() else {
            return Err(DecodeError::StartupMalformed {
                field: "parameter list terminator",
            });
        };
        let mut rest = pairs;
        while !rest.is_empty() {
            let (name, r) = take_cstr(rest).ok_or(DecodeError::StartupMalformed {
                field: "parameter name",
            })?;
            let (value, r) = take_cstr(r).ok_or(DecodeError::StartupMalformed {
                field: "parameter value",
            })?;
            if name.is_empty() {
                return Err(DecodeError::StartupMalformed {
                    field: "parameter name",
                });
            }
            if std::str::from_utf8(name).is_err() || std::str::from_utf8(value).is_err() {
                return Err(DecodeError::StartupMalformed {
                    field: "parameter (not UTF-8)",
                });
            }
            rest = r;
        }
        Ok(StartupParams(pairs))
    }

    /// `(name, value)` pairs in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            let (name, r) = take_cstr(rest)?;
            let (value, r) = take_cstr(r)?;
            rest = r;
            // Validated in `parse`; the fallback is unreachable.
            Some((
                std::str::from_utf8(name).unwrap_or(""),
                std::str::from_utf8(value).unwrap_or(""),
            ))
        })
    }

    /// The value of parameter `name` (`user`, `database`, `options`, ...).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

fn take_cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = buf.iter().position(|&b| b == 0)?;
    Some((&buf[..end], &buf[end + 1..]))
}

impl StartupPacket<'_> {
    /// Re-encodes this packet byte-for-byte.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match *self {
            StartupPacket::Startup { version, params } => {
                encode_startup(dst, version, params.iter())
            }
            StartupPacket::SslRequest => {
                encode_ssl_request(dst);
                Ok(())
            }
            StartupPacket::GssEncRequest => {
                encode_code_only(dst, GSSENC_REQUEST_CODE);
                Ok(())
            }
            StartupPacket::CancelRequest { pid, secret_key } => {
                encode_cancel_request(dst, pid, secret_key)
            }
        }
    }
}

/// StartupMessage with the given parameters (e.g. `user`, `database`).
pub fn encode_startup<'p>(
    dst: &mut BytesMut,
    version: ProtocolVersion,
    params: impl IntoIterator<Item = (&'p str, &'p str)>,
) -> Result<(), EncodeError> {
    write::frame(dst, None, |dst| {
        dst.put_u32(version.code());
        for (k, v) in params {
            if k.is_empty() {
                return Err(EncodeError::OutOfRange {
                    field: "startup parameter name",
                });
            }
            write::cstr(dst, k, "startup parameter name")?;
            write::cstr(dst, v, "startup parameter value")?;
        }
        dst.put_u8(0);
        Ok(())
    })
}

/// SSLRequest.
pub fn encode_ssl_request(dst: &mut BytesMut) {
    encode_code_only(dst, SSL_REQUEST_CODE);
}

fn encode_code_only(dst: &mut BytesMut, code: u32) {
    dst.put_i32(8);
    dst.put_u32(code);
}

/// CancelRequest for backend `pid` with the key from BackendKeyData.
pub fn encode_cancel_request(
    dst: &mut BytesMut,
    pid: i32,
    secret_key: &[u8],
) -> Result<(), EncodeError> {
    if !(4..=MAX_CANCEL_KEY).contains(&secret_key.len()) {
        return Err(EncodeError::OutOfRange {
            field: "cancel key length",
        });
    }
    write::frame(dst, None, |dst| {
        dst.put_u32(CANCEL_REQUEST_CODE);
        dst.put_i32(pid);
        dst.put_slice(secret_key);
        Ok(())
    })
}

/// The server's single-byte answer to SSLRequest or GSSENCRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionResponse {
    /// 'S' (SSL) or 'G' (GSS): start the handshake.
    Accepted,
    /// 'N': continue in plaintext or give up.
    Rejected,
    /// 'E': a pre-encryption server sent an ErrorResponse frame. Nothing is
    /// consumed; decode the error with the backend decoder.
    ErrorFollows,
}

/// Decodes the answer byte. The `usize` is the number of bytes consumed.
pub fn decode_encryption_response(
    buf: &[u8],
) -> Result<Option<(EncryptionResponse, usize)>, DecodeError> {
    match buf.first() {
        None => Ok(None),
        Some(b'S' | b'G') => Ok(Some((EncryptionResponse::Accepted, 1))),
        Some(b'N') => Ok(Some((EncryptionResponse::Rejected, 1))),
        Some(b'E') => Ok(Some((EncryptionResponse::ErrorFollows, 0))),
        Some(&b) => Err(DecodeError::BadEncryptionResponse { byte: Tag(b) }),
    }
}

/// The one-byte answer the proxy gives a client's SSLRequest ('S' or 'N').
pub fn encode_ssl_response(dst: &mut BytesMut, accept: bool) {
    dst.put_u8(if accept { b'S' } else { b'N' });
}

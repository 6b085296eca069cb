//! Messages a client sends after startup, decoded on demand from a [`RawFrame`].
mod auth;
mod bind;
mod query;

pub use auth::{
    AuthResponse, SaslInitialResponse, encode_password, encode_sasl_initial_response,
    encode_sasl_response,
};
pub use bind::{Bind, encode_bind};
pub use query::{Close, Describe, Execute, FunctionCall, Parse, Query, Target, encode_parse};

use bytes::BytesMut;

use super::copy::{self, CopyFail};
use super::error::{DecodeError, Direction, EncodeError, Tag};
use super::frame::{Limits, RawFrame, split_frame};
use super::read::Reader;
use super::write;

/// Frontend type bytes.
pub mod tag {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const TERMINATE: u8 = b'X';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    /// PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse share it.
    pub const AUTH_RESPONSE: u8 = b'p';
    pub const FUNCTION_CALL: u8 = b'F';
}

/// A decoded client message; borrows from the frame it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendMessage<'a> {
    Query(Query<'a>),
    Parse(Parse<'a>),
    Bind(Bind<'a>),
    Describe(Describe<'a>),
    Execute(Execute<'a>),
    Close(Close<'a>),
    Sync,
    Flush,
    Terminate,
    CopyData(&'a [u8]),
    CopyDone,
    CopyFail(CopyFail<'a>),
    /// Which authentication response this is depends on the request the server
    /// sent, so it is interpreted by the caller (see [`AuthResponse`]).
    AuthResponse(AuthResponse<'a>),
    FunctionCall(FunctionCall<'a>),
}

/// Decodes the first client message in `buf` with the default limits.
/// `Ok(None)` means more bytes are needed; the `usize` is the frame length.
pub fn decode(buf: &[u8]) -> Result<Option<(FrontendMessage<'_>, usize)>, DecodeError> {
    decode_with(buf, &Limits::DEFAULT)
}

/// [`decode`] with explicit limits.
pub fn decode_with<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(FrontendMessage<'a>, usize)>, DecodeError> {
    match split_frame(buf, Direction::Frontend, limits)? {
        Some((frame, n)) => Ok(Some((FrontendMessage::parse(frame)?, n))),
        None => Ok(None),
    }
}

impl<'a> FrontendMessage<'a> {
    /// Decodes the body of an already split frame.
    pub fn parse(frame: RawFrame<'a>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(frame.body, Direction::Frontend, frame.tag);
        let msg = match frame.tag {
            tag::QUERY => FrontendMessage::Query(Query::read(&mut r)?),
            tag::PARSE => FrontendMessage::Parse(Parse::read(&mut r)?),
            tag::BIND => FrontendMessage::Bind(Bind::read(&mut r)?),
            tag::DESCRIBE => FrontendMessage::Describe(Describe::read(&mut r)?),
            tag::EXECUTE => FrontendMessage::Execute(Execute::read(&mut r)?),
            tag::CLOSE => FrontendMessage::Close(Close::read(&mut r)?),
            tag::SYNC => FrontendMessage::Sync,
            tag::FLUSH => FrontendMessage::Flush,
            tag::TERMINATE => FrontendMessage::Terminate,
            tag::COPY_DATA => FrontendMessage::CopyData(r.rest()),
            tag::COPY_DONE => FrontendMessage::CopyDone,
            tag::COPY_FAIL => FrontendMessage::CopyFail(CopyFail::read(&mut r)?),
            tag::AUTH_RESPONSE => FrontendMessage::AuthResponse(AuthResponse(r.rest())),
            tag::FUNCTION_CALL => FrontendMessage::FunctionCall(FunctionCall::read(&mut r)?),
            other => {
                return Err(DecodeError::UnknownTag {
                    dir: Direction::Frontend,
                    tag: Tag(other),
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// The type byte this message is sent with.
    pub fn tag(&self) -> u8 {
        match self {
            FrontendMessage::Query(_) => tag::QUERY,
            FrontendMessage::Parse(_) => tag::PARSE,
            FrontendMessage::Bind(_) => tag::BIND,
            FrontendMessage::Describe(_) => tag::DESCRIBE,
            FrontendMessage::Execute(_) => tag::EXECUTE,
            FrontendMessage::Close(_) => tag::CLOSE,
            FrontendMessage::Sync => tag::SYNC,
            FrontendMessage::Flush => tag::FLUSH,
            FrontendMessage::Terminate => tag::TERMINATE,
            FrontendMessage::CopyData(_) => tag::COPY_DATA,
            FrontendMessage::CopyDone => tag::COPY_DONE,
            FrontendMessage::CopyFail(_) => tag::COPY_FAIL,
            FrontendMessage::AuthResponse(_) => tag::AUTH_RESPONSE,
            FrontendMessage::FunctionCall(_) => tag::FUNCTION_CALL,
        }
    }

    /// Encodes this message; decoding the output yields an equal message.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            FrontendMessage::Query(m) => m.encode(dst),
            FrontendMessage::Parse(m) => m.encode(dst),
            FrontendMessage::Bind(m) => m.encode(dst),
            FrontendMessage::Describe(m) => m.encode(dst),
            FrontendMessage::Execute(m) => m.encode(dst),
            FrontendMessage::Close(m) => m.encode(dst),
            FrontendMessage::CopyData(data) => copy::encode_copy_data(dst, data),
            FrontendMessage::CopyFail(m) => m.encode(dst),
            FrontendMessage::AuthResponse(m) => {
                write::frame(dst, Some(tag::AUTH_RESPONSE), |dst| {
                    dst.extend_from_slice(m.0);
                    Ok(())
                })
            }
            FrontendMessage::FunctionCall(m) => m.encode(dst),
            FrontendMessage::Sync
            | FrontendMessage::Flush
            | FrontendMessage::Terminate
            | FrontendMessage::CopyDone => {
                write::fixed(dst, self.tag(), &[]);
                Ok(())
            }
        }
    }
}

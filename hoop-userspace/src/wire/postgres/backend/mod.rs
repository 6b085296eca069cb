//! Messages the server sends after startup, decoded on demand from a [`RawFrame`].
mod auth;
mod notice;
mod rows;
mod status;

pub use auth::{Authentication, SaslMechanisms, encode_auth_sasl};
pub use notice::{ErrorFields, ErrorNotice, Severity, field};
pub use rows::{
    DataRow, FieldDescription, ParameterDescription, RowDescription, encode_data_row,
    encode_row_description,
};
pub use status::{
    BackendKeyData, CommandComplete, NegotiateProtocolVersion, Notification, ParameterStatus,
    TransactionStatus,
};

use bytes::BytesMut;

use super::copy::{self, CopyResponse};
use super::error::{DecodeError, Direction, EncodeError, Tag};
use super::frame::{Limits, RawFrame, split_frame};
use super::read::Reader;
use super::write;

/// Backend type bytes.
pub mod tag {
    pub const AUTHENTICATION: u8 = b'R';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const DATA_ROW: u8 = b'D';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const NO_DATA: u8 = b'n';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
}

/// A decoded server message; borrows from the frame it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendMessage<'a> {
    Authentication(Authentication<'a>),
    ParameterStatus(ParameterStatus<'a>),
    BackendKeyData(BackendKeyData<'a>),
    ReadyForQuery(TransactionStatus),
    RowDescription(RowDescription<'a>),
    DataRow(DataRow<'a>),
    CommandComplete(CommandComplete<'a>),
    ErrorResponse(ErrorFields<'a>),
    NoticeResponse(ErrorFields<'a>),
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    ParameterDescription(ParameterDescription<'a>),
    EmptyQueryResponse,
    PortalSuspended,
    CopyInResponse(CopyResponse<'a>),
    CopyOutResponse(CopyResponse<'a>),
    CopyBothResponse(CopyResponse<'a>),
    CopyData(&'a [u8]),
    CopyDone,
    NotificationResponse(Notification<'a>),
    NegotiateProtocolVersion(NegotiateProtocolVersion<'a>),
    /// The result of a FunctionCall; `None` is NULL.
    FunctionCallResponse(Option<&'a [u8]>),
}

/// Decodes the first server message in `buf` with the default limits.
/// `Ok(None)` means more bytes are needed; the `usize` is the frame length.
pub fn decode(buf: &[u8]) -> Result<Option<(BackendMessage<'_>, usize)>, DecodeError> {
    decode_with(buf, &Limits::DEFAULT)
}

/// [`decode`] with explicit limits.
pub fn decode_with<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(BackendMessage<'a>, usize)>, DecodeError> {
    match split_frame(buf, Direction::Backend, limits)? {
        Some((frame, n)) => Ok(Some((BackendMessage::parse(frame)?, n))),
        None => Ok(None),
    }
}

impl<'a> BackendMessage<'a> {
    /// Decodes the body of an already split frame.
    pub fn parse(frame: RawFrame<'a>) -> Result<Self, DecodeError> {
        use BackendMessage as M;
        let mut r = Reader::new(frame.body, Direction::Backend, frame.tag);
        let msg = match frame.tag {
            tag::AUTHENTICATION => M::Authentication(Authentication::read(&mut r)?),
            tag::PARAMETER_STATUS => M::ParameterStatus(ParameterStatus::read(&mut r)?),
            tag::BACKEND_KEY_DATA => M::BackendKeyData(BackendKeyData::read(&mut r)?),
            tag::READY_FOR_QUERY => M::ReadyForQuery(TransactionStatus::read(&mut r)?),
            tag::ROW_DESCRIPTION => M::RowDescription(RowDescription::read(&mut r)?),
            tag::DATA_ROW => M::DataRow(DataRow::read(&mut r)?),
            tag::COMMAND_COMPLETE => M::CommandComplete(CommandComplete::read(&mut r)?),
            tag::ERROR_RESPONSE => M::ErrorResponse(ErrorFields::read(&mut r)?),
            tag::NOTICE_RESPONSE => M::NoticeResponse(ErrorFields::read(&mut r)?),
            tag::PARSE_COMPLETE => M::ParseComplete,
            tag::BIND_COMPLETE => M::BindComplete,
            tag::CLOSE_COMPLETE => M::CloseComplete,
            tag::NO_DATA => M::NoData,
            tag::PARAMETER_DESCRIPTION => {
                M::ParameterDescription(ParameterDescription::read(&mut r)?)
            }
            tag::EMPTY_QUERY_RESPONSE => M::EmptyQueryResponse,
            tag::PORTAL_SUSPENDED => M::PortalSuspended,
            tag::COPY_IN_RESPONSE => M::CopyInResponse(CopyResponse::read(&mut r)?),
            tag::COPY_OUT_RESPONSE => M::CopyOutResponse(CopyResponse::read(&mut r)?),
            tag::COPY_BOTH_RESPONSE => M::CopyBothResponse(CopyResponse::read(&mut r)?),
            tag::COPY_DATA => M::CopyData(r.rest()),
            tag::COPY_DONE => M::CopyDone,
            tag::NOTIFICATION_RESPONSE => M::NotificationResponse(Notification::read(&mut r)?),
            tag::NEGOTIATE_PROTOCOL_VERSION => {
                M::NegotiateProtocolVersion(NegotiateProtocolVersion::read(&mut r)?)
            }
            tag::FUNCTION_CALL_RESPONSE => M::FunctionCallResponse(r.value("result")?),
            other => {
                return Err(DecodeError::UnknownTag {
                    dir: Direction::Backend,
                    tag: Tag(other),
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// Encodes this message; decoding the output yields an equal message.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        use BackendMessage as M;
        match self {
            M::Authentication(m) => m.encode(dst),
            M::ParameterStatus(m) => m.encode(dst),
            M::BackendKeyData(m) => m.encode(dst),
            M::ReadyForQuery(s) => {
                s.encode_ready_for_query(dst);
                Ok(())
            }
            M::RowDescription(m) => m.encode(dst),
            M::DataRow(m) => m.encode(dst),
            M::CommandComplete(m) => m.encode(dst),
            M::ErrorResponse(m) => m.encode(dst, tag::ERROR_RESPONSE),
            M::NoticeResponse(m) => m.encode(dst, tag::NOTICE_RESPONSE),
            M::ParameterDescription(m) => m.encode(dst),
            M::CopyInResponse(m) => m.encode(dst, tag::COPY_IN_RESPONSE),
            M::CopyOutResponse(m) => m.encode(dst, tag::COPY_OUT_RESPONSE),
            M::CopyBothResponse(m) => m.encode(dst, tag::COPY_BOTH_RESPONSE),
            M::CopyData(d) => copy::encode_copy_data(dst, d),
            M::NotificationResponse(m) => m.encode(dst),
            M::NegotiateProtocolVersion(m) => m.encode(dst),
            M::FunctionCallResponse(v) => {
                write::frame(dst, Some(tag::FUNCTION_CALL_RESPONSE), |dst| {
                    write::value(dst, *v)
                })
            }
            M::ParseComplete => empty(dst, tag::PARSE_COMPLETE),
            M::BindComplete => empty(dst, tag::BIND_COMPLETE),
            M::CloseComplete => empty(dst, tag::CLOSE_COMPLETE),
            M::NoData => empty(dst, tag::NO_DATA),
            M::EmptyQueryResponse => empty(dst, tag::EMPTY_QUERY_RESPONSE),
            M::PortalSuspended => empty(dst, tag::PORTAL_SUSPENDED),
            M::CopyDone => empty(dst, tag::COPY_DONE),
        }
    }
}

fn empty(dst: &mut BytesMut, tag: u8) -> Result<(), EncodeError> {
    write::fixed(dst, tag, &[]);
    Ok(())
}

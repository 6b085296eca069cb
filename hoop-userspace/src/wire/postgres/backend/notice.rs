//! ErrorResponse and NoticeResponse: decoded as code-tagged fields, and built
//! from a small struct when the proxy itself refuses a statement.
use bytes::{BufMut, BytesMut};

use super::tag;
use crate::wire::postgres::error::{DecodeError, EncodeError};
use crate::wire::postgres::read::Reader;
use crate::wire::postgres::write;

/// Field codes from the protocol's "Error and Notice Message Fields".
pub mod field {
    /// Localized severity.
    pub const SEVERITY: u8 = b'S';
    /// Severity, never localized (9.6+).
    pub const SEVERITY_RAW: u8 = b'V';
    pub const CODE: u8 = b'C';
    pub const MESSAGE: u8 = b'M';
    pub const DETAIL: u8 = b'D';
    pub const HINT: u8 = b'H';
    pub const POSITION: u8 = b'P';
    pub const WHERE: u8 = b'W';
    pub const SCHEMA: u8 = b's';
    pub const TABLE: u8 = b't';
    pub const COLUMN: u8 = b'c';
    pub const CONSTRAINT: u8 = b'n';
}

/// The fields of an ErrorResponse or NoticeResponse, validated once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorFields<'a>(&'a [u8]);

impl<'a> ErrorFields<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let all = r.clone().rest();
        loop {
            let code = r.u8("field code")?;
            if code == 0 {
                return Ok(ErrorFields(&all[..all.len() - r.remaining()]));
            }
            r.cstr("field value")?;
        }
    }

    /// `(code, value)` pairs in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &'a str)> + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            let (&code, tail) = rest.split_first()?;
            if code == 0 {
                return None;
            }
            let end = tail.iter().position(|&b| b == 0)?;
            rest = &tail[end + 1..];
            Some((code, std::str::from_utf8(&tail[..end]).unwrap_or("")))
        })
    }

    pub fn get(&self, code: u8) -> Option<&'a str> {
        self.iter().find(|(c, _)| *c == code).map(|(_, v)| v)
    }

    /// Non-localized severity when sent, else the localized one.
    pub fn severity(&self) -> Option<&'a str> {
        self.get(field::SEVERITY_RAW)
            .or_else(|| self.get(field::SEVERITY))
    }

    /// The SQLSTATE code.
    pub fn code(&self) -> Option<&'a str> {
        self.get(field::CODE)
    }

    pub fn message(&self) -> Option<&'a str> {
        self.get(field::MESSAGE)
    }

    pub fn detail(&self) -> Option<&'a str> {
        self.get(field::DETAIL)
    }

    pub fn hint(&self) -> Option<&'a str> {
        self.get(field::HINT)
    }

    /// Re-encodes unchanged with type byte `tag` ('E' or 'N').
    pub fn encode(&self, dst: &mut BytesMut, tag: u8) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag), |dst| {
            dst.put_slice(self.0);
            Ok(())
        })
    }
}

/// Severity of a synthesized error or notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Fatal,
    Panic,
    Warning,
    Notice,
    Debug,
    Info,
    Log,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Panic => "PANIC",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Log => "LOG",
        }
    }
}

/// An error or notice the proxy sends on its own behalf, e.g. a policy refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorNotice<'a> {
    pub severity: Severity,
    /// Five-character SQLSTATE, e.g. `42501` (insufficient_privilege).
    pub code: &'a str,
    pub message: &'a str,
    pub detail: Option<&'a str>,
    pub hint: Option<&'a str>,
}

impl ErrorNotice<'_> {
    /// As ErrorResponse ('E').
    pub fn encode_error(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_as(dst, tag::ERROR_RESPONSE)
    }

    /// As NoticeResponse ('N').
    pub fn encode_notice(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_as(dst, tag::NOTICE_RESPONSE)
    }

    fn encode_as(&self, dst: &mut BytesMut, tag: u8) -> Result<(), EncodeError> {
        // Clients match on SQLSTATE; a malformed one would break their error handling.
        let valid = self.code.len() == 5
            && self
                .code
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        if !valid {
            return Err(EncodeError::OutOfRange { field: "SQLSTATE" });
        }
        write::frame(dst, Some(tag), |dst| {
            let sev = self.severity.as_str();
            let fields = [
                (field::SEVERITY, Some(sev)),
                (field::SEVERITY_RAW, Some(sev)),
                (field::CODE, Some(self.code)),
                (field::MESSAGE, Some(self.message)),
                (field::DETAIL, self.detail),
                (field::HINT, self.hint),
            ];
            for (code, value) in fields {
                if let Some(v) = value {
                    dst.put_u8(code);
                    write::cstr(dst, v, "error field")?;
                }
            }
            dst.put_u8(0);
            Ok(())
        })
    }
}

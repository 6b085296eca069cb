//! Client authentication responses ('p'). PasswordMessage, SASLInitialResponse,
//! SASLResponse and GSSResponse share one type byte; only the server's preceding
//! request says which it is, so the body is interpreted by the caller's state.
use bytes::{BufMut, BytesMut};

use super::tag;
use crate::wire::postgres::error::{DecodeError, Direction, EncodeError};
use crate::wire::postgres::read::Reader;
use crate::wire::postgres::write;

/// The undecoded body of a 'p' message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthResponse<'a>(pub &'a [u8]);

/// SASLInitialResponse: the chosen mechanism and the client-first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    pub mechanism: &'a str,
    /// `None` when the client sent length -1 (no initial response).
    pub data: Option<&'a [u8]>,
}

impl<'a> AuthResponse<'a> {
    fn reader(&self) -> Reader<'a> {
        Reader::new(self.0, Direction::Frontend, tag::AUTH_RESPONSE)
    }

    /// As PasswordMessage (after AuthenticationCleartextPassword or
    /// AuthenticationMD5Password): the password or `md5`-prefixed hash.
    pub fn password(&self) -> Result<&'a str, DecodeError> {
        let mut r = self.reader();
        let password = r.cstr("password")?;
        r.finish()?;
        Ok(password)
    }

    /// As SASLInitialResponse (after AuthenticationSASL).
    pub fn sasl_initial(&self) -> Result<SaslInitialResponse<'a>, DecodeError> {
        let mut r = self.reader();
        let mechanism = r.cstr("SASL mechanism")?;
        let data = r.value("SASL initial response")?;
        r.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }

    /// As SASLResponse (after AuthenticationSASLContinue) or GSSResponse: the
    /// whole body is mechanism data.
    pub fn sasl_response(&self) -> &'a [u8] {
        self.0
    }
}

/// PasswordMessage carrying a cleartext password or an `md5...` hash.
pub fn encode_password(dst: &mut BytesMut, password: &str) -> Result<(), EncodeError> {
    write::frame(dst, Some(tag::AUTH_RESPONSE), |dst| {
        write::cstr(dst, password, "password")
    })
}

/// SASLInitialResponse, e.g. mechanism `SCRAM-SHA-256` with the client-first message.
pub fn encode_sasl_initial_response(
    dst: &mut BytesMut,
    mechanism: &str,
    data: Option<&[u8]>,
) -> Result<(), EncodeError> {
    write::frame(dst, Some(tag::AUTH_RESPONSE), |dst| {
        write::cstr(dst, mechanism, "SASL mechanism")?;
        write::value(dst, data)
    })
}

/// SASLResponse carrying the next SASL message (e.g. SCRAM client-final).
pub fn encode_sasl_response(dst: &mut BytesMut, data: &[u8]) -> Result<(), EncodeError> {
    write::frame(dst, Some(tag::AUTH_RESPONSE), |dst| {
        dst.put_slice(data);
        Ok(())
    })
}

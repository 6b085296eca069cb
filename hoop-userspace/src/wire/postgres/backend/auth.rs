//! Authentication requests ('R') from the server, and encoders for the ones the
//! proxy synthesizes when it terminates client authentication itself.
use bytes::{BufMut, BytesMut};

use super::tag;
use crate::wire::postgres::error::{DecodeError, EncodeError};
use crate::wire::postgres::read::Reader;
use crate::wire::postgres::write;

/// An Authentication* message, by its Int32 subtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication<'a> {
    /// 0: authentication succeeded.
    Ok,
    /// 2: no longer supported by servers, decoded so it can be refused cleanly.
    KerberosV5,
    /// 3: send the password in clear.
    CleartextPassword,
    /// 5: send `md5(md5(password + user) + salt)`.
    Md5Password { salt: [u8; 4] },
    /// 7
    Gss,
    /// 8: GSSAPI or SSPI continuation data.
    GssContinue(&'a [u8]),
    /// 9
    Sspi,
    /// 10: SASL with the server's mechanisms in preference order.
    Sasl(SaslMechanisms<'a>),
    /// 11: SCRAM server-first message.
    SaslContinue(&'a [u8]),
    /// 12: SCRAM server-final message.
    SaslFinal(&'a [u8]),
}

impl<'a> Authentication<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let kind = r.i32("authentication type")?;
        Ok(match kind {
            0 => Authentication::Ok,
            2 => Authentication::KerberosV5,
            3 => Authentication::CleartextPassword,
            5 => {
                let salt = r.bytes(4, "MD5 salt")?;
                Authentication::Md5Password {
                    salt: [salt[0], salt[1], salt[2], salt[3]],
                }
            }
            7 => Authentication::Gss,
            8 => Authentication::GssContinue(r.rest()),
            9 => Authentication::Sspi,
            10 => Authentication::Sasl(SaslMechanisms::read(r)?),
            11 => Authentication::SaslContinue(r.rest()),
            12 => Authentication::SaslFinal(r.rest()),
            other => return Err(r.invalid("authentication type", other.into())),
        })
    }

    fn code(&self) -> i32 {
        match self {
            Authentication::Ok => 0,
            Authentication::KerberosV5 => 2,
            Authentication::CleartextPassword => 3,
            Authentication::Md5Password { .. } => 5,
            Authentication::Gss => 7,
            Authentication::GssContinue(_) => 8,
            Authentication::Sspi => 9,
            Authentication::Sasl(_) => 10,
            Authentication::SaslContinue(_) => 11,
            Authentication::SaslFinal(_) => 12,
        }
    }

    /// Encodes any variant (AuthenticationOk, CleartextPassword, MD5Password, ...).
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag::AUTHENTICATION), |dst| {
            dst.put_i32(self.code());
            match self {
                Authentication::Md5Password { salt } => dst.put_slice(salt),
                Authentication::GssContinue(d)
                | Authentication::SaslContinue(d)
                | Authentication::SaslFinal(d) => dst.put_slice(d),
                Authentication::Sasl(m) => dst.put_slice(m.0),
                _ => {}
            }
            Ok(())
        })
    }
}

/// AuthenticationSASL listing `mechanisms` (e.g. `["SCRAM-SHA-256"]`).
pub fn encode_auth_sasl(dst: &mut BytesMut, mechanisms: &[&str]) -> Result<(), EncodeError> {
    write::frame(dst, Some(tag::AUTHENTICATION), |dst| {
        dst.put_i32(10);
        for m in mechanisms {
            if m.is_empty() {
                return Err(EncodeError::OutOfRange {
                    field: "SASL mechanism",
                });
            }
            write::cstr(dst, m, "SASL mechanism")?;
        }
        dst.put_u8(0);
        Ok(())
    })
}

/// The mechanism list of AuthenticationSASL, validated as NUL-terminated
/// UTF-8 names followed by an empty name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslMechanisms<'a>(&'a [u8]);

impl<'a> SaslMechanisms<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let all = r.clone().rest();
        let mut used = 0;
        loop {
            let name = r.cstr("SASL mechanism")?;
            used += name.len() + 1;
            if name.is_empty() {
                return Ok(SaslMechanisms(&all[..used]));
            }
        }
    }

    /// Mechanism names in the server's order of preference.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .split(|&b| b == 0)
            .take_while(|s| !s.is_empty())
            .map(|s| std::str::from_utf8(s).unwrap_or(""))
    }
}

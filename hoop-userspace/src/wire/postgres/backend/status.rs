//! Session status messages: ParameterStatus, BackendKeyData, ReadyForQuery,
//! CommandComplete, NotificationResponse, NegotiateProtocolVersion.
use bytes::{BufMut, BytesMut};

use super::tag;
use crate::wire::postgres::error::{DecodeError, EncodeError};
use crate::wire::postgres::read::Reader;
use crate::wire::postgres::write;

/// ParameterStatus: the server reports a runtime parameter's current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

impl<'a> ParameterStatus<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(ParameterStatus {
            name: r.cstr("parameter name")?,
            value: r.cstr("parameter value")?,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag::PARAMETER_STATUS), |dst| {
            write::cstr(dst, self.name, "parameter name")?;
            write::cstr(dst, self.value, "parameter value")
        })
    }
}

/// BackendKeyData: what a client needs to cancel a query later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKeyData<'a> {
    pub pid: i32,
    /// 4 bytes under protocol 3.0; up to 256 under 3.2 (PostgreSQL 18).
    pub secret_key: &'a [u8],
}

impl<'a> BackendKeyData<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let pid = r.i32("process id")?;
        let secret_key = r.rest();
        if !(4..=256).contains(&secret_key.len()) {
            return Err(r.invalid("secret key length", secret_key.len() as i64));
        }
        Ok(BackendKeyData { pid, secret_key })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if !(4..=256).contains(&self.secret_key.len()) {
            return Err(EncodeError::OutOfRange {
                field: "secret key length",
            });
        }
        write::frame(dst, Some(tag::BACKEND_KEY_DATA), |dst| {
            dst.put_i32(self.pid);
            dst.put_slice(self.secret_key);
            Ok(())
        })
    }
}

/// The transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionStatus {
    /// 'I': not in a transaction block.
    Idle,
    /// 'T': in a transaction block.
    InTransaction,
    /// 'E': in a failed transaction block; queries are rejected until rollback.
    Failed,
}

impl TransactionStatus {
    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("transaction status")? {
            b'I' => Ok(TransactionStatus::Idle),
            b'T' => Ok(TransactionStatus::InTransaction),
            b'E' => Ok(TransactionStatus::Failed),
            other => Err(r.invalid("transaction status", other.into())),
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }

    /// ReadyForQuery with this status.
    pub fn encode_ready_for_query(self, dst: &mut BytesMut) {
        write::fixed(dst, tag::READY_FOR_QUERY, &[self.byte()]);
    }
}

/// CommandComplete: the command tag, e.g. `INSERT 0 3` or `SELECT 10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandComplete<'a> {
    pub tag: &'a str,
}

impl<'a> CommandComplete<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(CommandComplete {
            tag: r.cstr("command tag")?,
        })
    }

    /// The command word(s) without the row count, e.g. `INSERT`, `CREATE TABLE`.
    pub fn command(&self) -> &'a str {
        match self.rows() {
            Some(_) => self
                .tag
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == ' '),
            None => self.tag,
        }
    }

    /// Rows affected or returned, for the commands whose tag carries a count.
    pub fn rows(&self) -> Option<u64> {
        let (head, count) = self.tag.rsplit_once(' ')?;
        let word = head.split(' ').next()?;
        match word {
            "INSERT" | "UPDATE" | "DELETE" | "SELECT" | "MERGE" | "MOVE" | "FETCH" | "COPY" => {
                count.parse().ok()
            }
            _ => None,
        }
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag::COMMAND_COMPLETE), |dst| {
            write::cstr(dst, self.tag, "command tag")
        })
    }
}

/// NotificationResponse: a NOTIFY delivered to a LISTENing session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification<'a> {
    pub pid: i32,
    pub channel: &'a str,
    pub payload: &'a str,
}

impl<'a> Notification<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Notification {
            pid: r.i32("process id")?,
            channel: r.cstr("channel")?,
            payload: r.cstr("payload")?,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        write::frame(dst, Some(tag::NOTIFICATION_RESPONSE), |dst| {
            dst.put_i32(self.pid);
            write::cstr(dst, self.channel, "channel")?;
            write::cstr(dst, self.payload, "payload")
        })
    }
}

/// NegotiateProtocolVersion: the server's newest supported minor version and
/// the `_pq_.` startup options it did not recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiateProtocolVersion<'a> {
    pub newest_minor: i32,
    unrecognized: &'a [u8],
    count: usize,
}

impl<'a> NegotiateProtocolVersion<'a> {
    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let newest_minor = r.i32("minor version")?;
        let n = r.i32("option count")?;
        let count = usize::try_from(n).map_err(|_| r.invalid("option count", n.into()))?;
        let all = r.clone().rest();
        let mut used = 0;
        for _ in 0..count {
            used += r.cstr("option name")?.len() + 1;
        }
        Ok(NegotiateProtocolVersion {
            newest_minor,
            unrecognized: &all[..used],
            count,
        })
    }

    /// Option names the server did not recognise.
    pub fn unrecognized(&self) -> impl Iterator<Item = &'a str> + 'a {
        let n = self.count;
        self.unrecognized
            .split(|&b| b == 0)
            .take(n)
            .map(|s| std::str::from_utf8(s).unwrap_or(""))
    }

    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let count = i32::try_from(self.count).map_err(|_| EncodeError::OutOfRange {
            field: "option count",
        })?;
        write::frame(dst, Some(tag::NEGOTIATE_PROTOCOL_VERSION), |dst| {
            dst.put_i32(self.newest_minor);
            dst.put_i32(count);
            dst.put_slice(self.unrecognized);
            Ok(())
        })
    }
}

//! The record: its canonical line (`{"event":…,"hash":…,"kind":…,"prev":…,"seq":…,"time":…,"v":1}`),
//! its hash, the chain's genesis, and the parse-and-check used by verify, open and the reader.

use std::time::SystemTime;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::canonical;
use super::error::{AuditError, VerifyError};
use super::time::{self, TIME_LEN};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Version written in every record's `v` field.
pub const RECORD_VERSION: u64 = 1;
/// Kinds starting with this are written only by the log itself; callers cannot forge them.
pub const RESERVED_PREFIX: &str = "audit.";
/// First record of every segment: carries the Merkle frontier before it.
pub const KIND_SEGMENT: &str = "audit.segment";
/// Records the deletion of expired segments.
pub const KIND_PRUNE: &str = "audit.prune";
/// Records bytes cut from a torn tail at open.
pub const KIND_RECOVERY: &str = "audit.recovery";
/// Longest accepted kind, in bytes.
pub const MAX_KIND_LEN: usize = 128;

const GENESIS_LABEL: &[u8] = b"hoop-audit genesis v1\0";

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// `prev` of seq 0: binds the chain to the node key, so a chain started by another key (or
/// re-rooted by an editor) fails at its first record.
pub fn genesis(public_key: &[u8; 32]) -> Hash {
    let mut h = Sha256::new();
    h.update(GENESIS_LABEL);
    h.update(public_key);
    h.finalize().into()
}

/// Parses 64 lowercase hex digits.
pub fn parse_hash(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    (s.len() == 64 && !s.bytes().any(|b| b.is_ascii_uppercase()))
        .then(|| hex::decode_to_slice(s, &mut out).ok())
        .flatten()
        .map(|()| out)
}

/// A decoded, self-consistent record (its stored hash matches its content).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    /// RFC 3339 UTC with nanoseconds, fixed width.
    pub time: String,
    pub kind: String,
    pub prev: Hash,
    pub hash: Hash,
    pub event: Value,
}

/// The seq-independent part of a record, encoded and hashed outside the log's lock.
pub struct Prepared {
    /// `{"event":<event>,` then `"kind":<kind>,"prev":"`: the line around its `hash` member.
    buf: Vec<u8>,
    /// Where the `hash` member goes (the end of `{"event":<event>,`).
    event_end: usize,
    /// SHA-256 state after all of `buf`.
    hasher: Sha256,
}

/// The start of a record whose event begins the same way many times (a session's statements
/// of one shape): `{"event":` and the event's first fields, encoded and hashed once, then
/// completed per record by [`Prepared::resume`].
pub struct EventPrefix {
    bytes: Vec<u8>,
    /// SHA-256 state after `bytes`.
    hasher: Sha256,
}

impl EventPrefix {
    /// `write` appends the event's first part (canonical JSON cut anywhere).
    pub fn new(write: impl FnOnce(&mut Vec<u8>)) -> Self {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(b"{\"event\":");
        write(&mut bytes);
        let hasher = Sha256::new_with_prefix(&bytes);
        EventPrefix { bytes, hasher }
    }
}

impl Prepared {
    /// Encodes `event` canonically. `internal` allows the reserved `audit.` kinds.
    pub fn new(kind: &str, event: &Value, internal: bool) -> Result<Prepared, AuditError> {
        Self::check_kind(kind, internal)?;
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(b"{\"event\":");
        if !canonical::write_value(&mut head, event) {
            return Err(AuditError::EventTooDeep {
                max: canonical::MAX_DEPTH,
            });
        }
        Ok(Self::finish(kind, head, Sha256::new(), 0))
    }

    /// Encodes a typed event whose structs declare their fields sorted by bytes (see
    /// [`canonical::write_sorted`]); never one of the reserved kinds.
    pub fn typed<T: serde::Serialize + ?Sized>(
        kind: &str,
        event: &T,
    ) -> Result<Prepared, AuditError> {
        Self::written(kind, |out| canonical::write_sorted(out, event))
    }

    /// A record whose event `write` appends as canonical JSON (a hot record written field by
    /// field, [`canonical::Obj`]); never one of the reserved kinds.
    pub fn written(kind: &str, write: impl FnOnce(&mut Vec<u8>)) -> Result<Prepared, AuditError> {
        Self::check_kind(kind, false)?;
        let mut head = Vec::with_capacity(320);
        head.extend_from_slice(b"{\"event\":");
        write(&mut head);
        Ok(Self::finish(kind, head, Sha256::new(), 0))
    }

    /// A record whose event starts with `prefix` and goes on with what `rest` appends: the same
    /// bytes and hash as writing it whole, without encoding or hashing the prefix again.
    pub fn resume(
        kind: &str,
        prefix: &EventPrefix,
        rest: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Prepared, AuditError> {
        Self::check_kind(kind, false)?;
        let mut head = Vec::with_capacity(prefix.bytes.len() + 192);
        head.extend_from_slice(&prefix.bytes);
        rest(&mut head);
        Ok(Self::finish(
            kind,
            head,
            prefix.hasher.clone(),
            prefix.bytes.len(),
        ))
    }

    fn check_kind(kind: &str, internal: bool) -> Result<(), AuditError> {
        if kind.is_empty() || kind.len() > MAX_KIND_LEN {
            return Err(AuditError::InvalidKind { len: kind.len() });
        }
        if !internal && kind.starts_with(RESERVED_PREFIX) {
            return Err(AuditError::ReservedKind {
                kind: kind.to_owned(),
            });
        }
        Ok(())
    }

    /// `hasher` has taken `buf[..hashed]` already.
    fn finish(kind: &str, mut buf: Vec<u8>, mut hasher: Sha256, hashed: usize) -> Prepared {
        buf.push(b',');
        let event_end = buf.len();
        buf.extend_from_slice(b"\"kind\":");
        canonical::write_str(&mut buf, kind);
        buf.extend_from_slice(b",\"prev\":\"");
        hasher.update(&buf[hashed..]);
        Prepared {
            buf,
            event_end,
            hasher,
        }
    }

    /// Places the record in the chain: appends its line (with `\n`) to `out`, returns its hash.
    pub fn seal(&self, seq: u64, prev: &Hash, now: SystemTime, out: &mut Vec<u8>) -> Hash {
        const MEMBER: &[u8] = b"\"hash\":\"";
        out.reserve(self.buf.len() + MEMBER.len() + 64 + 2 + 160);
        out.extend_from_slice(&self.buf[..self.event_end]);
        out.extend_from_slice(MEMBER);
        let at = out.len();
        // the hash's place, filled in once the tail is hashed
        out.extend_from_slice(&[b'0'; 64]);
        out.extend_from_slice(b"\",");
        out.extend_from_slice(&self.buf[self.event_end..]);
        let tail = out.len();
        write_tail(out, prev, seq, now);
        let hash: Hash = self
            .hasher
            .clone()
            .chain_update(&out[tail..])
            .finalize()
            .into();
        out[at..at + 64].copy_from_slice(&hex32(&hash));
        out.push(b'\n');
        hash
    }
}

/// `<prev hex>","seq":<seq>,"time":"<time>","v":1}`
fn write_tail(out: &mut Vec<u8>, prev: &Hash, seq: u64, now: SystemTime) {
    out.extend_from_slice(&hex32(prev));
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.extend_from_slice(b",\"time\":\"");
    let mut t = [0u8; TIME_LEN];
    time::write(&mut t, now);
    out.extend_from_slice(&t);
    out.extend_from_slice(b"\",\"v\":1}");
}

/// Canonical bytes of a record object, with or without its `hash` member.
fn encode(
    event: &Value,
    kind: &str,
    prev: &Hash,
    seq: u64,
    time: &str,
    hash: Option<&Hash>,
) -> Vec<u8> {
    encode_marked(event, kind, prev, seq, time, hash).0
}

/// [`encode`], and where the `hash` member (with its leading comma) is in the line: the line
/// without that range is what the hash covers.
fn encode_marked(
    event: &Value,
    kind: &str,
    prev: &Hash,
    seq: u64,
    time: &str,
    hash: Option<&Hash>,
) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"event\":");
    canonical::write_value(&mut out, event);
    let start = out.len();
    if let Some(hash) = hash {
        out.extend_from_slice(b",\"hash\":\"");
        out.extend_from_slice(&hex32(hash));
        out.push(b'"');
    }
    let member = start..out.len();
    out.extend_from_slice(b",\"kind\":");
    canonical::write_str(&mut out, kind);
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(&hex32(prev));
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.extend_from_slice(b",\"time\":");
    canonical::write_str(&mut out, time);
    out.extend_from_slice(b",\"v\":1}");
    (out, member)
}

impl Record {
    /// Parses one line (without `\n`) and checks that it is canonical and that its hash matches.
    pub fn parse_line(line: &[u8]) -> Result<Record, VerifyError> {
        let value: Value = serde_json::from_slice(line).map_err(|_| VerifyError::NotJson)?;
        let Value::Object(mut map) = value else {
            return Err(VerifyError::Malformed { field: "record" });
        };
        let version = map
            .get("v")
            .and_then(Value::as_u64)
            .ok_or(VerifyError::Malformed { field: "v" })?;
        if version != RECORD_VERSION {
            return Err(VerifyError::UnsupportedVersion { version });
        }
        if map.len() != 7 {
            return Err(VerifyError::Malformed { field: "record" });
        }
        let record = Record {
            seq: map
                .get("seq")
                .and_then(Value::as_u64)
                .ok_or(VerifyError::Malformed { field: "seq" })?,
            time: take_string(&mut map, "time")?,
            kind: take_string(&mut map, "kind")?,
            prev: take_hash(&mut map, "prev")?,
            hash: take_hash(&mut map, "hash")?,
            event: map
                .remove("event")
                .ok_or(VerifyError::Malformed { field: "event" })?,
        };
        if time::parse(&record.time).is_none() {
            return Err(VerifyError::Malformed { field: "time" });
        }
        if record.kind.is_empty() || record.kind.len() > MAX_KIND_LEN {
            return Err(VerifyError::Malformed { field: "kind" });
        }
        let r = &record;
        let (canonical, member) =
            encode_marked(&r.event, &r.kind, &r.prev, r.seq, &r.time, Some(&r.hash));
        if canonical != line {
            return Err(VerifyError::NotCanonical);
        }
        // the canonical line without its hash member is what `compute_hash` would encode
        let computed: Hash = Sha256::new()
            .chain_update(&line[..member.start])
            .chain_update(&line[member.end..])
            .finalize()
            .into();
        if computed != r.hash {
            return Err(VerifyError::HashMismatch {
                stored: r.hash,
                computed,
            });
        }
        Ok(record)
    }

    /// SHA-256 of the canonical record without its `hash` member.
    pub fn compute_hash(&self) -> Hash {
        sha256(&encode(
            &self.event,
            &self.kind,
            &self.prev,
            self.seq,
            &self.time,
            None,
        ))
    }

    /// The canonical line (without `\n`).
    pub fn to_line(&self) -> Vec<u8> {
        encode(
            &self.event,
            &self.kind,
            &self.prev,
            self.seq,
            &self.time,
            Some(&self.hash),
        )
    }
}

fn take_string(map: &mut Map<String, Value>, field: &'static str) -> Result<String, VerifyError> {
    match map.remove(field) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(VerifyError::Malformed { field }),
    }
}

fn take_hash(map: &mut Map<String, Value>, field: &'static str) -> Result<Hash, VerifyError> {
    match map.remove(field) {
        Some(Value::String(s)) => parse_hash(&s).ok_or(VerifyError::Malformed { field }),
        _ => Err(VerifyError::Malformed { field }),
    }
}

#[cfg(test)]
mod tests;

/// Lower-case hex of a hash, without an allocation (two records' worth per append).
pub fn hex32(h: &Hash) -> [u8; 64] {
    /// The two hex digits of every byte value.
    const PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [DIGITS[i >> 4], DIGITS[i & 15]];
            i += 1;
        }
        t
    };
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(h) {
        pair.copy_from_slice(&PAIRS[usize::from(*b)]);
    }
    out
}

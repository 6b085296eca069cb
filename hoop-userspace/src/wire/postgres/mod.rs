//! PostgreSQL v3 wire protocol, sans-IO, for a proxy that sits between client
//! and server.
//!
//! Layers, cheapest first:
//! - [`frame`]: split `tag + length + body` frames off a buffer, enforcing
//!   [`Limits`] from the header alone. Forwarded frames stop here ([`Frame`] is
//!   a zero-copy `Bytes` slice of the read buffer).
//! - [`frontend`] / [`backend`]: decode a frame on demand into a borrowed view
//!   (`FrontendMessage<'a>`, `BackendMessage<'a>`). The direction is part of the
//!   type because `D`, `S`, `E`, `C` mean different messages each way. Lists
//!   (Bind parameters, DataRow columns, RowDescription fields) are validated
//!   once and then iterated without allocating.
//! - [`startup`]: the untyped first packet and the one-byte SSL answer.
//! - Encoders write into `BytesMut`; lengths are always recomputed.
//!
//! Why hand-written instead of a crate: `postgres-protocol` 0.6 parses only
//! backend messages (frontend is encode-only), has no startup/cancel decoding
//! and no configurable length limit, and reports `io::Error`; `pgwire` 0.42
//! decodes into owned `String`s/`Vec`s by consuming a `BytesMut` (an allocation
//! per message on the hot path), with fixed size limits. Both are still used in
//! this crate's tests as oracles: `postgres-protocol` decodes the same captured
//! traffic and checks our encoders byte for byte.
pub mod backend;
pub mod copy;
pub mod error;
pub mod frame;
pub mod frontend;
mod read;
pub mod startup;
pub mod values;
mod write;

#[cfg(test)]
mod tests;

pub use backend::BackendMessage;
pub use error::{DecodeError, Direction, EncodeError, Tag};
pub use frame::{Frame, FrameSplitter, HEADER_LEN, Limits, RawFrame, split_frame};
pub use frontend::FrontendMessage;
pub use startup::StartupPacket;
pub use values::{Format, Formats, Oids, Values};

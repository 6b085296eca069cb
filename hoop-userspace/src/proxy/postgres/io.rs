//! Reading whole messages off a socket during the startup and authentication phases (the query
//! phase streams in `relay`).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::PgError;
use crate::wire::postgres::{
    BackendMessage, Direction, Frame, FrameSplitter, FrontendMessage, Limits, StartupPacket,
    startup,
};

/// Reads until `buf` holds a whole frame from `dir`'s peer; `None` at a clean EOF between frames.
pub async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    dir: Direction,
) -> Result<Option<Frame>, PgError> {
    let splitter = FrameSplitter::new(dir, Limits::DEFAULT);
    let (proto, io) = match dir {
        Direction::Frontend => (
            PgError::ClientProtocol as fn(_) -> _,
            PgError::ClientIo as fn(_) -> _,
        ),
        Direction::Backend => (
            PgError::UpstreamProtocol as fn(_) -> _,
            PgError::UpstreamIo as fn(_) -> _,
        ),
    };
    loop {
        if let Some(f) = splitter.next_frame(buf).map_err(proto)? {
            return Ok(Some(f));
        }
        if s.read_buf(buf).await.map_err(io)? == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed mid-message",
            )));
        }
    }
}

/// A server message, decoded.
pub fn backend(frame: &Frame) -> Result<BackendMessage<'_>, PgError> {
    BackendMessage::parse(frame.raw()).map_err(PgError::UpstreamProtocol)
}

/// A client message, decoded.
pub fn frontend(frame: &Frame) -> Result<FrontendMessage<'_>, PgError> {
    FrontendMessage::parse(frame.raw()).map_err(PgError::ClientProtocol)
}

/// Reads one startup-phase packet (no type byte) from the client: the packet and its length.
pub async fn read_startup<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<Option<usize>, PgError> {
    loop {
        match startup::decode(buf).map_err(PgError::ClientProtocol)? {
            Some((_, n)) => return Ok(Some(n)),
            None => {
                if s.read_buf(buf).await.map_err(PgError::ClientIo)? == 0 {
                    return Ok(None);
                }
            }
        }
    }
}

/// Decodes the startup packet `read_startup` found at the front of `buf`.
pub fn startup_packet(buf: &[u8]) -> Result<StartupPacket<'_>, PgError> {
    match startup::decode(buf).map_err(PgError::ClientProtocol)? {
        Some((p, _)) => Ok(p),
        None => unreachable!("read_startup saw a whole packet"),
    }
}

pub async fn write_client<S: AsyncWrite + Unpin>(s: &mut S, b: &[u8]) -> Result<(), PgError> {
    s.write_all(b).await.map_err(PgError::ClientIo)?;
    s.flush().await.map_err(PgError::ClientIo)
}

pub async fn write_server<S: AsyncWrite + Unpin>(s: &mut S, b: &[u8]) -> Result<(), PgError> {
    s.write_all(b).await.map_err(PgError::UpstreamIo)?;
    s.flush().await.map_err(PgError::UpstreamIo)
}

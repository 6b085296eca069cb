//! Protocol `tcp`: byte passthrough with per-direction byte counts.

use std::sync::Arc;

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use crate::session::Session;

const BUF: usize = 64 * 1024;

/// Copies both ways until both sides are done; half-closes are propagated, and an error on
/// either side ends both (a reset client must not leave the upstream half open forever).
pub async fn run(
    session: &Arc<Session>,
    client: TcpStream,
    upstream: TcpStream,
) -> std::io::Result<()> {
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let up = pump(cr, uw, session, Session::add_up);
    let down = pump(ur, cw, session, Session::add_down);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut up, if !up_done => { r?; up_done = true; }
            r = &mut down, if !down_done => { r?; down_done = true; }
        }
    }
    Ok(())
}

async fn pump<R, W>(
    mut r: R,
    mut w: W,
    s: &Arc<Session>,
    count: fn(&Session, u64),
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.shutdown().await;
        }
        super::busy_poll::note_activity();
        w.write_all(&buf[..n]).await?;
        count(s, n as u64);
    }
}

//! The forwarder over TCP (RFC 7766: two-byte length prefix, pipelining allowed): one marked
//! upstream connection per client connection; queries are relayed as they come, answers are
//! inspected one message at a time before they reach the client.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::Forwarder;

/// A connection with no answer for this long is closed (RFC 7766 suggests seconds).
const IDLE: Duration = Duration::from_secs(30);

pub async fn serve(listener: TcpListener, fwd: Arc<Forwarder>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "dns: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let resolver = match stream.local_addr() {
            Ok(SocketAddr::V4(local)) => fwd.resolver_for(peer, *local.ip()),
            _ => None,
        };
        let Some(resolver) = resolver else {
            continue; // not a steered query: closed
        };
        let fwd = fwd.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(&fwd, stream, resolver).await {
                tracing::debug!(error = %e, %resolver, "dns: TCP relay ended");
            }
        });
    }
}

async fn relay(fwd: &Forwarder, client: TcpStream, resolver: SocketAddr) -> std::io::Result<()> {
    let upstream = crate::proxy::upstream::connect(resolver, fwd.mark, fwd.timeout).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let queries = async move {
        let r = tokio::io::copy(&mut cr, &mut uw).await;
        let _ = uw.shutdown().await;
        r.map(|_| ())
    };
    let answers = async move {
        loop {
            let len = match tokio::time::timeout(IDLE, ur.read_u16()).await {
                Ok(Ok(l)) => l as usize,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(()),
            };
            let mut msg = vec![0u8; len];
            ur.read_exact(&mut msg).await?;
            // an answer that cannot be inspected is not relayed: the connection ends
            let Some(out) = fwd.inspect(&msg) else {
                return Ok(());
            };
            let mut frame = Vec::with_capacity(out.len() + 2);
            frame.extend_from_slice(&(out.len() as u16).to_be_bytes());
            frame.extend_from_slice(&out);
            cw.write_all(&frame).await?;
        }
    };
    let (q, a) = tokio::join!(queries, answers);
    a.and(q)
}

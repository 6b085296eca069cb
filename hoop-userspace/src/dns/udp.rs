//! The forwarder over UDP: one socket on every slot address, one marked socket per forwarded
//! query (a fresh random port each, as a stub resolver would use).

use std::{
    net::{SocketAddr, SocketAddrV4},
    sync::Arc,
    time::Duration,
};

use tokio::{io::Interest, net::UdpSocket, sync::Semaphore};

use super::{Forwarder, pktinfo};

/// Largest DNS message over UDP (EDNS allows up to 65535).
const MAX_UDP: usize = 65_535;
/// Queries forwarded at once; more are dropped (the client retries).
const IN_FLIGHT: usize = 1024;

pub async fn serve(sock: UdpSocket, fwd: Arc<Forwarder>) {
    let sock = Arc::new(sock);
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let r = sock
            .async_io(Interest::READABLE, || pktinfo::recv(&*sock, &mut buf))
            .await;
        let (n, src, dst) = match r {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "dns: receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(resolver) = fwd.resolver_for(SocketAddr::V4(src), dst) else {
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!("dns: too many queries in flight; one dropped");
            continue;
        };
        let query = buf[..n].to_vec();
        let (sock, fwd) = (sock.clone(), fwd.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Some(answer) = exchange(&fwd, &query, resolver).await else {
                return;
            };
            let Some(answer) = fwd.inspect(&answer) else {
                return;
            };
            let r = sock
                .async_io(Interest::WRITABLE, || {
                    pktinfo::send(&*sock, &answer, src, dst)
                })
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, client = %src, "dns: reply failed");
            }
        });
    }
}

/// Forwards `query` to `resolver` from a marked socket; the answer, or `None` on timeout.
async fn exchange(fwd: &Forwarder, query: &[u8], resolver: SocketAddr) -> Option<Vec<u8>> {
    let sock = match marked_socket(resolver, fwd.mark) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, %resolver, "dns: cannot open an upstream socket");
            return None;
        }
    };
    if let Err(e) = sock.send(query).await {
        tracing::debug!(error = %e, %resolver, "dns: forward failed");
        return None;
    }
    let mut buf = vec![0u8; MAX_UDP];
    let deadline = tokio::time::Instant::now() + fwd.timeout;
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, %resolver, "dns: upstream receive failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(%resolver, "dns: upstream did not answer in time");
                return None;
            }
        };
        // the answer to this query: same id, QR set (anything else on this port is ignored)
        if n >= 12 && buf[..2] == query[..2] && buf[2] & 0x80 != 0 {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

/// A UDP socket connected to `to`, carrying hoopd's mark (never redirected, never guarded).
pub fn marked_socket(to: SocketAddr, mark: u32) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(to);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Must precede connect() and every send: the eBPF programs read the mark.
    s.set_mark(mark)?;
    s.set_nonblocking(true)?;
    let any: SocketAddr = match to {
        SocketAddr::V4(_) => SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    s.bind(&any.into())?;
    s.connect(&to.into())?;
    UdpSocket::from_std(s.into())
}

//! DNS capture, user-space half: the forwarder that learns where protected names point.
//!
//! The eBPF programs steer every DNS query of the attached subtree (UDP and TCP to port 53) to
//! this forwarder at a *slot address* 127.16.x.y that names the resolver the process addressed
//! (`hoop_common::dns`). The forwarder sends the query unchanged to that resolver from a socket
//! carrying hoopd's mark, and inspects the answer before relaying it: when a name of its CNAME
//! chain is a target's host (exact, or `*.suffix`), its A/AAAA addresses go into the target maps
//! (`Intercept::learn`) first, so the connect that follows the lookup is always captured. The
//! answer the client gets is byte for byte the resolver's; /etc/resolv.conf is never touched.
//!
//! Fail closed:
//! - An answer that cannot be parsed is not relayed; one whose addresses cannot be written to
//!   the maps becomes SERVFAIL.
//! - While the forwarder is not there (hoopd down) the programs send queries direct, and the
//!   kernel's DNS guard drops those for protected names: protected lookups fail, others work.
//! - Learned addresses expire after their TTL (at least `dns.min_ttl_s`), and get `dns.grace_s`
//!   more while sessions to them are live; they are kept in `<state>/dns-learned.json` across
//!   restarts.
//!
//! hoopd's own lookups of exact target names (`client`) use marked sockets too, so they are
//! never steered back into the forwarder.

mod answer;
pub mod client;
mod pktinfo;
mod tcp;
mod udp;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use tokio::net::{TcpListener, UdpSocket};

use crate::{config::Config, proxy::Node};

/// The forwarder's two sockets, bound before the programs attach (they steer queries only while
/// these exist).
pub struct Sockets {
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Binds UDP and TCP on `0.0.0.0:dns.port` with hoopd's mark. Only datagrams and connections
/// addressed to a slot address from loopback are served; the rest are dropped.
pub fn bind(cfg: &Config) -> std::io::Result<Sockets> {
    let addr: SocketAddr = (Ipv4Addr::UNSPECIFIED, cfg.dns.port).into();
    let mark = cfg.intercept.mark;
    let udp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    udp.set_mark(mark)?;
    pktinfo::enable(&udp)?;
    udp.bind(&addr.into())?;
    udp.set_nonblocking(true)?;
    let tcp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    tcp.set_mark(mark)?;
    tcp.set_reuse_address(true)?;
    tcp.bind(&addr.into())?;
    tcp.listen(1024)?;
    tcp.set_nonblocking(true)?;
    Ok(Sockets {
        udp: UdpSocket::from_std(udp.into())?,
        tcp: TcpListener::from_std(tcp.into())?,
    })
}

/// The file the learned table is kept in across restarts.
pub fn learned_file(cfg: &Config) -> PathBuf {
    cfg.state.dir.join("dns-learned.json")
}

/// What the forwarder's tasks share.
pub struct Forwarder {
    node: Arc<Node>,
    mark: u32,
    timeout: Duration,
    min_ttl: u64,
    max_ttl: u64,
    /// Where the learned table is kept across restarts.
    learned_file: PathBuf,
}

/// Serves both sockets until hoopd exits.
pub fn spawn(sockets: Sockets, node: Arc<Node>, cfg: &Config) {
    let fwd = Arc::new(Forwarder {
        node,
        mark: cfg.intercept.mark,
        timeout: Duration::from_millis(cfg.dns.upstream_timeout_ms),
        min_ttl: cfg.dns.min_ttl_s,
        max_ttl: cfg.dns.max_ttl_s,
        learned_file: learned_file(cfg),
    });
    tokio::spawn(udp::serve(sockets.udp, fwd.clone()));
    tokio::spawn(tcp::serve(sockets.tcp, fwd));
}

impl Forwarder {
    /// The resolver behind a query from `client` to slot address `dst`; `None` for anything
    /// that was not steered here by the programs.
    fn resolver_for(&self, client: SocketAddr, dst: Ipv4Addr) -> Option<SocketAddr> {
        if !client.ip().is_loopback() {
            return None;
        }
        let slot = hoop_common::dns::slot_of(dst.octets())?;
        let r = self.node.intercept.dns_resolver(slot);
        if r.is_none() {
            tracing::warn!(%dst, "dns: query to an unknown slot dropped");
        }
        r
    }

    /// Learns from `answer` and returns what to relay: the answer itself, SERVFAIL when a
    /// protected answer could not be learned, `None` (drop) when it cannot be parsed.
    fn inspect(&self, answer: &[u8]) -> Option<Vec<u8>> {
        let msg = match hickory_proto::op::Message::from_vec(answer) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "dns: unparsable answer dropped");
                return None;
            }
        };
        let set = self.node.targets();
        let Some(l) = answer::analyse(&msg, &set) else {
            return Some(answer.to_vec());
        };
        let mut grew = false;
        for (ip, ttl) in &l.addrs {
            let lifetime = u64::from(*ttl).max(self.min_ttl).min(self.max_ttl);
            match self
                .node
                .intercept
                .learn(&set, *ip, &l.name, &l.targets, lifetime)
            {
                Ok(new) => {
                    if new {
                        grew = true;
                        tracing::info!(name = %l.name, addr = %ip, ttl, "learned a protected address");
                    }
                }
                Err(e) => {
                    tracing::error!(name = %l.name, addr = %ip, error = %e, "cannot protect an answer; SERVFAIL");
                    return answer::servfail(&msg);
                }
            }
        }
        // a new address is on disk before the client has it: a hoopd killed right after
        // still protects it when it comes back
        if grew && let Err(e) = self.node.intercept.save_learned(&self.learned_file) {
            tracing::error!(error = %e, "cannot save the learned DNS addresses");
        }
        Some(answer.to_vec())
    }
}

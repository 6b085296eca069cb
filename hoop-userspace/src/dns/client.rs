//! hoopd's own lookups of exact target names, at start and every `proxy.resolve_interval_s`:
//! A and AAAA queries over marked sockets (never steered into the forwarder, never dropped by
//! the guard) to `dns.resolvers` or the `nameserver`s of /etc/resolv.conf, CNAME chains followed.
//! A name that fails keeps its previous addresses: protection never drops because a resolver
//! hiccuped.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    time::Duration,
};

use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{config::Config, intercept::targets::Resolved};

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
const RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0} is not a DNS name")]
    Name(String),
    #[error("no resolver answered")]
    NoAnswer,
    #[error("resolver said {0}")]
    Rcode(ResponseCode),
}

/// The resolvers hoopd asks: configured, else /etc/resolv.conf's, else 127.0.0.1.
pub fn resolvers(cfg: &Config) -> Vec<SocketAddr> {
    if !cfg.dns.resolvers.is_empty() {
        return cfg.dns.resolvers.clone();
    }
    let text = std::fs::read_to_string(RESOLV_CONF).unwrap_or_default();
    let mut out: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if out.is_empty() {
        out.push("127.0.0.1:53".parse().unwrap());
    }
    out
}

/// Resolves every exact host name of `cfg`'s targets.
pub async fn resolve_hosts(cfg: &Config, previous: &Resolved) -> Resolved {
    let names: BTreeSet<&str> = cfg.targets.iter().flat_map(|t| t.exact_hosts()).collect();
    let servers = resolvers(cfg);
    let mut out = Resolved::new();
    for name in names {
        match lookup(name, &servers, cfg.intercept.mark).await {
            Ok(mut ips) => {
                ips.sort();
                ips.dedup();
                out.insert(name.to_string(), ips);
            }
            Err(e) => {
                let kept = previous.get(name).cloned().unwrap_or_default();
                tracing::warn!(host = name, error = %e, kept = kept.len(), "cannot resolve target host");
                out.insert(name.to_string(), kept);
            }
        }
    }
    out
}

/// A and AAAA of `name`. NXDOMAIN and empty answers are errors.
pub async fn lookup(
    name: &str,
    servers: &[SocketAddr],
    mark: u32,
) -> Result<Vec<IpAddr>, LookupError> {
    let qname = Name::from_str(&format!("{}.", name.trim_end_matches('.')))
        .map_err(|_| LookupError::Name(name.into()))?;
    let mut ips = Vec::new();
    let mut last = LookupError::NoAnswer;
    for rtype in [RecordType::A, RecordType::AAAA] {
        match query(&qname, rtype, servers, mark).await {
            Ok(msg) if msg.metadata.response_code == ResponseCode::NoError => {
                ips.extend(msg.answers.iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                }));
            }
            Ok(msg) => last = LookupError::Rcode(msg.metadata.response_code),
            Err(e) => last = e,
        }
    }
    if ips.is_empty() { Err(last) } else { Ok(ips) }
}

/// One question to the first server that answers (UDP, then TCP when the answer is truncated).
async fn query(
    qname: &Name,
    rtype: RecordType,
    servers: &[SocketAddr],
    mark: u32,
) -> Result<Message, LookupError> {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname.clone(), rtype));
    let bytes = msg
        .to_vec()
        .map_err(|_| LookupError::Name(qname.to_string()))?;
    for server in servers {
        let r = tokio::time::timeout(LOOKUP_TIMEOUT, exchange(&bytes, *server, mark)).await;
        match r {
            Ok(Ok(answer)) => match Message::from_vec(&answer) {
                Ok(a) if a.metadata.id == msg.metadata.id => return Ok(a),
                _ => continue,
            },
            Ok(Err(e)) => tracing::debug!(%server, error = %e, "dns lookup failed"),
            Err(_) => tracing::debug!(%server, "dns lookup timed out"),
        }
    }
    Err(LookupError::NoAnswer)
}

async fn exchange(query: &[u8], server: SocketAddr, mark: u32) -> std::io::Result<Vec<u8>> {
    let sock = super::udp::marked_socket(server, mark)?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = sock.recv(&mut buf).await?;
        if n >= 12 && buf[..2] == query[..2] {
            if buf[2] & 0x02 == 0 {
                buf.truncate(n);
                return Ok(buf);
            }
            break; // truncated: ask again over TCP
        }
    }
    let mut tcp = crate::proxy::upstream::connect(server, mark, LOOKUP_TIMEOUT).await?;
    let mut frame = (query.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(query);
    tcp.write_all(&frame).await?;
    let len = tcp.read_u16().await? as usize;
    let mut answer = vec![0u8; len];
    tcp.read_exact(&mut answer).await?;
    Ok(answer)
}

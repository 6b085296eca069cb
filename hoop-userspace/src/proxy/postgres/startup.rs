//! The startup phase. Client side: answer SSLRequest with `S` and terminate TLS with a node-CA
//! leaf for the name the client asked for (SNI, else the target's name), or take the TLS
//! handshake a PostgreSQL 17+ client opens with directly (`sslnegotiation=direct`, ALPN
//! `postgresql` required as the server requires it); refuse GSSENCRequest with `N`; read the
//! StartupMessage or CancelRequest. Upstream side: SSLRequest and TLS verified against the
//! trusted roots, never weakened (whatever the client chose: every server version takes it).

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::{io::AsyncReadExt, net::TcpStream};

use super::{PgError, Upstream, io};
use crate::{
    proxy::{stream::Stream, upstream},
    tls::NodeCa,
    wire::postgres::{
        StartupPacket,
        backend::{ErrorNotice, Severity},
        startup::{self, ProtocolVersion},
    },
};

pub enum Opening {
    Startup {
        client: Stream,
        /// Forwarded as asked, so a server that does not know it answers NegotiateProtocolVersion.
        version: ProtocolVersion,
        /// StartupMessage parameters, in the client's order.
        params: Vec<(String, String)>,
        /// Bytes the client sent after its StartupMessage (pipelined), not yet consumed.
        buffered: BytesMut,
    },
    Cancel {
        pid: i32,
        secret: Vec<u8>,
        sni: Option<String>,
    },
}

impl Opening {
    pub fn sni(&self) -> Option<&str> {
        match self {
            Self::Startup { client, .. } => client.sni(),
            Self::Cancel { sni, .. } => sni.as_deref(),
        }
    }
}

/// Picks the leaf by SNI, falling back to the name the session was redirected for.
#[derive(Debug)]
struct LeafResolver {
    ca: Arc<NodeCa>,
    default_host: String,
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = hello.server_name().unwrap_or(&self.default_host);
        match self.ca.leaf(host) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(error = %e, "cannot mint a leaf; TLS handshake refused");
                None
            }
        }
    }
}

impl std::fmt::Debug for NodeCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCa")
            .field("cert", &self.cert_path())
            .finish()
    }
}

/// The ALPN protocol of PostgreSQL's direct TLS negotiation.
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// A TLS record's first byte when it carries a handshake message: how a direct TLS connection
/// opens. A startup packet starts with its length's high byte, and no startup packet is near
/// 0x16000000 bytes long, so the two cannot be confused.
const TLS_HANDSHAKE: u8 = 0x16;

/// `direct`: the connection opened with TLS (no SSLRequest), and ALPN `postgresql` is offered
/// and required, as PostgreSQL 17+ does. After an SSLRequest no ALPN is configured: a client
/// offering one gets none back, as from a server before 17, which any client accepts.
fn server_config(
    ca: &Arc<NodeCa>,
    default_host: &str,
    direct: bool,
) -> Result<Arc<ServerConfig>, PgError> {
    let mut cfg = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.into()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(LeafResolver {
            ca: ca.clone(),
            default_host: default_host.to_string(),
        }));
    if direct {
        cfg.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    }
    Ok(Arc::new(cfg))
}

/// Reads the client's opening packets until a StartupMessage or CancelRequest.
pub async fn accept(
    tcp: TcpStream,
    ca: &Arc<NodeCa>,
    default_host: &str,
) -> Result<Opening, PgError> {
    let mut client = if opens_with_tls(&tcp).await? {
        accept_direct(tcp, ca, default_host).await?
    } else {
        Stream::Plain(tcp)
    };
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let Some(n) = io::read_startup(&mut client, &mut buf).await? else {
            return Err(PgError::ClientRefused("closed during startup".into()));
        };
        match io::startup_packet(&buf)? {
            StartupPacket::SslRequest if !client.is_tls() => {
                buf.advance(n);
                if !buf.is_empty() {
                    // bytes after SSLRequest and before the handshake could be injected
                    // plaintext (CVE-2021-23214): refuse, as PostgreSQL does
                    return Err(PgError::ClientRefused("data after SSLRequest".into()));
                }
                io::write_client(&mut client, b"S").await?;
                let Stream::Plain(tcp) = client else {
                    unreachable!()
                };
                let acceptor =
                    tokio_rustls::TlsAcceptor::from(server_config(ca, default_host, false)?);
                let tls = acceptor.accept(tcp).await.map_err(PgError::ClientTls)?;
                client = Stream::ServerTls(Box::new(tls));
            }
            StartupPacket::GssEncRequest if !client.is_tls() => {
                buf.advance(n);
                io::write_client(&mut client, b"N").await?;
            }
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                return Err(PgError::ClientRefused("encryption requested twice".into()));
            }
            StartupPacket::CancelRequest { pid, secret_key } => {
                return Ok(Opening::Cancel {
                    pid,
                    secret: secret_key.to_vec(),
                    sni: client.sni().map(str::to_string),
                });
            }
            StartupPacket::Startup { version, params } => {
                if version.major != 3 {
                    refuse_client(&mut client, "0A000", "unsupported frontend protocol").await;
                    return Err(PgError::ClientRefused(format!(
                        "protocol {}.{}",
                        version.major, version.minor
                    )));
                }
                let params = params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                buf.advance(n);
                return Ok(Opening::Startup {
                    client,
                    version,
                    params,
                    buffered: buf,
                });
            }
        }
    }
}

/// Whether the client's first byte starts a TLS handshake (looked at, not consumed).
async fn opens_with_tls(tcp: &TcpStream) -> Result<bool, PgError> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await.map_err(PgError::ClientIo)?;
    Ok(n == 1 && first[0] == TLS_HANDSHAKE)
}

/// Terminates a direct TLS connection. PostgreSQL refuses one without ALPN `postgresql` (so a
/// client of another protocol sent to its port cannot be mistaken for one of its own), and so
/// does hoopd: a client offering other protocols only fails in the handshake, one offering none
/// gets a FATAL error once TLS is up.
async fn accept_direct(
    tcp: TcpStream,
    ca: &Arc<NodeCa>,
    default_host: &str,
) -> Result<Stream, PgError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(ca, default_host, true)?);
    let tls = acceptor.accept(tcp).await.map_err(PgError::ClientTls)?;
    let alpn = tls.get_ref().1.alpn_protocol() == Some(ALPN_POSTGRESQL);
    let mut client = Stream::ServerTls(Box::new(tls));
    if !alpn {
        let message = "direct TLS connection without ALPN protocol \"postgresql\"";
        refuse_client(&mut client, "08P01", message).await;
        return Err(PgError::ClientRefused(message.into()));
    }
    Ok(client)
}

/// Sends a FATAL ErrorResponse (best effort: the session ends anyway).
pub async fn refuse_client(client: &mut Stream, code: &str, message: &str) {
    let mut out = BytesMut::new();
    let e = ErrorNotice {
        severity: Severity::Fatal,
        code,
        message,
        detail: None,
        hint: None,
    };
    if e.encode_error(&mut out).is_ok() {
        let _ = io::write_client(client, &out).await;
    }
}

/// Connects to the real server with hoopd's mark and negotiates TLS: verified, and required
/// unless the target says `upstream_tls = "prefer"`.
pub async fn connect_upstream(up: &Upstream) -> Result<Stream, PgError> {
    let mut tcp = upstream::connect(up.addr, up.mark, up.connect_timeout)
        .await
        .map_err(|source| PgError::UpstreamConnect {
            addr: up.addr,
            source,
        })?;
    let mut req = BytesMut::new();
    startup::encode_ssl_request(&mut req);
    io::write_server(&mut tcp, &req).await?;
    let answer = tcp.read_u8().await.map_err(PgError::UpstreamIo)?;
    match answer {
        b'S' => {
            let connector = tokio_rustls::TlsConnector::from(up.tls.clone());
            let tls = connector
                .connect(up.server_name.clone(), tcp)
                .await
                .map_err(|source| PgError::UpstreamTls {
                    name: server_name_text(&up.server_name),
                    source,
                })?;
            Ok(Stream::ClientTls(Box::new(tls)))
        }
        b'N' if !up.require_tls => Ok(Stream::Plain(tcp)),
        b'N' => Err(PgError::UpstreamTlsRefused),
        other => Err(PgError::UpstreamAuth(format!(
            "unexpected answer {other:#x} to SSLRequest"
        ))),
    }
}

pub fn server_name_text(n: &rustls_pki_types::ServerName<'_>) -> String {
    match n {
        rustls_pki_types::ServerName::DnsName(d) => d.as_ref().to_string(),
        rustls_pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => "?".into(),
    }
}

//! Credential relay: the client's own credentials reach the real server.
//!
//! - Cleartext (incl. an Entra ID access token used as password) and MD5: the server's request
//!   goes to the client and the client's answer to the server, untouched (MD5 binds nothing to
//!   the transport, so it relays as is).
//! - SCRAM-SHA-256(-PLUS): SCRAM is built to defeat a man in the middle — the client's proof
//!   covers its channel binding, which names *our* leaf, not the server's certificate — so it
//!   cannot be relayed message by message. hoopd asks the client for its password instead
//!   (AuthenticationCleartextPassword, over the client's TLS or loopback; libpq's default
//!   `channel_binding=prefer` accepts this) and runs SCRAM itself against the server, with
//!   channel binding (`tls-server-end-point`) to the upstream TLS whenever the server offers
//!   SCRAM-SHA-256-PLUS. The server's final signature is verified. The password lives only in
//!   memory for the exchange and is wiped after; it is never logged.
//! - A server error (wrong password, unknown database) reaches the client verbatim: the same
//!   error as going direct.

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use sha2::Digest;

use super::{PgContext, PgError, Upstream, cancel, io, startup::refuse_client};
use crate::{
    proxy::stream::Stream,
    wire::postgres::{
        BackendMessage, Direction, Frame,
        backend::{Authentication, BackendKeyData, SaslMechanisms},
        frontend::{AuthResponse, encode_sasl_initial_response, encode_sasl_response},
        startup::{ProtocolVersion, encode_startup},
    },
};

pub struct Start<'a> {
    pub version: ProtocolVersion,
    pub params: &'a [(String, String)],
    pub buffered: BytesMut,
}

pub struct Authed {
    pub client: Stream,
    pub server: Stream,
    /// Unconsumed bytes each side already sent.
    pub client_buf: BytesMut,
    pub server_buf: BytesMut,
    /// Keeps the proxy's cancel key registered for the session's life.
    pub cancel_guard: cancel::Guard,
}

struct Io {
    client: Stream,
    server: Stream,
    cbuf: BytesMut,
    sbuf: BytesMut,
}

impl Io {
    async fn server_frame(&mut self) -> Result<Frame, PgError> {
        io::read_frame(&mut self.server, &mut self.sbuf, Direction::Backend)
            .await?
            .ok_or_else(|| PgError::UpstreamAuth("server closed during authentication".into()))
    }

    async fn client_password_frame(&mut self) -> Result<Frame, PgError> {
        let f = io::read_frame(&mut self.client, &mut self.cbuf, Direction::Frontend)
            .await?
            .ok_or_else(|| PgError::ClientRefused("closed during authentication".into()))?;
        if f.tag() != b'p' {
            return Err(PgError::ClientRefused(format!(
                "expected a password message, got {:?}",
                f.tag() as char
            )));
        }
        Ok(f)
    }
}

/// Sends the StartupMessage and relays authentication up to the first ReadyForQuery.
pub async fn relay(
    ctx: &PgContext,
    client: Stream,
    server: Stream,
    start: Start<'_>,
    up: &Upstream,
) -> Result<Authed, PgError> {
    let mut io = Io {
        client,
        server,
        cbuf: start.buffered,
        sbuf: BytesMut::with_capacity(8192),
    };
    let mut out = BytesMut::new();
    encode_startup(
        &mut out,
        start.version,
        start.params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    io::write_server(&mut io.server, &out).await?;
    let mut mechanism = "trust";
    loop {
        let f = io.server_frame().await?;
        match io::backend(&f)? {
            BackendMessage::Authentication(Authentication::Ok) => {
                io::write_client(&mut io.client, f.wire()).await?;
                tracing::debug!(mechanism, "upstream authenticated");
                break;
            }
            BackendMessage::Authentication(
                a @ (Authentication::CleartextPassword | Authentication::Md5Password { .. }),
            ) => {
                mechanism = if matches!(a, Authentication::CleartextPassword) {
                    "password"
                } else {
                    "md5"
                };
                io::write_client(&mut io.client, f.wire()).await?;
                let answer = io.client_password_frame().await?;
                io::write_server(&mut io.server, answer.wire()).await?;
            }
            BackendMessage::Authentication(Authentication::Sasl(mechs)) => {
                let mechs: Vec<String> = mechs_list(mechs);
                mechanism = scram(&mut io, &mechs).await?;
            }
            BackendMessage::Authentication(_) => {
                refuse_client(
                    &mut io.client,
                    "28000",
                    "hoop: authentication method not supported through hoop",
                )
                .await;
                return Err(PgError::UpstreamAuth(
                    "unsupported authentication method (GSS/SSPI/Kerberos)".into(),
                ));
            }
            BackendMessage::ErrorResponse(e) => {
                io::write_client(&mut io.client, f.wire()).await?;
                return Err(PgError::UpstreamAuth(format!(
                    "{} {}",
                    e.code().unwrap_or("?"),
                    e.get(b'M').unwrap_or("")
                )));
            }
            BackendMessage::NegotiateProtocolVersion(_) | BackendMessage::NoticeResponse(_) => {
                io::write_client(&mut io.client, f.wire()).await?;
            }
            _ => {
                return Err(PgError::UpstreamAuth(format!(
                    "unexpected message {:?} during authentication",
                    f.tag() as char
                )));
            }
        }
    }
    let guard = after_auth(ctx, &mut io, up).await?;
    Ok(Authed {
        client: io.client,
        server: io.server,
        client_buf: io.cbuf,
        server_buf: io.sbuf,
        cancel_guard: guard,
    })
}

fn mechs_list(m: SaslMechanisms<'_>) -> Vec<String> {
    m.iter().map(str::to_string).collect()
}

/// ParameterStatus…, BackendKeyData (replaced by the proxy's own key), ReadyForQuery.
async fn after_auth(ctx: &PgContext, io: &mut Io, up: &Upstream) -> Result<cancel::Guard, PgError> {
    let mut out = BytesMut::with_capacity(1024);
    let mut guard = None;
    loop {
        let f = io.server_frame().await?;
        match io::backend(&f)? {
            BackendMessage::BackendKeyData(k) => {
                let g = ctx.cancels.register(k.pid, k.secret_key, up);
                BackendKeyData {
                    pid: g.pid,
                    secret_key: &g.secret,
                }
                .encode(&mut out)?;
                guard = Some(g);
            }
            BackendMessage::ReadyForQuery(_) => {
                out.extend_from_slice(f.wire());
                io::write_client(&mut io.client, &out).await?;
                return Ok(guard.unwrap_or_else(cancel::Guard::none));
            }
            BackendMessage::ErrorResponse(e) => {
                out.extend_from_slice(f.wire());
                io::write_client(&mut io.client, &out).await?;
                return Err(PgError::UpstreamAuth(format!(
                    "{} {}",
                    e.code().unwrap_or("?"),
                    e.get(b'M').unwrap_or("")
                )));
            }
            _ => out.extend_from_slice(f.wire()),
        }
    }
}

/// Runs SCRAM against the server with the password the client gives us; the mechanism used.
async fn scram(io: &mut Io, mechs: &[String]) -> Result<&'static str, PgError> {
    let has = |m: &str| mechs.iter().any(|x| x == m);
    let plus = if has("SCRAM-SHA-256-PLUS") {
        io.server.peer_certificate().map(end_point_hash)
    } else {
        None
    };
    if plus.is_none() && !has("SCRAM-SHA-256") {
        refuse_client(
            &mut io.client,
            "28000",
            "hoop: no supported SASL mechanism offered by the server",
        )
        .await;
        return Err(PgError::UpstreamAuth(format!(
            "SASL mechanisms {mechs:?} not supported"
        )));
    }
    let mut out = BytesMut::new();
    Authentication::CleartextPassword.encode(&mut out)?;
    io::write_client(&mut io.client, &out).await?;
    let answer = io.client_password_frame().await?;
    let mut password: Vec<u8> = AuthResponse(answer.body())
        .password()
        .map_err(PgError::ClientProtocol)?
        .as_bytes()
        .to_vec();
    drop(answer); // the frame shares the read buffer; the copy above is wiped below
    let (mechanism, binding) = match plus {
        Some(Ok(hash)) => (
            "SCRAM-SHA-256-PLUS",
            ChannelBinding::tls_server_end_point(hash),
        ),
        Some(Err(e)) => {
            return Err(PgError::UpstreamAuth(format!(
                "server certificate for channel binding: {e}"
            )));
        }
        None if io.server.is_tls() => ("SCRAM-SHA-256", ChannelBinding::unsupported()),
        None => ("SCRAM-SHA-256", ChannelBinding::unrequested()),
    };
    let mut sc = ScramSha256::new(&password, binding);
    password.iter_mut().for_each(|b| *b = 0);
    out.clear();
    encode_sasl_initial_response(&mut out, mechanism, Some(sc.message()))?;
    io::write_server(&mut io.server, &out).await?;
    let f = io.server_frame().await?;
    match io::backend(&f)? {
        BackendMessage::Authentication(Authentication::SaslContinue(d)) => sc
            .update(d)
            .map_err(|e| PgError::UpstreamAuth(format!("SCRAM server-first: {e}")))?,
        BackendMessage::ErrorResponse(_) => return forward_error(io, &f).await.map(|_| mechanism),
        _ => {
            return Err(PgError::UpstreamAuth(
                "unexpected message after SASLInitialResponse".into(),
            ));
        }
    }
    out.clear();
    encode_sasl_response(&mut out, sc.message())?;
    io::write_server(&mut io.server, &out).await?;
    let f = io.server_frame().await?;
    match io::backend(&f)? {
        BackendMessage::Authentication(Authentication::SaslFinal(d)) => {
            sc.finish(d)
                .map_err(|e| PgError::UpstreamAuth(format!("SCRAM server signature: {e}")))?;
            Ok(mechanism)
        }
        BackendMessage::ErrorResponse(_) => forward_error(io, &f).await.map(|_| mechanism),
        _ => Err(PgError::UpstreamAuth(
            "unexpected message after SASLResponse".into(),
        )),
    }
}

async fn forward_error(io: &mut Io, f: &Frame) -> Result<(), PgError> {
    io::write_client(&mut io.client, f.wire()).await?;
    let msg = match io::backend(f)? {
        BackendMessage::ErrorResponse(e) => {
            format!("{} {}", e.code().unwrap_or("?"), e.get(b'M').unwrap_or(""))
        }
        _ => String::new(),
    };
    Err(PgError::UpstreamAuth(msg))
}

/// RFC 5929 tls-server-end-point: the certificate hashed with its signature's hash, SHA-256
/// when that is MD5 or SHA-1.
fn end_point_hash(cert_der: &[u8]) -> Result<Vec<u8>, String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(cert_der).map_err(|e| e.to_string())?;
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    Ok(match oid.as_str() {
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => sha2::Sha384::digest(cert_der).to_vec(),
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => sha2::Sha512::digest(cert_der).to_vec(),
        _ => sha2::Sha256::digest(cert_der).to_vec(),
    })
}

//! HTTPS GET/POST of small JSON documents (discovery, JWKS, token requests): hyper 1's HTTP/1.1
//! client connection over tokio-rustls with our verifying rustls configuration.
//!
//! Why not reqwest: it would bring a second TLS stack configuration path (its own root handling,
//! proxy variables read from hoopd's environment, connection pooling, redirects) for three kinds
//! of one-shot requests. Here the only trust is `tls::upstream_config` (system roots plus the
//! configured CA, never weakened), redirects are not followed (a token endpoint that redirects is
//! an error), bodies are capped, and there is no environment-driven behaviour. hyper does the
//! HTTP/1.1 framing (chunked, content-length, keep-alive) which we do not hand-write.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Uri, header};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

/// Discovery documents, key sets and token responses are a few KiB.
const MAX_BODY: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bad URL {0:?}")]
    Url(String),
    #[error("{host}: cannot resolve: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{host}: connect: {reason}")]
    Connect { host: String, reason: String },
    #[error("{host}: TLS: {reason}")]
    Tls { host: String, reason: String },
    #[error("{host}: HTTP: {reason}")]
    Http { host: String, reason: String },
    #[error("{host}: status {status}")]
    Status { host: String, status: u16 },
    #[error("{host}: response is not the expected JSON: {reason}")]
    Json { host: String, reason: String },
}

/// What to send.
pub struct Req<'a> {
    pub method: Method,
    pub url: &'a str,
    /// `Authorization: Bearer …` (never logged).
    pub bearer: Option<&'a str>,
}

/// Sends `req` over verified TLS and parses a JSON response of a 2xx status.
pub async fn json(
    tls: &Arc<ClientConfig>,
    req: Req<'_>,
    timeout: Duration,
) -> Result<serde_json::Value, FetchError> {
    let uri: Uri = req
        .url
        .parse()
        .map_err(|_| FetchError::Url(redact_query(req.url)))?;
    if uri.scheme_str() != Some("https") {
        return Err(FetchError::Url(redact_query(req.url)));
    }
    let host = uri
        .host()
        .ok_or_else(|| FetchError::Url(redact_query(req.url)))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let io = tokio::time::timeout(timeout, connect(tls, &host, port))
        .await
        .map_err(|_| FetchError::Connect {
            host: host.clone(),
            reason: format!("timed out after {} ms", timeout.as_millis()),
        })??;
    let http_err = |reason: String| FetchError::Http {
        host: host.clone(),
        reason,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| http_err(e.to_string()))?;
    let _driver = Driver(tokio::spawn(conn));
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let mut b = Request::builder()
        .method(req.method)
        .uri(path)
        .header(header::HOST, authority)
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("hoopd/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(t) = req.bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let request = b
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| http_err(e.to_string()))?;
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| http_err(e.to_string()))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            host,
            status: status.as_u16(),
        });
    }
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| http_err(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| FetchError::Json {
        host,
        reason: e.to_string(),
    })
}

/// The connection's task, ended with the request (also when the caller's timeout drops it).
struct Driver(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn connect(
    tls: &Arc<ClientConfig>,
    host: &str,
    port: u16,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, FetchError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| FetchError::Resolve {
            host: host.into(),
            reason: e.to_string(),
        })?
        .collect();
    let mut last = String::from("no address");
    let mut tcp = None;
    for a in addrs {
        // Unmarked on purpose: hoopd fetches keys and tokens as an ordinary process, so a URL
        // that points at a protected endpoint gets no path around the redirect and the guard.
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    let tcp = tcp.ok_or_else(|| FetchError::Connect {
        host: host.into(),
        reason: last,
    })?;
    let name = ServerName::try_from(host.to_string()).map_err(|e| FetchError::Tls {
        host: host.into(),
        reason: e.to_string(),
    })?;
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| FetchError::Tls {
            host: host.into(),
            reason: e.to_string(),
        })
}

/// A URL for messages: scheme, host and path only (queries may carry run identifiers).
pub fn redact_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or("").to_string()
}

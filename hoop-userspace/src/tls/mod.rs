//! TLS on both sides of a session: the node CA that mints a leaf for the host name the client
//! asked for, and upstream client configurations that always verify the server (system roots plus
//! an optional configured CA; there is no switch to weaken this).

mod ca;

use std::{path::Path, sync::Arc};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, pem::PemObject};

pub use ca::{CA_CERT_FILE, NodeCa};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("node CA in {path}: {source}")]
    CaIo {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("node CA: {0}")]
    CaCert(#[from] rcgen::Error),
    #[error("leaf for {host}: {reason}")]
    Leaf { host: String, reason: String },
    #[error("upstream CA file {path}: {reason}")]
    UpstreamCa {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("no trusted roots: the system store is empty and no upstream CA is configured")]
    NoRoots,
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// System roots (loaded once per call; callers cache the resulting config per target).
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "while loading system trust roots");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!(added, ignored, "system roots loaded");
    }
    roots
}

/// A client configuration for one upstream: the system roots plus `extra_ca` (PEM, may hold
/// several certificates). Server name and certificate are always verified.
pub fn upstream_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = system_roots();
    if let Some(path) = extra_ca {
        let err = |reason: String| TlsError::UpstreamCa {
            path: path.to_path_buf(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no certificate in file".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| err(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

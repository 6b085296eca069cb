//! The node CA: generated on first start under `<state>/ca/` (key 0600, certificate 0644 so users
//! can hand it to verify-full clients), and the leaves it mints per host name, cached.

use std::{
    collections::HashMap,
    fs,
    io::Write,
    net::IpAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::TlsError;

/// The CA certificate, relative to the state directory.
pub const CA_CERT_FILE: &str = "ca/ca.crt";
const CA_KEY_FILE: &str = "ca/ca.key";
/// Leaves live a week and are re-minted a day before they expire.
const LEAF_LIFETIME: Duration = Duration::days(7);
const LEAF_RENEW_BEFORE: Duration = Duration::days(1);
/// Bound on cached leaves (host names are the configured and the asked-for ones).
const LEAF_CACHE_MAX: usize = 4096;

pub struct NodeCa {
    cert: Certificate,
    key: KeyPair,
    cert_path: PathBuf,
    leaves: Mutex<HashMap<String, (Arc<CertifiedKey>, OffsetDateTime)>>,
}

impl NodeCa {
    /// Loads the CA from `state_dir/ca`, generating it on first start.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, TlsError> {
        let (cert_path, key_path) = (state_dir.join(CA_CERT_FILE), state_dir.join(CA_KEY_FILE));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::CaIo { path, source }
        };
        if !key_path.exists() {
            let dir = cert_path.parent().unwrap();
            fs::create_dir_all(dir).map_err(io(dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(io(dir))?;
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write_file(&key_path, key.serialize_pem().as_bytes(), 0o600).map_err(io(&key_path))?;
            write_file(&cert_path, cert.pem().as_bytes(), 0o644).map_err(io(&cert_path))?;
            tracing::info!(cert = %cert_path.display(), "generated the node CA");
        }
        let mode = fs::metadata(&key_path)
            .map_err(io(&key_path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(TlsError::CaIo {
                path: key_path,
                source: std::io::Error::other(format!(
                    "mode {:o}: the CA key must not be readable by others",
                    mode & 0o777
                )),
            });
        }
        let key = KeyPair::from_pem(&fs::read_to_string(&key_path).map_err(io(&key_path))?)?;
        let pem = fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        // Re-deriving the issuer from the stored certificate's parameters and key yields the
        // same subject and key identifier, which is all a leaf's chain depends on.
        let cert = CertificateParams::from_ca_cert_pem(&pem)?.self_signed(&key)?;
        Ok(Self {
            cert,
            key,
            cert_path,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The leaf for `host` (a DNS name or an IP address), minted on first use and cached.
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        let now = OffsetDateTime::now_utc();
        let mut cache = self.leaves.lock().unwrap();
        if let Some((ck, expires)) = cache.get(host)
            && *expires - LEAF_RENEW_BEFORE > now
        {
            return Ok(ck.clone());
        }
        let (ck, expires) = self.mint(host, now)?;
        if cache.len() >= LEAF_CACHE_MAX {
            cache.clear();
        }
        cache.insert(host.to_string(), (ck.clone(), expires));
        Ok(ck)
    }

    fn mint(
        &self,
        host: &str,
        now: OffsetDateTime,
    ) -> Result<(Arc<CertifiedKey>, OffsetDateTime), TlsError> {
        let err = |reason: String| TlsError::Leaf {
            host: host.to_string(),
            reason,
        };
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.try_into()
                    .map_err(|e: rcgen::Error| err(e.to_string()))?,
            ),
        }];
        p.distinguished_name.push(DnType::CommonName, host);
        p.not_before = now - Duration::hours(1);
        let expires = now + LEAF_LIFETIME;
        p.not_after = expires;
        p.use_authority_key_identifier_extension = true;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(|e| err(e.to_string()))?;
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .map_err(|e| err(e.to_string()))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = super::provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| err(e.to_string()))?;
        Ok((
            Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)),
            expires,
        ))
    }
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "hoop node CA");
    p.distinguished_name.push(DnType::OrganizationName, "hoop");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(3650);
    p
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;

    use super::*;

    /// A fresh directory, removed when the guard drops.
    fn tmp(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("hoop-ca-{name}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn creates_once_with_private_key_mode_and_reloads() {
        let dir = tmp("create");
        let d = dir.path();
        let ca = NodeCa::load_or_create(d).unwrap();
        let key_mode = fs::metadata(d.join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(key_mode, 0o600);
        let pem1 = fs::read_to_string(ca.cert_path()).unwrap();
        drop(ca);
        let ca2 = NodeCa::load_or_create(d).unwrap();
        assert_eq!(
            pem1,
            fs::read_to_string(ca2.cert_path()).unwrap(),
            "CA must not be regenerated"
        );
        fs::set_permissions(d.join(CA_KEY_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            NodeCa::load_or_create(d).is_err(),
            "a world-readable key is refused"
        );
    }

    #[test]
    fn leaves_verify_against_the_stored_ca_and_are_cached() {
        let dir = tmp("leaf");
        let d = dir.path();
        drop(NodeCa::load_or_create(d).unwrap());
        // leaves minted by a reloaded issuer must chain to the certificate stored at creation
        let ca = NodeCa::load_or_create(d).unwrap();
        let leaf = ca.leaf("db1.postgres.database.azure.com").unwrap();
        assert!(Arc::ptr_eq(
            &leaf,
            &ca.leaf("db1.postgres.database.azure.com").unwrap()
        ));
        let mut roots = rustls::RootCertStore::empty();
        let pem = fs::read(ca.cert_path()).unwrap();
        use rustls_pki_types::pem::PemObject;
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            super::super::provider(),
        )
        .build()
        .unwrap();
        let now = rustls_pki_types::UnixTime::now();
        for (host, name) in [
            (
                "db1.postgres.database.azure.com",
                "db1.postgres.database.azure.com",
            ),
            ("127.0.0.2", "127.0.0.2"),
        ] {
            let leaf = ca.leaf(host).unwrap();
            let sn = rustls_pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&leaf.cert[0], &[], &sn, &[], now)
                .unwrap();
        }
        let other = rustls_pki_types::ServerName::try_from("other.example.com").unwrap();
        assert!(
            verifier
                .verify_server_cert(&leaf.cert[0], &[], &other, &[], now)
                .is_err()
        );
    }
}

//! The HTTPS server's rustls configuration: the ring provider only, TLS 1.3
//! and 1.2, HTTP/1.1. Without a configured certificate a self-signed one is
//! made with rcgen on first start and reused afterwards. The certificate
//! is served through [`LiveCert`], so a reload (SIGHUP, for renewals)
//! swaps it under running listeners.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};

use crate::config::Settings;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("TLS set-up: {0}")]
    Setup(String),
}

pub struct TlsMaterial {
    pub config: Arc<ServerConfig>,
    /// The certificate `config` presents, replaced by [`LiveCert::reload`].
    pub live: Arc<LiveCert>,
    /// SHA-256 of the leaf certificate, `AA:BB:…`, for installers to pin.
    pub fingerprint: String,
    pub cert_path: PathBuf,
    pub self_signed_created: bool,
    pub dns_name: Option<String>,
}

pub fn load_or_create(settings: &Settings) -> Result<TlsMaterial, TlsError> {
    let (cert_path, key_path) = cert_and_key_paths(settings);
    let created = if (settings.tls_cert.is_some() && settings.tls_key.is_some()) || (cert_path.exists() && key_path.exists()) {
        false
    } else {
        create_self_signed(&settings.data_dir.join("tls"), &cert_path, &key_path)?;
        true
    };
    build(settings, cert_path, key_path, created)
}

/// The certificate and key files: the operator's, else the self-signed
/// pair in the data directory.
fn cert_and_key_paths(settings: &Settings) -> (PathBuf, PathBuf) {
    match (&settings.tls_cert, &settings.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = settings.data_dir.join("tls");
            (dir.join("cert.pem"), dir.join("key.pem"))
        }
    }
}

/// What `autoprov check-config` says of TLS: the certificate and key (and
/// the device-certificate CAs) load and fit together, without making the
/// self-signed pair when it is not there yet. The text names what was
/// checked.
pub fn check(settings: &Settings) -> Result<String, TlsError> {
    let (cert_path, key_path) = cert_and_key_paths(settings);
    let operators = settings.tls_cert.is_some() && settings.tls_key.is_some();
    if !(operators || (cert_path.exists() && key_path.exists())) {
        return Ok("TLS: a self-signed certificate will be made at first start".into());
    }
    let material = build(settings, cert_path, key_path, false)?;
    Ok(format!("TLS: {} (SHA-256 {})", material.cert_path.display(), material.fingerprint))
}

fn build(settings: &Settings, cert_path: PathBuf, key_path: PathBuf, created: bool) -> Result<TlsMaterial, TlsError> {
    let (key, certs) = certified_key(&cert_path, &key_path)?;
    let fingerprint = fingerprint(&certs[0]);
    let dns_name = first_dns_name(&certs[0]);
    let live = Arc::new(LiveCert { current: ArcSwap::from_pointee(key), cert_path: cert_path.clone(), key_path });
    let builder = ServerConfig::builder_with_provider(crate::crypto::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(device_cert_verifier(path)?),
    };
    let mut config = builder.with_cert_resolver(live.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    // Phones open a connection per file: let them resume (stateless tickets,
    // and a session cache for TLS 1.2 clients without ticket support) rather
    // than pay a full handshake each time. Both outlive certificate reloads.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Setup(e.to_string()))?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    // One ticket a handshake, not rustls's default two: a phone resumes with
    // one, and fetches its next file over a new connection that brings a
    // fresh one. Each ticket costs both ends an encryption and a record.
    config.send_tls13_tickets = 1;
    Ok(TlsMaterial { config: Arc::new(config), live, fingerprint, cert_path, self_signed_created: created, dns_name })
}

/// The server certificate and key, swapped whole by [`LiveCert::reload`]:
/// handshakes after a reload present the new pair, connections already up
/// keep theirs, and resumption keeps working across it.
#[derive(Debug)]
pub struct LiveCert {
    current: ArcSwap<CertifiedKey>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl LiveCert {
    /// Reads the certificate and key files again. On any error (unreadable,
    /// not PEM, a key that does not match the certificate) the pair in use
    /// stays. Returns the new leaf's fingerprint.
    pub fn reload(&self) -> Result<String, TlsError> {
        let (key, certs) = certified_key(&self.cert_path, &self.key_path)?;
        self.current.store(Arc::new(key));
        Ok(fingerprint(&certs[0]))
    }
}

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The chain and key of the files, checked to belong together.
fn certified_key(cert_path: &Path, key_path: &Path) -> Result<(CertifiedKey, Vec<CertificateDer<'static>>), TlsError> {
    let certs = read_certs(cert_path)?;
    let key = read_key(key_path)?;
    let key_err = |reason: String| TlsError::File { path: key_path.to_path_buf(), reason };
    let signing = crate::crypto::provider().key_provider.load_private_key(key).map_err(|e| key_err(e.to_string()))?;
    let certified = CertifiedKey::new(certs.clone(), signing);
    certified.keys_match().map_err(|e| key_err(format!("does not match the certificate {}: {e}", cert_path.display())))?;
    Ok((certified, certs))
}

/// Asks every HTTPS client for a certificate and verifies one against the
/// vendors' device-issuing CAs, but lets clients without one in (the API,
/// the admin UI, phones that prove themselves otherwise).
fn device_cert_verifier(path: &Path) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let err = |reason: String| TlsError::File { path: path.to_path_buf(), reason };
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| err(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pem" || e == "crt"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut roots = rustls::RootCertStore::empty();
    for file in &files {
        for cert in read_certs(file)? {
            roots.add(cert).map_err(|e| TlsError::File { path: file.clone(), reason: e.to_string() })?;
        }
    }
    if roots.is_empty() {
        return Err(err("no CA certificate found (a PEM file, or a directory of .pem/.crt files)".into()));
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::crypto::provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| err(e.to_string()))
}

/// The certificate's first DNS name (not a wildcard): the host phones that
/// came by address are sent to when they are told to use HTTPS.
fn first_dns_name(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::DNSName(name) if !name.contains('*') && crate::model::validate_host("tls", name).is_ok() => {
            Some(name.to_string())
        }
        _ => None,
    })
}

fn create_self_signed(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let err = |path: &Path, e: &dyn std::fmt::Display| TlsError::File { path: path.to_path_buf(), reason: e.to_string() };
    crate::files::private_dir(dir).map_err(|e| err(dir, &e))?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && !names.iter().any(|n| n == host) {
            names.push(host.to_string());
        }
    }
    let cert = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Setup(e.to_string()))?;
    crate::files::write_private(key_path, cert.key_pair.serialize_pem().as_bytes()).map_err(|e| err(key_path, &e))?;
    std::fs::write(cert_path, cert.cert.pem()).map_err(|e| err(cert_path, &e))?;
    Ok(())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::File { path: path.to_path_buf(), reason };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<Vec<_>, _>>().map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let err = |reason: String| TlsError::File { path: path.to_path_buf(), reason };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("no PRIVATE KEY block found".into()))
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::for_data_dir(dir.path());
        let first = load_or_create(&settings).unwrap();
        assert!(first.self_signed_created);
        let second = load_or_create(&settings).unwrap();
        assert!(!second.self_signed_created);
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        assert_eq!(first.dns_name.as_deref(), Some("localhost"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls/key.pem")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_reload_swaps_the_pair_and_a_bad_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::for_data_dir(dir.path());
        let tls = load_or_create(&settings).unwrap();
        let (cert, key) = (dir.path().join("tls/cert.pem"), dir.path().join("tls/key.pem"));
        let old_key = std::fs::read(&key).unwrap();
        // A renewal: a new pair written over the old files.
        let renewed = rcgen::generate_simple_self_signed(vec!["renewed.example".to_string()]).unwrap();
        std::fs::write(&cert, renewed.cert.pem()).unwrap();
        std::fs::write(&key, renewed.key_pair.serialize_pem()).unwrap();
        let new_fp = tls.live.reload().unwrap();
        assert_ne!(new_fp, tls.fingerprint);
        assert_eq!(new_fp, fingerprint(&renewed.cert.der().clone()));
        // Half a renewal: the old key beside the new certificate is refused,
        // and the renewed pair stays in use.
        std::fs::write(&key, &old_key).unwrap();
        let err = tls.live.reload().unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        std::fs::write(&cert, "garbage").unwrap();
        assert!(tls.live.reload().unwrap_err().to_string().contains("CERTIFICATE"));
        let served = tls.live.current.load_full();
        assert_eq!(fingerprint(&served.cert[0]), new_fp);
    }

    #[test]
    fn a_broken_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::for_data_dir(dir.path());
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "garbage").unwrap();
        settings.tls_cert = Some(bad.clone());
        settings.tls_key = Some(bad);
        let err = load_or_create(&settings).err().unwrap().to_string();
        assert!(err.contains("bad.pem") && err.contains("CERTIFICATE"), "{err}");
    }
}

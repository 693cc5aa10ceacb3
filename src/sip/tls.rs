//! SIP over TLS (RFC 3261 §26.3.1, RFC 5630) to a registrar: the registrar's
//! certificate is checked against the public roots (webpki) and any CA the
//! operator adds (`sip_tls_ca`), for the name the relay is configured by.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::SipError;

/// The TLS client of every SIP-over-TLS connection. Cheap to share.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

impl TlsClient {
    /// Trusting the public roots, and the PEM certificates in `extra_ca`.
    pub fn new(extra_ca: Option<&Path>) -> Result<Self, SipError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            let pem = std::fs::read(path).map_err(|e| SipError::Tls(format!("{}: {e}", path.display())))?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| SipError::Tls(format!("{}: {e}", path.display())))?;
                roots.add(cert).map_err(|e| SipError::Tls(format!("{}: {e}", path.display())))?;
                added += 1;
            }
            if added == 0 {
                return Err(SipError::Tls(format!("{}: no PEM certificate in it", path.display())));
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(crate::crypto::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| SipError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient { connector: TlsConnector::from(Arc::new(config)) })
    }

    /// The TLS session over `stream`, the peer's certificate checked for
    /// `name` (a host name or an IP address).
    pub async fn connect(&self, stream: TcpStream, name: &str) -> Result<TlsStream<TcpStream>, SipError> {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let server_name =
            ServerName::try_from(bare.to_string()).map_err(|_| SipError::Tls(format!("{name}: not a host name")))?;
        self.connector.connect(server_name, stream).await.map_err(|e| SipError::Tls(format!("{name}: {e}")))
    }
}

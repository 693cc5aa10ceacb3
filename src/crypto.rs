//! The one rustls crypto provider every TLS connection uses, ours as a
//! server and ours as a client (webhooks): ring only (mixing ring and
//! aws-lc-rs panics at the first config builder).

use std::sync::Arc;

/// The ring provider, the only one this crate compiles in, with the AES-128
/// suites first: a phone opens a connection per file, and the SHA-384 key
/// schedule of the AES-256 suites cost an eighth of the server's CPU in a
/// handshake storm (no SHA-512 instructions), for no security a config
/// download needs.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ];
    Arc::new(provider)
}

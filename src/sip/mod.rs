//! The small part of SIP (RFC 3261) that autoprov needs: telling a phone to
//! re-fetch its configuration with an out-of-dialog `NOTIFY` (`Event:
//! check-sync`, `resync`, …) and answering the phone's digest challenge.
//!
//! This module knows nothing of the database or of handsets: the push worker
//! gives it an address, an extension, an event and optional credentials, and
//! gets back what the phone answered.
//!
//! - [`message`]: build the `NOTIFY` request; parse responses from a UDP
//!   datagram or a TCP stream (Content-Length framing), robust to garbage.
//! - [`digest`]: parse `WWW-Authenticate`/`Proxy-Authenticate` challenges and
//!   compute the `Authorization` answer (MD5, SHA-256, their `-sess`
//!   variants; `qop=auth` or none).
//! - [`transaction`]: RFC 3261 §17.1.2 non-INVITE client transactions: over
//!   UDP from one shared socket ([`UdpEndpoint`], whose receive loop dispatches
//!   responses by Via branch and counts what it drops) with Timer E/F
//!   retransmission, and over TCP (no retransmission, Timer F still applies).
//! - [`notify`]: [`send_notify`], the one call the rest of autoprov uses:
//!   NOTIFY, answer at most one 401/407 challenge, report the final outcome.
//!
//! Deliberately absent: dialogs, INVITE, server transactions (requests that
//! reach our socket are counted and dropped), DNS (targets are IP addresses),
//! TLS to phones (only to registrars), `qop=auth-int` and `userhash`.

pub mod digest;
pub mod message;
pub mod notify;
pub mod tls;
pub mod transaction;

pub use digest::{Algorithm, Challenge};
pub use message::{NotifyRequest, Response, MAX_MESSAGE_LEN};
pub use notify::{send_notify, Credentials, NotifyOutcome, NotifyParams};
pub use tls::TlsClient;
pub use transaction::{EndpointStats, Timers, Transactions, UdpEndpoint};

use std::net::SocketAddr;

/// How a request travels to the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// TCP with TLS (to registrars).
    Tls,
}

impl Transport {
    /// The transport token used in a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// Everything that can go wrong in this module. The push worker records the
/// `Display` text as the push's last error, so messages name the cause.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    /// A value given by the caller would not make a valid (or safe) header.
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: &'static str, reason: &'static str },
    /// Bytes that are not a well-formed SIP message.
    #[error("malformed SIP message: {0}")]
    Malformed(&'static str),
    /// A message that ends before its headers or its Content-Length body do.
    #[error("truncated SIP message")]
    Incomplete,
    /// More than [`MAX_MESSAGE_LEN`] bytes.
    #[error("SIP message larger than {MAX_MESSAGE_LEN} bytes")]
    TooLarge,
    /// A well-formed request where a response was expected.
    #[error("a SIP request, not a response")]
    NotAResponse,
    /// A 401/407 challenge we cannot answer (unknown algorithm, missing nonce…).
    #[error("cannot answer digest challenge: {0}")]
    Challenge(String),
    #[error("TCP connect to {0} timed out")]
    ConnectTimeout(SocketAddr),
    #[error("connection closed by the phone before a final response")]
    ConnectionClosed,
    /// The UDP endpoint's receive loop is gone (runtime shutting down).
    #[error("SIP endpoint closed")]
    EndpointClosed,
    #[error("SIP I/O: {0}")]
    Io(#[from] std::io::Error),
    /// TLS could not be set up or the peer's certificate was refused.
    #[error("SIP over TLS: {0}")]
    Tls(String),
}

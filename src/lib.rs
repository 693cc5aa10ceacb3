//! autoprov: a provisioning server for SIP desk phones.
//!
//! Module map (each module does one job):
//!
//! - [`cli`]: the `autoprov` command line: `serve` and the admin commands.
//! - [`config`]: one [`config::Settings`] from defaults < TOML file <
//!   `AUTOPROV_*` environment < flags.
//! - [`model`]: handsets, domains, users, status, MAC addresses and secrets:
//!   types and validation, no I/O.
//! - [`store`]: the sqlx pool over SQLite or PostgreSQL, migrations, and the
//!   queries of each table; every write audits, feeds the config-change feed
//!   and queues its push in its own transaction.
//! - [`api`]: the Jingl-compatible REST API (HTTPS only), its Basic auth,
//!   tenant scoping, error mapping, and its OpenAPI document.
//! - [`admin`]: the admin web UI at `/admin` (HTTPS only): askama pages
//!   over the same store calls and rules as the API, with login sessions
//!   and a CSRF token on every form.
//! - [`handset_csv`]: handsets as CSV for installers (import validation,
//!   export).
//! - [`guard`]: bounded strike tables that ban keys (users, IPs) that fail
//!   too often, and the provisioning scan guard that counts distinct misses.
//! - [`client`]: who sent a request: client IP and TLS, believing
//!   `X-Forwarded-*` only from trusted proxies.
//! - [`profiles`]: vendor profiles (`vendor-profiles/*.toml`), request
//!   identification from file name and User-Agent, and the MACs a device
//!   certificate names.
//! - [`render`]: the askama templates of each vendor and their contexts.
//! - [`password`]: argon2 hashes of API user passwords.
//! - [`provision`]: serving phones: identify → who may have the file (device
//!   certificate, device credentials, the tenant's token) → cached phone
//!   record → render → record the fetch, behind the HTTP(S) front end
//!   (`provision::http`).
//! - [`push`]: the push worker: outbox → SIP NOTIFY (direct, or relayed
//!   through Asterisk AMI or a signed webhook) with retries, pacing and
//!   outcomes.
//! - [`sip`]: the small SIP we need (RFC 3261): build NOTIFY, parse
//!   responses, answer digest challenges; UDP (one shared socket) and TCP.
//! - [`tftp`]: the read-only TFTP front end (options, windows, netascii).
//! - [`tls`]: rustls server config (ring provider), self-signed bootstrap,
//!   device-certificate verification against the vendors' CAs.
//! - [`bootstrap`]: the default domain and superuser of a fresh database.
//! - [`http_listener`]: HTTP/1.1 and HTTPS accept loops (`SO_REUSEPORT`, one
//!   per core) on hyper, with graceful shutdown.
//! - [`server`]: wiring of listeners and workers, and graceful shutdown.

pub mod admin;
pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod files;
pub mod guard;
pub mod handset_csv;
pub mod http_listener;
pub mod model;
pub mod profiles;
pub mod provision;
pub mod push;
pub mod render;
pub mod server;
pub mod service;
pub mod sip;
pub mod store;
pub mod tftp;
pub mod tls;

#[cfg(test)]
mod tidy;

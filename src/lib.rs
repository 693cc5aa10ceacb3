//! autoprov: a provisioning server for SIP desk phones.
//!
//! Layers, lowest first (ARCHITECTURE.md; `tidy` enforces that imports
//! point down): records (`model`, and the leaf tools `files`, `limits`,
//! `crypto`, `metrics`) < storage (`store`) < knowledge (`guard`, `sip`,
//! `render`, `profiles`, `push`) < operations (`auth`, `service`,
//! `provision`, `bootstrap`) < front ends (`client`,
//! `config`, `handset_csv`, `tls`, `http_listener`, `api`,
//! `provision::http`, `tftp`, `monitoring`, `admin`, `server`, `cli`).
//!
//! Module map (each module does one job):
//!
//! - [`cli`]: the `autoprov` command line: `serve` and the admin commands.
//! - [`config`]: every setting declared once: [`config::SettingsArgs`] from
//!   defaults < TOML file < `AUTOPROV_*` environment < flags, resolved into
//!   [`config::Settings`].
//! - [`model`]: handsets (with the one `HandsetInput` every front end
//!   reads), domains, users, status, push states, MAC addresses and
//!   secrets: types and validation, no I/O.
//! - [`store`]: the sqlx pool over SQLite or PostgreSQL, migrations, and the
//!   queries of each table; every write audits, feeds the config-change feed
//!   and queues its push in its own transaction. `store::notices` hears
//!   other nodes' commits (PostgreSQL `LISTEN`); `store::outage` tells an
//!   outage from a bad query and backs workers off while it lasts.
//! - [`auth`]: API users' passwords and login limits, the caller of an
//!   operation with its domain, and the role rules.
//! - [`service`]: the operations (handset changes, claims, unknown-device
//!   scope, import and its queue, domain changes, registrars' reports of
//!   registrations, call-control actions) with their rules and audit, for
//!   the API, the UI and the CLI alike.
//! - [`api`]: the Jingl-compatible REST API (HTTPS only): its JSON wire
//!   types, Basic auth, error mapping, and its OpenAPI document.
//! - [`admin`]: the admin web UI at `/admin` (HTTPS only): askama pages
//!   over the same operations as the API, with login sessions and a CSRF
//!   token on every form.
//! - [`handset_csv`]: handsets as CSV for installers (parse as a stream,
//!   export with formula cells quoted, spool uploads to private files).
//! - [`guard`]: bounded strike tables that ban keys (users, IPs) that fail
//!   too often, and the provisioning scan guard that counts distinct misses.
//! - [`client`]: who sent a request: client IP and TLS, believing
//!   `X-Forwarded-*` only from trusted proxies.
//! - [`profiles`]: vendor profiles (`vendor-profiles/*.toml`, built in by
//!   `build.rs`), request identification from file name and User-Agent, the
//!   one resolution of a phone's family (`Profiles::resolve`), the MACs
//!   a device certificate names, and the profiles in use, which a reload
//!   replaces whole (`profiles::LiveProfiles`).
//! - [`render`]: the askama templates of each vendor (`templates/<family>/`,
//!   registered by `build.rs`) and their contexts, and the phone's local
//!   time (`render::local_time`: offset and DST rule from the bundled IANA
//!   database, in vendors' shapes).
//! - [`provision`]: serving phones: identify → who may have the file (device
//!   certificate, device credentials, the tenant's token) → cached phone
//!   record → its kept file (`provision::rendered`: bodies with their ETags,
//!   dropped with the record) or render → record the fetch, behind the HTTP(S) front end
//!   (`provision::http`); and the phones' own reports of their calls
//!   (`provision::events`: action URLs, XML notifications).
//! - [`push`]: the push worker: outbox → SIP NOTIFY (direct, or relayed
//!   through the phone's registrar, Asterisk AMI or a signed webhook) with
//!   retries, pacing and outcomes; call-control actions carried out the
//!   same ways (`push::calls`).
//! - [`sip`]: the small SIP we need (RFC 3261): build NOTIFY, parse
//!   responses, answer digest challenges; UDP (one shared socket), TCP, and
//!   TLS to registrars.
//! - [`tftp`]: the read-only TFTP front end (options, windows, netascii),
//!   bounded against forged sources (one datagram per unacknowledged
//!   request, transfers per source and in all); each transfer on a socket
//!   of its own, kept for a later transfer to another peer.
//! - [`tls`]: rustls server config, self-signed bootstrap,
//!   device-certificate verification against the vendors' CAs, and the
//!   certificate a reload swaps under running listeners (`tls::LiveCert`).
//! - [`crypto`]: the one rustls crypto provider (ring) and its cipher order.
//! - [`files`]: files that hold secrets (0600 from the start).
//! - [`bootstrap`]: the default domain and superuser of a fresh database.
//! - [`http_listener`]: HTTP/1.1 and HTTPS accept loops (`SO_REUSEPORT`, one
//!   per core) on hyper, with graceful shutdown.
//! - [`limits`]: the open-file limit and how descriptors are shared out
//!   between connections, TFTP transfers and the rest.
//! - [`metrics`]: the Prometheus registry and every metric family
//!   (`autoprov_*`), label sets made at start so recording is an atomic add.
//! - [`monitoring`]: the monitoring listener (`metrics_listen`): `/metrics`,
//!   `/healthz`, `/readyz`.
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
pub mod limits;
pub mod metrics;
pub mod model;
pub mod monitoring;
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

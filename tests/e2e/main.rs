//! End-to-end tests: the real server on ephemeral loopback ports, driven over
//! real sockets. One test binary (every file directly under tests/ would be
//! a separate binary linking the whole crate), one module per feature.
//!
//! Tests that take a [`harness::Backend`] run twice: on SQLite always, and on
//! PostgreSQL when `AUTOPROV_TEST_POSTGRES_URL` names a server (`.ci/run`
//! starts one); without it the PostgreSQL variant says it was not enabled.

mod harness;

mod admin_ui;
mod api_auth;
mod api_handsets;
mod api_status_domain;
mod browser;
mod claim;
mod cli;
mod csv;
mod fixtures;
mod formats;
mod lifecycle;
mod provisioning;
mod push;
mod tftp;
mod tftp_client;
mod vendor_formats;
mod zero_trust;

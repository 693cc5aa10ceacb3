//! Notices from other nodes (PostgreSQL only): migration 0017's triggers
//! `pg_notify` on the commit of every statement that records a config
//! change (`autoprov_change`) or queues a push (`autoprov_push`). One
//! listener per node (`sqlx::postgres::PgListener`, its own connection)
//! turns them into the store's in-process wake-ups: the provisioning
//! cache reads the change feed at once (instead of at its next poll) and
//! the push worker leases at once (instead of within its idle second).
//!
//! Notices are a speed-up, never the only path: the feed is still polled
//! and the push table still looked at every second, and after the
//! listener's connection was lost (a database restart) everything is
//! woken once, since notices sent meanwhile are gone.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::watch;

use super::outage::Backoff;
use super::{Backend, Store, StoreError};

pub const CHANGE_CHANNEL: &str = "autoprov_change";
pub const PUSH_CHANNEL: &str = "autoprov_push";

impl Store {
    /// Completes when another node recorded config changes (or already did
    /// since the last wait). Only one task should wait.
    pub async fn changes_noticed(&self) {
        self.changes_noticed.notified().await
    }

    /// Wakes the change-feed reader and the push worker: both look now.
    fn wake_all(&self) {
        self.changes_noticed.notify_one();
        self.wake_pushes();
    }
}

/// Listens for other nodes' notices until `stop` turns true; on SQLite
/// returns at once. Reconnects by itself, backing off, after an outage.
pub async fn listen(store: Store, mut stop: watch::Receiver<bool>) {
    if store.backend() != Backend::Postgres {
        return;
    }
    // A pool of one, with the store's connection wait, so an outage makes
    // `connect`/`try_recv` fail within db_timeout and back off.
    let pool = match PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(store.db_timeout().max(Duration::from_millis(100)))
        .connect_lazy(&store.url)
    {
        Ok(pool) => pool,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for other nodes' notices; polling only");
            return;
        }
    };
    let mut backoff = Backoff::new("listening for other nodes' notices");
    let mut listener: Option<PgListener> = None;
    loop {
        let wait = backoff.delay();
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
        let l = match listener.as_mut() {
            Some(l) => l,
            None => {
                let connected = async {
                    let mut l = PgListener::connect_with(&pool).await?;
                    l.listen_all([CHANGE_CHANNEL, PUSH_CHANNEL]).await?;
                    Ok::<_, sqlx::Error>(l)
                };
                let connected = tokio::select! {
                    c = connected => c,
                    _ = stop.changed() => return,
                };
                match connected {
                    Ok(l) => {
                        backoff.succeeded();
                        // Whatever was noticed while we were not listening.
                        store.wake_all();
                        listener.insert(l)
                    }
                    Err(e) => {
                        backoff.failed(&StoreError::Database(e));
                        continue;
                    }
                }
            }
        };
        let received = tokio::select! {
            r = l.try_recv() => r,
            _ = stop.changed() => return,
        };
        match received {
            Ok(Some(notice)) => {
                backoff.succeeded();
                match notice.channel() {
                    CHANGE_CHANNEL => store.changes_noticed.notify_one(),
                    _ => store.wake_pushes(),
                }
            }
            // The connection was lost (it reconnects on the next call):
            // notices of the gap are gone, so everyone looks now.
            Ok(None) => store.wake_all(),
            Err(e) => {
                // The reconnect failed: start over with a new listener.
                listener = None;
                backoff.failed(&StoreError::Database(e));
            }
        }
    }
}

//! Database outages: which errors mean "the database is not there right
//! now" (front ends answer 503 with `Retry-After`, not 500), and the
//! [`Backoff`] background workers wait by while it lasts: each says once
//! that the database is gone and once that it is back, not once a tick.

use std::time::Duration;

use super::StoreError;

impl StoreError {
    /// True when the error says the database cannot be reached or is
    /// shutting down, rather than that the query or the data is wrong: no
    /// pooled connection within `db_timeout`, a connection refused, reset
    /// or closed, or PostgreSQL's classes 08 (connection exception), 57P
    /// (operator intervention: shutdown, crash, not accepting connections
    /// yet) and 53 (insufficient resources, such as too many connections).
    pub fn is_outage(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Database(e) => is_outage(e),
            _ => false,
        }
    }
}

pub(crate) fn is_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c.starts_with("53"))
        }
        _ => false,
    }
}

/// How a background worker waits while the database is unreachable:
/// 125 ms doubling up to 1 s (on top of the `db_timeout` a failing
/// attempt may take), so a worker is back within about a second of the
/// database; logged once when it starts failing and once
/// when it recovers.
#[derive(Debug)]
pub struct Backoff {
    what: &'static str,
    failures: u32,
}

const FIRST: Duration = Duration::from_millis(125);
const LONGEST: Duration = Duration::from_secs(1);

impl Backoff {
    /// `what` names the work in the log lines ("leasing pushes").
    pub fn new(what: &'static str) -> Self {
        Backoff { what, failures: 0 }
    }

    /// Notes a failure and says how long to wait before the next try. The
    /// first failure of a run is logged (a warning); later ones only at
    /// debug level.
    pub fn failed(&mut self, error: &StoreError) -> Duration {
        if self.failures == 0 {
            tracing::warn!(error = %error, work = self.what, "database unavailable: backing off until it is back");
        } else {
            tracing::debug!(error = %error, work = self.what, failures = self.failures, "database still unavailable");
        }
        self.failures = self.failures.saturating_add(1);
        self.delay()
    }

    /// Notes a success; the first after failures is logged.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(work = self.what, failures = self.failures, "database available again");
            self.failures = 0;
        }
    }

    /// Whether the last attempt failed.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }

    /// The wait after the failures so far (none before the first).
    pub fn delay(&self) -> Duration {
        match self.failures {
            0 => Duration::ZERO,
            n => FIRST.saturating_mul(1 << (n - 1).min(8)).min(LONGEST),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut b = Backoff::new("test");
        let e = StoreError::Database(sqlx::Error::PoolTimedOut);
        let waits: Vec<u128> = (0..7).map(|_| b.failed(&e).as_millis()).collect();
        assert_eq!(waits, [125, 250, 500, 1000, 1000, 1000, 1000]);
        assert!(b.failing());
        b.succeeded();
        assert!(!b.failing());
        assert_eq!(b.delay(), Duration::ZERO);
    }

    #[test]
    fn outages_are_told_from_bad_queries() {
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_outage());
        assert!(StoreError::Database(sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into())).is_outage());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_outage());
        assert!(!StoreError::NotFound("handset").is_outage());
        assert!(!StoreError::Conflict("x".into()).is_outage());
    }
}

//! File descriptors: how many the process may hold, and how they are shared
//! out, so that no one front end can starve the others. A flood of
//! hostile TFTP requests (one socket per transfer) or of idle TCP
//! connections must leave descriptors for HTTPS, the database and the logs.

/// Descriptors kept for everything that is neither a connection nor a TFTP
/// transfer: listeners, the database pool, SIP, AMI and webhook sockets,
/// files, CSV spools.
const RESERVE: u64 = 128;

/// Raises the open-file soft limit to the hard limit (what `ulimit -n`
/// allows without privileges) and returns the soft limit now in force.
pub fn raise_nofile() -> std::io::Result<u64> {
    let (_, hard) = rlimit::Resource::NOFILE.get()?;
    rlimit::increase_nofile_limit(hard)
}

/// The soft open-file limit in force (`u64::MAX` where there is none).
pub fn nofile() -> u64 {
    rlimit::Resource::NOFILE.get().map(|(soft, _)| soft).unwrap_or(1024)
}

/// How the descriptors the process may hold are shared out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBudget {
    /// HTTP and HTTPS connections, together.
    pub connections: usize,
    /// TFTP transfers (each holds its own socket).
    pub tftp_transfers: usize,
}

impl FdBudget {
    /// Of `limit` descriptors: a reserve first (at most a quarter), then
    /// three quarters of the rest for connections and a quarter for TFTP.
    pub fn for_limit(limit: u64) -> FdBudget {
        let reserve = RESERVE.min(limit / 4);
        let usable = limit.saturating_sub(reserve);
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).max(1);
        FdBudget { connections: to_usize(usable / 4 * 3), tftp_transfers: to_usize(usable / 4) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_limit_leaves_a_reserve_and_splits_the_rest() {
        let b = FdBudget::for_limit(1024);
        assert_eq!(b, FdBudget { connections: 672, tftp_transfers: 224 });
        assert!(b.connections as u64 + b.tftp_transfers as u64 + RESERVE <= 1024);
        let tiny = FdBudget::for_limit(64);
        assert!(tiny.connections + tiny.tftp_transfers <= 48 && tiny.tftp_transfers >= 1);
        let huge = FdBudget::for_limit(u64::MAX);
        assert!(huge.connections > 1 << 40);
    }
}

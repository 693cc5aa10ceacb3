//! Files that hold secrets.

use std::io::Write;
use std::path::Path;

/// Writes a file that only its owner can read (mode 0600 from the start,
/// never world-readable for an instant).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

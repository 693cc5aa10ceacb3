//! File names as phones send them, checked before anything else looks at
//! them: every request is hostile until proven otherwise.

use super::Refusal;
use crate::profiles::identify::MAX_FILE_NAME;

/// A file name fit for identification: one path segment of printable ASCII
/// without `\`, at most [`MAX_FILE_NAME`] bytes. A leading `/` (TFTP
/// clients often send one) is dropped.
pub fn clean(raw: &str) -> Result<&str, Refusal> {
    let name = raw.strip_prefix('/').unwrap_or(raw);
    if name.is_empty() {
        return Err(Refusal::BadName("empty file name"));
    }
    if name.len() > MAX_FILE_NAME {
        return Err(Refusal::BadName("file name too long"));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::BadName("file name has control, space or non-ASCII characters"));
    }
    if name.contains('/') || name.contains('\\') || name.contains("..") {
        return Err(Refusal::BadName("file name is a path"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names() {
        assert_eq!(clean("/001565aabbcc.cfg").unwrap(), "001565aabbcc.cfg");
        for bad in ["", "/", "../etc/passwd", "a/b.cfg", "a\\b", "x\0.cfg", "x .cfg", "é.cfg", &"a".repeat(4096), "..", "/.."] {
            assert!(clean(bad).is_err(), "{bad:?}");
        }
    }
}

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

/// Splits a provisioning token off a path as phones send it: `p/<token>/<file>`
/// (a leading `/` allowed) is `(Some(token), file)`; anything else is the
/// file alone. The token is not checked here (see `model::access`).
pub fn split_token(path: &str) -> (Option<&str>, &str) {
    let rest = path.strip_prefix('/').unwrap_or(path);
    match rest.strip_prefix("p/").and_then(|r| r.split_once('/')) {
        Some((token, file)) => (Some(token), file),
        None => (None, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_paths() {
        assert_eq!(split_token("p/AbC123/001565aabbcc.cfg"), (Some("AbC123"), "001565aabbcc.cfg"));
        assert_eq!(split_token("/p/AbC123/y000000000066.cfg"), (Some("AbC123"), "y000000000066.cfg"));
        assert_eq!(split_token("p/AbC123/"), (Some("AbC123"), ""));
        assert_eq!(split_token("001565aabbcc.cfg"), (None, "001565aabbcc.cfg"));
        assert_eq!(split_token("p/no-file"), (None, "p/no-file"), "a path, refused by clean");
        assert_eq!(split_token("p/a/b/c.cfg"), (Some("a"), "b/c.cfg"), "the rest is checked by clean");
    }

    #[test]
    fn hostile_names() {
        assert_eq!(clean("/001565aabbcc.cfg").unwrap(), "001565aabbcc.cfg");
        for bad in ["", "/", "../etc/passwd", "a/b.cfg", "a\\b", "x\0.cfg", "x .cfg", "é.cfg", &"a".repeat(4096), "..", "/.."] {
            assert!(clean(bad).is_err(), "{bad:?}");
        }
    }
}

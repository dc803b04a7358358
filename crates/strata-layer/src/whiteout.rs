//! OCI whiteout names (`.wh.<name>`, `.wh..wh..opq`) and their overlayfs counterparts.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Prefix of a whiteout entry: `.wh.foo` deletes `foo` from lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Entry that makes its directory opaque: lower layers' content of it is hidden.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// Prefix of AUFS bookkeeping entries (`.wh..wh.plnk`, ...), which carry no content.
const META_PREFIX: &str = ".wh..wh.";

/// Overlayfs opaque-directory xattr names; the `user.` one is used by rootless overlay
/// mounts (`-o userxattr`).
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
pub const OVERLAY_OPAQUE_USER_XATTR: &str = "user.overlay.opaque";

/// What a `.wh.`-prefixed base name means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// `.wh..wh..opq`
    Opaque,
    /// `.wh.<name>`: remove `<name>`.
    Remove(&'a OsStr),
    /// Other `.wh..wh.*` AUFS metadata: skipped, as Docker and containerd do.
    Meta,
}

/// Classifies a base name; `None` for ordinary names. A whiteout of `.`, `..` or nothing is
/// an error: removing those would delete the directory itself or its parent.
pub(crate) fn classify(name: &OsStr) -> Option<Result<Whiteout<'_>, String>> {
    let bytes = name.as_bytes();
    let rest = bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes())?;
    if bytes == OPAQUE_WHITEOUT.as_bytes() {
        return Some(Ok(Whiteout::Opaque));
    }
    if bytes.starts_with(META_PREFIX.as_bytes()) {
        return Some(Ok(Whiteout::Meta));
    }
    if rest.is_empty() || rest == b"." || rest == b".." {
        return Some(Err(format!(
            "whiteout {:?} names no removable file",
            String::from_utf8_lossy(bytes)
        )));
    }
    Some(Ok(Whiteout::Remove(OsStr::from_bytes(rest))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let c = |s: &'static str| classify(OsStr::new(s));
        assert_eq!(c("foo"), None);
        assert_eq!(c(".whx"), None);
        assert_eq!(c(".wh..wh..opq"), Some(Ok(Whiteout::Opaque)));
        assert_eq!(c(".wh..wh.plnk"), Some(Ok(Whiteout::Meta)));
        assert_eq!(c(".wh.foo"), Some(Ok(Whiteout::Remove(OsStr::new("foo")))));
        assert_eq!(c(".wh..hidden"), Some(Ok(Whiteout::Remove(OsStr::new(".hidden")))));
        assert!(matches!(c(".wh."), Some(Err(_))));
        assert!(matches!(c(".wh.."), Some(Err(_))));
        assert!(matches!(c(".wh..."), Some(Err(_))));
    }
}

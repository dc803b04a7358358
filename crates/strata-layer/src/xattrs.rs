//! Which extended attributes travel inside layers.

/// PAX record prefix for xattrs (the GNU tar / libarchive / Go archive/tar convention).
pub(crate) const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Overlayfs keeps its own state (opaque, redirect, metacopy, origin) in these namespaces.
/// They are never copied from a layer onto disk: a layer could otherwise forge overlay
/// metadata, e.g. a redirect pointing elsewhere in the lower stack. Opaque dirs are
/// expressed with `.wh..wh..opq` instead.
pub(crate) fn is_overlay_private(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Attributes that describe the host, not the image: SELinux labels are assigned by the
/// machine running the container, so writing them into a layer would leak the build host's.
pub(crate) fn is_host_specific(name: &[u8]) -> bool {
    name == b"security.selinux"
}

//! Looking up paths in the merged view of an overlay stack without mounting it, so the parent
//! can read `/etc/passwd` and learn which mount points are missing before the container runs.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::Rootfs;

/// Layers top first, as overlayfs stacks them.
pub(crate) struct Stack {
    layers: Vec<PathBuf>,
}

pub(crate) fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

pub(crate) fn is_opaque(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 2];
    [c"trusted.overlay.opaque", c"user.overlay.opaque"].iter().any(|name| {
        // SAFETY: both strings are NUL-terminated and buf is valid for its length.
        let n = unsafe {
            libc::lgetxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        n == 1 && buf[0] == b'y'
    })
}

impl Stack {
    pub(crate) fn new(rootfs: &Rootfs) -> Stack {
        let layers = match rootfs {
            Rootfs::Overlay { lowers, upper, .. } => {
                std::iter::once(upper.clone()).chain(lowers.iter().rev().cloned()).collect()
            }
            Rootfs::Lowers(lowers) => lowers.iter().rev().cloned().collect(),
            Rootfs::Dir(d) => vec![d.clone()],
        };
        Stack { layers }
    }

    /// The host path of `comps` in the topmost layer that provides it, or `None` when the
    /// merged view has nothing there (never created, whited out, or hidden by an opaque dir).
    pub(crate) fn lookup(&self, comps: &[&str]) -> Option<PathBuf> {
        'layers: for layer in &self.layers {
            let mut p = layer.clone();
            let mut hides_below = false;
            for (i, c) in comps.iter().enumerate() {
                p.push(c);
                let Ok(m) = std::fs::symlink_metadata(&p) else {
                    if hides_below {
                        return None;
                    }
                    continue 'layers;
                };
                if is_whiteout(&m) {
                    return None;
                }
                if i + 1 == comps.len() {
                    return Some(p);
                }
                if !m.is_dir() {
                    // A non-directory in a higher layer hides the lower layers' subtree.
                    return None;
                }
                if is_opaque(&p) {
                    hides_below = true;
                }
            }
            if comps.is_empty() {
                return Some(p);
            }
        }
        None
    }

    /// The top layer (the overlay upper dir, or the directory root).
    pub(crate) fn top(&self) -> Option<&Path> {
        self.layers.first().map(PathBuf::as_path)
    }
}

//! Collecting a directory tree in the order the layer lists it.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::LayerError;
use crate::whiteout::{OPAQUE_WHITEOUT, OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR};

/// One thing to write.
pub(crate) struct Node {
    /// Path inside the layer, no leading or trailing slash: the sort key.
    pub rel: Vec<u8>,
    pub host: PathBuf,
    pub meta: fs::Metadata,
    pub kind: NodeKind,
}

pub(crate) enum NodeKind {
    /// A file, directory, link or device as found.
    Plain,
    /// An overlay whiteout (char device 0:0) written as `.wh.<name>`.
    Whiteout,
    /// The `.wh..wh..opq` marker for an overlay-opaque directory (`meta` is the dir's).
    OpaqueMarker,
}

/// Lists everything under `root` (not `root` itself), sorted by the bytes of the path, so
/// the layer does not depend on readdir order. Parents sort before their children.
pub(crate) fn collect(root: &Path, overlay_whiteouts: bool) -> Result<Vec<Node>, LayerError> {
    let mut nodes = Vec::new();
    let mut pending: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, rel_dir)) = pending.pop() {
        let listing = fs::read_dir(&dir).map_err(|e| LayerError::io("listing", &dir, e))?;
        for child in listing {
            let child = child.map_err(|e| LayerError::io("listing", &dir, e))?;
            let host = child.path();
            let meta =
                fs::symlink_metadata(&host).map_err(|e| LayerError::io("inspecting", &host, e))?;
            let mut rel = rel_dir.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(child.file_name().as_bytes());
            let ft = meta.file_type();
            if ft.is_socket() {
                // Sockets cannot be stored in tar; they are runtime state (Docker skips them).
                continue;
            }
            if overlay_whiteouts && ft.is_char_device() && meta.rdev() == 0 {
                let name = child.file_name();
                let mut wh = rel_dir.clone();
                if !wh.is_empty() {
                    wh.push(b'/');
                }
                wh.extend_from_slice(b".wh.");
                wh.extend_from_slice(name.as_bytes());
                nodes.push(Node { rel: wh, host, meta, kind: NodeKind::Whiteout });
                continue;
            }
            if ft.is_dir() {
                if overlay_whiteouts && is_opaque(&host)? {
                    let mut marker = rel.clone();
                    marker.push(b'/');
                    marker.extend_from_slice(OPAQUE_WHITEOUT.as_bytes());
                    nodes.push(Node {
                        rel: marker,
                        host: host.clone(),
                        meta: meta.clone(),
                        kind: NodeKind::OpaqueMarker,
                    });
                }
                pending.push((host.clone(), rel.clone()));
            }
            nodes.push(Node { rel, host, meta, kind: NodeKind::Plain });
        }
    }
    nodes.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    Ok(nodes)
}

fn is_opaque(dir: &Path) -> Result<bool, LayerError> {
    for key in [OVERLAY_OPAQUE_XATTR, OVERLAY_OPAQUE_USER_XATTR] {
        match xattr::get(dir, key) {
            Ok(Some(v)) if v == b"y" => return Ok(true),
            Ok(_) => {}
            // Filesystems without xattr support cannot hold overlay state either.
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {}
            Err(e) => return Err(LayerError::io("reading overlay xattr of", dir, e)),
        }
    }
    Ok(false)
}

//! Small filesystem operations that never follow a symlink at the final component.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use filetime::FileTime;

use crate::error::LayerError;

/// Removes whatever is at `path` unless it is a directory and `keep_dir` is set.
/// Returns whether a directory was kept. Never follows a symlink (std's `remove_dir_all`
/// does not either).
pub(crate) fn clear(path: &Path, keep_dir: bool) -> Result<bool, LayerError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(LayerError::io("inspecting", path, e)),
        Ok(m) if m.is_dir() && keep_dir => Ok(true),
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).map_err(|e| LayerError::io("removing", path, e))?;
            Ok(false)
        }
        Ok(_) => {
            fs::remove_file(path).map_err(|e| LayerError::io("removing", path, e))?;
            Ok(false)
        }
    }
}

/// `mknod(2)`: `kind` is `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
pub(crate) fn mknod(
    path: &Path,
    kind: libc::mode_t,
    perm: u32,
    major: u32,
    minor: u32,
) -> Result<(), LayerError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| LayerError::io("creating node", path, io::ErrorKind::InvalidInput.into()))?;
    let dev = libc::makedev(major, minor);
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | (perm & 0o7777) as libc::mode_t, dev) };
    if rc != 0 {
        return Err(LayerError::io("creating device node", path, io::Error::last_os_error()));
    }
    Ok(())
}

/// Sets atime and mtime without following a symlink.
pub(crate) fn set_times(path: &Path, mtime: FileTime) -> Result<(), LayerError> {
    filetime::set_symlink_file_times(path, mtime, mtime)
        .map_err(|e| LayerError::io("setting times on", path, e))
}

pub(crate) fn lchown(path: &Path, uid: u32, gid: u32) -> Result<(), LayerError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| LayerError::io("changing owner of", path, e))
}

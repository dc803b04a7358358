//! Reading a stack of overlay-form layer directories (bottom first) as one filesystem,
//! without mounting it: whiteouts (char 0:0) hide lower entries, opaque directories hide
//! everything below them. Used by `COPY --from` and to ask whether a path exists.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::filecopy::CopyBatch;

pub(crate) fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

pub(crate) fn is_opaque(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    for name in [&b"trusted.overlay.opaque\0"[..], &b"user.overlay.opaque\0"[..]] {
        let mut buf = [0u8; 4];
        // SAFETY: both strings are NUL-terminated and the buffer length is passed.
        let n = unsafe {
            libc::lgetxattr(c.as_ptr(), name.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len())
        };
        if n == 1 && buf[0] == b'y' {
            return true;
        }
    }
    false
}

/// `rel` made relative and lexically clean (`..` cannot climb above the root).
pub(crate) fn clean_rel(p: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The topmost real path of `rel` in the stack, and the index of its layer.
pub(crate) fn lookup(lowers: &[PathBuf], rel: &Path) -> Option<(PathBuf, usize)> {
    if rel.as_os_str().is_empty() {
        return lowers.len().checked_sub(1).map(|i| (lowers[i].clone(), i));
    }
    let comps: Vec<Component> = rel.components().collect();
    for (i, layer) in lowers.iter().enumerate().rev() {
        let p = layer.join(rel);
        if let Ok(md) = fs::symlink_metadata(&p) {
            if is_whiteout(&md) {
                return None;
            }
            return Some((p, i));
        }
        // Does something in this layer hide the path in the layers below?
        let mut acc = layer.clone();
        for c in &comps[..comps.len() - 1] {
            acc.push(c);
            match fs::symlink_metadata(&acc) {
                Err(_) => break,
                Ok(md) if md.is_dir() => {
                    if is_opaque(&acc) {
                        return None;
                    }
                }
                Ok(_) => return None,
            }
        }
    }
    None
}

/// What one path of a tree is, as [`resolve`] needs to know.
pub(crate) enum Probe {
    Link(PathBuf),
    Other,
    Missing,
}

/// The most symlinks one resolution follows (Linux's own limit).
const MAX_LINKS: usize = 40;

/// `rel` with its symlinks followed inside the tree's root, as BuildKit resolves COPY
/// sources and destinations (fsutil's rootPath): an absolute target starts again at the
/// root, and `..` never climbs above it, so nothing outside the tree is ever named.
/// `follow_last` also follows a link in the last component. Past the first missing
/// component the rest is kept as written. `None` on a symlink loop.
pub(crate) fn resolve(
    rel: &Path,
    follow_last: bool,
    probe: impl Fn(&Path) -> Probe,
) -> Option<PathBuf> {
    let mut todo: Vec<std::ffi::OsString> =
        rel.components().rev().map(|c| c.as_os_str().to_os_string()).collect();
    let mut out = PathBuf::new();
    let mut links = 0;
    let mut missing = false;
    while let Some(c) = todo.pop() {
        match Path::new(&c).components().next() {
            Some(Component::Normal(_)) => {}
            Some(Component::ParentDir) => {
                out.pop();
                continue;
            }
            _ => continue,
        }
        let next = out.join(&c);
        if missing || (todo.is_empty() && !follow_last) {
            out = next;
            continue;
        }
        match probe(&next) {
            Probe::Link(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                if target.is_absolute() {
                    out = PathBuf::new();
                }
                todo.extend(target.components().rev().map(|c| c.as_os_str().to_os_string()));
            }
            Probe::Other => out = next,
            Probe::Missing => {
                missing = true;
                out = next;
            }
        }
    }
    Some(out)
}

/// [`resolve`] in a plain directory tree rooted at `root` (the build context).
pub(crate) fn resolve_in_dir(root: &Path, rel: &Path, follow_last: bool) -> Option<PathBuf> {
    resolve(rel, follow_last, |p| probe_path(&root.join(p)))
}

/// [`resolve`] in a layer stack.
pub(crate) fn resolve_in_stack(
    lowers: &[PathBuf],
    rel: &Path,
    follow_last: bool,
) -> Option<PathBuf> {
    resolve(rel, follow_last, |p| match lookup(lowers, p) {
        Some((host, _)) => probe_path(&host),
        None => Probe::Missing,
    })
}

fn probe_path(host: &Path) -> Probe {
    match fs::symlink_metadata(host) {
        Ok(md) if md.file_type().is_symlink() => {
            fs::read_link(host).map_or(Probe::Missing, Probe::Link)
        }
        Ok(_) => Probe::Other,
        Err(_) => Probe::Missing,
    }
}

/// Whether `rel` is a directory in the stack (following no symlinks).
pub(crate) fn is_dir(lowers: &[PathBuf], rel: &Path) -> bool {
    lookup(lowers, rel).is_some_and(|(p, _)| p.is_dir() && !p.is_symlink())
}

/// The merged listing of directory `rel`: name -> (topmost path, layers that may hold
/// children of that entry, as a count from the bottom).
fn list_merged(lowers: &[PathBuf], rel: &Path) -> io::Result<BTreeMap<Vec<u8>, (PathBuf, usize)>> {
    let mut out: BTreeMap<Vec<u8>, Option<(PathBuf, usize)>> = BTreeMap::new();
    for (i, layer) in lowers.iter().enumerate().rev() {
        let dir = layer.join(rel);
        let Ok(md) = fs::symlink_metadata(&dir) else { continue };
        if !md.is_dir() {
            break;
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().as_bytes().to_vec();
            if out.contains_key(&name) {
                continue;
            }
            let md = entry.metadata()?;
            out.insert(name, if is_whiteout(&md) { None } else { Some((entry.path(), i + 1)) });
        }
        if is_opaque(&dir) {
            break;
        }
    }
    Ok(out.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
}

/// Ownership and mode changes applied to everything copied.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CopyAttrs {
    /// `None` keeps the source's owner (BuildKit's `COPY --from` without `--chown`).
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<u32>,
}

impl CopyAttrs {
    fn owner_for(&self, md: &fs::Metadata) -> (u32, u32) {
        self.owner.unwrap_or((md.uid(), md.gid()))
    }
}

/// Creates the directories of `rel` missing in the layer dir `layer`, as BuildKit's
/// MkdirAll does for a COPY: one the stack `lowers` already has keeps that one's mode
/// and owner (the layer must not change it), a new one is 0755 and owned by `owner`
/// (the `--chown` user, else root).
pub(crate) fn make_parents(
    layer: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    owner: (u32, u32),
) -> io::Result<()> {
    let mut acc = PathBuf::new();
    for c in rel.components() {
        acc.push(c);
        let p = layer.join(&acc);
        if p.symlink_metadata().is_ok() {
            continue;
        }
        fs::create_dir(&p)?;
        match lookup(lowers, &acc).map(|(l, _)| fs::symlink_metadata(l)) {
            Some(Ok(md)) if md.is_dir() => {
                lchown(&p, md.uid(), md.gid())?;
                set_mode(&p, md.mode() & 0o7777)?;
            }
            _ => {
                lchown(&p, owner.0, owner.1)?;
                set_mode(&p, 0o755)?;
            }
        }
    }
    Ok(())
}

fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Creates directory `dst` (if missing) with the attributes of `md`.
pub(crate) fn make_dir(md: &fs::Metadata, dst: &Path, a: CopyAttrs) -> io::Result<()> {
    if let Ok(existing) = dst.symlink_metadata() {
        if !existing.is_dir() {
            fs::remove_file(dst)?;
        }
    }
    if !dst.is_dir() {
        fs::create_dir(dst)?;
    }
    let (uid, gid) = a.owner_for(md);
    lchown(dst, uid, gid)?;
    set_mode(dst, a.chmod.unwrap_or(md.mode() & 0o7777))
}

/// Copies `rel` of a layer stack (a file, symlink or whole directory) to `dst`: the
/// directories at once, the files in parallel. With `link`, files whose attributes stay
/// are hard-linked: only for a destination nothing will write to (a layer directory, a
/// read-only mount), as the links share the stack's inodes.
pub(crate) fn copy_from_stack(
    lowers: &[PathBuf],
    rel: &Path,
    dst: &Path,
    a: CopyAttrs,
    link: bool,
) -> io::Result<()> {
    let Some((top, i)) = lookup(lowers, rel) else {
        return Err(io::Error::new(io::ErrorKind::NotFound, "not found"));
    };
    let mut batch = CopyBatch::default();
    let mut walk = StackCopy { a, link, batch: &mut batch };
    walk.entry(&lowers[..=i], rel, &top, dst, true)?;
    batch.run().map(|_| ())
}

/// The state of one [`copy_from_stack`] walk.
struct StackCopy<'b, 'p> {
    a: CopyAttrs,
    link: bool,
    batch: &'b mut CopyBatch<'p>,
}

impl StackCopy<'_, '_> {
    fn entry(
        &mut self,
        lowers: &[PathBuf],
        rel: &Path,
        top: &Path,
        dst: &Path,
        contents_only: bool,
    ) -> io::Result<()> {
        let md = fs::symlink_metadata(top)?;
        if !md.is_dir() {
            if self.link {
                // Layer directories never change once written: link when the attributes stay.
                self.batch.add_immutable(top, md, dst.to_path_buf(), self.a);
            } else {
                self.batch.add(top, md, dst.to_path_buf(), self.a);
            }
            return Ok(());
        }
        if !contents_only || !dst.is_dir() {
            make_dir(&md, dst, self.a)?;
        }
        for (name, (path, depth)) in list_merged(lowers, rel)? {
            let name = std::ffi::OsStr::from_bytes(&name);
            let (child, target) = (rel.join(name), dst.join(name));
            self.entry(&lowers[..depth], &child, &path, &target, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn resolve_follows_links_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::write(root.join("usr/lib/libc.so.6"), "").unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/usr/lib/libc.so.6", root.join("usr/lib/libc.so")).unwrap();
        symlink("../../../../etc", root.join("usr/up")).unwrap();
        symlink("loop-b", root.join("loop-a")).unwrap();
        symlink("loop-a", root.join("loop-b")).unwrap();
        let r = |p: &str, last| resolve_in_dir(root, Path::new(p), last);

        assert_eq!(r("lib/libc.so.6", true), Some(PathBuf::from("usr/lib/libc.so.6")));
        assert_eq!(r("lib/libc.so", true), Some(PathBuf::from("usr/lib/libc.so.6")));
        assert_eq!(r("lib/libc.so", false), Some(PathBuf::from("usr/lib/libc.so")));
        // `..` stops at the root: the host's /etc is never named.
        assert_eq!(r("usr/up/passwd", true), Some(PathBuf::from("etc/passwd")));
        // Past a missing component the rest is kept as written.
        assert_eq!(r("lib/new/x", true), Some(PathBuf::from("usr/lib/new/x")));
        assert_eq!(r("loop-a/x", true), None);
    }
}

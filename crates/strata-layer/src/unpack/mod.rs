//! Safe extraction of a layer tar stream into a directory.
//!
//! Every entry name is normalised lexically, its parent is resolved inside the root (see
//! [`resolve`]), and the final component is created without following anything. The first
//! refused entry stops the unpack: nothing after it is written.

mod entry_path;
mod fsops;
mod resolve;

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use strata_oci::Digest;
use tar::EntryType;
use xattr::FileExt as _;

use crate::compression::Compression;
use crate::error::LayerError;
use crate::limits::Limits;
use crate::reader::LayerReader;
use crate::whiteout::{self, Whiteout, OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR};
use crate::xattrs::{is_overlay_private, PAX_XATTR_PREFIX};
use entry_path::{normalize, Absolute};
use resolve::{resolve_dir, symlink_target_stays_inside, Missing, ResolvedDir};

/// How whiteouts are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnpackMode {
    /// Apply the layer onto a full rootfs (OCI "applying changesets"): whiteouts delete
    /// lower content and never appear on disk.
    #[default]
    Apply,
    /// Unpack into an empty directory used as an overlayfs layer: `.wh.x` becomes a 0:0
    /// character device `x`, and an opaque directory gets the overlay opaque xattr.
    OverlayDiff,
}

/// Options for [`unpack`].
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    pub mode: UnpackMode,
    pub limits: Limits,
    /// Apply the entries' uid/gid (needs root or CAP_CHOWN). When false, files belong to
    /// the caller.
    pub preserve_ownership: bool,
    /// In [`UnpackMode::OverlayDiff`], mark opaque dirs with `user.overlay.opaque` (for
    /// rootless `-o userxattr` mounts) instead of `trusted.overlay.opaque`.
    pub overlay_user_xattr: bool,
    /// Skip xattrs the filesystem refuses (ENOTSUP, EPERM) instead of failing; they are
    /// counted in [`UnpackStats::xattrs_skipped`].
    pub skip_unsupported_xattrs: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            mode: UnpackMode::Apply,
            limits: Limits::default(),
            preserve_ownership: true,
            overlay_user_xattr: false,
            skip_unsupported_xattrs: false,
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries processed (whiteouts included, PAX/long-name headers not).
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Character/block devices and fifos.
    pub special: u64,
    /// `.wh.` entries, opaque markers included.
    pub whiteouts: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    pub xattrs_skipped: u64,
    pub compression: Compression,
    /// sha256 of the whole uncompressed stream: compare with the config's diffID.
    pub diff_id: Digest,
    pub uncompressed_size: u64,
}

/// Unpacks the (possibly compressed) layer `layer` into the existing directory `root`.
pub fn unpack<R: Read>(
    layer: R,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, LayerError> {
    let root =
        fs::canonicalize(root).map_err(|e| LayerError::io("opening unpack root", root, e))?;
    if !root.is_dir() {
        return Err(LayerError::io(
            "opening unpack root",
            &root,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let reader = LayerReader::new(layer, opts.limits)?.with_diff_id();
    let compression = reader.compression();
    let mut archive = tar::Archive::new(reader);
    let mut unpacker = Unpacker {
        root: &root,
        opts,
        counts: Counts::default(),
        written: HashSet::new(),
        dirs: Vec::new(),
    };
    let result = unpacker.run(&mut archive);
    let mut reader = archive.into_inner();
    if let Err(e) = result {
        // A tripped limit surfaces wherever the read happened; report the limit itself.
        return Err(match reader.limit_exceeded() {
            Some(limit) => LayerError::Limit(limit.clone()),
            None => e,
        });
    }
    // The diffID covers the whole stream, including padding after the end-of-archive marker.
    io::copy(&mut reader, &mut io::sink()).map_err(|e| reader.error(e))?;
    unpacker.finish_dirs()?;
    let c = unpacker.counts;
    Ok(UnpackStats {
        entries: c.entries,
        files: c.files,
        dirs: c.dirs,
        symlinks: c.symlinks,
        hardlinks: c.hardlinks,
        special: c.special,
        whiteouts: c.whiteouts,
        bytes: c.bytes,
        xattrs_skipped: c.xattrs_skipped,
        compression,
        diff_id: reader.diff_id().expect("hashing was enabled"),
        uncompressed_size: reader.decompressed_bytes(),
    })
}

#[derive(Default)]
struct Counts {
    entries: u64,
    files: u64,
    dirs: u64,
    symlinks: u64,
    hardlinks: u64,
    special: u64,
    whiteouts: u64,
    bytes: u64,
    xattrs_skipped: u64,
}

/// Metadata of one entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: FileTime,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// A directory whose mode and mtime are set at the end: creating children would bump the
/// mtime, and a read-only mode would stop a non-root unpacker from filling it.
struct DeferredDir {
    path: PathBuf,
    mode: u32,
    mtime: FileTime,
}

struct Unpacker<'a> {
    root: &'a Path,
    opts: &'a UnpackOptions,
    counts: Counts,
    /// Host paths this layer wrote, plus their ancestors: what an opaque marker or a
    /// whiteout in this same layer must not remove.
    written: HashSet<PathBuf>,
    dirs: Vec<DeferredDir>,
}

impl Unpacker<'_> {
    fn run<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<(), LayerError> {
        let mut last = String::from("(start of stream)");
        let entries = archive
            .entries()
            .map_err(|e| LayerError::Tar { position: "at its start".into(), source: e })?;
        for entry in entries {
            let mut entry = entry.map_err(|e| LayerError::Tar {
                position: format!("after entry {last:?}"),
                source: e,
            })?;
            last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            self.entry(&mut entry, &last)?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>, name: &str) -> Result<(), LayerError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        self.counts.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let mut components = normalize(&raw, name, "name", Absolute::Refuse)?;
        let Some(base) = components.pop() else {
            // `./`: the root itself. Only its metadata can change.
            if !kind.is_dir() {
                return Err(LayerError::bad_entry(name, "only a directory can name the root"));
            }
            let meta = self.meta(entry, name)?;
            self.counts.dirs += 1;
            let root = self.root.to_path_buf();
            return self.apply_dir_meta(&root, meta, name);
        };

        if let Some(w) = whiteout::classify(&base) {
            let w = w.map_err(|reason| LayerError::bad_entry(name, reason))?;
            return self.whiteout(w, &components, name);
        }

        let parent = resolve_dir(self.root, &components, name, Missing::Create)?
            .expect("Missing::Create always yields a directory");
        let path = parent.host.join(&base);
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(entry, &path, name)?
            }
            EntryType::Directory => self.dir(entry, &path, name)?,
            EntryType::Symlink => self.symlink(entry, &path, &parent, name)?,
            EntryType::Link => self.hardlink(entry, &path, name)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.special(entry, kind, &path, name)?
            }
            other => {
                return Err(LayerError::bad_entry(
                    name,
                    format!("unsupported tar entry type {:?}", other.as_byte() as char),
                ))
            }
        }
        self.mark_written(path);
        Ok(())
    }

    fn whiteout(
        &mut self,
        w: Whiteout<'_>,
        dir: &[OsString],
        name: &str,
    ) -> Result<(), LayerError> {
        let overlay = self.opts.mode == UnpackMode::OverlayDiff;
        // Applying onto a rootfs, a whiteout in a directory that does not exist has nothing
        // to remove; creating the directory would add content the layer never had.
        let missing = if overlay { Missing::Create } else { Missing::Report };
        let Some(parent) = resolve_dir(self.root, dir, name, missing)? else {
            self.counts.whiteouts += 1;
            return Ok(());
        };
        match (w, overlay) {
            (Whiteout::Meta, _) => return Ok(()),
            (Whiteout::Opaque, false) => self.remove_lower_content(&parent.host)?,
            (Whiteout::Opaque, true) => {
                let key = if self.opts.overlay_user_xattr {
                    OVERLAY_OPAQUE_USER_XATTR
                } else {
                    OVERLAY_OPAQUE_XATTR
                };
                xattr::set(&parent.host, key, b"y").map_err(|e| {
                    LayerError::io("marking opaque (overlay xattr)", &parent.host, e)
                })?;
            }
            (Whiteout::Remove(target), false) => {
                let path = parent.host.join(target);
                // Whiteouts only hide lower layers, never this layer's own entries (OCI spec).
                if !self.written.contains(&path) {
                    fsops::clear(&path, false)?;
                }
            }
            (Whiteout::Remove(target), true) => {
                let path = parent.host.join(target);
                fsops::clear(&path, false)?;
                fsops::mknod(&path, libc::S_IFCHR, 0, 0, 0)?;
                self.mark_written(path);
            }
        }
        self.counts.whiteouts += 1;
        Ok(())
    }

    /// Opaque directory on a full rootfs: remove everything in `dir` that this layer did not
    /// write. Entries that come after the marker are written afterwards, so the result is the
    /// same whatever the marker's position.
    fn remove_lower_content(&self, dir: &Path) -> Result<(), LayerError> {
        let listing = fs::read_dir(dir).map_err(|e| LayerError::io("listing", dir, e))?;
        for child in listing {
            let child = child.map_err(|e| LayerError::io("listing", dir, e))?;
            let path = child.path();
            if !self.written.contains(&path) {
                fsops::clear(&path, false)?;
            } else if child
                .file_type()
                .map_err(|e| LayerError::io("inspecting", &path, e))?
                .is_dir()
            {
                self.remove_lower_content(&path)?;
            }
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        path: &Path,
        name: &str,
    ) -> Result<(), LayerError> {
        let meta = self.meta(entry, name)?;
        // Replace rather than overwrite: the old file may be a hardlink shared with another
        // path, which must keep its content.
        fsops::clear(path, false)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| LayerError::io("creating file", path, e))?;
        match copy_content(entry, &mut file, path, name) {
            Ok(n) => self.counts.bytes += n,
            Err(e) => {
                // Do not leave a truncated file behind that looks like the real one.
                drop(file);
                let _ = fs::remove_file(path);
                return Err(e);
            }
        }
        if self.opts.preserve_ownership {
            std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))
                .map_err(|e| LayerError::io("changing owner of", path, e))?;
        }
        // After chown, which clears setuid/setgid.
        file.set_permissions(fs::Permissions::from_mode(meta.mode))
            .map_err(|e| LayerError::io("setting mode of", path, e))?;
        for (key, value) in &meta.xattrs {
            let r = file.set_xattr(key, value);
            self.xattr_result(r, path, key)?;
        }
        let t = to_system_time(meta.mtime);
        file.set_times(FileTimes::new().set_modified(t).set_accessed(t))
            .map_err(|e| LayerError::io("setting times on", path, e))?;
        self.counts.files += 1;
        Ok(())
    }

    fn dir<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        path: &Path,
        name: &str,
    ) -> Result<(), LayerError> {
        let meta = self.meta(entry, name)?;
        // A directory over a directory merges; over anything else (a symlink to a directory
        // included) it replaces.
        if !fsops::clear(path, true)? {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .map_err(|e| LayerError::io("creating directory", path, e))?;
        }
        self.counts.dirs += 1;
        self.apply_dir_meta(path, meta, name)
    }

    fn apply_dir_meta(&mut self, path: &Path, meta: Meta, _name: &str) -> Result<(), LayerError> {
        if self.opts.preserve_ownership {
            fsops::lchown(path, meta.uid, meta.gid)?;
        }
        for (key, value) in &meta.xattrs {
            let r = xattr::set(path, key, value);
            self.xattr_result(r, path, key)?;
        }
        self.dirs.push(DeferredDir {
            path: path.to_path_buf(),
            mode: meta.mode,
            mtime: meta.mtime,
        });
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        path: &Path,
        parent: &ResolvedDir,
        name: &str,
    ) -> Result<(), LayerError> {
        let target = entry
            .link_name_bytes()
            .map(|t| t.into_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| LayerError::bad_entry(name, "symlink has an empty target"))?;
        if !symlink_target_stays_inside(&target, parent.depth) {
            return Err(LayerError::unsafe_entry(
                name,
                format!(
                    "its symlink target {:?} resolves outside the root",
                    String::from_utf8_lossy(&target)
                ),
            ));
        }
        let meta = self.meta(entry, name)?;
        fsops::clear(path, false)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), path)
            .map_err(|e| LayerError::io("creating symlink", path, e))?;
        if self.opts.preserve_ownership {
            fsops::lchown(path, meta.uid, meta.gid)?;
        }
        for (key, value) in &meta.xattrs {
            let r = xattr::set(path, key, value);
            self.xattr_result(r, path, key)?;
        }
        fsops::set_times(path, meta.mtime)?;
        self.counts.symlinks += 1;
        Ok(())
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        path: &Path,
        name: &str,
    ) -> Result<(), LayerError> {
        let raw = entry
            .link_name_bytes()
            .map(|t| t.into_owned())
            .ok_or_else(|| LayerError::bad_entry(name, "hardlink has no target"))?;
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let mut target = normalize(&raw, name, "hardlink target", Absolute::InRoot)?;
        let missing = || {
            LayerError::bad_entry(
                name,
                format!(
                    "its hardlink target {shown:?} does not exist (it must come earlier in \
                     this layer or from a lower layer)"
                ),
            )
        };
        let base = target.pop().ok_or_else(|| {
            LayerError::bad_entry(name, "its hardlink target is the root directory")
        })?;
        let dir = resolve_dir(self.root, &target, name, Missing::Report)?.ok_or_else(missing)?;
        let source = dir.host.join(base);
        match fs::symlink_metadata(&source) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(LayerError::io("inspecting", &source, e)),
            Ok(m) if m.is_dir() => {
                return Err(LayerError::bad_entry(
                    name,
                    format!("its hardlink target {shown:?} is a directory"),
                ))
            }
            Ok(_) => {}
        }
        if source != path {
            fsops::clear(path, false)?;
            // linkat(2) without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
            fs::hard_link(&source, path)
                .map_err(|e| LayerError::io("creating hardlink", path, e))?;
        }
        self.counts.hardlinks += 1;
        Ok(())
    }

    fn special<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        kind: EntryType,
        path: &Path,
        name: &str,
    ) -> Result<(), LayerError> {
        let meta = self.meta(entry, name)?;
        let header = entry.header();
        let number = |v: io::Result<Option<u32>>| {
            v.map(Option::unwrap_or_default)
                .map_err(|e| LayerError::bad_entry(name, format!("unreadable device number: {e}")))
        };
        let (ifmt, major, minor) = match kind {
            EntryType::Char => {
                (libc::S_IFCHR, number(header.device_major())?, number(header.device_minor())?)
            }
            EntryType::Block => {
                (libc::S_IFBLK, number(header.device_major())?, number(header.device_minor())?)
            }
            // A fifo has no device number; writers leave the fields empty or zero.
            _ => (libc::S_IFIFO, 0, 0),
        };
        fsops::clear(path, false)?;
        fsops::mknod(path, ifmt, meta.mode, major, minor)?;
        if self.opts.preserve_ownership {
            fsops::lchown(path, meta.uid, meta.gid)?;
        }
        // mknod applied the umask; the path is the node just created, so chmod is safe.
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
            .map_err(|e| LayerError::io("setting mode of", path, e))?;
        for (key, value) in &meta.xattrs {
            let r = xattr::set(path, key, value);
            self.xattr_result(r, path, key)?;
        }
        fsops::set_times(path, meta.mtime)?;
        self.counts.special += 1;
        Ok(())
    }

    /// Reads mode, owner, mtime and xattrs from the header and PAX records.
    fn meta<R: Read>(&self, entry: &mut tar::Entry<R>, name: &str) -> Result<Meta, LayerError> {
        let bad = |field: &str, e: io::Error| {
            LayerError::bad_entry(name, format!("unreadable {field} field: {e}"))
        };
        let header = entry.header();
        let mode = header.mode().map_err(|e| bad("mode", e))? & 0o7777;
        let uid = header.uid().map_err(|e| bad("uid", e))?;
        let gid = header.gid().map_err(|e| bad("gid", e))?;
        let mut mtime =
            FileTime::from_unix_time(header.mtime().map_err(|e| bad("mtime", e))? as i64, 0);
        let (uid, gid) = match (u32::try_from(uid), u32::try_from(gid)) {
            (Ok(u), Ok(g)) => (u, g),
            _ => {
                return Err(LayerError::bad_entry(
                    name,
                    format!("uid {uid} or gid {gid} is out of range"),
                ))
            }
        };
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| bad("PAX", e))? {
            for record in pax {
                let record = record.map_err(|e| bad("PAX", e))?;
                let key = record.key_bytes();
                if let Some(xname) = key.strip_prefix(PAX_XATTR_PREFIX.as_bytes()) {
                    if !is_overlay_private(xname) {
                        xattrs.push((
                            OsStr::from_bytes(xname).to_os_string(),
                            record.value_bytes().to_vec(),
                        ));
                    }
                } else if key == b"mtime" {
                    if let Some(t) = parse_pax_time(record.value_bytes()) {
                        mtime = t;
                    }
                }
            }
        }
        Ok(Meta { mode, uid, gid, mtime, xattrs })
    }

    fn xattr_result(
        &mut self,
        r: io::Result<()>,
        path: &Path,
        key: &OsStr,
    ) -> Result<(), LayerError> {
        match r {
            Ok(()) => Ok(()),
            Err(e)
                if self.opts.skip_unsupported_xattrs
                    && matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) =>
            {
                self.counts.xattrs_skipped += 1;
                Ok(())
            }
            Err(e) => Err(LayerError::Io {
                op: "setting xattr",
                path: path.join(format!("[{}]", key.to_string_lossy())),
                source: e,
            }),
        }
    }

    fn mark_written(&mut self, path: PathBuf) {
        let mut p = path;
        while p != self.root && self.written.insert(p.clone()) {
            if !p.pop() {
                break;
            }
        }
    }

    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        for d in self.dirs.iter().rev() {
            // A later entry may have replaced the directory; its metadata is not ours then.
            match fs::symlink_metadata(&d.path) {
                Ok(m) if m.is_dir() => {}
                _ => continue,
            }
            fs::set_permissions(&d.path, fs::Permissions::from_mode(d.mode))
                .map_err(|e| LayerError::io("setting mode of", &d.path, e))?;
            fsops::set_times(&d.path, d.mtime)?;
        }
        Ok(())
    }
}

/// Copies an entry's content, telling read failures (a corrupt stream or a tripped limit)
/// apart from write failures (disk full).
fn copy_content<R: Read>(
    entry: &mut tar::Entry<R>,
    file: &mut File,
    path: &Path,
    name: &str,
) -> Result<u64, LayerError> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(LayerError::Tar {
                    position: format!("in the content of entry {name:?}"),
                    source: e,
                })
            }
        };
        file.write_all(&buf[..n]).map_err(|e| LayerError::io("writing", path, e))?;
        total += n as u64;
    }
}

/// PAX times are decimal seconds with an optional fraction: "1700000000.5".
fn parse_pax_time(value: &[u8]) -> Option<FileTime> {
    let s = std::str::from_utf8(value).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let mut nanos: u32 = digits.parse().ok()?;
    // "-1.5" is half a second *before* -1.
    let secs = if s.starts_with('-') && nanos > 0 {
        nanos = 1_000_000_000 - nanos;
        secs - 1
    } else {
        secs
    };
    Some(FileTime::from_unix_time(secs, nanos))
}

fn to_system_time(t: FileTime) -> std::time::SystemTime {
    let base = std::time::UNIX_EPOCH;
    if t.unix_seconds() >= 0 {
        base + std::time::Duration::new(t.unix_seconds() as u64, t.nanoseconds())
    } else {
        base - std::time::Duration::from_secs(t.unix_seconds().unsigned_abs())
            + std::time::Duration::from_nanos(t.nanoseconds() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"1700000000"), Some(FileTime::from_unix_time(1700000000, 0)));
        assert_eq!(
            parse_pax_time(b"1700000000.25"),
            Some(FileTime::from_unix_time(1700000000, 250_000_000))
        );
        assert_eq!(parse_pax_time(b"-1.5"), Some(FileTime::from_unix_time(-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"x"), None);
        assert_eq!(parse_pax_time(b"1.x"), None);
    }
}

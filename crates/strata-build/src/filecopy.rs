//! Copying files into a layer directory, in parallel. Creating inodes is what a big COPY
//! spends its time on (100-350 µs each on this machine's ext4, all kernel time), and it
//! scales with threads, so a COPY walks its sources first (making the directories in
//! order, as later entries need them) and then copies the files on the rayon pool. Each
//! file costs one open of each side, an in-kernel `copy_file_range`, and fd-based
//! owner/mode/mtime calls: no path is resolved twice.
//!
//! Better than a copy is no copy: a file from an immutable layer directory (a snapshot, or
//! a layer this build wrote) whose owner, mode and times the COPY keeps is hard-linked
//! into the new layer. A link makes no inode, moves no data, and keeps xattrs and hard
//! links as they were; the layer tar reads the same bytes either way. The same goes for a
//! context file an earlier COPY copied into a snapshot, if its stat says it has not
//! changed since (see `strata_store::copy_sources`): a rebuild after a one-file change
//! links the other files.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rayon::prelude::*;
use strata_store::{CopySource, PooledCopy, SourceStat};

use crate::context::{unix_ns, RACY_WINDOW};
use crate::fsview::CopyAttrs;

/// Regular files and symlinks to copy once the directories exist.
#[derive(Default)]
pub(crate) struct CopyBatch<'p> {
    items: Vec<Item>,
    /// For a COPY from the context: the layer directory, and earlier copies to link.
    pool: Option<(&'p Path, &'p HashMap<PathBuf, PooledCopy>)>,
}

struct Item {
    src: PathBuf,
    dst: PathBuf,
    md: fs::Metadata,
    attrs: CopyAttrs,
    /// `src` is immutable and already has the attributes the copy needs.
    link: bool,
    /// The context path of a context file (with a pool: looked up, and recorded).
    src_rel: Option<PathBuf>,
}

impl<'p> CopyBatch<'p> {
    /// A batch copying context files into the layer directory `layer`, linking the
    /// unchanged ones from `pool`.
    pub(crate) fn pooled(layer: &'p Path, pool: &'p HashMap<PathBuf, PooledCopy>) -> Self {
        CopyBatch { items: Vec::new(), pool: Some((layer, pool)) }
    }

    /// Queues `src` (a host path, `md` its lstat) to be copied to `dst`. Devices, sockets,
    /// fifos and whiteouts are not copied (as BuildKit).
    pub(crate) fn add(&mut self, src: &Path, md: fs::Metadata, dst: PathBuf, attrs: CopyAttrs) {
        self.push(src, md, dst, attrs, false, None);
    }

    /// [`CopyBatch::add`] for the file of the build context at `rel`.
    pub(crate) fn add_context(
        &mut self,
        src: &Path,
        rel: &Path,
        md: fs::Metadata,
        dst: PathBuf,
        attrs: CopyAttrs,
    ) {
        self.push(src, md, dst, attrs, false, Some(rel.to_path_buf()));
    }

    /// Queues `src`, a file of an immutable layer directory, for a hard link when the copy
    /// keeps its owner and mode, else for a copy.
    pub(crate) fn add_immutable(
        &mut self,
        src: &Path,
        md: fs::Metadata,
        dst: PathBuf,
        attrs: CopyAttrs,
    ) {
        let link = attrs.owner.is_none() && attrs.chmod.is_none();
        self.push(src, md, dst, attrs, link, None);
    }

    fn push(
        &mut self,
        src: &Path,
        md: fs::Metadata,
        dst: PathBuf,
        attrs: CopyAttrs,
        link: bool,
        src_rel: Option<PathBuf>,
    ) {
        if md.is_file() || md.file_type().is_symlink() {
            self.items.push(Item { src: src.to_path_buf(), dst, md, attrs, link, src_rel });
        }
    }

    /// Copies (or links) everything queued; the first error (naming the file) wins.
    pub(crate) fn run(self) -> io::Result<()> {
        self.run_recorded().map(|_| ())
    }

    /// [`CopyBatch::run`], returning (with a pool) what the layer now holds copies of, for
    /// later links.
    pub(crate) fn run_recorded(self) -> io::Result<Vec<CopySource>> {
        let pool = self.pool;
        // A file changed this recently may change again within the same ctime tick
        // unseen, so its copy is not offered for linking later.
        let since = unix_ns(SystemTime::now()) - RACY_WINDOW.as_nanos() as i64;
        let recorded = self
            .items
            .par_iter()
            .map(|it| {
                let linked_from = pool.and_then(|(_, p)| pooled_copy(it, p));
                copy_one(it, linked_from).map_err(|e| {
                    io::Error::new(e.kind(), format!("copying {}: {e}", it.src.display()))
                })?;
                Ok(pool.and_then(|(layer, _)| record(it, layer, since)))
            })
            .collect::<io::Result<Vec<Option<CopySource>>>>()?;
        Ok(recorded.into_iter().flatten().collect())
    }
}

fn stat_of(md: &fs::Metadata) -> SourceStat {
    SourceStat {
        size: md.len(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
        ino: md.ino(),
        dev: md.dev(),
    }
}

/// The owner and mode the copy of `it` gets (a symlink's mode is its own).
fn final_attrs(it: &Item) -> (u32, u32, u32) {
    let (uid, gid) = it.attrs.owner.unwrap_or((it.md.uid(), it.md.gid()));
    let own = it.md.mode() & 0o7777;
    let mode = if it.md.file_type().is_symlink() { own } else { it.attrs.chmod.unwrap_or(own) };
    (uid, gid, mode)
}

/// An earlier copy of the same, unchanged context file, with the same owner and mode.
fn pooled_copy<'a>(it: &Item, pool: &'a HashMap<PathBuf, PooledCopy>) -> Option<&'a Path> {
    let p = pool.get(it.src_rel.as_ref()?)?;
    let same = p.stat == stat_of(&it.md) && (p.uid, p.gid, p.mode) == final_attrs(it);
    same.then_some(p.path.as_path())
}

/// What the copy of context file `it` records, unless the source changed too recently.
fn record(it: &Item, layer: &Path, since_ns: i64) -> Option<CopySource> {
    let src = it.src_rel.clone()?;
    let stat = stat_of(&it.md);
    if stat.ctime_ns >= since_ns || stat.mtime_ns >= since_ns {
        return None;
    }
    let dest = it.dst.strip_prefix(layer).ok()?.to_path_buf();
    let (uid, gid, mode) = final_attrs(it);
    Some(CopySource { src, dest, stat, uid, gid, mode })
}

/// Copies one file or symlink now.
pub(crate) fn copy_leaf(src: &Path, md: &fs::Metadata, dst: &Path, a: CopyAttrs) -> io::Result<()> {
    let mut b = CopyBatch::default();
    b.add(src, md.clone(), dst.to_path_buf(), a);
    b.run()
}

fn copy_one(it: &Item, linked_from: Option<&Path>) -> io::Result<()> {
    let link_src = if it.link { Some(it.src.as_path()) } else { linked_from };
    if let Some(from) = link_src {
        match replace_existing(&it.dst, |p| fs::hard_link(from, p)) {
            Ok(()) => return Ok(()),
            // Another filesystem, the link limit, or a pooled copy GC just removed: copy.
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::EMLINK | libc::ENOENT)) => {}
            Err(e) => return Err(e),
        }
    }
    let (uid, gid, mode) = final_attrs(it);
    if it.md.file_type().is_symlink() {
        let target = fs::read_link(&it.src)?;
        replace_existing(&it.dst, |p| std::os::unix::fs::symlink(&target, p))?;
        return std::os::unix::fs::lchown(&it.dst, Some(uid), Some(gid));
    }
    let src = File::open(&it.src)?;
    let dst = replace_existing(&it.dst, |p| {
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(p)
    })?;
    copy_contents(&src, &dst, it.md.len())?;
    // Owner before mode: chown clears the set-id bits a mode may carry.
    std::os::unix::fs::fchown(&dst, Some(uid), Some(gid))?;
    dst.set_permissions(fs::Permissions::from_mode(mode))?;
    if let Ok(t) = it.md.modified() {
        dst.set_modified(t)?;
    }
    Ok(())
}

/// Creates `path` with `create`; an entry already there (a file an earlier source of the
/// same COPY put there) is replaced. A directory in the way is an error, as in BuildKit.
fn replace_existing<T>(path: &Path, create: impl Fn(&Path) -> io::Result<T>) -> io::Result<T> {
    match create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            create(path)
        }
        other => other,
    }
}

/// `len` bytes from `src` to `dst`: in the kernel where it can, else through a buffer.
fn copy_contents(src: &File, dst: &File, len: u64) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        let want = left.min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the call; null offsets use the files'
        // own positions.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                want,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // Not supported between these files: copy what is left the plain way.
                Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP) => {
                    io::copy(&mut io::Read::take(src, left), &mut &*dst).map(|_| ())
                }
                _ => Err(e),
            };
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being copied",
            ));
        }
        left -= n as u64;
    }
    Ok(())
}

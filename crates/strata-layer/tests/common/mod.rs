//! Helpers shared by the integration tests: building layer tars entry by entry (including
//! malformed ones the `tar` crate's path setters refuse) and describing trees on disk.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use tar::{EntryType, Header};

/// A layer tar under construction.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
    pax: Vec<(String, Vec<u8>)>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        Layer { b: tar::Builder::new(Vec::new()), pax: Vec::new() }
    }

    /// Adds a PAX record (e.g. an xattr) to the next entry.
    pub fn pax(&mut self, key: &str, value: &[u8]) -> &mut Self {
        self.pax.push((key.to_string(), value.to_vec()));
        self
    }

    pub fn xattr(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.pax(&format!("SCHILY.xattr.{name}"), value)
    }

    /// Appends an entry with name and link name written as raw header bytes, so that
    /// `../x` and `/x` can be produced.
    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        &mut self,
        kind: EntryType,
        name: &[u8],
        link: &[u8],
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        let mut h = Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        h.set_cksum();
        let pax = std::mem::take(&mut self.pax);
        self.b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).unwrap();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(EntryType::Regular, name.as_bytes(), b"", data, 0o644, 0, 0, 1_600_000_000)
    }

    pub fn file_full(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        self.raw(EntryType::Regular, name.as_bytes(), b"", data, mode, uid, gid, mtime)
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.dir_full(name, 0o755, 0, 0, 1_600_000_000)
    }

    pub fn dir_full(&mut self, name: &str, mode: u32, uid: u64, gid: u64, mtime: u64) -> &mut Self {
        self.raw(EntryType::Directory, name.as_bytes(), b"", b"", mode, uid, gid, mtime)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            EntryType::Symlink,
            name.as_bytes(),
            target.as_bytes(),
            b"",
            0o777,
            0,
            0,
            1_600_000_000,
        )
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(EntryType::Link, name.as_bytes(), target.as_bytes(), b"", 0o644, 0, 0, 0)
    }

    pub fn device(&mut self, kind: EntryType, name: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o620);
        h.set_uid(0);
        h.set_gid(5);
        h.set_mtime(1_500_000_000);
        h.set_size(0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }

    pub fn tar(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }

    pub fn gzip(&mut self) -> Vec<u8> {
        gzip(&self.tar())
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Everything observable about a path, for comparing trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub content: Vec<u8>,
    pub link: Option<Vec<u8>>,
    pub rdev: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Index of the first path sharing this inode (hardlink groups).
    pub inode_group: Option<String>,
}

/// Describes every path under `root` (keyed by relative path), following nothing.
/// `with_dir_mtimes` is off when a tree's directory mtimes are known to differ.
pub fn observe(root: &Path, with_dir_mtimes: bool) -> BTreeMap<String, Observed> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut paths = Vec::new();
    collect(root, root, &mut paths);
    paths.sort();
    for rel_path in paths {
        let p = root.join(&rel_path);
        let rel = rel_path.to_string_lossy().into_owned();
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let mut xattrs = BTreeMap::new();
        for name in xattr::list(&p).unwrap() {
            let v = xattr::get(&p, &name).unwrap().unwrap_or_default();
            xattrs.insert(name.to_string_lossy().into_owned(), v);
        }
        let inode_group = if !ft.is_dir() && m.nlink() > 1 {
            Some(inodes.entry((m.dev(), m.ino())).or_insert_with(|| rel.clone()).clone())
        } else {
            None
        };
        out.insert(
            rel,
            Observed {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: if ft.is_dir() && !with_dir_mtimes { 0 } else { m.mtime() },
                content: if ft.is_file() { fs::read(&p).unwrap() } else { Vec::new() },
                link: if ft.is_symlink() {
                    Some(fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec())
                } else {
                    None
                },
                rdev: if ft.is_char_device() || ft.is_block_device() { m.rdev() } else { 0 },
                xattrs,
                inode_group,
            },
        );
    }
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        out.push(p.strip_prefix(root).unwrap().to_path_buf());
        if e.file_type().unwrap().is_dir() {
            collect(root, &p, out);
        }
    }
}

/// Names directly under `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

/// A temp base holding the unpack root plus a sibling "outside" area, so escapes are
/// observable without touching the real host paths.
pub struct Sandbox {
    pub base: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let base = tempfile::tempdir().unwrap();
        fs::create_dir(base.path().join("root")).unwrap();
        fs::create_dir(base.path().join("outside")).unwrap();
        Sandbox { base }
    }

    pub fn root(&self) -> std::path::PathBuf {
        self.base.path().join("root")
    }

    pub fn outside(&self) -> std::path::PathBuf {
        self.base.path().join("outside")
    }

    /// The base must hold only `root` and an empty `outside`.
    pub fn assert_nothing_outside(&self) {
        assert_eq!(names(self.base.path()), ["outside", "root"]);
        assert!(names(&self.outside()).is_empty(), "{:?}", names(&self.outside()));
    }
}

//! Content hashes of build context sources, for COPY/ADD cache keys.
//!
//! A source's hash covers, for every entry it selects after `.dockerignore` (in sorted
//! order): the relative name, the file type, mode, owner, symlink target and the sha256 of
//! the contents. Contents are always read (an mtime can lie); files are hashed on a rayon
//! thread pool with sha256, which uses the CPU's SHA extensions where it has them. Each
//! file is hashed at most once per build, however many steps read it.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use strata_dockerfile::{IgnoreMatcher, WalkDecision};

pub(crate) struct ContextHasher {
    root: PathBuf,
    memo: Mutex<HashMap<PathBuf, [u8; 32]>>,
}

struct Entry {
    rel: PathBuf,
    md: fs::Metadata,
}

impl ContextHasher {
    pub(crate) fn new(root: &Path) -> Self {
        ContextHasher { root: root.to_path_buf(), memo: Mutex::new(HashMap::new()) }
    }

    /// The hash (hex) of the context paths `rels` (files or directories, walked with
    /// `ignore` as COPY walks them).
    pub(crate) fn hash(&self, rels: &[PathBuf], ignore: &IgnoreMatcher) -> io::Result<String> {
        let mut entries = Vec::new();
        for rel in rels {
            let md = fs::symlink_metadata(self.root.join(rel))?;
            let is_dir = md.is_dir();
            entries.push(Entry { rel: rel.clone(), md });
            if is_dir {
                self.walk(rel, ignore, &mut entries)?;
            }
        }
        let todo: Vec<&Entry> = {
            let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
            entries.iter().filter(|e| e.md.is_file() && !memo.contains_key(&e.rel)).collect()
        };
        let hashed: Vec<(PathBuf, [u8; 32])> = todo
            .par_iter()
            .map(|e| Ok((e.rel.clone(), file_sha256(&self.root.join(&e.rel))?)))
            .collect::<io::Result<_>>()?;
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        memo.extend(hashed);
        let mut h = Sha256::new();
        for e in &entries {
            let ft = e.md.file_type();
            let kind = if ft.is_dir() {
                "d"
            } else if ft.is_symlink() {
                "l"
            } else if ft.is_file() {
                "f"
            } else if ft.is_fifo() {
                "p"
            } else {
                "o"
            };
            h.update(e.rel.as_os_str().as_bytes());
            h.update(format!(
                "\0{kind}\0{:o}\0{}:{}\0",
                e.md.mode() & 0o7777,
                e.md.uid(),
                e.md.gid()
            ));
            if ft.is_symlink() {
                h.update(fs::read_link(self.root.join(&e.rel))?.as_os_str().as_bytes());
            } else if let Some(c) = memo.get(&e.rel) {
                h.update(c);
            }
            h.update(b"\n");
        }
        Ok(hex::encode(h.finalize()))
    }

    fn walk(&self, rel: &Path, ignore: &IgnoreMatcher, out: &mut Vec<Entry>) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(self.root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let r = rel.join(&name);
            let md = fs::symlink_metadata(self.root.join(&r))?;
            match ignore.walk_decision(&r.to_string_lossy(), md.is_dir()) {
                WalkDecision::Skip => {}
                WalkDecision::DescendOnly | WalkDecision::Include if md.is_dir() => {
                    out.push(Entry { rel: r.clone(), md });
                    self.walk(&r, ignore, out)?;
                }
                WalkDecision::DescendOnly => {}
                _ => out.push(Entry { rel: r, md }),
            }
        }
        Ok(())
    }
}

fn file_sha256(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

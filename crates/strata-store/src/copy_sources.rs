//! Where a snapshot's files came from, so a later COPY of the same unchanged context files
//! can hard-link them instead of creating new inodes (the cost of a big COPY: a rebuild
//! after a one-file change of a 20,000-file context would otherwise copy all 20,000).
//!
//! A snapshot a COPY from the build context made gets a sidecar `copied-from` beside its
//! `fs`: for each file, its path in the context, its path in the snapshot, the source's
//! stat when it was copied (size, mtime, ctime, inode, device) and the owner and mode the
//! copy got. The same context file with the same stat today has the same content, as the
//! stat-cache reasons (ctime cannot be set back), so its old copy can be linked. Files
//! changed within seconds of the copy are not recorded (a write in the same clock tick
//! would leave ctime as it was). Per context root, `copy-sources/<hash of root>` lists the
//! latest snapshots with sidecars; both files are replaced by rename, so a crash leaves the
//! old or the new one, and a lost update only costs a copy. A sidecar goes with its
//! snapshot when GC removes it, and is ignored where the snapshot is not trusted.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use strata_oci::Digest;

use crate::error::{IoContext, Result};
use crate::Store;

/// How many recent snapshots per context root are offered as link sources.
const KEEP_PER_ROOT: usize = 4;
const SIDECAR: &str = "copied-from";
const MAGIC: &[u8] = b"strata-copied-from 1\n";

/// A source file's stat, as far as "unchanged" needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
}

/// One file a COPY put into a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySource {
    /// Path in the context, relative.
    pub src: PathBuf,
    /// Path in the snapshot's `fs`, relative.
    pub dest: PathBuf,
    pub stat: SourceStat,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits of the copy.
    pub mode: u32,
}

/// A copy that can be linked: where it is, and what it was copied from.
#[derive(Clone, Debug)]
pub struct PooledCopy {
    pub path: PathBuf,
    pub stat: SourceStat,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Store {
    fn copy_sources_list(&self, root: &Path) -> PathBuf {
        let h = Digest::sha256_of(root.as_os_str().as_bytes());
        self.root().join("copy-sources").join(&h.hex()[..32])
    }

    /// Records that snapshot `chain` holds copies of `sources` from context `root`
    /// (canonical). The snapshot must exist.
    pub fn record_copy_sources(
        &self,
        root: &Path,
        chain: &Digest,
        sources: &[CopySource],
    ) -> Result<()> {
        let snap = self.snapshots_dir().join(chain.hex());
        if sources.is_empty() || !snap.join("fs").is_dir() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(64 + sources.len() * 96);
        buf.extend_from_slice(MAGIC);
        put_bytes(&mut buf, root.as_os_str().as_bytes());
        buf.extend_from_slice(&(sources.len() as u64).to_le_bytes());
        for s in sources {
            put_bytes(&mut buf, s.src.as_os_str().as_bytes());
            put_bytes(&mut buf, s.dest.as_os_str().as_bytes());
            for v in [
                s.stat.size,
                s.stat.mtime_ns as u64,
                s.stat.ctime_ns as u64,
                s.stat.ino,
                s.stat.dev,
            ] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            for v in [s.uid, s.gid, s.mode] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        replace_file(&snap.join(SIDECAR), &buf)?;

        let list = self.copy_sources_list(root);
        let mut chains = read_list(&list);
        chains.retain(|c| c != chain);
        chains.insert(0, chain.clone());
        chains.truncate(KEEP_PER_ROOT);
        let text: String = chains.iter().map(|c| format!("{c}\n")).collect();
        fs::create_dir_all(list.parent().unwrap_or(self.root())).ctx("creating", &list)?;
        replace_file(&list, text.as_bytes())
    }

    /// The copies of files of context `root` that recent trusted snapshots hold, by context
    /// path (the newest snapshot wins). Unreadable sidecars are skipped: this is only a
    /// shortcut, never a source of truth.
    pub fn copy_sources(&self, root: &Path) -> HashMap<PathBuf, PooledCopy> {
        let mut out = HashMap::new();
        for chain in read_list(&self.copy_sources_list(root)).iter().rev() {
            let snap = self.snapshots_dir().join(chain.hex());
            if !crate::snapshots::snapshot_trusted(&snap) {
                continue;
            }
            let Ok(bytes) = fs::read(snap.join(SIDECAR)) else { continue };
            if let Some(entries) = decode(&bytes, root) {
                for s in entries {
                    let path = snap.join("fs").join(&s.dest);
                    out.insert(
                        s.src,
                        PooledCopy { path, stat: s.stat, uid: s.uid, gid: s.gid, mode: s.mode },
                    );
                }
            }
        }
        out
    }
}

fn read_list(path: &Path) -> Vec<Digest> {
    fs::read_to_string(path)
        .map(|t| t.lines().filter_map(|l| l.parse().ok()).collect())
        .unwrap_or_default()
}

fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp =
        path.with_extension(format!("tmp-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let written = fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e).ctx("writing", path);
    }
    Ok(())
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
    buf.extend_from_slice(b);
}

/// The sidecar's entries, if it is well formed and made from `root`.
fn decode(bytes: &[u8], root: &Path) -> Option<Vec<CopySource>> {
    let mut r = io::Cursor::new(bytes.strip_prefix(MAGIC)?);
    let b = |r: &mut io::Cursor<&[u8]>| -> Option<Vec<u8>> {
        let mut n = [0u8; 4];
        r.read_exact(&mut n).ok()?;
        let n = u32::from_le_bytes(n) as usize;
        if n > 1 << 20 {
            return None;
        }
        let mut v = vec![0u8; n];
        r.read_exact(&mut v).ok()?;
        Some(v)
    };
    let u64_ = |r: &mut io::Cursor<&[u8]>| -> Option<u64> {
        let mut v = [0u8; 8];
        r.read_exact(&mut v).ok()?;
        Some(u64::from_le_bytes(v))
    };
    let u32_ = |r: &mut io::Cursor<&[u8]>| -> Option<u32> {
        let mut v = [0u8; 4];
        r.read_exact(&mut v).ok()?;
        Some(u32::from_le_bytes(v))
    };
    if b(&mut r)? != root.as_os_str().as_bytes() {
        return None;
    }
    let n = u64_(&mut r)?;
    let mut out = Vec::with_capacity(n.min(1 << 20) as usize);
    for _ in 0..n {
        let src = PathBuf::from(std::ffi::OsStr::from_bytes(&b(&mut r)?));
        let dest = PathBuf::from(std::ffi::OsStr::from_bytes(&b(&mut r)?));
        let stat = SourceStat {
            size: u64_(&mut r)?,
            mtime_ns: u64_(&mut r)? as i64,
            ctime_ns: u64_(&mut r)? as i64,
            ino: u64_(&mut r)?,
            dev: u64_(&mut r)?,
        };
        let (uid, gid, mode) = (u32_(&mut r)?, u32_(&mut r)?, u32_(&mut r)?);
        // A sidecar must not point outside its snapshot.
        if dest.is_absolute()
            || dest.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return None;
        }
        out.push(CopySource { src, dest, stat, uid, gid, mode });
    }
    Some(out)
}

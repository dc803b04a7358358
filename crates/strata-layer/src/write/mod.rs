//! Deterministic layer writing from a directory tree.
//!
//! The same tree (same names, contents, modes, owners, xattrs, and mtimes up to the clamp)
//! always gives the same bytes: entries are sorted by path bytes, numeric owners only (no
//! user/group names), PAX records in a fixed order, no atime/ctime, and a gzip header
//! without timestamp.

mod parallel_gzip;
mod pipeline;
mod walk;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use strata_oci::Digest;
use tar::{EntryType, Header};

use crate::compression::Compression;
use crate::error::LayerError;
use crate::xattrs::{is_host_specific, is_overlay_private, PAX_XATTR_PREFIX};
use walk::{Node, NodeKind};

/// Options for [`write_layer`].
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub compression: Compression,
    /// Codec level; `None` for the default (gzip 6, zstd 3).
    pub level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`: no entry gets an mtime later than this.
    pub source_date_epoch: Option<u64>,
    /// Treat the tree as an overlayfs upper dir: char devices 0:0 become `.wh.<name>` and
    /// directories with the overlay opaque xattr get a `.wh..wh..opq` entry.
    pub overlay_whiteouts: bool,
    /// Compression threads; `None` for `std::thread::available_parallelism()` (at most 16).
    /// The blob's bytes are the same for any value.
    pub threads: Option<usize>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compression: Compression::Gzip,
            level: None,
            source_date_epoch: None,
            overlay_whiteouts: true,
            threads: None,
        }
    }
}

/// Default thread cap: past it the single-threaded tar and sha256 stages are the limit, and
/// each gzip thread holds up to two 1 MiB jobs with their output.
const MAX_DEFAULT_THREADS: usize = 16;

impl WriteOptions {
    fn thread_count(&self) -> usize {
        let default =
            || std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_DEFAULT_THREADS));
        self.threads.unwrap_or_else(default).max(1)
    }
}

/// What [`write_layer`] produced: enough for a manifest descriptor and the config's diffIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDescriptor {
    /// sha256 of the blob as written.
    pub digest: Digest,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    pub size: u64,
    pub uncompressed_size: u64,
    /// Sum of the regular files' sizes (what Docker reports as a layer's size).
    pub content_size: u64,
    pub media_type: String,
    pub compression: Compression,
}

/// Writes the tree under `dir` as a layer blob into `out`.
pub fn write_layer<W: io::Write + Send>(
    dir: &Path,
    out: W,
    opts: &WriteOptions,
) -> Result<LayerDescriptor, LayerError> {
    let nodes = walk::collect(dir, opts.overlay_whiteouts)?;
    let content_size = nodes
        .iter()
        .filter(|n| matches!(n.kind, NodeKind::Plain) && n.meta.is_file())
        .map(|n| n.meta.len())
        .sum();
    let done = std::thread::scope(|scope| {
        let sink =
            pipeline::pipeline(scope, opts.compression, opts.level, opts.thread_count(), out)
                .map_err(LayerError::Write)?;
        let mut builder = tar::Builder::new(sink);
        let mut first_links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        for node in &nodes {
            write_node(&mut builder, node, opts, &mut first_links)?;
        }
        let sink = builder.into_inner().map_err(LayerError::Write)?;
        pipeline::finish(sink).map_err(LayerError::Write)
    })?;
    Ok(LayerDescriptor {
        digest: done.digest,
        diff_id: done.diff_id,
        size: done.size,
        uncompressed_size: done.uncompressed_size,
        content_size,
        media_type: opts.compression.oci_media_type().to_string(),
        compression: opts.compression,
    })
}

/// Largest value of a 7-digit octal ustar field (uid, gid): beyond it a PAX record is needed.
const USTAR_ID_MAX: u64 = 0o7_777_777;
/// Largest value of the 11-digit octal size field.
const USTAR_SIZE_MAX: u64 = 0o77_777_777_777;

fn write_node<'s, W: io::Write + Send + 's>(
    builder: &mut tar::Builder<pipeline::Pipeline<'s, W>>,
    node: &Node,
    opts: &WriteOptions,
    first_links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> Result<(), LayerError> {
    let meta = &node.meta;
    let ft = meta.file_type();
    let mut header = Header::new_ustar();
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let mut name = node.rel.clone();
    let mut size = 0u64;
    let mut content: Option<File> = None;

    header.set_mode(meta.mode() & 0o7777);
    set_id(&mut header, &mut pax, "uid", meta.uid() as u64);
    set_id(&mut header, &mut pax, "gid", meta.gid() as u64);
    let mtime = meta.mtime().max(0) as u64;
    header.set_mtime(opts.source_date_epoch.map_or(mtime, |epoch| mtime.min(epoch)));

    match node.kind {
        NodeKind::Whiteout => {
            header.set_entry_type(EntryType::Regular);
            // Docker's overlay differ writes whiteouts as 0600 files.
            header.set_mode(0o600);
        }
        NodeKind::OpaqueMarker => header.set_entry_type(EntryType::Regular),
        NodeKind::Plain => {
            let inode = (meta.dev(), meta.ino());
            if !ft.is_dir() && meta.nlink() > 1 {
                if let Some(first) = first_links.get(&inode) {
                    header.set_entry_type(EntryType::Link);
                    set_link_name(&mut header, &mut pax, first);
                } else {
                    first_links.insert(inode, node.rel.clone());
                }
            }
            if header.entry_type() != EntryType::Link {
                if ft.is_dir() {
                    header.set_entry_type(EntryType::Directory);
                    name.push(b'/');
                } else if ft.is_symlink() {
                    header.set_entry_type(EntryType::Symlink);
                    let target = fs::read_link(&node.host)
                        .map_err(|e| LayerError::io("reading symlink", &node.host, e))?;
                    set_link_name(&mut header, &mut pax, target.as_os_str().as_bytes());
                } else if ft.is_file() {
                    header.set_entry_type(EntryType::Regular);
                    size = meta.len();
                    content = Some(open_no_follow(&node.host)?);
                } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
                    header.set_entry_type(if ft.is_char_device() {
                        EntryType::Char
                    } else if ft.is_block_device() {
                        EntryType::Block
                    } else {
                        EntryType::Fifo
                    });
                    let rdev = if ft.is_fifo() { 0 } else { meta.rdev() };
                    set_device(&mut header, libc::major(rdev), libc::minor(rdev))?;
                } else {
                    return Err(LayerError::io(
                        "adding to layer",
                        &node.host,
                        io::Error::new(io::ErrorKind::Unsupported, "unsupported file type"),
                    ));
                }
                add_xattrs(&node.host, &mut pax)?;
            }
        }
    }

    header.set_size(size);
    if size > USTAR_SIZE_MAX {
        pax.push(("size".into(), size.to_string().into_bytes()));
    }
    set_name(&mut header, &mut pax, &name);
    header.set_cksum();
    // Fixed record order: path, linkpath, ids, size, then xattrs by name.
    pax.sort_by(|a, b| pax_rank(&a.0).cmp(&pax_rank(&b.0)).then_with(|| a.0.cmp(&b.0)));
    builder
        .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
        .map_err(LayerError::Write)?;

    match content {
        None => builder.append(&header, io::empty()).map_err(LayerError::Write),
        Some(file) => {
            let mut reader = ExactReader { file, left: size, failed: None };
            let result = builder.append(&header, &mut reader);
            match (result, reader.failed) {
                (_, Some(e)) => Err(LayerError::io("reading", &node.host, e)),
                (Err(e), None) => Err(LayerError::Write(e)),
                (Ok(()), None) => Ok(()),
            }
        }
    }
}

fn pax_rank(key: &str) -> u8 {
    match key {
        "path" => 0,
        "linkpath" => 1,
        "uid" => 2,
        "gid" => 3,
        "size" => 4,
        _ => 5,
    }
}

fn set_id(header: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, key: &str, id: u64) {
    if key == "uid" {
        header.set_uid(id);
    } else {
        header.set_gid(id);
    }
    if id > USTAR_ID_MAX {
        pax.push((key.into(), id.to_string().into_bytes()));
    }
}

fn set_device(header: &mut Header, major: u32, minor: u32) -> Result<(), LayerError> {
    let e = |e: io::Error| LayerError::Write(e);
    header.set_device_major(major).map_err(e)?;
    header.set_device_minor(minor).map_err(e)
}

/// Puts `path` into the ustar name (and prefix) fields, or into a PAX `path` record when it
/// does not fit. Raw bytes: names need not be UTF-8.
fn set_name(header: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, path: &[u8]) {
    let ustar = header.as_ustar_mut().expect("ustar header");
    if path.len() <= ustar.name.len() {
        ustar.name[..path.len()].copy_from_slice(path);
        return;
    }
    // Split at a '/' so that prefix <= 155 and name <= 100 bytes, name non-empty.
    let body = path.strip_suffix(b"/").unwrap_or(path);
    let split = body
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'/' && i <= ustar.prefix.len())
        .map(|(i, _)| i)
        .find(|&i| path.len() - i - 1 <= ustar.name.len());
    if let Some(i) = split {
        ustar.prefix[..i].copy_from_slice(&path[..i]);
        let rest = &path[i + 1..];
        ustar.name[..rest.len()].copy_from_slice(rest);
        return;
    }
    pax.push(("path".into(), path.to_vec()));
    let tail = &path[path.len() - ustar.name.len()..];
    ustar.name.copy_from_slice(tail);
}

fn set_link_name(header: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, target: &[u8]) {
    let field = &mut header.as_old_mut().linkname;
    let n = target.len().min(field.len());
    field[..n].copy_from_slice(&target[..n]);
    if target.len() > field.len() {
        pax.push(("linkpath".into(), target.to_vec()));
    }
}

fn add_xattrs(path: &Path, pax: &mut Vec<(String, Vec<u8>)>) -> Result<(), LayerError> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(()),
        Err(e) => return Err(LayerError::io("listing xattrs of", path, e)),
    };
    for name in names {
        let bytes = name.as_bytes();
        if is_overlay_private(bytes) || is_host_specific(bytes) {
            continue;
        }
        let Some(key) = name.to_str() else {
            return Err(LayerError::io(
                "reading xattrs of",
                path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("xattr name {name:?} is not UTF-8 and cannot be stored in PAX"),
                ),
            ));
        };
        // Gone between list and get: it simply is not there any more.
        if let Some(value) =
            xattr::get(path, &name).map_err(|e| LayerError::io("reading xattrs of", path, e))?
        {
            pax.push((format!("{PAX_XATTR_PREFIX}{key}"), value));
        }
    }
    Ok(())
}

fn open_no_follow(path: &Path) -> Result<File, LayerError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| LayerError::io("opening", path, e))
}

/// Yields exactly the size announced in the header: a file that shrank while being written
/// would otherwise silently corrupt the archive. Read errors are kept apart from the
/// builder's write errors.
struct ExactReader {
    file: File,
    left: u64,
    failed: Option<io::Error>,
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = match self.file.read(&mut buf[..want]) {
            Ok(0) => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while the layer was being written",
                );
                self.failed = Some(io::Error::new(e.kind(), e.to_string()));
                return Err(e);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.failed = Some(io::Error::new(e.kind(), e.to_string()));
                return Err(e);
            }
        };
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_use_prefix_then_pax() {
        let mut h = Header::new_ustar();
        let mut pax = Vec::new();
        let mid = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        set_name(&mut h, &mut pax, mid.as_bytes());
        assert!(pax.is_empty());
        assert_eq!(h.path_bytes().as_ref(), mid.as_bytes());

        let mut h = Header::new_ustar();
        let long = format!("{}/{}", "d".repeat(200), "f".repeat(120));
        set_name(&mut h, &mut pax, long.as_bytes());
        assert_eq!(pax, vec![("path".to_string(), long.into_bytes())]);
    }
}

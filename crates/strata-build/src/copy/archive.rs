//! ADD's local archives, detected and unpacked as Docker does.
//!
//! BuildKit (solver/llbsolver/file/unpack.go, isArchivePath) treats a regular file as an
//! archive when go-archive's DecompressStream recognises its codec from the magic bytes
//! (gzip, bzip2, xz, zstd, else none) and the first tar header of the decompressed stream
//! parses. Anything else, including a `.tar.gz` that is not one, is copied as a plain
//! file. The archive is extracted into the destination directory with the archive's
//! owners, or all entries owned by the `--chown` user; `--chmod` does not apply.
//!
//! Extraction goes through `strata_layer::unpack` in `Apply` mode, which refuses absolute
//! names, `..` escapes and symlinks that lead out of the destination. Decompression
//! (strata_layer's decoder for gzip and zstd, the bzip2 and liblzma crates for the others)
//! is bounded by [`limits`].

use std::cell::Cell;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use strata_layer::{LayerReader, LimitExceeded, Limits, UnpackMode, UnpackOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Plain,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// go-archive's DetectCompression.
fn codec(head: &[u8]) -> Codec {
    if head.starts_with(b"BZh") {
        Codec::Bzip2
    } else if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        Codec::Gzip
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Codec::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
    {
        Codec::Zstd
    } else {
        Codec::Plain
    }
}

/// How far an ADD archive may expand: Docker has no limit, so this only stops what is
/// almost certainly a bomb: past 256 MiB of output, more than 1000 bytes out per byte in
/// (deflate cannot exceed ~1032:1; real tarballs stay far below).
pub(crate) fn limits() -> Limits {
    Limits { max_decompressed: None, max_ratio: Some(1000), ratio_floor: 256 << 20 }
}

/// Whether `path` is an archive ADD extracts.
pub(crate) fn is_archive(path: &Path) -> bool {
    let Ok(md) = fs::symlink_metadata(path) else { return false };
    if !md.is_file() {
        return false;
    }
    let Ok(f) = fs::File::open(path) else { return false };
    let Ok(r) = decompressed(f, Limits::unlimited()) else { return false };
    let mut archive = tar::Archive::new(r);
    let first = archive.entries().ok().and_then(|mut e| e.next());
    matches!(first, Some(Ok(_)))
}

/// Extracts the archive at `path` into the existing directory `dir`; with `owner`, every
/// entry belongs to it.
pub(crate) fn extract(path: &Path, dir: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    let f = fs::File::open(path).map_err(|e| e.to_string())?;
    let r = decompressed(f, limits()).map_err(|e| e.to_string())?;
    let opts = UnpackOptions {
        mode: UnpackMode::Apply,
        // Already bounded: the stream unpack sees is the decoded tar.
        limits: Limits::unlimited(),
        preserve_ownership: owner.is_none(),
        ..UnpackOptions::default()
    };
    strata_layer::unpack(r, dir, &opts).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = owner {
        chown_tree(dir, uid, gid).map_err(|e| format!("setting owners: {e}"))?;
    }
    Ok(())
}

/// The archive's tar stream, decoded and bounded by `limits`.
fn decompressed(f: fs::File, limits: Limits) -> io::Result<Box<dyn Read>> {
    let mut src = BufReader::new(f);
    // A regular file's first read fills the buffer: enough for every magic number.
    let kind = codec(src.fill_buf()?);
    let counted = Counted { inner: src, read: Rc::new(Cell::new(0)) };
    let compressed = counted.read.clone();
    let inner: Box<dyn Read> = match kind {
        Codec::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(counted)),
        Codec::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(counted)),
        // strata_layer's decoder (multi-member gzip, zstd frames); bounded below.
        Codec::Plain | Codec::Gzip | Codec::Zstd => {
            Box::new(LayerReader::new(counted, Limits::unlimited()).map_err(io::Error::other)?)
        }
    };
    Ok(Box::new(Bounded { inner, compressed, out: 0, limits }))
}

/// Counts the bytes pulled from the file.
struct Counted<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// A decoder that stops with an error once its output crosses the limits.
struct Bounded {
    inner: Box<dyn Read>,
    compressed: Rc<Cell<u64>>,
    out: u64,
    limits: Limits,
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        self.limits.check(self.out, self.compressed.get()).map_err(bomb)?;
        Ok(n)
    }
}

fn bomb(e: LimitExceeded) -> io::Error {
    io::Error::other(match e {
        LimitExceeded::Ratio { decompressed, compressed, max_ratio } => format!(
            "refusing to extract: {compressed} bytes expanded to {decompressed} bytes, more \
             than {max_ratio} times their size: this looks like a decompression bomb"
        ),
        other => format!("refusing to extract: {other}"),
    })
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid))?;
        if e.file_type()?.is_dir() {
            chown_tree(&e.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn header(name: &str, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        h
    }

    fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append(&header(name, data.len() as u64), data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn detection_is_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, data: &[u8]| {
            let p = dir.path().join(name);
            fs::write(&p, data).unwrap();
            p
        };
        let tar = tar_of("a.txt", b"hello\n");
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&tar).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&tar).unwrap();
        assert!(is_archive(&put("plain", &tar)));
        assert!(is_archive(&put("x.bin", &bz.finish().unwrap())));
        assert!(is_archive(&put("y", &xz.finish().unwrap())));
        assert!(!is_archive(&put("empty.tar.gz", b"")));
        assert!(!is_archive(&put("fake.tar.gz", b"\x1f\x8b\x08 not really gzip")));
        assert!(!is_archive(&put("text.tar", b"just text, no tar header here")));
        assert!(!is_archive(&put("zeros.tar", &[0u8; 1024])));

        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        extract(&dir.path().join("x.bin"), &out, None).unwrap();
        assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"hello\n");
    }

    #[test]
    fn an_xz_bomb_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        let size: u64 = 300 << 20;
        xz.write_all(header("zeros", size).as_bytes()).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..300 {
            xz.write_all(&chunk).unwrap();
        }
        xz.write_all(&[0u8; 1024]).unwrap();
        let p = dir.path().join("bomb.tar.xz");
        fs::write(&p, xz.finish().unwrap()).unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let e = extract(&p, &out, None).unwrap_err();
        assert!(e.contains("decompression bomb") || e.contains("ratio"), "{e}");
        assert!(fs::metadata(out.join("zeros")).map(|m| m.len() < size).unwrap_or(true));
    }
}

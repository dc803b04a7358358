//! Reading a layer blob once: its diffID, what is inside, and whether any entry tries to
//! leave the root. Nothing is unpacked here.

use std::io::{self, Read};
use std::path::{Component, Path};

use strata_layer::{Compression, LayerReader, LimitExceeded};
use strata_oci::{Digest, Hasher};

pub use strata_layer::Limits;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub compression: Compression,
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// Sum of the regular files' sizes.
    pub content_size: u64,
    pub entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerScanError {
    #[error("entry {path:?} {reason}")]
    Unsafe { path: String, reason: &'static str },
    #[error(transparent)]
    Layer(#[from] strata_layer::LayerError),
    #[error("decompression bomb: {0}")]
    Bomb(LimitExceeded),
    #[error("not a valid layer tar: {0}")]
    Tar(#[source] io::Error),
}

/// Whether an I/O error from a [`LayerReader`] was its bomb guard tripping.
pub fn limit_exceeded(e: &io::Error) -> Option<LimitExceeded> {
    e.get_ref().and_then(|i| i.downcast_ref::<LimitExceeded>()).cloned()
}

fn classify(e: io::Error) -> LayerScanError {
    match limit_exceeded(&e) {
        Some(l) => LayerScanError::Bomb(l),
        None => LayerScanError::Tar(e),
    }
}

/// Checks that an entry name stays inside the root it will be unpacked into.
pub fn check_entry_path(name: &Path) -> Result<(), &'static str> {
    let mut depth: i64 = 0;
    for c in name.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err("escapes the root with '..'");
                }
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
        }
    }
    Ok(())
}

/// The diffID: either being computed from the bytes read, or known in advance.
enum DiffId {
    Hashing(Hasher),
    Known(Digest),
}

/// Counts what it reads, and hashes it unless the diffID is already known.
struct DiffIdReader<R> {
    inner: R,
    diff_id: DiffId,
    len: u64,
}

impl<R: Read> Read for DiffIdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let DiffId::Hashing(h) = &mut self.diff_id {
            h.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }
}

/// Reads a whole layer blob, returning what it holds. Nothing is written. `blob_digest`,
/// when the caller already hashed the blob, spares hashing an uncompressed layer twice
/// (its diffID is its digest).
pub fn scan(
    blob: impl Read,
    limits: Limits,
    blob_digest: Option<&Digest>,
) -> Result<LayerInfo, LayerScanError> {
    let layer = LayerReader::new(blob, limits)?;
    let compression = layer.compression();
    let diff_id = match blob_digest {
        Some(d) if compression == Compression::None => DiffId::Known(d.clone()),
        _ => DiffId::Hashing(Hasher::new()),
    };
    let mut hashed = DiffIdReader { inner: layer, diff_id, len: 0 };
    let mut content_size = 0;
    let mut entries = 0;
    {
        let mut archive = tar::Archive::new(&mut hashed);
        for entry in archive.entries().map_err(classify)? {
            let entry = entry.map_err(classify)?;
            entries += 1;
            let path = entry.path().map_err(classify)?.into_owned();
            let shown = || path.to_string_lossy().into_owned();
            check_entry_path(&path)
                .map_err(|reason| LayerScanError::Unsafe { path: shown(), reason })?;
            let kind = entry.header().entry_type();
            if kind.is_hard_link() {
                let target = entry.link_name().map_err(classify)?.unwrap_or_default();
                check_entry_path(&target).map_err(|_| LayerScanError::Unsafe {
                    path: shown(),
                    reason: "is a hard link to a path outside the root",
                })?;
            }
            if kind.is_symlink() {
                // Docker's breakout rule: a relative target, taken from the link's own
                // directory, must stay inside the root. Absolute targets are resolved
                // inside the root when used, so they are safe.
                let target = entry.link_name().map_err(classify)?.unwrap_or_default();
                if !target.is_absolute() {
                    let joined = path.parent().unwrap_or(Path::new("")).join(&target);
                    check_entry_path(&joined).map_err(|_| LayerScanError::Unsafe {
                        path: shown(),
                        reason: "is a symlink that points outside the root",
                    })?;
                }
            }
            if kind.is_file() || kind == tar::EntryType::Continuous {
                content_size += entry.size();
            }
        }
    }
    // The tar may end before the stream does (padding): hash every byte for the diffID.
    io::copy(&mut hashed, &mut io::sink()).map_err(classify)?;
    let tar_size = hashed.len;
    let diff_id = match hashed.diff_id {
        DiffId::Hashing(h) => h.finish(),
        DiffId::Known(d) => d,
    };
    Ok(LayerInfo { compression, diff_id, tar_size, content_size, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths() {
        assert!(check_entry_path(Path::new("a/b/../c")).is_ok());
        assert!(check_entry_path(Path::new("./a")).is_ok());
        assert_eq!(check_entry_path(Path::new("../x")), Err("escapes the root with '..'"));
        assert_eq!(check_entry_path(Path::new("a/../../x")), Err("escapes the root with '..'"));
        assert_eq!(check_entry_path(Path::new("/etc/passwd")), Err("is an absolute path"));
    }
}

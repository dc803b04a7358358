//! Reading one layer blob as a stream: the list of its entries, never their content.

use std::io::Read;

use strata_layer::{LayerError, LayerReader, Limits};

use crate::error::{AnalyzeError, Result};

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    /// Devices, FIFOs.
    Other,
    /// `.wh.<name>`: deletes `<name>` from the layers below.
    Whiteout,
}

/// One entry of a layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalised path without a leading `/` (`usr/bin/env`). For a whiteout this is the
    /// path of the entry itself (`etc/.wh.motd`); [`Entry::target`] is what it deletes.
    pub path: String,
    pub kind: Kind,
    /// The size in the tar header (0 for directories, links and whiteouts).
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub link: Option<String>,
}

impl Entry {
    /// For a whiteout, the path it deletes (`etc/motd` for `etc/.wh.motd`).
    pub fn target(&self) -> Option<String> {
        if self.kind != Kind::Whiteout {
            return None;
        }
        let (parent, name) = split_parent(&self.path);
        let name = name.strip_prefix(WHITEOUT_PREFIX).unwrap_or(name);
        Some(join(parent, name))
    }
}

/// A layer as a list of entries, in tar order.
#[derive(Debug, Clone, Default)]
pub struct LayerScan {
    pub entries: Vec<Entry>,
    /// Directories holding a `.wh..wh.*` marker: `(dir, is_opaque)`; `.wh..wh..opq` makes
    /// the directory opaque, other markers (AUFS `plnk`...) carry nothing.
    pub markers: Vec<(String, bool)>,
    /// dive's layer size: the sum of the header sizes of every entry.
    pub size: u64,
    /// Bytes of the uncompressed tar stream.
    pub tar_bytes: u64,
}

pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
const META_PREFIX: &str = ".wh..wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// `a/b/c` -> (`a/b`, `c`); `c` -> (``, `c`).
pub(crate) fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Lexical clean of a tar name: no leading `/` or `./`, no `.` components, `..` resolved.
/// `Ok(None)` for the root itself; an error for a name that climbs above the root.
pub(crate) fn normalize(name: &str) -> std::result::Result<Option<String>, String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("climbs above the root of the layer".into());
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        Ok(None)
    } else {
        Ok(Some(parts.join("/")))
    }
}

/// Streams `blob` (gzip, zstd or plain tar) and lists its entries. Content is read through
/// to reach the next header but never kept.
pub fn scan_layer(blob: impl Read, index: usize, layer: &str) -> Result<LayerScan> {
    let reader = LayerReader::new(blob, Limits::default())
        .map_err(|source| AnalyzeError::Layer { index, layer: layer.to_string(), source })?;
    let mut archive = tar::Archive::new(reader);
    let tar_err =
        |source: std::io::Error| AnalyzeError::LayerTar { index, layer: layer.to_string(), source };
    let mut scan = LayerScan::default();
    let entries = archive.entries().map_err(tar_err)?;
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return Err(limit_or(e, index, layer, tar_err)),
        };
        let header = entry.header();
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let etype = header.entry_type();
        if matches!(
            etype,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        let size = entry.size();
        scan.size += size;
        let path = match normalize(&raw) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(reason) => {
                return Err(AnalyzeError::BadEntry {
                    index,
                    layer: layer.to_string(),
                    path: raw,
                    reason,
                })
            }
        };
        // `.wh..wh.*` components (the opaque marker, AUFS `.wh..wh.plnk/...`) add nothing
        // below them; what precedes them still exists (dive creates those parents).
        if let Some(pos) = path.split('/').position(|c| c.starts_with(META_PREFIX)) {
            let comps: Vec<&str> = path.split('/').collect();
            let opaque = pos + 1 == comps.len() && comps[pos] == OPAQUE;
            scan.markers.push((comps[..pos].join("/"), opaque));
            continue;
        }
        let (_, name) = split_parent(&path);
        let mode = header.mode().unwrap_or(0);
        let kind = if let Some(rest) = name.strip_prefix(WHITEOUT_PREFIX) {
            if rest.is_empty() || rest == "." || rest == ".." {
                return Err(AnalyzeError::BadEntry {
                    index,
                    layer: layer.to_string(),
                    path,
                    reason: "is a whiteout that names no file".into(),
                });
            }
            Kind::Whiteout
        } else {
            match etype {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Symlink => Kind::Symlink,
                tar::EntryType::Link => Kind::Hardlink,
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => Kind::Other,
                _ if mode & 0o170000 == 0o040000 => Kind::Dir,
                _ => Kind::File,
            }
        };
        let link = match kind {
            Kind::Symlink | Kind::Hardlink => {
                entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned())
            }
            _ => None,
        };
        scan.entries.push(Entry {
            path,
            kind,
            size,
            mode: mode & 0o7777,
            uid: header.uid().unwrap_or(0),
            gid: header.gid().unwrap_or(0),
            link,
        });
    }
    let reader = archive.into_inner();
    scan.tar_bytes = reader.decompressed_bytes();
    Ok(scan)
}

/// A decompression limit that tripped inside the tar reader is reported as such.
fn limit_or(
    e: std::io::Error,
    index: usize,
    layer: &str,
    tar_err: impl Fn(std::io::Error) -> AnalyzeError,
) -> AnalyzeError {
    if let Some(limit) =
        e.get_ref().and_then(|inner| inner.downcast_ref::<strata_layer::LimitExceeded>())
    {
        return AnalyzeError::Layer {
            index,
            layer: layer.to_string(),
            source: LayerError::Limit(limit.clone()),
        };
    }
    tar_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize("./etc/passwd"), Ok(Some("etc/passwd".into())));
        assert_eq!(normalize("/usr//bin/"), Ok(Some("usr/bin".into())));
        assert_eq!(normalize("./"), Ok(None));
        assert_eq!(normalize("a/../b"), Ok(Some("b".into())));
        assert!(normalize("../x").is_err());
    }

    #[test]
    fn whiteout_target() {
        let e = Entry {
            path: "etc/.wh.motd".into(),
            kind: Kind::Whiteout,
            size: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            link: None,
        };
        assert_eq!(e.target().as_deref(), Some("etc/motd"));
    }

    fn tar_of(names: &[&str]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for n in names {
            let mut h = tar::Header::new_ustar();
            h.set_size(3);
            h.set_mode(0o644);
            b.append_data(&mut h, n, &b"abc"[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn markers_and_whiteouts() {
        let blob = tar_of(&["var/.wh..wh..opq", ".wh..wh.plnk/12.34", "etc/.wh.motd", "etc/hosts"]);
        let scan = scan_layer(&blob[..], 0, "t").unwrap();
        assert_eq!(scan.markers, vec![("var".to_string(), true), (String::new(), false)]);
        let kinds: Vec<(&str, Kind)> =
            scan.entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
        assert_eq!(kinds, vec![("etc/.wh.motd", Kind::Whiteout), ("etc/hosts", Kind::File)]);
        // dive's layer size counts every entry, markers included.
        assert_eq!(scan.size, 12);
        let bad = tar_of(&["etc/.wh."]);
        let e = scan_layer(&bad[..], 2, "t").unwrap_err().to_string();
        assert!(e.contains("layer 2") && e.contains("names no file"), "{e}");
    }
}

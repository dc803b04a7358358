//! Builders for small, real archives used by the store's tests.
#![allow(dead_code)]

use std::io::Write;

use serde_json::json;
use strata_oci::Digest;

/// A tar entry to write, with the name written raw so malicious names survive.
pub enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Dir(&'a str),
}

fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    // Bypass set_path's checks: these tests need `..` and absolute names.
    let bytes = name.as_bytes();
    h.as_gnu_mut().unwrap().name[..bytes.len()].copy_from_slice(bytes);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            Entry::File(name, data) => {
                let mut h = header(name, tar::EntryType::Regular, data.len() as u64);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            Entry::Dir(name) => {
                let mut h = header(name, tar::EntryType::Directory, 0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Entry::Symlink(name, target) | Entry::Hardlink(name, target) => {
                let kind = if matches!(e, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = header(name, kind, 0);
                let t = target.as_bytes();
                h.as_gnu_mut().unwrap().linkname[..t.len()].copy_from_slice(t);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::sha256_of(l).to_string()).collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created": "2024-01-01T00:00:00Z", "created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// A classic `docker save` archive with uncompressed layers and one tag.
pub fn docker_archive(tag: &str, layers: &[&[u8]], config: &[u8]) -> Vec<u8> {
    let config_name = format!("{}.json", Digest::sha256_of(config).hex());
    let mut files: Vec<(String, Vec<u8>)> = vec![(config_name.clone(), config.to_vec())];
    let mut layer_paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = format!("layer{i}/layer.tar");
        files.push((p.clone(), l.to_vec()));
        layer_paths.push(p);
    }
    let manifest = json!([{"Config": config_name, "RepoTags": [tag], "Layers": layer_paths}]);
    files.push(("manifest.json".into(), serde_json::to_vec(&manifest).unwrap()));
    let entries: Vec<Entry> = files.iter().map(|(n, d)| Entry::File(n, d)).collect();
    tar(&entries)
}

/// An OCI layout tar with gzip layers; `tamper` may change a blob after naming it.
/// Changes a blob's bytes after it was named by its digest.
pub type Tamper<'a> = &'a dyn Fn(&mut Vec<u8>);

pub fn oci_archive(layers: &[&[u8]], tamper: Option<Tamper>) -> Vec<u8> {
    let config = config_for(layers);
    let mut blobs: Vec<Vec<u8>> = vec![config.clone()];
    let mut descs = Vec::new();
    for l in layers {
        let gz = gzip(l);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                          "digest": Digest::sha256_of(&gz).to_string(), "size": gz.len()}));
        blobs.push(gz);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256_of(&config).to_string(), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": Digest::sha256_of(&manifest).to_string(), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "example.com/test/oci:1"}}]}))
    .unwrap();
    blobs.push(manifest);
    let mut files: Vec<(String, Vec<u8>)> = blobs
        .into_iter()
        .map(|b| (format!("blobs/sha256/{}", Digest::sha256_of(&b).hex()), b))
        .collect();
    if let Some(t) = tamper {
        t(&mut files[1].1);
    }
    files.push(("index.json".into(), index));
    files.push(("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()));
    let entries: Vec<Entry> = files.iter().map(|(n, d)| Entry::File(n, d)).collect();
    tar(&entries)
}

pub fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<Entry> = files.iter().map(|(n, d)| Entry::File(n, d)).collect();
    tar(&entries)
}

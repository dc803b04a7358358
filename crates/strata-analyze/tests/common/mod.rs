//! Test images built from scratch: layer tars written with the `tar` crate, packed as a
//! docker-archive, a gzip'd OCI layout directory, or loaded into a temporary store.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use strata_oci::Digest;

/// One tar entry of a test layer.
pub enum E {
    Dir(&'static str),
    File(&'static str, usize),
    Link(&'static str, &'static str),
    /// `.wh.` entry for this path.
    Whiteout(&'static str),
    /// `.wh..wh..opq` in this directory.
    Opaque(&'static str),
}

pub fn layer_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, format!("{p}/"), std::io::empty()).unwrap();
            }
            E::File(p, n) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(*n as u64);
                let data: Vec<u8> = (0..*n).map(|i| (i % 251) as u8).collect();
                b.append_data(&mut h, p, data.as_slice()).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::Whiteout(p) => {
                let (parent, name) = match p.rfind('/') {
                    Some(i) => (&p[..i + 1], &p[i + 1..]),
                    None => ("", *p),
                };
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, format!("{parent}.wh.{name}"), std::io::empty()).unwrap();
            }
            E::Opaque(dir) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, format!("{dir}/.wh..wh..opq"), std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub struct TestImage {
    pub layers: Vec<Vec<u8>>,
    pub commands: Vec<String>,
    pub config: Vec<u8>,
}

pub fn image(layers: Vec<Vec<u8>>, commands: &[&str]) -> TestImage {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::sha256_of(l).to_string()).collect();
    let mut history =
        vec![json!({"created_by": "/bin/sh -c #(nop)  ENV A=1", "empty_layer": true})];
    for c in commands {
        history.push(json!({"created_by": c}));
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    TestImage {
        layers,
        commands: commands.iter().map(|s| s.to_string()).collect(),
        config: serde_json::to_vec(&config).unwrap(),
    }
}

fn append(b: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, name, data).unwrap();
}

impl TestImage {
    /// A docker-archive (`docker save` layout, layers as `<n>/layer.tar`), manifest last as
    /// Docker writes it.
    pub fn docker_archive(&self, path: &Path, tag: &str) {
        let file = std::fs::File::create(path).unwrap();
        let mut b = tar::Builder::new(file);
        let config_name = format!("{}.json", Digest::sha256_of(&self.config).hex());
        let mut layer_names = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let name = format!("layer{i}/layer.tar");
            append(&mut b, &name, l);
            layer_names.push(name);
        }
        append(&mut b, &config_name, &self.config);
        let manifest = json!([{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]);
        append(&mut b, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
        b.into_inner().unwrap().flush().unwrap();
    }

    /// An OCI image layout directory with gzip-compressed layers.
    pub fn oci_dir(&self, dir: &Path) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| -> (String, usize) {
            let d = Digest::sha256_of(bytes);
            std::fs::write(blobs.join(d.hex()), bytes).unwrap();
            (d.to_string(), bytes.len())
        };
        let mut descs = Vec::new();
        for l in &self.layers {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(l).unwrap();
            let (d, n) = put(&gz.finish().unwrap());
            descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}));
        }
        let (cd, cn) = put(&self.config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
            "layers": descs,
        });
        let (md, mn) = put(&serde_json::to_vec(&manifest).unwrap());
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
                           "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }

    /// Loads the image into a fresh store at `root` under `tag`.
    pub fn load_into_store(&self, root: &Path, tag: &str) {
        let tmp = root.join("in.tar");
        std::fs::create_dir_all(root).unwrap();
        self.docker_archive(&tmp, tag);
        let store = strata_store::Store::open(root).unwrap();
        let f = std::fs::File::open(&tmp).unwrap();
        strata_store::archive::load(
            &store,
            "in.tar",
            f,
            strata_layer::Limits::default(),
            &mut |_| {},
        )
        .unwrap();
        std::fs::remove_file(&tmp).unwrap();
    }
}

/// dive's formula, by hand: `occurrences` lists, per path, the size dive counts for each
/// layer the path occurs in. Returns (efficiency, wasted bytes, inefficient path count).
pub fn dive_formula(occurrences: &[(&str, &[u64])]) -> (f64, u64, usize) {
    let (mut min_sum, mut total, mut wasted, mut count) = (0u64, 0u64, 0u64, 0usize);
    for (_, sizes) in occurrences {
        let cum: u64 = sizes.iter().sum();
        min_sum += sizes.iter().copied().min().unwrap();
        total += cum;
        if sizes.len() >= 2 {
            wasted += cum;
            count += 1;
        }
    }
    let eff = if total == 0 { 1.0 } else { min_sum as f64 / total as f64 };
    (eff, wasted, count)
}

pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("STRATA_FIXTURES").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/strata-fixtures"))
    })?;
    if dir.join("busybox.docker.tar").is_file() {
        Some(dir)
    } else {
        None
    }
}

/// The example binary `cargo test` builds next to the test binaries.
pub fn example_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let bin = dir.join("examples/analyze");
    bin.is_file().then_some(bin)
}

//! Helpers shared by the integration tests: a real server on an ephemeral loopback port and
//! a small HTTP client that returns every status instead of erroring.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_registry_server::{spawn, RunningServer, ServeArgs};

pub fn start(root: &Path, config: Option<&Path>, delete: bool) -> RunningServer {
    spawn(ServeArgs {
        addr: Some("127.0.0.1:0".into()),
        root: Some(root.to_path_buf()),
        config: config.map(Path::to_path_buf),
        delete_enabled: delete,
        log_level: "warn".into(),
        ..Default::default()
    })
    .expect("server starts")
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
        })
    }
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or_default().to_string()
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

/// Sends a request; `url` may be a path (prefixed with `base`).
pub fn req(
    base: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let full = if url.starts_with("http") { url.to_string() } else { format!("{base}{url}") };
    let mut r = agent().request(method, &full);
    for (k, v) in headers {
        r = r.set(k, v);
    }
    let res = match body {
        Some(b) => r.send_bytes(b),
        None => r.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {full}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| (n.clone(), resp.header(&n).unwrap_or("").to_string()))
        .collect();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).expect("read body");
    Resp { status, headers, body }
}

pub fn fixture(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/strata-fixtures").join(name);
    if p.join("index.json").is_file() {
        Some(p)
    } else {
        eprintln!("SKIPPED: fixture {} is absent (build the test fixtures first)", p.display());
        None
    }
}

pub fn have(tool: &str) -> bool {
    let ok =
        Command::new(tool).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: {tool} is not installed");
    }
    ok
}

/// Runs skopeo with a private, empty auth file; panics with its stderr on failure.
pub fn skopeo(args: &[&str]) -> String {
    let out = skopeo_raw(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn skopeo_raw(args: &[&str]) -> std::process::Output {
    let tmp = tempfile::tempdir().expect("tempdir");
    let auth = tmp.path().join("auth.json");
    std::fs::write(&auth, "{}").expect("auth file");
    Command::new("skopeo").env("REGISTRY_AUTH_FILE", &auth).args(args).output().expect("run skopeo")
}

/// Pushes the single image of an OCI layout and returns its manifest digest.
pub fn index_digest(layout: &Path) -> String {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    idx["manifests"][0]["digest"].as_str().expect("digest").to_string()
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Pushes a blob monolithically; returns its digest.
pub fn push_blob(base: &str, repo: &str, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let r = req(
        base,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[("content-type", "application/octet-stream")],
        Some(bytes),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    d
}

/// Pushes a small image (config + one layer) and tags it; returns the manifest digest.
pub fn push_image(base: &str, repo: &str, tag: &str, layer: &[u8]) -> (String, Vec<u8>) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let c = push_blob(base, repo, config);
    let l = push_blob(base, repo, layer);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
    }))
    .unwrap();
    let r = req(
        base,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Some(&manifest),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    (sha256(&manifest), manifest)
}

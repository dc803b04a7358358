//! `strata copy` between docker://, oci:, oci-archive:, docker-archive: and the store,
//! against Debian's docker-registry on loopback, with skopeo and podman reading what strata
//! writes and strata reading what they (and docker) write. Digests must survive every hop.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use sha2::Digest as _;

struct Registry {
    dir: PathBuf,
    addr: String,
}

impl Registry {
    fn start(dir: &Path) -> Option<Registry> {
        if !have("docker-registry") || !have("skopeo") {
            eprintln!("SKIPPED: docker-registry or skopeo missing");
            return None;
        }
        let out = run_ok(
            Command::new(repo_root().join("scripts/peers.sh")).args(["registry", "start"]).arg(dir),
        );
        let addr = out.lines().find_map(|l| l.strip_prefix("REGISTRY_ADDR=")).unwrap().to_string();
        Some(Registry { dir: dir.to_path_buf(), addr })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/peers.sh"))
            .args(["registry", "stop"])
            .arg(&self.dir)
            .output();
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn skopeo(args: &[&str]) -> String {
    run_ok(Command::new("skopeo").args(args))
}

/// The digest of the manifest skopeo reads at `image` (hash of `inspect --raw`).
fn raw_digest(image: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", image])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect --raw {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sha256(&out.stdout)
}

fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let d = sha256(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
    (d, bytes.len())
}

/// A two-platform OCI layout built from the busybox fixture: the amd64 image as it is and
/// an "arm64" twin whose config differs only in its architecture, under one index named
/// `multi`. Returns (layout dir, index digest).
fn multi_platform_layout(env: &Env) -> Option<(PathBuf, String)> {
    let src = fixture("busybox.oci")?;
    let dir = env.path("multi");
    run_ok(Command::new("cp").arg("-r").arg(&src).arg(&dir));
    let index: serde_json::Value = json(&std::fs::read_to_string(dir.join("index.json")).unwrap());
    let m_desc = &index["manifests"][0];
    let m_digest = m_desc["digest"].as_str().unwrap().to_string();
    let m_bytes = std::fs::read(dir.join("blobs/sha256").join(&m_digest[7..])).unwrap();
    let mut manifest = json(std::str::from_utf8(&m_bytes).unwrap());
    let c_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config =
        json(&std::fs::read_to_string(dir.join("blobs/sha256").join(&c_digest[7..])).unwrap());
    config["architecture"] = "arm64".into();
    let (cd, cs) = put_blob(&dir, &serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md2, ms2) = put_blob(&dir, &serde_json::to_vec(&manifest).unwrap());
    let idx = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_digest, "size": m_bytes.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md2, "size": ms2,
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ]
    });
    let (id, is) = put_blob(&dir, &serde_json::to_vec_pretty(&idx).unwrap());
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": id, "size": is,
         "annotations": {"org.opencontainers.image.ref.name": "multi"}}
    ]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    Some((dir, id))
}

/// miette wraps long messages (even inside words): compare without layout characters.
fn loose(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace() && *c != '│').collect()
}

fn last_digest(out: &str) -> String {
    out.trim().rsplit(' ').next().unwrap().to_string()
}

#[test]
fn all_platforms_between_oci_layouts_and_registries_keep_the_index_digest() {
    let env = Env::new();
    let Some((layout, index_digest)) = multi_platform_layout(&env) else {
        eprintln!("SKIPPED: busybox.oci fixture missing");
        return;
    };
    let Some(reg) = Registry::start(&env.path("reg")) else { return };
    let r = &reg.addr;
    let lay = format!("oci:{}:multi", layout.display());
    // skopeo reads the hand-built layout as we do.
    assert_eq!(raw_digest(&lay), index_digest);

    // oci: -> docker:// with --all
    let out = env.ok(&["copy", "--all", &lay, &format!("docker://{r}/m/a:1")]);
    assert_eq!(last_digest(&out), index_digest, "{out}");
    assert!(out.contains("Copied 3 manifest(s), 3 blob(s)"), "{out}");
    assert_eq!(raw_digest(&format!("docker://{r}/m/a:1")), index_digest);
    // Every child is there by digest: skopeo can copy them all.
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{r}/m/a:1"),
        &format!("oci:{}:sk", env.path("sk").display()),
    ]);

    // docker:// -> docker:// with --all (another repository: blobs are mounted)
    let out =
        env.ok(&["copy", "--all", &format!("docker://{r}/m/a:1"), &format!("docker://{r}/m/b:2")]);
    assert_eq!(last_digest(&out), index_digest, "{out}");
    assert_eq!(raw_digest(&format!("docker://{r}/m/b:2")), index_digest);

    // docker:// -> oci: with --all; skopeo reads the layout and copies it back out.
    let out_dir = env.path("out-layout");
    let out = env.ok(&[
        "copy",
        "--all",
        &format!("docker://{r}/m/b:2"),
        &format!("oci:{}:mine", out_dir.display()),
    ]);
    assert_eq!(last_digest(&out), index_digest, "{out}");
    let strata_layout = format!("oci:{}:mine", out_dir.display());
    assert_eq!(raw_digest(&strata_layout), index_digest);
    let inspected = json(&skopeo(&["inspect", &strata_layout]));
    assert_eq!(inspected["Architecture"], "amd64", "{inspected}");
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--dest-tls-verify=false",
        &strata_layout,
        &format!("docker://{r}/m/sk:1"),
    ]);
    assert_eq!(raw_digest(&format!("docker://{r}/m/sk:1")), index_digest);
    if have("oci-image-tool") {
        run_ok(
            Command::new("oci-image-tool")
                .args(["validate", "--type", "image", "--ref", "name=mine"])
                .arg(&out_dir),
        );
    }
    // A second name in the same layout keeps the first one.
    env.ok(&[
        "copy",
        "--platform",
        "linux/arm64",
        &format!("docker://{r}/m/b:2"),
        &format!("oci:{}:arm", out_dir.display()),
    ]);
    let idx = json(&std::fs::read_to_string(out_dir.join("index.json")).unwrap());
    let names: Vec<&str> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert_eq!(names, ["mine", "arm"]);
    assert_eq!(
        json(&skopeo(&["inspect", &format!("oci:{}:arm", out_dir.display())]))["Architecture"],
        "arm64"
    );
    // No temporary files are left in the layout.
    let stray: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // A layout skopeo wrote: strata reads it and the digests match.
    let sk = format!("oci:{}:sk", env.path("sk").display());
    let out = env.ok(&["copy", "--all", &sk, &format!("docker://{r}/m/from-skopeo:1")]);
    assert_eq!(last_digest(&out), index_digest, "{out}");
}

#[test]
fn archives_round_trip_through_skopeo_podman_and_the_store() {
    let env = Env::new();
    let Some(oci) = fixture("busybox.oci") else {
        eprintln!("SKIPPED: busybox.oci fixture missing");
        return;
    };
    let Some(reg) = Registry::start(&env.path("reg")) else { return };
    let r = &reg.addr;
    let src = format!("oci:{}", oci.display());
    let digest = last_digest(&env.ok(&["copy", &src, &format!("docker://{r}/a/bb:1")]));
    assert_eq!(raw_digest(&format!("docker://{r}/a/bb:1")), digest);

    // oci-archive: strata writes, skopeo reads; skopeo writes, strata reads.
    let oa = env.path("bb.oci.tar");
    env.ok(&["copy", &format!("docker://{r}/a/bb:1"), &format!("oci-archive:{}:v1", oa.display())]);
    assert_eq!(raw_digest(&format!("oci-archive:{}:v1", oa.display())), digest);
    let sk_oa = env.path("skopeo.oci.tar");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{r}/a/bb:1"),
        &format!("oci-archive:{}:s", sk_oa.display()),
    ]);
    let out = env.ok(&[
        "copy",
        &format!("oci-archive:{}:s", sk_oa.display()),
        &format!("docker://{r}/a/from-oa:1"),
    ]);
    assert_eq!(last_digest(&out), digest, "{out}");

    // docker-archive written by strata: podman loads it; skopeo reads it; strata reads it back.
    let da = env.path("bb.docker.tar");
    env.ok(&[
        "copy",
        &format!("oci-archive:{}:v1", oa.display()),
        &format!("docker-archive:{}:local/bb:5", da.display()),
    ]);
    assert_eq!(raw_digest(&format!("oci-archive:{}:v1", oa.display())), digest);
    let tags = json(&skopeo(&["inspect", &format!("docker-archive:{}", da.display())]));
    assert_eq!(tags["Architecture"], "amd64");
    let out = env.ok(&[
        "copy",
        &format!("docker-archive:{}:local/bb:5", da.display()),
        &format!("docker://{r}/a/from-da:1"),
    ]);
    assert_eq!(last_digest(&out), digest, "a Docker 25 archive keeps the OCI manifest: {out}");
    if have("podman") {
        let podman = podman(&env.path("podman"));
        let out = run_ok(&mut podman(&["load", "-i", da.to_str().unwrap()]));
        assert!(out.contains("local/bb:5"), "{out}");
        let out = run_ok(&mut podman(&[
            "run",
            "--rm",
            "--network=host",
            "local/bb:5",
            "echo",
            "hello from copy",
        ]));
        assert_eq!(out.trim(), "hello from copy");
        podman_reset(&env.path("podman"));
    } else {
        eprintln!("SKIPPED: podman missing: podman load of a strata docker-archive");
    }

    // Legacy docker-archives written by podman and docker (manifest.json only) are read,
    // and land in a layout skopeo reads, and in the store.
    for name in ["podman.docker.tar", "docker.docker.tar", "busybox.docker.tar"] {
        let Some(archive) = fixture(name) else {
            eprintln!("SKIPPED: fixture {name} missing");
            continue;
        };
        let dir = env.path(&format!("from-{name}"));
        let out = env.ok(&[
            "copy",
            &format!("docker-archive:{}", archive.display()),
            &format!("oci:{}:x", dir.display()),
        ]);
        let d = last_digest(&out);
        assert_eq!(raw_digest(&format!("oci:{}:x", dir.display())), d, "{name}");
        env.ok(&[
            "copy",
            &format!("oci:{}:x", dir.display()),
            &format!("docker://{r}/legacy/{}:1", name.replace('.', "-")),
        ]);
        skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{r}/legacy/{}:1", name.replace('.', "-")),
        ]);
    }

    // The store as both ends.
    env.ok(&["copy", &format!("oci-archive:{}:v1", oa.display()), "containers-storage:st/bb:9"]);
    assert_eq!(env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "st/bb"]), "st/bb:9\n");
    let out = env.ok(&[
        "copy",
        "containers-storage:st/bb:9",
        &format!("oci:{}:back", env.path("back").display()),
    ]);
    assert_eq!(last_digest(&out), digest, "{out}");
    env.ok(&["fsck"]);
}

#[test]
fn bad_transports_paths_and_malicious_archives_get_clear_errors() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (&["copy", "dir:/x", "oci:/y"], "transport \"dir\" is not supported"),
        (&["copy", "busybox", "oci:/y"], "expected one of"),
        (&["copy", "docker:busybox", "oci:/y"], "docker://busybox"),
        (&["copy", "oci:", "oci:/y"], "needs a directory"),
        (
            &["copy", "oci:/nonexistent/strata-x", "oci:/y"],
            "no oci-layout file; the directory does not exist",
        ),
        (
            &["copy", "oci-archive:/nonexistent/x.tar", "oci:/y"],
            "archive not found: /nonexistent/x.tar",
        ),
        (
            &["copy", "--all", "oci:/nonexistent/a", "docker-archive:/tmp/x.tar"],
            "--all cannot write to docker-archive",
        ),
        (
            &["copy", "containers-storage:a", "containers-storage:b"],
            "both ends are the local store",
        ),
    ];
    for (args, want) in cases {
        let err = env.fails(args);
        assert!(loose(&err).contains(&loose(want)), "strata {args:?}: want {want:?} in:\n{err}");
    }
    // A destination directory that is not a layout is refused, not overwritten.
    if let Some(oci) = fixture("busybox.oci") {
        let notlayout = env.path("notlayout");
        std::fs::create_dir_all(&notlayout).unwrap();
        std::fs::write(notlayout.join("precious"), "x").unwrap();
        let err = env.fails(&[
            "copy",
            &format!("oci:{}", oci.display()),
            &format!("oci:{}", notlayout.display()),
        ]);
        assert!(loose(&err).contains("isnotanOCIimagelayout"), "{err}");
        assert!(notlayout.join("precious").exists());
        // Two images and no name: the error lists the names.
        let two = env.path("two");
        env.ok(&["copy", &format!("oci:{}", oci.display()), &format!("oci:{}:a", two.display())]);
        env.ok(&["copy", &format!("oci:{}", oci.display()), &format!("oci:{}:b", two.display())]);
        let err = env.fails(&[
            "copy",
            &format!("oci:{}", two.display()),
            &format!("oci:{}", env.path("t").display()),
        ]);
        assert!(loose(&err).contains("holds2images") && loose(&err).contains("a,b"), "{err}");
        let err = env.fails(&[
            "copy",
            &format!("oci:{}:zz", two.display()),
            &format!("oci:{}", env.path("t").display()),
        ]);
        assert!(loose(&err).contains("hasnoimagenamed\"zz\""), "{err}");
        // A corrupted blob in a layout is caught on read and nothing is written.
        let bad = env.path("bad");
        run_ok(Command::new("cp").arg("-r").arg(&oci).arg(&bad));
        let layer = std::fs::read_dir(bad.join("blobs/sha256"))
            .unwrap()
            .filter_map(|e| e.ok())
            .max_by_key(|e| e.metadata().unwrap().len())
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&layer).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        std::fs::write(&layer, bytes).unwrap();
        let dst = env.path("from-bad");
        let err = env.fails(&[
            "copy",
            &format!("oci:{}", bad.display()),
            &format!("oci:{}:x", dst.display()),
        ]);
        assert!(loose(&err).contains("digestmismatch"), "{err}");
        assert!(!dst.join("index.json").exists(), "nothing named after a failed copy");
    }
    // Path traversal in an archive refuses the whole archive.
    let evil = env.path("evil.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&evil).unwrap());
        let mut h = tar::Header::new_gnu();
        let data = b"pwned";
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"../../etc/pwn");
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        b.finish().unwrap();
    }
    for t in ["oci-archive", "docker-archive"] {
        let err = env.fails(&[
            "copy",
            &format!("{t}:{}", evil.display()),
            &format!("oci:{}", env.path("e").display()),
        ]);
        assert!(
            err.contains("escapes the root") && err.contains("refusing the whole archive"),
            "{err}"
        );
    }
    // An entry claiming an absurd size (a truncated or forged header).
    let huge = env.path("huge.tar");
    {
        let mut h = tar::Header::new_ustar();
        h.set_path(format!("blobs/sha256/{}", "a".repeat(64))).unwrap();
        h.set_size(1 << 40);
        h.set_mode(0o644);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 4096]);
        std::fs::write(&huge, bytes).unwrap();
    }
    let err = env.fails(&[
        "copy",
        &format!("oci-archive:{}", huge.display()),
        &format!("oci:{}", env.path("h").display()),
    ]);
    assert!(loose(&err).contains("truncated"), "{err}");
}

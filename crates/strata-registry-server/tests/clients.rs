//! Real clients: skopeo pushes OCI layouts to the server and pulls them back, with no auth,
//! with htpasswd basic auth, and with bearer tokens from the built-in token service.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn write_auth_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let ro = bcrypt::hash("readonly", 4).unwrap();
    std::fs::write(dir.join("htpasswd"), format!("alice:{hash}\nbob:{ro}\n")).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[auth]\nhtpasswd = {:?}\n{extra}\n[[auth.acl]]\naccount = \"alice\"\nrepository = \"*\"\nactions = [\"pull\", \"push\", \"delete\"]\n[[auth.acl]]\naccount = \"bob\"\nrepository = \"*\"\nactions = [\"pull\"]\n",
            dir.join("htpasswd")
        ),
    )
    .unwrap();
    cfg
}

/// Pushes `layout` to `repo`, pulls it into a fresh layout and checks the digests agree.
fn round_trip(host: &str, layout: &Path, repo: &str, creds: Option<&str>) {
    let work = tempfile::tempdir().unwrap();
    let src = format!("oci:{}:latest", layout.display());
    let dst = format!("docker://{host}/{repo}:v1");
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--dest-creds", c]);
    }
    args.extend([src.as_str(), dst.as_str()]);
    skopeo(&args);
    let want = index_digest(layout);
    let mut insp = vec!["inspect", "--tls-verify=false", "--raw"];
    if let Some(c) = creds {
        insp.extend(["--creds", c]);
    }
    insp.push(&dst);
    let raw = skopeo(&insp);
    assert_eq!(sha256(raw.as_bytes()), want, "the registry serves the manifest byte for byte");
    let out = format!("oci:{}:latest", work.path().join("pulled").display());
    let mut args = vec!["copy", "--src-tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--src-creds", c]);
    }
    args.extend([dst.as_str(), out.as_str()]);
    skopeo(&args);
    assert_eq!(index_digest(&work.path().join("pulled")), want);
}

#[test]
fn skopeo_push_pull_anonymous() {
    let (Some(busybox), Some(debian)) = (fixture("busybox.oci"), fixture("debian.oci")) else {
        return;
    };
    if !have("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), None, false);
    let host = srv.addr.to_string();
    round_trip(&host, &busybox, "library/busybox", None);
    round_trip(&host, &debian, "library/debian", None);
    // Pushing busybox again to another repository: skopeo mounts or re-sends, either works.
    round_trip(&host, &busybox, "other/busybox", None);
    let r = req(&srv.url(), "GET", "/v2/_catalog", &[], None);
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["library/busybox", "library/debian", "other/busybox"])
    );
}

#[test]
fn skopeo_with_basic_auth() {
    let Some(busybox) = fixture("busybox.oci") else { return };
    if !have("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_auth_config(dir.path(), "anonymous_read = false");
    let srv = start(&dir.path().join("root"), Some(&cfg), false);
    let host = srv.addr.to_string();
    round_trip(&host, &busybox, "team/busybox", Some("alice:s3cret"));
    // Anonymous and wrong-password requests are challenged; a read-only user cannot push.
    let r = req(&srv.url(), "GET", "/v2/", &[], None);
    assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic "));
    let src = format!("oci:{}:latest", busybox.display());
    let dst = format!("docker://{host}/team/denied:v1");
    let out = skopeo_raw(&["copy", "--dest-tls-verify=false", &src, &dst]);
    assert!(!out.status.success());
    let out =
        skopeo_raw(&["copy", "--dest-tls-verify=false", "--dest-creds", "alice:wrong", &src, &dst]);
    assert!(!out.status.success());
    let out = skopeo_raw(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob:readonly",
        &src,
        &dst,
    ]);
    assert!(!out.status.success(), "bob may only pull");
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "bob:readonly",
        &format!("docker://{host}/team/busybox:v1"),
    ]);
}

#[test]
fn skopeo_with_token_auth() {
    let Some(busybox) = fixture("busybox.oci") else { return };
    if !have("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_auth_config(
        dir.path(),
        "anonymous_read = true\n[auth.token]\nservice = \"test-registry\"",
    );
    let srv = start(&dir.path().join("root"), Some(&cfg), false);
    let host = srv.addr.to_string();
    round_trip(&host, &busybox, "team/busybox", Some("alice:s3cret"));
    // Anonymous read is on: pull without credentials works, push does not.
    skopeo(&["inspect", "--tls-verify=false", &format!("docker://{host}/team/busybox:v1")]);
    let src = format!("oci:{}:latest", busybox.display());
    let out = skopeo_raw(&[
        "copy",
        "--dest-tls-verify=false",
        &src,
        &format!("docker://{host}/team/anon:v1"),
    ]);
    assert!(!out.status.success());
    // The challenge names the realm, service and scope; the token grants only what the ACL allows.
    let r = req(&srv.url(), "POST", "/v2/team/x/blobs/uploads/", &[], Some(b""));
    assert_eq!(r.status, 401);
    let chal = r.header("www-authenticate").unwrap().to_string();
    assert!(
        chal.contains("service=\"test-registry\"")
            && chal.contains("scope=\"repository:team/x:pull,push\""),
        "{chal}"
    );
    use base64::Engine as _;
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("bob:readonly"));
    let r = req(
        &srv.url(),
        "GET",
        "/token?service=test-registry&scope=repository:team/x:pull,push",
        &[("authorization", &basic)],
        None,
    );
    assert_eq!(r.status, 200);
    let token = r.json()["token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let r = req(
        &srv.url(),
        "POST",
        "/v2/team/x/blobs/uploads/",
        &[("authorization", &bearer)],
        Some(b""),
    );
    assert_eq!(r.status, 401, "bob's token carries pull only");
    let r = req(
        &srv.url(),
        "GET",
        "/v2/team/busybox/tags/list",
        &[("authorization", "Bearer not-a-token")],
        None,
    );
    assert_eq!(r.status, 401);
}

fn podman(work: &Path, args: &[&str]) -> std::process::Output {
    let conf = work.join("containers.conf");
    if !conf.exists() {
        // This machine lacks CAP_SYS_RESOURCE and has hybrid cgroups (see peers.md).
        let hard = Command::new("sh").args(["-c", "ulimit -Hn"]).output().unwrap();
        let hard = String::from_utf8_lossy(&hard.stdout).trim().to_string();
        std::fs::write(
            &conf,
            format!("[containers]\ndefault_ulimits = [\"nofile={hard}:{hard}\", \"nproc=16384:16384\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n"),
        )
        .unwrap();
        std::fs::write(work.join("auth.json"), "{}").unwrap();
    }
    let root = work.join("storage");
    let run = work.join("run");
    Command::new("podman")
        .env("CONTAINERS_CONF", &conf)
        .env("REGISTRY_AUTH_FILE", work.join("auth.json"))
        .arg("--root")
        .arg(&root)
        .arg("--runroot")
        .arg(&run)
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .expect("run podman")
}

#[test]
fn podman_pull_and_push_with_basic_auth() {
    let Some(busybox) = fixture("busybox.oci") else { return };
    if !have("skopeo") || !have("podman") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_auth_config(dir.path(), "anonymous_read = true");
    let srv = start(&dir.path().join("root"), Some(&cfg), false);
    let host = srv.addr.to_string();
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret",
        &format!("oci:{}:latest", busybox.display()),
        &format!("docker://{host}/lib/busybox:v1"),
    ]);
    let work = dir.path().join("podman");
    std::fs::create_dir_all(&work).unwrap();
    let src = format!("{host}/lib/busybox:v1");
    let out = podman(&work, &["pull", "--tls-verify=false", &src]);
    assert!(
        out.status.success(),
        "anonymous podman pull: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dst = format!("docker://{host}/podman/busybox:v2");
    let out = podman(&work, &["push", "--tls-verify=false", &src, &dst]);
    assert!(!out.status.success(), "anonymous push must be refused");
    let out = podman(&work, &["push", "--tls-verify=false", "--creds", "alice:s3cret", &src, &dst]);
    assert!(out.status.success(), "podman push: {}", String::from_utf8_lossy(&out.stderr));
    let raw = skopeo(&["inspect", "--tls-verify=false", &dst]);
    assert!(raw.contains("\"v2\""), "{raw}");
    let _ = podman(&work, &["rmi", "-a", "-f"]);
}

#[test]
fn podman_push_and_pull_without_auth_and_pull_with_creds() {
    let Some(busybox) = fixture("busybox.oci") else { return };
    if !have("skopeo") || !have("podman") {
        return;
    }
    let want = index_digest(&busybox);
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("podman");
    std::fs::create_dir_all(&work).unwrap();
    let src = format!("oci:{}:latest", busybox.display());

    // An open registry: podman pulls and pushes without credentials.
    let open = start(&dir.path().join("open"), None, false);
    let host = open.addr.to_string();
    skopeo(&["copy", "--dest-tls-verify=false", &src, &format!("docker://{host}/lib/busybox:v1")]);
    let out = podman(&work, &["pull", "--tls-verify=false", &format!("{host}/lib/busybox:v1")]);
    assert!(out.status.success(), "podman pull: {}", String::from_utf8_lossy(&out.stderr));
    let dst = format!("docker://{host}/podman/anon:v2");
    let out =
        podman(&work, &["push", "--tls-verify=false", &format!("{host}/lib/busybox:v1"), &dst]);
    assert!(out.status.success(), "podman push: {}", String::from_utf8_lossy(&out.stderr));
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &dst]);
    let config = serde_json::from_str::<serde_json::Value>(&raw).unwrap()["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let src_raw = skopeo(&["inspect", "--raw", &src]);
    let src_config = serde_json::from_str::<serde_json::Value>(&src_raw).unwrap()["config"]
        ["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(config, src_config, "podman pushed the same image (it may recompress layers)");
    let _ = podman(&work, &["rmi", "-a", "-f"]);

    // No anonymous read: podman pulls only with credentials.
    let cfg = write_auth_config(dir.path(), "anonymous_read = false");
    let closed = start(&dir.path().join("closed"), Some(&cfg), false);
    let host = closed.addr.to_string();
    let image = format!("{host}/team/busybox:v1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret",
        &src,
        &format!("docker://{image}"),
    ]);
    let out = podman(&work, &["pull", "--tls-verify=false", &image]);
    assert!(!out.status.success(), "an anonymous pull must be refused");
    let out = podman(&work, &["pull", "--tls-verify=false", "--creds", "bob:readonly", &image]);
    assert!(out.status.success(), "podman pull --creds: {}", String::from_utf8_lossy(&out.stderr));
    let out = podman(&work, &["image", "inspect", "--format", "{{.Digest}}", &image]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "the source manifest digest");
    let _ = podman(&work, &["rmi", "-a", "-f"]);
}

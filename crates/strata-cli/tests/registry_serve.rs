//! `strata registry serve` with real clients on loopback: `strata push`/`pull`/`login`
//! with and without htpasswd auth, and Debian's dockerd pulling from it. Every image must
//! keep the manifest digest of its source (the OCI layout fixture).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// strata with a private store and a private Docker config directory.
fn strata(env: &Env, args: &[&str]) -> Command {
    let mut c = env.cmd();
    c.env("DOCKER_CONFIG", env.path("docker")).args(args);
    c
}

fn ok(env: &Env, args: &[&str]) -> String {
    run_ok(&mut strata(env, args))
}

fn fails(env: &Env, args: &[&str]) -> String {
    let out = strata(env, args).output().unwrap();
    assert!(!out.status.success(), "strata {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `strata login --password-stdin`; returns (success, stdout, stderr).
fn login(env: &Env, host: &str, user: &str, password: &str) -> (bool, String, String) {
    let mut child = strata(env, &["login", "-u", user, "--password-stdin", host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The manifest digest an OCI layout fixture's index names.
fn layout_digest(layout: &Path) -> String {
    let index = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    index["manifests"][0]["digest"].as_str().unwrap().to_string()
}

/// Loads an OCI archive fixture into `env` and tags it `target`; returns the image ID.
fn load_and_tag(env: &Env, archive: &Path, target: &str) -> String {
    ok(env, &["load", "-q", "-i", archive.to_str().unwrap()]);
    let id = ok(env, &["images", "-q", "--no-trunc"]);
    let id = id.lines().next().expect("one image loaded").trim().to_string();
    ok(env, &["tag", &id, target]);
    id
}

/// The digest from `strata push` output (`<tag>: digest: sha256:... size: N`).
fn pushed_digest(out: &str, tag: &str) -> String {
    let prefix = format!("{tag}: digest: ");
    let line = out.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("{out}"));
    line.split(' ').next().unwrap().to_string()
}

/// Pulls `target` into a fresh store (with `env`'s Docker config) and checks the digest and
/// image ID survived the round trip.
fn pull_and_check(env: &Env, target: &str, digest: &str, id: &str) {
    let env2 = Env::new();
    if env.path("docker/config.json").exists() {
        std::fs::create_dir_all(env2.path("docker")).unwrap();
        std::fs::copy(env.path("docker/config.json"), env2.path("docker/config.json")).unwrap();
    }
    let out = ok(&env2, &["pull", target]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    let digests = ok(&env2, &["images", "--digests", "--format", "{{.Digest}}"]);
    assert_eq!(digests.trim(), digest);
    assert_eq!(ok(&env2, &["images", "-q", "--no-trunc"]).trim(), id);
}

#[test]
fn push_and_pull_without_auth_keep_the_source_digest() {
    let (Some(archive), Some(layout)) = (fixture("debian.oci.tar"), fixture("debian.oci")) else {
        return;
    };
    let env = Env::new();
    let srv = StrataRegistry::start(&env.path("registry"), &[]);
    let want = layout_digest(&layout);
    let target = format!("{}/library/debian:bookworm", srv.addr);
    let id = load_and_tag(&env, &archive, &target);

    let out = ok(&env, &["push", &target]);
    assert!(
        out.contains(&format!("The push refers to repository [{}/library/debian]", srv.addr)),
        "{out}"
    );
    assert!(out.contains(": Pushed"), "{out}");
    assert_eq!(pushed_digest(&out, "bookworm"), want, "the registry got the source manifest");
    // A second push finds every blob there already.
    let out = ok(&env, &["push", &target]);
    assert!(out.contains("Layer already exists") && !out.contains(": Pushed"), "{out}");
    assert_eq!(pushed_digest(&out, "bookworm"), want);

    // The debian layer (tens of MB) comes back through the server's sendfile path.
    pull_and_check(&env, &target, &want, &id);
    let by_digest = format!("{}/library/debian@{want}", srv.addr);
    pull_and_check(&env, &by_digest, &want, &id);
    if have("skopeo") {
        let out = run_ok(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ]));
        assert_eq!(json(&out)["Digest"], want.as_str());
    }
}

#[test]
fn push_and_pull_with_htpasswd_and_login() {
    let (Some(archive), Some(layout)) = (fixture("busybox.oci.tar"), fixture("busybox.oci")) else {
        return;
    };
    if !have("htpasswd") {
        return;
    }
    let env = Env::new();
    let htpasswd = env.path("htpasswd");
    run_ok(
        Command::new(repo_root().join("scripts/peers.sh"))
            .arg("htpasswd")
            .arg(&htpasswd)
            .args(["alice", "s3cret-pw"]),
    );
    let srv =
        StrataRegistry::start(&env.path("registry"), &["--htpasswd", htpasswd.to_str().unwrap()]);
    let want = layout_digest(&layout);
    let target = format!("{}/team/busybox:1.0", srv.addr);
    let id = load_and_tag(&env, &archive, &target);

    let err = fails(&env, &["push", &target]);
    assert!(err.contains("authentication required") && err.contains("strata login"), "{err}");
    let (ok_, _, err) = login(&env, &srv.addr, "alice", "wrong");
    assert!(!ok_, "a wrong password must be refused");
    assert!(!env.path("docker/config.json").exists(), "nothing stored on failure: {err}");
    let (ok_, out, err) = login(&env, &srv.addr, "alice", "s3cret-pw");
    assert!(ok_, "{err}");
    assert_eq!(out, "Login Succeeded\n");

    let out = ok(&env, &["push", &target]);
    assert_eq!(pushed_digest(&out, "1.0"), want);
    pull_and_check(&env, &target, &want, &id);

    // Without credentials, pulls are refused too (no anonymous read by default).
    let anon = Env::new();
    let err = fails(&anon, &["pull", &target]);
    assert!(err.contains("authentication required"), "{err}");
    assert_eq!(
        ok(&env, &["logout", &srv.addr]),
        format!("Removing login credentials for {}\n", srv.addr)
    );
    let err = fails(&env, &["pull", &target]);
    assert!(err.contains("authentication required"), "{err}");
}

/// A private dockerd (scripts/peers.sh: own data root, no bridge, no iptables), stopped by
/// its PID file when dropped.
struct Dockerd {
    dir: PathBuf,
    host: String,
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/peers.sh"))
            .args(["dockerd", "stop"])
            .arg(&self.dir)
            .output();
    }
}

fn docker(d: &Dockerd, args: &[&str]) -> std::process::Output {
    // Bounded: a pull that hangs fails the test instead of the run.
    Command::new("timeout")
        .args(["180", "/usr/bin/docker", "-H", &d.host])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn dockerd_pulls_from_strata_registry() {
    if !Path::new("/usr/sbin/dockerd").exists() || !Path::new("/usr/bin/docker").exists() {
        eprintln!("SKIPPED: /usr/sbin/dockerd or /usr/bin/docker missing (package docker.io)");
        return;
    }
    let (Some(archive), Some(layout)) = (fixture("busybox.oci.tar"), fixture("busybox.oci")) else {
        return;
    };
    let env = Env::new();
    let srv = StrataRegistry::start(&env.path("registry"), &[]);
    let want = layout_digest(&layout);
    let target = format!("{}/lib/busybox:v1", srv.addr);
    let id = load_and_tag(&env, &archive, &target);
    assert_eq!(pushed_digest(&ok(&env, &["push", &target]), "v1"), want);

    // Unix socket paths are limited to 108 bytes: keep the dockerd dir short.
    let scratch = tempfile::Builder::new().prefix("sd").tempdir_in("/tmp").unwrap();
    let dir = scratch.path().join("d");
    let out = Command::new(repo_root().join("scripts/peers.sh"))
        .args(["dockerd", "start"])
        .arg(&dir)
        .arg(format!("--insecure-registry={}", srv.addr))
        .output()
        .unwrap();
    assert!(out.status.success(), "dockerd start: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let host = stdout.lines().find_map(|l| l.strip_prefix("DOCKER_HOST=")).unwrap().to_string();
    let d = Dockerd { dir, host };

    let out = docker(&d, &["pull", &target]);
    assert!(
        out.status.success(),
        "docker pull: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled = String::from_utf8_lossy(&out.stdout);
    assert!(pulled.contains(&format!("Digest: {want}")), "{pulled}");
    let out =
        docker(&d, &["image", "inspect", "--format", "{{json .RepoDigests}} {{.Id}}", &target]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let inspect = String::from_utf8_lossy(&out.stdout);
    let repo_digest = format!("{}/lib/busybox@{want}", srv.addr);
    assert_eq!(inspect.trim(), format!("[\"{repo_digest}\"] {id}"));
    drop(d);
}

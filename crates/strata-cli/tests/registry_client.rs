//! `strata pull/push/login/logout` against Debian's docker-registry on loopback, with and
//! without htpasswd, interoperating with skopeo, and surviving SIGKILL half-way.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// A docker-registry on loopback, stopped by its PID file when dropped.
struct Registry {
    dir: std::path::PathBuf,
    addr: String,
}

impl Registry {
    fn start(dir: &Path, htpasswd: Option<(&str, &str)>) -> Option<Registry> {
        if !have("docker-registry") {
            return None;
        }
        let peers = repo_root().join("scripts/peers.sh");
        let mut cmd = Command::new(&peers);
        cmd.args(["registry", "start"]).arg(dir);
        if let Some((u, p)) = htpasswd {
            std::fs::create_dir_all(dir).unwrap();
            let file = dir.join("htpasswd");
            run_ok(Command::new(&peers).arg("htpasswd").arg(&file).args([u, p]));
            cmd.arg("--htpasswd").arg(&file);
        }
        let out = run_ok(&mut cmd);
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

fn skopeo_digest(reference: &str) -> String {
    let out = run_ok(Command::new("skopeo").args(["inspect", "--tls-verify=false", reference]));
    json(&out)["Digest"].as_str().unwrap().to_string()
}

#[test]
fn login_push_pull_logout_with_htpasswd() {
    let env = Env::new();
    let Some(archive) = fixture("busybox.docker.tar") else { return };
    let Some(reg) = Registry::start(&env.path("reg"), Some(("bob", "pw-123"))) else { return };
    ok(&env, &["load", "-q", "-i", archive.to_str().unwrap()]);
    let target = format!("{}/team/busybox:1.0", reg.addr);
    ok(&env, &["tag", "busybox", &target]);

    let err = fails(&env, &["push", &target]);
    assert!(err.contains("authentication required") && err.contains("strata login"), "{err}");

    // Wrong password: refused, nothing stored.
    let mut c = strata(&env, &["login", "-u", "bob", "--password-stdin", &reg.addr]);
    let out =
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    out.stdin.as_ref().unwrap().write_all(b"nope\n").unwrap();
    let out = out.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(!env.path("docker/config.json").exists());

    let mut c = strata(&env, &["login", "-u", "bob", "--password-stdin", &reg.addr]);
    let child =
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.as_ref().unwrap().write_all(b"pw-123\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    // Exactly what docker writes: base64 of user:password under the host.
    let cfg = json(&std::fs::read_to_string(env.path("docker/config.json")).unwrap());
    assert_eq!(cfg["auths"][&reg.addr]["auth"], "Ym9iOnB3LTEyMw==");

    let out = ok(&env, &["push", &target]);
    assert!(
        out.contains(&format!("The push refers to repository [{}/team/busybox]", reg.addr)),
        "{out}"
    );
    assert!(out.contains(": Pushed"), "{out}");
    let digest_line =
        out.lines().find(|l| l.starts_with("1.0: digest: sha256:")).unwrap().to_string();
    let digest = digest_line.split(' ').nth(2).unwrap().to_string();

    let env2 = Env::new();
    std::fs::create_dir_all(env2.path("docker")).unwrap();
    std::fs::copy(env.path("docker/config.json"), env2.path("docker/config.json")).unwrap();
    let out = ok(&env2, &["pull", &target]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    assert!(out.ends_with(&format!("{target}\n")), "{out}");
    let out = ok(&env2, &["pull", "-q", &target]);
    assert_eq!(out, format!("{target}\n"));
    let ids = ok(&env2, &["images", "-q", "--no-trunc"]);
    let ids1 = ok(&env, &["images", "-q", "--no-trunc", "busybox"]);
    assert_eq!(ids.trim(), ids1.trim());

    assert_eq!(
        ok(&env2, &["logout", &reg.addr]),
        format!("Removing login credentials for {}\n", reg.addr)
    );
    assert_eq!(ok(&env2, &["logout", &reg.addr]), format!("Not logged in to {}\n", reg.addr));
    let err = fails(&env2, &["pull", &target]);
    assert!(err.contains("authentication required"), "{err}");
}

#[test]
fn credential_helper_is_used_for_login_and_pull() {
    let env = Env::new();
    let Some(archive) = fixture("busybox.docker.tar") else { return };
    let Some(reg) = Registry::start(&env.path("reg"), Some(("carol", "hunter2"))) else { return };
    // A docker-credential-* program speaking the helper protocol, keeping secrets in a file.
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let secrets = env.path("secrets.json");
    let helper = bin.join("docker-credential-strtest");
    std::fs::write(
        &helper,
        format!(
            "#!/usr/bin/env python3\nimport json,sys,os\np={secrets:?}\nd=json.load(open(p)) if os.path.exists(p) else {{}}\n\
a=sys.argv[1]\ni=sys.stdin.read()\n\
if a=='store':\n  j=json.loads(i); d[j['ServerURL']]=j; json.dump(d,open(p,'w'))\n\
elif a=='get':\n  k=i.strip()\n  if k not in d: print('credentials not found in native keychain'); sys.exit(1)\n  print(json.dumps({{'Username':d[k]['Username'],'Secret':d[k]['Secret']}}))\n\
elif a=='erase':\n  d.pop(i.strip(),None); json.dump(d,open(p,'w'))\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(env.path("docker")).unwrap();
    std::fs::write(env.path("docker/config.json"), r#"{"credsStore": "strtest"}"#).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());

    let mut c = strata(&env, &["login", "-u", "carol", "--password-stdin", &reg.addr]);
    c.env("PATH", &path);
    let child =
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.as_ref().unwrap().write_all(b"hunter2").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored = json(&std::fs::read_to_string(&secrets).unwrap());
    assert_eq!(stored[&reg.addr]["Secret"], "hunter2");
    let cfg = std::fs::read_to_string(env.path("docker/config.json")).unwrap();
    assert!(!cfg.contains("hunter2") && cfg.contains("\"credsStore\": \"strtest\""), "{cfg}");

    ok(&env, &["load", "-q", "-i", archive.to_str().unwrap()]);
    let target = format!("{}/helper/bb:1", reg.addr);
    ok(&env, &["tag", "busybox", &target]);
    let out = strata(&env, &["push", "-q", &target]).env("PATH", &path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = strata(&env, &["logout", &reg.addr]).env("PATH", &path).output().unwrap();
    assert!(out.status.success());
    assert_eq!(json(&std::fs::read_to_string(&secrets).unwrap()), serde_json::json!({}));
}

#[test]
fn skopeo_reads_what_strata_pushes_and_the_reverse() {
    let env = Env::new();
    let (Some(archive), Some(oci)) = (fixture("busybox.docker.tar"), fixture("busybox.oci")) else {
        return;
    };
    if !have("skopeo") {
        return;
    }
    let Some(reg) = Registry::start(&env.path("reg"), None) else { return };
    ok(&env, &["load", "-q", "-i", archive.to_str().unwrap()]);
    let pushed = format!("{}/interop/from-strata:1", reg.addr);
    ok(&env, &["tag", "busybox", &pushed]);
    let out = ok(&env, &["push", &pushed]);
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("1: digest: "))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(skopeo_digest(&format!("docker://{pushed}")), digest);
    // skopeo pulls it whole (it verifies every blob).
    run_ok(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{pushed}"),
        &format!("oci:{}:x", env.path("copy").display()),
    ]));

    // The reverse: skopeo pushes an OCI layout, strata pulls it, same digest.
    let from_skopeo = format!("{}/interop/from-skopeo:2", reg.addr);
    run_ok(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}", oci.display()),
        &format!("docker://{from_skopeo}"),
    ]));
    let want = skopeo_digest(&format!("docker://{from_skopeo}"));
    let env2 = Env::new();
    let out = ok(&env2, &["pull", &from_skopeo]);
    assert!(out.contains(&format!("Digest: {want}")), "{out}");
    let digests = ok(&env2, &["images", "--digests", "--format", "{{.Digest}}"]);
    assert_eq!(digests.trim(), want);
    // And pushes it back under another name: the registry gets the same manifest bytes.
    let again = format!("{}/interop/round-trip:3", reg.addr);
    ok(&env2, &["tag", &from_skopeo, &again]);
    let out = ok(&env2, &["push", &again]);
    assert!(out.contains("Mounted from interop/from-skopeo"), "{out}");
    assert_eq!(skopeo_digest(&format!("docker://{again}")), want);
}

#[test]
fn pull_killed_half_way_resumes_without_downloading_finished_layers() {
    let env = Env::new();
    let Some(big) = fixture("big.oci") else { return };
    if !have("skopeo") {
        return;
    }
    let Some(reg) = Registry::start(&env.path("reg"), None) else { return };
    let image = format!("{}/big/image:1", reg.addr);
    run_ok(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}", big.display()),
        &format!("docker://{image}"),
    ]));
    let mut child = strata(&env, &["pull", "--max-concurrent", "1", &image])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut completed = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.ends_with(": Pull complete") {
            completed += 1;
            if completed == 2 {
                break;
            }
        }
    }
    // SAFETY: kill(2) on the PID of the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert!(!status.success(), "the pull finished before it could be killed");
    assert_eq!(completed, 2);
    assert_eq!(ok(&env, &["images", "-q"]), "", "no image recorded by the killed pull");

    let out = ok(&env, &["pull", &image]);
    let present = out.lines().filter(|l| l.ends_with(": Already exists")).count();
    let fetched = out.lines().filter(|l| l.ends_with(": Pull complete")).count();
    assert!(present >= 2, "finished layers are not downloaded again: {out}");
    assert_eq!(present + fetched, 5, "{out}");
    assert!(
        out.contains(&format!("Digest: {}", skopeo_digest(&format!("docker://{image}")))),
        "{out}"
    );
    ok(&env, &["fsck"]);
}

#[test]
fn copy_between_registry_repositories_and_the_store() {
    let env = Env::new();
    let Some(archive) = fixture("busybox.docker.tar") else { return };
    let Some(reg) = Registry::start(&env.path("reg"), None) else { return };
    ok(&env, &["load", "-q", "-i", archive.to_str().unwrap()]);
    let a = format!("{}/copy/a:1", reg.addr);
    let b = format!("{}/copy/b:2", reg.addr);
    let out = ok(&env, &["copy", "containers-storage:busybox:latest", &format!("docker://{a}")]);
    let digest = out.trim().rsplit(' ').next().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{out}");
    let out = ok(&env, &["copy", &format!("docker://{a}"), &format!("docker://{b}")]);
    assert!(out.contains("Mounted from copy/a") && out.ends_with(&format!("{digest}\n")), "{out}");
    let env2 = Env::new();
    let out = ok(&env2, &["copy", &format!("docker://{b}"), "containers-storage:local/copy:7"]);
    assert!(out.ends_with(&format!("{digest}\n")), "{out}");
    assert_eq!(
        ok(&env2, &["images", "--format", "{{.Repository}}:{{.Tag}}", "local/copy"]),
        "local/copy:7\n"
    );
    let err = fails(&env, &["copy", "dir:/tmp/x", &format!("docker://{b}")]);
    assert!(err.contains("transport \"dir\" is not supported"), "{err}");
}

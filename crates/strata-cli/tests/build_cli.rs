//! `strata build`'s Docker flags beyond the Dockerfile: base images pulled from a registry
//! (`strata registry serve` on loopback) and `--pull`, `--no-cache-filter`, `--platform`,
//! `--output`, `--compression`, a context on stdin, Ctrl-C, and `strata builder du|prune`.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{json, with_busybox, write, Env, StrataRegistry};

/// `strata build --progress plain ARGS... CTX`: (success, stderr).
fn build(env: &Env, ctx: &Path, extra: &[&str]) -> (bool, String) {
    let out = env
        .cmd()
        .env("DOCKER_CONFIG", env.path("docker"))
        .args(["build", "--progress", "plain"])
        .args(extra)
        .arg(ctx)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn build_ok(env: &Env, ctx: &Path, extra: &[&str]) -> String {
    let (ok, err) = build(env, ctx, extra);
    assert!(ok, "build failed:\n{err}");
    err
}

fn cached(err: &str, id: usize) -> bool {
    err.lines().any(|l| l == format!("#{id} CACHED"))
}

#[test]
fn missing_base_images_are_pulled_and_pull_refreshes_them() {
    let Some(env) = with_busybox() else { return };
    let srv = StrataRegistry::start(&env.path("registry"), &[]);
    let base = format!("{}/lib/base:1", srv.addr);
    // Publish a base image: busybox plus a marker file.
    let ctx = env.path("base");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo one > /version\n");
    build_ok(&env, &ctx, &["-t", &base]);
    env.ok(&["push", &base]);

    // A fresh store has no base: the build pulls it, as Docker does.
    let fresh = Env::new();
    let app = env.path("app");
    write(&app, "Dockerfile", &format!("FROM {base}\nRUN cat /version > /seen\n"));
    let err = build_ok(&fresh, &app, &["-t", "app:1"]);
    assert!(err.contains(&format!("FROM {base}")), "{err}");
    assert!(fresh.ok(&["images", "--format", "{{.Repository}}"]).contains("lib/base"));

    // A new base under the same tag: a plain rebuild keeps the stored one (all cached),
    // --pull fetches it and the RUN sees the new file.
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo two > /version\n");
    build_ok(&env, &ctx, &["-t", &base]);
    env.ok(&["push", &base]);
    let err = build_ok(&fresh, &app, &["-t", "app:1"]);
    assert!(cached(&err, 2), "without --pull the stored base is used:\n{err}");
    let err = build_ok(&fresh, &app, &["--pull", "-t", "app:2"]);
    assert!(!cached(&err, 2), "--pull gave a new base, so the RUN ran again:\n{err}");
    let out = env.path("app2");
    fresh.ok(&[
        "build",
        "-q",
        "-o",
        &format!("type=local,dest={}", out.display()),
        app.to_str().unwrap(),
    ]);
    assert_eq!(fs::read_to_string(out.join("seen")).unwrap(), "two\n");

    // A name no registry has is an error at the FROM line.
    write(&app, "Dockerfile", &format!("FROM {}/lib/nothing:1\nRUN true\n", srv.addr));
    let (ok, err) = build(&fresh, &app, &[]);
    assert!(!ok);
    assert!(err.contains("lib/nothing:1 is not in the store"), "{err}");
    assert!(err.contains("manifest not found"), "{err}");
}

#[test]
fn no_cache_filter_reruns_only_the_named_stage() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS deps\nRUN echo deps > /deps\n\
         FROM busybox AS app\nCOPY --from=deps /deps /deps\nRUN echo app > /app\n",
    );
    build_ok(&env, &ctx, &[]);
    let err = build_ok(&env, &ctx, &["--no-cache-filter", "app"]);
    assert!(cached(&err, 2), "the deps stage stays cached:\n{err}");
    assert!(!cached(&err, 4) && !cached(&err, 5), "the app stage ran:\n{err}");
}

#[test]
fn platform_other_than_the_host_is_refused() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN true\n");
    let host = format!("linux/{}", if cfg!(target_arch = "x86_64") { "amd64" } else { "arm64" });
    build_ok(&env, &ctx, &["--platform", &host]);
    let other = if host.ends_with("amd64") { "linux/arm64" } else { "linux/amd64" };
    let (ok, err) = build(&env, &ctx, &["--platform", other]);
    assert!(!ok);
    assert!(err.contains(other) && err.contains("emulation"), "{err}");
}

#[test]
fn outputs_write_archives_and_filesystems() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "hello.txt", "hello\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nCOPY hello.txt /srv/\nRUN rm /bin/vi && echo built > /srv/built\n",
    );
    let (oci, docker, local, tar) =
        (env.path("o.tar"), env.path("d.tar"), env.path("rootfs"), env.path("fs.tar"));
    build_ok(
        &env,
        &ctx,
        &[
            "-t",
            "out:1",
            "--output",
            &format!("type=oci,dest={}", oci.display()),
            "--output",
            &format!("type=docker,dest={}", docker.display()),
            "-o",
            &format!("type=local,dest={}", local.display()),
            "-o",
            &format!("type=tar,dest={}", tar.display()),
        ],
    );
    // Written as `save -o` writes its archives: 0644, not a temporary file's 0600.
    use std::os::unix::fs::PermissionsExt;
    for f in [&oci, &docker, &tar] {
        assert_eq!(fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o644, "{}", f.display());
    }
    // The image archives load into another store as the same image.
    let id = json(&env.ok(&["inspect", "out:1"]))[0]["Id"].as_str().unwrap().to_string();
    for archive in [&oci, &docker] {
        let other = Env::new();
        other.ok(&["load", "-i", archive.to_str().unwrap()]);
        let loaded = json(&other.ok(&["inspect", &id]));
        assert_eq!(loaded[0]["Id"], id.as_str(), "{}", archive.display());
    }
    // The filesystem exports are the merged image: whiteouts applied.
    assert_eq!(fs::read_to_string(local.join("srv/hello.txt")).unwrap(), "hello\n");
    assert_eq!(fs::read_to_string(local.join("srv/built")).unwrap(), "built\n");
    assert!(local.join("bin/busybox").is_file());
    assert!(!local.join("bin/vi").exists(), "the RUN's deletion is applied");
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(fs::File::open(&tar).unwrap());
    for e in ar.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert!(names.iter().any(|n| n == "srv/built"), "{names:?}");
    assert!(!names.iter().any(|n| n == "bin/vi" || n.contains(".wh.")), "{names:?}");

    let (ok, err) = build(&env, &ctx, &["-o", "type=registry,dest=x"]);
    assert!(!ok && err.contains("type=registry is not supported"), "{err}");
}

#[test]
fn zstd_compression_gives_zstd_layers() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo z > /z\n");
    let oci = env.path("z.tar");
    build_ok(
        &env,
        &ctx,
        &["--compression", "zstd", "-t", "z:1", "-o", &format!("type=oci,dest={}", oci.display())],
    );
    let dir = env.path("z");
    common::untar(&oci, &dir);
    let index = json(&fs::read_to_string(dir.join("index.json")).unwrap());
    let digest = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:");
    let manifest = json(&fs::read_to_string(dir.join("blobs/sha256").join(digest)).unwrap());
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(types.last(), Some(&"application/vnd.oci.image.layer.v1.tar+zstd"), "{types:?}");
}

#[test]
fn a_context_or_a_dockerfile_on_stdin() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "app.txt", "from the tar\n");
    write(&ctx, "Dockerfile", "FROM busybox\nCOPY app.txt /app.txt\nRUN cat /app.txt\n");
    // Plain, then gzip, bzip2 and xz, as Docker takes them.
    for (i, flag) in ["-c", "-cz", "-cj", "-cJ"].into_iter().enumerate() {
        let out = Command::new("tar").args([flag, "-C"]).arg(&ctx).arg(".").output().unwrap();
        assert!(out.status.success(), "tar {flag}: {}", String::from_utf8_lossy(&out.stderr));
        let tarball = out.stdout;
        let mut child = env
            .cmd()
            .args(["build", "--progress", "plain", "-t", "stdin:1", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&tarball).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tar {flag}: {err}");
        if i > 0 {
            // The same files in another temporary directory: the content-based keys hit.
            assert!(err.contains("#2 CACHED") && err.contains("#3 CACHED"), "{err}");
        } else {
            assert!(err.contains("from the tar"), "{err}");
        }
    }
    // A Dockerfile on stdin: no context at all.
    let mut child = env
        .cmd()
        .args(["build", "-q", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"FROM busybox\nRUN echo no context\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sha256:"));
}

#[test]
fn ctrl_c_stops_the_build_and_cleans_up() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo started && sleep 60\n");
    let mut child = env
        .cmd()
        .args(["build", "--progress", "plain", ctx.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines.by_ref() {
        if line.unwrap().ends_with(" started") || Instant::now() > deadline {
            break;
        }
    }
    let sent = Instant::now();
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(10), "took {:?}", sent.elapsed());
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("cancelled")), "{rest:?}");
    let tmp = env.root().join("build-tmp");
    let left: Vec<_> = fs::read_dir(&tmp).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(
        left.is_empty(),
        "scratch directories left: {:?}",
        left.iter().map(|e| e.path()).collect::<Vec<_>>()
    );
    // The store is fine: the next build runs.
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo again\n");
    build_ok(&env, &ctx, &[]);
}

#[test]
fn builder_du_and_prune() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "big.bin", &"x".repeat(300_000));
    write(&ctx, "Dockerfile", "FROM busybox\nCOPY big.bin /big.bin\nRUN echo meta\n");
    build_ok(&env, &ctx, &["-t", "du:1"]);
    let du = env.ok(&["builder", "du"]);
    assert!(du.starts_with("ID "), "{du}");
    assert!(du.contains("RECLAIMABLE") && du.contains("Total:"), "{du}");
    // The COPY's layer is the image's: shared, not reclaimable.
    assert!(du.lines().any(|l| l.contains(" false ")), "{du}");

    // `system df` counts the same entries.
    let df = env.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Size}}"]);
    let row = df.lines().find(|l| l.starts_with("Build Cache ")).unwrap_or_else(|| panic!("{df}"));
    assert!(!row.starts_with("Build Cache 0 ") && !row.ends_with(" 0B"), "{df}");
    let verbose = env.ok(&["system", "df", "-v"]);
    assert!(verbose.contains("CACHE ID") && verbose.contains(" regular "), "{verbose}");

    // Nothing is older than an hour; a dangling prune keeps what images share.
    let out = env.ok(&["builder", "prune", "-f", "--filter", "until=1h"]);
    assert!(!out.contains("Deleted build cache objects"), "{out}");
    env.ok(&["rmi", "du:1"]);
    let out = env.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("Deleted build cache objects"), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    let err = build_ok(&env, &ctx, &["-t", "du:1"]);
    assert!(!cached(&err, 2), "the pruned COPY runs again:\n{err}");
    env.ok(&["builder", "prune", "-a", "-f"]);
    let du = env.ok(&["builder", "du"]);
    assert_eq!(du.lines().count(), 5, "only the header and totals are left: {du}");
    let bad =
        env.cmd().args(["builder", "prune", "-f", "--filter", "until=soon"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("until"));
}

//! `strata build` end to end: real images from the busybox fixture, RUN in the sandbox, and
//! the results checked by building on them (their RUN steps run the built image).

mod common;

use std::fs;
use std::path::Path;

use common::{fixture, json, with_busybox, write, Env};

fn build(env: &Env, ctx: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    env.cmd().args(&args).output().unwrap()
}

fn build_ok(env: &Env, ctx: &Path, extra: &[&str]) -> String {
    let out = build(env, ctx, extra);
    assert!(
        out.status.success(),
        "build failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn builds_a_busybox_image_with_run_copy_and_metadata() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "hello.txt", "hi\n");
    write(&ctx, "sub/a.txt", "a\n");
    write(&ctx, "sub/b.log", "ignored\n");
    write(&ctx, ".dockerignore", "**/*.log\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         ENV GREETING=hello APP=/app\n\
         WORKDIR $APP\n\
         COPY hello.txt ./\n\
         COPY sub/ sub/\n\
         RUN echo \"$GREETING from run\" > run.txt && echo tester:x:1234:1234::/home/tester:/bin/sh >> /etc/passwd \
             && echo tester:x:1234: >> /etc/group\n\
         COPY --chown=tester:tester --chmod=640 hello.txt owned.txt\n\
         USER tester\n\
         LABEL a=b\n\
         EXPOSE 8080\n\
         CMD [\"cat\", \"/app/run.txt\"]\n",
    );
    let iid = env.path("iid");
    let out = build_ok(
        &env,
        &ctx,
        &["-t", "test:1", "-t", "test:2", "--label", "x=y", "--iidfile", iid.to_str().unwrap()],
    );
    assert!(out.contains("Successfully built "), "{out}");
    assert!(out.contains("Successfully tagged test:1"), "{out}");
    let id = fs::read_to_string(&iid).unwrap();
    assert!(id.starts_with("sha256:"), "{id}");

    let inspect = json(&env.ok(&["inspect", "test:1"]));
    let cfg = &inspect[0]["Config"];
    assert_eq!(inspect[0]["Id"], id.as_str());
    let envs: Vec<&str> =
        cfg["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(envs.contains(&"GREETING=hello") && envs.contains(&"APP=/app"), "{envs:?}");
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["User"], "tester");
    assert_eq!(cfg["Cmd"], serde_json::json!(["cat", "/app/run.txt"]));
    assert_eq!(cfg["Labels"]["a"], "b");
    assert_eq!(cfg["Labels"]["x"], "y");
    assert!(cfg["ExposedPorts"]["8080/tcp"].is_object(), "{cfg}");
    // busybox's layer + WORKDIR + 2 COPY + RUN + COPY.
    let layers = inspect[0]["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 6, "{layers:?}");
    let history = env.ok(&["history", "--no-trunc", "test:1"]);
    assert!(history.contains("RUN /bin/sh -c echo \"$GREETING from run\""), "{history}");

    // Run the result: a build on top of it checks files, owners and the user from its RUNs,
    // and a deletion (a whiteout in an intermediate layer) is seen by the next RUN.
    let ctx2 = env.path("ctx2");
    write(
        &ctx2,
        "Dockerfile",
        "FROM test:1\n\
         RUN test \"$(cat run.txt)\" = \"hello from run\" && test \"$(id -u)\" = 1234 \
             && test \"$(pwd)\" = /app && test -f sub/a.txt && test ! -e sub/b.log \
             && test \"$(stat -c %u:%a owned.txt)\" = 1234:640 && test \"$GREETING\" = hello\n\
         USER root\n\
         RUN rm /app/hello.txt\n\
         RUN test ! -e /app/hello.txt && test -f /app/owned.txt\n",
    );
    build_ok(&env, &ctx2, &["-t", "check:1"]);
}

#[test]
fn a_failing_run_points_at_its_line() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo before\nRUN echo oops-output; exit 3\n");
    let out = build(&env, &ctx, &["-t", "bad:1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(err.contains("echo oops-output; exit 3"), "{err}");
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("oops-output"), "{err}");
    // Nothing was tagged.
    assert!(!env.ok(&["images"]).contains("bad"));
}

#[test]
fn build_check_builds_when_the_lint_passes() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    env.ok(&["tag", "busybox", "busybox:1.36"]);
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox:1.36\nRUN echo linted > /x\nUSER 65534\nCMD [\"cat\", \"/x\"]\n",
    );
    let out = build(&env, &ctx, &["--check", "-t", "linted:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("lint failed"), "{err}");
    assert!(env.ok(&["images", "linted"]).contains("linted"));
}

#[test]
fn a_missing_base_image_says_to_pull_or_load_it() {
    let env = Env::new();
    let ctx = env.path("ctx");
    write(&ctx, "Dockerfile", "FROM nosuchimage:1\nRUN true\n");
    let out = build(&env, &ctx, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // The store lacks it, so the build tries to pull it (this machine reaches no registry).
    assert!(err.contains("nosuchimage:1 is not in the store and cannot be pulled"), "{err}");
    assert!(err.contains("strata load -i FILE"), "{err}");
}

#[test]
fn multi_stage_copies_into_scratch() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS build\n\
         RUN mkdir /out && echo built > /out/file && ln -s file /out/link\n\
         FROM busybox AS unused\n\
         RUN exit 1\n\
         FROM scratch\n\
         COPY --from=build /out/ /\n\
         COPY --from=build /bin/busybox /bin/sh\n\
         CMD [\"/bin/sh\"]\n",
    );
    let out = build(&env, &ctx, &["-t", "multi:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("RUN exit 1"), "the unused stage must not run: {err}");
    let inspect = json(&env.ok(&["inspect", "multi:1"]));
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);

    // The scratch image runs: only shell builtins, since it holds just /bin/sh.
    let ctx2 = env.path("ctx2");
    write(
        &ctx2,
        "Dockerfile",
        "FROM multi:1\nRUN read x < /file && test \"$x\" = built && read y < /link && test \"$y\" = built\n",
    );
    build_ok(&env, &ctx2, &["-t", "multi-check:1"]);

    // The saved image holds exactly those files.
    let tar = env.path("m.tar");
    env.ok(&["save", "-o", tar.to_str().unwrap(), "multi:1"]);
    let dir = env.path("m");
    common::untar(&tar, &dir);
    let manifest = json(&fs::read_to_string(dir.join("manifest.json")).unwrap());
    let mut names = Vec::new();
    for l in manifest[0]["Layers"].as_array().unwrap() {
        let out = std::process::Command::new("tar")
            .arg("-tzf")
            .arg(dir.join(l.as_str().unwrap()))
            .output()
            .unwrap();
        names.extend(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string));
    }
    names.sort();
    assert_eq!(names, ["bin/", "bin/sh", "file", "link"], "{names:?}");
}

#[test]
fn hello_example_builds_and_runs() {
    if std::env::var_os("STRATA_NETWORK_TESTS").is_none() {
        eprintln!("SKIPPED: set STRATA_NETWORK_TESTS=1 to build examples/hello (apt-get over the network)");
        return;
    }
    let (Some(busybox), Some(debian)) =
        (fixture("busybox.docker.tar"), fixture("debian.docker.tar"))
    else {
        return;
    };
    let env = Env::new();
    env.ok(&["load", "-i", busybox.to_str().unwrap()]);
    env.ok(&["load", "-i", debian.to_str().unwrap()]);
    let ctx = common::repo_root().join("examples/hello");
    build_ok(&env, &ctx, &["-t", "hello:1"]);
    let ctx2 = env.path("ctx2");
    write(
        &ctx2,
        "Dockerfile",
        "FROM hello:1\nRUN [\"/bin/sh\", \"-c\", \"test \\\"$(/usr/local/bin/hello world)\\\" = 'hello, world'\"]\n",
    );
    build_ok(&env, &ctx2, &["-t", "hello-check:1"]);
}

/// Runs `strata build` with extra environment variables; returns (success, stderr, stdout).
fn build_env(
    env: &Env,
    ctx: &Path,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> (bool, String, String) {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = env.cmd().args(&args).envs(vars.iter().copied()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn image_id(env: &Env, name: &str) -> String {
    json(&env.ok(&["inspect", name]))[0]["Id"].as_str().unwrap().to_string()
}

/// The contents of `path` among `files` (see [`layer_files`]).
fn file_in<'f>(files: &'f [(String, Vec<u8>)], path: &str) -> Option<&'f [u8]> {
    files.iter().find(|(p, _)| p == path).map(|(_, c)| c.as_slice())
}

/// Every file of every layer of a saved image, with its contents (gzip layers).
fn layer_files(env: &Env, image: &str) -> Vec<(String, Vec<u8>)> {
    let tar = env.path(&format!("{}.tar", image.replace([':', '/'], "_")));
    env.ok(&["save", "-o", tar.to_str().unwrap(), image]);
    let dir = env.path(&format!("{}.d", image.replace([':', '/'], "_")));
    common::untar(&tar, &dir);
    let manifest = json(&fs::read_to_string(dir.join("manifest.json")).unwrap());
    let mut files = Vec::new();
    for l in manifest[0]["Layers"].as_array().unwrap() {
        let raw = fs::read(dir.join(l.as_str().unwrap())).unwrap();
        let plain: Box<dyn std::io::Read> = if raw.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(std::io::Cursor::new(raw)))
        } else {
            Box::new(std::io::Cursor::new(raw))
        };
        let mut ar = tar::Archive::new(plain);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.push((name, data));
        }
    }
    files
}

/// Whether a RUN printed the line `text` (or, for `text` ending in `=`, a line starting
/// with it): an output line, not the step's own header.
fn printed(err: &str, text: &str) -> bool {
    err.lines().any(|l| {
        let mut parts = l.splitn(3, ' ');
        let (id, secs) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        id.starts_with('#')
            && secs.parse::<f64>().is_ok()
            && parts
                .next()
                .is_some_and(|r| r == text || (text.ends_with('=') && r.starts_with(text)))
    })
}

/// Lines of the plain progress output for step `#id`.
fn step_lines(err: &str, id: usize) -> Vec<&str> {
    let p = format!("#{id} ");
    err.lines().filter(|l| l.starts_with(&p)).collect()
}

#[test]
fn secret_mounts_are_seen_by_run_and_never_reach_the_image() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    let secret = env.path("token.txt");
    fs::write(&secret, "s3cr3t-file-value").unwrap();
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok,required test \"$(wc -c < /run/secrets/tok)\" = 17 \
             && grep -q ^s3cr /run/secrets/tok && test \"$(stat -c %a /run/secrets/tok)\" = 400 \
             && echo seen > /seen\n\
         RUN --mount=type=secret,id=envtok,target=/etc/app/token,mode=0440 \
             test \"$(wc -c < /etc/app/token)\" = 16 && test \"$(stat -c %a /etc/app/token)\" = 440\n\
         RUN --mount=type=secret,id=envtok,env=TOKEN test ${#TOKEN} = 16\n\
         RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent\n",
    );
    let src = format!("id=tok,src={}", secret.display());
    let (ok, err, _) = build_env(
        &env,
        &ctx,
        &["-t", "sec:1", "--secret", &src, "--secret", "id=envtok,env=MY_TOKEN"],
        &[("MY_TOKEN", "env-s3cr3t-value")],
    );
    assert!(ok, "{err}");
    let files = layer_files(&env, "sec:1");
    assert!(files.iter().any(|(n, _)| n == "seen"), "the RUN's own file is in the image");
    for (name, data) in &files {
        assert!(!name.contains("secrets") && !name.contains("token"), "mount point leaked: {name}");
        let text = String::from_utf8_lossy(data);
        assert!(!text.contains("s3cr3t"), "secret value in layer file {name}");
    }
    let inspect = env.ok(&["inspect", "sec:1"]);
    let history = env.ok(&["history", "--no-trunc", "sec:1"]);
    assert!(!inspect.contains("s3cr3t") && !history.contains("s3cr3t"), "{inspect}\n{history}");

    // A required secret that was not given fails at its line, saying how to pass it.
    let (ok, err, _) = build_env(&env, &ctx, &["--no-cache"], &[]);
    assert!(!ok);
    assert!(err.contains("secret tok is required"), "{err}");
    assert!(err.contains("--secret id=tok,src=FILE"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
}

#[test]
fn cache_mounts_persist_across_builds_and_stay_out_of_the_image() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         RUN --mount=type=cache,target=/var/cache/t,sharing=locked echo run >> /var/cache/t/log \
             && echo \"count=$(wc -l < /var/cache/t/log)\"\n",
    );
    let (ok, err, _) = build_env(&env, &ctx, &["-t", "cm:1"], &[]);
    assert!(ok, "{err}");
    assert!(err.contains("count=1"), "{err}");
    let (ok, err, _) = build_env(&env, &ctx, &["--no-cache", "-t", "cm:2"], &[]);
    assert!(ok, "{err}");
    assert!(err.contains("count=2"), "the second build sees the first one's file: {err}");
    let files = layer_files(&env, "cm:2");
    assert!(!files.iter().any(|(n, _)| n.contains("var/cache/t/")), "cache content in a layer");
    let ctx2 = env.path("ctx2");
    write(&ctx2, "Dockerfile", "FROM cm:2\nRUN test ! -e /var/cache/t/log\n");
    build_ok(&env, &ctx2, &[]);
}

#[test]
fn bind_and_tmpfs_mounts() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "sub/x.txt", "ctx-file\n");
    write(&ctx, "sub/skip.log", "ignored\n");
    write(&ctx, ".dockerignore", "**/*.log\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS src\n\
         RUN mkdir /data && echo from-stage > /data/f\n\
         FROM busybox\n\
         RUN --mount=type=bind,from=src,source=/data,target=/mnt/stage test \"$(cat /mnt/stage/f)\" = from-stage\n\
         RUN --mount=type=bind,source=sub,target=/ctx test \"$(cat /ctx/x.txt)\" = ctx-file \
             && test ! -e /ctx/skip.log && ! touch /ctx/new 2>/dev/null\n\
         RUN --mount=type=bind,source=sub,target=/ctx,rw echo changed > /ctx/x.txt\n\
         RUN --mount=type=bind,from=busybox,source=/bin/busybox,target=/opt/busybox /opt/busybox true\n\
         RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && grep -q ' /scratch tmpfs' /proc/mounts\n\
         RUN test ! -e /mnt/stage/f && test ! -e /ctx/x.txt && test ! -e /scratch/t && test ! -e /opt/busybox\n",
    );
    build_ok(&env, &ctx, &["-t", "binds:1"]);
    // rw writes were thrown away: the context is untouched.
    assert_eq!(fs::read_to_string(ctx.join("sub/x.txt")).unwrap(), "ctx-file\n");
}

#[test]
fn run_heredocs_and_network_none() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         ENV WHO=world\n\
         RUN <<EOF\n\
         echo one > /h1\n\
         echo \"hello $WHO\" >> /h1\n\
         EOF\n\
         RUN <<EOF\n\
         #!/bin/sh\n\
         echo \"script $0\" > /h2\n\
         EOF\n\
         RUN cat <<EOF > /h3\n\
         mixed\n\
         EOF\n\
         RUN --network=none test \"$(grep -c : /proc/net/dev)\" = 1\n\
         RUN test \"$(cat /h1)\" = \"$(printf 'one\\nhello world')\" && test \"$(cat /h2)\" = \"script /dev/pipes/EOF\" \
             && test \"$(cat /h3)\" = mixed\n",
    );
    build_ok(&env, &ctx, &["-t", "heredoc:1"]);
}

#[test]
fn a_no_op_rebuild_is_all_cached_and_no_cache_runs_again() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "app/main.txt", "main\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         ARG V=1\n\
         WORKDIR /app\n\
         COPY app/ ./\n\
         RUN --mount=type=cache,target=/runs echo ran >> /runs/log && echo \"runs=$(wc -l < /runs/log)\" \
             && echo built > /app/out\n\
         ENV X=y\n\
         CMD [\"cat\", \"/app/out\"]\n",
    );
    let (ok, first, _) = build_env(&env, &ctx, &["-t", "noop:1"], &[]);
    assert!(ok, "{first}");
    assert!(first.contains("runs=1"), "{first}");
    assert!(!first.contains("CACHED"), "{first}");
    let id1 = image_id(&env, "noop:1");

    let (ok, second, _) = build_env(&env, &ctx, &["-t", "noop:2"], &[]);
    assert!(ok, "{second}");
    assert_eq!(image_id(&env, "noop:2"), id1, "a no-op rebuild gives the same image ID");
    assert!(!printed(&second, "runs="), "the RUN must not run again: {second}");
    for id in 2..=7 {
        assert!(
            step_lines(&second, id).iter().any(|l| l.ends_with("CACHED")),
            "step #{id} is not CACHED:\n{second}"
        );
    }
    assert!(!second.contains("(layer "), "no layer written: {second}");

    // A different build arg is a different key from the ARG on.
    let (ok, third, _) = build_env(&env, &ctx, &["--build-arg", "V=2"], &[]);
    assert!(ok, "{third}");
    assert!(third.contains("runs=2"), "{third}");

    // --no-cache runs every step again (and the cache mount shows the RUN ran).
    let (ok, fourth, _) = build_env(&env, &ctx, &["--no-cache", "-t", "noop:3"], &[]);
    assert!(ok, "{fourth}");
    assert!(fourth.contains("runs=3"), "{fourth}");
    assert!(!fourth.contains("CACHED"), "{fourth}");
    // Its results replace the cached ones (new layer mtimes, new history times).
    let id3 = image_id(&env, "noop:3");

    // The cache survives a GC: the rebuild still hits and unpacks nothing new.
    env.ok(&["rmi", "noop:1", "noop:2", "noop:3"]);
    env.ok(&["image", "prune", "-f"]);
    let (ok, fifth, _) = build_env(&env, &ctx, &["-t", "noop:4"], &[]);
    assert!(ok, "{fifth}");
    assert!(!printed(&fifth, "runs="), "{fifth}");
    assert_eq!(image_id(&env, "noop:4"), id3, "the rebuild replays the latest cached results");

    // `builder prune` empties the cache (and the cache mounts): everything runs again.
    env.ok(&["rmi", "noop:4"]);
    let out = env.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("Deleted build cache objects:"), "{out}");
    let (ok, sixth, _) = build_env(&env, &ctx, &[], &[]);
    assert!(ok, "{sixth}");
    assert!(printed(&sixth, "runs=1") && !sixth.contains("CACHED"), "{sixth}");
}

#[test]
fn a_one_file_change_rebuilds_from_the_copy_that_reads_it() {
    use std::time::{Duration, SystemTime};
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "a.txt", "aaaa\n");
    write(&ctx, "b.txt", "bbbb\n");
    write(&ctx, "notes.log", "ignored\n");
    write(&ctx, ".dockerignore", "*.log\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         COPY a.txt /a.txt\n\
         RUN echo after-a\n\
         COPY . /all/\n\
         RUN echo after-all\n",
    );
    let (ok, err, _) = build_env(&env, &ctx, &["-t", "one:1"], &[]);
    assert!(ok, "{err}");
    let cached = |err: &str, id: usize| step_lines(err, id).iter().any(|l| l.ends_with("CACHED"));

    // An ignored file and a touch (same content) change nothing.
    write(&ctx, "notes.log", "changed\n");
    let f = fs::File::options().write(true).open(ctx.join("b.txt")).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
    let (ok, err, _) = build_env(&env, &ctx, &[], &[]);
    assert!(ok, "{err}");
    assert!((2..=5).all(|i| cached(&err, i)), "{err}");

    // Same size, same mtime, other content: still a change (stat alone would miss it).
    let mtime = fs::metadata(ctx.join("b.txt")).unwrap().modified().unwrap();
    fs::write(ctx.join("b.txt"), "BBBB\n").unwrap();
    let f = fs::File::options().write(true).open(ctx.join("b.txt")).unwrap();
    f.set_modified(mtime).unwrap();
    let (ok, err, _) = build_env(&env, &ctx, &["-t", "one:2"], &[]);
    assert!(ok, "{err}");
    assert!(cached(&err, 2) && cached(&err, 3), "before the COPY that reads b.txt: {err}");
    assert!(!cached(&err, 4) && !cached(&err, 5), "from that COPY on: {err}");
    assert!(printed(&err, "after-all") && !printed(&err, "after-a"), "{err}");
    assert_ne!(image_id(&env, "one:1"), image_id(&env, "one:2"));
}

#[test]
fn independent_stages_run_in_parallel() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS one\n\
         RUN sleep 2 && echo 1 > /one\n\
         FROM busybox AS two\n\
         RUN sleep 2 && echo 2 > /two\n\
         FROM busybox\n\
         COPY --from=one /one /one\n\
         COPY --from=two /two /two\n\
         RUN test \"$(cat /one /two)\" = \"$(printf '1\\n2')\"\n",
    );
    let started = std::time::Instant::now();
    let (ok, err, _) = build_env(&env, &ctx, &["-t", "par:1"], &[]);
    let took = started.elapsed().as_secs_f64();
    assert!(ok, "{err}");
    assert!((2.0..3.8).contains(&took), "two 2 s stages took {took:.2} s:\n{err}");
    // Each step's lines carry its own id: both sleeps started before either finished.
    let pos = |s: &str| err.find(s).unwrap_or_else(|| panic!("{s} missing:\n{err}"));
    assert!(pos("#2 [one 2/2] RUN") < pos("#2 DONE") && pos("#4 [two 2/2] RUN") < pos("#2 DONE"));
    assert!(pos("#2 [one 2/2] RUN") < pos("#4 DONE"), "{err}");
}

#[test]
fn a_failing_stage_stops_the_others_and_keeps_what_was_written() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "data.txt", "kept\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS slow\n\
         COPY data.txt /data.txt\n\
         ARG SLEEP=30\n\
         RUN sleep $SLEEP && echo never > /x\n\
         FROM busybox AS broken\n\
         RUN sleep 0.5 && echo about to fail && exit 3\n\
         FROM busybox\n\
         COPY --from=slow /x /x\n\
         COPY --from=broken /y /y\n",
    );
    let started = std::time::Instant::now();
    let out = build(&env, &ctx, &["-t", "broken:1"]);
    let took = started.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(took < 10.0, "the sleeping stage was not stopped: {took:.1} s\n{err}");
    assert!(err.contains("exit code: 3"), "the first failure is the one reported:\n{err}");
    assert!(err.contains("about to fail"), "{err}");
    // The COPY before the killed RUN finished, so it is cached for the next try.
    let again = build(&env, &ctx, &["--target", "slow", "--build-arg", "SLEEP=0"]);
    let err2 = String::from_utf8_lossy(&again.stderr);
    assert!(err2.contains("#2 CACHED"), "the finished COPY was cached:\n{err2}");
}

#[test]
fn onbuild_triggers_fire_in_the_child_only() {
    let Some(env) = with_busybox() else { return };
    let base = env.path("base");
    write(
        &base,
        "Dockerfile",
        "FROM busybox\n\
         ONBUILD ENV FROM_TRIGGER=yes\n\
         ONBUILD COPY app.txt /app/\n\
         ONBUILD RUN echo \"triggered $FROM_TRIGGER\" > /triggered\n",
    );
    build_ok(&env, &base, &["-t", "base:onbuild"]);
    let inspect = json(&env.ok(&["inspect", "base:onbuild"]));
    assert_eq!(inspect[0]["Config"]["OnBuild"].as_array().map(Vec::len), Some(3), "{inspect}");

    // The child's context feeds the trigger's COPY; its own steps see the trigger's ENV.
    let child = env.path("child");
    write(&child, "app.txt", "from the child's context\n");
    write(
        &child,
        "Dockerfile",
        "FROM base:onbuild\n\
         RUN test \"$FROM_TRIGGER\" = yes && cat /triggered /app/app.txt > /seen\n",
    );
    let (ok, err, _) = build_env(&env, &child, &["-t", "child:1"], &[]);
    assert!(ok, "{err}");
    assert!(err.contains("[stage-0 2/5] ONBUILD ENV FROM_TRIGGER=yes"), "{err}");
    assert!(err.contains("[stage-0 4/5] ONBUILD RUN"), "{err}");
    let inspect = json(&env.ok(&["inspect", "child:1"]));
    assert!(inspect[0]["Config"]["OnBuild"].is_null(), "triggers are cleared: {inspect}");
    let files = layer_files(&env, "child:1");
    assert_eq!(
        file_in(&files, "seen"),
        Some(&b"triggered yes\nfrom the child's context\n"[..]),
        "{:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );

    // A grandchild does not run them again.
    let grand = env.path("grand");
    write(&grand, "Dockerfile", "FROM child:1\nRUN true\n");
    let (ok, err, _) = build_env(&env, &grand, &["-t", "grand:1"], &[]);
    assert!(ok, "{err}");
    assert!(!err.contains("ONBUILD"), "{err}");

    // A trigger that fails is reported at the child's FROM line, naming the trigger.
    let bad = env.path("bad");
    write(&bad, "Dockerfile", "FROM base:onbuild\nRUN true\n");
    let (ok, err, _) = build_env(&env, &bad, &[], &[]);
    assert!(!ok);
    assert!(err.contains("ONBUILD trigger `COPY app.txt /app/`"), "{err}");
    assert!(err.contains("FROM base:onbuild"), "the snippet shows the FROM line: {err}");
}

#[test]
fn a_parent_stages_onbuild_env_is_seen_by_the_child_and_its_children() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("stage-onbuild");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS base\n\
         ENV FROM_BASE=base\n\
         ONBUILD ENV TRIGGERED=yes-$FROM_BASE\n\
         FROM base AS child\n\
         ENV CHILD=$TRIGGERED-child\n\
         FROM child\n\
         ENV GRAND=$CHILD-grand\n\
         RUN echo \"$TRIGGERED $CHILD $GRAND\" > /seen\n",
    );
    let (ok, err, _) = build_env(&env, &ctx, &["-t", "stage-onbuild:1"], &[]);
    assert!(ok, "{err}");
    assert!(err.contains("ONBUILD ENV TRIGGERED=yes-$FROM_BASE"), "{err}");
    let files = layer_files(&env, "stage-onbuild:1");
    assert_eq!(
        file_in(&files, "seen"),
        Some(&b"yes-base yes-base-child yes-base-child-grand\n"[..]),
        "the trigger's ENV expands in the child's own ENV and reaches the grandchild"
    );
}

/// (inode, snapshot dir) of every snapshot file at `rel` in the store.
fn snapshot_inodes(env: &Env, rel: &str) -> Vec<(u64, std::path::PathBuf)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for e in fs::read_dir(env.root().join("snapshots")).unwrap() {
        let p = e.unwrap().path().join("fs").join(rel);
        if let Ok(md) = fs::symlink_metadata(&p) {
            out.push((md.ino(), p));
        }
    }
    out
}

#[test]
fn unchanged_context_files_are_linked_from_the_last_copy() {
    use std::time::Duration;
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    for n in ["a", "b", "c"] {
        write(&ctx, &format!("app/{n}.txt"), &format!("{n}{n}{n}\n"));
    }
    write(&ctx, "Dockerfile", "FROM busybox\nCOPY app/ /app/\nRUN cat /app/* > /all\n");
    // Files changed within 2 s of a copy are never linked later (the same ctime tick).
    std::thread::sleep(Duration::from_millis(2100));
    build_ok(&env, &ctx, &["-t", "link:1"]);

    // Same size, same mtime, new content: ctime tells, so c.txt must be copied afresh.
    let mtime = fs::metadata(ctx.join("app/c.txt")).unwrap().modified().unwrap();
    fs::write(ctx.join("app/c.txt"), "CCC\n").unwrap();
    fs::File::options()
        .write(true)
        .open(ctx.join("app/c.txt"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    build_ok(&env, &ctx, &["-t", "link:2"]);
    let files = layer_files(&env, "link:2");
    assert_eq!(
        file_in(&files, "all"),
        Some(&b"aaa\nbbb\nCCC\n"[..]),
        "the RUN saw the new content"
    );

    let a = snapshot_inodes(&env, "app/a.txt");
    let c = snapshot_inodes(&env, "app/c.txt");
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0].0, a[1].0, "an unchanged file is one inode in both snapshots: {a:?}");
    assert_eq!(c.len(), 2, "{c:?}");
    assert_ne!(c[0].0, c[1].0, "the changed file was copied: {c:?}");
    for (_, p) in &c {
        let text = fs::read_to_string(p).unwrap();
        assert!(text == "ccc\n" || text == "CCC\n", "no snapshot was changed: {text:?}");
    }
}

#[test]
fn copy_from_a_stage_links_unless_owner_or_mode_change() {
    use std::os::unix::fs::MetadataExt;
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS gen\n\
         RUN mkdir /out && echo kept > /out/kept && echo owned > /out/owned && chmod 640 /out/owned\n\
         FROM busybox\n\
         COPY --from=gen /out/kept /kept\n\
         COPY --from=gen --chown=7:8 /out/owned /owned\n\
         RUN test \"$(stat -c '%u:%g %a' /owned)\" = '7:8 640' && cat /kept\n",
    );
    build_ok(&env, &ctx, &["-t", "from:1"]);
    let src = snapshot_inodes(&env, "out/kept");
    let kept = snapshot_inodes(&env, "kept");
    assert_eq!((src.len(), kept.len()), (1, 1), "{src:?} {kept:?}");
    assert_eq!(src[0].0, kept[0].0, "COPY --from without --chown links the file");
    let owned_src = snapshot_inodes(&env, "out/owned");
    let owned = snapshot_inodes(&env, "owned");
    assert_ne!(owned_src[0].0, owned[0].0, "--chown needs a copy of its own");
    let md = fs::metadata(&owned_src[0].1).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0), "the source stage's file kept its owner");
}

#[test]
fn source_date_epoch_builds_are_reproducible() {
    let Some(busybox) = fixture("busybox.docker.tar") else { return };
    let ctx = tempfile::tempdir().unwrap();
    let ctx = ctx.path();
    write(ctx, "app/a.txt", "a\n");
    write(ctx, "app/b/c.txt", "c\n");
    write(
        ctx,
        "Dockerfile",
        "FROM busybox AS gen\n\
         RUN mkdir -p /out && echo generated > /out/gen && touch /out/stamp\n\
         FROM busybox\n\
         ENV A=1\n\
         WORKDIR /srv/app\n\
         COPY app/ ./\n\
         COPY --from=gen /out/ /gen/\n\
         RUN echo ran > ran.txt && mkdir -p /var/x && echo fixed > /var/x/when && rm /bin/true\n\
         CMD [\"sh\"]\n",
    );
    let mut results = Vec::new();
    // Once from the environment, once as a build argument (BuildKit's way): the same image.
    for by_arg in [false, true] {
        let env = Env::new();
        env.ok(&["load", "-i", busybox.to_str().unwrap()]);
        let (ok, err, _) = if by_arg {
            build_env(
                &env,
                ctx,
                &["-t", "repro:1", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"],
                &[],
            )
        } else {
            build_env(&env, ctx, &["-t", "repro:1"], &[("SOURCE_DATE_EPOCH", "1700000000")])
        };
        assert!(ok, "{err}");
        let inspect = json(&env.ok(&["inspect", "repro:1"]));
        assert_eq!(inspect[0]["Created"], "2023-11-14T22:13:20Z");
        results.push((
            inspect[0]["Id"].as_str().unwrap().to_string(),
            inspect[0]["Descriptor"]["digest"].as_str().unwrap().to_string(),
        ));
        // The store's blobs: the same set, byte for byte (they are content-addressed).
        let mut blobs: Vec<String> = fs::read_dir(env.root().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        blobs.sort();
        results.push((blobs.join(","), String::new()));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(results[0], results[2], "image ID and manifest digest differ");
    assert_eq!(results[1], results[3], "blob sets differ");
}

//! COPY/ADD with Docker's full semantics: heredocs, `--exclude`, `--parents`, `--link`,
//! symbolic `--chmod`, ADD of bzip2/xz archives and of http URLs. Every result is checked in
//! the built image by a RUN of a following build (busybox `stat`/`find`/`cat`), and cache
//! keys by which steps a rebuild reports CACHED. URLs are served by a small HTTP server on
//! 127.0.0.1 inside the test. Every `strata` run has a timeout.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{run_timeout, with_busybox, write, Env};

/// Runs `cmd` to completion, failing the test past [`TIMEOUT`].
fn run(cmd: &mut Command) -> Output {
    run_timeout(cmd, TIMEOUT.as_secs())
}
use sha2::{Digest, Sha256};

const TIMEOUT: Duration = Duration::from_secs(180);

fn chmod(dir: &Path, name: &str, mode: u32) {
    fs::set_permissions(dir.join(name), fs::Permissions::from_mode(mode)).unwrap();
}

/// `strata build --progress plain` of `ctx`; returns (success, stderr).
fn build(env: &Env, ctx: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = run(env.cmd().args(&args));
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn build_ok(env: &Env, ctx: &Path, extra: &[&str]) -> String {
    let (ok, err) = build(env, ctx, extra);
    assert!(ok, "build failed:\n{err}");
    err
}

fn build_fails(env: &Env, ctx: &Path) -> String {
    let (ok, err) = build(env, ctx, &[]);
    assert!(!ok, "the build should have failed:\n{err}");
    err
}

/// Whether the step whose text contains `needle` was reported CACHED.
fn cached(progress: &str, needle: &str) -> bool {
    let id = progress
        .lines()
        .find(|l| l.starts_with('#') && l.contains(" [") && l.contains(needle))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no step {needle:?} in:\n{progress}"));
    progress.lines().any(|l| l == format!("{id} CACHED"))
}

/// The output lines of `RUN script` in a fresh build on `image`.
fn inspect(env: &Env, image: &str, script: &str) -> Vec<String> {
    let ctx = env.path(&format!("inspect-{}", rand_suffix()));
    write(&ctx, "Dockerfile", &format!("FROM {image}\nRUN {script}\n"));
    let progress = build_ok(env, &ctx, &["--no-cache"]);
    progress
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            let (id, secs, rest) = (it.next()?, it.next()?, it.next()?);
            (id == "#2" && secs.parse::<f64>().is_ok()).then(|| rest.to_string())
        })
        .collect()
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn heredocs_become_files_with_expansion_modes_and_owners() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    let dockerfile = |greeting: &str| {
        format!(
            "FROM busybox\n\
             ARG FOO=bar\n\
             ENV WHO=world\n\
             COPY <<EOF /app/conf\n{greeting} ${{FOO}} $WHO \"quoted\" \\$HOME\nEOF\n\
             COPY <<EOF /app/\nin a dir\nEOF\n\
             COPY --chmod=750 --chown=12:34 <<-EOT <<'RAW' /multi/\n\ttabbed $FOO\nEOT\nraw $FOO\nRAW\n"
        )
    };
    write(&ctx, "Dockerfile", &dockerfile("hello"));
    build_ok(&env, &ctx, &["-t", "heredoc:1"]);
    let out = inspect(
        &env,
        "heredoc:1",
        "cat /app/conf /app/EOF /multi/EOT /multi/RAW && \
         stat -c '%a %u:%g %n' /app /app/conf /app/EOF /multi /multi/EOT /multi/RAW",
    );
    assert_eq!(
        out,
        lines(&[
            "hello bar world \"quoted\" $HOME",
            "in a dir",
            "tabbed bar",
            "raw $FOO",
            "755 0:0 /app",
            "644 0:0 /app/conf",
            "644 0:0 /app/EOF",
            "755 12:34 /multi",
            "750 12:34 /multi/EOT",
            "750 12:34 /multi/RAW",
        ])
    );

    // The body is in the key: the same file is cached, a new body or a new ARG value is not.
    let again = build_ok(&env, &ctx, &["-t", "heredoc:1"]);
    assert!(cached(&again, "COPY <<EOF /app/conf"), "{again}");
    write(&ctx, "Dockerfile", &dockerfile("goodbye"));
    let changed = build_ok(&env, &ctx, &["-t", "heredoc:2", "--build-arg", "FOO=baz"]);
    assert!(!cached(&changed, "COPY <<EOF /app/conf"), "{changed}");
    assert_eq!(inspect(&env, "heredoc:2", "cat /app/conf"), ["goodbye baz world \"quoted\" $HOME"]);

    // A heredoc may not replace a directory: /etc is one in busybox.
    write(&ctx, "Dockerfile", "FROM busybox\nCOPY <<etc /\nnot a dir\netc\n");
    let err = build_fails(&env, &ctx);
    assert!(err.contains("cannot replace the directory /etc with a file"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
}

#[test]
fn exclude_keeps_files_out_of_the_layer_and_out_of_the_key() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    for f in ["dir/a.txt", "dir/b.md", "dir/d.log", "dir/sub/c.txt", "dir/sub/keep.txt"] {
        write(&ctx, f, f);
    }
    let dockerfile = |first: &str| {
        format!(
            "FROM busybox AS base\n\
             COPY --exclude={first} dir/ /ex1/\n\
             COPY --exclude=**/*.txt --exclude=!**/keep.txt dir/ /ex2/\n\
             ADD --exclude=*.log dir/ /ex3/\n\
             FROM base\n\
             COPY --from=base --exclude=sub /ex3/ /ex4/\n"
        )
    };
    write(&ctx, "Dockerfile", &dockerfile("*.txt"));
    build_ok(&env, &ctx, &["-t", "exclude:1"]);
    let find = "cd / && find ex1 ex2 ex3 ex4 -mindepth 1 | sort";
    assert_eq!(
        inspect(&env, "exclude:1", find),
        lines(&[
            // Patterns are relative to the source: *.txt only matches at its top level.
            "ex1/b.md",
            "ex1/d.log",
            "ex1/sub",
            "ex1/sub/c.txt",
            "ex1/sub/keep.txt",
            "ex2/b.md",
            "ex2/d.log",
            "ex2/sub",
            "ex2/sub/keep.txt",
            "ex3/a.txt",
            "ex3/b.md",
            "ex3/sub",
            "ex3/sub/c.txt",
            "ex3/sub/keep.txt",
            "ex4/a.txt",
            "ex4/b.md",
        ])
    );

    // A file the first two COPYs leave out changes: they stay cached, the ADD does not.
    write(&ctx, "dir/a.txt", "changed");
    let p = build_ok(&env, &ctx, &["-t", "exclude:2"]);
    assert!(cached(&p, "COPY --exclude=*.txt dir/ /ex1/"), "{p}");
    assert!(cached(&p, "COPY --exclude=**/*.txt"), "{p}");
    assert!(!cached(&p, "ADD --exclude=*.log"), "{p}");
    assert!(!cached(&p, "COPY --from=base"), "{p}");
    // Another pattern is another step.
    write(&ctx, "Dockerfile", &dockerfile("*.md"));
    let p = build_ok(&env, &ctx, &["-t", "exclude:3"]);
    assert!(!cached(&p, "COPY --exclude=*.md dir/ /ex1/"), "{p}");
    assert_eq!(
        inspect(&env, "exclude:3", "cd / && find ex1 -mindepth 1 | sort"),
        lines(&["ex1/a.txt", "ex1/d.log", "ex1/sub", "ex1/sub/c.txt", "ex1/sub/keep.txt"])
    );
}

#[test]
fn parents_keep_the_source_directories_from_the_context_and_stages() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    for f in ["x/a.txt", "y/a.txt", "x/y/b.txt", "x/y/c.md", "src/a.txt", "src/m/b.txt"] {
        write(&ctx, f, f);
    }
    write(&ctx, "src/m/n/c.txt", "c");
    write(&ctx, "src/m/n/d.md", "d");
    chmod(&ctx, "src/m", 0o750);
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS base\n\
         COPY --parents ./x/a.txt ./y/a.txt /p1/\n\
         COPY --parents ./x/./y/*.txt /p2/\n\
         COPY --parents ./src/**/*.txt /p3/\n\
         COPY ./x/a.txt ./y/a.txt /np/\n\
         RUN mkdir -p /out/bin && echo app > /out/bin/app && chown -R 7:8 /out && chmod 750 /out/bin\n\
         FROM base\n\
         COPY --from=base --parents /out/./bin/app /p4/\n\
         COPY --from=base --parents /p1/x /p5/\n\
         COPY --from=base /out/*/app /globbed/\n",
    );
    build_ok(&env, &ctx, &["-t", "parents:1"]);
    let out = inspect(
        &env,
        "parents:1",
        "cd / && find p1 p2 p3 p4 p5 np globbed -mindepth 1 | sort && \
         stat -c '%a %u:%g %n' p3/src/m p4/bin p4/bin/app",
    );
    assert_eq!(
        out,
        lines(&[
            "globbed/app",
            "np/a.txt",
            "p1/x",
            "p1/x/a.txt",
            "p1/y",
            "p1/y/a.txt",
            // The /./ pivot: only what follows it is kept.
            "p2/y",
            "p2/y/b.txt",
            "p3/src",
            "p3/src/a.txt",
            "p3/src/m",
            "p3/src/m/b.txt",
            "p3/src/m/n",
            "p3/src/m/n/c.txt",
            "p4/bin",
            "p4/bin/app",
            "p5/p1",
            "p5/p1/x",
            "p5/p1/x/a.txt",
            // Directories on the way keep their own mode; context files are root's,
            // another stage's keep their owners.
            "750 0:0 p3/src/m",
            "750 7:8 p4/bin",
            "644 7:8 p4/bin/app",
        ])
    );

    write(&ctx, "Dockerfile", "FROM busybox\nCOPY --parents ./nope/a.txt /q/\n");
    let err = build_fails(&env, &ctx);
    assert!(err.contains("/nope/a.txt\": not found"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
}

#[test]
fn link_makes_the_layer_as_if_on_scratch() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "a.txt", "a\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         RUN mkdir -m 0700 /srv && chown 3:3 /srv\n\
         COPY --link a.txt /tmp/\n\
         COPY --link --chown=5:6 a.txt /srv/sub/\n\
         COPY a.txt /srv/plain/\n\
         COPY --link --chmod=640 a.txt /var/\n\
         COPY a.txt /etc/plain/\n",
    );
    build_ok(&env, &ctx, &["-t", "link:1"]);
    let out = inspect(
        &env,
        "link:1",
        "stat -c '%a %u:%g %n' /tmp /tmp/a.txt /srv /srv/sub /srv/sub/a.txt /srv/plain /var \
         /var/a.txt /etc",
    );
    assert_eq!(
        out,
        lines(&[
            // BuildKit's merge: the linked layer's own parent dirs (0755, root or the
            // --chown ids) replace the stage's, so /tmp loses its 1777.
            "755 0:0 /tmp",
            "644 0:0 /tmp/a.txt",
            "755 5:6 /srv",
            "755 5:6 /srv/sub",
            "644 5:6 /srv/sub/a.txt",
            // A plain COPY keeps what the stage has.
            "755 0:0 /srv/plain",
            // With --chmod, dockerfile2llb makes a plain copy: /var is untouched.
            "755 0:0 /var",
            "640 0:0 /var/a.txt",
            "755 0:0 /etc",
        ])
    );

    // Names need the stage's /etc/passwd, which a linked copy never reads.
    write(&ctx, "Dockerfile", "FROM busybox\nCOPY --link --chown=nobody a.txt /x/\n");
    let err = build_fails(&env, &ctx);
    assert!(err.contains("--chown=nobody with --link"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
}

#[test]
fn a_linked_copy_stays_cached_when_the_base_changes() {
    let Some(env) = with_busybox() else { return };
    // Two different bases.
    let base = env.path("base");
    write(&base, "Dockerfile", "FROM busybox\nRUN echo 2 > /base-version\n");
    build_ok(&env, &base, &["-t", "base:2"]);
    let ctx = env.path("ctx");
    write(&ctx, "data.txt", "data\n");
    write(
        &ctx,
        "Dockerfile",
        "ARG BASE=busybox\nFROM $BASE\nWORKDIR /app\n\
         COPY --link data.txt ./linked/\nCOPY data.txt ./plain/\nRUN cat linked/data.txt plain/data.txt\n",
    );
    build_ok(&env, &ctx, &[]);
    let progress = build_ok(&env, &ctx, &["--build-arg", "BASE=base:2"]);
    assert!(cached(&progress, "COPY --link data.txt"), "the linked layer is reused:\n{progress}");
    assert!(!cached(&progress, "COPY data.txt"), "a plain COPY depends on its base:\n{progress}");
    assert!(!cached(&progress, "RUN cat"), "what follows depends on the base:\n{progress}");
    // The reused layer is really there on the new base: the RUN read both copies.
    let printed = progress.lines().filter(|l| l.ends_with(" data")).count();
    assert_eq!(printed, 2, "{progress}");
}

#[test]
fn symbolic_chmod_applies_to_files_and_directories() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "f.sh", "echo f\n");
    write(&ctx, "bin/run", "run\n");
    write(&ctx, "bin/data", "data\n");
    write(&ctx, "bin/sub/x", "x\n");
    chmod(&ctx, "f.sh", 0o664);
    chmod(&ctx, "bin/run", 0o755);
    chmod(&ctx, "bin/data", 0o640);
    chmod(&ctx, "bin/sub", 0o750);
    chmod(&ctx, "bin/sub/x", 0o600);
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         COPY --chmod=u+x,g-w f.sh /f1\n\
         COPY --chmod=a+X bin/ /d1/\n\
         COPY --chmod=go= bin/ /d2/\n\
         COPY --chmod=0640 f.sh /f2\n",
    );
    build_ok(&env, &ctx, &["-t", "chmod:1"]);
    let out = inspect(
        &env,
        "chmod:1",
        "cd / && stat -c '%a %n' f1 f2 d1 d1/run d1/data d1/sub d1/sub/x d2/run d2/data d2/sub",
    );
    assert_eq!(
        out,
        lines(&[
            "744 f1",
            "640 f2",
            "755 d1",
            "755 d1/run",
            "640 d1/data",
            "751 d1/sub",
            "600 d1/sub/x",
            "700 d2/run",
            "600 d2/data",
            "700 d2/sub",
        ])
    );

    write(&ctx, "Dockerfile", "FROM busybox\nCOPY --chmod=u+q f.sh /x\n");
    let err = build_fails(&env, &ctx);
    assert!(err.contains("invalid chmod parameter: 'u+q'"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    write(&ctx, "Dockerfile", "FROM busybox\nCOPY --chmod=10000 f.sh /x\n");
    let err = build_fails(&env, &ctx);
    assert!(err.contains("between 0 and 07777"), "{err}");
}

/// A tar with one entry whose name is written raw (the tar crate refuses `..` names).
fn raw_tar(name: &[u8], kind: tar::EntryType, link: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

#[test]
fn add_extracts_bzip2_and_xz_archives_by_content_and_refuses_escapes() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    let src = env.path("archive-src");
    write(&src, "top.txt", "top\n");
    write(&src, "d/inner.txt", "inner\n");
    fs::create_dir_all(&ctx).unwrap();
    for (flag, name) in [("-cjf", "a.tar.bz2"), ("-cJf", "b.bin"), ("-cJf", "c.tar.xz")] {
        let out = run(Command::new("tar")
            .args([flag, ctx.join(name).to_str().unwrap(), "-C", src.to_str().unwrap()])
            .args(["--owner=0", "--group=0", "."]));
        assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Looks like gzip, is not: Docker copies it as it is.
    fs::write(ctx.join("fake.tar.gz"), b"\x1f\x8b\x08 not gzip at all").unwrap();
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         ADD a.tar.bz2 /bz/\n\
         ADD b.bin /xz\n\
         ADD --unpack=false c.tar.xz /raw/\n\
         ADD fake.tar.gz /fake/\n\
         ADD --chown=9:9 a.tar.bz2 /owned/\n",
    );
    build_ok(&env, &ctx, &["-t", "archives:1"]);
    let out = inspect(
        &env,
        "archives:1",
        "cat /bz/top.txt /bz/d/inner.txt /xz/top.txt && \
         stat -c '%F %u:%g %n' /raw/c.tar.xz /fake/fake.tar.gz /owned/top.txt /owned/d /bz/d/inner.txt",
    );
    assert_eq!(
        out,
        lines(&[
            "top",
            "inner",
            "top",
            "regular file 0:0 /raw/c.tar.xz",
            "regular file 0:0 /fake/fake.tar.gz",
            "regular file 9:9 /owned/top.txt",
            "directory 9:9 /owned/d",
            "regular file 0:0 /bz/d/inner.txt",
        ])
    );

    // Entries that climb out of the destination, by name or through a symlink.
    fs::write(
        ctx.join("dotdot.tar"),
        raw_tar(b"../escape.txt", tar::EntryType::Regular, None, b"x"),
    )
    .unwrap();
    let mut via_link = raw_tar(b"up", tar::EntryType::Symlink, Some(b"../../../.."), b"");
    via_link.truncate(512);
    via_link.extend(raw_tar(b"up/escape.txt", tar::EntryType::Regular, None, b"x"));
    fs::write(ctx.join("symlink.tar"), via_link).unwrap();
    for archive in ["dotdot.tar", "symlink.tar"] {
        write(&ctx, "Dockerfile", &format!("FROM busybox\nADD {archive} /x/\n"));
        let err = build_fails(&env, &ctx);
        assert!(err.contains(&format!("ADD {archive}: extracting the archive")), "{err}");
        assert!(err.contains("Dockerfile:2"), "{err}");
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for ADD: `files` by path, `/redirect` to
/// `/file.txt`, 404 for anything else.
struct Server {
    url: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let shared = files.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let files = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &files);
                });
            }
        });
        Server { url, files }
    }

    fn put(&self, path: &str, body: &[u8]) {
        self.files.lock().unwrap().insert(path.to_string(), body.to_vec());
    }
}

fn serve(mut s: TcpStream, files: &Mutex<HashMap<String, Vec<u8>>>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut first = String::new();
    r.read_line(&mut first)?;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 || l == "\r\n" {
            break;
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let body = files.lock().unwrap().get(&path).cloned();
    let (status, extra, body) = match (path.as_str(), body) {
        ("/redirect", _) => ("302 Found", "Location: /file.txt\r\n".to_string(), Vec::new()),
        (_, Some(b)) => ("200 OK", "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n".into(), b),
        _ => ("404 Not Found", String::new(), b"no such file\n".to_vec()),
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    )?;
    s.write_all(&body)
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn add_downloads_urls_with_checksums_redirects_and_clear_errors() {
    let Some(env) = with_busybox() else { return };
    let server = Server::start();
    server.put("/file.txt", b"v1\n");
    let u = &server.url;
    let ctx = env.path("ctx");
    let v1 = sha256(b"v1\n");
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "FROM busybox\n\
             ADD --checksum={v1} {u}/file.txt /sum/\n\
             ADD {u}/file.txt /dl/\n\
             ADD --chmod=644 --chown=3:4 {u}/file.txt /renamed\n\
             ADD {u}/redirect /r/\n"
        ),
    );
    build_ok(&env, &ctx, &["-t", "url:1"]);
    let out = inspect(
        &env,
        "url:1",
        "cat /sum/file.txt /dl/file.txt /r/redirect && \
         stat -c '%a %u:%g %Y %n' /dl/file.txt /renamed /r/redirect",
    );
    assert_eq!(
        out,
        lines(&[
            "v1",
            "v1",
            "v1",
            // 0600 as Docker gives downloads; mtime from Last-Modified; named after the URL
            // as written, not the redirect's target.
            "600 0:0 1445412480 /dl/file.txt",
            "644 3:4 1445412480 /renamed",
            "600 0:0 1445412480 /r/redirect",
        ])
    );

    // Same content: cached. New content: the checksummed step stays cached (its key is
    // the checksum: nothing is downloaded), the others fetch and rebuild.
    let again = build_ok(&env, &ctx, &["-t", "url:1"]);
    assert!(cached(&again, &format!("ADD {u}/file.txt /dl/")), "{again}");
    server.put("/file.txt", b"v2\n");
    let p = build_ok(&env, &ctx, &["-t", "url:2"]);
    assert!(cached(&p, "ADD --checksum="), "{p}");
    assert!(!cached(&p, &format!("ADD {u}/file.txt /dl/")), "{p}");
    assert_eq!(inspect(&env, "url:2", "cat /sum/file.txt /dl/file.txt"), ["v1", "v2"]);

    // A wrong checksum names both digests; nothing is committed.
    let v2 = sha256(b"v2\n");
    write(&ctx, "Dockerfile", &format!("FROM busybox\nADD --checksum={v1} {u}/file.txt /x\n"));
    let err = build_fails(&env, &ctx);
    assert!(err.contains("checksum mismatch") && err.contains(&v1) && err.contains(&v2), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    // A 404 names the URL and the status.
    write(&ctx, "Dockerfile", &format!("FROM busybox\nADD {u}/missing /x\n"));
    let err = build_fails(&env, &ctx);
    assert!(err.contains(&format!("{u}/missing")) && err.contains("404 Not Found"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    // Git sources and COPY of a URL are refused by name.
    write(&ctx, "Dockerfile", "FROM busybox\nADD https://git.invalid/repo.git#main /src/\n");
    assert!(build_fails(&env, &ctx).contains("git repository is not supported"));
    write(&ctx, "Dockerfile", &format!("FROM busybox\nCOPY {u}/file.txt /x\n"));
    assert!(build_fails(&env, &ctx).contains("source can't be a URL for COPY"));
}

#[test]
fn symlinks_are_followed_inside_the_context_and_never_out_of_it() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("links");
    write(&ctx, "data.txt", "data\n");
    write(&ctx, "sub/keep.txt", "kept\n");
    let link =
        |target: &str, name: &str| std::os::unix::fs::symlink(target, ctx.join(name)).unwrap();
    link("/etc", "escape");
    link("/etc/hostname", "abs-escape");
    link("../../../../../../etc/passwd", "dotdot-escape");
    link("../data.txt", "sub/up");
    link("/sub", "abs-inside");

    // Inside the context: relative, `..` and absolute targets all resolve against its root.
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nCOPY sub/up /up.txt\nCOPY abs-inside/keep.txt /abs.txt\n",
    );
    build_ok(&env, &ctx, &["-t", "links:ok"]);
    assert_eq!(inspect(&env, "links:ok", "cat /up.txt /abs.txt"), lines(&["data", "kept"]),);

    // Out of it: the host's /etc is never read, only the context's (which has none).
    for src in ["escape/passwd", "abs-escape", "dotdot-escape"] {
        write(&ctx, "Dockerfile", &format!("FROM busybox\nCOPY {src} /stolen\n"));
        let err = build_fails(&env, &ctx);
        assert!(err.contains("not found"), "COPY {src}: {err}");
    }
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=bind,source=escape,target=/m cat /m/passwd\n",
    );
    let err = build_fails(&env, &ctx);
    assert!(err.contains("\"/escape\": not found in the build context"), "{err}");
}

//! GC while serving, SIGKILL during uploads, and graceful shutdown on SIGTERM, against the
//! real server (in-process, or as a child process where it must be killed).

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use strata_registry_server::{run_gc, GcArgs};

fn gc(root: &Path, grace: u64, dry_run: bool) -> strata_registry_server::GcReport {
    run_gc(GcArgs {
        root: Some(root.to_path_buf()),
        grace_secs: Some(grace),
        dry_run,
        config: None,
    })
    .expect("gc runs")
}

fn age(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(secs)).unwrap();
}

/// Sets every blob and link back two hours, as if pushed long ago.
fn age_everything(root: &Path) {
    let mut stack = vec![root.join("blobs"), root.join("repositories")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                age(&e.path(), 7200);
            }
        }
    }
}

#[test]
fn gc_keeps_referenced_and_in_flight_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let srv = start(root, None, true);
    let b = srv.url();
    let (da, ma) = push_image(&b, "r", "a", b"layer-a");
    let (db, _) = push_image(&b, "r", "b", b"layer-b");
    assert_eq!(req(&b, "DELETE", &format!("/v2/r/manifests/{db}"), &[], None).status, 202);
    age_everything(root);
    // A push in flight: its layer is uploaded (recently), its manifest not yet sent.
    let inflight = push_blob(&b, "r", b"in-flight layer");
    // And an upload session still receiving bytes.
    let r = req(&b, "POST", "/v2/r/blobs/uploads/", &[], Some(b""));
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(req(&b, "PATCH", &loc, &[], Some(b"partial")).status, 202);

    let dry = gc(root, 3600, true);
    assert_eq!((dry.blobs_deleted, dry.dry_run), (2, true), "{dry}"); // manifest b and layer-b
    assert!(root.join("blobs/sha256").join(&db[7..]).exists(), "dry run deletes nothing");
    let rep = gc(root, 3600, false);
    assert_eq!(rep.blobs_deleted, 2, "{rep}");
    assert_eq!(rep.blobs_kept_recent, 1, "{rep}");
    assert!(!root.join("blobs/sha256").join(&db[7..]).exists());
    assert!(!root.join("blobs/sha256").join(&sha256(b"layer-b")[7..]).exists());
    // Image a is whole, the in-flight blob and the session survive.
    let r = req(&b, "GET", "/v2/r/manifests/a", &[], None);
    assert_eq!((r.status, sha256(&r.body)), (200, da.clone()));
    assert_eq!(r.body, ma);
    assert_eq!(
        req(&b, "GET", &format!("/v2/r/blobs/{}", sha256(b"layer-a")), &[], None).status,
        200
    );
    assert_eq!(req(&b, "HEAD", &format!("/v2/r/blobs/{inflight}"), &[], None).status, 200);
    let r = req(&b, "PUT", &format!("{loc}?digest={}", sha256(b"partial!")), &[], Some(b"!"));
    assert_eq!(r.status, 201);
    // With no grace the unreferenced blobs go too, and their links.
    let rep = gc(root, 0, false);
    assert_eq!(rep.blobs_deleted, 2, "{rep}");
    assert_eq!(req(&b, "HEAD", &format!("/v2/r/blobs/{inflight}"), &[], None).status, 404);
    assert_eq!(req(&b, "GET", "/v2/r/manifests/a", &[], None).status, 200);
}

#[test]
fn gc_racing_manifest_puts_never_leaves_dangling_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let srv = start(&root, None, true);
    let b = srv.url();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    for round in 0..15 {
        let layer = format!("old layer {round}");
        let c = push_blob(&b, "race", config);
        let l = push_blob(&b, "race", layer.as_bytes());
        age_everything(&root);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        }))
        .unwrap();
        let root2 = root.clone();
        let gc_thread = std::thread::spawn(move || gc(&root2, 3600, false));
        let r = req(
            &b,
            "PUT",
            &format!("/v2/race/manifests/r{round}"),
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            Some(&manifest),
        );
        gc_thread.join().unwrap();
        match r.status {
            201 => {
                for d in [&c, &l] {
                    assert_eq!(
                        req(&b, "GET", &format!("/v2/race/blobs/{d}"), &[], None).status,
                        200,
                        "round {round}: accepted manifest lost {d}"
                    );
                }
            }
            400 => assert_eq!(r.error_code(), "MANIFEST_BLOB_UNKNOWN"),
            s => panic!("unexpected status {s}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
}

fn server_bin() -> PathBuf {
    // target/<profile>/deps/<test> -> target/<profile>/examples/strata-registry
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples/strata-registry")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_server(root: &Path, port: u16) -> Option<Child> {
    let bin = server_bin();
    if !bin.is_file() {
        eprintln!("SKIPPED: {} is not built (cargo test builds examples)", bin.display());
        return None;
    }
    let mut child = Command::new(bin)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--root"])
        .arg(root)
        .args(["--log-level", "warn", "--delete-enabled"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start on port {port}");
}

fn try_req(
    base: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<Resp> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| req(base, method, url, headers, body)))
        .ok()
}

/// One push of a random image: chunked or monolithic layers, then the manifest.
/// A completed push: repository, tag, and (digest, bytes) of the manifest then its blobs.
type Pushed = (String, String, Vec<(String, Vec<u8>)>);

fn random_push(base: &str, i: usize) -> Option<Pushed> {
    let repo = format!("crash/r{}", i % 5);
    let tag = format!("t{i}");
    let n = 200_000 + (rand::random::<u32>() % 1_500_000) as usize;
    let layer: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    let config = format!(r#"{{"architecture":"amd64","os":"linux","n":{i}}}"#).into_bytes();
    for blob in [&config, &layer] {
        let d = sha256(blob);
        if rand::random::<bool>() {
            let r = try_req(
                base,
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[],
                Some(blob),
            )?;
            if r.status != 201 {
                return None;
            }
        } else {
            let r = try_req(base, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], Some(b""))?;
            let mut loc = r.header("location")?.to_string();
            let half = blob.len() / 2;
            let range = format!("0-{}", half - 1);
            let r =
                try_req(base, "PATCH", &loc, &[("content-range", &range)], Some(&blob[..half]))?;
            loc = r.header("location")?.to_string();
            let r = try_req(base, "PUT", &format!("{loc}?digest={d}"), &[], Some(&blob[half..]))?;
            if r.status != 201 {
                return None;
            }
        }
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let r = try_req(
        base,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Some(&manifest),
    )?;
    (r.status == 201).then(|| {
        (
            repo,
            tag,
            vec![(sha256(&manifest), manifest), (sha256(&config), config), (sha256(&layer), layer)],
        )
    })
}

#[test]
fn sigkill_during_uploads_loses_no_completed_push() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let port = free_port();
    let Some(mut child) = spawn_server(&root, port) else { return };
    let base = format!("http://127.0.0.1:{port}");
    let done: Arc<Mutex<Vec<_>>> = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (done, next, killed, base) =
                (done.clone(), next.clone(), killed.clone(), base.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= 50 || killed.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(p) = random_push(&base, i) {
                    if !killed.load(Ordering::SeqCst) {
                        done.lock().unwrap().push(p);
                    }
                }
            })
        })
        .collect();
    // Kill at a random point while pushes are running.
    let kill_after = 8 + rand::random::<u64>() % 15;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (done.lock().unwrap().len() as u64) < kill_after && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Record what completed *before* the kill: a push counted after it may have raced it.
    let completed: Vec<_> = done.lock().unwrap().clone();
    child.kill().unwrap(); // SIGKILL
    killed.store(true, Ordering::SeqCst);
    child.wait().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    assert!(!completed.is_empty());

    let mut child = spawn_server(&root, port).expect("restart");
    for (repo, tag, blobs) in &completed {
        let r = req(&base, "GET", &format!("/v2/{repo}/manifests/{tag}"), &[], None);
        assert_eq!(r.status, 200, "{repo}:{tag} lost after SIGKILL");
        assert_eq!(sha256(&r.body), blobs[0].0);
        for (d, bytes) in &blobs[1..] {
            let r = req(&base, "GET", &format!("/v2/{repo}/blobs/{d}"), &[], None);
            assert_eq!(r.status, 200);
            assert_eq!(&r.body, bytes, "{d} differs");
        }
    }
    // No partial blob is visible: every stored blob hashes to its name.
    let mut n = 0;
    for e in std::fs::read_dir(root.join("blobs/sha256")).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha256(&bytes)[7..],
            *e.file_name().to_string_lossy(),
            "torn blob {:?}",
            e.path()
        );
        n += 1;
    }
    assert!(
        std::fs::read_dir(root.join("uploads")).unwrap().count() == 0,
        "stale uploads are dropped on start"
    );
    eprintln!(
        "crash test: {} pushes completed before SIGKILL, {n} blobs verified",
        completed.len()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_finishes_in_flight_download() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let port = free_port();
    let Some(child) = spawn_server(&root, port) else { return };
    let base = format!("http://127.0.0.1:{port}");
    let blob: Vec<u8> =
        (0..30_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let d = push_blob(&base, "big", &blob);
    let resp = agent().get(&format!("{base}/v2/big/blobs/{d}")).call().unwrap();
    let mut reader = resp.into_reader();
    let mut got = vec![0u8; 1 << 20];
    std::io::Read::read_exact(&mut reader, &mut got).unwrap();
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once shutdown began...
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    // ...but the download in flight completes.
    std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
    assert_eq!(sha256(&got), d);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "server exits cleanly after SIGTERM: {:?}", out.status);
}

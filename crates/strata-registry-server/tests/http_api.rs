//! The distribution API over real HTTP against a real server on loopback.

mod common;
use common::*;

#[test]
fn base_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), None, false);
    let b = srv.url();
    let r = req(&b, "GET", "/v2/", &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-distribution-api-version"), Some("registry/2.0"));
    let r = req(&b, "GET", "/v2/Bad_Name/tags/list", &[], None);
    assert_eq!((r.status, r.error_code().as_str()), (400, "NAME_INVALID"));
    let r = req(&b, "GET", "/v2/ok/blobs/sha256:nothex", &[], None);
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
    let r = req(&b, "GET", "/v2/nothing/tags/list", &[], None);
    assert_eq!((r.status, r.error_code().as_str()), (404, "NAME_UNKNOWN"));
    let r = req(&b, "GET", &format!("/v2/ok/manifests/{}", sha256(b"x")), &[], None);
    assert_eq!((r.status, r.error_code().as_str()), (404, "MANIFEST_UNKNOWN"));
    // Deletion is off unless configured.
    let d = push_blob(&b, "ok", b"data");
    let r = req(&b, "DELETE", &format!("/v2/ok/blobs/{d}"), &[], None);
    assert_eq!((r.status, r.error_code().as_str()), (405, "UNSUPPORTED"));
    assert_eq!(req(&b, "GET", "/healthz", &[], None).status, 200);
    let m = String::from_utf8(req(&b, "GET", "/metrics", &[], None).body).unwrap();
    assert!(
        m.contains("strata_registry_http_requests_total{method=\"GET\",status=\"404\"}"),
        "{m}"
    );
}

#[test]
fn blobs_monolithic_chunked_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), None, true);
    let b = srv.url();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let d = sha256(&data);

    // Chunked: POST, PATCH x2 with Content-Range, a refused out-of-order chunk, PUT.
    let r = req(&b, "POST", "/v2/a/b/blobs/uploads/", &[], Some(b""));
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_string();
    let r = req(
        &b,
        "PATCH",
        &loc,
        &[("content-range", "0-99999"), ("content-type", "application/octet-stream")],
        Some(&data[..100_000]),
    );
    assert_eq!((r.status, r.header("range")), (202, Some("0-99999")));
    let loc = r.header("location").unwrap().to_string();
    let r = req(&b, "PATCH", &loc, &[("content-range", "150000-199999")], Some(&data[150_000..]));
    assert_eq!((r.status, r.error_code().as_str()), (416, "RANGE_INVALID"));
    assert_eq!(r.header("range"), Some("0-99999"));
    let r = req(&b, "GET", &loc, &[], None);
    assert_eq!((r.status, r.header("range")), (204, Some("0-99999")));
    let r = req(&b, "PATCH", &loc, &[("content-range", "100000-199999")], Some(&data[100_000..]));
    assert_eq!(r.status, 202);
    let r = req(&b, "PUT", &format!("{loc}?digest={}", sha256(b"wrong")), &[], Some(b""));
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
    // A failed finish ends the session.
    assert_eq!(req(&b, "GET", &loc, &[], None).status, 404);

    let r = req(&b, "POST", "/v2/a/b/blobs/uploads/", &[], Some(b""));
    let loc = r.header("location").unwrap().to_string();
    req(&b, "PATCH", &loc, &[], Some(&data[..1000]));
    let r = req(&b, "PUT", &format!("{loc}?digest={d}"), &[], Some(&data[1000..]));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));

    let r = req(&b, "HEAD", &format!("/v2/a/b/blobs/{d}"), &[], None);
    assert_eq!((r.status, r.header("content-length")), (200, Some("200000")));
    let r = req(&b, "GET", &format!("/v2/a/b/blobs/{d}"), &[], None);
    assert_eq!(r.body, data);
    let r = req(&b, "GET", &format!("/v2/a/b/blobs/{d}"), &[("range", "bytes=10-19")], None);
    assert_eq!((r.status, r.header("content-range")), (206, Some("bytes 10-19/200000")));
    assert_eq!(r.body, &data[10..20]);
    // A Range large enough to go out by sendfile (zerocopy.rs), from inside the file.
    let r = req(&b, "GET", &format!("/v2/a/b/blobs/{d}"), &[("range", "bytes=1000-150999")], None);
    assert_eq!((r.status, r.header("content-range")), (206, Some("bytes 1000-150999/200000")));
    assert!(r.body == data[1000..151_000], "the ranged body is byte-identical");
    let r = req(&b, "GET", &format!("/v2/a/b/blobs/{d}"), &[("range", "bytes=120000-")], None);
    assert!(r.status == 206 && r.body == data[120_000..]);
    let r = req(&b, "GET", &format!("/v2/a/b/blobs/{d}"), &[("range", "bytes=300000-")], None);
    assert_eq!(r.status, 416);
    // Not in another repository until mounted.
    assert_eq!(req(&b, "HEAD", &format!("/v2/other/blobs/{d}"), &[], None).status, 404);
    let r =
        req(&b, "POST", &format!("/v2/other/blobs/uploads/?mount={d}&from=a/b"), &[], Some(b""));
    assert_eq!(r.status, 201);
    assert_eq!(req(&b, "HEAD", &format!("/v2/other/blobs/{d}"), &[], None).status, 200);
    // Mount from a repository without it falls back to a session.
    let r = req(
        &b,
        "POST",
        &format!("/v2/third/blobs/uploads/?mount={d}&from=nowhere"),
        &[],
        Some(b""),
    );
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(req(&b, "DELETE", &loc, &[], None).status, 204);
    assert_eq!(req(&b, "GET", &loc, &[], None).status, 404);
    // Delete the blob from one repository.
    assert_eq!(req(&b, "DELETE", &format!("/v2/other/blobs/{d}"), &[], None).status, 202);
    assert_eq!(req(&b, "HEAD", &format!("/v2/other/blobs/{d}"), &[], None).status, 404);
    assert_eq!(req(&b, "HEAD", &format!("/v2/a/b/blobs/{d}"), &[], None).status, 200);
    // No upload file is left behind.
    assert_eq!(std::fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0);
}

#[test]
fn manifests_tags_referrers_catalog_delete() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), None, true);
    let b = srv.url();
    // A manifest whose blobs are missing is refused.
    let bogus = serde_json::json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":sha256(b"none"),"size":4},"layers":[]});
    let r = req(
        &b,
        "PUT",
        "/v2/r/manifests/x",
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Some(&serde_json::to_vec(&bogus).unwrap()),
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "MANIFEST_BLOB_UNKNOWN"));
    let r = req(
        &b,
        "PUT",
        "/v2/r/manifests/x",
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Some(b"{not json"),
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "MANIFEST_INVALID"));

    let mut digests = Vec::new();
    for t in ["t1", "t2", "t3", "t4", "t5"] {
        digests.push(push_image(&b, "r", t, t.as_bytes()));
    }
    let (d1, m1) = digests[0].clone();
    let r = req(&b, "GET", "/v2/r/manifests/t1", &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, m1);
    assert_eq!(r.header("docker-content-digest"), Some(d1.as_str()));
    assert_eq!(r.header("content-type"), Some("application/vnd.oci.image.manifest.v1+json"));
    let r = req(&b, "HEAD", &format!("/v2/r/manifests/{d1}"), &[], None);
    assert_eq!((r.status, r.header("content-length")), (200, Some(m1.len().to_string().as_str())));

    let r = req(&b, "GET", "/v2/r/tags/list?n=2", &[], None);
    assert_eq!(r.json()["tags"], serde_json::json!(["t1", "t2"]));
    assert_eq!(r.header("link"), Some("</v2/r/tags/list?n=2&last=t2>; rel=\"next\""));
    let r = req(&b, "GET", "/v2/r/tags/list?n=2&last=t4", &[], None);
    assert_eq!(r.json()["tags"], serde_json::json!(["t5"]));
    assert_eq!(r.header("link"), None);

    // Referrers: an artifact whose subject is t1, filtered by artifactType.
    let empty = push_blob(&b, "r", b"{}");
    let art = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d1, "size": m1.len()},
        "annotations": {"k": "v"}
    }))
    .unwrap();
    let ad = sha256(&art);
    let r = req(
        &b,
        "PUT",
        &format!("/v2/r/manifests/{ad}"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Some(&art),
    );
    assert_eq!((r.status, r.header("oci-subject")), (201, Some(d1.as_str())));
    let r = req(&b, "GET", &format!("/v2/r/referrers/{d1}"), &[], None);
    assert_eq!(r.header("content-type"), Some("application/vnd.oci.image.index.v1+json"));
    let idx = r.json();
    assert_eq!(idx["manifests"][0]["digest"], serde_json::json!(ad));
    assert_eq!(idx["manifests"][0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(idx["manifests"][0]["annotations"]["k"], "v");
    let r = req(&b, "GET", &format!("/v2/r/referrers/{d1}?artifactType=other"), &[], None);
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));

    push_image(&b, "z/last", "x", b"z");
    let r = req(&b, "GET", "/v2/_catalog", &[], None);
    assert_eq!(r.json()["repositories"], serde_json::json!(["r", "z/last"]));
    let r = req(&b, "GET", "/v2/_catalog?n=1", &[], None);
    assert_eq!(r.json()["repositories"], serde_json::json!(["r"]));
    assert!(r.header("link").unwrap().contains("last=r"));

    // Delete a tag, then a manifest by digest (its tags go with it), then the referrer.
    assert_eq!(req(&b, "DELETE", "/v2/r/manifests/t2", &[], None).status, 202);
    assert_eq!(req(&b, "GET", "/v2/r/manifests/t2", &[], None).status, 404);
    assert_eq!(req(&b, "GET", &format!("/v2/r/manifests/{}", digests[1].0), &[], None).status, 200);
    assert_eq!(
        req(&b, "DELETE", &format!("/v2/r/manifests/{}", digests[2].0), &[], None).status,
        202
    );
    assert_eq!(req(&b, "GET", "/v2/r/manifests/t3", &[], None).status, 404);
    assert_eq!(req(&b, "DELETE", &format!("/v2/r/manifests/{ad}"), &[], None).status, 202);
    assert_eq!(
        req(&b, "GET", &format!("/v2/r/referrers/{d1}"), &[], None).json()["manifests"],
        serde_json::json!([])
    );
    let r = req(&b, "GET", "/v2/r/tags/list", &[], None);
    assert_eq!(r.json()["tags"], serde_json::json!(["t1", "t4", "t5"]));
}

#[test]
fn serves_https_with_rustls() {
    if !have("openssl") || !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let srv = strata_registry_server::spawn(strata_registry_server::ServeArgs {
        addr: Some("127.0.0.1:0".into()),
        root: Some(dir.path().join("root")),
        tls_cert: Some(cert.clone()),
        tls_key: Some(key),
        log_level: "warn".into(),
        ..Default::default()
    })
    .unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&cert)
        .arg(format!("https://{}/v2/", srv.addr))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{}");
    // A missing key is a clear setup error, not a panic.
    let err = strata_registry_server::spawn(strata_registry_server::ServeArgs {
        addr: Some("127.0.0.1:0".into()),
        root: Some(dir.path().join("root2")),
        tls_cert: Some(cert),
        tls_key: Some(dir.path().join("absent.pem")),
        ..Default::default()
    })
    .err()
    .expect("refused");
    assert!(format!("{err:#}").contains("absent.pem"), "{err:#}");
}

#[test]
fn idle_upload_sessions_expire() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "upload_expiry_secs = 1\n").unwrap();
    let srv = start(&dir.path().join("root"), Some(&cfg), false);
    let b = srv.url();
    let r = req(&b, "POST", "/v2/e/blobs/uploads/", &[], Some(b""));
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(req(&b, "PATCH", &loc, &[], Some(b"abc")).status, 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = req(&b, "GET", &loc, &[], None);
        if r.status == 404 {
            assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "session never expired");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let uploads = std::fs::read_dir(dir.path().join("root/uploads")).unwrap().count();
    assert_eq!(uploads, 0, "the expired session's file is removed");
}

/// `sendfile = true`: blob bodies go out by sendfile under hyper's framing; keep-alive,
/// Range, HEAD and small blobs behave exactly as with the default writev path.
#[test]
fn blob_gets_with_sendfile_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "sendfile = true\n").unwrap();
    let srv = start(&dir.path().join("root"), Some(&cfg), false);
    let b = srv.url();
    let data: Vec<u8> =
        (0..5_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let d = push_blob(&b, "sf/big", &data);
    let small = push_blob(&b, "sf/big", b"tiny");
    let path = format!("/v2/sf/big/blobs/{d}");
    // Several requests on one keep-alive connection (ureq's agent pools it).
    for _ in 0..3 {
        let r = req(&b, "GET", &path, &[], None);
        assert_eq!((r.status, r.header("content-length")), (200, Some("5000000")));
        assert!(r.body == data, "the body arrives byte-identical");
    }
    let r = req(&b, "GET", &path, &[("range", "bytes=123457-4000000")], None);
    assert_eq!((r.status, r.header("content-range")), (206, Some("bytes 123457-4000000/5000000")));
    assert!(r.body == data[123_457..=4_000_000]);
    let r = req(&b, "HEAD", &path, &[], None);
    assert_eq!((r.status, r.header("content-length"), r.body.len()), (200, Some("5000000"), 0));
    let r = req(&b, "GET", &format!("/v2/sf/big/blobs/{small}"), &[], None);
    assert_eq!(r.body, b"tiny");
}

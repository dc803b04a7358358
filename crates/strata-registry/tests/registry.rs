//! Push and pull between the local store and Debian's docker-registry on loopback, with and
//! without htpasswd auth, through proxies that tamper with or cut blob downloads.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use strata_oci::{Digest, Reference};
use strata_registry::{
    pull_image, push_image, Client, ClientOptions, CredentialSource, Credentials, Event,
    PullOptions, PushOptions, RegistryError,
};
use strata_store::layer_info::Limits;
use strata_store::Store;

fn store_with(dir: &std::path::Path, fixture_name: &str) -> Option<Store> {
    let f = fixture(fixture_name)?;
    let store = Store::open(dir).unwrap();
    let file = std::fs::File::open(&f).unwrap();
    strata_store::archive::load(&store, fixture_name, file, Limits::default(), &mut |_| {})
        .unwrap();
    Some(store)
}

fn anon() -> Client {
    Client::new(ClientOptions { credentials: CredentialSource::Anonymous, ..Default::default() })
        .unwrap()
}

fn recording(opts: ClientOptions) -> (Client, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let client = Client::new(opts).unwrap().with_events(move |ev| e.lock().unwrap().push(ev));
    (client, events)
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn ingest_files(store: &Store) -> usize {
    std::fs::read_dir(store.blobs().ingest_dir()).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn push_then_pull_round_trip_keeps_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(src) = store_with(&tmp.path().join("src"), "busybox.docker.tar") else { return };
    let Some(reg) = Registry::start(&tmp.path().join("reg"), None) else { return };
    let rt = strata_registry::runtime().unwrap();
    let client = anon();
    let target = r(&format!("{}/test/busybox:1", reg.addr));
    let pushed = rt
        .block_on(push_image(&client, &src, "busybox:latest", &target, &PushOptions::default()))
        .unwrap();
    assert_eq!(pushed.uploaded, 2, "config and one layer uploaded");
    let local = src.resolve("busybox:latest").unwrap();
    assert_eq!(pushed.digest, local.manifest_digest);

    // A second push finds everything in place (HEAD).
    let again = rt
        .block_on(push_image(&client, &src, "busybox:latest", &target, &PushOptions::default()))
        .unwrap();
    assert_eq!((again.uploaded, again.existed), (0, 2));

    // Another repository of the same registry: blobs are mounted, not uploaded.
    let src_rec = src.resolve("busybox:latest").unwrap();
    assert!(src_rec.repo_digests.iter().any(|d| d.repository() == "test/busybox"));
    let other = r(&format!("{}/other/bb:2", reg.addr));
    let mounted = rt
        .block_on(push_image(&client, &src, "busybox:latest", &other, &PushOptions::default()))
        .unwrap();
    assert_eq!((mounted.uploaded, mounted.mounted), (0, 2), "{mounted:?}");

    let dst = Store::open(tmp.path().join("dst")).unwrap();
    let pulled = rt.block_on(pull_image(&client, &dst, &target, &PullOptions::default())).unwrap();
    assert_eq!(pulled.image_id, local.id);
    assert_eq!(pulled.digest, pushed.digest);
    assert_eq!(pulled.downloaded, 1);
    // Pull records layers unread; their content sizes (and the diffID check) come with the
    // first measurement, and then match what `load` recorded.
    let rec = dst.resolve(&target.to_string()).unwrap();
    assert_eq!(rec.layers[0].content_size, strata_store::CONTENT_SIZE_PENDING);
    assert_eq!(rec.size, u64::MAX, "image size unknown until measured");
    let problems = dst.measure_pending_layers(Default::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let rec = dst.resolve(&target.to_string()).unwrap();
    assert_eq!(rec.layers, local.layers.to_vec());
    assert_eq!(rec.size, local.size);
    assert_eq!(rec.repo_digests[0].digest(), Some(&pushed.digest));
    // Again: nothing downloaded.
    let pulled = rt.block_on(pull_image(&client, &dst, &target, &PullOptions::default())).unwrap();
    assert_eq!((pulled.downloaded, pulled.already_present), (0, 1));
    // By digest.
    let by_digest = r(&format!("{}/test/busybox@{}", reg.addr, pushed.digest));
    let pulled =
        rt.block_on(pull_image(&client, &dst, &by_digest, &PullOptions::default())).unwrap();
    assert_eq!(pulled.image_id, local.id);
    // A missing tag is a clear error.
    let err = rt
        .block_on(pull_image(
            &client,
            &dst,
            &r(&format!("{}/test/busybox:nope", reg.addr)),
            &PullOptions::default(),
        ))
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("manifest not found"), "{err}");
}

#[test]
fn htpasswd_registry_needs_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(src) = store_with(&tmp.path().join("src"), "busybox.docker.tar") else { return };
    let Some(reg) = Registry::start(&tmp.path().join("reg"), Some(("alice", "s3cret"))) else {
        return;
    };
    let rt = strata_registry::runtime().unwrap();
    let target = r(&format!("{}/private/bb:1", reg.addr));

    let err = rt
        .block_on(push_image(&anon(), &src, "busybox:latest", &target, &PushOptions::default()))
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("strata login"), "{err}");

    let wrong = Client::new(ClientOptions {
        credentials: CredentialSource::Fixed(Credentials {
            username: "alice".into(),
            password: "bad".into(),
        }),
        ..Default::default()
    })
    .unwrap();
    let err = rt.block_on(wrong.ping(&reg.addr)).unwrap_err();
    assert!(err.to_string().contains("refused with the stored credentials"), "{err}");

    // Credentials from a Docker config.json, as `docker login` writes them.
    let cfg_path = tmp.path().join("docker/config.json");
    let mut cfg = strata_registry::DockerConfig::load(&cfg_path).unwrap();
    cfg.store(&reg.addr, &Credentials { username: "alice".into(), password: "s3cret".into() })
        .unwrap();
    let client = Client::new(ClientOptions {
        credentials: CredentialSource::DockerConfig(Some(cfg_path)),
        ..Default::default()
    })
    .unwrap();
    rt.block_on(client.ping(&reg.addr)).unwrap();
    let pushed = rt
        .block_on(push_image(&client, &src, "busybox:latest", &target, &PushOptions::default()))
        .unwrap();
    let dst = Store::open(tmp.path().join("dst")).unwrap();
    let pulled = rt.block_on(pull_image(&client, &dst, &target, &PullOptions::default())).unwrap();
    assert_eq!(pulled.digest, pushed.digest);
    let err = rt.block_on(pull_image(&anon(), &dst, &target, &PullOptions::default())).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
}

#[test]
fn tampered_blob_is_refused_and_leaves_no_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(src) = store_with(&tmp.path().join("src"), "busybox.docker.tar") else { return };
    let Some(reg) = Registry::start(&tmp.path().join("reg"), None) else { return };
    let rt = strata_registry::runtime().unwrap();
    let client = anon();
    rt.block_on(push_image(
        &client,
        &src,
        "busybox:latest",
        &r(&format!("{}/t/bb:1", reg.addr)),
        &PushOptions::default(),
    ))
    .unwrap();
    let proxy = Proxy::start(&reg.addr, ProxyMode::Tamper);
    let dst = Store::open(tmp.path().join("dst")).unwrap();
    let through = r(&format!("{}/t/bb:1", proxy.addr));
    let err =
        rt.block_on(pull_image(&client, &dst, &through, &PullOptions::default())).unwrap_err();
    assert!(proxy.tampered.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{msg}");
    assert!(msg.contains("digest mismatch for layer sha256:"), "{msg}");
    assert!(msg.contains("nothing was stored"), "{msg}");
    // No trace: no image, no blob of the layer, no leftover ingest file.
    assert!(dst.images().unwrap().is_empty());
    let layer = &src.resolve("busybox:latest").unwrap().layers[0].digest;
    assert!(!dst.blobs().exists(layer));
    let (blobs, _) = dst.blobs().list().unwrap();
    assert!(blobs.is_empty(), "blobs left: {blobs:?}");
    assert_eq!(ingest_files(&dst), 0);
}

#[test]
fn cut_connections_are_resumed_with_range() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(src) = store_with(&tmp.path().join("src"), "busybox.docker.tar") else { return };
    let Some(reg) = Registry::start(&tmp.path().join("reg"), None) else { return };
    let rt = strata_registry::runtime().unwrap();
    let pushed = rt
        .block_on(push_image(
            &anon(),
            &src,
            "busybox:latest",
            &r(&format!("{}/c/bb:1", reg.addr)),
            &PushOptions::default(),
        ))
        .unwrap();
    let proxy = Proxy::start(&reg.addr, ProxyMode::Cut(3));
    let (client, events) = recording(ClientOptions {
        credentials: CredentialSource::Anonymous,
        backoff: std::time::Duration::from_millis(20),
        ..Default::default()
    });
    let dst = Store::open(tmp.path().join("dst")).unwrap();
    let pulled = rt
        .block_on(pull_image(
            &client,
            &dst,
            &r(&format!("{}/c/bb:1", proxy.addr)),
            &PullOptions::default(),
        ))
        .unwrap();
    assert_eq!(pulled.digest, pushed.digest);
    assert_eq!(proxy.cuts.load(std::sync::atomic::Ordering::Relaxed), 3);
    let retries: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Retry { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 3, "{retries:?}");
    // Each retry asks for the rest with Range: the proxy cuts each answer 60000 bytes in.
    for (i, e) in retries.iter().enumerate() {
        assert!(e.contains(&format!("resuming at byte {}", 60000 * (i + 1))), "{retries:?}");
    }
    dst.blobs()
        .verify(&dst.resolve(&pulled.image_id.to_string()).unwrap().layers[0].digest)
        .unwrap();
}

#[test]
fn index_selects_the_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(src) = store_with(&tmp.path().join("src"), "busybox.docker.tar") else { return };
    let Some(reg) = Registry::start(&tmp.path().join("reg"), None) else { return };
    let rt = strata_registry::runtime().unwrap();
    let client = anon();
    let pushed = rt
        .block_on(push_image(
            &client,
            &src,
            "busybox:latest",
            &r(&format!("{}/m/bb:img", reg.addr)),
            &PushOptions::default(),
        ))
        .unwrap();
    let rec = src.resolve("busybox:latest").unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": rec.manifest_media_type, "digest": pushed.digest.to_string(), "size": pushed.size,
             "platform": {"os": "linux", "architecture": "riscv64"}},
            {"mediaType": rec.manifest_media_type, "digest": pushed.digest.to_string(), "size": pushed.size,
             "platform": {"os": "linux", "architecture": strata_oci::Platform::host().architecture}},
        ]
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    rt.block_on(client.put_manifest(
        &reg.addr,
        "m/bb",
        "multi",
        &bytes,
        "application/vnd.oci.image.index.v1+json",
    ))
    .unwrap();
    let dst = Store::open(tmp.path().join("dst")).unwrap();
    let pulled = rt
        .block_on(pull_image(
            &client,
            &dst,
            &r(&format!("{}/m/bb:multi", reg.addr)),
            &PullOptions::default(),
        ))
        .unwrap();
    assert_eq!(pulled.digest, Digest::sha256_of(&bytes), "repo digest is the index's");
    assert_eq!(pulled.manifest_digest, pushed.digest);
    let err = rt
        .block_on(pull_image(
            &client,
            &dst,
            &r(&format!("{}/m/bb:multi", reg.addr)),
            &PullOptions {
                platform: Some(strata_oci::Platform::parse("windows/arm64").unwrap()),
                ..Default::default()
            },
        ))
        .unwrap_err();
    assert!(matches!(err, RegistryError::NoPlatform { .. }), "{err}");
}

#[test]
fn bearer_tokens_per_repository_scope_are_fetched_and_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(src) = store_with(&tmp.path().join("src"), "busybox.docker.tar") else { return };
    let Some(reg) = Registry::start(&tmp.path().join("reg"), None) else { return };
    let gate = TokenGate::start(&reg.addr, "dave", "pw");
    let rt = strata_registry::runtime().unwrap();
    let target = r(&format!("{}/tok/bb:1", gate.addr));
    // Anonymous: the token service grants pull only, so a push is refused clearly.
    let err = rt
        .block_on(push_image(&anon(), &src, "busybox:latest", &target, &PushOptions::default()))
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    let client = Client::new(ClientOptions {
        credentials: CredentialSource::Fixed(Credentials {
            username: "dave".into(),
            password: "pw".into(),
        }),
        ..Default::default()
    })
    .unwrap();
    let pushed = rt
        .block_on(push_image(&client, &src, "busybox:latest", &target, &PushOptions::default()))
        .unwrap();
    let n_after_push = gate.token_requests.lock().unwrap().len();
    // Anonymous pull works with a pull-scoped token.
    let dst = Store::open(tmp.path().join("dst")).unwrap();
    let anon_client = anon();
    let pulled =
        rt.block_on(pull_image(&anon_client, &dst, &target, &PullOptions::default())).unwrap();
    assert_eq!(pulled.digest, pushed.digest);
    let reqs = gate.token_requests.lock().unwrap().clone();
    assert!(
        reqs.iter()
            .any(|(q, authed)| *authed && q.contains("scope=repository%3Atok%2Fbb%3Apull%2Cpush")),
        "{reqs:?}"
    );
    // The push reused its token: one token request with credentials for its scope.
    assert_eq!(reqs[..n_after_push].iter().filter(|(_, a)| *a).count(), 1, "{reqs:?}");
    // The anonymous pull fetched one pull token and reused it for manifest, config and layer.
    let pulls: Vec<_> = reqs[n_after_push..].iter().collect();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(pulls[0].0.contains("scope=repository%3Atok%2Fbb%3Apull") && !pulls[0].1);
    // A second repository needs its own token.
    rt.block_on(pull_image(
        &anon_client,
        &dst,
        &r(&format!("{}/tok/bb:1", gate.addr)),
        &PullOptions::default(),
    ))
    .unwrap();
    assert_eq!(
        gate.token_requests.lock().unwrap().len(),
        n_after_push + 1,
        "token reused across pulls"
    );
}

#[test]
fn copy_all_moves_a_multi_platform_index_between_registries() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(src) = store_with(&tmp.path().join("src"), "busybox.docker.tar") else { return };
    let Some(a) = Registry::start(&tmp.path().join("a"), None) else { return };
    let Some(b) = Registry::start(&tmp.path().join("b"), None) else { return };
    let rt = strata_registry::runtime().unwrap();
    let client = anon();
    let pushed = rt
        .block_on(push_image(
            &client,
            &src,
            "busybox:latest",
            &r(&format!("{}/m/bb:img", a.addr)),
            &PushOptions::default(),
        ))
        .unwrap();
    // A second, different image manifest for another platform (same blobs, other bytes).
    let raw = src.blobs().read(&pushed.digest).unwrap();
    let mut other: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    other["annotations"] = serde_json::json!({"variant": "arm64"});
    let other_bytes = serde_json::to_vec(&other).unwrap();
    let mt = src.resolve("busybox:latest").unwrap().manifest_media_type;
    rt.block_on(client.put_manifest(&a.addr, "m/bb", "arm", &other_bytes, &mt)).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "digest": pushed.digest.to_string(), "size": pushed.size,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": mt, "digest": Digest::sha256_of(&other_bytes).to_string(), "size": other_bytes.len(),
             "platform": {"os": "linux", "architecture": "arm64"}},
        ]
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    rt.block_on(client.put_manifest(
        &a.addr,
        "m/bb",
        "multi",
        &bytes,
        "application/vnd.oci.image.index.v1+json",
    ))
    .unwrap();

    let opts = strata_registry::CopyOptions { all: true, max_concurrent: 4, ..Default::default() };
    let copied = rt
        .block_on(strata_registry::copy_image(
            &client,
            &r(&format!("{}/m/bb:multi", a.addr)),
            &r(&format!("{}/x/y:multi", b.addr)),
            &opts,
        ))
        .unwrap();
    assert_eq!(copied.digest, Digest::sha256_of(&bytes));
    assert_eq!((copied.manifests, copied.blobs_copied), (3, 2));
    // Both platforms pull from the destination.
    for arch in ["amd64", "arm64"] {
        let dst = Store::open(tmp.path().join(format!("dst-{arch}"))).unwrap();
        let p = PullOptions {
            platform: Some(strata_oci::Platform::parse(&format!("linux/{arch}")).unwrap()),
            ..Default::default()
        };
        let pulled = rt
            .block_on(pull_image(&client, &dst, &r(&format!("{}/x/y:multi", b.addr)), &p))
            .unwrap();
        assert_eq!(pulled.digest, copied.digest);
    }
    // Without --all only the selected platform's manifest is copied, under the tag.
    let one = strata_registry::CopyOptions {
        platform: Some(strata_oci::Platform::parse("linux/arm64").unwrap()),
        ..Default::default()
    };
    let copied = rt
        .block_on(strata_registry::copy_image(
            &client,
            &r(&format!("{}/m/bb:multi", a.addr)),
            &r(&format!("{}/x/one:1", b.addr)),
            &one,
        ))
        .unwrap();
    assert_eq!(copied.digest, Digest::sha256_of(&other_bytes));
    assert_eq!(copied.manifests, 1);
}

#[test]
fn chunked_upload_gives_the_same_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(src) = store_with(&tmp.path().join("src"), "busybox.docker.tar") else { return };
    let Some(reg) = Registry::start(&tmp.path().join("reg"), None) else { return };
    let rt = strata_registry::runtime().unwrap();
    let client = Client::new(ClientOptions {
        credentials: CredentialSource::Anonymous,
        chunk_size: Some(100_000),
        ..Default::default()
    })
    .unwrap();
    let target = r(&format!("{}/chunked/bb:1", reg.addr));
    let pushed = rt
        .block_on(push_image(&client, &src, "busybox:latest", &target, &PushOptions::default()))
        .unwrap();
    assert_eq!(pushed.uploaded, 2);
    let dst = Store::open(tmp.path().join("dst")).unwrap();
    let pulled = rt.block_on(pull_image(&anon(), &dst, &target, &PullOptions::default())).unwrap();
    assert_eq!(pulled.image_id, src.resolve("busybox:latest").unwrap().id);
    assert_eq!(pulled.digest, pushed.digest);
}

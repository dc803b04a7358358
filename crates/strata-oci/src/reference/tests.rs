//! Cases follow Docker's behaviour (distribution/reference `ParseNormalizedNamed`).

use super::*;

const D: &str = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";

fn p(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

/// (input, full normalised form, registry, repository, familiar form)
#[test]
fn normalises_like_docker() {
    let d = D;
    let cases: Vec<(String, String, &str, &str, String)> = vec![
        (
            "busybox".into(),
            "docker.io/library/busybox".into(),
            "docker.io",
            "library/busybox",
            "busybox".into(),
        ),
        (
            "busybox:1.36".into(),
            "docker.io/library/busybox:1.36".into(),
            "docker.io",
            "library/busybox",
            "busybox:1.36".into(),
        ),
        (
            "library/busybox".into(),
            "docker.io/library/busybox".into(),
            "docker.io",
            "library/busybox",
            "busybox".into(),
        ),
        (
            "docker.io/busybox".into(),
            "docker.io/library/busybox".into(),
            "docker.io",
            "library/busybox",
            "busybox".into(),
        ),
        (
            "docker.io/library/busybox".into(),
            "docker.io/library/busybox".into(),
            "docker.io",
            "library/busybox",
            "busybox".into(),
        ),
        (
            "index.docker.io/foo".into(),
            "docker.io/library/foo".into(),
            "docker.io",
            "library/foo",
            "foo".into(),
        ),
        (
            "index.docker.io/fooo/bar".into(),
            "docker.io/fooo/bar".into(),
            "docker.io",
            "fooo/bar",
            "fooo/bar".into(),
        ),
        // Docker does not rewrite the real Hub endpoint name.
        (
            "registry-1.docker.io/foo".into(),
            "registry-1.docker.io/foo".into(),
            "registry-1.docker.io",
            "foo",
            "registry-1.docker.io/foo".into(),
        ),
        (
            "user/app".into(),
            "docker.io/user/app".into(),
            "docker.io",
            "user/app",
            "user/app".into(),
        ),
        (
            "library/foo/bar".into(),
            "docker.io/library/foo/bar".into(),
            "docker.io",
            "library/foo/bar",
            "library/foo/bar".into(),
        ),
        (
            "store/foo/bar".into(),
            "docker.io/store/foo/bar".into(),
            "docker.io",
            "store/foo/bar",
            "store/foo/bar".into(),
        ),
        (
            "other/library".into(),
            "docker.io/other/library".into(),
            "docker.io",
            "other/library",
            "other/library".into(),
        ),
        (
            "test_com/foo".into(),
            "docker.io/test_com/foo".into(),
            "docker.io",
            "test_com/foo",
            "test_com/foo".into(),
        ),
        (
            "localhost/foo".into(),
            "localhost/foo".into(),
            "localhost",
            "foo",
            "localhost/foo".into(),
        ),
        (
            "localhost:5000/a/b:1".into(),
            "localhost:5000/a/b:1".into(),
            "localhost:5000",
            "a/b",
            "localhost:5000/a/b:1".into(),
        ),
        (
            "127.0.0.1:5055/x".into(),
            "127.0.0.1:5055/x".into(),
            "127.0.0.1:5055",
            "x",
            "127.0.0.1:5055/x".into(),
        ),
        ("[::1]:5000/x".into(), "[::1]:5000/x".into(), "[::1]:5000", "x", "[::1]:5000/x".into()),
        (
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian".into(),
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian".into(),
            "[fc00:1:2:3:4:5:6:7]:5000",
            "library/debian",
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian".into(),
        ),
        (
            "registry.example.com/a".into(),
            "registry.example.com/a".into(),
            "registry.example.com",
            "a",
            "registry.example.com/a".into(),
        ),
        (
            "example.com:8000/private/moonbase".into(),
            "example.com:8000/private/moonbase".into(),
            "example.com:8000",
            "private/moonbase",
            "example.com:8000/private/moonbase".into(),
        ),
        (
            "test-com:8080/foo".into(),
            "test-com:8080/foo".into(),
            "test-com:8080",
            "foo",
            "test-com:8080/foo".into(),
        ),
        (
            "xn--n3h.com/foo".into(),
            "xn--n3h.com/foo".into(),
            "xn--n3h.com",
            "foo",
            "xn--n3h.com/foo".into(),
        ),
        // An upper-case first element can only be a host: Docker treats it so.
        ("Foo/bar".into(), "Foo/bar".into(), "Foo", "bar", "Foo/bar".into()),
        ("FOO/bar".into(), "FOO/bar".into(), "FOO", "bar", "FOO/bar".into()),
        // A single element is never a registry, even with a port-like suffix.
        (
            "localhost:5000".into(),
            "docker.io/library/localhost:5000".into(),
            "docker.io",
            "library/localhost",
            "localhost:5000".into(),
        ),
        (
            "192.168.0.1".into(),
            "docker.io/library/192.168.0.1".into(),
            "docker.io",
            "library/192.168.0.1",
            "192.168.0.1".into(),
        ),
        (
            "192.168.0.1:80".into(),
            "docker.io/library/192.168.0.1:80".into(),
            "docker.io",
            "library/192.168.0.1",
            "192.168.0.1:80".into(),
        ),
        (
            "docker---rules/docker".into(),
            "docker.io/docker---rules/docker".into(),
            "docker.io",
            "docker---rules/docker",
            "docker---rules/docker".into(),
        ),
        (
            "dock__er/d".into(),
            "docker.io/dock__er/d".into(),
            "docker.io",
            "dock__er/d",
            "dock__er/d".into(),
        ),
        (
            "ubuntu-12.04-base".into(),
            "docker.io/library/ubuntu-12.04-base".into(),
            "docker.io",
            "library/ubuntu-12.04-base",
            "ubuntu-12.04-base".into(),
        ),
        // A 64-hex path is fine once a registry removes the ambiguity with image IDs.
        (
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a".into(),
            "docker.io/library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
                .into(),
            "docker.io",
            "library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a".into(),
        ),
        // 63 hex digits is an ordinary name.
        (
            "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9".into(),
            "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9"
                .into(),
            "docker.io",
            "library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
            "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9".into(),
        ),
        (
            format!("redis@{d}"),
            format!("docker.io/library/redis@{d}"),
            "docker.io",
            "library/redis",
            format!("redis@{d}"),
        ),
        (
            format!("busybox:latest@{d}"),
            format!("docker.io/library/busybox:latest@{d}"),
            "docker.io",
            "library/busybox",
            format!("busybox:latest@{d}"),
        ),
        (
            format!("dmcgowan/myapp@{d}"),
            format!("docker.io/dmcgowan/myapp@{d}"),
            "docker.io",
            "dmcgowan/myapp",
            format!("dmcgowan/myapp@{d}"),
        ),
        (
            format!("localhost:5000/a:v1@{d}"),
            format!("localhost:5000/a:v1@{d}"),
            "localhost:5000",
            "a",
            format!("localhost:5000/a:v1@{d}"),
        ),
        (
            "foo:Tag_With.Upper-1".into(),
            "docker.io/library/foo:Tag_With.Upper-1".into(),
            "docker.io",
            "library/foo",
            "foo:Tag_With.Upper-1".into(),
        ),
    ];
    for (input, full, registry, repository, familiar) in cases {
        let r = p(&input);
        assert_eq!(r.to_string(), full, "full form of {input:?}");
        assert_eq!(r.registry(), registry, "registry of {input:?}");
        assert_eq!(r.repository(), repository, "repository of {input:?}");
        assert_eq!(r.name(), format!("{registry}/{repository}"), "name of {input:?}");
        assert_eq!(r.familiar(), familiar, "familiar form of {input:?}");
        // The normalised and familiar forms parse back to the same reference.
        assert_eq!(p(&full), r, "re-parse of {full:?}");
        // Except a familiar 64-hex name: Docker reads that as an image ID, and so do we.
        if is_image_id(&familiar) {
            assert!(Reference::parse(&familiar).is_err());
        } else {
            assert_eq!(p(&familiar), r, "re-parse of {familiar:?}");
        }
    }
}

#[test]
fn refuses_like_docker() {
    let long_ns = "a".repeat(250);
    let long_tag = "t".repeat(129);
    let refused: Vec<String> = vec![
        "".into(),
        "https://github.com/docker/docker".into(),
        "docker/Docker".into(),
        "-docker".into(),
        "-docker/docker".into(),
        "-docker.io/docker/docker".into(),
        "docker///docker".into(),
        "docker.io/docker/Docker".into(),
        "docker.io/docker///docker".into(),
        "[fc00::1]".into(),
        "[fc00::1]:5000".into(),
        "fc00::1:5000/debian".into(),
        "[fe80::1%eth0]:5000/debian".into(),
        "[2001:db8:3:4::192.0.2.33]:5000/debian".into(),
        "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a".into(),
        "docker-/docker".into(),
        "-docker-/docker".into(),
        "____/____".into(),
        "_docker/_docker".into(),
        "dock..er/docker".into(),
        "dock_.er/docker".into(),
        "dock-.er/docker".into(),
        "dock___er/docker".into(),
        "docker/".into(),
        "/docker".into(),
        format!("{long_ns}/docker"),
        format!("busybox:{long_tag}"),
        "busybox:".into(),
        "busybox:-tag".into(),
        "busybox:.tag".into(),
        "busybox:ta/g".into(),
        "busybox:ta+g".into(),
        "busybox@".into(),
        "busybox@sha256:abc".into(),
        "busybox@md5:0123456789abcdef0123456789abcdef".into(),
        format!("busybox@{}", D.to_uppercase()),
        format!("busybox@{D}@{D}"),
        "bus box".into(),
        "busybox!".into(),
        "localhost:port/x".into(),
        "example.com:/x".into(),
        "[::1/x".into(),
        "[::1]x/y".into(),
        "a..b.com/x".into(),
        "ex_ample.com/x".into(),
        "UPPER".into(),
    ];
    for input in refused {
        assert!(Reference::parse(&input).is_err(), "{input:?} must be refused");
    }
}

#[test]
fn errors_name_the_problem() {
    let e = Reference::parse("docker.io/docker/Docker").unwrap_err();
    assert_eq!(
        e,
        ReferenceError::Uppercase {
            reference: "docker.io/docker/Docker".into(),
            name: "docker/Docker".into()
        }
    );
    assert!(e.to_string().contains("must be lowercase"), "{e}");

    let id = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
    assert_eq!(Reference::parse(id).unwrap_err(), ReferenceError::AmbiguousImageId(id.into()));
    assert_eq!(Reference::parse("").unwrap_err(), ReferenceError::Empty);

    let long = format!("{}/x", "a".repeat(250));
    match Reference::parse(&long).unwrap_err() {
        // docker.io/ + 250 + /x
        ReferenceError::NameTooLong { len, .. } => assert_eq!(len, 262),
        other => panic!("wrong error {other:?}"),
    }
    // Exactly 255 characters is accepted.
    let max = format!("example.com/{}", "a".repeat(255 - "example.com/".len()));
    assert_eq!(p(&max).name().len(), 255);

    let tag = "t".repeat(129);
    let e = Reference::parse(&format!("busybox:{tag}")).unwrap_err();
    assert!(matches!(&e, ReferenceError::InvalidTag { tag: t, .. } if *t == tag), "{e:?}");
    assert!(e.to_string().contains("128"), "{e}");
    assert_eq!(p(&format!("busybox:{}", "t".repeat(128))).tag().unwrap().len(), 128);

    let e = Reference::parse("busybox@sha256:abc").unwrap_err();
    assert!(
        matches!(&e, ReferenceError::InvalidDigest { digest, source: DigestError::BadLength(..), .. } if digest == "sha256:abc"),
        "{e:?}"
    );
    let e = Reference::parse("docker///docker").unwrap_err();
    assert!(matches!(e, ReferenceError::InvalidName { .. }), "{e:?}");
    let e = Reference::parse("fc00::1:5000/debian").unwrap_err();
    assert!(
        matches!(&e, ReferenceError::InvalidRegistry { registry, .. } if registry == "fc00::1:5000"),
        "{e:?}"
    );
}

#[test]
fn tags_and_digests() {
    let r = p("busybox");
    assert_eq!(r.tag(), None);
    assert_eq!(r.digest(), None);
    let tagged = r.clone().with_default_tag();
    assert_eq!(tagged.to_string(), "docker.io/library/busybox:latest");
    assert_eq!(tagged.familiar(), "busybox:latest");

    // A digest alone is already specific: no default tag is added.
    let pinned = p(&format!("busybox@{D}")).with_default_tag();
    assert_eq!(pinned.tag(), None);
    assert_eq!(pinned.digest().unwrap().to_string(), D);
    // An explicit tag is kept.
    assert_eq!(p("busybox:1").with_default_tag().tag(), Some("1"));

    let both = p(&format!("busybox@{D}")).with_tag("v2").unwrap();
    assert_eq!(both.to_string(), format!("docker.io/library/busybox:v2@{D}"));
    assert!(matches!(r.with_tag("bad tag"), Err(ReferenceError::InvalidTag { .. })));
    assert_eq!(both.without_tag_or_digest(), r);
    assert_eq!(r.with_digest(D.parse().unwrap()), p(&format!("busybox@{D}")));
}

#[test]
fn eq_hash_ord_serde() {
    use std::collections::HashSet;
    let set: HashSet<Reference> =
        ["busybox", "docker.io/busybox", "index.docker.io/library/busybox", "user/app"]
            .iter()
            .map(|s| p(s))
            .collect();
    assert_eq!(set.len(), 2);

    let mut v = [p("zeta"), p("localhost/a"), p("alpha:2"), p("alpha:1")];
    v.sort();
    let shown: Vec<String> = v.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        shown,
        [
            "docker.io/library/alpha:1",
            "docker.io/library/alpha:2",
            "docker.io/library/zeta",
            "localhost/a"
        ]
    );

    let r = p("user/app:1");
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(json, "\"docker.io/user/app:1\"");
    assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
    let err = serde_json::from_str::<Reference>("\"Bad/Name/X\"").unwrap_err();
    assert!(err.to_string().contains("lowercase"), "{err}");
    assert_eq!("user/app:1".parse::<Reference>().unwrap(), r);
}

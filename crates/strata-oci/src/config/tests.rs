use super::*;

const L1: &str = "sha256:5b0d2d635df829f65d0ffb45eab2c3124a470c4f385d6602bda0c21c5248bcab";
const L2: &str = "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f";

/// The shape `docker build` (classic builder) writes, Docker-only fields included.
fn docker_config() -> String {
    format!(
        r##"{{"architecture":"amd64","config":{{"Hostname":"","Domainname":"","User":"app","AttachStdin":false,"Tty":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],"Cmd":["serve"],"Healthcheck":{{"Test":["CMD-SHELL","wget -q -O- localhost:8080/health"],"Interval":30000000000,"Timeout":5000000000,"Retries":3}},"ArgsEscaped":true,"Image":"sha256:0d2f9a1c4a1c1d4b8c7e2d3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b","Volumes":{{"/data":{{}}}},"WorkingDir":"/srv","Entrypoint":["/usr/bin/app"],"OnBuild":["RUN echo child"],"Labels":{{"org.opencontainers.image.title":"demo"}},"StopSignal":"SIGTERM","Shell":["/bin/bash","-c"],"ExposedPorts":{{"8080/tcp":{{}}}}}},"container":"3f4e5d6c7b8a","container_config":{{"Hostname":"3f4e5d6c7b8a","Cmd":["/bin/sh","-c","#(nop) ","CMD [\"serve\"]"]}},"created":"2024-03-01T12:00:00.123456789Z","docker_version":"24.0.7","history":[{{"created":"2024-02-01T00:00:00Z","created_by":"/bin/sh -c #(nop) ADD file:abc in / "}},{{"created":"2024-02-01T00:00:01Z","created_by":"/bin/sh -c #(nop)  CMD [\"sh\"]","empty_layer":true}},{{"created":"2024-03-01T12:00:00Z","created_by":"RUN /bin/sh -c make install # buildkit","comment":"buildkit.dockerfile.v0","author":"dev@example.com"}}],"os":"linux","rootfs":{{"type":"layers","diff_ids":["{L1}","{L2}"]}},"variant":"v3"}}"##
    )
}

#[test]
fn reads_docker_config_keeping_everything() {
    let text = docker_config();
    let c = ImageConfig::parse(text.as_bytes()).unwrap();
    assert_eq!(c.raw(), text.as_bytes());
    assert_eq!(c.digest(), Digest::sha256_of(text.as_bytes()));
    assert_eq!(c.created(), Some("2024-03-01T12:00:00.123456789Z"));
    assert_eq!(c.architecture(), Some("amd64"));
    assert_eq!(c.os(), Some("linux"));
    assert_eq!(c.variant(), Some("v3"));
    assert_eq!(c.platform().to_string(), "linux/amd64/v3");

    let cfg = c.config();
    assert_eq!(cfg.user.as_deref(), Some("app"));
    assert_eq!(cfg.env.as_ref().unwrap()[1], "LANG=C.UTF-8");
    assert_eq!(cfg.cmd.as_deref(), Some(&["serve".to_string()][..]));
    assert_eq!(cfg.entrypoint.as_deref(), Some(&["/usr/bin/app".to_string()][..]));
    assert_eq!(cfg.working_dir.as_deref(), Some("/srv"));
    assert_eq!(cfg.labels.as_ref().unwrap()["org.opencontainers.image.title"], "demo");
    assert!(cfg.exposed_ports.as_ref().unwrap().contains_key("8080/tcp"));
    assert!(cfg.volumes.as_ref().unwrap().contains_key("/data"));
    assert_eq!(cfg.stop_signal.as_deref(), Some("SIGTERM"));
    let hc = cfg.healthcheck.as_ref().unwrap();
    assert_eq!(hc.interval, Some(30_000_000_000));
    assert_eq!(hc.retries, Some(3));
    assert_eq!(hc.test.as_ref().unwrap()[0], "CMD-SHELL");
    assert_eq!(cfg.on_build.as_deref(), Some(&["RUN echo child".to_string()][..]));
    assert_eq!(cfg.shell.as_ref().unwrap().len(), 2);
    assert_eq!(cfg.args_escaped, Some(true));
    assert_eq!(cfg.hostname.as_deref(), Some(""));

    assert_eq!(c.diff_ids(), &[L1.parse().unwrap(), L2.parse().unwrap()]);
    assert_eq!(c.history().len(), 3);
    assert!(c.history()[1].is_empty_layer());
    assert!(!c.history()[2].is_empty_layer());
    assert_eq!(c.history()[2].author.as_deref(), Some("dev@example.com"));
    assert_eq!(c.history()[2].comment.as_deref(), Some("buildkit.dockerfile.v0"));

    // Docker-only fields that oci-spec drops are all still there.
    for key in ["container", "container_config", "docker_version"] {
        assert!(c.json().contains_key(key), "{key}");
    }
    assert_eq!(c.json()["config"]["AttachStdin"], Value::Bool(false));

    // oci-spec's own type reads it too (the shapes agree), but loses Healthcheck: why we keep JSON.
    let oci: oci_spec::image::ImageConfiguration = serde_json::from_str(&text).unwrap();
    let round = serde_json::to_string(&oci).unwrap();
    assert!(!round.contains("Healthcheck"));
}

#[test]
fn null_sections_are_absent_values() {
    // Docker writes nulls for unset lists.
    let c = ImageConfig::parse(
        br#"{"architecture":"arm64","os":"linux","config":{"Cmd":null,"Entrypoint":null,"OnBuild":null,"Labels":null,"Env":null},"rootfs":{"type":"layers","diff_ids":[]},"history":null}"#.to_vec(),
    )
    .unwrap();
    assert_eq!(c.config(), &ContainerConfig::default());
    assert!(c.history().is_empty());
    assert!(c.diff_ids().is_empty());
    assert_eq!(c.platform().to_string(), "linux/arm64/v8");
}

#[test]
fn refuses_bad_configs_with_reasons() {
    let good = docker_config();
    let err = |s: &str| ImageConfig::parse(s.as_bytes().to_vec()).unwrap_err();

    match err(&good.replace(L2, "sha256:XYZ")) {
        ConfigError::BadDiffId { index, value, .. } => {
            assert_eq!(index, 1);
            assert_eq!(value, "\"sha256:XYZ\"");
        }
        other => panic!("{other:?}"),
    }
    let e = err(&good.replace(r#""type":"layers""#, r#""type":"squashfs""#));
    assert!(matches!(&e, ConfigError::RootfsType(t) if t == "\"squashfs\""), "{e:?}");
    assert!(e.to_string().contains("squashfs"));
    assert!(matches!(err(r#"{"os":"linux"}"#), ConfigError::MissingRootfs));
    assert!(matches!(err("[]"), ConfigError::NotAnObject));
    assert!(matches!(err("{"), ConfigError::Json(_)));
    let e = err(&good.replace(r#""Cmd":["serve"]"#, r#""Cmd":"serve""#));
    assert!(matches!(e, ConfigError::Field { field: "config", .. }), "{e:?}");
    let e = err(&good.replace(r#""os":"linux""#, r#""os":7"#));
    assert!(matches!(e, ConfigError::Field { field: "os", .. }), "{e:?}");
    let e = err(&good.replace(&format!(r#"["{L1}","{L2}"]"#), r#""nope""#));
    assert!(matches!(e, ConfigError::DiffIdsNotArray(_)), "{e:?}");
}

#[test]
fn chain_ids_follow_the_spec() {
    let c = ImageConfig::parse(docker_config().into_bytes()).unwrap();
    let chain = c.chain_ids();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].to_string(), L1);
    let expected = Digest::sha256_of(format!("{L1} {L2}").as_bytes());
    assert_eq!(chain[1], expected);
    assert!(chain_ids(&[]).is_empty());
}

#[test]
fn builder_edits_and_serialises_deterministically() {
    let plat = Platform::parse("linux/arm64").unwrap();
    let mut b = ImageConfigBuilder::new(&plat);
    b.set_created("2024-01-01T00:00:00Z")
        .set_env("PATH", "/bin")
        .set_env("A", "1")
        .set_env("PATH", "/usr/bin:/bin")
        .set_cmd(Some(vec!["sh".into()]))
        .set_working_dir("/w")
        .set_label("b", "2")
        .set_label("a", "1")
        .expose_port("80")
        .expose_port("53/udp")
        .add_volume("/v")
        .set_user("1000:1000")
        .set_stop_signal("SIGINT")
        .set_shell(vec!["/bin/ash".into(), "-c".into()])
        .set_healthcheck(Some(&Healthcheck {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }))
        .add_onbuild("RUN true")
        .add_layer(
            &L1.parse().unwrap(),
            History { created_by: Some("ADD rootfs.tar /".into()), ..Default::default() },
        )
        .add_empty_layer_history(History {
            created_by: Some("CMD [\"sh\"]".into()),
            ..Default::default()
        });
    let c = b.build().unwrap();
    assert_eq!(c.platform(), plat);
    assert_eq!(c.variant(), Some("v8"));
    let cfg = c.config();
    assert_eq!(cfg.env.as_deref().unwrap(), ["PATH=/usr/bin:/bin", "A=1"]);
    assert_eq!(
        cfg.exposed_ports.as_ref().unwrap().keys().collect::<Vec<_>>(),
        ["53/udp", "80/tcp"]
    );
    assert_eq!(cfg.healthcheck.as_ref().unwrap().test.as_deref().unwrap(), ["NONE"]);
    assert_eq!(c.diff_ids(), &[L1.parse().unwrap()]);
    assert_eq!(c.history().len(), 2);
    assert!(!c.history()[0].is_empty_layer());
    assert!(c.history()[1].is_empty_layer());
    // Sorted keys, compact: the same edits give the same image ID.
    let text = std::str::from_utf8(c.raw()).unwrap();
    assert!(text.starts_with(r#"{"architecture":"arm64","config":{"Cmd":["sh"],"Env":"#), "{text}");
    assert_eq!(b.build().unwrap().digest(), c.digest());

    b.set_cmd(None).set_healthcheck(None);
    let c2 = b.build().unwrap();
    assert_eq!(c2.config().cmd, None);
    assert_eq!(c2.config().healthcheck, None);
    assert_ne!(c2.digest(), c.digest());
}

#[test]
fn child_keeps_unknown_fields_but_not_build_records() {
    let parent = ImageConfig::parse(docker_config().into_bytes()).unwrap();
    let mut b = ImageConfigBuilder::from_parent(&parent);
    b.add_layer(&Digest::sha256_of(b"layer"), History::default());
    let child = b.build().unwrap();
    assert_eq!(child.diff_ids().len(), 3);
    assert_eq!(child.history().len(), 4);
    assert_eq!(child.config().on_build, None, "ONBUILD triggers are not inherited");
    assert_eq!(child.config().healthcheck, parent.config().healthcheck);
    assert_eq!(child.config().shell, parent.config().shell);
    assert_eq!(child.json()["config"]["AttachStdin"], Value::Bool(false));
    for gone in ["container", "container_config", "docker_version", "created"] {
        assert!(!child.json().contains_key(gone), "{gone}");
    }
    assert_eq!(child.variant(), Some("v3"));
}

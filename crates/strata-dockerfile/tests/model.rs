//! The typed model, variable scoping, stage graph, checks, diagnostics and
//! the `--call` reports, on small Dockerfiles written for each behaviour.

use std::collections::BTreeMap;

use strata_dockerfile::{
    analyze, call_check, call_outline, call_targets, parse, parse_dockerfile, stages_needed,
    BaseRef, BuildOptions, InstructionKind, MountType, Platform, ShellOrExec,
};

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn env_value(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

const SCOPED: &str = "\
ARG BASE=alpine
ARG VERSION=1
FROM ${BASE}:3.19 AS build
ARG VERSION
ENV FROM_ARG=${VERSION}
FROM build AS final
ARG VERSION=2
ENV VERSION=env
LABEL v=$VERSION
COPY --from=build /a /b
";

#[test]
fn global_args_feed_from_lines_and_redeclared_args() {
    let df = parse_dockerfile("Dockerfile", SCOPED).unwrap();
    assert_eq!(df.global_args.len(), 2);
    let s = analyze(&df, &BuildOptions::default());
    assert_eq!(s.stages[0].base_expanded, "alpine:3.19");
    assert_eq!(s.stages[0].base, BaseRef::Image("alpine:3.19".into()));
    // ARG VERSION without a value inherits the global default.
    assert_eq!(env_value(&s.stages[0].env, "FROM_ARG").as_deref(), Some("1"));
    // The second stage builds on the first and inherits its ENV, not its ARGs.
    assert_eq!(s.stages[1].base, BaseRef::Stage(0));
    assert_eq!(env_value(&s.stages[1].env, "FROM_ARG").as_deref(), Some("1"));
    // ENV shadows ARG: LABEL (instruction 2 of stage 1) sees VERSION=env.
    let label_env = &s.stages[1].env_at(2);
    assert_eq!(env_value(label_env, "VERSION").as_deref(), Some("env"));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn build_args_override_defaults() {
    let df = parse_dockerfile("Dockerfile", SCOPED).unwrap();
    let opts = BuildOptions::with_build_args(&args(&[
        ("BASE", "debian"),
        ("VERSION", "5"),
        ("NOPE", "x"),
        ("HTTP_PROXY", "http://proxy:3128"),
    ]));
    let s = analyze(&df, &opts);
    assert_eq!(s.stages[0].base_expanded, "debian:3.19");
    assert_eq!(env_value(&s.stages[0].env, "FROM_ARG").as_deref(), Some("5"));
    let needed = stages_needed(&df, None).unwrap();
    // Proxy args never count as unused.
    assert_eq!(s.unused_build_args(&opts, &needed), vec!["NOPE".to_string()]);
    let report = call_check(&df, &opts.build_args, None).unwrap();
    assert!(
        report.text.contains("One or more build-args [NOPE] were not consumed"),
        "{}",
        report.text
    );
}

#[test]
fn global_arg_used_in_stage_without_redeclaring_is_reported() {
    let src = "ARG TAG=1\nFROM scratch\nLABEL tag=$TAG\nWORKDIR /$TGA\n";
    let df = parse_dockerfile("Dockerfile", src).unwrap();
    let s = analyze(&df, &BuildOptions::default());
    let msgs: Vec<String> = s.warnings.iter().map(|w| w.message.clone()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0], "Usage of undefined variable '$TAG'");
    assert!(s.warnings[0].help.as_deref().unwrap().contains("declare `ARG TAG` inside this stage"));
    assert_eq!(msgs[1], "Usage of undefined variable '$TGA' (did you mean $TAG?)");
    // The caret points at the variable, on its line.
    let w = &s.warnings[1];
    assert_eq!((w.span.unwrap().start.line, w.span.unwrap().start.column), (4, 11));
}

#[test]
fn undefined_arg_in_from_suggests_the_declared_one() {
    let df = parse_dockerfile("Dockerfile", "ARG VERSION=3\nFROM alpine:${VERSON}\n").unwrap();
    let s = analyze(&df, &BuildOptions::default());
    assert_eq!(s.warnings.len(), 1);
    assert_eq!(s.warnings[0].code, "UndefinedArgInFrom");
    assert_eq!(
        s.warnings[0].message,
        "FROM argument 'VERSON' is not declared (did you mean VERSION?)"
    );
}

#[test]
fn platform_args_are_predefined() {
    let src =
        "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETARCH\nENV ARCH=$TARGETARCH\n";
    let df = parse_dockerfile("Dockerfile", src).unwrap();
    let opts = BuildOptions {
        build_platform: Platform::parse("linux/amd64").unwrap(),
        target_platform: Platform::parse("linux/arm64/v8").unwrap(),
        ..BuildOptions::default()
    };
    let s = analyze(&df, &opts);
    assert_eq!(s.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(env_value(&s.stages[0].env, "ARCH").as_deref(), Some("arm64"));
    assert!(s.warnings.is_empty());
}

#[test]
fn image_env_makes_the_undefined_check_exact() {
    let src = "FROM golang\nWORKDIR $GOPATH/src\nWORKDIR $GOPTAH\n";
    let df = parse_dockerfile("Dockerfile", src).unwrap();
    // Unknown image ENV: nothing can be told apart from an image variable.
    let s = analyze(&df, &BuildOptions::default());
    assert_eq!(s.warnings.len(), 0, "{:?}", s.warnings);
    let mut opts = BuildOptions::default();
    opts.image_env.insert("golang".into(), vec![("GOPATH".into(), "/go".into())]);
    let s = analyze(&df, &opts);
    assert_eq!(s.warnings.len(), 1);
    assert_eq!(
        s.warnings[0].message,
        "Usage of undefined variable '$GOPTAH' (did you mean $GOPATH?)"
    );
}

const GRAPH: &str = "\
FROM alpine AS base
FROM base AS deps
RUN --mount=type=cache,target=/root/.cache --mount=from=tools,src=/bin/x,target=/x true
FROM alpine AS tools
FROM base AS unrelated
FROM deps AS final
COPY --from=1 /a /a
COPY --from=tools /t /t
";

#[test]
fn stages_needed_follows_from_copy_and_mounts() {
    let df = parse_dockerfile("Dockerfile", GRAPH).unwrap();
    assert_eq!(stages_needed(&df, None).unwrap(), vec![0, 2, 1, 4]);
    assert_eq!(stages_needed(&df, Some("deps")).unwrap(), vec![0, 2, 1]);
    assert_eq!(stages_needed(&df, Some("TOOLS")).unwrap(), vec![2]);
    let e = stages_needed(&df, Some("dep")).unwrap_err();
    assert_eq!(e.message, "target stage \"dep\" could not be found");
    assert_eq!(e.help.as_deref(), Some("did you mean \"deps\"?"));
}

#[test]
fn cycles_and_bad_stage_references_are_errors() {
    // FROM only refers to earlier stages ("b" here is an image)...
    let df = parse_dockerfile("Dockerfile", "FROM b AS a\nFROM a AS b\n").unwrap();
    assert_eq!(stages_needed(&df, None).unwrap(), vec![0, 1]);
    let s = analyze(&df, &BuildOptions::default());
    assert_eq!(s.stages[0].base, BaseRef::Image("b".into()));
    // ...but COPY --from may name any stage, which can close a cycle
    // (BuildKit's own test case and message).
    let df = parse_dockerfile(
        "Dockerfile",
        "FROM busybox AS stage0\nCOPY --from=stage2 f1 /sub/\nFROM busybox AS stage1\nCOPY --from=stage0 f2 /sub/\nFROM busybox AS stage2\nCOPY --from=stage1 f2 /sub/\n",
    )
    .unwrap();
    let e = stages_needed(&df, None).unwrap_err();
    assert_eq!(e.message, "circular dependency detected on stage: stage0");
    assert_eq!(e.help.as_deref(), Some("dependency chain: stage0 -> stage2 -> stage1 -> stage0"));
    let df =
        parse_dockerfile("Dockerfile", "FROM busybox AS stage0\nCOPY --from=stage0 f1 /sub/\n")
            .unwrap();
    assert_eq!(
        stages_needed(&df, None).unwrap_err().message,
        "circular dependency detected on stage: stage0"
    );

    let df =
        parse_dockerfile("Dockerfile", "FROM alpine\nCOPY --from=3 /a /a\nFROM alpine\n").unwrap();
    let s = analyze(&df, &BuildOptions::default());
    assert_eq!(s.warnings[0].message, "invalid stage index 3");
    assert!(call_outline(&df, &BTreeMap::new(), None).is_err());

    let df = parse_dockerfile(
        "Dockerfile",
        "ARG S=a\nFROM alpine AS a\nFROM alpine\nCOPY --from=$S /a /a\n",
    )
    .unwrap();
    let e = call_check(&df, &BTreeMap::new(), None).unwrap_err();
    assert!(
        e.message.starts_with("variable expansion is not supported for --from"),
        "{}",
        e.message
    );

    let df = parse_dockerfile("Dockerfile", "ARG BASE\nFROM $BASE\n").unwrap();
    let e = call_outline(&df, &BTreeMap::new(), None).unwrap_err();
    assert_eq!(e.message, "base name ($BASE) should not be blank");

    // An index may point forward (BuildKit only checks the bounds).
    let df =
        parse_dockerfile("Dockerfile", "FROM alpine\nCOPY --from=1 /a /a\nFROM alpine\n").unwrap();
    let s = analyze(&df, &BuildOptions::default());
    assert!(s.warnings.is_empty());
    assert_eq!(s.stages[0].deps, vec![1]);
}

const TYPED: &str = "# syntax=docker/dockerfile:1
FROM --platform=linux/amd64 alpine:3.19 AS base
RUN --mount=type=secret,id=npmrc,required --mount=type=ssh --network=none --security=sandbox <<EOF
echo hi
EOF
COPY --from=base --chown=1:2 --chmod=0644 --link --exclude=*.md --exclude=tmp --parents a b /dst/
ADD --checksum=sha256:abc --keep-git-dir=true https://example.com/x.git /src
COPY <<conf.txt /etc/conf.txt
key=value
conf.txt
HEALTHCHECK --interval=1m30s --timeout=3s --start-period=0s --start-interval=500ms --retries=4 CMD [\"curl\", \"-f\", \"http://localhost/\"]
HEALTHCHECK NONE
ONBUILD RUN echo later
ENV A=1 B=\"two words\"
ENV LEGACY value with spaces
CMD [\"run\"]
ENTRYPOINT exec app
SHELL [\"/bin/bash\", \"-c\"]
EXPOSE 80/tcp 443
VOLUME [\"/data\"]
USER app:app
WORKDIR /app
STOPSIGNAL SIGTERM
MAINTAINER someone
";

#[test]
fn typed_instructions() {
    let df = parse_dockerfile("Dockerfile", TYPED).unwrap();
    assert_eq!(df.directives[0].name, "syntax");
    let st = &df.stages[0];
    assert_eq!(
        (st.name.as_deref(), st.platform.as_deref(), st.base.as_str()),
        (Some("base"), Some("linux/amd64"), "alpine:3.19")
    );
    let k: Vec<&InstructionKind> = st.instructions.iter().map(|i| &i.kind).collect();
    match k[0] {
        InstructionKind::Run { cmd, mounts, network, security, heredocs } => {
            assert_eq!(cmd, &ShellOrExec::Shell("<<EOF".into()));
            assert_eq!(mounts.len(), 2);
            assert_eq!(
                (mounts[0].kind, mounts[0].id.as_deref(), mounts[0].required),
                (MountType::Secret, Some("npmrc"), true)
            );
            assert_eq!(mounts[1].kind, MountType::Ssh);
            assert_eq!((network.as_deref(), security.as_deref()), (Some("none"), Some("sandbox")));
            assert_eq!(heredocs[0].content, "echo hi\n");
        }
        other => panic!("{other:?}"),
    }
    match k[1] {
        InstructionKind::Copy(c) => {
            assert_eq!(c.srcs, vec!["a", "b"]);
            assert_eq!(c.dest, "/dst/");
            assert_eq!(
                (c.from.as_deref(), c.chown.as_deref(), c.chmod.as_deref()),
                (Some("base"), Some("1:2"), Some("0644"))
            );
            assert!(c.link && c.parents);
            assert_eq!(c.exclude, vec!["*.md", "tmp"]);
        }
        other => panic!("{other:?}"),
    }
    match k[2] {
        InstructionKind::Add(c) => {
            assert_eq!(c.checksum.as_deref(), Some("sha256:abc"));
            assert!(c.keep_git_dir);
        }
        other => panic!("{other:?}"),
    }
    match k[3] {
        InstructionKind::Copy(c) => {
            assert!(c.srcs.is_empty());
            assert_eq!(c.heredocs[0].name, "conf.txt");
            assert_eq!(c.heredocs[0].content, "key=value\n");
            assert_eq!(c.dest, "/etc/conf.txt");
        }
        other => panic!("{other:?}"),
    }
    match k[4] {
        InstructionKind::Healthcheck { test, options } => {
            assert_eq!(
                test,
                &Some(ShellOrExec::Exec(vec![
                    "curl".into(),
                    "-f".into(),
                    "http://localhost/".into()
                ]))
            );
            assert_eq!(options.interval, Some(std::time::Duration::from_secs(90)));
            assert_eq!(options.start_interval, Some(std::time::Duration::from_millis(500)));
            assert_eq!(options.retries, Some(4));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(k[5], InstructionKind::Healthcheck { test: None, .. }));
    match k[6] {
        InstructionKind::Onbuild(inner) => assert!(
            matches!(&inner.kind, InstructionKind::Run { cmd: ShellOrExec::Shell(s), .. } if s == "echo later")
        ),
        other => panic!("{other:?}"),
    }
    match k[7] {
        InstructionKind::Env { vars, legacy } => {
            assert!(!legacy);
            assert_eq!(vars[1].value, "\"two words\"");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(k[8], InstructionKind::Env { legacy: true, vars } if vars[0].value == "value with spaces")
    );
    assert!(matches!(k[10], InstructionKind::Entrypoint(ShellOrExec::Shell(_))));
    assert!(
        matches!(k[12], InstructionKind::Expose(p) if p == &vec!["80/tcp".to_string(), "443".to_string()])
    );
    // Spans: each instruction starts where its keyword is.
    let copy = &st.instructions[1];
    assert_eq!((copy.span.start.line, copy.span.start.column), (6, 1));
    assert!(TYPED[copy.span.offset..].starts_with("COPY --from=base"));
}

#[test]
fn errors_name_the_place_and_suggest_fixes() {
    let e = parse_dockerfile("app.Dockerfile", "FROM alpine\nCOPPY . /app\n").unwrap_err();
    assert_eq!(e.message, "unknown instruction: COPPY");
    assert_eq!(e.help.as_deref(), Some("did you mean COPY?"));
    assert_eq!(e.location(), "app.Dockerfile:2:1");
    let text = e.render_plain();
    assert!(text.contains("2 | COPPY . /app\n"), "{text}");
    assert!(text.contains("  | ^^^^^ not a Dockerfile instruction"), "{text}");

    let e = parse_dockerfile("Dockerfile", "FROM alpine\nCOPY --form=base a b\n").unwrap_err();
    assert_eq!(e.message, "unknown flag: --form for COPY");
    assert_eq!(e.help.as_deref(), Some("did you mean --from?"));
    assert_eq!(e.location(), "Dockerfile:2:6");

    let e = parse_dockerfile("Dockerfile", "FROM alpine\nRUN --mount=type=cahce,target=/c true\n")
        .unwrap_err();
    assert_eq!(e.help.as_deref(), Some("did you mean type=cache?"));

    let e = parse_dockerfile("Dockerfile", "RUN true\nFROM alpine\n").unwrap_err();
    assert!(e.message.starts_with("no build stage in current context"));

    let e = parse_dockerfile("Dockerfile", "FROM alpine AS 1stage\n").unwrap_err();
    assert!(e.message.contains("invalid name for build stage"), "{}", e.message);

    let e = parse_dockerfile("Dockerfile", "FROM alpine\nRUN <<EOF\necho\n").unwrap_err();
    assert_eq!(e.message, "unterminated heredoc");

    let e = parse_dockerfile("Dockerfile", "FROM alpine\nHEALTHCHECK --interval=soon CMD true\n")
        .unwrap_err();
    assert!(e.message.contains("invalid duration"), "{}", e.message);
    let e = parse_dockerfile("Dockerfile", "FROM alpine\nHEALTHCHECK --timeout=10us CMD true\n")
        .unwrap_err();
    assert_eq!(e.message, "--timeout \"10us\" cannot be less than 1ms");

    let e = parse("Dockerfile", "# escape=x\nFROM a\n").unwrap_err();
    assert!(e.message.contains("invalid escape token"));

    // The miette view of the same error carries the label and source.
    let e = parse_dockerfile("Dockerfile", "FROM alpine\nCOPPY . /app\n").unwrap_err();
    let d: &dyn miette::Diagnostic = &e;
    assert_eq!(d.help().unwrap().to_string(), "did you mean COPY?");
    let label = d.labels().unwrap().next().unwrap();
    assert_eq!((label.offset(), label.len()), (12, 5));
    assert!(d.source_code().is_some());
}

#[test]
fn crlf_backtick_escape_and_missing_final_newline() {
    let src = "# escape=`\r\nFROM alpine\r\nRUN echo a `\r\n  b\r\nENV P=C:\\dir";
    let ast = parse("Dockerfile", src).unwrap();
    assert_eq!(ast.escape, '`');
    assert_eq!(
        ast.dump(),
        "(from \"alpine\")\n(run \"echo a   b\")\n(env \"P\" \"C:\\\\dir\" \"=\")\n"
    );
    assert_eq!(ast.nodes[1].start_line, 3);
    assert_eq!(ast.nodes[1].end_line, 4);
}

#[test]
fn build_checks() {
    let src = "FROM alpine as Build\nFROM alpine AS build\nMAINTAINER me\nCMD echo hi\nCMD [\"x\"]\nWORKDIR rel\nenv A 1\nEXPOSE 80/TCP\nARG GITHUB_TOKEN\n";
    let df = parse_dockerfile("Dockerfile", src).unwrap();
    let report = call_check(&df, &BTreeMap::new(), None).unwrap();
    let codes: Vec<&str> = report.warnings.iter().map(|w| w.code.as_str()).collect();
    assert_eq!(
        codes,
        vec![
            "FromAsCasing",
            "StageNameCasing",
            "DuplicateStageName",
            "MaintainerDeprecated",
            "JSONArgsRecommended",
            "MultipleInstructionsDisallowed",
            "WorkdirRelativePath",
            "ConsistentInstructionCasing",
            "LegacyKeyValueFormat",
            "ExposeProtoCasing",
            "SecretsUsedInArgOrEnv",
        ]
    );
    assert_eq!(report.exit_code(), 1);
    assert!(report.text.starts_with("Check complete, 11 warnings have been found!\n"));
    let expected = "\nWARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n\
         JSON arguments recommended for CMD to prevent unintended behavior related to OS signals\n\
         Dockerfile:4\n--------------------\n   2 |     FROM alpine AS build\n   3 |     MAINTAINER me\n   4 | >>> CMD echo hi\n   5 |     CMD [\"x\"]\n   6 |     WORKDIR rel\n--------------------\n";
    assert!(report.text.contains(expected), "{}", report.text);

    // The check directive and the build arg that overrides it.
    let skip = format!("# check=skip=JSONArgsRecommended,FromAsCasing;error=true\n{src}");
    let df = parse_dockerfile("Dockerfile", &skip).unwrap();
    let r = call_check(&df, &BTreeMap::new(), None).unwrap();
    assert_eq!(r.warnings.len(), 9);
    assert!(r.warnings_are_errors);
    let r = call_check(&df, &args(&[("BUILDKIT_DOCKERFILE_CHECK", "skip=all")]), None).unwrap();
    assert_eq!((r.warnings.len(), r.exit_code()), (0, 0));
    let bad = parse_dockerfile("Dockerfile", "# check=skip\nFROM alpine\n").unwrap();
    let e = call_check(&bad, &BTreeMap::new(), None).unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.location().as_str()),
        ("invalid check option \"skip\"", "Dockerfile:1:1")
    );

    let clean = parse_dockerfile("Dockerfile", "FROM alpine\nCMD [\"true\"]\n").unwrap();
    let r = call_check(&clean, &BTreeMap::new(), None).unwrap();
    assert_eq!((r.text.as_str(), r.exit_code()), ("Check complete, no warnings found.\n", 0));
}

const OUTLINE: &str = "\
# GO_VERSION sets the Go version
ARG GO_VERSION=1.22
ARG UNUSED_GLOBAL=x

# build compiles the app
FROM golang:${GO_VERSION} AS build
# LDFLAGS extra linker flags
ARG LDFLAGS=-s
RUN --mount=type=secret,id=token,required=true --mount=type=ssh go build

FROM build AS test
ARG TEST_ARG

# release is the final image
FROM scratch AS release
COPY --from=build /out /
";

#[test]
fn descriptions_follow_buildkit_doc_comments() {
    let src = "# app\n# app builds it\n\nFROM alpine AS app\n# other\nFROM alpine AS other\n";
    let df = parse_dockerfile("Dockerfile", src).unwrap();
    // The first comment line starting with "<name> " wins, even across a
    // blank line; a bare "# other" is not a description.
    assert_eq!(df.stages[0].description.as_deref(), Some("builds it"));
    assert_eq!(df.stages[1].description, None);
}

#[test]
fn outline_and_targets_text() {
    let df = parse_dockerfile("Dockerfile", OUTLINE).unwrap();
    assert_eq!(
        call_targets(&df),
        "TARGET            DESCRIPTION\nbuild             compiles the app\ntest              \nrelease (default) is the final image\n"
    );
    let unnamed = parse_dockerfile("Dockerfile", "FROM a\nFROM b AS Mixed\nFROM c\n").unwrap();
    assert_eq!(
        call_targets(&unnamed),
        "TARGET    DESCRIPTION\n          \nmixed     \n(default) \n"
    );
    let none = BTreeMap::new();
    assert_eq!(
        call_outline(&df, &none, None).unwrap(),
        "TARGET:      release\nDESCRIPTION: is the final image\n\n\
         BUILD ARG    VALUE   DESCRIPTION\nGO_VERSION   1.22    sets the Go version\nLDFLAGS      -s      extra linker flags\n\n\
         SECRET   REQUIRED\ntoken    true\n\n\
         SSH       REQUIRED\ndefault   \n\n"
    );
    let over = args(&[("GO_VERSION", "1.23")]);
    let text = call_outline(&df, &over, Some("test")).unwrap();
    assert!(
        text.starts_with(
            "TARGET: test\n\nBUILD ARG    VALUE   DESCRIPTION\nGO_VERSION   1.23    sets the Go version\n"
        ),
        "{text}"
    );
    assert!(text.contains("\nTEST_ARG             \n"), "{text}");

    // A global used only through another global's default is listed too.
    let df = parse_dockerfile(
        "Dockerfile",
        "ARG GO=1.22\nARG IMAGE=golang:${GO}\nARG OTHER=x\nFROM ${IMAGE}\n",
    )
    .unwrap();
    assert_eq!(
        call_outline(&df, &none, None).unwrap(),
        "BUILD ARG   VALUE         DESCRIPTION\nGO          1.22          \nIMAGE       golang:1.22   \n\n"
    );
}

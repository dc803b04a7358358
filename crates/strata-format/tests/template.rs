use serde_json::json;
use strata_format::*;

fn inspect() -> serde_json::Value {
    json!({
        "Id": "sha256:1d34ffeaf190be23d3de5a8de0a436676b758f48f835c3a2d4768b798c15a7f1",
        "RepoTags": ["alpine:latest", "alpine:3.19"],
        "RepoDigests": ["alpine@sha256:51b67269f354137895d43f3b3d810bfacd3945438e94dc5ac55fdac340352f48"],
        "Created": "2024-01-27T00:30:48.743965523Z",
        "Size": 7_383_062,
        "Architecture": "amd64",
        "Os": "linux",
        "Config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Entrypoint": null,
            "WorkingDir": "",
            "Labels": {"org.opencontainers.image.version": "3.19", "maintainer": "me", "a": "1"},
            "ExposedPorts": {"80/tcp": {}, "443/tcp": {}}
        },
        "RootFS": {"Type": "layers", "Layers": ["sha256:aaa", "sha256:bbb"]}
    })
}

fn render(format: &str) -> String {
    render_template(format, &inspect()).unwrap()
}

#[test]
fn field_access_and_nesting() {
    assert_eq!(render("{{.Os}}/{{.Architecture}}"), "linux/amd64");
    assert_eq!(render("{{.Size}}"), "7383062");
    assert_eq!(render("{{.RootFS.Type}}"), "layers");
    assert_eq!(render("{{.Config.WorkingDir}}"), "");
}

#[test]
fn arrays_and_maps_print_like_go() {
    assert_eq!(render("{{.RepoTags}}"), "[alpine:latest alpine:3.19]");
    assert_eq!(
        render("{{.Config.Env}}"),
        "[PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin]"
    );
    assert_eq!(
        render("{{.Config.Labels}}"),
        "map[a:1 maintainer:me org.opencontainers.image.version:3.19]"
    );
    assert_eq!(render("{{.Config.ExposedPorts}}"), "map[443/tcp:map[] 80/tcp:map[]]");
    assert_eq!(render("{{.Config.Entrypoint}}"), "<nil>");
    assert_eq!(render("{{.Config.Missing}}"), "<no value>");
}

#[test]
fn index_on_arrays_and_maps() {
    assert_eq!(render("{{index .RepoTags 0}}"), "alpine:latest");
    assert_eq!(render(r#"{{index .Config.Labels "org.opencontainers.image.version"}}"#), "3.19");
    assert_eq!(render(r#"{{index .Config.Labels "nope"}}"#), "<no value>");
    assert_eq!(render("{{index .RootFS.Layers 1}}"), "sha256:bbb");
    assert_eq!(render("{{len .RootFS.Layers}}"), "2");
}

#[test]
fn range_over_arrays_and_maps_is_ordered() {
    assert_eq!(render("{{range .RepoTags}}{{.}} {{end}}"), "alpine:latest alpine:3.19 ");
    assert_eq!(
        render("{{range $i, $t := .RepoTags}}{{$i}}={{$t}};{{end}}"),
        "0=alpine:latest;1=alpine:3.19;"
    );
    assert_eq!(
        render("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}\n{{end}}"),
        "a=1\nmaintainer=me\norg.opencontainers.image.version=3.19\n"
    );
    assert_eq!(
        render("{{range $p, $conf := .Config.ExposedPorts}}{{$p}} {{end}}"),
        "443/tcp 80/tcp "
    );
    assert_eq!(render("{{range .Config.Labels}}{{.}},{{end}}"), "1,me,3.19,");
    assert_eq!(render("{{range $v := .Config.Labels}}{{$v}},{{end}}"), "1,me,3.19,");
    assert_eq!(render("{{range .Config.Entrypoint}}x{{else}}none{{end}}"), "none");
}

#[test]
fn json_function() {
    assert_eq!(render("{{json .RepoTags}}"), r#"["alpine:latest","alpine:3.19"]"#);
    assert_eq!(
        render("{{json .Config.Labels}}"),
        r#"{"a":"1","maintainer":"me","org.opencontainers.image.version":"3.19"}"#
    );
    assert_eq!(render("{{json .Config.Entrypoint}}"), "null");
    assert_eq!(render("{{json .Size}}"), "7383062");
    assert_eq!(render(r#"{{json "<a&b>"}}"#), r#""<a&b>""#);
    let whole: serde_json::Value = serde_json::from_str(&render("{{json .}}")).unwrap();
    assert_eq!(whole, inspect());
}

#[test]
fn string_functions() {
    assert_eq!(render("{{join .RepoTags \", \"}}"), "alpine:latest, alpine:3.19");
    assert_eq!(render("{{upper .Os}}"), "LINUX");
    assert_eq!(render("{{lower \"ABC\"}}"), "abc");
    assert_eq!(render("{{title \"hello wide-world foo_bar\"}}"), "Hello Wide-World Foo_bar");
    assert_eq!(render("{{split \"a:b:c\" \":\"}}"), "[a b c]");
    assert_eq!(render("{{index (split .Id \":\") 0}}"), "sha256");
    assert_eq!(render("{{truncate .Id 19}}"), "sha256:1d34ffeaf190");
    assert_eq!(render("{{truncate \"abc\" 10}}"), "abc");
    assert_eq!(render("[{{pad .Os 2 3}}]"), "[  linux   ]");
    assert_eq!(render("[{{pad .Config.WorkingDir 2 3}}]"), "[]");
    assert_eq!(render("{{println .Os .Size}}"), "linux 7383062\n");
    assert_eq!(render("{{print .Os .Size}}"), "linux7383062");
    assert_eq!(render("{{print 1 2}}"), "1 2");
    assert_eq!(render("{{printf \"%s-%s\" .Os .Architecture}}"), "linux-amd64");
    assert_eq!(render("{{.Os | upper}}"), "LINUX");
}

#[test]
fn control_flow_and_trimming() {
    assert_eq!(render("{{if .Config.Entrypoint}}yes{{else}}no{{end}}"), "no");
    assert_eq!(render("{{with .RootFS}}{{.Type}}{{end}}"), "layers");
    assert_eq!(render("a  {{- .Os -}}  b"), "alinuxb");
    assert_eq!(render("{{range .RepoTags -}}\n  {{.}}\n{{- end}}"), "alpine:latestalpine:3.19");
    assert_eq!(
        render("{{- range $k, $v := .Config.Labels -}}\n {{$k}}\n{{- end}}"),
        "amaintainerorg.opencontainers.image.version"
    );
    assert_eq!(render("{{/* a comment */}}x"), "x");
    assert_eq!(render("{{$os := .Os}}{{$os}}"), "linux");
    assert_eq!(render("{{if eq .Os \"linux\"}}L{{end}}"), "L");
    assert_eq!(render("{{ \"}}\" }}"), "}}");
}

#[test]
fn parse_and_execution_errors_are_clear() {
    let err = Formatter::new("{{.Os").unwrap_err().to_string();
    assert!(err.starts_with("template parsing error: "), "{err}");
    let err = Formatter::new("{{nosuchfunc .Os}}").unwrap_err().to_string();
    assert!(err.starts_with("template parsing error: "), "{err}");
    assert!(err.contains("nosuchfunc"), "{err}");
    let f = Formatter::new("{{upper .Size}}").unwrap();
    let err = f.render_item(&inspect()).unwrap_err().to_string();
    assert!(err.contains("upper: expected string; got number 7383062"), "{err}");
    let f = Formatter::new("{{truncate .Os -1}}").unwrap();
    let err = f.render_item(&inspect()).unwrap_err().to_string();
    assert!(err.contains("negative length -1"), "{err}");
}

const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
];

fn rows() -> Vec<serde_json::Value> {
    vec![
        json!({"Repository": "alpine", "Tag": "latest", "ID": "1d34ffeaf190", "CreatedSince": "3 months ago", "CreatedAt": "2024-01-27 00:30:48 +0000 UTC", "Size": "7.38MB", "Digest": "<none>"}),
        json!({"Repository": "<none>", "Tag": "<none>", "ID": "0123456789ab", "CreatedSince": "", "CreatedAt": "2024-01-27 00:30:48 +0000 UTC", "Size": "0B", "Digest": "<none>"}),
    ]
}

#[test]
fn default_images_table() {
    let fmt = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}";
    let f = Formatter::new(fmt).unwrap();
    assert!(f.is_table());
    let want = "\
REPOSITORY   TAG       IMAGE ID       CREATED        SIZE
alpine       latest    1d34ffeaf190   3 months ago   7.38MB
<none>       <none>    0123456789ab   N/A            0B
";
    assert_eq!(f.render(&rows(), IMAGE_HEADERS).unwrap(), want);
}

#[test]
fn table_with_escaped_tabs_and_functions_in_header() {
    // The user types a literal backslash-t on the command line.
    let f = Formatter::new(r"table {{.Repository}}\t{{lower .Tag}}\t{{.Unknown}}").unwrap();
    let want = "\
REPOSITORY   TAG       
alpine       latest    <no value>
<none>       <none>    <no value>
";
    assert_eq!(f.render(&rows(), IMAGE_HEADERS).unwrap(), want);
}

#[test]
fn table_header_only_when_no_items() {
    let f = Formatter::new("table {{.Repository}}").unwrap();
    assert_eq!(f.render(&[], IMAGE_HEADERS).unwrap(), "REPOSITORY\n");
}

#[test]
fn raw_template_one_line_per_item() {
    let f = Formatter::new("{{.Repository}}:{{.Tag}}").unwrap();
    assert_eq!(f.kind(), FormatKind::Raw);
    assert_eq!(f.render(&rows(), IMAGE_HEADERS).unwrap(), "alpine:latest\n<none>:<none>\n");
    assert!(f.contains("{{.Tag}}"));
    let f = Formatter::new(r"{{.Repository}}\n").unwrap();
    assert_eq!(f.render(&rows()[..1], &[]).unwrap(), "alpine\n\n");
    assert_eq!(Formatter::new("{{.ID}}").unwrap().render(&[], &[]).unwrap(), "");
}

#[test]
fn json_format_one_object_per_line() {
    let f = Formatter::new("json").unwrap();
    assert!(f.is_json());
    let out = f.render(&rows(), IMAGE_HEADERS).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        r#"{"CreatedAt":"2024-01-27 00:30:48 +0000 UTC","CreatedSince":"3 months ago","Digest":"<none>","ID":"1d34ffeaf190","Repository":"alpine","Size":"7.38MB","Tag":"latest"}"#
    );
    assert!(out.ends_with("}\n"));
    // `{{json .}}` gives the same bytes.
    let g = Formatter::new("{{json .}}").unwrap();
    assert_eq!(g.render(&rows(), &[]).unwrap(), out);
}

#[test]
fn resolve_format_defaults() {
    assert_eq!(resolve_format(None, "table {{.ID}}"), "table {{.ID}}");
    assert_eq!(resolve_format(Some("table"), "table {{.ID}}"), "table {{.ID}}");
    assert_eq!(resolve_format(Some("{{.Tag}}"), "table {{.ID}}"), "{{.Tag}}");
}

#[test]
fn go_print_values() {
    assert_eq!(go_print(&json_to_value(&json!(1.5))), "1.5");
    assert_eq!(go_print(&json_to_value(&json!(-3))), "-3");
    assert_eq!(go_print(&json_to_value(&json!([1, "a", null, true]))), "[1 a <nil> true]");
    assert_eq!(go_print(&json_to_value(&json!({"b": [1], "a": {}}))), "map[a:map[] b:[1]]");
}

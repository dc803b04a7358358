use strata_format::*;

#[test]
fn truncate_id_strips_algorithm_and_keeps_12() {
    assert_eq!(
        truncate_id("sha256:90db7e2d1c9fd96b8a7b5ea3a81d2a6e3c1d4c1f5a7e4f2d9b2a1c0d8e7f6a5b"),
        "90db7e2d1c9f"
    );
    assert_eq!(truncate_id("90db7e2d1c9fd96b8a7b"), "90db7e2d1c9f");
    assert_eq!(truncate_id("abc"), "abc");
    assert_eq!(truncate_id(""), "");
    assert_eq!(truncate_id("<missing>"), "<missing>");
}

#[test]
fn ellipsis_docker_test_vectors() {
    let cases: &[(&str, usize, &str)] = &[
        ("t🐳ststring", 0, ""),
        ("t🐳ststring", 1, "t"),
        ("t🐳ststring", 2, "t…"),
        ("t🐳ststring", 6, "t🐳st…"),
        ("t🐳ststring", 20, "t🐳ststring"),
        ("你好世界teststring", 0, ""),
        ("你好世界teststring", 1, "你"),
        ("你好世界teststring", 3, "你…"),
        ("你好世界teststring", 6, "你好…"),
        ("你好世界teststring", 20, "你好世界teststring"),
        ("", 1, ""),
        ("abc", 3, "abc"),
        ("abcd", 3, "ab…"),
    ];
    for (s, w, want) in cases {
        assert_eq!(ellipsis(s, *w), *want, "{s:?} {w}");
    }
}

#[test]
fn history_created_by_truncates_at_45() {
    let cmd = "/bin/sh -c #(nop) ADD file:5d673d25da3a14ce1f6cf66e4c7fd4f4b85a3759a9d93efb3fd9ff852b5b56e4 in / ";
    let t = history_created_by(cmd, false);
    assert_eq!(t, "/bin/sh -c #(nop) ADD file:5d673d25da3a14ce1…");
    assert_eq!(t.chars().count(), 45);
    assert_eq!(history_created_by(cmd, true), cmd);
    assert_eq!(history_created_by("RUN\ta\tb", true), "RUN a b");
}

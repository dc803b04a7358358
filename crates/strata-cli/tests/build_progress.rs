//! `strata build --progress plain|tty|json|quiet` and `-q`: what each mode prints, checked
//! on real builds from the busybox fixture; tty mode in a real terminal (a private tmux
//! server). Every child process runs under a timeout.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{have, json, run_timeout, with_busybox, write, Env, STRATA};
use serde_json::Value;

/// `strata build ARGS... CTX` with stdout and stderr captured.
fn build(env: &Env, ctx: &Path, args: &[&str]) -> Output {
    run_timeout(env.cmd().arg("build").args(args).arg(ctx), 180)
}

/// Like [`build`], asserting success; returns (stdout, stderr).
fn build_ok(env: &Env, ctx: &Path, args: &[&str]) -> (String, String) {
    let out = build(env, ctx, args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "build {args:?} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A build whose step times tell a step's own duration from the build's elapsed time: the
/// steps after the 1 s RUN take well under a second each.
const TIMED: &str = "FROM busybox\n\
                     RUN echo start && sleep 1 && echo end\n\
                     RUN echo quick\n\
                     COPY hello.txt /hello.txt\n";

fn timed_context(env: &Env) -> std::path::PathBuf {
    let ctx = env.path("ctx");
    write(&ctx, "hello.txt", "hi\n");
    write(&ctx, "Dockerfile", TIMED);
    ctx
}

/// `#id <secs> <text>`: the seconds of step `id`'s output line `text`.
fn output_secs(err: &str, id: usize, text: &str) -> f64 {
    let p = format!("#{id} ");
    let line = err
        .lines()
        .filter_map(|l| l.strip_prefix(&p))
        .find(|r| r.split_once(' ').is_some_and(|(s, t)| t == text && s.parse::<f64>().is_ok()))
        .unwrap_or_else(|| panic!("no output line {text:?} for #{id}:\n{err}"));
    line.split_once(' ').unwrap().0.parse().unwrap()
}

/// The seconds of `#id DONE <secs>s`.
fn done_secs(err: &str, id: usize) -> f64 {
    let p = format!("#{id} DONE ");
    let l = err.lines().find_map(|l| l.strip_prefix(&p)).unwrap_or_else(|| {
        panic!("no DONE line for #{id}:\n{err}");
    });
    l.split('s').next().unwrap().parse().unwrap_or_else(|e| panic!("{l:?}: {e}"))
}

/// The index of the first line of `err` that is `line` (or starts with it, for a prefix
/// ending in a space).
fn line_at(err: &str, line: &str) -> usize {
    err.lines()
        .position(|l| l == line || (line.ends_with(' ') && l.starts_with(line)))
        .unwrap_or_else(|| panic!("no line {line:?} in:\n{err}"))
}

#[test]
fn plain_prints_steps_in_order_with_their_own_durations_and_cached_on_a_rebuild() {
    let Some(env) = with_busybox() else { return };
    let ctx = timed_context(&env);
    let (_, err) = build_ok(&env, &ctx, &["--progress", "plain", "-t", "plain:1"]);

    // Each step: its header, then its output, then DONE; the steps one after the other.
    let headers = [
        "#1 [stage-0 1/4] FROM busybox",
        "#2 [stage-0 2/4] RUN echo start && sleep 1 && echo end",
        "#3 [stage-0 3/4] RUN echo quick",
        "#4 [stage-0 4/4] COPY hello.txt /hello.txt",
    ];
    let mut last = 0;
    for (i, h) in headers.iter().enumerate() {
        let id = i + 1;
        let at = line_at(&err, h);
        let done = line_at(&err, &format!("#{id} DONE "));
        assert!(last <= at && at < done, "#{id} out of order:\n{err}");
        last = done;
    }
    assert!(line_at(&err, "#2 ") < line_at(&err, "#2 DONE "));
    assert!(line_at(&err, "#4 DONE ") > line_at(&err, "#3 DONE "));

    // Output times count from the step's start, DONE is the step's own duration.
    assert!(output_secs(&err, 2, "start") < 0.9, "{err}");
    assert!(output_secs(&err, 2, "end") >= 1.0, "{err}");
    assert!(output_secs(&err, 3, "quick") < 0.9, "not the time since the build started:\n{err}");
    assert!(done_secs(&err, 2) >= 1.0, "{err}");
    assert!(done_secs(&err, 3) < 0.9, "#3's own duration, not the build's:\n{err}");
    assert!(done_secs(&err, 4) < 0.9, "{err}");

    // A rebuild: every step after FROM is CACHED, right after its header, with no output.
    let (_, err) = build_ok(&env, &ctx, &["--progress", "plain", "-t", "plain:2"]);
    for (i, h) in headers.iter().enumerate().skip(1) {
        let id = i + 1;
        let at = line_at(&err, h);
        assert_eq!(err.lines().nth(at + 1), Some(format!("#{id} CACHED").as_str()), "{err}");
    }
    // Only the export step (#5) says something: what it wrote.
    let ran = err
        .lines()
        .filter(|l| !l.starts_with("#5 "))
        .any(|l| l.split(' ').nth(1).is_some_and(|s| s.parse::<f64>().is_ok()));
    assert!(!ran, "no output, nothing ran:\n{err}");
    assert!(err.contains("#5 exporting to image\n"), "{err}");
    assert!(err.contains(" naming to docker.io/library/plain:2 done\n"), "{err}");
}

#[test]
fn plain_marks_the_failed_step() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo oops-output; exit 3\n");
    let out = build(&env, &ctx, &["--progress", "plain"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let output = line_at(&err, "#2 ");
    let error = line_at(&err, "#2 ERROR: ");
    assert!(output < error, "{err}");
    assert!(err.lines().nth(error).unwrap().contains("exit code: 3"), "{err}");
    // Then the report with the Dockerfile line.
    assert!(err.contains("Dockerfile:2"), "{err}");

    // A step waiting for the failed stage was stopped by it: CANCELED, not ERROR.
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS broken\nRUN sleep 0.3; exit 3\nFROM busybox\nCOPY --from=broken /y /y\n",
    );
    let out = build(&env, &ctx, &["--progress", "plain"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("#2 ERROR: ") && l.contains("exit code: 3")),
        "{err}"
    );
    if err.contains("#4 [stage-1 2/2] COPY --from=broken") {
        assert!(err.contains("\n#4 CANCELED\n") && !err.contains("#4 ERROR"), "{err}");
    }
}

/// Every stderr line of a `--progress json` build, parsed.
fn json_lines(err: &str) -> Vec<Value> {
    let lines: Vec<Value> = err.lines().map(json).collect();
    for v in &lines {
        let t = v["time"].as_str().unwrap_or_else(|| panic!("no time: {v}"));
        assert!(
            t.len() == 24 && t.ends_with('Z') && t.as_bytes()[19] == b'.',
            "RFC 3339 with milliseconds: {t}"
        );
        assert!(v["event"].is_string(), "{v}");
    }
    lines
}

fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["event"] == event).collect()
}

#[test]
fn json_lines_all_parse_and_tie_steps_to_their_done_and_the_result() {
    let Some(env) = with_busybox() else { return };
    let ctx = timed_context(&env);
    let iid = env.path("iid");
    let (_, err) = build_ok(
        &env,
        &ctx,
        &["--progress", "json", "-t", "json:1", "--iidfile", iid.to_str().unwrap()],
    );
    let lines = json_lines(&err);
    let steps = events(&lines, "step");
    let ids: Vec<u64> = steps.iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5], "{err}");
    assert_eq!(steps[4]["text"], "exporting to image");
    assert_eq!(steps[2]["text"], "[stage-0 3/4] RUN echo quick");
    for id in &ids {
        let pos = |event: &str| {
            lines
                .iter()
                .position(|v| v["event"] == event && v["id"] == *id)
                .unwrap_or_else(|| panic!("no {event} for {id}:\n{err}"))
        };
        assert!(pos("step") < pos("done"), "{err}");
        let done = &lines[pos("done")];
        assert_eq!(done["cached"], false);
        assert!(done["duration_ms"].is_u64(), "{done}");
        // A digest, or null when the engine reports no layer for the step.
        let layer = &done["layer"];
        assert!(layer.is_null() || layer.as_str().unwrap().starts_with("sha256:"), "{done}");
    }
    let run = lines.iter().find(|v| v["event"] == "done" && v["id"] == 2).unwrap();
    assert!(run["duration_ms"].as_u64().unwrap() >= 1000, "{run}");
    let quick = lines.iter().find(|v| v["event"] == "done" && v["id"] == 3).unwrap();
    assert!(quick["duration_ms"].as_u64().unwrap() < 900, "its own time: {quick}");
    let output: String = events(&lines, "output")
        .iter()
        .filter(|v| v["id"] == 2)
        .map(|v| v["data"].as_str().unwrap())
        .collect();
    assert_eq!(output, "start\nend\n");

    let result = lines.last().unwrap();
    assert_eq!(result["event"], "result", "{err}");
    assert_eq!(result["id"], fs::read_to_string(&iid).unwrap().as_str());
    assert_eq!(result["tags"], serde_json::json!(["docker.io/library/json:1"]));
    assert!(result["manifest"].as_str().unwrap().starts_with("sha256:"));

    // A rebuild says cached.
    let (_, err) = build_ok(&env, &ctx, &["--progress", "json"]);
    let lines = json_lines(&err);
    let cached: Vec<u64> = events(&lines, "done")
        .iter()
        .filter(|v| v["cached"] == true)
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    assert_eq!(cached, [2, 3, 4], "{err}");
}

#[test]
fn json_reports_a_failure_as_its_last_line() {
    let Some(env) = with_busybox() else { return };
    let ctx = env.path("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo oops-output; exit 3\n");
    let out = build(&env, &ctx, &["--progress", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    // Nothing but JSON on stderr, even for the error.
    let lines = json_lines(&err);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "error", "{err}");
    assert!(last["message"].as_str().unwrap().contains("exit code: 3"), "{last}");
    assert_eq!(last["failed"], serde_json::json!([2]));
    assert_eq!(last["canceled"], serde_json::json!([]));
    let report = last["report"].as_str().unwrap();
    assert!(report.contains("Dockerfile:2") && report.contains("oops-output"), "{report}");
    assert!(!report.contains('\x1b'), "no colour in JSON: {report:?}");
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn quiet_prints_only_the_image_id() {
    let Some(env) = with_busybox() else { return };
    let ctx = timed_context(&env);
    for args in [&["-q"][..], &["--progress", "quiet"], &["--progress", "tty", "-q"]] {
        let (out, err) = build_ok(&env, &ctx, args);
        assert_eq!(err, "", "{args:?}: nothing on stderr");
        let id = out.strip_suffix('\n').unwrap_or_else(|| panic!("{out:?}"));
        assert!(
            id.len() == 71 && id.starts_with("sha256:") && !id.contains('\n'),
            "{args:?}: {out:?}"
        );
    }
    // Errors still reach stderr.
    write(&ctx, "Dockerfile", "FROM busybox\nRUN exit 4\n");
    let out = build(&env, &ctx, &["-q"]);
    assert!(!out.status.success());
    assert!(text(&out.stdout).is_empty());
    assert!(text(&out.stderr).contains("exit code: 4"), "{}", text(&out.stderr));
}

#[test]
fn progress_values_are_checked() {
    let env = Env::new();
    let ctx = env.path("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\nLABEL a=b\n");
    let out = build(&env, &ctx, &["--progress", "fancy"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("'fancy'"), "{err}");
    for valid in ["auto", "plain", "tty", "json", "quiet"] {
        assert!(err.contains(valid), "{valid} missing: {err}");
    }
    // tty needs a terminal, as BuildKit's does; auto falls back to plain.
    let out = build(&env, &ctx, &["--progress", "tty"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("stderr to be a terminal"), "{}", text(&out.stderr));
    let (_, err) = build_ok(&env, &ctx, &["--progress", "auto"]);
    assert!(err.starts_with("#1 [stage-0 1/2] FROM scratch\n#1 DONE "), "{err}");
    // BUILDKIT_PROGRESS is the default, as for Docker.
    let out = run_timeout(env.cmd().env("BUILDKIT_PROGRESS", "json").arg("build").arg(&ctx), 60);
    assert!(out.status.success());
    assert_eq!(json_lines(&text(&out.stderr)).last().unwrap()["event"], "result");
}

/// A private tmux server (its own socket in a temporary dir, no config) for one test;
/// killed when dropped, and its socket goes with the dir.
struct Tmux {
    socket: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Option<Tmux> {
        if !have("tmux") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        Some(Tmux { socket: dir.path().join("tmux.sock"), dir })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]).args(args);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = run_timeout(&mut self.cmd(args), 20);
        assert!(out.status.success(), "tmux {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Runs `strata ARGS` in a new 120x40 session `name`; [`Tmux::wait`] waits for it.
    fn run(&self, name: &str, env: &Env, args: &[&str]) -> Run {
        let rc = self.dir.path().join(format!("{name}.rc"));
        let script = self.dir.path().join(format!("{name}.sh"));
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        // The pane stays open after strata exits so its screen can be read; kill-server
        // ends the sleep.
        fs::write(
            &script,
            format!(
                "unset NO_COLOR\nSTRATA_ROOT='{}' '{STRATA}' {}\n\
                 echo $? > '{rc}.tmp' && mv '{rc}.tmp' '{rc}'\nexec sleep 300\n",
                env.root().display(),
                quoted.join(" "),
                rc = rc.display()
            ),
        )
        .unwrap();
        let cmd = format!("sh {}", script.display());
        self.ok(&["new-session", "-d", "-s", name, "-x", "120", "-y", "40", &cmd]);
        Run { rc, target: format!("{name}:0") }
    }

    /// The pane's text (with its history), `-e` keeps the colour and attribute escapes.
    fn screen(&self, run: &Run, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-S", "-", "-t", &run.target];
        if escapes {
            args.push("-e");
        }
        let s = self.ok(&args);
        s.trim_end_matches('\n').to_string()
    }

    /// Waits for strata to exit; its exit code.
    fn wait(&self, run: &Run) -> i32 {
        let start = Instant::now();
        loop {
            if let Ok(rc) = fs::read_to_string(&run.rc) {
                return rc.trim().parse().unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "strata did not finish in tmux:\n{}",
                self.screen(run, false)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the screen shows `text`.
    fn wait_for(&self, run: &Run, text: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen(run, true);
            if s.contains(text) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{text:?} never showed:\n{}",
                self.screen(run, false)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = run_timeout(&mut self.cmd(&["kill-server"]), 20);
    }
}

struct Run {
    rc: std::path::PathBuf,
    target: String,
}

/// Screen text that a stray or cut escape sequence would leave behind.
fn assert_no_escape_garbage(screen: &str) {
    for bad in ["\x1b", "[?25", "[?2026", "[K", "[J", "[0m", "[2m", "[34m", "\r"] {
        assert!(!screen.contains(bad), "{bad:?} on the screen:\n{screen}");
    }
    let b = screen.as_bytes();
    for (i, _) in screen.match_indices('[') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        assert!(
            digits == 0 || !matches!(b.get(i + 1 + digits), Some(b'A' | b'B' | b'm')),
            "a cursor or colour sequence as text at {i}:\n{screen}"
        );
    }
    for l in screen.lines().filter(|l| l.starts_with(" => ") || l.starts_with("[+] ")) {
        // The view's lines are cut to one column less than the width: never wrapped.
        assert!(l.chars().count() < 120, "a full-width line may have wrapped: {l:?}");
    }
}

fn step_lines(screen: &str) -> Vec<&str> {
    screen.lines().filter(|l| l.starts_with(" => ") && !l.starts_with(" => => ")).collect()
}

/// The seconds of a step line's timer (` => NAME   1.2s`).
fn timer(line: &str) -> f64 {
    let t = line.rsplit(' ').next().and_then(|t| t.strip_suffix('s'));
    t.and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("no timer: {line:?}"))
}

/// The final screen of a tty build: one header (frames were drawn over each other), one
/// line per step, and what follows.
fn final_frame(screen: &str, steps: usize) -> Vec<&str> {
    assert_no_escape_garbage(screen);
    let headers: Vec<&str> = screen.lines().filter(|l| l.contains("[+] Building")).collect();
    assert_eq!(headers.len(), 1, "one frame left on the screen:\n{screen}");
    assert!(screen.starts_with("[+] Building "), "{screen}");
    let lines = step_lines(screen);
    assert_eq!(lines.len(), steps, "{screen}");
    assert!(!screen.contains(" => => # "), "no output under finished steps:\n{screen}");
    for l in &lines {
        timer(l);
    }
    lines
}

#[test]
fn tty_draws_in_place_in_a_real_terminal() {
    let Some(env) = with_busybox() else { return };
    let Some(tmux) = Tmux::new() else { return };
    let ctx = env.path("ctx");
    // In a script, so the escapes it prints are not in the step's name too.
    write(
        &ctx,
        "out.sh",
        "for i in 1 2 3 4 5 6 7 8; do echo tail-line-$i; done\n\
         printf '\\033[32mgreen\\033[0m\\tx\\n'\n\
         seq -s - 1 100\n",
    );
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         COPY out.sh /out.sh\n\
         RUN sh /out.sh && sleep 4\n\
         RUN echo second\n",
    );
    let ctx = ctx.to_str().unwrap();
    let first = tmux.run("first", &env, &["build", "--progress", "tty", "-t", "tty:1", ctx]);

    // While the RUN sleeps: its last 6 output lines under it, dimmed, escapes taken out,
    // cut to the width; one frame, redrawn (its timer moves).
    let live = tmux.wait_for(&first, "1-2-3-4-5");
    let at = live.find(" => => # tail-line-5").unwrap();
    let sgr = live[..at].rsplit("\x1b[").next().unwrap();
    assert!(sgr.strip_suffix('m').is_some_and(|p| p.split(';').any(|c| c == "2")), "dim: {live:?}");
    let green = live
        .split("\x1b[")
        .skip(1)
        .any(|sgr| sgr.split_once('m').is_some_and(|(p, _)| p.split(';').any(|c| c == "32")));
    assert!(!green, "the RUN's own colours are taken out: {live:?}");
    let live = tmux.screen(&first, false);
    assert_no_escape_garbage(&live);
    assert_eq!(live.matches("[+] Building").count(), 1, "{live}");
    let tail: Vec<&str> = live.lines().filter(|l| l.starts_with(" => => # ")).collect();
    assert_eq!(tail.len(), 6, "{live}");
    assert_eq!(tail[0], " => => # tail-line-5", "{live}");
    assert_eq!(tail[4], " => => # green   x", "{live}");
    assert!(tail[5].starts_with(" => => # 1-2-3-4-5") && tail[5].chars().count() == 119, "{live}");
    let running = |s: &str| {
        let l = step_lines(s).into_iter().find(|l| l.contains("RUN sh /out.sh")).map(timer);
        l.unwrap_or_else(|| panic!("no RUN line:\n{s}"))
    };
    let t0 = running(&live);
    std::thread::sleep(Duration::from_millis(700));
    let t1 = running(&tmux.screen(&first, false));
    assert!(t1 >= t0 + 0.3, "the live timer moves: {t0} -> {t1}");

    assert_eq!(tmux.wait(&first), 0, "{}", tmux.screen(&first, false));
    let screen = tmux.screen(&first, false);
    let lines = final_frame(&screen, 5);
    assert!(screen.lines().next().unwrap().ends_with(" (5/5) FINISHED"), "{screen}");
    assert!(lines[0].starts_with(" => [stage-0 1/4] FROM busybox "), "{screen}");
    assert!(lines[1].starts_with(" => [stage-0 2/4] COPY out.sh /out.sh "), "{screen}");
    assert!(lines[2].starts_with(" => [stage-0 3/4] RUN sh /out.sh && sleep 4 "), "{screen}");
    assert!(lines[3].starts_with(" => [stage-0 4/4] RUN echo second "), "{screen}");
    assert!(timer(lines[2]) >= 4.0 && timer(lines[3]) < 4.0, "each step's own time:\n{screen}");
    assert!(!screen.contains("tail-line"), "{screen}");
    assert!(lines[4].starts_with(" => exporting to image "), "{screen}");
    let after: Vec<&str> = screen.lines().skip(6).collect();
    assert!(after[0].starts_with("Successfully built "), "{screen}");
    assert_eq!(after[1], "Successfully tagged tty:1", "{screen}");

    // A rebuild: CACHED steps.
    let second = tmux.run("second", &env, &["build", "--progress", "tty", ctx]);
    assert_eq!(tmux.wait(&second), 0, "{}", tmux.screen(&second, false));
    let screen = tmux.screen(&second, false);
    let lines = final_frame(&screen, 5);
    assert!(lines[0].starts_with(" => [stage-0 1/4] FROM busybox "), "{screen}");
    assert!(lines[1].starts_with(" => CACHED [stage-0 2/4] COPY out.sh /out.sh "), "{screen}");
    assert!(lines[2].starts_with(" => CACHED [stage-0 3/4] RUN sh /out.sh "), "{screen}");
    assert!(lines[3].starts_with(" => CACHED [stage-0 4/4] RUN echo second "), "{screen}");
}

#[test]
fn tty_shows_the_failed_steps_whole_output() {
    let Some(env) = with_busybox() else { return };
    let Some(tmux) = Tmux::new() else { return };
    let ctx = env.path("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         RUN echo before\n\
         RUN for i in $(seq 1 30); do echo fail-line-$i; done; exit 3\n",
    );
    let run = tmux.run("fail", &env, &["build", "--progress", "tty", ctx.to_str().unwrap()]);
    assert_eq!(tmux.wait(&run), 1, "{}", tmux.screen(&run, false));
    let screen = tmux.screen(&run, false);
    let lines = final_frame(&screen, 3);
    assert!(!screen.lines().next().unwrap().contains("FINISHED"), "{screen}");
    assert!(lines[1].starts_with(" => [stage-0 2/3] RUN echo before "), "{screen}");
    assert!(lines[2].starts_with(" => ERROR [stage-0 3/3] RUN for i in $(seq 1 30)"), "{screen}");
    // BuildKit's block with every output line of the failed step, then the error.
    let all: Vec<&str> = screen.lines().collect();
    let start = all.iter().position(|l| *l == "------").unwrap_or_else(|| panic!("{screen}"));
    assert!(all[start + 1].starts_with(" > [stage-0 3/3] RUN for i in"), "{screen}");
    assert!(all[start + 1].ends_with(":"), "{screen}");
    for i in 1..=30 {
        let l = all[start + 1 + i];
        let (secs, text) = l.split_once(' ').unwrap();
        assert!(
            secs.parse::<f64>().is_ok() && text == format!("fail-line-{i}"),
            "{l:?}:\n{screen}"
        );
    }
    assert_eq!(all[start + 32], "------", "{screen}");
    assert!(screen[screen.find("------").unwrap()..].contains("exit code: 3"), "{screen}");
}

//! How `strata build` shows its progress: `--progress auto|plain|tty|json|quiet` and `-q`,
//! as BuildKit does.
//!
//! `strata_build::build` reports [`Event`]s from its stage threads, one at a time (under a
//! mutex), so events of parallel steps interleave. [`start`] picks a [`BuildProgress`] for
//! the mode; `build.rs` feeds it every event and then the outcome:
//! - [`Plain`]: `#N [stage i/n] INSTR`, `#N <secs> <line>` (seconds since the step started),
//!   `#N DONE <secs>s` (the step's own duration) or `#N CACHED`; on failure `#N ERROR: <msg>`
//!   for the step the error came from and `#N CANCELED` for the others still running.
//! - [`Tty`]: a live view on stderr, redrawn in place about 10 times a second.
//! - [`Json`]: one JSON object per line (the schema is on the type).
//! - quiet: nothing (errors are still reported by the caller).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use miette::{miette, Report};
use serde_json::{json, Value};
use strata_build::{BuildResult, Event};
use strata_dockerfile::Dockerfile;
use unicode_width::UnicodeWidthChar;

/// The `--progress` values (Docker's, with `json` for Strata's own event stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// tty when stderr is a terminal and TERM is not dumb, else plain
    Auto,
    /// BuildKit's plain lines: `#N [stage i/n] INSTR`, `#N <secs> <output>`, `#N DONE 1.2s`
    Plain,
    /// A live view redrawn in place (stderr must be a terminal)
    Tty,
    /// One JSON object per line for each event
    Json,
    /// Nothing but errors; the image ID on stdout
    Quiet,
}

/// A display of one build's progress.
pub trait BuildProgress: Send {
    /// One event from the build engine.
    fn event(&mut self, e: &Event);
    /// The build ended: show the final state. Returns true when the error has been
    /// reported here, so the caller must not print it again.
    fn finish(&mut self, outcome: Result<&BuildResult, &Report>) -> bool;
}

/// The display for building `df` with `mode` on stderr; `quiet` (`-q`) wins over any mode.
pub fn start(
    mode: ProgressMode,
    quiet: bool,
    df: &Dockerfile,
) -> miette::Result<Box<dyn BuildProgress>> {
    let stderr = std::io::stderr();
    let term = std::env::var("TERM").ok();
    let mode = if quiet { ProgressMode::Quiet } else { mode };
    let blame = Blame::new(df);
    Ok(match resolve(mode, stderr.is_terminal(), term.as_deref()) {
        ProgressMode::Plain => Box::new(Plain::new(stderr, blame)),
        ProgressMode::Json => Box::new(Json::new(stderr, blame)),
        ProgressMode::Quiet => Box::new(Quiet),
        ProgressMode::Tty if !stderr.is_terminal() => {
            // BuildKit refuses too: cursor movements would end up in a file or a pipe.
            return Err(miette!(
                "--progress tty needs stderr to be a terminal; use --progress plain (or auto)"
            ));
        }
        ProgressMode::Tty | ProgressMode::Auto => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            Box::new(Tty::start(!no_color && term.as_deref() != Some("dumb"), blame))
        }
    })
}

/// Docker's rule for `auto`: the live view only on a terminal that can move the cursor.
fn resolve(mode: ProgressMode, stderr_is_tty: bool, term: Option<&str>) -> ProgressMode {
    match mode {
        ProgressMode::Auto if stderr_is_tty && term != Some("dumb") => ProgressMode::Tty,
        ProgressMode::Auto => ProgressMode::Plain,
        other => other,
    }
}

/// Seconds as BuildKit prints them before an output line: more digits while they are few.
fn log_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    let prec = if s < 10.0 {
        3
    } else if s < 100.0 {
        2
    } else {
        1
    };
    format!("{s:.prec$}")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The first line of an error, for places that have room for one.
fn first_line(report: &Report) -> String {
    report.to_string().lines().next().unwrap_or_default().to_string()
}

/// How a step that was still running when the build failed ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The error came from it.
    Failed,
    /// Stopped because another step failed (BuildKit's CANCELED).
    Canceled,
}

/// Finds the step an error came from: the engine's `Failed` events say it. Without them (an
/// error the engine reported before or outside any step) the error's Dockerfile line
/// decides: the engine names steps `[<stage> <i>/<n>] ...`, and the step whose instruction
/// holds the error's span failed; the other open steps were stopped.
#[derive(Default)]
struct Blame {
    /// Each instruction's byte range in the Dockerfile and its step's name prefix.
    spans: Vec<(std::ops::Range<usize>, String)>,
    /// What the engine said of failed steps.
    told: HashMap<usize, End>,
}

impl Blame {
    fn new(df: &Dockerfile) -> Blame {
        let mut spans = Vec::new();
        for (si, stage) in df.stages.iter().enumerate() {
            // The engine's step names (strata-build `run_stage`).
            let label = stage.name.clone().unwrap_or_else(|| format!("stage-{si}"));
            let n = stage.instructions.len() + 1;
            let range = |s: &strata_dockerfile::Span| s.offset..s.offset + s.len.max(1);
            spans.push((range(&stage.span), format!("[{label} 1/{n}] ")));
            for (ii, ins) in stage.instructions.iter().enumerate() {
                let prefix = format!("[{label} {}/{n}] ", ii + 2);
                spans.push((range(&ins.span), prefix.clone()));
                spans.push((range(&ins.node.span), prefix));
            }
        }
        Blame { spans, told: HashMap::new() }
    }

    /// The engine's word on a step that failed.
    fn told(&mut self, id: usize, canceled: bool) {
        self.told.insert(id, if canceled { End::Canceled } else { End::Failed });
    }

    /// How each of the `open` steps (id, name) ended, by id; all failed when the error
    /// points at none of them (an error with no Dockerfile line).
    fn judge(&self, report: &Report, open: &[(usize, &str)]) -> Vec<(usize, End)> {
        if !self.told.is_empty() {
            let mut out: Vec<(usize, End)> = open
                .iter()
                .map(|&(id, _)| (id, self.told.get(&id).copied().unwrap_or(End::Canceled)))
                .collect();
            out.sort_unstable_by_key(|j| j.0);
            return out;
        }
        let offset = report.labels().and_then(|mut l| l.next()).map(|l| l.offset());
        let prefix = offset
            .and_then(|o| self.spans.iter().find(|(r, _)| r.contains(&o)).map(|(_, p)| p.as_str()));
        let culprit = |name: &str| prefix.is_some_and(|p| name.starts_with(p));
        let any = open.iter().any(|(_, name)| culprit(name));
        let mut out: Vec<(usize, End)> = open
            .iter()
            .map(|&(id, name)| {
                (id, if !any || culprit(name) { End::Failed } else { End::Canceled })
            })
            .collect();
        out.sort_unstable_by_key(|j| j.0);
        out
    }
}

struct Quiet;

impl BuildProgress for Quiet {
    fn event(&mut self, _: &Event) {}
    fn finish(&mut self, _: Result<&BuildResult, &Report>) -> bool {
        false
    }
}

/// A step's output cut into lines, each stamped with the time since the step started.
struct Lines {
    started: Instant,
    partial: Vec<u8>,
    /// When the partial line's first byte came.
    partial_at: Duration,
}

impl Lines {
    fn new() -> Lines {
        Lines { started: Instant::now(), partial: Vec::new(), partial_at: Duration::ZERO }
    }

    /// Calls `line` for every line `data` completes (without its `\n`).
    fn push(&mut self, data: &[u8], mut line: impl FnMut(Duration, &[u8])) {
        for chunk in data.split_inclusive(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.partial_at = self.started.elapsed();
            }
            match chunk.strip_suffix(b"\n") {
                Some(rest) => {
                    self.partial.extend_from_slice(rest);
                    line(self.partial_at, &self.partial);
                    self.partial.clear();
                }
                None => self.partial.extend_from_slice(chunk),
            }
        }
    }

    /// The unfinished last line, if any, taken out.
    fn take_partial(&mut self) -> Option<(Duration, Vec<u8>)> {
        (!self.partial.is_empty()).then(|| (self.partial_at, std::mem::take(&mut self.partial)))
    }
}

/// `--progress plain`: BuildKit's lines, each prefixed with its step so parallel steps can
/// interleave line by line; output is held per step until its line is complete.
pub struct Plain<W> {
    out: W,
    /// The steps running: their names and output.
    steps: HashMap<usize, (String, Lines)>,
    blame: Blame,
}

impl<W: Write + Send> Plain<W> {
    fn new(out: W, blame: Blame) -> Plain<W> {
        Plain { out, steps: HashMap::new(), blame }
    }

    /// One whole line per write, so another process sharing stderr cannot split it.
    fn line(&mut self, text: String) {
        let _ = self.out.write_all(text.as_bytes());
    }

    fn flush_partial(&mut self, id: usize) {
        if let Some((at, rest)) = self.steps.get_mut(&id).and_then(|s| s.1.take_partial()) {
            self.line(format!("#{id} {} {}\n", log_secs(at), String::from_utf8_lossy(&rest)));
        }
    }
}

impl<W: Write + Send> BuildProgress for Plain<W> {
    fn event(&mut self, e: &Event) {
        match *e {
            Event::Step { id, text } => {
                self.steps.insert(id, (text.to_string(), Lines::new()));
                self.line(format!("#{id} {text}\n"));
            }
            Event::Failed { id, canceled } => self.blame.told(id, canceled),
            Event::Output { id, data, .. } => {
                let mut text = String::new();
                let step = self.steps.entry(id).or_insert_with(|| (String::new(), Lines::new()));
                step.1.push(data, |at, l| {
                    let _ = writeln!(text, "#{id} {} {}", log_secs(at), String::from_utf8_lossy(l));
                });
                if !text.is_empty() {
                    self.line(text);
                }
            }
            Event::Done { id, layer, cached } => {
                self.flush_partial(id);
                let took =
                    self.steps.remove(&id).map_or(0.0, |s| s.1.started.elapsed().as_secs_f64());
                let text = match (cached, layer) {
                    (true, _) => format!("#{id} CACHED\n"),
                    (false, Some(d)) => {
                        format!("#{id} DONE {took:.1}s (layer {})\n", &d.hex()[..12])
                    }
                    (false, None) => format!("#{id} DONE {took:.1}s\n"),
                };
                self.line(text);
            }
        }
    }

    fn finish(&mut self, outcome: Result<&BuildResult, &Report>) -> bool {
        if let Err(report) = outcome {
            let open: Vec<(usize, &str)> =
                self.steps.iter().map(|(&id, s)| (id, s.0.as_str())).collect();
            let msg = first_line(report);
            for (id, end) in self.blame.judge(report, &open) {
                self.flush_partial(id);
                self.line(match end {
                    End::Failed => format!("#{id} ERROR: {msg}\n"),
                    End::Canceled => format!("#{id} CANCELED\n"),
                });
            }
        }
        let _ = self.out.flush();
        false
    }
}

/// `--progress json`: one JSON object per line on stderr, each written whole with one
/// write, in the order the events happened. Every object has `time` (RFC 3339, UTC, with
/// milliseconds: `2024-05-01T12:00:00.123Z`) and `event`, then:
///
/// | `event` | fields |
/// |---|---|
/// | `step` | `id` (the step number, plain's `#N`), `text` (`[stage-0 2/4] COPY . /ctx/`) |
/// | `output` | `id`, `data`: a chunk of the RUN's output as it came, as text (invalid UTF-8 replaced by U+FFFD; a character split between chunks is kept whole) |
/// | `done` | `id`, `cached` (bool), `layer` (`sha256:…`, or null when the step made none), `duration_ms` (the step's own time) |
/// | `result` | `id` (the image ID, `sha256:…`), `manifest` (its manifest digest), `tags` (full references: `docker.io/library/app:1`) |
/// | `error` | `message` (one line), `report` (the whole report with the Dockerfile snippet, no colour), `failed` (ids of the steps it came from), `canceled` (ids of the steps stopped because of it) |
///
/// `result` or `error` is the last line. After `error` nothing else is printed to stderr,
/// so a consumer can parse every line. Output does not say which stream (stdout or
/// stderr) it came from: the build engine does not tell.
pub struct Json<W> {
    out: W,
    steps: HashMap<usize, JsonStep>,
    blame: Blame,
}

struct JsonStep {
    name: String,
    started: Instant,
    /// The start of a UTF-8 character the last chunk cut.
    carry: Vec<u8>,
}

impl<W: Write + Send> Json<W> {
    fn new(out: W, blame: Blame) -> Json<W> {
        Json { out, steps: HashMap::new(), blame }
    }

    fn emit(&mut self, event: &str, fields: Value) {
        let mut obj = serde_json::Map::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        obj.insert("time".into(), now.into());
        obj.insert("event".into(), event.into());
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        let _ = self.out.write_all(line.as_bytes());
    }

    fn flush_carry(&mut self, id: usize) {
        let carry = self.steps.get_mut(&id).map(|s| std::mem::take(&mut s.carry));
        if let Some(c) = carry.filter(|c| !c.is_empty()) {
            self.emit("output", json!({"id": id, "data": String::from_utf8_lossy(&c)}));
        }
    }
}

/// How much of `b` is whole UTF-8 characters: everything but a last character that is cut
/// short (whose remaining bytes are still to come).
fn utf8_complete_len(b: &[u8]) -> usize {
    let n = b.len();
    for back in 1..=n.min(3) {
        let c = b[n - back];
        if c & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let need = match c {
            0xF8.. => 1, // never a lead byte: nothing to wait for
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if need > back { n - back } else { n };
    }
    n
}

impl<W: Write + Send> BuildProgress for Json<W> {
    fn event(&mut self, e: &Event) {
        match *e {
            Event::Step { id, text } => {
                let step =
                    JsonStep { name: text.into(), started: Instant::now(), carry: Vec::new() };
                self.steps.insert(id, step);
                self.emit("step", json!({"id": id, "text": text}));
            }
            Event::Failed { id, canceled } => self.blame.told(id, canceled),
            Event::Output { id, stream, data } => {
                let stream = match stream {
                    strata_build::Stream::Stdout => "stdout",
                    strata_build::Stream::Stderr => "stderr",
                };
                let step = self.steps.entry(id).or_insert_with(|| JsonStep {
                    name: String::new(),
                    started: Instant::now(),
                    carry: Vec::new(),
                });
                let mut bytes = std::mem::take(&mut step.carry);
                bytes.extend_from_slice(data);
                let whole = utf8_complete_len(&bytes);
                step.carry = bytes.split_off(whole);
                if !bytes.is_empty() {
                    let data = String::from_utf8_lossy(&bytes);
                    self.emit("output", json!({"id": id, "stream": stream, "data": data}));
                }
            }
            Event::Done { id, layer, cached } => {
                self.flush_carry(id);
                let ms = self.steps.remove(&id).map_or(0, |s| s.started.elapsed().as_millis());
                let layer = layer.map(|d| d.to_string());
                self.emit(
                    "done",
                    json!({"id": id, "cached": cached, "layer": layer, "duration_ms": ms as u64}),
                );
            }
        }
    }

    fn finish(&mut self, outcome: Result<&BuildResult, &Report>) -> bool {
        let reported = match outcome {
            Ok(r) => {
                let tags: Vec<String> = r.tags.iter().map(|t| t.to_string()).collect();
                let fields = json!({"id": r.id.to_string(), "manifest": r.manifest_digest.to_string(), "tags": tags});
                self.emit("result", fields);
                false
            }
            Err(report) => {
                let open: Vec<(usize, &str)> =
                    self.steps.iter().map(|(&id, s)| (id, s.name.as_str())).collect();
                let judged = self.blame.judge(report, &open);
                for &(id, _) in &judged {
                    self.flush_carry(id);
                }
                let ids = |end: End| -> Vec<usize> {
                    judged.iter().filter(|j| j.1 == end).map(|j| j.0).collect()
                };
                let mut full = String::new();
                let handler = miette::GraphicalReportHandler::new_themed(
                    miette::GraphicalTheme::unicode_nocolor(),
                )
                .with_links(false);
                if handler.render_report(&mut full, &**report).is_err() {
                    full = format!("{report:?}");
                }
                let fields = json!({
                    "message": first_line(report),
                    "report": full,
                    "failed": ids(End::Failed),
                    "canceled": ids(End::Canceled),
                });
                self.emit("error", fields);
                true
            }
        };
        let _ = self.out.flush();
        reported
    }
}

/// Output lines kept per running step for the error report (BuildKit keeps them all).
const KEEP_LINES: usize = 1000;
/// Output lines shown under a running step.
const TAIL_LINES: usize = 6;
/// A line longer than this without a newline is shown as a line of its own.
const MAX_PARTIAL: usize = 64 * 1024;
/// How often the live view is redrawn (BuildKit: 100 ms at most).
const TICK: Duration = Duration::from_millis(100);

/// `--progress tty`: BuildKit's live view, drawn by a painter thread ~10 times a second so
/// timers move while nothing happens; events only update the [`View`].
pub struct Tty {
    shared: Arc<Shared>,
    painter: Option<JoinHandle<Painter>>,
    color: bool,
    blame: Blame,
}

struct Shared {
    view: Mutex<View>,
    wake: Condvar,
}

/// What the live view shows: the steps in the order they started.
struct View {
    started: Instant,
    steps: Vec<TtyStep>,
    by_id: HashMap<usize, usize>,
    stop: bool,
}

struct TtyStep {
    name: String,
    started: Instant,
    ended: Option<Instant>,
    cached: bool,
    /// How it ended when the build failed before it finished.
    end: Option<End>,
    lines: Lines,
    /// The last [`KEEP_LINES`] output lines (cleaned for the terminal), with their times.
    log: VecDeque<(Duration, String)>,
}

impl TtyStep {
    /// The last `n` output lines, the unfinished one included.
    fn tail(&self, n: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if !self.lines.partial.is_empty() {
            out.push(clean(&String::from_utf8_lossy(&self.lines.partial)));
        }
        for (_, l) in self.log.iter().rev() {
            if out.len() >= n {
                break;
            }
            out.push(l.clone());
        }
        out.truncate(n);
        out.reverse();
        out
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Frame {
    /// While building: limited to the screen's height, with output under running steps.
    Live,
    /// The last one: every step, once.
    Final { ok: bool },
}

impl View {
    fn new() -> View {
        View { started: Instant::now(), steps: Vec::new(), by_id: HashMap::new(), stop: false }
    }

    fn step(&mut self, id: usize) -> &mut TtyStep {
        if !self.by_id.contains_key(&id) {
            // Output before its Step event would be an engine bug; show it rather than lose it.
            self.start(id, &format!("#{id}"));
        }
        &mut self.steps[self.by_id[&id]]
    }

    fn start(&mut self, id: usize, text: &str) {
        self.by_id.insert(id, self.steps.len());
        self.steps.push(TtyStep {
            name: text.replace('\t', " "),
            started: Instant::now(),
            ended: None,
            cached: false,
            end: None,
            lines: Lines::new(),
            log: VecDeque::new(),
        });
    }

    fn apply(&mut self, e: &Event) {
        match *e {
            Event::Step { id, text } => self.start(id, text),
            Event::Failed { .. } => {}
            Event::Output { id, data, .. } => {
                let step = self.step(id);
                let log = &mut step.log;
                step.lines.push(data, |at, l| {
                    if log.len() == KEEP_LINES {
                        log.pop_front();
                    }
                    log.push_back((at, clean(&String::from_utf8_lossy(l))));
                });
                if step.lines.partial.len() > MAX_PARTIAL {
                    let (at, l) = step.lines.take_partial().unwrap_or_default();
                    step.log.push_back((at, clean(&String::from_utf8_lossy(&l))));
                }
            }
            Event::Done { id, cached, .. } => {
                let step = self.step(id);
                step.ended = Some(Instant::now());
                step.cached = cached;
                // Kept only for an error report, which a finished step will not need.
                step.log = VecDeque::new();
                step.lines.partial = Vec::new();
            }
        }
    }

    /// Ends the steps the build's error left open: failed or canceled.
    fn end_open_steps(&mut self, now: Instant, blame: &Blame, report: &Report) {
        let open: Vec<(usize, &str)> = self
            .by_id
            .iter()
            .map(|(&id, &i)| (id, &self.steps[i]))
            .filter(|(_, s)| s.ended.is_none())
            .map(|(id, s)| (id, s.name.as_str()))
            .collect();
        for (id, end) in blame.judge(report, &open) {
            let step = &mut self.steps[self.by_id[&id]];
            step.ended = Some(now);
            step.end = Some(end);
        }
    }

    /// The frame's lines (with colour escapes when `color`), none wider than `width - 1`
    /// columns so the terminal never wraps one.
    fn render(
        &self,
        now: Instant,
        width: usize,
        height: usize,
        frame: Frame,
        color: bool,
    ) -> Vec<String> {
        let width = width.saturating_sub(1).max(1);
        let done = self.steps.iter().filter(|s| s.ended.is_some()).count();
        let mut header = format!(
            "[+] Building {:.1}s ({done}/{})",
            now.saturating_duration_since(self.started).as_secs_f64(),
            self.steps.len()
        );
        if frame == (Frame::Final { ok: true }) {
            header.push_str(" FINISHED");
        }
        let mut out = vec![fit(&header, width).0];

        // What fits a live frame, as BuildKit: running steps, then their output, then the
        // most recent finished steps.
        let mut shown = vec![true; self.steps.len()];
        let mut tails = vec![0; self.steps.len()];
        if frame == Frame::Live {
            let budget = height.saturating_sub(2).max(1);
            let running: Vec<usize> =
                (0..self.steps.len()).filter(|&i| self.steps[i].ended.is_none()).collect();
            let running = &running[running.len() - running.len().min(budget)..];
            let mut room = budget - running.len();
            shown.fill(false);
            for &i in running {
                shown[i] = true;
                let s = &self.steps[i];
                let have = s.log.len() + usize::from(!s.lines.partial.is_empty());
                tails[i] = have.min(TAIL_LINES).min(room);
                room -= tails[i];
            }
            for i in (0..self.steps.len()).rev() {
                if room == 0 {
                    break;
                }
                if !shown[i] {
                    shown[i] = true;
                    room -= 1;
                }
            }
        }

        for (i, s) in self.steps.iter().enumerate().filter(|&(i, _)| shown[i]) {
            let secs = s.ended.unwrap_or(now).saturating_duration_since(s.started).as_secs_f64();
            let timer = format!("{:.1}s", if secs < 0.05 { 0.0 } else { secs });
            let status = match (s.end, s.cached) {
                (Some(End::Failed), _) => "ERROR ",
                (Some(End::Canceled), _) => "CANCELED ",
                (None, true) => "CACHED ",
                (None, false) => "",
            };
            let name_room = width.saturating_sub(" => ".len() + 1 + timer.len());
            let (name, used) = fit(&format!("{status}{}", s.name), name_room);
            let pad = " ".repeat(name_room - used);
            // On a screen too narrow even for the timer, the line is cut like any other.
            let line = fit(&format!(" => {name}{pad} {timer}"), width).0;
            // BuildKit's colours: finished blue, failed red, canceled yellow.
            out.push(match (color, s.ended.is_some(), s.end) {
                (true, _, Some(End::Failed)) => format!("\x1b[31m{line}\x1b[0m"),
                (true, _, Some(End::Canceled)) => format!("\x1b[33m{line}\x1b[0m"),
                (true, true, None) => format!("\x1b[34m{line}\x1b[0m"),
                _ => line,
            });
            for l in s.tail(tails[i]) {
                let (l, _) = fit(&format!(" => => # {l}"), width);
                out.push(if color { format!("\x1b[2m{l}\x1b[0m") } else { l });
            }
        }
        out
    }

    /// BuildKit's report of each failed step's output, after the final frame.
    fn error_logs(&self) -> String {
        let mut out = String::new();
        for s in self.steps.iter().filter(|s| s.end == Some(End::Failed)) {
            out.push_str("------\n");
            let _ = writeln!(out, " > {}:", s.name);
            for (at, l) in &s.log {
                let _ = writeln!(out, "{} {l}", log_secs(*at));
            }
            if !s.lines.partial.is_empty() {
                let _ = writeln!(
                    out,
                    "{} {}",
                    log_secs(s.lines.partial_at),
                    clean(&String::from_utf8_lossy(&s.lines.partial))
                );
            }
            out.push_str("------\n");
        }
        out
    }
}

/// Draws frames over the previous one: the cursor goes back to the first line and every
/// line is rewritten and cleared to its end, in one write, so nothing flickers.
struct Painter {
    /// Lines of the last frame, which the next one overwrites.
    drawn: usize,
}

impl Painter {
    fn frame(&mut self, lines: &[String], tail: &str) -> String {
        // Synchronized update (terminals that do not know it ignore it), cursor hidden.
        let mut s = String::from("\x1b[?2026h\x1b[?25l");
        if self.drawn > 0 {
            let _ = write!(s, "\r\x1b[{}A", self.drawn);
        }
        for l in lines {
            s.push_str(l);
            s.push_str("\x1b[K\n");
        }
        // Whatever is left of a longer previous frame.
        s.push_str("\x1b[J");
        s.push_str(tail);
        s.push_str("\x1b[?25h\x1b[?2026l");
        self.drawn = lines.len();
        s
    }

    fn draw(&mut self, lines: &[String], tail: &str) {
        let s = self.frame(lines, tail);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(s.as_bytes());
        let _ = err.flush();
    }
}

/// The terminal's (columns, rows) on stderr; 80x24 when it does not say.
fn term_size() -> (usize, usize) {
    // SAFETY: TIOCGWINSZ fills the winsize we pass and nothing else; fd 2 is open.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col as usize, ws.ws_row as usize)
    } else {
        (80, 24)
    }
}

impl Tty {
    fn start(color: bool, blame: Blame) -> Tty {
        let shared = Arc::new(Shared { view: Mutex::new(View::new()), wake: Condvar::new() });
        let s = Arc::clone(&shared);
        let painter = std::thread::spawn(move || {
            let mut painter = Painter { drawn: 0 };
            let mut view = lock(&s.view);
            while !view.stop {
                let (w, h) = term_size();
                let lines = view.render(Instant::now(), w, h, Frame::Live, color);
                drop(view);
                painter.draw(&lines, "");
                view = lock(&s.view);
                if !view.stop {
                    view =
                        s.wake.wait_timeout(view, TICK).map_or_else(|p| p.into_inner().0, |r| r.0);
                }
            }
            painter
        });
        Tty { shared, painter: Some(painter), color, blame }
    }
}

impl BuildProgress for Tty {
    fn event(&mut self, e: &Event) {
        if let Event::Failed { id, canceled } = *e {
            self.blame.told(id, canceled);
        }
        lock(&self.shared.view).apply(e);
    }

    fn finish(&mut self, outcome: Result<&BuildResult, &Report>) -> bool {
        lock(&self.shared.view).stop = true;
        self.shared.wake.notify_all();
        let mut painter = match self.painter.take().map(JoinHandle::join) {
            Some(Ok(p)) => p,
            _ => Painter { drawn: 0 },
        };
        let mut view = lock(&self.shared.view);
        let now = Instant::now();
        if let Err(report) = outcome {
            view.end_open_steps(now, &self.blame, report);
        }
        let (w, h) = term_size();
        let lines = view.render(now, w, h, Frame::Final { ok: outcome.is_ok() }, self.color);
        painter.draw(&lines, &view.error_logs());
        false
    }
}

impl Drop for Tty {
    /// A Tty dropped without `finish` (a panic) still stops its painter.
    fn drop(&mut self) {
        lock(&self.shared.view).stop = true;
        self.shared.wake.notify_all();
        if let Some(p) = self.painter.take() {
            let _ = p.join();
        }
    }
}

/// An output line made safe to draw among ours: what a terminal would show after its
/// carriage returns (progress bars), without escape sequences or control characters, tabs
/// expanded.
fn clean(line: &str) -> String {
    let line = line.split('\r').rfind(|s| !s.is_empty()).unwrap_or("");
    let mut out = String::with_capacity(line.len());
    let mut col = 0;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC (titles, hyperlinks): up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' => {
                let n = 8 - col % 8;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                col += c.width().unwrap_or(0);
            }
        }
    }
    out
}

/// `s` cut to at most `width` terminal columns, and the columns it takes.
fn fit(s: &str, width: usize) -> (String, usize) {
    let mut used = 0;
    let mut out = String::new();
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        out.push(c);
    }
    (out, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_tty_only_on_a_capable_terminal() {
        use ProgressMode::*;
        assert_eq!(resolve(Auto, true, Some("xterm-256color")), Tty);
        assert_eq!(resolve(Auto, true, None), Tty);
        assert_eq!(resolve(Auto, true, Some("dumb")), Plain);
        assert_eq!(resolve(Auto, false, Some("xterm")), Plain);
        assert_eq!(resolve(Json, true, Some("xterm")), Json);
        assert_eq!(resolve(Tty, false, None), Tty);
    }

    #[test]
    fn log_seconds_have_buildkits_precision() {
        assert_eq!(log_secs(Duration::from_millis(1234)), "1.234");
        assert_eq!(log_secs(Duration::from_millis(12_345)), "12.35");
        assert_eq!(log_secs(Duration::from_millis(123_456)), "123.5");
    }

    #[test]
    fn clean_keeps_what_a_terminal_would_show() {
        assert_eq!(clean("\x1b[1;31mred\x1b[0m text"), "red text");
        assert_eq!(clean("10%\r50%\r100%"), "100%");
        assert_eq!(clean("line\r"), "line");
        assert_eq!(clean("a\tb"), "a       b");
        assert_eq!(clean("\x1b]0;title\x07x\x1b]8;;http://x\x1b\\y"), "xy");
        assert_eq!(clean("bell\x07 nul\0"), "bell nul");
    }

    #[test]
    fn fit_counts_columns_not_bytes() {
        assert_eq!(fit("héllo", 3), ("hél".to_string(), 3));
        assert_eq!(fit("日本語", 5), ("日本".to_string(), 4));
        assert_eq!(fit("ab", 10), ("ab".to_string(), 2));
    }

    #[test]
    fn utf8_cut_characters_wait_for_their_rest() {
        let s = "aé€😀".as_bytes();
        assert_eq!(utf8_complete_len(s), s.len());
        assert_eq!(utf8_complete_len(&s[..s.len() - 1]), s.len() - 4);
        assert_eq!(utf8_complete_len(&s[..2]), 1);
        assert_eq!(utf8_complete_len(b"\xff"), 1);
    }

    #[test]
    fn lines_are_stamped_when_they_start() {
        let mut l = Lines::new();
        let mut got = Vec::new();
        l.push(b"one\ntw", |_, x| got.push(String::from_utf8_lossy(x).into_owned()));
        l.push(b"o\nthree", |_, x| got.push(String::from_utf8_lossy(x).into_owned()));
        assert_eq!(got, ["one", "two"]);
        assert_eq!(l.take_partial().map(|p| p.1), Some(b"three".to_vec()));
        assert_eq!(l.take_partial(), None);
    }

    fn digest() -> strata_oci::Digest {
        format!("sha256:{}", "ab".repeat(32)).parse().unwrap()
    }

    #[test]
    fn plain_prints_step_durations_and_buffers_lines() {
        let mut p = Plain::new(Vec::new(), Blame::default());
        p.event(&Event::Step { id: 1, text: "[stage-0 1/2] FROM busybox" });
        p.event(&Event::Done { id: 1, layer: None, cached: false });
        p.event(&Event::Step { id: 2, text: "[stage-0 2/2] RUN x" });
        p.event(&Event::Output { id: 2, stream: strata_build::Stream::Stdout, data: b"hel" });
        p.event(&Event::Output { id: 2, stream: strata_build::Stream::Stdout, data: b"lo\nlast" });
        let d = digest();
        p.event(&Event::Done { id: 2, layer: Some(&d), cached: false });
        p.event(&Event::Step { id: 3, text: "[stage-0 3/3] RUN y" });
        p.event(&Event::Done { id: 3, layer: None, cached: true });
        let text = String::from_utf8(p.out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#1 [stage-0 1/2] FROM busybox");
        assert_eq!(lines[1], "#1 DONE 0.0s");
        assert_eq!(lines[2], "#2 [stage-0 2/2] RUN x");
        assert!(lines[3].starts_with("#2 0.0") && lines[3].ends_with(" hello"), "{text}");
        assert!(lines[4].ends_with(" last"), "{text}");
        assert_eq!(lines[5], "#2 DONE 0.0s (layer abababababab)");
        assert_eq!(lines[7], "#3 CACHED");
    }

    #[test]
    fn plain_marks_open_steps_failed() {
        let mut p = Plain::new(Vec::new(), Blame::default());
        p.event(&Event::Step { id: 2, text: "[stage-0 2/2] RUN false" });
        p.event(&Event::Output { id: 2, stream: strata_build::Stream::Stdout, data: b"oops" });
        let report = miette!("process did not complete successfully: exit code: 1");
        assert!(!p.finish(Err(&report)));
        let text = String::from_utf8(p.out).unwrap();
        assert!(
            text.ends_with(
                " oops\n#2 ERROR: process did not complete successfully: exit code: 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn json_lines_parse_and_keep_characters_whole() {
        let mut j = Json::new(Vec::new(), Blame::default());
        j.event(&Event::Step { id: 4, text: "[stage-0 2/2] RUN echo é" });
        let e = "é".as_bytes();
        j.event(&Event::Output {
            id: 4,
            stream: strata_build::Stream::Stdout,
            data: &[b'a', e[0]],
        });
        j.event(&Event::Output {
            id: 4,
            stream: strata_build::Stream::Stdout,
            data: &[e[1], b'\n'],
        });
        j.event(&Event::Done { id: 4, layer: None, cached: false });
        let report = miette!("boom");
        assert!(j.finish(Err(&report)));
        let text = String::from_utf8(j.out).unwrap();
        let v: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(v[0]["event"], "step");
        assert_eq!(v[0]["id"], 4);
        let data: String = v
            .iter()
            .filter(|x| x["event"] == "output")
            .map(|x| x["data"].as_str().unwrap())
            .collect();
        assert_eq!(data, "aé\n");
        let done = v.iter().find(|x| x["event"] == "done").unwrap();
        assert_eq!(done["layer"], Value::Null);
        assert!(done["duration_ms"].is_u64());
        let last = v.last().unwrap();
        assert_eq!(last["event"], "error");
        assert_eq!(last["message"], "boom");
        assert_eq!(last["failed"], json!([]));
        let t = v[0]["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.len() == 24, "{t}");
    }

    fn view() -> View {
        let mut v = View::new();
        v.apply(&Event::Step { id: 1, text: "[stage-0 1/3] FROM busybox" });
        v.apply(&Event::Done { id: 1, layer: None, cached: false });
        v.apply(&Event::Step { id: 2, text: "[stage-0 2/3] COPY . /ctx/" });
        v.apply(&Event::Done { id: 2, layer: None, cached: true });
        v.apply(&Event::Step { id: 3, text: "[stage-0 3/3] RUN make" });
        for i in 0..10 {
            v.apply(&Event::Output {
                id: 3,
                stream: strata_build::Stream::Stdout,
                data: format!("line {i}\n").as_bytes(),
            });
        }
        v.apply(&Event::Output {
            id: 3,
            stream: strata_build::Stream::Stdout,
            data: "\x1b[32mgreen\x1b[0m ".repeat(30).as_bytes(),
        });
        v
    }

    #[test]
    fn live_frame_shows_steps_and_the_running_output() {
        let v = view();
        let lines = v.render(Instant::now(), 60, 40, Frame::Live, false);
        assert!(lines[0].starts_with("[+] Building ") && lines[0].ends_with("(2/3)"), "{lines:?}");
        assert!(
            lines[1].starts_with(" => [stage-0 1/3] FROM busybox") && lines[1].ends_with(" 0.0s")
        );
        assert!(lines[2].starts_with(" => CACHED [stage-0 2/3] COPY . /ctx/"));
        assert!(lines[3].starts_with(" => [stage-0 3/3] RUN make"));
        // The last 6 output lines, the unfinished one last, cut to the width.
        assert_eq!(lines.len(), 4 + TAIL_LINES, "{lines:?}");
        assert_eq!(lines[4], " => => # line 5");
        assert!(lines[9].starts_with(" => => # green green"), "{lines:?}");
        for l in &lines {
            assert!(l.chars().count() <= 59 && !l.contains('\x1b'), "{l:?}");
        }
    }

    #[test]
    fn live_frame_fits_a_short_screen() {
        let mut v = view();
        for id in 10..30 {
            v.apply(&Event::Step { id, text: "[other 2/2] COPY a b" });
            v.apply(&Event::Done { id, layer: None, cached: false });
        }
        let lines = v.render(Instant::now(), 80, 10, Frame::Live, true);
        assert!(lines.len() <= 9, "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("RUN make")), "the running step stays: {lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("\x1b[2m => => # ")), "{lines:?}");
    }

    #[test]
    fn a_narrow_screen_gets_no_wrapped_line() {
        let v = view();
        for w in [1, 5, 12, 30] {
            for l in v.render(Instant::now(), w, 4, Frame::Live, false) {
                assert!(fit(&l, usize::MAX).1 <= w.saturating_sub(1).max(1), "{w}: {l:?}");
            }
        }
    }

    #[test]
    fn final_frame_on_error_marks_the_open_step_and_reports_its_output() {
        let mut v = view();
        v.end_open_steps(Instant::now(), &Blame::default(), &miette!("boom"));
        let lines = v.render(Instant::now(), 80, 5, Frame::Final { ok: false }, false);
        assert_eq!(lines.len(), 4, "every step, no output: {lines:?}");
        assert!(!lines[0].contains("FINISHED"));
        assert!(lines[3].starts_with(" => ERROR [stage-0 3/3] RUN make"), "{lines:?}");
        let logs = v.error_logs();
        assert!(logs.starts_with("------\n > [stage-0 3/3] RUN make:\n0.0"), "{logs}");
        assert!(
            logs.contains(" line 0\n") && logs.contains(" line 9\n") && logs.ends_with("------\n")
        );
        assert!(!logs.contains('\x1b'), "{logs}");
    }

    #[test]
    fn the_step_at_the_errors_line_failed_and_the_other_open_ones_were_canceled() {
        let text = "FROM busybox AS slow\nRUN sleep 30\nFROM busybox\nRUN exit 3\n";
        let df = strata_dockerfile::parse_dockerfile("Dockerfile", text).unwrap();
        let blame = Blame::new(&df);
        let run = df.stages[1].instructions[0].span;
        let diag = strata_dockerfile::Diag::error("build::run", "exit code: 3").at(run);
        let report = Report::new(diag.in_file(&df.source));
        let open = [(2, "[slow 2/2] RUN sleep 30"), (4, "[stage-1 2/2] RUN exit 3")];
        assert_eq!(blame.judge(&report, &open), [(2, End::Canceled), (4, End::Failed)]);
        // An error without a line, or pointing at no open step: all of them failed.
        let judged = blame.judge(&miette!("disk full"), &open);
        assert_eq!(judged, [(2, End::Failed), (4, End::Failed)]);
        assert_eq!(blame.judge(&report, &open[..1]), [(2, End::Failed)]);

        // Plain and tty say so.
        let mut p = Plain::new(Vec::new(), Blame::new(&df));
        p.event(&Event::Step { id: 2, text: open[0].1 });
        p.event(&Event::Step { id: 4, text: open[1].1 });
        p.finish(Err(&report));
        let text = String::from_utf8(p.out).unwrap();
        assert!(text.ends_with("#2 CANCELED\n#4 ERROR: exit code: 3\n"), "{text}");
        let mut v = View::new();
        v.apply(&Event::Step { id: 2, text: open[0].1 });
        v.apply(&Event::Step { id: 4, text: open[1].1 });
        v.end_open_steps(Instant::now(), &blame, &report);
        let lines = v.render(Instant::now(), 80, 24, Frame::Final { ok: false }, false);
        assert!(lines[1].starts_with(" => CANCELED [slow 2/2]"), "{lines:?}");
        assert!(lines[2].starts_with(" => ERROR [stage-1 2/2]"), "{lines:?}");
        assert!(v.error_logs().starts_with("------\n > [stage-1 2/2] RUN exit 3:\n------\n"));
    }

    #[test]
    fn painter_overwrites_the_previous_frame() {
        let mut p = Painter { drawn: 0 };
        let first = p.frame(&["a".into(), "b".into()], "");
        assert!(!first.contains("\x1b[2A"));
        let second = p.frame(&["c".into()], "");
        assert!(second.contains("\r\x1b[2A") && second.contains("c\x1b[K\n\x1b[J"), "{second:?}");
        assert_eq!(p.drawn, 1);
    }
}

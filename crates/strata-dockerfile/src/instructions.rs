//! The typed instruction model: each syntax node becomes an [`Instruction`]
//! with its flags checked and decoded. Values stay as written (unexpanded);
//! variable expansion happens in [`crate::scope`] where the environment is
//! known.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::diagnostics::{closest, Diag, SourceFile, Span};
use crate::heredoc::Heredoc;
use crate::parser::{Node, KNOWN_INSTRUCTIONS};

/// A command in shell form (`RUN make`) or exec form (`RUN ["make"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOrExec {
    Shell(String),
    Exec(Vec<String>),
}

/// `KEY=value` from ENV, LABEL or ARG; `value` is as written (quotes kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One name declared by ARG, with its optional default as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// `RUN --mount=type=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(&self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// A decoded `--mount` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    pub target: Option<String>,
    pub source: Option<String>,
    /// Stage or image to mount from (bind, cache).
    pub from: Option<String>,
    /// Cache, secret or ssh id.
    pub id: Option<String>,
    pub readonly: bool,
    /// Cache sharing mode: `shared`, `private` or `locked`.
    pub sharing: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Secret/ssh must be provided.
    pub required: bool,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// Secret exposed as an environment variable.
    pub env: Option<String>,
}

/// HEALTHCHECK timing options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthOptions {
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// COPY and ADD share their shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopySpec {
    pub srcs: Vec<String>,
    pub dest: String,
    /// `--from`: a stage name, stage index or image (COPY only).
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    pub parents: bool,
    /// `--checksum` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
    /// `--unpack` (ADD only), when given explicitly.
    pub unpack: Option<bool>,
    /// Sources given as heredocs (`COPY <<EOF /dest`).
    pub heredocs: Vec<Heredoc>,
    /// The JSON form was used.
    pub json: bool,
}

/// What an instruction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    Arg(Vec<ArgDecl>),
    Env {
        vars: Vec<KeyValue>,
        legacy: bool,
    },
    Label {
        labels: Vec<KeyValue>,
        legacy: bool,
    },
    Run {
        cmd: ShellOrExec,
        mounts: Vec<Mount>,
        network: Option<String>,
        security: Option<String>,
        heredocs: Vec<Heredoc>,
    },
    Cmd(ShellOrExec),
    Entrypoint(ShellOrExec),
    Shell(Vec<String>),
    Copy(CopySpec),
    Add(CopySpec),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    /// `None` for `HEALTHCHECK NONE`.
    Healthcheck {
        test: Option<ShellOrExec>,
        options: HealthOptions,
    },
    Stopsignal(String),
    Onbuild(Box<Instruction>),
    Maintainer(String),
}

/// One instruction inside a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub kind: InstructionKind,
    /// The keyword as written (for casing checks and messages).
    pub keyword: String,
    pub span: Span,
    /// The syntax node it came from.
    pub node: Node,
}

impl Instruction {
    /// Uppercase instruction name (`RUN`, `COPY`, ...).
    pub fn name(&self) -> String {
        self.node.keyword.to_uppercase()
    }
}

/// Declared flags of one instruction, with typed access; reports unknown
/// and malformed flags.
pub(crate) struct Flags<'a> {
    values: BTreeMap<String, Vec<Option<String>>>,
    ctx: &'a Ctx<'a>,
}

/// Context for errors: the node, and the file.
pub(crate) struct Ctx<'a> {
    pub node: &'a Node,
    pub src: &'a SourceFile,
}

impl Ctx<'_> {
    pub fn err(&self, message: impl Into<String>) -> Diag {
        Diag::error("dockerfile::instruction", message).at(self.keyword_span()).in_file(self.src)
    }

    /// Point at `needle` within the instruction if it can be found, else at
    /// the keyword.
    pub fn err_at(&self, needle: &str, message: impl Into<String>) -> Diag {
        let text =
            &self.src.text[self.node.span.offset..self.node.span.offset + self.node.span.len];
        let span = match text.find(needle).filter(|_| !needle.is_empty()) {
            Some(i) => self.node.span.sub(self.node.span.offset + i, needle.len(), &self.src.text),
            None => self.keyword_span(),
        };
        Diag::error("dockerfile::instruction", message).at(span).in_file(self.src)
    }

    pub fn keyword_span(&self) -> Span {
        self.node.span.sub(
            self.node.span.offset,
            self.node.keyword_as_written.len(),
            &self.src.text,
        )
    }
}

impl<'a> Flags<'a> {
    /// Split `--name=value` flags and check them against `allowed`.
    pub fn parse(ctx: &'a Ctx<'a>, allowed: &[&str]) -> Result<Flags<'a>, Diag> {
        let mut values: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for f in &ctx.node.flags {
            let body = f.strip_prefix("--").unwrap_or(f);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            if !allowed.contains(&name.as_str()) {
                let instr = ctx.node.keyword.to_uppercase();
                let mut e = ctx.err_at(f, format!("unknown flag: --{name} for {instr}"));
                e = e.with_label("unknown flag");
                e = match closest(&name, allowed.iter().copied()) {
                    Some(s) => e.with_help(format!("did you mean --{s}?")),
                    None if allowed.is_empty() => e.with_help(format!("{instr} takes no flags")),
                    None => e.with_help(format!(
                        "{instr} accepts: {}",
                        allowed.iter().map(|a| format!("--{a}")).collect::<Vec<_>>().join(", ")
                    )),
                };
                return Err(e);
            }
            values.entry(name).or_default().push(value);
        }
        Ok(Flags { values, ctx })
    }

    /// A flag that takes a value, given at most once.
    pub fn string(&self, name: &str) -> Result<Option<String>, Diag> {
        let Some(vals) = self.values.get(name) else {
            return Ok(None);
        };
        if vals.len() > 1 {
            return Err(self
                .ctx
                .err_at(&format!("--{name}"), format!("duplicate flag specified: --{name}"))
                .with_help("give the flag only once"));
        }
        match &vals[0] {
            Some(v) => Ok(Some(v.clone())),
            None => Err(self
                .ctx
                .err_at(&format!("--{name}"), format!("missing a value on flag: --{name}"))
                .with_help(format!("write --{name}=<value>"))),
        }
    }

    /// A flag that takes a value and may repeat (`--mount`, `--exclude`).
    pub fn strings(&self, name: &str) -> Result<Vec<String>, Diag> {
        let mut out = Vec::new();
        for v in self.values.get(name).into_iter().flatten() {
            match v {
                Some(v) => out.push(v.clone()),
                None => {
                    return Err(self
                        .ctx
                        .err_at(&format!("--{name}"), format!("missing a value on flag: --{name}"))
                        .with_help(format!("write --{name}=<value>")))
                }
            }
        }
        Ok(out)
    }

    /// A boolean flag: `--link`, `--link=true`, `--link=false`.
    pub fn bool(&self, name: &str) -> Result<bool, Diag> {
        match self.values.get(name).and_then(|v| v.last()) {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(v)) => parse_bool(v).ok_or_else(|| {
                self.ctx
                    .err_at(
                        &format!("--{name}"),
                        format!("expecting boolean value for flag {name}, not: {v}"),
                    )
                    .with_help("use true or false")
            }),
        }
    }

    pub fn optional_bool(&self, name: &str) -> Result<Option<bool>, Diag> {
        if self.values.contains_key(name) {
            self.bool(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A HEALTHCHECK duration: 0, or at least 1ms as Docker requires.
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, Diag> {
        let Some(v) = self.string(name)? else {
            return Ok(None);
        };
        let d = parse_go_duration(&v).ok_or_else(|| {
            self.ctx
                .err_at(&v, format!("invalid duration for --{name}: {v:?}"))
                .with_help("use a Go duration such as 30s, 1m30s or 500ms")
        })?;
        if !d.is_zero() && d < Duration::from_millis(1) {
            return Err(self
                .ctx
                .err_at(&v, format!("--{name} {v:?} cannot be less than 1ms"))
                .with_help("use 0 for the default, or at least 1ms"));
        }
        Ok(Some(d))
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => None,
    }
}

/// Parse Go's `time.ParseDuration` syntax (`1h2m3.5s`, `300ms`, `0`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() || rest.starts_with('-') {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    if !total.is_finite() || total > 1e15 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

fn shell_or_exec(node: &Node) -> ShellOrExec {
    if node.json {
        ShellOrExec::Exec(node.args.clone())
    } else {
        ShellOrExec::Shell(node.args.first().cloned().unwrap_or_default())
    }
}

fn key_values(node: &Node) -> (Vec<KeyValue>, bool) {
    let legacy = node.args.get(2).is_some_and(|s| s.is_empty());
    let kv = node
        .args
        .chunks(3)
        .filter(|c| c.len() >= 2)
        .map(|c| KeyValue { key: c[0].clone(), value: c[1].clone() })
        .collect();
    (kv, legacy)
}

/// Split a `--mount` value: comma-separated `key=value` fields, where a
/// field may be double-quoted as in CSV.
fn split_csv(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

const MOUNT_KEYS: &[&str] = &[
    "type",
    "target",
    "dst",
    "destination",
    "source",
    "src",
    "from",
    "id",
    "readonly",
    "ro",
    "rw",
    "readwrite",
    "sharing",
    "mode",
    "uid",
    "gid",
    "required",
    "size",
    "env",
];

fn parse_mount(ctx: &Ctx<'_>, value: &str) -> Result<Mount, Diag> {
    let mut m = Mount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        id: None,
        readonly: false,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    let fields = split_csv(value);
    // `type` decides the defaults, so read it first.
    for f in &fields {
        if let Some(t) = f.trim().strip_prefix("type=") {
            m.kind = match t.to_ascii_lowercase().as_str() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                other => {
                    let mut e = ctx.err_at(t, format!("unsupported mount type {other:?}"));
                    if let Some(s) = closest(other, ["bind", "cache", "tmpfs", "secret", "ssh"]) {
                        e = e.with_help(format!("did you mean type={s}?"));
                    }
                    return Err(e);
                }
            };
        }
    }
    if m.kind == MountType::Bind {
        m.readonly = true;
    }
    let num = |k: &str, v: &str, radix: u32| -> Result<u32, Diag> {
        u32::from_str_radix(v, radix).map_err(|_| {
            ctx.err_at(v, format!("invalid value {v:?} for mount option {k}")).with_help(
                if radix == 8 { "use an octal mode such as 0755" } else { "use a number" },
            )
        })
    };
    for f in fields {
        let f = f.trim();
        if f.is_empty() {
            continue;
        }
        let (key, val) = match f.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (f.to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| -> Result<String, Diag> {
            v.map(str::to_string).ok_or_else(|| {
                ctx.err_at(f, format!("mount option {key} needs a value"))
                    .with_help(format!("write {key}=<value>"))
            })
        };
        let flag = |v: Option<&str>| -> Result<bool, Diag> {
            match v {
                None => Ok(true),
                Some(v) => parse_bool(v).ok_or_else(|| {
                    ctx.err_at(v, format!("invalid boolean {v:?} for mount option {key}"))
                        .with_help("use true or false")
                }),
            }
        };
        match key.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => m.target = Some(need(val)?),
            "source" | "src" => m.source = Some(need(val)?),
            "from" => m.from = Some(need(val)?),
            "id" => m.id = Some(need(val)?),
            "readonly" | "ro" => m.readonly = flag(val)?,
            "rw" | "readwrite" => m.readonly = !flag(val)?,
            "sharing" => {
                let v = need(val)?;
                if !matches!(v.as_str(), "shared" | "private" | "locked") {
                    return Err(ctx
                        .err_at(&v, format!("unsupported sharing value {v:?}"))
                        .with_help("use shared, private or locked"));
                }
                m.sharing = Some(v);
            }
            "mode" => m.mode = Some(num("mode", &need(val)?, 8)?),
            "uid" => m.uid = Some(num("uid", &need(val)?, 10)?),
            "gid" => m.gid = Some(num("gid", &need(val)?, 10)?),
            "required" => m.required = flag(val)?,
            "size" => {
                let v = need(val)?;
                m.size = Some(parse_size(&v).ok_or_else(|| {
                    ctx.err_at(&v, format!("invalid size {v:?} for tmpfs mount"))
                        .with_help("use bytes or a unit such as 64m or 1g")
                })?);
            }
            "env" => m.env = Some(need(val)?),
            other => {
                let mut e = ctx.err_at(f, format!("unexpected key '{other}' in '{f}'"));
                if let Some(s) = closest(other, MOUNT_KEYS.iter().copied()) {
                    e = e.with_help(format!("did you mean {s}=?"));
                }
                return Err(e);
            }
        }
    }
    // Bind mounts may omit the target (BuildKit accepts `--mount=from=x,src=/y`);
    // a cache or tmpfs mount is useless without one.
    if m.target.is_none() && matches!(m.kind, MountType::Cache | MountType::Tmpfs) {
        return Err(ctx
            .err_at(value, format!("mount type={} requires a target", m.kind.as_str()))
            .with_help("add target=<path in the container>"));
    }
    Ok(m)
}

fn parse_size(v: &str) -> Option<u64> {
    let lower = v.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let n: u64 = digits.parse().ok()?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mul)
}

fn copy_spec(ctx: &Ctx<'_>, is_add: bool) -> Result<CopySpec, Diag> {
    let node = ctx.node;
    let allowed: &[&str] = if is_add {
        &["chown", "chmod", "link", "exclude", "parents", "checksum", "keep-git-dir", "unpack"]
    } else {
        &["from", "chown", "chmod", "link", "exclude", "parents"]
    };
    let flags = Flags::parse(ctx, allowed)?;
    let name = node.keyword.to_uppercase();
    // Heredoc words (`<<EOF`) count as sources here and are dropped below.
    let mut paths: Vec<String> = node.args.clone();
    if paths.len() < 2 {
        return Err(ctx
            .err(format!(
                "{name} requires at least two arguments, but only {} provided",
                paths.len()
            ))
            .with_label("needs a source and a destination")
            .with_help(format!("write `{name} <src>... <dest>`")));
    }
    let dest = paths.pop().unwrap_or_default();
    if !node.heredocs.is_empty() {
        paths.retain(|p| crate::heredoc::parse_heredoc_word(p).ok().flatten().is_none());
    }
    Ok(CopySpec {
        srcs: paths,
        dest,
        from: if is_add { None } else { flags.string("from")? },
        chown: flags.string("chown")?,
        chmod: flags.string("chmod")?,
        link: flags.bool("link")?,
        exclude: flags.strings("exclude")?,
        parents: flags.bool("parents")?,
        checksum: if is_add { flags.string("checksum")? } else { None },
        keep_git_dir: is_add && flags.bool("keep-git-dir")?,
        unpack: if is_add { flags.optional_bool("unpack")? } else { None },
        heredocs: node.heredocs.clone(),
        json: node.json,
    })
}

/// Convert one syntax node. `FROM` is handled by the stage builder and is
/// rejected here.
pub(crate) fn instruction_from_node(node: &Node, src: &SourceFile) -> Result<Instruction, Diag> {
    let ctx = Ctx { node, src };
    let name = node.keyword.to_uppercase();
    let need_args = |min: usize| -> Result<(), Diag> {
        if node.args.len() < min || node.args.iter().all(|a| a.is_empty()) && min > 0 {
            return Err(ctx
                .err(format!(
                    "{name} requires at least {min} argument{}",
                    if min == 1 { "" } else { "s" }
                ))
                .with_label("missing arguments"));
        }
        Ok(())
    };
    let no_flags = || Flags::parse(&ctx, &[]).map(|_| ());
    let kind = match node.keyword.as_str() {
        "arg" => {
            no_flags()?;
            need_args(1)?;
            let mut decls = Vec::new();
            for a in &node.args {
                let (n, d) = match a.split_once('=') {
                    Some((n, d)) => (n.to_string(), Some(d.to_string())),
                    None => (a.clone(), None),
                };
                if n.is_empty() {
                    return Err(ctx.err_at(a, format!("ARG names can not be blank: {a:?}")));
                }
                decls.push(ArgDecl { name: n, default: d });
            }
            InstructionKind::Arg(decls)
        }
        "env" | "label" => {
            no_flags()?;
            need_args(2)?;
            let (kv, legacy) = key_values(node);
            if let Some(blank) = kv.iter().find(|k| k.key.is_empty()) {
                return Err(ctx.err_at(
                    &format!("={}", blank.value),
                    format!("{name} names can not be blank"),
                ));
            }
            if node.keyword == "env" {
                InstructionKind::Env { vars: kv, legacy }
            } else {
                InstructionKind::Label { labels: kv, legacy }
            }
        }
        "run" => {
            let flags = Flags::parse(&ctx, &["mount", "network", "security", "device"])?;
            need_args(1)?;
            let mounts = flags
                .strings("mount")?
                .iter()
                .map(|m| parse_mount(&ctx, m))
                .collect::<Result<Vec<_>, _>>()?;
            let network = flags.string("network")?;
            if let Some(n) = &network {
                if !matches!(n.as_str(), "default" | "none" | "host") {
                    let mut e = ctx.err_at(n, format!("unsupported network mode {n:?}"));
                    if let Some(s) = closest(n, ["default", "none", "host"]) {
                        e = e.with_help(format!("did you mean --network={s}?"));
                    }
                    return Err(e);
                }
            }
            let security = flags.string("security")?;
            if let Some(s) = &security {
                if !matches!(s.as_str(), "sandbox" | "insecure") {
                    return Err(ctx
                        .err_at(s, format!("unsupported security mode {s:?}"))
                        .with_help("use --security=sandbox or --security=insecure"));
                }
            }
            InstructionKind::Run {
                cmd: shell_or_exec(node),
                mounts,
                network,
                security,
                heredocs: node.heredocs.clone(),
            }
        }
        "cmd" => {
            no_flags()?;
            InstructionKind::Cmd(shell_or_exec(node))
        }
        "entrypoint" => {
            no_flags()?;
            InstructionKind::Entrypoint(shell_or_exec(node))
        }
        "shell" => {
            no_flags()?;
            if !node.json {
                return Err(ctx
                    .err("SHELL requires the arguments to be in JSON form")
                    .with_help("write SHELL [\"/bin/bash\", \"-c\"]"));
            }
            need_args(1)?;
            InstructionKind::Shell(node.args.clone())
        }
        "copy" => InstructionKind::Copy(copy_spec(&ctx, false)?),
        "add" => InstructionKind::Add(copy_spec(&ctx, true)?),
        "workdir" => {
            no_flags()?;
            need_args(1)?;
            InstructionKind::Workdir(node.args[0].clone())
        }
        "user" => {
            no_flags()?;
            need_args(1)?;
            InstructionKind::User(node.args[0].clone())
        }
        "expose" => {
            no_flags()?;
            need_args(1)?;
            InstructionKind::Expose(node.args.clone())
        }
        "volume" => {
            no_flags()?;
            need_args(1)?;
            if node.args.iter().any(|a| a.trim().is_empty()) {
                return Err(ctx.err("VOLUME specified can not be an empty string"));
            }
            InstructionKind::Volume(node.args.clone())
        }
        "stopsignal" => {
            no_flags()?;
            need_args(1)?;
            InstructionKind::Stopsignal(node.args[0].clone())
        }
        "maintainer" => {
            no_flags()?;
            need_args(1)?;
            InstructionKind::Maintainer(node.args[0].clone())
        }
        "healthcheck" => {
            let flags = Flags::parse(
                &ctx,
                &["interval", "timeout", "start-period", "start-interval", "retries"],
            )?;
            need_args(1)?;
            let typ = node.args[0].to_uppercase();
            let test = match typ.as_str() {
                "NONE" => {
                    if node.args.len() > 1 {
                        return Err(ctx.err("HEALTHCHECK NONE takes no arguments"));
                    }
                    if !node.flags.is_empty() {
                        return Err(ctx.err("HEALTHCHECK NONE takes no flags"));
                    }
                    None
                }
                "CMD" => {
                    if node.args.len() < 2 {
                        return Err(ctx
                            .err("Missing command after HEALTHCHECK CMD")
                            .with_help("write HEALTHCHECK CMD <command>"));
                    }
                    Some(if node.json {
                        ShellOrExec::Exec(node.args[1..].to_vec())
                    } else {
                        ShellOrExec::Shell(node.args[1].clone())
                    })
                }
                other => {
                    let mut e =
                        ctx.err_at(&node.args[0], format!("Unknown type {other:?} in HEALTHCHECK"));
                    e = e.with_help(match closest(other, ["CMD", "NONE"]) {
                        Some(s) => format!("did you mean {s}?"),
                        None => "use HEALTHCHECK CMD <command> or HEALTHCHECK NONE".to_string(),
                    });
                    return Err(e);
                }
            };
            let retries = match flags.string("retries")? {
                None => None,
                Some(r) => Some(r.parse::<u32>().map_err(|_| {
                    ctx.err_at(&r, format!("invalid value for --retries: {r:?}"))
                        .with_help("use a whole number")
                })?),
            };
            InstructionKind::Healthcheck {
                test,
                options: HealthOptions {
                    interval: flags.duration("interval")?,
                    timeout: flags.duration("timeout")?,
                    start_period: flags.duration("start-period")?,
                    start_interval: flags.duration("start-interval")?,
                    retries,
                },
            }
        }
        "onbuild" => {
            no_flags()?;
            let Some(sub) = &node.sub else {
                return Err(ctx
                    .err("ONBUILD requires an instruction")
                    .with_help("write ONBUILD <instruction>"));
            };
            match sub.keyword.as_str() {
                "onbuild" => {
                    return Err(ctx.err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"))
                }
                "from" | "maintainer" => {
                    return Err(ctx.err(format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        sub.keyword.to_uppercase()
                    )))
                }
                _ => {}
            }
            let inner = instruction_from_node(sub, src)?;
            InstructionKind::Onbuild(Box::new(inner))
        }
        "from" => {
            return Err(ctx.err("internal: FROM is handled by the stage builder"));
        }
        _ => return Err(unknown_instruction(&ctx)),
    };
    Ok(Instruction {
        kind,
        keyword: node.keyword_as_written.clone(),
        span: node.span,
        node: node.clone(),
    })
}

pub(crate) fn unknown_instruction(ctx: &Ctx<'_>) -> Diag {
    let word = &ctx.node.keyword_as_written;
    let e =
        ctx.err(format!("unknown instruction: {word}")).with_label("not a Dockerfile instruction");
    match closest(word, KNOWN_INSTRUCTIONS.iter().copied()) {
        Some(s) => e.with_help(format!("did you mean {s}?")),
        None => e.with_help(format!("valid instructions are {}", KNOWN_INSTRUCTIONS.join(", "))),
    }
}

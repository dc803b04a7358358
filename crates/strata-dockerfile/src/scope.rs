//! Variable scoping as Docker defines it, and everything that needs it:
//! FROM expansion with global ARGs, stage bases and dependencies, the
//! environment each instruction sees, build-arg consumption, and the
//! undefined-variable checks.
//!
//! Rules (docs.docker.com, "ARG" and "Scope"):
//! - ARGs before the first FROM are in the global scope: usable in FROM
//!   lines, and in a stage only after `ARG NAME` re-declares them there.
//! - `--build-arg NAME=v` overrides the default of a declared ARG.
//! - ENV wins over an ARG of the same name.
//! - Platform ARGs (`TARGETPLATFORM`, `BUILDARCH`, ...) are predefined in
//!   the global scope and get values in a stage once declared there.
//! - Proxy ARGs (`HTTP_PROXY`, ...) need no declaration.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::diagnostics::{closest, Diag, Span};
use crate::instructions::InstructionKind;
use crate::model::Dockerfile;
use crate::shell::{Env, ShellLex};

/// Proxy variables BuildKit accepts as build args without an ARG.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Platform variables BuildKit predefines.
pub const PLATFORM_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// Other build args BuildKit reads itself (never "unused").
const BUILTIN_ARGS: &[&str] = &[
    "BUILDKIT_INLINE_CACHE",
    "BUILDKIT_MULTI_PLATFORM",
    "BUILDKIT_SANDBOX_HOSTNAME",
    "BUILDKIT_SYNTAX",
    "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
    "BUILDKIT_CACHE_MOUNT_NS",
    "BUILDKIT_DOCKERFILE_CHECK",
    "SOURCE_DATE_EPOCH",
];

/// Variables almost every base image defines; we cannot see base images'
/// configs here, so using them is not reported as undefined.
const COMMON_IMAGE_ENV: &[&str] =
    &["PATH", "HOME", "HOSTNAME", "TERM", "LANG", "LC_ALL", "USER", "SHELL", "PWD"];

/// A platform such as `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on, in OCI spelling.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "arm" => "arm",
            other => other,
        };
        Platform { os: "linux".to_string(), arch: arch.to_string(), variant: None }
    }

    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut it = s.split('/');
        let os = it.next().filter(|s| !s.is_empty())?.to_string();
        let arch = it.next().filter(|s| !s.is_empty())?.to_string();
        let variant = it.next().map(str::to_string);
        if it.next().is_some() {
            return None;
        }
        Some(Platform { os, arch, variant })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Inputs that decide variable values.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--build-arg NAME=value`.
    pub build_args: BTreeMap<String, String>,
    pub build_platform: Platform,
    pub target_platform: Platform,
    /// ENV of base images, keyed by the (expanded) FROM reference, when the
    /// caller knows them. They seed the stage environment, and make the
    /// undefined-variable check exact for stages built on those images.
    pub image_env: BTreeMap<String, Vec<(String, String)>>,
    /// ENV set by the ONBUILD triggers a stage fires, by stage index: (name, value as
    /// written), applied in order over what the stage inherits, before its own
    /// instructions.
    pub trigger_env: BTreeMap<usize, Vec<(String, String)>>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            build_args: BTreeMap::new(),
            build_platform: Platform::host(),
            target_platform: Platform::host(),
            image_env: BTreeMap::new(),
            trigger_env: BTreeMap::new(),
        }
    }
}

impl BuildOptions {
    pub fn with_build_args(build_args: &BTreeMap<String, String>) -> Self {
        BuildOptions { build_args: build_args.clone(), ..BuildOptions::default() }
    }

    fn platform_values(&self) -> Vec<(String, String)> {
        let (b, t) = (&self.build_platform, &self.target_platform);
        vec![
            ("BUILDPLATFORM".into(), b.to_string()),
            ("BUILDOS".into(), b.os.clone()),
            ("BUILDARCH".into(), b.arch.clone()),
            ("BUILDVARIANT".into(), b.variant.clone().unwrap_or_default()),
            ("TARGETPLATFORM".into(), t.to_string()),
            ("TARGETOS".into(), t.os.clone()),
            ("TARGETARCH".into(), t.arch.clone()),
            ("TARGETVARIANT".into(), t.variant.clone().unwrap_or_default()),
        ]
    }
}

/// What a stage builds on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// Another stage of this Dockerfile.
    Stage(usize),
    /// `scratch`: an empty filesystem.
    Scratch,
    /// An image reference (expanded).
    Image(String),
}

/// Where a `COPY --from` / `--mount from=` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRef {
    Stage(usize),
    Image(String),
}

/// One global or stage ARG as the outline shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgInfo {
    pub name: String,
    /// Effective value: the build arg if given, else the expanded default.
    pub value: Option<String>,
    pub description: Option<String>,
    pub span: Span,
    pub global: bool,
    /// Variables its default refers to (`ARG IMAGE=golang:${GO_VERSION}`):
    /// using this ARG also uses those.
    pub deps: BTreeSet<String>,
}

/// A secret or ssh mount used by a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountUse {
    pub name: String,
    pub required: bool,
    pub span: Span,
}

/// What scoping found out about one stage.
#[derive(Debug, Clone)]
pub struct StageScope {
    /// The expanded FROM argument.
    pub base_expanded: String,
    pub base: BaseRef,
    /// The expanded `--platform`, if any.
    pub platform: Option<String>,
    /// Stages this one needs (base, COPY --from, RUN --mount from=), in
    /// order of first use.
    pub deps: Vec<usize>,
    /// Stage ARGs in declaration order, with their values.
    pub args: Vec<ArgInfo>,
    /// Global ARG names used by this stage's FROM line.
    pub global_args_used: BTreeSet<String>,
    /// Every variable at the end of the stage (ENV over ARG), sorted.
    pub env: Vec<(String, String)>,
    /// Only the ENV variables at the end of the stage: what a stage built
    /// on this one inherits.
    pub env_vars: Vec<(String, String)>,
    /// Every ARG/ENV assignment in order (inherited ENV first).
    pub log: Vec<(EnvKind, String, String)>,
    /// For each instruction, how much of `log` it sees.
    pub marks: Vec<usize>,
    /// How much of `log` the inherited environment is (before ONBUILD triggers' ENV).
    pub inherited_mark: usize,
    pub secrets: Vec<MountUse>,
    pub ssh: Vec<MountUse>,
    /// Names consumed from `--build-arg`.
    pub consumed_build_args: BTreeSet<String>,
    /// Whether the base's environment is fully known (scratch, a stage on a
    /// known base, or an image whose ENV was supplied).
    pub env_known: bool,
}

/// Scoping for a whole Dockerfile.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Global ARGs with their values.
    pub global_args: Vec<ArgInfo>,
    pub stages: Vec<StageScope>,
    /// UndefinedVar / UndefinedArgInFrom warnings, and bad references.
    pub warnings: Vec<Diag>,
}

impl Scope {
    /// Build args that no needed stage (and no global ARG) consumed.
    pub fn unused_build_args(&self, opts: &BuildOptions, needed: &[usize]) -> Vec<String> {
        let mut consumed: BTreeSet<&str> = BTreeSet::new();
        for i in needed {
            consumed.extend(self.stages[*i].consumed_build_args.iter().map(String::as_str));
            consumed.extend(self.stages[*i].global_args_used.iter().map(String::as_str));
        }
        opts.build_args
            .keys()
            .filter(|k| {
                !consumed.contains(k.as_str())
                    && !PROXY_ARGS.contains(&k.as_str())
                    && !BUILTIN_ARGS.contains(&k.as_str())
            })
            .cloned()
            .collect()
    }
}

fn lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

struct Expander<'a> {
    df: &'a Dockerfile,
    lex: ShellLex,
    warnings: Vec<Diag>,
}

impl Expander<'_> {
    /// Expand one word; on failure report it and keep the text as written.
    fn word(
        &mut self,
        text: &str,
        env: &dyn Env,
        span: Span,
    ) -> (String, BTreeSet<String>, BTreeSet<String>) {
        match self.lex.process_word_with_matches(text, env) {
            Ok(x) => (x.result, x.matched, x.unmatched),
            Err(e) => {
                self.warnings.push(
                    Diag::error("dockerfile::expand", format!("failed to expand {text:?}: {e}"))
                        .at(self.sub_span(span, text))
                        .in_file(&self.df.source),
                );
                (text.to_string(), BTreeSet::new(), BTreeSet::new())
            }
        }
    }

    fn sub_span(&self, span: Span, needle: &str) -> Span {
        let text = &self.df.source.text[span.offset..span.offset + span.len];
        match text.find(needle).filter(|_| !needle.is_empty()) {
            Some(i) => span.sub(span.offset + i, needle.len(), &self.df.source.text),
            None => span,
        }
    }
}

/// Work out the scope of every stage.
pub fn analyze(df: &Dockerfile, opts: &BuildOptions) -> Scope {
    let mut ex = Expander { df, lex: ShellLex::new(df.escape), warnings: Vec::new() };
    let platform_env = opts.platform_values();

    // Global scope: platform args, then global ARGs in order.
    let mut global_env: Vec<(String, String)> = platform_env.clone();
    let mut global_args = Vec::new();
    for g in &df.global_args {
        let mut deps = BTreeSet::new();
        let value = match opts.build_args.get(&g.decl.name) {
            Some(v) => Some(v.clone()),
            None => g.decl.default.as_ref().map(|d| {
                let (v, matched, _) = ex.word(d, &global_env, g.span);
                deps = matched;
                v
            }),
        };
        if let Some(v) = &value {
            global_env.push((g.decl.name.clone(), v.clone()));
        }
        global_args.push(ArgInfo {
            name: g.decl.name.clone(),
            value,
            description: g.description.clone(),
            span: g.span,
            global: true,
            deps,
        });
    }
    let global_declared: BTreeSet<&str> =
        df.global_args.iter().map(|g| g.decl.name.as_str()).collect();

    let mut stages: Vec<StageScope> = Vec::new();
    for stage in &df.stages {
        let from_span = stage.span;
        let (base_expanded, _, unmatched) = ex.word(&stage.base, &global_env, from_span);
        let mut global_args_used: BTreeSet<String> = BTreeSet::new();
        let mut from_words = vec![stage.base.clone()];
        from_words.extend(stage.platform.clone());
        for w in &from_words {
            if let Ok(x) = ShellLex::new(df.escape).process_word_with_matches(w, &global_env) {
                global_args_used
                    .extend(x.matched.into_iter().filter(|m| global_declared.contains(m.as_str())));
            }
        }
        for name in unmatched {
            if global_declared.contains(name.as_str()) || PLATFORM_ARGS.contains(&name.as_str()) {
                // Declared without a value: legal, just empty.
                global_args_used.insert(name);
                continue;
            }
            let mut msg = format!("FROM argument '{name}' is not declared");
            let suggestion = closest(&name, global_declared.iter().copied());
            if let Some(s) = suggestion {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            let mut d = Diag::warning("UndefinedArgInFrom", msg)
                .with_url("https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/")
                .with_label("not declared before FROM")
                .at(ex.sub_span(from_span, &name))
                .in_file(&df.source);
            d = d.with_help(format!("declare `ARG {name}` above the first FROM"));
            ex.warnings.push(d);
        }
        let platform = stage.platform.as_ref().map(|p| ex.word(p, &global_env, from_span).0);
        // As in BuildKit, `FROM <name>` refers to a stage only if one with
        // exactly that name was defined earlier; otherwise it is an image.
        let base = if base_expanded == "scratch" {
            BaseRef::Scratch
        } else if let Some(i) = df.stages[..stage.index]
            .iter()
            .rev()
            .find(|s| s.name.as_deref() == Some(base_expanded.as_str()))
            .map(|s| s.index)
        {
            BaseRef::Stage(i)
        } else {
            if base_expanded.is_empty() {
                ex.warnings.push(
                    Diag::error(
                        "dockerfile::blank-base",
                        format!("base name ({}) should not be blank", stage.base),
                    )
                    .at(ex.sub_span(from_span, &stage.base))
                    .in_file(&df.source)
                    .with_label("expands to nothing")
                    .with_help("give the ARG a default or pass --build-arg"),
                );
            }
            BaseRef::Image(base_expanded.clone())
        };
        let mut deps = Vec::new();
        // A stage inherits the environment (not the ARGs) of its base stage,
        // or the base image's ENV when the caller supplied it.
        let (inherited, env_known): (Vec<(String, String)>, bool) = match &base {
            BaseRef::Stage(i) => {
                deps.push(*i);
                match stages.get(*i) {
                    Some(s) => (s.env_vars.clone(), s.env_known),
                    None => (Vec::new(), false),
                }
            }
            BaseRef::Scratch => (Vec::new(), true),
            BaseRef::Image(r) => match opts.image_env.get(r) {
                Some(e) => (e.clone(), true),
                None => (Vec::new(), false),
            },
        };
        let mut scope_env = StageEnv::default();
        for (k, v) in inherited {
            scope_env.set(EnvKind::Env, k, v);
        }
        let inherited_mark = scope_env.log.len();
        for (k, raw) in opts.trigger_env.get(&stage.index).into_iter().flatten() {
            let (v, _, _) = ex.word(raw, &scope_env, from_span);
            scope_env.set(EnvKind::Env, k.clone(), v);
        }
        let mut arg_infos = Vec::new();
        let mut consumed = BTreeSet::new();
        let mut marks = Vec::with_capacity(stage.instructions.len());
        let mut secrets = Vec::new();
        let mut ssh = Vec::new();
        let mut defined: BTreeSet<String> = scope_env.env.keys().cloned().collect();

        for instr in &stage.instructions {
            marks.push(scope_env.log.len());
            let span = instr.span;
            let mut used: Vec<(String, BTreeSet<String>)> = Vec::new();
            let mut expand = |ex: &mut Expander, env: &StageEnv, text: &str| -> String {
                let (v, _, unmatched) = ex.word(text, env, span);
                used.push((text.to_string(), unmatched));
                v
            };
            match &instr.kind {
                InstructionKind::Arg(decls) => {
                    for d in decls {
                        if opts.build_args.contains_key(&d.name) {
                            consumed.insert(d.name.clone());
                        }
                        let value = if let Some(v) = opts.build_args.get(&d.name) {
                            Some(v.clone())
                        } else if let Some(def) = &d.default {
                            Some(expand(&mut ex, &scope_env, def))
                        } else if let Some(v) = lookup(&global_env, &d.name)
                            .filter(|_| global_declared.contains(d.name.as_str()))
                        {
                            Some(v.to_string())
                        } else {
                            platform_env.iter().find(|(k, _)| *k == d.name).map(|(_, v)| v.clone())
                        };
                        defined.insert(d.name.clone());
                        if let Some(v) = &value {
                            // An ENV of the same name still wins (StageEnv::get).
                            scope_env.set(EnvKind::Arg, d.name.clone(), v.clone());
                        }
                        let description = crate::model::description(&instr.node, &d.name);
                        arg_infos.push(ArgInfo {
                            name: d.name.clone(),
                            value,
                            description,
                            span,
                            global: false,
                            deps: BTreeSet::new(),
                        });
                    }
                }
                InstructionKind::Env { vars, .. } => {
                    for kv in vars {
                        let v = expand(&mut ex, &scope_env, &kv.value);
                        scope_env.set(EnvKind::Env, kv.key.clone(), v);
                        defined.insert(kv.key.clone());
                    }
                }
                InstructionKind::Label { labels, .. } => {
                    for kv in labels {
                        expand(&mut ex, &scope_env, &kv.key);
                        expand(&mut ex, &scope_env, &kv.value);
                    }
                }
                InstructionKind::Copy(c) | InstructionKind::Add(c) => {
                    for s in c.srcs.iter().chain([&c.dest]) {
                        expand(&mut ex, &scope_env, s);
                    }
                    for o in [&c.chown, &c.chmod].into_iter().flatten() {
                        expand(&mut ex, &scope_env, o);
                    }
                    if let Some(from) = &c.from {
                        // BuildKit does not expand --from at all.
                        let literal =
                            ShellLex::new(df.escape).process_word(from, &crate::shell::NoEnv);
                        if literal.as_deref() != Ok(from.as_str()) {
                            ex.warnings.push(
                                Diag::error(
                                    "dockerfile::from-expansion",
                                    "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
                                )
                                .at(ex.sub_span(span, from))
                                .in_file(&df.source)
                                .with_label("contains a variable or quotes")
                                .with_help(format!("add `FROM {from} AS <name>` and use --from=<name>")),
                            );
                        } else if let Some(FromRef::Stage(i)) =
                            resolve_from(df, from, span, &mut ex.warnings)
                        {
                            if !deps.contains(&i) {
                                deps.push(i);
                            }
                        }
                    }
                }
                InstructionKind::Run { mounts, .. } => {
                    for m in mounts {
                        if let Some(from) = &m.from {
                            let v = expand(&mut ex, &scope_env, from);
                            if let Some(FromRef::Stage(i)) =
                                resolve_from(df, &v, span, &mut ex.warnings)
                            {
                                if !deps.contains(&i) {
                                    deps.push(i);
                                }
                            }
                        }
                        // Mount options are expanded like other words.
                        let id = m.id.as_ref().map(|v| expand(&mut ex, &scope_env, v));
                        let target = m.target.as_ref().map(|v| expand(&mut ex, &scope_env, v));
                        if let Some(src) = &m.source {
                            expand(&mut ex, &scope_env, src);
                        }
                        // Secrets without an id are named after the target file.
                        let use_of = |default: &str| MountUse {
                            name: id
                                .clone()
                                .or_else(|| {
                                    target
                                        .as_ref()
                                        .and_then(|t| t.rsplit('/').next().map(str::to_string))
                                })
                                .unwrap_or_else(|| default.to_string()),
                            required: m.required,
                            span,
                        };
                        match m.kind {
                            crate::instructions::MountType::Secret => secrets.push(use_of("")),
                            crate::instructions::MountType::Ssh => ssh.push(use_of("default")),
                            _ => {}
                        }
                    }
                }
                InstructionKind::Workdir(w)
                | InstructionKind::User(w)
                | InstructionKind::Stopsignal(w) => {
                    expand(&mut ex, &scope_env, w);
                }
                InstructionKind::Expose(v) | InstructionKind::Volume(v) => {
                    for w in v {
                        expand(&mut ex, &scope_env, w);
                    }
                }
                InstructionKind::Cmd(_)
                | InstructionKind::Entrypoint(_)
                | InstructionKind::Shell(_)
                | InstructionKind::Healthcheck { .. }
                | InstructionKind::Onbuild(_)
                | InstructionKind::Maintainer(_) => {}
            }
            for (text, unmatched) in used {
                for name in unmatched {
                    let known: Vec<&str> = defined
                        .iter()
                        .map(String::as_str)
                        .chain(global_declared.iter().copied())
                        .collect();
                    // Without the base image's ENV we cannot tell a typo from a
                    // variable the image defines: then only report names that
                    // are global ARGs (a missing re-declaration) or look like
                    // a typo of a defined name.
                    let likely_mistake = env_known
                        || global_declared.contains(name.as_str())
                        || closest(&name, known.iter().copied()).is_some();
                    if defined.contains(&name)
                        || !likely_mistake
                        || PROXY_ARGS.contains(&name.as_str())
                        || (!env_known && COMMON_IMAGE_ENV.contains(&name.as_str()))
                        || name.chars().next().is_some_and(|c| c.is_ascii_digit())
                        || name.len() == 1 && !name.chars().all(|c| c.is_alphabetic() || c == '_')
                    {
                        continue;
                    }
                    let mut msg = format!("Usage of undefined variable '${name}'");
                    if let Some(s) = closest(&name, known.iter().copied()) {
                        msg.push_str(&format!(" (did you mean ${s}?)"));
                    }
                    let mut d = Diag::warning("UndefinedVar", msg)
                        .with_url("https://docs.docker.com/go/dockerfile/rule/undefined-var/")
                        .with_label("not defined by ARG or ENV in this stage")
                        .at(ex.sub_span(ex.sub_span(span, &text), &name))
                        .in_file(&df.source);
                    if global_declared.contains(name.as_str()) {
                        d = d.with_help(format!(
                            "`{name}` is a global ARG; declare `ARG {name}` inside this stage to use it here"
                        ));
                    }
                    ex.warnings.push(d);
                }
            }
        }
        stages.push(StageScope {
            base_expanded,
            base,
            platform,
            deps,
            args: arg_infos,
            global_args_used,
            env: scope_env.resolved(),
            env_vars: scope_env.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            log: scope_env.log,
            marks,
            inherited_mark,
            secrets,
            ssh,
            consumed_build_args: consumed,
            env_known,
        });
    }
    Scope { global_args, stages, warnings: ex.warnings }
}

/// Whether a value came from ARG or ENV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    Arg,
    Env,
}

/// The variables of a stage while it is walked: ARG values and ENV values
/// kept apart because ENV wins over ARG whatever the order, plus a log of
/// every change so the environment at any instruction can be rebuilt
/// without storing a copy per instruction.
#[derive(Debug, Clone, Default)]
struct StageEnv {
    args: HashMap<String, String>,
    env: BTreeMap<String, String>,
    log: Vec<(EnvKind, String, String)>,
}

impl StageEnv {
    fn set(&mut self, kind: EnvKind, name: String, value: String) {
        match kind {
            EnvKind::Arg => self.args.insert(name.clone(), value.clone()),
            EnvKind::Env => self.env.insert(name.clone(), value.clone()),
        };
        self.log.push((kind, name, value));
    }

    /// Every variable with its effective value, sorted by name.
    fn resolved(&self) -> Vec<(String, String)> {
        let mut all: BTreeMap<&str, &str> =
            self.args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        all.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

impl Env for StageEnv {
    fn lookup(&self, name: &str) -> Option<String> {
        self.env.get(name).or_else(|| self.args.get(name)).cloned()
    }
}

impl StageScope {
    /// The variables instruction `i` of the stage sees (ENV over ARG),
    /// sorted by name. For RUN these are the build-time environment.
    pub fn env_at(&self, i: usize) -> Vec<(String, String)> {
        self.env_upto(self.marks.get(i).copied().unwrap_or(self.log.len()))
    }

    /// What the stage's fired ONBUILD triggers see after the first `assignments` of their
    /// ENV assignments (0: what the stage inherits from its base).
    pub fn env_after_triggers(&self, assignments: usize) -> Vec<(String, String)> {
        self.env_upto((self.inherited_mark + assignments).min(self.log.len()))
    }

    fn env_upto(&self, end: usize) -> Vec<(String, String)> {
        let mut replay = StageEnv::default();
        for (kind, k, v) in &self.log[..end] {
            match kind {
                EnvKind::Arg => replay.args.insert(k.clone(), v.clone()),
                EnvKind::Env => replay.env.insert(k.clone(), v.clone()),
            };
        }
        replay.resolved()
    }
}

/// Resolve a `--from` value as BuildKit does: a stage name (any stage,
/// case-insensitive), a stage index, or else an image. An index past the
/// last stage is an error; references that loop are caught by the graph.
pub fn resolve_from(
    df: &Dockerfile,
    value: &str,
    span: Span,
    warnings: &mut Vec<Diag>,
) -> Option<FromRef> {
    let lower = value.to_lowercase();
    if let Some(s) = df.stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
        return Some(FromRef::Stage(s.index));
    }
    if let Ok(i) = value.parse::<i64>() {
        if i < 0 || i as usize >= df.stages.len() {
            let text = &df.source.text[span.offset..span.offset + span.len];
            let at = match text.find(value) {
                Some(o) => span.sub(span.offset + o, value.len(), &df.source.text),
                None => span,
            };
            warnings.push(
                Diag::error("dockerfile::stage-ref", format!("invalid stage index {i}"))
                    .at(at)
                    .in_file(&df.source)
                    .with_label("no stage has this index")
                    .with_help(format!("stages are numbered 0 to {}", df.stages.len() - 1)),
            );
            return None;
        }
        return Some(FromRef::Stage(i as usize));
    }
    Some(FromRef::Image(value.to_string()))
}

//! The build engine: runs the stages of a parsed Dockerfile in dependency order and commits
//! the target stage as an image in the store.
//!
//! Every filesystem step leaves a directory in overlay form (a RUN's upper dir, a COPY's
//! fresh tree) that is both written as a layer blob (`strata_layer::write_layer`) and kept
//! as the next step's top lower dir, so nothing is unpacked again within a build. Base
//! images come from the store as snapshots. Nothing here prints: progress goes to the
//! caller through [`Event`]s.

mod fsview;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use strata_dockerfile::{
    analyze, find_ignore_file, read_dockerignore, stages_needed, BaseRef,
    BuildOptions as ScopeOptions, CopySpec, Diag, Dockerfile, Env, IgnoreMatcher, Instruction,
    InstructionKind, ShellLex, ShellOrExec, Span, WalkDecision,
};
use strata_layer::{write_layer, Compression, UnpackMode, UnpackOptions, WriteOptions};
use strata_oci::config::{Healthcheck, History, ImageConfig, ImageConfigBuilder};
use strata_oci::media_types::{OCI_CONFIG, OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP, OCI_MANIFEST};
use strata_oci::{Digest, Platform, Reference};
use strata_sandbox::{Config, Process, Rootfs, RunOptions, Sandbox};
use strata_store::{ImageRecord, LayerRecord, Lease, NewImage, Store, StoreError};

use fsview::CopyAttrs;

pub use strata_sandbox::Network;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A problem with a place in the Dockerfile (render it with miette for the snippet).
    #[error("{0}")]
    Dockerfile(Diag),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl From<Diag> for BuildError {
    fn from(d: Diag) -> Self {
        BuildError::Dockerfile(d)
    }
}

type Result<T, E = BuildError> = std::result::Result<T, E>;

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

/// What to build and how.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// Where the Dockerfile is (to find `<Dockerfile>.dockerignore`), if it is a file.
    pub dockerfile_path: Option<PathBuf>,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    /// Network for RUN (Docker's default: host).
    pub network: Network,
    /// `--label` values, set on the final image.
    pub labels: Vec<(String, String)>,
    pub tags: Vec<Reference>,
    pub compression: Compression,
}

impl BuildOptions {
    pub fn new(context: impl Into<PathBuf>) -> Self {
        BuildOptions {
            context: context.into(),
            dockerfile_path: None,
            target: None,
            build_args: BTreeMap::new(),
            network: Network::Host,
            labels: Vec::new(),
            tags: Vec::new(),
            compression: Compression::Gzip,
        }
    }
}

/// Progress of a build, for the caller to display.
#[derive(Debug)]
pub enum Event<'a> {
    /// A step starts: `#id [stage n/m] INSTRUCTION`.
    Step { id: usize, text: &'a str },
    /// Output of a RUN step (raw bytes, as they came).
    Output { id: usize, data: &'a [u8] },
    /// A step finished; `layer` when it produced one.
    Done { id: usize, layer: Option<&'a Digest> },
}

/// The committed image.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub tags: Vec<Reference>,
}

/// The state of a stage while its instructions run.
#[derive(Clone)]
struct StageState {
    config: ImageConfigBuilder,
    layers: Vec<LayerRecord>,
    lowers: Vec<PathBuf>,
    shell: Vec<String>,
    workdir: String,
    user: String,
    cmd_set: bool,
}

struct VarEnv(BTreeMap<String, String>);

impl Env for VarEnv {
    fn lookup(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Builds the target of `df` and commits it with `opts.tags`.
pub fn build(
    store: &Store,
    df: &Dockerfile,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<BuildResult> {
    let lease = store.lease()?;
    let tmp_root = store.root().join("build-tmp");
    fs::create_dir_all(&tmp_root).map_err(io_ctx(format!("creating {}", tmp_root.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{}-", std::process::id()))
        .tempdir_in(&tmp_root)
        .map_err(io_ctx("creating the build's work directory"))?;
    let mut b = Builder {
        store,
        lease: &lease,
        df,
        opts,
        tmp: tmp.path().to_path_buf(),
        counter: 0,
        step: 0,
        ignore: None,
        lex: ShellLex::new(df.escape),
        epoch: source_date_epoch(),
    };
    let result = b.run(progress);
    drop(tmp);
    result
}

fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.parse().ok())
}

struct Builder<'a> {
    store: &'a Store,
    lease: &'a Lease<'a>,
    df: &'a Dockerfile,
    opts: &'a BuildOptions,
    tmp: PathBuf,
    counter: usize,
    step: usize,
    ignore: Option<IgnoreMatcher>,
    lex: ShellLex,
    epoch: Option<u64>,
}

/// A base image read from the store.
struct BaseImage {
    record: ImageRecord,
    config: ImageConfig,
}

impl<'a> Builder<'a> {
    fn err(&self, span: Span, msg: impl Into<String>) -> BuildError {
        BuildError::Dockerfile(Diag::error("build::step", msg).at(span).in_file(&self.df.source))
    }

    fn fresh_dir(&mut self, what: &str) -> Result<PathBuf> {
        self.counter += 1;
        let p = self.tmp.join(format!("{what}{}", self.counter));
        fs::create_dir(&p).map_err(io_ctx(format!("creating {}", p.display())))?;
        Ok(p)
    }

    fn created(&self) -> String {
        let dt = match self.epoch {
            Some(s) => chrono::DateTime::from_timestamp(s as i64, 0).unwrap_or_default(),
            None => chrono::Utc::now(),
        };
        dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn load_image(&self, name: &str, span: Span) -> Result<BaseImage> {
        let record = match self.store.resolve(name) {
            Ok(r) => r,
            Err(StoreError::ImageNotFound(_)) => {
                return Err(BuildError::Dockerfile(
                    Diag::error("build::base-image", format!("image {name} is not in the store"))
                        .at(span)
                        .in_file(&self.df.source)
                        .with_help(format!(
                        "pull it or load it first (`strata pull {name}` or `strata load -i FILE`)"
                    )),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let raw = self.store.blobs().read(&record.id)?;
        let config =
            ImageConfig::parse(raw).map_err(|e| BuildError::Other(format!("image {name}: {e}")))?;
        Ok(BaseImage { record, config })
    }

    fn run(&mut self, progress: &mut dyn FnMut(Event)) -> Result<BuildResult> {
        let df = self.df;
        let order = stages_needed(df, self.opts.target.as_deref())?;
        let mut sopts = ScopeOptions::with_build_args(&self.opts.build_args);
        // First pass: learn the expanded FROM references, then read those images' ENV.
        let first = analyze(df, &sopts);
        let mut bases: BTreeMap<usize, BaseImage> = BTreeMap::new();
        for &i in &order {
            if let BaseRef::Image(name) = &first.stages[i].base {
                let img = self.load_image(name, df.stages[i].span)?;
                let env = img
                    .config
                    .config()
                    .env
                    .iter()
                    .flatten()
                    .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                    .collect();
                sopts.image_env.insert(name.clone(), env);
                bases.insert(i, img);
            }
        }
        let scope = analyze(df, &sopts);
        if let Some(e) =
            scope.warnings.iter().find(|w| w.severity == strata_dockerfile::Severity::Error)
        {
            return Err(BuildError::Dockerfile(e.clone()));
        }
        let total: usize = order.iter().map(|&i| df.stages[i].instructions.len() + 1).sum();
        let mut done: BTreeMap<usize, StageState> = BTreeMap::new();
        let mut images: BTreeMap<String, StageState> = BTreeMap::new();
        let last = *order.last().ok_or_else(|| BuildError::Other("nothing to build".into()))?;
        for &si in &order {
            let stage = &df.stages[si];
            let sscope = &scope.stages[si];
            let label = stage.name.clone().unwrap_or_else(|| format!("stage-{si}"));
            let n = stage.instructions.len() + 1;
            self.step += 1;
            let text = format!("[{label} 1/{n}] FROM {}", sscope.base_expanded);
            progress(Event::Step { id: self.step, text: &text });
            let mut st = match &sscope.base {
                BaseRef::Scratch => StageState {
                    config: ImageConfigBuilder::new(&Platform::host()),
                    layers: Vec::new(),
                    lowers: Vec::new(),
                    shell: vec!["/bin/sh".into(), "-c".into()],
                    workdir: String::new(),
                    user: String::new(),
                    cmd_set: false,
                },
                BaseRef::Stage(p) => {
                    let mut s = done.get(p).cloned().ok_or_else(|| {
                        BuildError::Other(format!("stage {p} was not built before stage {si}"))
                    })?;
                    s.cmd_set = false;
                    s
                }
                BaseRef::Image(_) => {
                    let img = bases.remove(&si).ok_or_else(|| {
                        BuildError::Other(format!("base image of stage {si} was not loaded"))
                    })?;
                    self.state_from_image(&img)?
                }
            };
            progress(Event::Done { id: self.step, layer: None });
            for (ii, ins) in stage.instructions.iter().enumerate() {
                self.step += 1;
                let id = self.step;
                let text = format!("[{label} {}/{n}] {}", ii + 2, instruction_text(df, ins));
                progress(Event::Step { id, text: &text });
                let vars: BTreeMap<String, String> = sscope.env_at(ii).into_iter().collect();
                let layer = self.instruction(
                    &mut st,
                    ins,
                    &VarEnv(vars),
                    id,
                    progress,
                    &done,
                    &mut images,
                )?;
                progress(Event::Done { id, layer: layer.as_ref() });
            }
            done.insert(si, st);
        }
        let _ = total;
        let mut st =
            done.remove(&last).ok_or_else(|| BuildError::Other("no final stage".into()))?;
        for (k, v) in &self.opts.labels {
            st.config.set_label(k, v);
        }
        self.commit(st)
    }

    fn state_from_image(&mut self, img: &BaseImage) -> Result<StageState> {
        let lowers = self.store.snapshots(&img.record, self.lease)?;
        let c = img.config.config();
        Ok(StageState {
            config: ImageConfigBuilder::from_parent(&img.config),
            layers: img.record.layers.clone(),
            lowers,
            shell: c.shell.clone().unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]),
            workdir: c.working_dir.clone().unwrap_or_default(),
            user: c.user.clone().unwrap_or_default(),
            cmd_set: false,
        })
    }

    fn expand(&self, word: &str, env: &VarEnv, span: Span) -> Result<String> {
        self.lex
            .process_word(word, env)
            .map_err(|e| self.err(span, format!("cannot expand {word:?}: {e}")))
    }

    #[allow(clippy::too_many_arguments)]
    fn instruction(
        &mut self,
        st: &mut StageState,
        ins: &Instruction,
        env: &VarEnv,
        id: usize,
        progress: &mut dyn FnMut(Event),
        done: &BTreeMap<usize, StageState>,
        images: &mut BTreeMap<String, StageState>,
    ) -> Result<Option<Digest>> {
        let span = ins.span;
        let created = self.created();
        let hist = |by: String| History {
            created: Some(created.clone()),
            created_by: Some(by),
            comment: Some("buildkit.dockerfile.v0".into()),
            ..History::default()
        };
        let text = instruction_text(self.df, ins);
        match &ins.kind {
            InstructionKind::Arg(_) => {}
            InstructionKind::Env { vars, .. } => {
                let mut shown: Vec<(String, String)> = Vec::new();
                for kv in vars {
                    // Later pairs of one ENV see earlier ones: the scope log already holds
                    // the expanded value of each, so take it from there.
                    let key = self.expand(&kv.key, env, span)?;
                    let mut local = VarEnv(env.0.clone());
                    for (k, v) in &shown {
                        local.0.insert(k.clone(), v.clone());
                    }
                    let value = self.expand(&kv.value, &local, span)?;
                    st.config.set_env(&key, &value);
                    shown.push((key, value));
                }
                let s: Vec<String> = shown.iter().map(|(k, v)| format!("{k}={v}")).collect();
                st.config.add_empty_layer_history(hist(format!("ENV {}", s.join(" "))));
            }
            InstructionKind::Label { labels, .. } => {
                let mut shown = Vec::new();
                for kv in labels {
                    let k = self.expand(&kv.key, env, span)?;
                    let v = self.expand(&kv.value, env, span)?;
                    st.config.set_label(&k, &v);
                    shown.push(format!("{k}={v}"));
                }
                st.config.add_empty_layer_history(hist(format!("LABEL {}", shown.join(" "))));
            }
            InstructionKind::User(u) => {
                let u = self.expand(u, env, span)?;
                st.config.set_user(&u);
                st.user = u.clone();
                st.config.add_empty_layer_history(hist(format!("USER {u}")));
            }
            InstructionKind::Workdir(w) => {
                let w = self.expand(w, env, span)?;
                let abs = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{}/{w}", st.workdir.trim_end_matches('/'))
                };
                let abs = format!("/{}", fsview::clean_rel(&abs).display());
                st.workdir = abs.clone();
                st.config.set_working_dir(&abs);
                let rel = fsview::clean_rel(&abs);
                if !rel.as_os_str().is_empty() && !fsview::is_dir(&st.lowers, &rel) {
                    let dir = self.fresh_dir("workdir")?;
                    let target = dir.join(&rel);
                    fs::create_dir_all(&target)
                        .map_err(io_ctx(format!("creating {}", target.display())))?;
                    let owner = self.resolve_owner(st, &st.user.clone(), span)?;
                    std::os::unix::fs::lchown(&target, Some(owner.0), Some(owner.1))
                        .map_err(io_ctx("setting the owner of the WORKDIR"))?;
                    return self.add_layer(st, dir, hist(format!("WORKDIR {abs}"))).map(Some);
                }
                st.config.add_empty_layer_history(hist(format!("WORKDIR {abs}")));
            }
            InstructionKind::Cmd(c) => {
                let v = self.shell_or_exec(st, c);
                st.config.set_cmd(Some(v.clone()));
                st.cmd_set = true;
                st.config.add_empty_layer_history(hist(format!("CMD {}", json_list(&v))));
            }
            InstructionKind::Entrypoint(c) => {
                let v = self.shell_or_exec(st, c);
                st.config.set_entrypoint(Some(v.clone()));
                // Docker: an ENTRYPOINT resets a CMD inherited from the base.
                if !st.cmd_set {
                    st.config.set_cmd(None);
                }
                st.config.add_empty_layer_history(hist(format!("ENTRYPOINT {}", json_list(&v))));
            }
            InstructionKind::Shell(s) => {
                st.shell = s.clone();
                st.config.set_shell(s.clone());
                st.config.add_empty_layer_history(hist(format!("SHELL {}", json_list(s))));
            }
            InstructionKind::Expose(ports) => {
                let mut shown = Vec::new();
                for p in ports {
                    for p in
                        self.lex.process_words(p, env).map_err(|e| self.err(span, e.to_string()))?
                    {
                        st.config.expose_port(&p);
                        shown.push(if p.contains('/') { p } else { format!("{p}/tcp") });
                    }
                }
                st.config.add_empty_layer_history(hist(format!("EXPOSE map[{}]", shown.join(" "))));
            }
            InstructionKind::Volume(vols) => {
                let mut shown = Vec::new();
                for v in vols {
                    let v = self.expand(v, env, span)?;
                    st.config.add_volume(&v);
                    shown.push(v);
                }
                st.config.add_empty_layer_history(hist(format!("VOLUME {}", json_list(&shown))));
            }
            InstructionKind::Stopsignal(s) => {
                let s = self.expand(s, env, span)?;
                st.config.set_stop_signal(&s);
                st.config.add_empty_layer_history(hist(format!("STOPSIGNAL {s}")));
            }
            InstructionKind::Healthcheck { test, options } => {
                let hc = match test {
                    None => {
                        Healthcheck { test: Some(vec!["NONE".into()]), ..Healthcheck::default() }
                    }
                    Some(t) => {
                        let test = match t {
                            ShellOrExec::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                            ShellOrExec::Exec(v) => {
                                let mut out = vec!["CMD".to_string()];
                                out.extend(v.iter().cloned());
                                out
                            }
                        };
                        let ns = |d: Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64);
                        Healthcheck {
                            test: Some(test),
                            interval: ns(options.interval),
                            timeout: ns(options.timeout),
                            start_period: ns(options.start_period),
                            start_interval: ns(options.start_interval),
                            retries: options.retries.map(i64::from),
                        }
                    }
                };
                st.config.set_healthcheck(Some(&hc));
                st.config.add_empty_layer_history(hist(text.clone()));
            }
            InstructionKind::Onbuild(_) => {
                let trigger = text
                    .split_once(char::is_whitespace)
                    .map(|(_, rest)| rest.trim().to_string())
                    .unwrap_or_default();
                st.config.add_onbuild(&trigger);
                st.config.add_empty_layer_history(hist(text.clone()));
            }
            InstructionKind::Maintainer(m) => {
                st.config.set_author(m);
                st.config.add_empty_layer_history(hist(format!("MAINTAINER {m}")));
            }
            InstructionKind::Run { cmd, mounts, network, security, heredocs } => {
                if !mounts.is_empty() || !heredocs.is_empty() || security.is_some() {
                    return Err(self.err(
                        span,
                        "RUN --mount, --security and heredocs are not supported by this build engine yet",
                    ));
                }
                let net = match network.as_deref() {
                    None | Some("default") => self.opts.network,
                    Some("host") => Network::Host,
                    Some("none") => Network::None,
                    Some(other) => {
                        return Err(self.err(span, format!("unknown RUN --network={other}")))
                    }
                };
                return self.run_step(st, ins, cmd, env, net, id, progress, hist);
            }
            InstructionKind::Copy(spec) | InstructionKind::Add(spec) => {
                let add = matches!(ins.kind, InstructionKind::Add(_));
                let dir = self.copy_step(st, spec, add, env, span, done, images)?;
                let by = format!("{} # buildkit", text);
                return self.add_layer(st, dir, hist(by)).map(Some);
            }
        }
        Ok(None)
    }

    fn shell_or_exec(&self, st: &StageState, c: &ShellOrExec) -> Vec<String> {
        match c {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => {
                let mut v = st.shell.clone();
                v.push(s.clone());
                v
            }
        }
    }

    /// Resolves a `USER`/`--chown` spec to numeric ids against the stage's files.
    fn resolve_owner(&self, st: &StageState, spec: &str, span: Span) -> Result<(u32, u32)> {
        if spec.is_empty() {
            return Ok((0, 0));
        }
        if st.lowers.is_empty() {
            let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
            return match (u.parse(), g.parse()) {
                (Ok(u), Ok(g)) => Ok((u, g)),
                _ => Err(self.err(
                    span,
                    format!("cannot resolve user {spec:?}: the stage has no /etc/passwd"),
                )),
            };
        }
        let r = strata_sandbox::resolve_user(&Rootfs::Lowers(st.lowers.clone()), spec)
            .map_err(|e| self.err(span, format!("cannot resolve user {spec:?}: {e}")))?;
        Ok((r.uid, r.gid))
    }

    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &mut self,
        st: &mut StageState,
        ins: &Instruction,
        cmd: &ShellOrExec,
        env: &VarEnv,
        network: Network,
        id: usize,
        progress: &mut dyn FnMut(Event),
        hist: impl Fn(String) -> History,
    ) -> Result<Option<Digest>> {
        let args = self.shell_or_exec(st, cmd);
        let upper = self.fresh_dir("run")?;
        let work = self.fresh_dir("work")?;
        let mut lowers = st.lowers.clone();
        if lowers.is_empty() {
            lowers.push(self.fresh_dir("empty")?);
        }
        let process = Process {
            args: args.clone(),
            env: env.0.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: if st.workdir.is_empty() { "/".into() } else { st.workdir.clone() },
            user: st.user.clone(),
        };
        let mut config = Config::new(
            Rootfs::Overlay { lowers, upper: upper.clone(), work: work.clone() },
            process,
        );
        config.network = network;
        if network == Network::Host {
            // Docker gives RUN the host's resolver configuration; the mount point is removed
            // from the upper dir afterwards when the image had none.
            for f in ["/etc/resolv.conf", "/etc/hosts"] {
                if Path::new(f).is_file() {
                    config.mounts.push(strata_sandbox::Mount::Bind {
                        source: PathBuf::from(f),
                        target: f.to_string(),
                        read_only: true,
                    });
                }
            }
        }
        config.hostname = "buildkitsandbox".into();
        let sandbox = Sandbox::new(config)
            .map_err(|e| self.err(ins.span, format!("cannot start RUN: {e}")))?;
        let sink =
            Sink { progress: RefCell::new(progress), id, tail: RefCell::new(Tail::default()) };
        let status = {
            let mut out = SinkWriter(&sink);
            let mut err = SinkWriter(&sink);
            sandbox.run(&mut out, &mut err, &RunOptions::default())
        };
        let tail = sink.tail.into_inner().lines();
        let status = status.map_err(|e| self.err(ins.span, format!("RUN failed: {e}")))?;
        let _ = fs::remove_dir_all(&work);
        if !status.success() {
            let how = match status {
                strata_sandbox::ExitStatus::Code(c) => format!("exit code: {c}"),
                strata_sandbox::ExitStatus::Signal(s) => format!("killed by signal {s}"),
            };
            let mut d = Diag::error(
                "build::run",
                format!("process \"{}\" did not complete successfully: {how}", args.join(" ")),
            )
            .at(ins.span)
            .in_file(&self.df.source)
            .with_label(how.clone());
            if !tail.is_empty() {
                d = d.with_help(format!("last output lines:\n{}", tail.join("\n")));
            }
            return Err(BuildError::Dockerfile(d));
        }
        let by = format!("RUN {} # buildkit", args.join(" "));
        let empty = fs::read_dir(&upper).map(|mut d| d.next().is_none()).unwrap_or(false);
        if empty {
            st.config.add_empty_layer_history(hist(by));
            return Ok(None);
        }
        self.add_layer(st, upper, hist(by)).map(Some)
    }

    /// Writes `dir` as a layer blob, records it, and stacks `dir` as the new top lower.
    fn add_layer(&mut self, st: &mut StageState, dir: PathBuf, history: History) -> Result<Digest> {
        let mut ingest = self.store.blobs().ingest()?;
        let wopts = WriteOptions {
            compression: self.opts.compression,
            level: None,
            source_date_epoch: self.epoch,
            overlay_whiteouts: true,
        };
        let desc = write_layer(&dir, &mut ingest, &wopts).map_err(|e| {
            BuildError::Other(format!("writing a layer from {}: {e}", dir.display()))
        })?;
        let staged = ingest.stage(Some(&desc.digest))?;
        self.lease.add([&desc.digest])?;
        staged.publish()?;
        st.layers.push(LayerRecord {
            digest: desc.digest.clone(),
            diff_id: desc.diff_id.clone(),
            media_type: desc.media_type.clone(),
            size: desc.size,
            content_size: fsview::content_size(&dir),
        });
        st.config.add_layer(&desc.diff_id, history);
        st.lowers.push(dir);
        Ok(desc.digest)
    }

    fn ignore(&mut self) -> Result<&IgnoreMatcher> {
        if self.ignore.is_none() {
            let df_path = self
                .opts
                .dockerfile_path
                .clone()
                .unwrap_or_else(|| self.opts.context.join("Dockerfile"));
            let patterns = match find_ignore_file(&df_path, &self.opts.context) {
                Some(f) => {
                    let text = fs::read_to_string(&f)
                        .map_err(io_ctx(format!("reading {}", f.display())))?;
                    read_dockerignore(&text)
                }
                None => Vec::new(),
            };
            let m = IgnoreMatcher::new(&patterns)
                .map_err(|e| BuildError::Other(format!(".dockerignore: {e}")))?;
            self.ignore = Some(m);
        }
        Ok(self.ignore.as_ref().expect("just set"))
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &mut self,
        st: &StageState,
        spec: &CopySpec,
        add: bool,
        env: &VarEnv,
        span: Span,
        done: &BTreeMap<usize, StageState>,
        images: &mut BTreeMap<String, StageState>,
    ) -> Result<PathBuf> {
        if !spec.heredocs.is_empty() || spec.parents || !spec.exclude.is_empty() {
            return Err(
                self.err(span, "COPY heredocs, --parents and --exclude are not supported yet")
            );
        }
        let dest_raw = self.expand(&spec.dest, env, span)?;
        let mut srcs = Vec::new();
        for s in &spec.srcs {
            srcs.push(self.expand(s, env, span)?);
        }
        let dest_abs = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", st.workdir)
        };
        let dest_rel = fsview::clean_rel(&dest_abs);
        let attrs = {
            let (uid, gid) = match &spec.chown {
                Some(c) => {
                    let c = self.expand(c, env, span)?;
                    self.resolve_owner(st, &c, span)?
                }
                None => (0, 0),
            };
            let chmod = match &spec.chmod {
                Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| {
                    self.err(span, format!("--chmod={m}: only octal modes are supported"))
                })?),
                None => None,
            };
            CopyAttrs { uid, gid, chmod }
        };
        let layer = self.fresh_dir("copy")?;
        let dest_is_dir = dest_raw.ends_with('/')
            || dest_raw.ends_with("/.")
            || dest_raw == "."
            || srcs.len() > 1
            || fsview::is_dir(&st.lowers, &dest_rel);
        // Where the sources come from: another stage / an image, or the context.
        let from_stack: Option<Vec<PathBuf>> = match &spec.from {
            None => None,
            Some(f) => {
                let lower = f.to_lowercase();
                let idx = self
                    .df
                    .stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(lower.as_str()))
                    .or_else(|| f.parse::<usize>().ok());
                match idx {
                    Some(i) => Some(
                        done.get(&i)
                            .ok_or_else(|| {
                                self.err(span, format!("stage {f} is not built before this COPY"))
                            })?
                            .lowers
                            .clone(),
                    ),
                    None => {
                        if !images.contains_key(f) {
                            let img = self.load_image(f, span)?;
                            let s = self.state_from_image(&img)?;
                            images.insert(f.clone(), s);
                        }
                        Some(images[f].lowers.clone())
                    }
                }
            }
        };
        for src in &srcs {
            if add
                && (src.starts_with("http://")
                    || src.starts_with("https://")
                    || src.starts_with("git@"))
            {
                return Err(self.err(span, "ADD from a URL or git is not supported yet"));
            }
            let rel = fsview::clean_rel(src);
            match &from_stack {
                Some(stack) => {
                    let Some((top, _)) = fsview::lookup(stack, &rel) else {
                        return Err(self.err(
                            span,
                            format!(
                                "failed to compute cache key: \"/{}\": not found",
                                rel.display()
                            ),
                        ));
                    };
                    let is_dir = top.is_dir() && !top.is_symlink();
                    let target = self.dest_for(&layer, &dest_rel, &rel, is_dir, dest_is_dir)?;
                    fsview::copy_from_stack(stack, &rel, &target, attrs)
                        .map_err(io_ctx(format!("copying /{}", rel.display())))?;
                }
                None => {
                    let matches = self.context_matches(src, &rel, span)?;
                    for m in matches {
                        let host = self.opts.context.join(&m);
                        let md = fs::symlink_metadata(&host)
                            .map_err(io_ctx(format!("reading {}", host.display())))?;
                        let target =
                            self.dest_for(&layer, &dest_rel, &m, md.is_dir(), dest_is_dir)?;
                        if add && md.is_file() && is_archive(&host) {
                            let dir = if dest_is_dir || dest_rel.as_os_str().is_empty() {
                                layer.join(&dest_rel)
                            } else {
                                target.clone()
                            };
                            fs::create_dir_all(&dir)
                                .map_err(io_ctx("creating the ADD destination"))?;
                            let f = fs::File::open(&host)
                                .map_err(io_ctx(format!("opening {}", host.display())))?;
                            let o = UnpackOptions {
                                mode: UnpackMode::Apply,
                                preserve_ownership: true,
                                ..UnpackOptions::default()
                            };
                            strata_layer::unpack(io::BufReader::new(f), &dir, &o).map_err(|e| {
                                self.err(span, format!("extracting {}: {e}", m.display()))
                            })?;
                            continue;
                        }
                        self.copy_context(&m, &host, &md, &target, attrs)?;
                    }
                }
            }
        }
        Ok(layer)
    }

    /// The path in the layer dir where source `src_rel` lands.
    fn dest_for(
        &self,
        layer: &Path,
        dest_rel: &Path,
        src_rel: &Path,
        src_is_dir: bool,
        dest_is_dir: bool,
    ) -> Result<PathBuf> {
        let base = layer.join(dest_rel);
        let target = if src_is_dir || !dest_is_dir {
            base.clone()
        } else {
            match src_rel.file_name() {
                Some(n) => base.join(n),
                None => base.clone(),
            }
        };
        let parent = if src_is_dir { Some(target.as_path()) } else { target.parent() };
        if let Some(p) = parent {
            fs::create_dir_all(p).map_err(io_ctx(format!("creating {}", p.display())))?;
        }
        Ok(target)
    }

    /// Context paths (relative) a COPY source names: one path, or a glob's matches.
    fn context_matches(&mut self, src: &str, rel: &Path, span: Span) -> Result<Vec<PathBuf>> {
        let ctx = self.opts.context.clone();
        let is_glob = src.contains(['*', '?', '[']);
        let ignore = self.ignore()?.clone();
        if !is_glob {
            let s = rel.to_string_lossy();
            let excluded = !s.is_empty() && ignore.matches(&s);
            if excluded || fs::symlink_metadata(ctx.join(rel)).is_err() {
                return Err(self.err(
                    span,
                    format!(
                        "failed to compute cache key: \"/{}\": not found in the build context or excluded by .dockerignore",
                        rel.display()
                    ),
                ));
            }
            return Ok(vec![rel.to_path_buf()]);
        }
        let pattern = glob::Pattern::new(&rel.to_string_lossy())
            .map_err(|e| self.err(span, format!("bad pattern {src:?}: {e}")))?;
        let mo = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
        let mut found = Vec::new();
        let depth = rel.components().count();
        let mut stack = vec![(PathBuf::new(), 0usize)];
        while let Some((dir, d)) = stack.pop() {
            let Ok(rd) = fs::read_dir(ctx.join(&dir)) else { continue };
            for e in rd.flatten() {
                let r = dir.join(e.file_name());
                let s = r.to_string_lossy().to_string();
                if ignore.matches(&s) {
                    continue;
                }
                if d + 1 == depth {
                    if pattern.matches_with(&s, mo) {
                        found.push(r);
                    }
                } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((r, d + 1));
                }
            }
        }
        found.sort();
        if found.is_empty() {
            return Err(
                self.err(span, format!("no source files were specified: {src:?} matches nothing"))
            );
        }
        Ok(found)
    }

    /// Copies a context file or directory (honouring .dockerignore inside directories).
    fn copy_context(
        &mut self,
        rel: &Path,
        host: &Path,
        md: &fs::Metadata,
        target: &Path,
        a: CopyAttrs,
    ) -> Result<()> {
        if !md.is_dir() {
            return fsview::copy_leaf(host, md, target, a)
                .map_err(io_ctx(format!("copying {}", host.display())));
        }
        let ignore = self.ignore()?.clone();
        if !target.is_dir() {
            fsview::make_dir(md, target, a)
                .map_err(io_ctx(format!("creating {}", target.display())))?;
        }
        copy_ctx_dir(&ignore, rel, host, target, a)
            .map_err(io_ctx(format!("copying {}", host.display())))
    }

    fn commit(&self, st: StageState) -> Result<BuildResult> {
        let mut cfgb = st.config;
        cfgb.set_created(&self.created());
        let config = cfgb.build().map_err(|e| BuildError::Other(format!("image config: {e}")))?;
        let config_bytes = config.raw().to_vec();
        let config_digest = Digest::sha256_of(&config_bytes);
        let layers: Vec<serde_json::Value> = st
            .layers
            .iter()
            .map(|l| {
                json!({"mediaType": oci_layer_type(&l.media_type), "digest": l.digest.to_string(), "size": l.size})
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len()},
            "layers": layers,
        });
        let manifest = strata_oci::canonical_json(&manifest)
            .map_err(|e| BuildError::Other(format!("manifest: {e}")))?;
        let manifest_digest = Digest::sha256_of(&manifest);
        self.lease.add([&config_digest, &manifest_digest])?;
        self.store.blobs().put(&config_bytes)?;
        self.store.blobs().put(&manifest)?;
        self.store.commit_image(
            &NewImage {
                config_digest: config_digest.clone(),
                manifest_digest: manifest_digest.clone(),
                manifest_media_type: OCI_MANIFEST.to_string(),
                created: config.created().map(str::to_string),
                layers: st.layers,
            },
            &self.opts.tags,
        )?;
        Ok(BuildResult { id: config_digest, manifest_digest, tags: self.opts.tags.clone() })
    }
}

fn copy_ctx_dir(
    ignore: &IgnoreMatcher,
    rel: &Path,
    host: &Path,
    target: &Path,
    a: CopyAttrs,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(host)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let md = e.metadata()?;
        let s = r.to_string_lossy();
        let dst = target.join(e.file_name());
        match ignore.walk_decision(&s, md.is_dir()) {
            WalkDecision::Skip => continue,
            WalkDecision::DescendOnly | WalkDecision::Include if md.is_dir() => {
                fsview::make_dir(&md, &dst, a)?;
                copy_ctx_dir(ignore, &r, &e.path(), &dst, a)?;
            }
            _ => fsview::copy_leaf(&e.path(), &md, &dst, a)?,
        }
    }
    Ok(())
}

/// Whether a local ADD source is an archive to extract (gzip, zstd or a plain tar).
fn is_archive(path: &Path) -> bool {
    let Ok(mut f) = fs::File::open(path) else { return false };
    let mut buf = [0u8; 262];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    let b = &buf[..n];
    b.starts_with(&[0x1f, 0x8b])
        || b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (n >= 262 && &b[257..262] == b"ustar")
}

fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => OCI_LAYER_TAR_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar" => OCI_LAYER_TAR,
        other => other,
    }
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The instruction as written, continuation lines joined.
pub fn instruction_text(df: &Dockerfile, ins: &Instruction) -> String {
    let s = &ins.node.span;
    let raw = df.source.text.get(s.offset..s.offset + s.len).unwrap_or_default();
    let esc = df.escape;
    let mut out = String::new();
    for line in raw.lines() {
        let t = line.trim_end();
        let t = t.strip_suffix(esc).unwrap_or(t);
        let t = t.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(t);
    }
    out
}

/// The last lines a RUN printed, for the error message.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

const TAIL_LINES: usize = 10;

impl Tail {
    fn push(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                let l = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                self.lines.push_back(l);
                if self.lines.len() > TAIL_LINES {
                    self.lines.pop_front();
                }
            } else if self.partial.len() < 4096 {
                self.partial.push(b);
            }
        }
    }
    fn lines(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            let l = String::from_utf8_lossy(&self.partial).into_owned();
            self.lines.push_back(l);
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
        self.lines.into()
    }
}

struct Sink<'p> {
    progress: RefCell<&'p mut dyn FnMut(Event)>,
    id: usize,
    tail: RefCell<Tail>,
}

struct SinkWriter<'s, 'p>(&'s Sink<'p>);

impl Write for SinkWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.tail.borrow_mut().push(buf);
        (self.0.progress.borrow_mut())(Event::Output { id: self.0.id, data: buf });
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

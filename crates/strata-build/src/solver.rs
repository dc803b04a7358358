//! Scheduling: every needed stage on its own thread, waiting for the stages it reads from;
//! a stage's state from its base (scratch, image or stage); cache lookups per step.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use strata_dockerfile::{
    analyze, stages_needed, BaseRef, BuildOptions as ScopeOptions, Diag, Dockerfile, Instruction,
    InstructionKind, Span,
};
use strata_oci::config::{History, ImageConfig, ImageConfigBuilder};
use strata_oci::{Digest, Platform};
use strata_store::{CacheEntry, StoreError};

use crate::layers::{LayerJob, LayerSlot};
use crate::{
    cache_key, instruction_text, lock, onbuild, BaseImage, BuildError, BuildResult, Builder, Event,
    Result, StageState, StepCtx, Stream, VarEnv,
};

impl Builder<'_> {
    /// A base image from the store, pulled first with `--pull`, or when missing and the
    /// build has a puller.
    pub(crate) fn load_image(&self, name: &str, span: Span) -> Result<BaseImage> {
        if self.opts.pull {
            self.pull(name, span, "")?;
        }
        let record = match self.store.resolve(name) {
            Ok(r) => r,
            Err(StoreError::ImageNotFound(_)) if self.opts.puller.is_some() => {
                self.pull(name, span, " is not in the store and")?;
                self.store.resolve(name)?
            }
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

    /// Pulls `name` once per build; `why` goes into the error (`image X<why> cannot be
    /// pulled`).
    fn pull(&self, name: &str, span: Span, why: &str) -> Result<()> {
        let Some(puller) = &self.opts.puller else { return Ok(()) };
        if !lock(&self.pulled).insert(name.to_string()) {
            return Ok(());
        }
        puller.pull(self.store, name).map_err(|e| {
            BuildError::Dockerfile(
                Diag::error("build::pull", format!("image {name}{why} cannot be pulled: {e}"))
                    .at(span)
                    .in_file(&self.df.source)
                    .with_help(
                        "check the name and your access (`strata login`), or load the image \
                         with `strata load -i FILE`",
                    ),
            )
        })
    }

    /// An image named by `--from`: its ID and its layers (snapshots made on first use).
    pub(crate) fn image_stage(&self, name: &str, span: Span) -> Result<(Digest, StageState)> {
        if let Some(v) = lock(&self.images).get(name) {
            return Ok(v.clone());
        }
        let img = self.load_image(name, span)?;
        let st = self.state_from_image(&img);
        let v = (img.record.id.clone(), st);
        lock(&self.images).insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// A stage named by `--from` (name or index), once it has finished: a step that reads
    /// another stage waits for it there, not at the start of its own stage. `None` when
    /// `f` names no stage (so an image).
    pub(crate) fn stage_by_ref(&self, f: &str) -> Option<Option<StageState>> {
        let i = self.df.find_stage(f)?;
        if !lock(&self.scheduled).contains(&i) {
            return Some(None);
        }
        let mut done = lock(&self.done);
        loop {
            if let Some(s) = done.get(&i) {
                return Some(Some(s.clone()));
            }
            if self.failed() {
                return Some(None);
            }
            done = self.done_cv.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub(crate) fn run(&self) -> Result<BuildResult> {
        let df = self.df;
        let order = stages_needed(df, self.opts.target.as_deref())?;
        let mut sopts = ScopeOptions::with_build_args(&self.opts.build_args);
        // First pass: learn the expanded FROM references, then read those images' ENV.
        let first = analyze(df, &sopts);
        let mut bases: BTreeMap<usize, BaseImage> = BTreeMap::new();
        let mut triggers: BTreeMap<usize, Dockerfile> = BTreeMap::new();
        for &i in &order {
            let span = df.stages[i].span;
            let parsed = match &first.stages[i].base {
                BaseRef::Image(name) => {
                    let img = self.load_image(name, span)?;
                    let list = onbuild::image_triggers(&img.config);
                    let env: Vec<(String, String)> = img
                        .config
                        .config()
                        .env
                        .iter()
                        .flatten()
                        .filter_map(|e| {
                            e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
                        })
                        .collect();
                    let parsed = onbuild::parse_triggers(&list, &format!("image {name}"))?;
                    sopts.image_env.insert(name.clone(), env);
                    bases.insert(i, img);
                    parsed
                }
                BaseRef::Stage(p) => {
                    let list = onbuild::stage_triggers(df, *p);
                    onbuild::parse_triggers(&list, &format!("stage {p}"))?
                }
                BaseRef::Scratch => None,
            };
            if let Some(t) = parsed {
                // The stage's own instructions see what ENV triggers set.
                sopts.trigger_env.insert(i, onbuild::env_pairs(&t));
                triggers.insert(i, t);
            }
        }
        let scope = analyze(df, &sopts);
        if let Some(e) =
            scope.warnings.iter().find(|w| w.severity == strata_dockerfile::Severity::Error)
        {
            return Err(BuildError::Dockerfile(e.clone()));
        }
        let last = *order.last().ok_or_else(|| BuildError::Other("nothing to build".into()))?;
        // Step ids are fixed up front (stage by stage, in dependency order), so parallel
        // stages number their steps as a sequential build would.
        let mut first_id = BTreeMap::new();
        let mut next = 1;
        for &si in &order {
            first_id.insert(si, next);
            let fired = triggers.get(&si).map_or(0, |t| t.stages[0].instructions.len());
            next += df.stages[si].instructions.len() + fired + 1;
        }
        let export_id = next;
        *lock(&self.scheduled) = order.clone();
        let bases = Mutex::new(bases);
        let mut export_started = None;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            self.layers.open(tx);
            let writer = s.spawn(move || self.write_layers(rx));
            let mut stages = Vec::new();
            for &si in &order {
                // Only a `FROM <stage>` waits up front; `--from` waits at its step.
                let deps: Vec<usize> = match scope.stages[si].base {
                    BaseRef::Stage(p) => vec![p],
                    _ => Vec::new(),
                };
                let (scope, bases, first) = (&scope, &bases, first_id[&si]);
                let fired = triggers.get(&si);
                stages.push(s.spawn(move || {
                    if !self.wait_for(&deps) {
                        return;
                    }
                    let base = lock(bases).remove(&si);
                    match self.run_stage(si, scope, base, fired, first) {
                        Ok(st) => {
                            lock(&self.done).insert(si, st);
                            self.done_cv.notify_all();
                        }
                        Err(e) => self.fail(e),
                    }
                }));
            }
            for h in stages {
                if h.join().is_err() {
                    self.fail(BuildError::Other("a build stage panicked".into()));
                }
            }
            // The stages are over: the writer finishes the queued layers and stops. The
            // wait is the export step's, as BuildKit's "exporting layers".
            if !self.failed() {
                self.emit(Event::Step { id: export_id, text: "exporting to image" });
                export_started = Some(std::time::Instant::now());
            }
            self.layers.close();
            if writer.join().is_err() {
                self.fail(BuildError::Other("the layer writer panicked".into()));
            }
        });
        // Even a failed build keeps the layers it wrote (their steps are cached).
        let adopted = self.adopt_written();
        let exported = (|| {
            if let Some(e) = std::mem::take(&mut *lock(&self.errors)).into_iter().next() {
                return Err(e);
            }
            adopted?;
            if let Some(t) = export_started {
                let secs = t.elapsed().as_secs_f64();
                self.say(export_id, &format!("exporting layers {secs:.1}s done"));
            }
            let mut st = lock(&self.done)
                .remove(&last)
                .ok_or_else(|| BuildError::Other("no final stage".into()))?;
            for (k, v) in &self.opts.labels {
                st.config.set_label(k, v);
            }
            let result = self.commit(st)?;
            self.say(export_id, &format!("writing image {} done", result.id));
            for t in &result.tags {
                self.say(export_id, &format!("naming to {t} done"));
            }
            Ok(result)
        })();
        if export_started.is_some() {
            match &exported {
                Ok(_) => self.emit(Event::Done { id: export_id, layer: None, cached: false }),
                Err(e) => {
                    let canceled = matches!(e, BuildError::Cancelled);
                    self.emit(Event::Failed { id: export_id, canceled });
                }
            }
        }
        exported
    }

    /// One line of a step's output from the engine itself.
    fn say(&self, id: usize, line: &str) {
        let data = format!("{line}\n");
        self.emit(Event::Output { id, stream: Stream::Stdout, data: data.as_bytes() });
    }

    /// Waits until the stages `deps` are done; false when another stage failed.
    pub(crate) fn wait_for(&self, deps: &[usize]) -> bool {
        let mut done = lock(&self.done);
        loop {
            if self.failed() {
                return false;
            }
            if deps.iter().all(|d| done.contains_key(d)) {
                return true;
            }
            done = self.done_cv.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub(crate) fn run_stage(
        &self,
        si: usize,
        scope: &strata_dockerfile::Scope,
        base: Option<BaseImage>,
        triggers: Option<&Dockerfile>,
        first_id: usize,
    ) -> Result<StageState> {
        let df = self.df;
        let sscope = &scope.stages[si];
        let stage = &df.stages[si];
        let label = stage.name.clone().unwrap_or_else(|| format!("stage-{si}"));
        let fired: &[Instruction] = triggers.map_or(&[], |t| &t.stages[0].instructions);
        let n = fired.len() + stage.instructions.len() + 1;
        let text = format!("[{label} 1/{n}] FROM {}", sscope.base_expanded);
        self.emit(Event::Step { id: first_id, text: &text });
        let (mut st, from) = match &sscope.base {
            BaseRef::Scratch => (
                StageState::new(ImageConfigBuilder::new(&Platform::host()), None, "", ""),
                "scratch".to_string(),
            ),
            BaseRef::Stage(p) => {
                let mut s = lock(&self.done).get(p).cloned().ok_or_else(|| {
                    BuildError::Other(format!("stage {p} was not built before stage {si}"))
                })?;
                s.cmd_set = false;
                s.args.clear();
                let k = format!("stage {}", s.key);
                (s, k)
            }
            BaseRef::Image(_) => {
                let img = base.ok_or_else(|| {
                    BuildError::Other(format!("base image of stage {si} was not loaded"))
                })?;
                (self.state_from_image(&img), format!("image {}", img.record.id))
            }
        };
        let epoch = self.epoch.map(|e| e.to_string()).unwrap_or_default();
        st.key = cache_key(&["FROM", &from, &epoch]);
        st.no_cache = self.opts.no_cache_filter.iter().any(|f| {
            stage.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(f)) || *f == si.to_string()
        });
        self.emit(Event::Done { id: first_id, layer: None, cached: false });
        if let Some(t) = triggers {
            // The base's triggers run first, then are gone from this stage's image.
            st.config.clear_onbuild();
            // The scope analysis applied the triggers' ENV (see `trigger_env`): each
            // trigger sees the assignments of those before it.
            let mut assigned = 0;
            for (k, ins) in fired.iter().enumerate() {
                let env = VarEnv(sscope.env_after_triggers(assigned).into_iter().collect());
                let itext = instruction_text(t, ins);
                let text = format!("[{label} {}/{n}] ONBUILD {itext}", k + 2);
                self.step(&mut st, ins, &itext, &text, &env, first_id + 1 + k)
                    .map_err(|e| onbuild::at_from(e, &itext, df, si))?;
                if let InstructionKind::Env { vars, .. } = &ins.kind {
                    assigned += vars.len();
                }
            }
        }
        for (ii, ins) in stage.instructions.iter().enumerate() {
            let k = fired.len() + ii;
            let itext = instruction_text(df, ins);
            let text = format!("[{label} {}/{n}] {itext}", k + 2);
            let env = VarEnv(sscope.env_at(ii).into_iter().collect());
            self.step(&mut st, ins, &itext, &text, &env, first_id + 1 + k)?;
        }
        Ok(st)
    }

    /// One instruction of a stage: its cache key, a hit or a run, its cache entry.
    fn step(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        itext: &str,
        text: &str,
        env: &VarEnv,
        id: usize,
    ) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        if self.failed() {
            // Another stage failed: its error is the build's; stop here.
            return Err(BuildError::Other("stopped: another stage failed".into()));
        }
        // A step starts when what it reads is there: its time is its own, as in BuildKit.
        self.wait_for_sources(ins, env);
        self.emit(Event::Step { id, text });
        let done = self.step_body(st, ins, itext, env, id);
        match &done {
            Ok(layer) => {
                self.emit(Event::Done { id, layer: layer.0.as_ref(), cached: layer.1 });
            }
            Err(e) => {
                let canceled = self.failed() || matches!(e, BuildError::Cancelled);
                self.emit(Event::Failed { id, canceled });
            }
        }
        done.map(|_| ())
    }

    /// [`Builder::step`] after its start: (the layer digest if known, whether cached).
    fn step_body(
        &self,
        st: &mut StageState,
        ins: &Instruction,
        itext: &str,
        env: &VarEnv,
        id: usize,
    ) -> Result<(Option<Digest>, bool)> {
        let extra = self.key_inputs(ins, env)?;
        let env_json = serde_json::to_string(&env.0).unwrap_or_default();
        let key = cache_key(&[&st.key, itext, &env_json, &extra]);
        // A `COPY --link` layer is made as if on scratch (see copy.rs), so, as in BuildKit,
        // it is looked up without the stage below: a new base reuses it. The stage's key
        // still chains it, so the steps after it depend on the base.
        let linked = matches!(&ins.kind,
            InstructionKind::Copy(c) | InstructionKind::Add(c) if c.link && c.chmod.is_none());
        let lookup = match linked {
            true => cache_key(&["COPY --link", &st.workdir, itext, &env_json, &extra]),
            false => key.clone(),
        };
        let skip = self.opts.no_cache || st.no_cache;
        let hit = if skip { None } else { self.store.cache_get(&lookup, self.lease)? };
        let created = self.created(hit.as_ref());
        let ctx = StepCtx { ins, text: itext, env, id, hit: hit.as_ref(), created: &created };
        let layer = self.instruction(st, ctx)?;
        st.key = key.clone();
        if st.created.as_ref().is_none_or(|c| *c < created) {
            st.created = Some(created.clone());
        }
        match st.new_layer.take() {
            // The step's cache entry is stored when its blob exists.
            Some(layer) => {
                let below = st.layers[..st.layers.len() - 1].to_vec();
                self.queue_layer(LayerJob { layer, below, cache: (lookup, created) });
            }
            None if hit.is_none() => {
                let entry = CacheEntry { layer: None, chain_id: None, created };
                self.store.cache_put(&lookup, &entry)?;
            }
            None => {}
        }
        Ok((layer, hit.is_some()))
    }

    /// Waits for the stages `ins` reads (`COPY --from`, `RUN --mount=...,from=`) to be built.
    fn wait_for_sources(&self, ins: &Instruction, env: &VarEnv) {
        let refs: Vec<&String> = match &ins.kind {
            InstructionKind::Copy(spec) | InstructionKind::Add(spec) => spec.from.iter().collect(),
            InstructionKind::Run { mounts, .. } => {
                mounts.iter().filter_map(|m| m.from.as_ref()).collect()
            }
            _ => Vec::new(),
        };
        for r in refs {
            if let Ok(name) = self.expand(r, env, ins.span) {
                let _ = self.stage_by_ref(&name);
            }
        }
    }

    pub(crate) fn state_from_image(&self, img: &BaseImage) -> StageState {
        let c = img.config.config();
        let mut st = StageState::new(
            ImageConfigBuilder::from_parent(&img.config),
            c.shell.clone(),
            c.working_dir.as_deref().unwrap_or_default(),
            c.user.as_deref().unwrap_or_default(),
        );
        for l in &img.record.layers {
            st.push_layer(LayerSlot::Ready(l.clone()), None);
        }
        st
    }

    /// The stage's layer dirs, bottom first, making the snapshots that are missing. A
    /// snapshot's name needs the diffIDs below it, so this waits for layers still being
    /// written only when a snapshot sits above them (a cached step after a fresh one).
    pub(crate) fn lowers(&self, st: &mut StageState) -> Result<Vec<PathBuf>> {
        if let Some(top) = st.lowers.iter().rposition(Option::is_none) {
            let mut diff_ids = Vec::with_capacity(top + 1);
            for slot in &st.layers[..=top] {
                diff_ids.push(slot.resolve()?.diff_id);
            }
            let chains = strata_oci::config::chain_ids(&diff_ids);
            for (i, chain) in chains.iter().enumerate() {
                if st.lowers[i].is_none() {
                    let record = st.layers[i].resolve()?;
                    st.lowers[i] = Some(self.store.layer_snapshot(chain, &record, self.lease)?);
                }
            }
        }
        Ok(st.lowers.iter().flatten().cloned().collect())
    }

    /// The cache input of a `--from`: the stage's key or the image's ID.
    pub(crate) fn source_key(&self, f: &str, span: Span) -> Result<String> {
        match self.stage_by_ref(f) {
            Some(Some(s)) => Ok(format!("from stage {}\n", s.key)),
            Some(None) => Err(self.err(span, format!("stage {f} was not built (or failed)"))),
            None => Ok(format!("from image {}\n", self.image_stage(f, span)?.0)),
        }
    }

    /// The layer stack a `--from` names, with its snapshots made.
    pub(crate) fn source_stack(&self, f: &str, span: Span) -> Result<Vec<PathBuf>> {
        let mut st = match self.stage_by_ref(f) {
            Some(Some(s)) => s,
            Some(None) => {
                return Err(self.err(span, format!("stage {f} was not built (or failed)")))
            }
            None => self.image_stage(f, span)?.1,
        };
        self.lowers(&mut st)
    }

    /// Records a cached step's result in the stage without running it.
    pub(crate) fn apply_cached(
        &self,
        st: &mut StageState,
        hit: &CacheEntry,
        history: History,
    ) -> Result<Option<Digest>> {
        match &hit.layer {
            Some(l) => {
                st.config.add_layer_history(history);
                st.push_layer(LayerSlot::Ready(l.clone()), None);
                Ok(Some(l.digest.clone()))
            }
            None => {
                st.config.add_empty_layer_history(history);
                Ok(None)
            }
        }
    }
}

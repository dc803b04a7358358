//! Each Dockerfile instruction's effect on the stage: config edits and history entries for
//! the metadata instructions, and the dispatch of RUN and COPY/ADD.

use std::path::PathBuf;

use strata_dockerfile::{InstructionKind, ShellOrExec, Span};
use strata_oci::config::{Healthcheck, History};
use strata_oci::Digest;
use strata_sandbox::{Network, Rootfs};

use crate::copy::Mkdirs;
use crate::run_step::RunStep;
use crate::{fsview, history, Builder, Result, StageState, StepCtx, VarEnv};

impl Builder<'_> {
    pub(crate) fn instruction(&self, st: &mut StageState, step: StepCtx) -> Result<Option<Digest>> {
        let StepCtx { ins, text, env, id, hit, created } = step;
        let span = ins.span;
        let hist = |by: String| History {
            created: Some(created.to_string()),
            created_by: Some(by),
            comment: Some("buildkit.dockerfile.v0".into()),
            ..History::default()
        };
        match &ins.kind {
            InstructionKind::Arg(decls) => {
                // BuildKit: `ARG` and each name with its default as written, expanded;
                // not the value a --build-arg gives it.
                let mut shown = Vec::new();
                for d in decls {
                    let name = self.expand(&d.name, env, span)?;
                    shown.push(match &d.default {
                        Some(v) => format!("{name}={}", self.expand(v, env, span)?),
                        None => name.clone(),
                    });
                    st.args.push(name);
                }
                st.config.add_empty_layer_history(hist(format!("ARG {}", shown.join(" "))));
            }
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
                if let Some(h) = hit {
                    return self.apply_cached(st, h, hist(format!("WORKDIR {abs}")));
                }
                let lowers = self.lowers(st)?;
                let rel = self.resolve_in_stage(&lowers, &abs, span)?;
                if !rel.as_os_str().is_empty() && !fsview::is_dir(&lowers, &rel) {
                    let dir = self.fresh_dir("workdir")?;
                    // BuildKit's mkdir -p as the USER: every directory it makes is theirs.
                    let owner = self.resolve_owner(&lowers, &st.user, span)?;
                    Mkdirs { lowers: &lowers, owner }.make(&dir, &rel)?;
                    return self.add_layer(st, dir, hist(format!("WORKDIR {abs}")));
                }
                st.config.add_empty_layer_history(hist(format!("WORKDIR {abs}")));
            }
            InstructionKind::Cmd(c) => {
                let v = self.shell_or_exec(st, c);
                st.config.set_cmd(Some(v.clone()));
                st.cmd_set = true;
                st.config
                    .add_empty_layer_history(hist(format!("CMD {}", history::go_quoted_list(&v))));
            }
            InstructionKind::Entrypoint(c) => {
                let v = self.shell_or_exec(st, c);
                st.config.set_entrypoint(Some(v.clone()));
                // Docker: an ENTRYPOINT resets a CMD inherited from the base.
                if !st.cmd_set {
                    st.config.set_cmd(None);
                }
                st.config.add_empty_layer_history(hist(format!(
                    "ENTRYPOINT {}",
                    history::go_quoted_list(&v)
                )));
            }
            InstructionKind::Shell(s) => {
                st.shell = s.clone();
                st.config.set_shell(s.clone());
                st.config.add_empty_layer_history(hist(format!("SHELL {}", history::go_list(s))));
            }
            InstructionKind::Expose(ports) => {
                // Docker's nat.ParsePortSpecs: `8080/TCP`, `08080` and `8080` are one port.
                let mut keys = std::collections::BTreeSet::new();
                for p in ports {
                    for p in
                        self.lex.process_words(p, env).map_err(|e| self.err(span, e.to_string()))?
                    {
                        let k = history::port_keys(&p)
                            .map_err(|e| self.err(span, format!("EXPOSE {p}: {e}")))?;
                        keys.extend(k);
                    }
                }
                for k in &keys {
                    st.config.expose_port(k);
                }
                st.config.add_empty_layer_history(hist(history::expose(&keys)));
            }
            InstructionKind::Volume(vols) => {
                let mut shown = Vec::new();
                for v in vols {
                    let v = self.expand(v, env, span)?;
                    st.config.add_volume(&v);
                    shown.push(v);
                }
                st.config
                    .add_empty_layer_history(hist(format!("VOLUME {}", history::go_list(&shown))));
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
                st.config.add_empty_layer_history(hist(history::healthcheck(&hc)));
            }
            InstructionKind::Onbuild(_) => {
                let trigger = text
                    .split_once(char::is_whitespace)
                    .map(|(_, rest)| rest.trim().to_string())
                    .unwrap_or_default();
                // BuildKit records the trigger in the config only: no history entry.
                st.config.add_onbuild(&trigger);
            }
            InstructionKind::Maintainer(m) => {
                st.config.set_author(m);
                st.config.add_empty_layer_history(hist(format!("MAINTAINER {m}")));
            }
            InstructionKind::Run { cmd, mounts, network, security, heredocs } => {
                if security.as_deref() == Some("insecure") {
                    return Err(self.err(span, "RUN --security=insecure is not supported"));
                }
                let net = match network.as_deref() {
                    None | Some("default") => self.opts.network,
                    Some("host") => Network::Host,
                    Some("none") => Network::None,
                    Some(other) => {
                        return Err(self.err(span, format!("unknown RUN --network={other}")))
                    }
                };
                let (args, script) = self.run_args(st, cmd, heredocs);
                let build_args: Vec<(String, String)> = st
                    .args
                    .iter()
                    .map(|k| (k.clone(), env.0.get(k).cloned().unwrap_or_default()))
                    .collect();
                let by = format!("{} # buildkit", history::run(&args, &build_args));
                if let Some(h) = hit {
                    return self.apply_cached(st, h, hist(by));
                }
                let step = RunStep { ins, args, script, mounts, env, network: net, id };
                return self.run_step(st, step, hist(by));
            }
            InstructionKind::Copy(spec) | InstructionKind::Add(spec) => {
                let add = matches!(ins.kind, InstructionKind::Add(_));
                // BuildKit: the keyword, the expanded sources and destination, no flags.
                let mut by = String::from(if add { "ADD" } else { "COPY" });
                for w in spec.srcs.iter().chain([&spec.dest]) {
                    by.push(' ');
                    by.push_str(&self.expand(w, env, span)?);
                }
                by.push_str(" # buildkit");
                if let Some(h) = hit {
                    return self.apply_cached(st, h, hist(by));
                }
                let dir = self.copy_step(st, spec, add, env, span)?;
                return self.add_layer(st, dir, hist(by));
            }
        }
        Ok(None)
    }

    pub(crate) fn shell_or_exec(&self, st: &StageState, c: &ShellOrExec) -> Vec<String> {
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
    pub(crate) fn resolve_owner(
        &self,
        lowers: &[PathBuf],
        spec: &str,
        span: Span,
    ) -> Result<(u32, u32)> {
        if spec.is_empty() {
            return Ok((0, 0));
        }
        if lowers.is_empty() {
            let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
            return match (u.parse(), g.parse()) {
                (Ok(u), Ok(g)) => Ok((u, g)),
                _ => Err(self.err(
                    span,
                    format!("cannot resolve user {spec:?}: the stage has no /etc/passwd"),
                )),
            };
        }
        let r = strata_sandbox::resolve_user(&Rootfs::Lowers(lowers.to_vec()), spec)
            .map_err(|e| self.err(span, format!("cannot resolve user {spec:?}: {e}")))?;
        Ok((r.uid, r.gid))
    }
}

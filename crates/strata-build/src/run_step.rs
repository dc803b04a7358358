//! RUN: the sandbox over an overlay of the stage's snapshots; its upper dir becomes the
//! layer. A failure reports the command, its exit status and its last output lines.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use strata_dockerfile::{Diag, Heredoc, Instruction, ShellOrExec};
use strata_oci::config::History;
use strata_oci::Digest;
use strata_sandbox::{Config, Network, Process, Rootfs, RunOptions, Sandbox};

use crate::{io_ctx, BuildError, Builder, Event, Result, StageState, Stream, VarEnv};

impl Builder<'_> {
    /// A RUN's argv, and the heredoc script to mount when the RUN is one heredoc with a
    /// shebang. As BuildKit: `RUN <<EOF` alone runs the body with the shell (or, with `#!`,
    /// as a script); any other use of heredocs hands the whole text to the shell.
    pub(crate) fn run_args(
        &self,
        st: &StageState,
        cmd: &ShellOrExec,
        heredocs: &[Heredoc],
    ) -> (Vec<String>, Option<(String, String)>) {
        let ShellOrExec::Shell(line) = cmd else {
            return (self.shell_or_exec(st, cmd), None);
        };
        if heredocs.is_empty() {
            return (self.shell_or_exec(st, cmd), None);
        }
        if let [h] = heredocs {
            let word = line.trim().trim_start_matches("<<").trim_start_matches('-');
            if word.trim_matches(['\'', '"']) == h.name {
                let body = h.body();
                if body.starts_with("#!") {
                    let path = format!("/dev/pipes/{}", h.name);
                    return (vec![path.clone()], Some((path, body)));
                }
                let mut v = st.shell.clone();
                v.push(body);
                return (v, None);
            }
        }
        let mut text = line.clone();
        text.push('\n');
        for h in heredocs {
            text.push_str(&h.content);
            text.push_str(&h.name);
            text.push('\n');
        }
        let mut v = st.shell.clone();
        v.push(text);
        (v, None)
    }

    pub(crate) fn run_step(
        &self,
        st: &mut StageState,
        step: RunStep,
        history: History,
    ) -> Result<Option<Digest>> {
        let RunStep { ins, args, script, mounts, env, network, id } = step;
        let upper = self.fresh_dir("run")?;
        let work = self.fresh_dir("work")?;
        let mut lowers = self.lowers(st)?;
        if lowers.is_empty() {
            lowers.push(self.fresh_dir("empty")?);
        }
        let mut process = Process {
            args: args.clone(),
            env: env.0.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: if st.workdir.is_empty() { "/".into() } else { st.workdir.clone() },
            user: st.user.clone(),
        };
        // Secrets, cache locks and copies live until the run ends (dropped with `prepared`).
        let prepared = self.run_mounts(mounts, env, ins.span, &mut process.env)?;
        let mut config = Config::new(
            Rootfs::Overlay { lowers, upper: upper.clone(), work: work.clone() },
            process,
        );
        config.network = network;
        config.mounts.extend(prepared.mounts.iter().cloned());
        if let Some((target, body)) = script {
            let path = self.fresh_dir("script")?.join("script");
            write_private(&path, body.as_bytes(), 0o755)
                .map_err(io_ctx("writing the RUN heredoc script"))?;
            config.mounts.push(strata_sandbox::Mount::Bind {
                source: path,
                target,
                read_only: true,
            });
        }
        if network == Network::Host {
            // Docker gives RUN the host's resolver configuration; the sandbox takes the
            // mount points back out of the upper dir afterwards.
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
        let sink = Sink { builder: self, id, tail: RefCell::new(Tail::default()) };
        let status = {
            let mut out = SinkWriter(&sink, Stream::Stdout);
            let mut err = SinkWriter(&sink, Stream::Stderr);
            let ropts = RunOptions { cancel: Some(self.cancel.clone()), ..RunOptions::default() };
            sandbox.run(&mut out, &mut err, &ropts)
        };
        drop(prepared);
        let tail = sink.tail.into_inner().lines();
        if matches!(status, Err(strata_sandbox::Error::Cancelled)) && !self.failed() {
            return Err(BuildError::Cancelled);
        }
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
        let empty = fs::read_dir(&upper).map(|mut d| d.next().is_none()).unwrap_or(false);
        if empty {
            st.config.add_empty_layer_history(history);
            return Ok(None);
        }
        self.add_layer(st, upper, history)
    }
}

/// The last lines a RUN printed, for the error message.
#[derive(Default)]
pub(crate) struct Tail {
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

pub(crate) struct Sink<'b, 'a> {
    builder: &'b Builder<'a>,
    id: usize,
    tail: RefCell<Tail>,
}

pub(crate) struct SinkWriter<'s, 'b, 'a>(&'s Sink<'b, 'a>, Stream);

impl Write for SinkWriter<'_, '_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.tail.borrow_mut().push(buf);
        self.0.builder.emit(Event::Output { id: self.0.id, stream: self.1, data: buf });
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A RUN to execute (the parts [`Builder::run_step`] needs).
pub(crate) struct RunStep<'i> {
    pub(crate) ins: &'i Instruction,
    pub(crate) args: Vec<String>,
    /// A heredoc script: (path in the container, body).
    pub(crate) script: Option<(String, String)>,
    pub(crate) mounts: &'i [strata_dockerfile::Mount],
    pub(crate) env: &'i VarEnv,
    pub(crate) network: Network,
    pub(crate) id: usize,
}

/// Writes a file only its owner can read (secrets, scripts) with `mode` set before any
/// byte lands in it.
pub(crate) fn write_private(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(())
}

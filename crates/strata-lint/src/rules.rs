//! The rule table and the checks. One pass over the syntax tree keeps the
//! per-stage state the rules need; RUN commands go through the shell
//! splitter in [`crate::shell`].

use std::collections::{BTreeMap, BTreeSet};

use strata_dockerfile::{parse, Node, Span};

use crate::config::{Config, LabelType, Severity};
use crate::labels;
use crate::shell::{self, Command, Sep};
use crate::Finding;

/// A rule: code, default severity, one-line description.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub code: &'static str,
    pub severity: Severity,
    pub description: &'static str,
}

const fn r(code: &'static str, severity: Severity, description: &'static str) -> Rule {
    Rule { code, severity, description }
}

use Severity::{Error as E, Ignore as IG, Info as I, Style as S, Warning as W};

/// Every rule this linter knows, hadolint's DL rules first.
pub const RULES: &[Rule] = &[
    r("DL1000", E, "The Dockerfile cannot be parsed"),
    r("DL1001", IG, "Inline ignore pragmas are discouraged"),
    r("DL3000", E, "Use an absolute WORKDIR"),
    r("DL3001", I, "This command makes no sense inside a container"),
    r("DL3002", W, "The last USER should not be root"),
    r("DL3003", W, "Use WORKDIR to switch to a directory instead of cd"),
    r("DL3004", E, "Do not use sudo: it has unpredictable TTY and signal behaviour; use gosu"),
    r("DL3006", W, "Always tag the version of an image explicitly"),
    r("DL3007", W, "Using latest is error-prone; pin the version of the base image"),
    r("DL3008", W, "Pin versions in apt-get install (apt-get install <package>=<version>)"),
    r("DL3009", I, "Delete the apt-get lists after installing something"),
    r("DL3010", I, "Use ADD to extract an archive into the image"),
    r("DL3011", E, "Valid UNIX ports range from 0 to 65535"),
    r("DL3012", E, "Multiple HEALTHCHECK instructions"),
    r("DL3013", W, "Pin versions in pip (pip install <package>==<version>)"),
    r("DL3014", W, "Use the -y switch to avoid manual input (apt-get -y install <package>)"),
    r("DL3015", I, "Avoid additional packages by specifying --no-install-recommends"),
    r("DL3016", W, "Pin versions in npm (npm install <package>@<version>)"),
    r("DL3018", W, "Pin versions in apk add (apk add <package>=<version>)"),
    r("DL3019", I, "Use the --no-cache switch to avoid the need for --update and removing /var/cache/apk/*"),
    r("DL3020", E, "Use COPY instead of ADD for files and folders"),
    r("DL3021", E, "COPY with more than 2 arguments requires the last argument to end with /"),
    r("DL3022", W, "COPY --from should reference a previously defined FROM alias"),
    r("DL3023", E, "COPY --from cannot reference its own FROM alias"),
    r("DL3024", E, "FROM aliases (stage names) must be unique"),
    r("DL3025", W, "Use arguments JSON notation for CMD and ENTRYPOINT arguments"),
    r("DL3026", E, "Use only an allowed registry in the FROM image"),
    r("DL3027", W, "Do not use apt as it is meant to be an end-user tool; use apt-get or apt-cache"),
    r("DL3028", W, "Pin versions in gem install (gem install <gem>:<version>)"),
    r("DL3029", W, "Do not use the --platform flag with FROM"),
    r("DL3030", W, "Use the -y switch to avoid manual input (yum install -y <package>)"),
    r("DL3032", W, "yum clean all missing after yum command"),
    r("DL3033", W, "Specify version with yum install -y <package>-<version>"),
    r("DL3034", W, "Non-interactive switch missing from zypper command (zypper install -y)"),
    r("DL3035", W, "Do not use zypper dist-upgrade"),
    r("DL3036", W, "zypper clean missing after zypper use"),
    r("DL3037", W, "Specify version with zypper install -y <package>=<version>"),
    r("DL3038", W, "Use the -y switch to avoid manual input (dnf install -y <package>)"),
    r("DL3040", W, "dnf clean all missing after dnf command"),
    r("DL3041", W, "Specify version with dnf install -y <package>-<version>"),
    r("DL3042", W, "Avoid the pip cache: use pip install --no-cache-dir <package>"),
    r("DL3043", E, "ONBUILD, FROM or MAINTAINER triggered from within ONBUILD is not allowed"),
    r("DL3044", E, "Do not refer to an environment variable within the same ENV statement where it is defined"),
    r("DL3045", W, "COPY to a relative destination without WORKDIR set"),
    r("DL3046", W, "useradd without -l and with a high UID makes an excessively large image"),
    r("DL3047", I, "wget without --progress floods the build log"),
    r("DL3048", S, "Invalid label key"),
    r("DL3049", I, "A label required by the label schema is missing"),
    r("DL3050", I, "Superfluous label(s) present (not in the label schema)"),
    r("DL3051", W, "A label from the label schema is empty"),
    r("DL3052", W, "A label from the label schema is not a valid URL"),
    r("DL3053", W, "A label from the label schema is not a valid RFC 3339 time"),
    r("DL3054", W, "A label from the label schema is not a valid SPDX license identifier"),
    r("DL3055", W, "A label from the label schema is not a valid git hash"),
    r("DL3056", W, "A label from the label schema is not a valid semantic version"),
    r("DL3057", IG, "HEALTHCHECK instruction missing"),
    r("DL3058", W, "A label from the label schema is not a valid e-mail address"),
    r("DL3059", I, "Multiple consecutive RUN instructions; consider consolidation"),
    r("DL3060", I, "yarn cache clean missing after yarn install"),
    r("DL3061", E, "Invalid instruction order: a Dockerfile must begin with FROM, ARG or a comment"),
    r("DL3062", W, "Pin versions in go install/get/run (module@version)"),
    r("DL3063", W, "The stage name is reserved (scratch, context)"),
    r("DL3064", W, "The ARG or ENV name suggests sensitive data baked into the image"),
    r("DL3065", W, "FROM --platform=$TARGETPLATFORM is redundant: it is the default"),
    r("DL3066", I, "USER with a non-numeric user: runtimes cannot verify it is not root"),
    r("DL3067", W, "Copying the whole root filesystem of another stage"),
    r("DL4000", E, "MAINTAINER is deprecated; use LABEL maintainer=..."),
    r("DL4001", W, "Either use wget or curl, but not both"),
    r("DL4003", W, "Multiple CMD instructions found; only the last one takes effect"),
    r("DL4004", E, "Multiple ENTRYPOINT instructions found; only the last one takes effect"),
    r("DL4005", W, "Use SHELL to change the default shell instead of linking /bin/sh"),
    r("DL4006", W, "Set the SHELL option -o pipefail before RUN with a pipe in it"),
    r("ST1001", W, "The whole build context is copied before dependencies are installed: every source change re-runs the install"),
    r("ST1002", E, "A literal credential in ENV, ARG or LABEL is stored in the image"),
    r("ST1003", W, "The final stage sets no USER: the container runs as root"),
    r("ST1004", W, "COPY/ADD of the whole context without a .dockerignore"),
    r("ST1005", I, "The final image keeps compilers or build tools; build in an earlier stage"),
    r("ST1006", I, "The final image keeps a package manager cache"),
];

/// The rule with `code`, if known.
pub fn rule(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code == code)
}

/// A finding before severities are decided.
struct Raw {
    code: &'static str,
    message: String,
    span: Span,
}

#[derive(Default, Clone)]
struct StageState {
    name: Option<String>,
    workdir: bool,
    healthchecks: usize,
    cmds: usize,
    entrypoints: usize,
    pipefail: bool,
    posix_shell: bool,
    labels: BTreeMap<String, String>,
    user: Option<(String, Span)>,
    wget: bool,
    curl: bool,
    archives: Vec<(String, Span)>,
    pip_no_cache: bool,
    whole_context_copy: Option<Span>,
    from_span: Span,
    /// This stage's result ends up in the final image.
    in_final: bool,
    /// The stage is the last one.
    is_last: bool,
}

struct Ctx<'a> {
    cfg: &'a Config,
    out: Vec<Raw>,
}

impl Ctx<'_> {
    fn report(&mut self, code: &'static str, span: Span, message: impl Into<String>) {
        self.out.push(Raw { code, message: message.into(), span });
    }
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    if t.len() >= 2
        && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')))
    {
        t[1..t.len() - 1].to_string()
    } else {
        t.to_string()
    }
}

fn flag<'a>(node: &'a Node, name: &str) -> Option<&'a str> {
    node.flags.iter().find_map(|f| {
        let f = f.strip_prefix("--")?;
        match f.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if f == name => Some(""),
            _ => None,
        }
    })
}

/// `(image, tag, digest)` of a FROM image reference.
fn split_image(image: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match image.split_once('@') {
        Some((a, d)) => (a, Some(d)),
        None => (image, None),
    };
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..]), digest),
        None => (rest, None, digest),
    }
}

fn registry_of(name: &str) -> &str {
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

fn registry_allowed(reg: &str, allowed: &[String]) -> bool {
    let docker = |r: &str| matches!(r, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    allowed.iter().any(|a| {
        a == "*"
            || a == reg
            || (docker(a) && docker(reg))
            || a.strip_prefix("*.").is_some_and(|d| reg.ends_with(&format!(".{d}")) || reg == d)
    })
}

const ARCHIVE_EXT: &[&str] = &[
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz",
    ".tbz2",
    ".tar.xz",
    ".txz",
    ".tar.zst",
    ".tar.lz",
    ".tar.lzma",
    ".tlz",
    ".gz",
    ".bz2",
    ".xz",
    ".zst",
    ".lz",
    ".lzma",
    ".zip",
    ".Z",
    ".tar.Z",
];

fn is_archive(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    ARCHIVE_EXT.iter().any(|e| p.len() > e.len() && p.ends_with(e))
}

fn is_url(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://")
        || l.starts_with("https://")
        || l.starts_with("git@")
        || l.starts_with("git://")
        || l.starts_with("ftp://")
}

fn is_absolute(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with('/')
        || p.starts_with('$')
        || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
        || p.starts_with('\\')
}

/// Words of a secret-ish name, split on `_`, `-`, `.` and case changes.
fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if matches!(c, '_' | '-' | '.') {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Does an ARG/ENV name suggest it holds a secret?
pub fn secret_name(name: &str) -> bool {
    let w = name_words(name);
    if w.iter()
        .any(|x| matches!(x.as_str(), "public" | "file" | "path" | "dir" | "url" | "id_file"))
        && !w.iter().any(|x| x == "id")
    {
        // `*_PASSWORD_FILE` points at a secret, it is not one.
        if w.last().is_some_and(|l| matches!(l.as_str(), "file" | "path" | "dir" | "url"))
            || w.iter().any(|x| x == "public")
        {
            return false;
        }
    }
    let direct = [
        "password",
        "passwd",
        "pword",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "credential",
        "credentials",
        "pwd",
    ];
    if w.iter().any(|x| direct.contains(&x.as_str())) {
        // PWD alone is the working directory.
        return !(w.len() == 1 && w[0] == "pwd");
    }
    let key_prefix =
        ["api", "access", "private", "secret", "encryption", "signing", "auth", "client"];
    w.windows(2).any(|p| key_prefix.contains(&p[0].as_str()) && p[1] == "key")
}

/// Does a value look like a literal credential (not a variable reference)?
fn secret_value(v: &str) -> Option<&'static str> {
    let v = v.trim();
    if v.contains("-----BEGIN") && v.contains("PRIVATE KEY") {
        return Some("a private key");
    }
    let prefixes: &[(&str, &str, usize)] = &[
        ("AKIA", "an AWS access key id", 20),
        ("ASIA", "an AWS temporary access key id", 20),
        ("ghp_", "a GitHub token", 40),
        ("gho_", "a GitHub token", 40),
        ("ghs_", "a GitHub token", 40),
        ("github_pat_", "a GitHub token", 40),
        ("glpat-", "a GitLab token", 26),
        ("xoxb-", "a Slack token", 20),
        ("xoxp-", "a Slack token", 20),
        ("sk_live_", "a Stripe secret key", 24),
        ("npm_", "an npm token", 40),
        ("AIza", "a Google API key", 39),
    ];
    for (p, what, len) in prefixes {
        if v.starts_with(p)
            && v.len() >= *len
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Some(what);
        }
    }
    None
}

/// The script a RUN runs, as commands; `None` for forms we cannot read.
fn run_commands(node: &Node) -> Vec<Command> {
    if node.json {
        let Some((first, rest)) = node.args.split_first() else { return Vec::new() };
        let base = first.rsplit('/').next().unwrap_or(first);
        if matches!(base, "sh" | "bash" | "ash" | "dash" | "zsh") {
            if let Some(i) = rest.iter().position(|a| a.starts_with('-') && a.contains('c')) {
                if let Some(script) = rest.get(i + 1) {
                    return shell::split(script);
                }
            }
        }
        return vec![Command { name: first.clone(), args: rest.to_vec(), sep: Sep::End }];
    }
    shell::split(&run_script(node))
}

/// Does a script hold a command substitution `$(...)` with a pipe in it?
fn substitution_has_pipe(script: &str) -> bool {
    let mut rest = script;
    while let Some(i) = rest.find("$(") {
        let inner = &rest[i + 2..];
        let mut depth = 1usize;
        let mut end = inner.len();
        for (j, ch) in inner.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        if shell::split(&inner[..end]).iter().any(|c| c.sep == Sep::Pipe) {
            return true;
        }
        rest = inner;
    }
    false
}

/// The shell script a RUN runs (heredoc bodies for `RUN <<EOF`).
fn run_script(node: &Node) -> String {
    let script = node.args.first().map(String::as_str).unwrap_or("");
    if node.json {
        return node.args.join(" ");
    }
    if script.trim_start().starts_with("<<") && !node.heredocs.is_empty() {
        node.heredocs.iter().map(|h| h.body() + "\n").collect()
    } else {
        script.to_string()
    }
}

/// Commands in a RUN, command substitutions included.
fn run_command_count(node: &Node) -> usize {
    let subst: usize =
        node.args.iter().map(|a| a.matches("$(").count() + a.matches('`').count() / 2).sum();
    run_commands(node).len() + subst
}

fn is_pip(c: &Command) -> bool {
    let n = c.base_name();
    let pip = n == "pip"
        || n.strip_prefix("pip")
            .is_some_and(|r| r.chars().all(|ch| ch.is_ascii_digit() || ch == '.'));
    let python_m =
        n.starts_with("python") && c.args.windows(2).any(|w| w[0] == "-m" && w[1] == "pip");
    pip || python_m
}

/// Arguments after the first occurrence of a subcommand in `subs`, with
/// option values that the given flags take removed. Returns the packages.
fn packages_after(c: &Command, subs: &[&str], flags_with_value: &[&str]) -> Option<Vec<String>> {
    let pos = c.args.iter().position(|a| subs.contains(&a.as_str()))?;
    let mut pkgs = Vec::new();
    let mut skip = false;
    for a in &c.args[pos + 1..] {
        if skip {
            skip = false;
            continue;
        }
        if a.starts_with('-') {
            if flags_with_value.contains(&a.as_str()) {
                skip = true;
            }
            continue;
        }
        pkgs.push(a.clone());
    }
    Some(pkgs)
}

fn has_install(c: &Command, subs: &[&str]) -> bool {
    c.args.iter().any(|a| subs.contains(&a.as_str()))
}

fn cmd_is(c: &Command, name: &str) -> bool {
    c.base_name() == name
}

/// Build tools whose presence in the final image ST1005 reports.
const BUILD_TOOLS: &[&str] = &[
    "build-essential",
    "gcc",
    "g++",
    "clang",
    "make",
    "cmake",
    "autoconf",
    "automake",
    "libtool",
    "golang",
    "golang-go",
    "rustc",
    "cargo",
    "gcc-c++",
    "musl-dev",
    "build-base",
    "alpine-sdk",
    "Development Tools",
];

struct RunInfo {
    cmds: Vec<Command>,
    all: Vec<Command>,
    cache_mounts: Vec<String>,
}

impl RunInfo {
    fn cached(&self, dirs: &[&str]) -> bool {
        self.cache_mounts.iter().any(|t| dirs.iter().any(|d| t.trim_end_matches('/') == *d))
    }
}

fn cache_mount_targets(node: &Node) -> Vec<String> {
    node.flags
        .iter()
        .filter_map(|f| f.strip_prefix("--mount="))
        .filter(|m| m.split(',').any(|kv| kv == "type=cache"))
        .filter_map(|m| {
            m.split(',').find_map(|kv| {
                kv.strip_prefix("target=")
                    .or_else(|| kv.strip_prefix("dst="))
                    .or_else(|| kv.strip_prefix("destination="))
                    .map(str::to_string)
            })
        })
        .collect()
}

fn check_run(ctx: &mut Ctx<'_>, st: &mut StageState, node: &Node) {
    if !st.posix_shell {
        // SHELL is PowerShell or cmd: the command rules assume a POSIX shell.
        return;
    }
    let cmds = run_commands(node);
    let all = shell::unwrap(&cmds);
    let info = RunInfo { cmds, all, cache_mounts: cache_mount_targets(node) };
    let sp = node.span;
    let all = &info.all;

    for c in &info.cmds {
        let n = c.base_name();
        if matches!(
            n,
            "ssh"
                | "vim"
                | "shutdown"
                | "service"
                | "ps"
                | "free"
                | "top"
                | "kill"
                | "mount"
                | "ifconfig"
        ) {
            ctx.report("DL3001", sp, format!("`{n}` makes no sense inside a container"));
        }
        if n == "sudo" {
            ctx.report(
                "DL3004",
                sp,
                "do not use sudo in RUN; the build already runs as the USER you set",
            );
        }
    }
    if all.iter().any(|c| cmd_is(c, "cd")) {
        ctx.report("DL3003", sp, "use WORKDIR to switch to a directory instead of cd");
    }

    // apt-get
    let apt_installs: Vec<&Command> =
        all.iter().filter(|c| cmd_is(c, "apt-get") && has_install(c, &["install"])).collect();
    for c in &apt_installs {
        let pkgs = packages_after(
            c,
            &["install"],
            &["-o", "-t", "--target-release", "-c", "--config-file"],
        )
        .unwrap_or_default();
        let unpinned: Vec<&String> =
            pkgs.iter().filter(|p| !p.contains('=') && !p.ends_with(".deb")).collect();
        if !unpinned.is_empty() {
            ctx.report(
                "DL3008",
                sp,
                format!("pin versions in apt-get install: {}", join(&unpinned)),
            );
        }
        if !c.has_flag(&["-y", "--yes", "--assume-yes"])
            && !c.args.iter().any(|a| {
                a == "-qq"
                    || a == "-q=2"
                    || a == "--quiet=2"
                    || (a.starts_with('-') && !a.starts_with("--") && a.matches('q').count() >= 2)
            })
        {
            ctx.report("DL3014", sp, "use apt-get install -y to avoid waiting for input");
        }
        let no_rec = c.args.iter().any(|a| {
            a == "--no-install-recommends"
                || a.contains("APT::Install-Recommends=false")
                || a.contains("APT::Install-Recommends=0")
        });
        if !no_rec {
            ctx.report(
                "DL3015",
                sp,
                "add --no-install-recommends to avoid installing extra packages",
            );
        }
    }
    if all.iter().any(|c| cmd_is(c, "apt")) {
        ctx.report("DL3027", sp, "use apt-get or apt-cache instead of apt in scripts");
    }
    let apt_update = all.iter().any(|c| cmd_is(c, "apt-get") && c.subcommand() == Some("update"));
    let apt_clean = all.iter().any(|c| {
        (cmd_is(c, "rm") && c.args.iter().any(|a| a.starts_with("/var/lib/apt/lists")))
            || (cmd_is(c, "apt-get") && c.subcommand() == Some("dist-clean"))
    });
    if st.in_final
        && (apt_update || !apt_installs.is_empty())
        && !apt_clean
        && !info.cached(&["/var/lib/apt/lists", "/var/lib/apt"])
    {
        ctx.report(
            "DL3009",
            sp,
            "delete the apt-get lists after installing (rm -rf /var/lib/apt/lists/*)",
        );
    }

    // pip
    let pip_cmds: Vec<&Command> =
        all.iter().filter(|c| is_pip(c) && has_install(c, &["install"])).collect();
    for c in &pip_cmds {
        let with_value = [
            "-r",
            "--requirement",
            "-c",
            "--constraint",
            "-i",
            "--index-url",
            "--extra-index-url",
            "-f",
            "--find-links",
            "-t",
            "--target",
            "--prefix",
            "--root",
            "--src",
            "--upgrade-strategy",
            "--progress-bar",
            "--platform",
            "--python-version",
            "--implementation",
            "--abi",
            "--trusted-host",
            "--cache-dir",
            "--log",
            "--proxy",
            "--retries",
            "--timeout",
            "--exists-action",
            "--cert",
            "--client-cert",
            "--global-option",
            "--install-option",
            "--no-binary",
            "--only-binary",
            "-e",
            "--editable",
            "--config-settings",
            "-C",
            "--python",
        ];
        let pkgs = packages_after(c, &["install"], &with_value).unwrap_or_default();
        let unpinned: Vec<&String> = pkgs
            .iter()
            .filter(|p| {
                let p = p.as_str();
                !(p.contains("==")
                    || p.contains(">=")
                    || p.contains("<=")
                    || p.contains("~=")
                    || p.contains("!=")
                    || p.contains('<')
                    || p.contains('>')
                    || p.contains('@')
                    || p.starts_with('.')
                    || p.starts_with('/')
                    || p.starts_with('$')
                    || (p.contains("://") && !p.starts_with("git+"))
                    || p.ends_with(".whl")
                    || p.ends_with(".tar.gz")
                    || p.ends_with(".zip")
                    || p.contains("==="))
            })
            .collect();
        if !unpinned.is_empty() {
            ctx.report("DL3013", sp, format!("pin versions in pip install: {}", join(&unpinned)));
        }
        let no_cache =
            c.args.iter().any(|a| a == "--no-cache-dir" || a.starts_with("--no-cache-dir="));
        if !no_cache && !st.pip_no_cache && !info.cached(&["/root/.cache/pip", "/root/.cache"]) {
            ctx.report(
                "DL3042",
                sp,
                "use pip install --no-cache-dir so the pip cache stays out of the layer",
            );
        }
    }

    // npm
    for c in all.iter().filter(|c| cmd_is(c, "npm")) {
        let Some(pkgs) = packages_after(
            c,
            &["install", "i", "add", "in", "isntall"],
            &["--prefix", "--registry", "--cache", "-w", "--workspace", "--tag"],
        ) else {
            continue;
        };
        if c.subcommand().is_some_and(|s| !["install", "i", "add", "in", "isntall"].contains(&s)) {
            continue;
        }
        let unpinned: Vec<&String> = pkgs
            .iter()
            .filter(|p| {
                let name = p.strip_prefix('@').map(|r| r.split_once('/').map(|x| x.1).unwrap_or(r));
                let pinned = match name {
                    Some(rest) => rest.contains('@'),
                    None => p.contains('@'),
                };
                !(pinned
                    || p.starts_with('.')
                    || p.starts_with('/')
                    || p.starts_with('$')
                    || p.contains("://")
                    || p.contains(':')
                    || p.ends_with(".tgz")
                    || p.ends_with(".tar.gz")
                    || p.contains("#"))
            })
            .collect();
        if !unpinned.is_empty() {
            ctx.report("DL3016", sp, format!("pin versions in npm install: {}", join(&unpinned)));
        }
    }

    // apk
    for c in all.iter().filter(|c| cmd_is(c, "apk") && c.subcommand() == Some("add")) {
        let pkgs = packages_after(
            c,
            &["add"],
            &[
                "-t",
                "--virtual",
                "-X",
                "--repository",
                "-p",
                "--root",
                "--arch",
                "--cache-dir",
                "--keys-dir",
                "--repositories-file",
            ],
        )
        .unwrap_or_default();
        let unpinned: Vec<&String> = pkgs
            .iter()
            .filter(|p| {
                !(p.contains('=')
                    || p.contains('<')
                    || p.contains('>')
                    || p.contains('~')
                    || p.ends_with(".apk"))
            })
            .collect();
        if !unpinned.is_empty() {
            ctx.report("DL3018", sp, format!("pin versions in apk add: {}", join(&unpinned)));
        }
        if !c.args.iter().any(|a| a == "--no-cache")
            && !info.cached(&["/var/cache/apk", "/etc/apk/cache"])
        {
            let cleaned = all.iter().any(|c| {
                (cmd_is(c, "rm") && c.args.iter().any(|a| a.starts_with("/var/cache/apk")))
                    || (cmd_is(c, "apk") && c.subcommand() == Some("cache"))
            });
            if !cleaned {
                ctx.report(
                    "DL3019",
                    sp,
                    "use apk add --no-cache instead of keeping the index in the layer",
                );
            }
        }
    }

    // gem
    for c in
        all.iter().filter(|c| cmd_is(c, "gem") && matches!(c.subcommand(), Some("install" | "i")))
    {
        if c.has_flag(&["-v", "--version"]) {
            continue;
        }
        let pkgs = packages_after(
            c,
            &["install", "i"],
            &[
                "-i",
                "--install-dir",
                "-n",
                "--bindir",
                "--source",
                "-s",
                "--platform",
                "-P",
                "--trust-policy",
                "-g",
                "--file",
            ],
        )
        .unwrap_or_default();
        let unpinned: Vec<&String> = pkgs
            .iter()
            .filter(|p| !p.contains(':') && !p.ends_with(".gem") && !p.starts_with('$'))
            .collect();
        if !unpinned.is_empty() {
            ctx.report("DL3028", sp, format!("pin versions in gem install: {}", join(&unpinned)));
        }
    }

    // yum / dnf / microdnf
    let rpm_pinned = |p: &str| {
        let b = p.as_bytes();
        p.ends_with(".rpm")
            || p.starts_with('$')
            || p.starts_with('/')
            || p.contains("://")
            || p.starts_with('@')
            || b.windows(2).any(|w| w[0] == b'-' && w[1].is_ascii_digit())
    };
    let yum_like = |tool: &str,
                    yes: &'static str,
                    clean: &'static str,
                    pin: &'static str,
                    tools: &[&str]| {
        (tool.to_string(), yes, clean, pin, tools.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    for (tool, yes_code, clean_code, pin_code, clean_tools) in [
        yum_like("yum", "DL3030", "DL3032", "DL3033", &["yum"]),
        yum_like("dnf", "DL3038", "DL3040", "DL3041", &["dnf", "microdnf"]),
        yum_like("microdnf", "DL3038", "DL3040", "DL3041", &["dnf", "microdnf"]),
    ] {
        let uses: Vec<&Command> = all.iter().filter(|c| cmd_is(c, &tool)).collect();
        let installs: Vec<&&Command> = uses
            .iter()
            .filter(|c| {
                matches!(
                    c.subcommand(),
                    Some("install" | "groupinstall" | "localinstall" | "reinstall")
                )
            })
            .collect();
        for c in &installs {
            if tool != "microdnf" && !c.has_flag(&["-y", "--assumeyes"]) {
                ctx.report(
                    yes_code,
                    sp,
                    format!("use {tool} install -y to avoid waiting for input"),
                );
            }
            if c.subcommand() == Some("install") {
                let pkgs = packages_after(
                    c,
                    &["install"],
                    &[
                        "--enablerepo",
                        "--disablerepo",
                        "--releasever",
                        "--installroot",
                        "--setopt",
                        "-c",
                        "--config",
                        "--repo",
                        "--repofrompath",
                        "-x",
                        "--exclude",
                    ],
                )
                .unwrap_or_default();
                let unpinned: Vec<&String> = pkgs.iter().filter(|p| !rpm_pinned(p)).collect();
                if !unpinned.is_empty() {
                    ctx.report(
                        pin_code,
                        sp,
                        format!("specify versions in {tool} install: {}", join(&unpinned)),
                    );
                }
            }
        }
        if !installs.is_empty() {
            let cleaned = all.iter().any(|c| {
                (clean_tools.iter().any(|t| cmd_is(c, t)) && c.subcommand() == Some("clean"))
                    || (cmd_is(c, "rm")
                        && c.args.iter().any(|a| {
                            a.starts_with("/var/cache/yum") || a.starts_with("/var/cache/dnf")
                        }))
            });
            if !cleaned && !info.cached(&["/var/cache/yum", "/var/cache/dnf"]) {
                ctx.report(
                    clean_code,
                    sp,
                    format!("add `{tool} clean all` after {tool} install in the same RUN"),
                );
            }
        }
    }

    // zypper
    let zyp: Vec<&Command> = all.iter().filter(|c| cmd_is(c, "zypper")).collect();
    let mut zyp_install = false;
    for c in &zyp {
        let sub = c.subcommand().unwrap_or("");
        if matches!(sub, "install" | "in" | "remove" | "rm" | "source-install" | "si" | "patch")
            && !c.has_flag(&["-n", "-y", "--non-interactive", "--no-confirm"])
        {
            ctx.report("DL3034", sp, "use zypper's non-interactive switch (-n / -y)");
        }
        if matches!(sub, "dist-upgrade" | "dup") {
            ctx.report("DL3035", sp, "do not use zypper dist-upgrade in an image build");
        }
        if matches!(sub, "install" | "in") {
            zyp_install = true;
            let pkgs = packages_after(c, &[sub], &["-r", "--repo", "--from", "-t", "--type"])
                .unwrap_or_default();
            let unpinned: Vec<&String> = pkgs
                .iter()
                .filter(|p| {
                    !(p.contains('=')
                        || p.contains('<')
                        || p.contains('>')
                        || p.ends_with(".rpm")
                        || p.starts_with('$'))
                })
                .collect();
            if !unpinned.is_empty() {
                ctx.report(
                    "DL3037",
                    sp,
                    format!("specify versions in zypper install: {}", join(&unpinned)),
                );
            }
        }
    }
    if zyp_install
        && !zyp.iter().any(|c| matches!(c.subcommand(), Some("clean" | "cc")))
        && !info.cached(&["/var/cache/zypp"])
    {
        ctx.report("DL3036", sp, "add `zypper clean` after zypper install in the same RUN");
    }

    // useradd
    for c in all.iter().filter(|c| cmd_is(c, "useradd")) {
        let mut uid = None;
        let mut it = c.args.iter();
        while let Some(a) = it.next() {
            if a == "-u" || a == "--uid" {
                uid = it.next().cloned();
            } else if let Some(v) = a.strip_prefix("--uid=") {
                uid = Some(v.to_string());
            } else if let Some(v) = a
                .strip_prefix("-u")
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            {
                uid = Some(v.to_string());
            }
        }
        let high =
            uid.as_deref().is_some_and(|u| u.len() > 5 && u.bytes().all(|b| b.is_ascii_digit()));
        if high && !c.has_flag(&["-l", "--no-log-init"]) {
            ctx.report(
                "DL3046",
                sp,
                "useradd with a high UID needs -l (--no-log-init) to keep /var/log/lastlog small",
            );
        }
    }

    // wget / curl
    let wget = all.iter().any(|c| cmd_is(c, "wget"));
    let curl = all.iter().any(|c| cmd_is(c, "curl"));
    for c in all.iter().filter(|c| cmd_is(c, "wget")) {
        let quiet = c.has_flag(&[
            "-q",
            "--quiet",
            "-nv",
            "--no-verbose",
            "-o",
            "--output-file",
            "-a",
            "--append-output",
            "--progress",
        ]);
        if !quiet {
            ctx.report(
                "DL3047",
                sp,
                "use wget --progress=dot:giga (or -q) to keep the build log readable",
            );
        }
    }
    let both_now = (wget || st.wget) && (curl || st.curl);
    let both_before = st.wget && st.curl;
    if both_now && !both_before {
        ctx.report("DL4001", sp, "both wget and curl are used; pick one");
    }
    st.wget |= wget;
    st.curl |= curl;

    // yarn
    if all.iter().any(|c| cmd_is(c, "yarn") && matches!(c.subcommand(), Some("install") | None))
        && !all.iter().any(|c| {
            cmd_is(c, "yarn")
                && c.subcommand() == Some("cache")
                && c.args.iter().any(|a| a == "clean")
        })
        && !info.cached(&["/usr/local/share/.cache/yarn", "/root/.yarn", "/root/.cache/yarn"])
    {
        // `yarn` alone installs too, but hadolint only looks at `yarn install`.
        if all.iter().any(|c| cmd_is(c, "yarn") && c.subcommand() == Some("install")) {
            ctx.report("DL3060", sp, "add `yarn cache clean` after yarn install in the same RUN");
        }
    }

    // go
    for c in all.iter().filter(|c| cmd_is(c, "go")) {
        let sub = c.subcommand().unwrap_or("");
        let pos: Vec<&str> = c.positionals().skip(1).collect();
        let remote = |p: &str| {
            let first = p.split('/').next().unwrap_or("");
            first.contains('.')
                && !p.starts_with('.')
                && !p.starts_with('/')
                && !p.starts_with('$')
                && !p.contains('@')
                && !p.ends_with(".go")
        };
        let bad: Vec<&str> = match sub {
            "install" | "get" => pos.iter().copied().filter(|p| remote(p)).collect(),
            "run" => pos.first().copied().filter(|p| remote(p)).into_iter().collect(),
            _ => Vec::new(),
        };
        if !bad.is_empty() {
            ctx.report(
                "DL3062",
                sp,
                format!("pin a version with module@version: {}", bad.join(", ")),
            );
        }
    }

    // ln -s ... /bin/sh
    for c in all.iter().filter(|c| cmd_is(c, "ln")) {
        if c.positionals().last() == Some("/bin/sh") {
            ctx.report(
                "DL4005",
                sp,
                "use SHELL to change the default shell instead of replacing /bin/sh",
            );
        }
    }

    // pipes
    if !node.json
        && st.posix_shell
        && !st.pipefail
        && (info.cmds.iter().any(|c| c.sep == Sep::Pipe)
            || substitution_has_pipe(&run_script(node)))
        && !info.cmds.iter().any(|c| {
            c.base_name() == "set"
                && c.args
                    .windows(2)
                    .any(|w| w[0].starts_with('-') && w[0].contains('o') && w[1] == "pipefail")
        })
    {
        ctx.report("DL4006", sp, "set SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"] before a RUN with a pipe, or a failing first command goes unnoticed");
    }

    // DL3010: a copied archive unpacked here
    for c in all.iter() {
        let n = c.base_name();
        let extracts = (n == "tar"
            && c.args.iter().any(|a| {
                a == "--extract"
                    || a == "--get"
                    || (a.starts_with('-') && !a.starts_with("--") && a.contains('x'))
                    || (!a.starts_with('-')
                        && a.chars().all(|ch| ch.is_ascii_alphabetic())
                        && a.contains('x'))
            }))
            || matches!(
                n,
                "unzip"
                    | "gunzip"
                    | "bunzip2"
                    | "unxz"
                    | "unzstd"
                    | "zcat"
                    | "xz"
                    | "gzip"
                    | "bzip2"
            );
        if !extracts {
            continue;
        }
        let mut hit = Vec::new();
        for (i, (base, span)) in st.archives.iter().enumerate() {
            if c.args.iter().any(|a| a.rsplit('/').next() == Some(base.as_str())) {
                hit.push(i);
                ctx.report(
                    "DL3010",
                    *span,
                    format!(
                        "`{base}` is copied and then unpacked; ADD unpacks local archives itself"
                    ),
                );
            }
        }
        for i in hit.into_iter().rev() {
            st.archives.remove(i);
        }
    }

    // ST1001: dependency install after a whole-context copy
    if let Some(copy_span) = st.whole_context_copy {
        let dep_install = all.iter().any(|c| {
            let n = c.base_name();
            let sub = c.subcommand().unwrap_or("");
            (n == "npm" && matches!(sub, "install" | "ci" | "i"))
                || (n == "yarn" && matches!(sub, "install" | ""))
                || (n == "pnpm" && matches!(sub, "install" | "i"))
                || (is_pip(c) && c.has_flag(&["-r", "--requirement"]))
                || (n == "bundle" && matches!(sub, "install" | ""))
                || (n == "composer" && sub == "install")
                || (n == "go" && c.args.windows(2).any(|w| w[0] == "mod" && w[1] == "download"))
                || (n == "poetry" && sub == "install")
                || (n == "pipenv" && sub == "install")
                || (n == "cargo" && sub == "fetch")
                || (n == "mvn" && c.args.iter().any(|a| a.starts_with("dependency:")))
        });
        if dep_install {
            ctx.report("ST1001", copy_span, "the whole build context is copied before dependencies are installed; copy only the manifest files (package.json, requirements.txt, go.mod, ...) first, install, then copy the rest");
            st.whole_context_copy = None;
        }
    }

    // ST1005 / ST1006: what the final image keeps
    if st.is_last {
        let removed: BTreeSet<String> = all
            .iter()
            .filter(|c| {
                (cmd_is(c, "apt-get")
                    && matches!(c.subcommand(), Some("purge" | "remove" | "autoremove")))
                    || (cmd_is(c, "apk") && c.subcommand() == Some("del"))
                    || ((cmd_is(c, "yum") || cmd_is(c, "dnf"))
                        && matches!(c.subcommand(), Some("remove" | "erase" | "autoremove")))
            })
            .flat_map(|c| c.positionals().skip(1).map(str::to_string).collect::<Vec<_>>())
            .collect();
        let virtual_removed = !removed.is_empty();
        let mut kept = Vec::new();
        for c in all.iter() {
            let installs = (cmd_is(c, "apt-get") && c.subcommand() == Some("install"))
                || (cmd_is(c, "apk") && c.subcommand() == Some("add"))
                || ((cmd_is(c, "yum") || cmd_is(c, "dnf") || cmd_is(c, "microdnf"))
                    && c.subcommand() == Some("install"));
            if !installs {
                continue;
            }
            // `apk add --virtual .build-deps ...` followed by `apk del .build-deps`
            if cmd_is(c, "apk") && c.has_flag(&["-t", "--virtual"]) && virtual_removed {
                continue;
            }
            for p in c.positionals().skip(1) {
                let name = p.split(['=', '<', '>']).next().unwrap_or(p);
                if BUILD_TOOLS.contains(&name) && !removed.contains(name) {
                    kept.push(name.to_string());
                }
            }
        }
        if !kept.is_empty() {
            kept.dedup();
            ctx.report("ST1005", sp, format!("the final stage installs build tools ({}); build in an earlier stage and copy only the results", kept.join(", ")));
        }
        let npm_cache = all
            .iter()
            .any(|c| cmd_is(c, "npm") && matches!(c.subcommand(), Some("install" | "ci" | "i")))
            && !all.iter().any(|c| cmd_is(c, "npm") && c.subcommand() == Some("cache"))
            && !info.cached(&["/root/.npm"]);
        if npm_cache {
            ctx.report("ST1006", sp, "npm install leaves its cache in /root/.npm; add `npm cache clean --force` or use RUN --mount=type=cache,target=/root/.npm");
        }
    }
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// ENV/LABEL argument triples (key, value, separator) as pairs.
fn pairs(node: &Node) -> Vec<(String, String)> {
    node.args.chunks(3).filter(|c| c.len() >= 2).map(|c| (c[0].clone(), unquote(&c[1]))).collect()
}

fn check_label_value(ctx: &mut Ctx<'_>, key: &str, value: &str, span: Span) {
    let Some(ty) = ctx.cfg.label_schema.get(key).copied() else {
        if ctx.cfg.strict_labels && !ctx.cfg.label_schema.is_empty() {
            ctx.report("DL3050", span, format!("label `{key}` is not in the label schema"));
        }
        return;
    };
    if value.is_empty() {
        ctx.report("DL3051", span, format!("label `{key}` is empty"));
        return;
    }
    if value.contains('$') {
        return;
    }
    let (ok, code, what) = match ty {
        LabelType::RawText => (true, "", ""),
        LabelType::Url => (labels::valid_url(value), "DL3052", "a URL"),
        LabelType::Rfc3339 => (labels::valid_rfc3339(value), "DL3053", "an RFC 3339 time"),
        LabelType::Spdx => (labels::valid_spdx(value), "DL3054", "an SPDX license expression"),
        LabelType::GitHash => (labels::valid_git_hash(value), "DL3055", "a git hash"),
        LabelType::SemVer => (labels::valid_semver(value), "DL3056", "a semantic version"),
        LabelType::Email => (labels::valid_email(value), "DL3058", "an e-mail address"),
    };
    if !ok {
        let code =
            crate::rules::RULES.iter().find(|r| r.code == code).map(|r| r.code).unwrap_or("DL3052");
        ctx.report(code, span, format!("label `{key}` is not {what}: {value:?}"));
    }
}

/// `# hadolint ignore=A,B` / `# strata ignore=A,B` / `global ignore=`.
struct Pragma {
    line: usize,
    codes: Vec<String>,
    global: bool,
    span: Span,
}

fn pragmas(src: &str) -> Vec<Pragma> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (i, line) in src.split('\n').enumerate() {
        let start = offset;
        offset += line.len() + 1;
        let t = line.trim();
        let Some(c) = t.strip_prefix('#') else { continue };
        let c = c.trim();
        let Some(rest) = c.strip_prefix("hadolint").or_else(|| c.strip_prefix("strata")) else {
            continue;
        };
        if !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let rest = rest.trim();
        let (global, rest) = match rest.strip_prefix("global") {
            Some(r) if r.starts_with(char::is_whitespace) => (true, r.trim()),
            _ => (false, rest),
        };
        let Some(list) = rest.strip_prefix("ignore") else { continue };
        let Some(list) = list.trim_start().strip_prefix('=') else { continue };
        let codes: Vec<String> = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(str::trim)
            .take_while(|s| !s.starts_with('#'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let lead = line.len() - line.trim_start().len();
        let span = Span::from_offsets(src, start + lead, start + line.trim_end().len());
        out.push(Pragma { line: i + 1, codes, global, span });
    }
    out
}

/// Run every rule over `src`. Pragmas are honoured (unless disabled) but
/// severities, overrides and `ignored` are not applied yet.
pub(crate) fn check_all(name: &str, src: &str, cfg: &Config) -> Vec<Finding> {
    let ast = match parse(name, src) {
        Ok(a) => a,
        Err(d) => {
            let span = d.span.unwrap_or_default();
            let mut f = Finding::new("DL1000", d.message.clone(), name, span);
            f.severity = Severity::Error;
            return vec![f];
        }
    };
    let text: &str = &ast.source.text;
    let mut ctx = Ctx { cfg, out: Vec::new() };
    let nodes = &ast.nodes;

    // Stage pre-pass: names and which stages end up in the final image.
    let froms: Vec<&Node> = nodes.iter().filter(|n| n.keyword == "from").collect();
    let stage_names: Vec<Option<String>> = froms
        .iter()
        .map(|n| {
            (n.args.len() >= 3 && n.args[1].eq_ignore_ascii_case("as"))
                .then(|| n.args[2].to_lowercase())
        })
        .collect();
    let stage_bases: Vec<String> =
        froms.iter().map(|n| n.args.first().cloned().unwrap_or_default().to_lowercase()).collect();
    let mut in_final = vec![false; froms.len()];
    if let Some(last) = froms.len().checked_sub(1) {
        let mut i = last;
        loop {
            in_final[i] = true;
            match (0..i).rev().find(|&j| stage_names[j].as_deref() == Some(stage_bases[i].as_str()))
            {
                Some(j) => i = j,
                None => break,
            }
        }
    }

    let mut stages: Vec<StageState> = Vec::new();
    let mut st = StageState { posix_shell: true, ..Default::default() };
    let mut seen_from = false;
    let mut prev_run_flags: Option<Vec<String>> = None;
    let mut global_arg_names: Vec<String> = Vec::new();

    for node in nodes {
        let sp = node.span;
        let kw = node.keyword.as_str();
        if kw == "from" {
            if seen_from {
                stages.push(std::mem::take(&mut st));
            }
            seen_from = true;
            let idx = stages.len();
            let name = stage_names.get(idx).cloned().flatten();
            let base = node.args.first().cloned().unwrap_or_default();
            let base_l = base.to_lowercase();
            // Inherit from a parent stage.
            let parent =
                stages.iter().rev().find(|s| s.name.as_deref() == Some(base_l.as_str())).cloned();
            st = match parent {
                Some(p) => StageState {
                    workdir: p.workdir,
                    healthchecks: 0,
                    labels: p.labels,
                    user: p.user,
                    pipefail: p.pipefail,
                    posix_shell: p.posix_shell,
                    pip_no_cache: p.pip_no_cache,
                    ..Default::default()
                },
                None => StageState { posix_shell: true, ..Default::default() },
            };
            st.name = name.clone();
            st.from_span = sp;
            st.in_final = in_final.get(idx).copied().unwrap_or(true);
            st.is_last = idx + 1 == froms.len();
            prev_run_flags = None;
            check_from(&mut ctx, node, idx, &stage_names, &base);
            continue;
        }
        if !seen_from && kw != "arg" {
            ctx.report(
                "DL3061",
                sp,
                format!(
                    "{} must come after FROM (only ARG may precede the first FROM)",
                    kw.to_uppercase()
                ),
            );
        }
        if kw == "run" {
            // A RUN that already chains several commands was split on
            // purpose: only two single-command RUNs with the same flags count.
            let flags: Vec<String> = node.flags.clone();
            let single = !st.posix_shell || run_command_count(node) <= 1;
            if single && prev_run_flags.as_ref() == Some(&flags) {
                ctx.report(
                    "DL3059",
                    sp,
                    "consecutive RUN instructions; consider joining them with && to save layers",
                );
            }
            let flags = if single { Some(flags) } else { None };
            prev_run_flags = flags;
        } else {
            prev_run_flags = None;
        }
        check_instruction(
            &mut ctx,
            &mut st,
            node,
            &stage_names,
            stages.len(),
            seen_from,
            &mut global_arg_names,
        );
    }
    let have_stage = seen_from;
    if have_stage {
        stages.push(st);
    }

    // Whole-file rules on the final stage.
    if let Some(last) = stages.last() {
        if let Some((user, span)) = &last.user {
            let u = user.split(':').next().unwrap_or("");
            if u == "root" || u == "0" {
                ctx.report(
                    "DL3002",
                    *span,
                    "the last USER is root; switch to an unprivileged user",
                );
            }
        } else if !stages.iter().any(|s| s.user.is_some() && s.in_final) {
            let base = froms.last().and_then(|n| n.args.first()).map(|s| s.to_lowercase());
            if base.as_deref() != Some("scratch") {
                ctx.report(
                    "ST1003",
                    last.from_span,
                    "the final stage sets no USER, so the container runs as root; add USER <uid>",
                );
            }
        }
        if !stages.iter().any(|s| s.in_final && s.healthchecks > 0) {
            ctx.report("DL3057", last.from_span, "no HEALTHCHECK instruction in the final image");
        }
        for (key, _) in cfg.label_schema.iter() {
            if !last.labels.contains_key(key) {
                ctx.report(
                    "DL3049",
                    last.from_span,
                    format!("label `{key}` from the label schema is missing"),
                );
            }
        }
    }

    // Pragmas.
    let mut findings: Vec<Finding> = Vec::new();
    let prag = pragmas(text);
    let mut global_ignored: BTreeSet<String> = BTreeSet::new();
    let mut line_ignored: Vec<(usize, usize, Vec<String>)> = Vec::new();
    for p in &prag {
        findings.push(Finding::new(
            "DL1001",
            "inline ignore pragmas are discouraged; use a config file".into(),
            name,
            p.span,
        ));
        if p.global {
            global_ignored.extend(p.codes.iter().cloned());
        } else if let Some(n) = nodes.iter().find(|n| n.span.start.line > p.line) {
            line_ignored.push((
                n.span.start.line,
                n.span.end.line.max(n.span.start.line),
                p.codes.clone(),
            ));
        }
    }
    for raw in ctx.out {
        let line = raw.span.start.line;
        if !cfg.disable_ignore_pragma {
            if global_ignored.contains(raw.code) {
                continue;
            }
            if line_ignored.iter().any(|(a, b, codes)| {
                line >= *a && line <= *b && codes.iter().any(|c| c == raw.code)
            }) {
                continue;
            }
        }
        findings.push(Finding::new(raw.code, raw.message, name, raw.span));
    }
    findings.sort_by_key(|f| (f.line, f.column));
    findings
}

fn check_from(ctx: &mut Ctx<'_>, node: &Node, idx: usize, names: &[Option<String>], base: &str) {
    let sp = node.span;
    let base_l = base.to_lowercase();
    let is_alias = names[..idx].iter().any(|n| n.as_deref() == Some(base_l.as_str()));
    if let Some(name) = &names[idx] {
        if names[..idx].iter().any(|n| n.as_ref() == Some(name)) {
            ctx.report("DL3024", sp, format!("duplicate stage name `{name}`"));
        }
        if matches!(name.as_str(), "scratch" | "context") {
            ctx.report("DL3063", sp, format!("`{name}` is a reserved stage name"));
        }
    }
    if let Some(p) = flag(node, "platform") {
        if p.contains("TARGETPLATFORM") {
            ctx.report("DL3065", sp, "--platform=$TARGETPLATFORM is the default; remove it");
        } else if !p.contains('$') {
            ctx.report(
                "DL3029",
                sp,
                format!("do not pin --platform={p} in FROM; let the build choose the platform"),
            );
        }
    }
    if is_alias || base_l == "scratch" || base.starts_with('$') || base.is_empty() {
        return;
    }
    let (image, tag, digest) = split_image(base);
    if digest.is_none() {
        match tag {
            None => ctx.report("DL3006", sp, format!("tag the version of `{image}` explicitly")),
            Some("latest") => {
                ctx.report("DL3007", sp, format!("`{base}` uses latest; pin a version"))
            }
            _ => {}
        }
    }
    if base.contains('$') {
        return;
    }
    if !ctx.cfg.trusted_registries.is_empty() {
        let reg = registry_of(image);
        if !registry_allowed(reg, &ctx.cfg.trusted_registries) {
            ctx.report(
                "DL3026",
                sp,
                format!(
                    "registry `{reg}` is not in the allowed list ({})",
                    ctx.cfg.trusted_registries.join(", ")
                ),
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_instruction(
    ctx: &mut Ctx<'_>,
    st: &mut StageState,
    node: &Node,
    names: &[Option<String>],
    stage_idx: usize,
    seen_from: bool,
    global_args: &mut Vec<String>,
) {
    let sp = node.span;
    match node.keyword.as_str() {
        "run" => check_run(ctx, st, node),
        "workdir" => {
            if let Some(w) = node.args.first() {
                let w = unquote(w);
                if !is_absolute(&w) {
                    ctx.report(
                        "DL3000",
                        sp,
                        format!("WORKDIR {w} is relative; use an absolute path"),
                    );
                }
                st.workdir = true;
            }
        }
        "user" => {
            if let Some(u) = node.args.first() {
                let u = unquote(u);
                let user = u.split(':').next().unwrap_or("");
                if !user.is_empty()
                    && !user.starts_with('$')
                    && !user.bytes().all(|b| b.is_ascii_digit())
                {
                    ctx.report("DL3066", sp, format!("USER {user} is not numeric; use a UID so runtimes can check it is not root"));
                }
                st.user = Some((u, sp));
            }
        }
        "expose" => {
            for p in &node.args {
                let port = p.split('/').next().unwrap_or("");
                for part in port.split('-') {
                    if part.starts_with('$') || part.is_empty() {
                        continue;
                    }
                    match part.parse::<u64>() {
                        Ok(n) if n > 65535 => {
                            ctx.report("DL3011", sp, format!("port {n} is outside 0-65535"))
                        }
                        Ok(_) => {}
                        Err(_) if part.contains('$') => {}
                        Err(_) => ctx.report("DL3011", sp, format!("`{p}` is not a valid port")),
                    }
                }
            }
        }
        "healthcheck" => {
            st.healthchecks += 1;
            if st.healthchecks > 1 {
                ctx.report(
                    "DL3012",
                    sp,
                    "more than one HEALTHCHECK in this stage; only the last one applies",
                );
            }
        }
        "cmd" | "entrypoint" => {
            let count = if node.keyword == "cmd" { &mut st.cmds } else { &mut st.entrypoints };
            *count += 1;
            if *count > 1 {
                if node.keyword == "cmd" {
                    ctx.report(
                        "DL4003",
                        sp,
                        "more than one CMD in this stage; only the last one applies",
                    );
                } else {
                    ctx.report(
                        "DL4004",
                        sp,
                        "more than one ENTRYPOINT in this stage; only the last one applies",
                    );
                }
            }
            if !node.json && !node.args.is_empty() {
                ctx.report("DL3025", sp, format!("use the JSON form for {}, e.g. [\"executable\", \"arg\"], so signals reach the process", node.keyword.to_uppercase()));
            }
        }
        "shell" => {
            let first = node
                .args
                .first()
                .map(|s| s.rsplit('/').next().unwrap_or(s).to_string())
                .unwrap_or_default();
            st.posix_shell =
                matches!(first.as_str(), "sh" | "bash" | "ash" | "dash" | "zsh" | "ksh" | "mksh");
            st.pipefail = node
                .args
                .windows(2)
                .any(|w| w[0].starts_with('-') && w[0].contains('o') && w[1] == "pipefail")
                || node.args.iter().any(|a| a.contains("pipefail") && a.starts_with('-'));
        }
        "maintainer" => {
            ctx.report("DL4000", sp, "MAINTAINER is deprecated; use LABEL maintainer=\"...\"")
        }
        "onbuild" => {
            if let Some(sub) = &node.sub {
                if matches!(sub.keyword.as_str(), "onbuild" | "from" | "maintainer") {
                    ctx.report(
                        "DL3043",
                        sp,
                        format!("ONBUILD cannot trigger {}", sub.keyword.to_uppercase()),
                    );
                }
            }
        }
        "label" => {
            for (k, v) in pairs(node) {
                let k = unquote(&k);
                if !labels::valid_label_key(&k) {
                    ctx.report("DL3048", sp, format!("invalid label key `{k}`: use lowercase reverse-DNS keys outside com.docker.*, io.docker.*, org.dockerproject.*"));
                }
                if let Some(what) = secret_value(&v) {
                    ctx.report("ST1002", sp, format!("the value of label `{k}` looks like {what}"));
                }
                check_label_value(ctx, &k, &v, sp);
                st.labels.insert(k, v);
            }
        }
        "env" => {
            let ps = pairs(node);
            let mut defined: Vec<String> = Vec::new();
            for (k, v) in &ps {
                let raw_v = node
                    .args
                    .chunks(3)
                    .find(|c| &c[0] == k)
                    .map(|c| c[1].clone())
                    .unwrap_or_default();
                let refs_same =
                    defined.iter().any(|d| !raw_v.starts_with('\'') && (refs(&raw_v, d)));
                if refs_same {
                    ctx.report("DL3044", sp, format!("`{k}` refers to a variable defined in this same ENV; it still has its old value here"));
                }
                defined.push(k.clone());
                if secret_name(k) {
                    ctx.report("DL3064", sp, format!("ENV `{k}` looks like it holds a secret, which stays in the image; use RUN --mount=type=secret"));
                }
                if let Some(what) = secret_value(v) {
                    ctx.report("ST1002", sp, format!("the value of ENV `{k}` looks like {what}"));
                }
                if k == "PIP_NO_CACHE_DIR"
                    && !matches!(v.to_lowercase().as_str(), "0" | "false" | "no" | "off")
                {
                    st.pip_no_cache = true;
                }
            }
        }
        "arg" => {
            for w in &node.args {
                let (k, v) = match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(unquote(v))),
                    None => (w.clone(), None),
                };
                if secret_name(&k) {
                    ctx.report("DL3064", sp, format!("ARG `{k}` looks like it holds a secret, which shows in the image history; use RUN --mount=type=secret"));
                }
                if let Some(what) = v.as_deref().and_then(secret_value) {
                    ctx.report("ST1002", sp, format!("the default of ARG `{k}` looks like {what}"));
                }
                if !seen_from {
                    global_args.push(k);
                }
            }
        }
        "copy" | "add" => {
            let is_copy = node.keyword == "copy";
            if node.args.len() < 2 && node.heredocs.is_empty() {
                return;
            }
            let (srcs, dest) = node.args.split_at(node.args.len().saturating_sub(1));
            let dest = unquote(dest.first().map(String::as_str).unwrap_or(""));
            let from = flag(node, "from").map(str::to_string);
            if srcs.len() >= 2
                && !dest.ends_with('/')
                && !dest.starts_with('$')
                && node.heredocs.is_empty()
            {
                ctx.report(
                    "DL3021",
                    sp,
                    format!(
                        "{} with several sources needs a destination ending in /",
                        node.keyword.to_uppercase()
                    ),
                );
            }
            if !is_absolute(&dest) && !st.workdir {
                ctx.report("DL3045", sp, format!("{} to the relative path `{dest}` with no WORKDIR set; set WORKDIR first or use an absolute path", node.keyword.to_uppercase()));
            }
            if let Some(f) = &from {
                let fl = f.to_lowercase();
                if names.get(stage_idx).cloned().flatten().as_deref() == Some(fl.as_str())
                    && seen_from
                {
                    ctx.report(
                        "DL3023",
                        sp,
                        format!("COPY --from={f} refers to the stage it is in"),
                    );
                } else {
                    let earlier = names[..stage_idx.min(names.len())]
                        .iter()
                        .any(|n| n.as_deref() == Some(fl.as_str()));
                    let index = fl.parse::<usize>().is_ok_and(|i| i < stage_idx);
                    let image_like = fl.contains(':')
                        || fl.contains('/')
                        || fl.contains('$')
                        || fl.contains('.');
                    if !earlier && !index && !image_like {
                        ctx.report(
                            "DL3022",
                            sp,
                            format!("COPY --from={f} does not name an earlier stage"),
                        );
                    }
                }
                if dest == "/" && srcs.iter().any(|s| unquote(s) == "/") {
                    ctx.report("DL3067", sp, format!("copying the whole root filesystem of `{f}`; copy only what the image needs"));
                }
            }
            if !is_copy {
                let local_non_archive = srcs.iter().any(|s| {
                    let s = unquote(s);
                    !is_url(&s) && !is_archive(&s) && !s.starts_with("<<")
                });
                if local_non_archive && node.heredocs.is_empty() {
                    ctx.report(
                        "DL3020",
                        sp,
                        "use COPY for local files and folders; ADD is for URLs and archives",
                    );
                }
            }
            if from.is_none() {
                for s in srcs {
                    let s = unquote(s);
                    if is_copy && is_archive(&s) && !is_url(&s) {
                        let base = s.rsplit('/').next().unwrap_or(&s).to_string();
                        st.archives.push((base.clone(), sp));
                        // Copied into a directory: the file keeps its name; else it is `dest`.
                        if !dest.ends_with('/') {
                            if let Some(d) = dest.rsplit('/').next() {
                                if d != base && !d.is_empty() {
                                    st.archives.push((d.to_string(), sp));
                                }
                            }
                        }
                    }
                }
                let whole = srcs
                    .iter()
                    .any(|s| matches!(unquote(s).as_str(), "." | "./" | "./." | "*" | "./*"));
                if whole {
                    if st.whole_context_copy.is_none() {
                        st.whole_context_copy = Some(sp);
                    }
                    if let Some(dir) = &ctx.cfg.context_dir {
                        let has_ignore = dir.join(".dockerignore").exists();
                        if !has_ignore {
                            ctx.report("ST1004", sp, format!("{} copies the whole context but {} has no .dockerignore: .git, build output and local secrets end up in the image", node.keyword.to_uppercase(), dir.display()));
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Does `value` reference `$name` or `${name...}`?
fn refs(value: &str, name: &str) -> bool {
    let b = value.as_bytes();
    let mut i = 0;
    while let Some(p) = value[i..].find('$') {
        let at = i + p;
        if at > 0 && b[at - 1] == b'\\' {
            i = at + 1;
            continue;
        }
        let rest = &value[at + 1..];
        let ident = if let Some(r) = rest.strip_prefix('{') {
            r.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("")
        } else {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("")
        };
        if ident == name {
            return true;
        }
        i = at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        assert!(secret_name("AWS_ACCESS_KEY_ID"));
        assert!(secret_name("DB_PASSWORD"));
        assert!(secret_name("githubToken"));
        assert!(!secret_name("GPG_KEY"));
        assert!(!secret_name("POSTGRES_PASSWORD_FILE"));
        assert!(!secret_name("PWD"));
        assert!(!secret_name("PATH"));
    }

    #[test]
    fn images() {
        assert_eq!(split_image("debian"), ("debian", None, None));
        assert_eq!(split_image("localhost:5000/x:1"), ("localhost:5000/x", Some("1"), None));
        assert_eq!(registry_of("random.com/debian"), "random.com");
        assert_eq!(registry_of("library/debian"), "docker.io");
        assert!(registry_allowed("a.corp.com", &["*.corp.com".to_string()]));
    }
}

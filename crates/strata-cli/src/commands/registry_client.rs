//! `pull`, `push`, `login`, `logout`: the registry commands, with Docker's output.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Read};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use miette::{miette, IntoDiagnostic, Result};
use strata_oci::{Platform, Reference};
use strata_registry::{
    BlobOutcome, Client, ClientOptions, CredentialSource, Credentials, DockerConfig, Event,
    PullOptions, PushOptions, Transport, TransportCopyOptions,
};

use super::Context;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image to pull: NAME[:TAG|@DIGEST]
    pub name: String,
    /// Download all tagged images in the repository
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// Set platform if the image is multi-platform (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Layers downloaded at once
    #[arg(long, default_value_t = 4)]
    pub max_concurrent: usize,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Image to push: NAME[:TAG]
    pub name: String,
    /// Push all tags of the repository
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Blobs uploaded at once
    #[arg(long, default_value_t = 4)]
    pub max_concurrent: usize,
    /// Upload blobs in chunks of this many bytes (PATCH requests) instead of one request
    #[arg(long)]
    pub chunk_size: Option<u64>,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry (default: Docker Hub)
    pub server: Option<String>,
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry (default: Docker Hub)
    pub server: Option<String>,
}

/// `https://host:5000/v2/` -> `host:5000`; Docker Hub's aliases -> `docker.io`.
fn server_host(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io").trim();
    let s = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

fn parse_ref(name: &str) -> Result<Reference> {
    Reference::parse(name).map_err(|e| miette!("invalid reference format {name:?}: {e}"))
}

/// Per-layer bars on a terminal, Docker-style plain lines otherwise.
struct Display {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    quiet: bool,
    pushing: bool,
}

impl Display {
    fn new(quiet: bool, pushing: bool) -> Arc<Display> {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Arc::new(Display { multi, bars: Mutex::default(), quiet, pushing })
    }

    fn line(&self, text: String) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => println!("{text}"),
        }
    }

    fn event(&self, e: Event) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            Event::Resolved { .. } => {}
            Event::BlobStart { digest, size } => {
                let short = digest.hex()[..12].to_string();
                if let Some(m) = &self.multi {
                    let bar = m.add(ProgressBar::new(size));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix}: {msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(short.clone());
                    bar.set_message(if self.pushing { "Pushing" } else { "Downloading" });
                    bars.insert(short, bar);
                } else if !self.quiet {
                    println!(
                        "{short}: {}",
                        if self.pushing { "Preparing" } else { "Pulling fs layer" }
                    );
                }
            }
            Event::BlobProgress { digest, done, .. } => {
                if let Some(bar) = bars.get(&digest.hex()[..12]) {
                    bar.set_position(done);
                }
            }
            Event::BlobDone { digest, outcome, .. } => {
                let short = digest.hex()[..12].to_string();
                let text = match outcome {
                    BlobOutcome::Downloaded => "Pull complete".to_string(),
                    BlobOutcome::AlreadyPresent => "Already exists".to_string(),
                    BlobOutcome::Uploaded => "Pushed".to_string(),
                    BlobOutcome::Exists => "Layer already exists".to_string(),
                    BlobOutcome::Mounted { from } => format!("Mounted from {from}"),
                };
                if let Some(bar) = bars.remove(&short) {
                    bar.finish_and_clear();
                }
                drop(bars);
                self.line(format!("{short}: {text}"));
            }
            Event::Retry { what, attempt, error } => {
                drop(bars);
                let text = format!("retrying {what} (attempt {attempt}): {error}");
                match &self.multi {
                    Some(m) => {
                        let _ = m.println(text);
                    }
                    None => eprintln!("{text}"),
                }
            }
        }
    }
}

fn client(display: &Arc<Display>, chunk_size: Option<u64>) -> Result<Client> {
    let d = display.clone();
    let opts = ClientOptions { chunk_size, ..ClientOptions::default() };
    Ok(Client::new(opts).into_diagnostic()?.with_events(move |e| d.event(e)))
}

pub fn pull(ctx: &Context, args: PullArgs) -> Result<ExitCode> {
    let store = ctx.store()?;
    let mut reference = parse_ref(&args.name)?;
    let platform = args
        .platform
        .as_deref()
        .map(|p| Platform::parse(p).map_err(|e| miette!("invalid --platform {p:?}: {e}")))
        .transpose()?;
    let display = Display::new(args.quiet, false);
    let client = client(&display, None)?;
    let rt = strata_registry::runtime().into_diagnostic()?;
    let opts = PullOptions {
        platform,
        max_concurrent: args.max_concurrent.max(1),
        ..PullOptions::default()
    };
    let mut targets = Vec::new();
    if args.all_tags {
        if reference.tag().is_some() || reference.digest().is_some() {
            return Err(miette!("tag can't be used with --all-tags/-a"));
        }
        let tags = rt
            .block_on(client.list_tags(reference.registry(), reference.repository()))
            .map_err(|e| miette!("{e}"))?;
        for t in tags {
            targets.push(reference.with_tag(&t).map_err(|e| miette!("tag {t:?}: {e}"))?);
        }
        if targets.is_empty() {
            return Err(miette!("{} has no tags", reference.familiar()));
        }
    } else {
        if reference.tag().is_none() && reference.digest().is_none() {
            display.line("Using default tag: latest".to_string());
            reference = reference.with_default_tag();
        }
        targets.push(reference);
    }
    for target in targets {
        let label = target
            .tag()
            .map(String::from)
            .unwrap_or_else(|| target.digest().map(|d| d.to_string()).unwrap_or_default());
        display.line(format!(
            "{label}: Pulling from {}",
            target.without_tag_or_digest().familiar().trim_start_matches("docker.io/")
        ));
        let pulled = rt
            .block_on(strata_registry::pull_image(&client, &store, &target, &opts))
            .map_err(|e| miette!("{e}"))?;
        display.line(format!("Digest: {}", pulled.digest));
        display.line(if pulled.downloaded > 0 {
            format!("Status: Downloaded newer image for {}", target.familiar())
        } else {
            format!("Status: Image is up to date for {}", target.familiar())
        });
        println!("{target}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn push(ctx: &Context, args: PushArgs) -> Result<ExitCode> {
    let store = ctx.store()?;
    let reference = parse_ref(&args.name)?;
    if reference.digest().is_some() {
        return Err(miette!("cannot push a digest reference: {}", args.name));
    }
    let mut targets: Vec<Reference> = Vec::new();
    if args.all_tags {
        if reference.tag().is_some() {
            return Err(miette!("tag can't be used with --all-tags/-a"));
        }
        for image in store.images().into_diagnostic()? {
            for t in image.tags {
                if t.registry() == reference.registry()
                    && t.repository() == reference.repository()
                    && !targets.contains(&t)
                {
                    targets.push(t);
                }
            }
        }
        targets.sort_by(|a, b| a.tag().cmp(&b.tag()));
        if targets.is_empty() {
            return Err(miette!(
                "An image does not exist locally with the tag: {}",
                reference.familiar()
            ));
        }
    } else {
        let r = reference.clone().with_default_tag();
        targets.push(r);
    }
    let display = Display::new(args.quiet, true);
    let client = client(&display, args.chunk_size)?;
    let rt = strata_registry::runtime().into_diagnostic()?;
    let opts = PushOptions { max_concurrent: args.max_concurrent.max(1) };
    display.line(format!(
        "The push refers to repository [{}]",
        reference.without_tag_or_digest().familiar()
    ));
    for target in targets {
        let source = target.to_string();
        if store.resolve(&source).is_err() {
            return Err(miette!(
                "An image does not exist locally with the tag: {}",
                target.familiar()
            ));
        }
        let pushed = rt
            .block_on(strata_registry::push_image(&client, &store, &source, &target, &opts))
            .map_err(|e| miette!("{e}"))?;
        let tag = target.tag().unwrap_or("latest");
        if args.quiet {
            println!("{}", target.familiar());
        } else {
            display.line(format!("{tag}: digest: {} size: {}", pushed.digest, pushed.size));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_password(args: &LoginArgs) -> Result<String> {
    if let Some(p) = &args.password {
        if args.password_stdin {
            return Err(miette!("--password and --password-stdin are mutually exclusive"));
        }
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        return Ok(p.clone());
    }
    if args.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).into_diagnostic()?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(miette!(
            "cannot perform an interactive login from a non TTY device: use --password-stdin"
        ));
    }
    eprint!("Password: ");
    let pass = with_echo_off(|| {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s).map(|_| s)
    })
    .into_diagnostic()?;
    eprintln!();
    Ok(pass.trim_end_matches(['\n', '\r']).to_string())
}

fn with_echo_off<T>(f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    // SAFETY: tcgetattr/tcsetattr on stdin with a zeroed, then filled, termios.
    unsafe {
        let mut term: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut term) != 0 {
            return f();
        }
        let saved = term;
        term.c_lflag &= !libc::ECHO;
        libc::tcsetattr(0, libc::TCSANOW, &term);
        let r = f();
        libc::tcsetattr(0, libc::TCSANOW, &saved);
        r
    }
}

pub fn login(_ctx: &Context, args: LoginArgs) -> Result<ExitCode> {
    let server = server_host(args.server.as_deref());
    let mut config = DockerConfig::load_default().map_err(|e| miette!("{e}"))?;
    let username = match &args.username {
        Some(u) => u.clone(),
        None => {
            if args.password_stdin || !std::io::stdin().is_terminal() {
                return Err(miette!("Must provide --username with --password-stdin"));
            }
            eprint!("Username: ");
            let mut s = String::new();
            std::io::stdin().lock().read_line(&mut s).into_diagnostic()?;
            s.trim().to_string()
        }
    };
    if username.is_empty() {
        return Err(miette!("Error: Non-null Username Required"));
    }
    let password = read_password(&args)?;
    if password.is_empty() {
        return Err(miette!("Error: Password Required"));
    }
    let creds = Credentials { username, password };
    let client = Client::new(ClientOptions {
        credentials: CredentialSource::Fixed(creds.clone()),
        ..ClientOptions::default()
    })
    .into_diagnostic()?;
    let rt = strata_registry::runtime().into_diagnostic()?;
    rt.block_on(client.ping(&server))
        .map_err(|e| miette!("Error response from registry {server}: {e}"))?;
    match config.store(&server, &creds).map_err(|e| miette!("{e}"))? {
        strata_registry::credentials::Stored::File(path) => {
            eprintln!("WARNING! Your password will be stored unencrypted in {}.", path.display());
        }
        strata_registry::credentials::Stored::Helper(_) => {}
    }
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(_ctx: &Context, args: LogoutArgs) -> Result<ExitCode> {
    let server = server_host(args.server.as_deref());
    let mut config = DockerConfig::load_default().map_err(|e| miette!("{e}"))?;
    let shown = strata_registry::credentials::config_key(&server);
    if config.erase(&server).map_err(|e| miette!("{e}"))? {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Source: docker://NAME[:TAG|@DIGEST], oci:DIR[:REF], oci-archive:FILE[:REF],
    /// docker-archive:FILE[:REF|:@N] or containers-storage:NAME (the local store)
    pub source: String,
    /// Destination, in the same transports
    pub destination: String,
    /// Copy every image of a multi-platform index, and the index
    #[arg(short, long)]
    pub all: bool,
    /// Platform to select from an index without --all (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress progress output
    #[arg(short, long)]
    pub quiet: bool,
    /// Blobs copied at once
    #[arg(long, default_value_t = 4)]
    pub max_concurrent: usize,
}

pub fn copy(ctx: &Context, args: CopyArgs) -> Result<ExitCode> {
    let src = Transport::parse(&args.source).map_err(|e| miette!("{e}"))?;
    let dst = Transport::parse(&args.destination).map_err(|e| miette!("{e}"))?;
    let platform = args
        .platform
        .as_deref()
        .map(|p| Platform::parse(p).map_err(|e| miette!("invalid --platform {p:?}: {e}")))
        .transpose()?;
    let display = Display::new(args.quiet, false);
    let client = client(&display, None)?;
    let rt = strata_registry::runtime().into_diagnostic()?;
    let store = if matches!(src, Transport::Store(_)) || matches!(dst, Transport::Store(_)) {
        Some(ctx.store()?)
    } else {
        None
    };
    let opts = TransportCopyOptions {
        all: args.all,
        platform,
        max_concurrent: args.max_concurrent.max(1),
        ..TransportCopyOptions::default()
    };
    let copied = rt
        .block_on(strata_registry::copy_between(&client, store.as_ref(), &src, &dst, &opts))
        .map_err(|e| miette!("copying {src} to {dst}: {e}"))?;
    display.line(format!(
        "Copied {} manifest(s), {} blob(s) ({} already there): {}",
        copied.manifests, copied.blobs_copied, copied.blobs_skipped, copied.digest
    ));
    Ok(ExitCode::SUCCESS)
}

/// `strata build`'s way to fetch a base image the store lacks (or every one with
/// `--pull`), with the user's Docker credentials, as `strata pull` would. The client (TLS
/// roots, credentials) and its runtime are made on the first pull: most builds pull
/// nothing, and making them costs more than a whole cached build.
#[derive(Default)]
pub struct BuildPuller {
    made: std::sync::OnceLock<std::result::Result<(Client, tokio::runtime::Runtime), String>>,
}

impl strata_build::ImagePuller for BuildPuller {
    fn pull(&self, store: &strata_store::Store, name: &str) -> std::result::Result<(), String> {
        let target = Reference::parse(name)
            .map_err(|e| format!("invalid reference format: {e}"))?
            .with_default_tag();
        let made = self.made.get_or_init(|| {
            let client = Client::new(ClientOptions::default()).map_err(|e| e.to_string())?;
            let rt = strata_registry::runtime().map_err(|e| e.to_string())?;
            Ok((client, rt))
        });
        let (client, rt) = made.as_ref().map_err(Clone::clone)?;
        rt.block_on(strata_registry::pull_image(client, store, &target, &PullOptions::default()))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

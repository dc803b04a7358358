//! `strata registry serve|gc`: an OCI distribution-spec (v1.1) registry server.
//!
//! The CLI calls [`run_serve`] and [`run_gc`] with the clap structs [`ServeArgs`] and
//! [`GcArgs`]; both block and build their own tokio runtime. [`spawn`] starts a server on a
//! background thread (tests, embedding) and returns its address and a stop handle.

pub mod auth;
pub mod config;
pub mod digest;
pub mod error;
pub mod gc;
pub mod metrics;
pub mod server;
pub mod storage;
pub mod zerocopy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

pub use config::Config;
pub use gc::GcReport;
use server::AppState;
use storage::{FsStorage, Storage};

/// The client's address, for the access log.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// `strata registry serve`
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000]
    #[arg(long)]
    pub addr: Option<String>,
    /// Storage directory [default: $STRATA_ROOT/registry, /var/lib/strata/registry for root,
    /// else $XDG_DATA_HOME/strata/registry]
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// TOML configuration file (auth, ACL, deletion, expiry)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// PEM certificate chain; serves HTTPS with --tls-key
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// htpasswd file (bcrypt) for basic auth
    #[arg(long)]
    pub htpasswd: Option<PathBuf>,
    /// Allow DELETE of manifests, tags and blobs
    #[arg(long)]
    pub delete_enabled: bool,
    /// Log level: error, warn, info (access log), debug
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// `strata registry gc`
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GcArgs {
    /// Storage directory (as for serve)
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Configuration file (for root and grace period)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Report what would be deleted without deleting
    #[arg(long)]
    pub dry_run: bool,
    /// Keep unreferenced blobs linked or written less than this many seconds ago
    /// (pushes in flight) [default: 3600]
    #[arg(long)]
    pub grace_secs: Option<u64>,
}

fn default_root() -> PathBuf {
    if let Some(r) = std::env::var_os("STRATA_ROOT") {
        return PathBuf::from(r).join("registry");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/strata/registry");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("strata/registry")
}

fn load_config(path: &Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

/// Everything a running server needs, resolved from flags and the config file.
struct Prepared {
    addr: String,
    state: Arc<AppState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sendfile: bool,
}

fn prepare(args: &ServeArgs) -> anyhow::Result<Prepared> {
    let cfg = load_config(&args.config)?;
    let root = args.root.clone().or(cfg.root.clone()).unwrap_or_else(default_root);
    let addr = args.addr.clone().or(cfg.addr.clone()).unwrap_or_else(|| "127.0.0.1:5000".into());
    let storage = FsStorage::open(&root)
        .with_context(|| format!("opening registry storage at {}", root.display()))?;
    // Sessions live in memory; files left by an earlier process can never be resumed.
    for (id, _) in storage.list_uploads()? {
        let _ = storage.upload_delete(&id);
    }
    let mut auth_cfg = cfg.auth.clone();
    if args.htpasswd.is_some() {
        auth_cfg.htpasswd = args.htpasswd.clone();
    }
    let auth = auth::Auth::from_config(&auth_cfg)?;
    let tls = match (
        args.tls_cert.clone().or(cfg.tls_cert.clone()),
        args.tls_key.clone().or(cfg.tls_key.clone()),
    ) {
        (Some(c), Some(k)) => Some(tls_acceptor(&c, &k)?),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both a certificate and a key"),
    };
    let expiry = Duration::from_secs(cfg.upload_expiry_secs.unwrap_or(24 * 3600));
    let state = Arc::new(AppState::new(
        Arc::new(storage),
        auth,
        args.delete_enabled || cfg.delete_enabled,
        expiry,
        gc::WriteLock::new(&root),
    ));
    Ok(Prepared { addr, state, tls, sendfile: cfg.sendfile })
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("opening {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("reading certificates from {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no PEM certificate", cert.display());
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?,
    ))
    .with_context(|| format!("reading the private key from {}", key.display()))?
    .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("TLS certificate and key do not form a usable pair")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .route("/token", get(token_handler))
        .fallback(server::dispatch)
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::access_log))
        .with_state(state)
}

async fn metrics_handler(State(st): State<Arc<AppState>>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], st.metrics.render(st.active_uploads()))
        .into_response()
}

async fn token_handler(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
    let query = req.uri().query().unwrap_or("").to_string();
    // bcrypt is deliberately slow: keep it off the async threads.
    match tokio::task::spawn_blocking(move || st.auth.issue_token(header.as_deref(), &query)).await
    {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => error::ApiError::internal(e).into_response(),
    }
}

/// Accepts connections until `shutdown` resolves, then lets in-flight requests finish
/// (up to 30 s) before returning.
async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sendfile: bool,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let app = router(state.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let expiry_state = state.clone();
    let expiry_task = tokio::spawn(async move {
        let period =
            (expiry_state.upload_expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::time::sleep(period).await;
            expiry_state.expire_uploads().await;
        }
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // writev keeps body buffers whole (no copy into hyper's buffer), which is what lets
        // SendfileStream see the mapped blob bytes.
        builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(60)).writev(true);
        match &tls {
            None => {
                let io = TokioIo::new(zerocopy::SendfileStream { stream, sendfile });
                let conn = builder.serve_connection(io, svc);
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        Duration::from_secs(30),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            return tracing::debug!(%peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("connections still open after 30 s; closing"),
    }
    expiry_task.abort();
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let level = if level.is_empty() { "info" } else { level };
    let level: tracing::Level = level.parse().map_err(|_| {
        anyhow::anyhow!("unknown log level {level:?}: error, warn, info, debug or trace")
    })?;
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs the registry until SIGTERM or Ctrl-C, then finishes in-flight requests.
pub fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_level)?;
    let prepared = prepare(&args)?;
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(&prepared.addr)
            .await
            .with_context(|| format!("listening on {}", prepared.addr))?;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, tls = prepared.tls.is_some(), "strata registry listening");
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch SIGTERM");
                        let _ = tokio::signal::ctrl_c().await;
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        };
        serve(listener, prepared.state, prepared.tls, prepared.sendfile, shutdown).await;
        Ok(())
    })
}

/// Runs one garbage collection over the registry's storage (safe while it serves).
pub fn run_gc(args: GcArgs) -> anyhow::Result<GcReport> {
    let cfg = load_config(&args.config)?;
    let root = args.root.clone().or(cfg.root.clone()).unwrap_or_else(default_root);
    anyhow::ensure!(
        root.join("blobs").is_dir(),
        "{} is not a registry root (no blobs/ directory)",
        root.display()
    );
    let storage = FsStorage::open(&root)?;
    let grace = Duration::from_secs(args.grace_secs.or(cfg.gc_grace_secs).unwrap_or(3600));
    let expiry = Duration::from_secs(cfg.upload_expiry_secs.unwrap_or(24 * 3600));
    Ok(gc::collect(
        &storage as &dyn Storage,
        &root,
        grace,
        expiry,
        args.dry_run,
        Duration::from_secs(120),
    )?)
}

/// A server running on a background thread; dropped or [`stop`](RunningServer::stop)ped,
/// it shuts down gracefully.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts a server on a background thread; `args.addr` may use port 0.
pub fn spawn(args: ServeArgs) -> anyhow::Result<RunningServer> {
    let _ = init_logging(&args.log_level);
    let prepared = prepare(&args)?;
    let rt = runtime()?;
    let listener = rt
        .block_on(TcpListener::bind(&prepared.addr))
        .with_context(|| format!("listening on {}", prepared.addr))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("strata-registry".into()).spawn(move || {
        rt.block_on(serve(listener, prepared.state, prepared.tls, prepared.sendfile, async {
            let _ = rx.await;
        }));
    })?;
    Ok(RunningServer { addr, stop: Some(tx), thread: Some(thread) })
}

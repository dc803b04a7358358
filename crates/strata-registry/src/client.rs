//! The HTTP side of the distribution protocol: endpoints, auth (basic, bearer tokens per
//! scope, reused until they expire, refreshed on 401), retries with backoff, streamed and
//! resumed blob downloads, monolithic and chunked uploads, cross-repository mounts.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use strata_oci::{media_types, Digest};
use strata_store::{Blobs, Ingest};

use crate::auth::parse_challenges;
use crate::credentials::{Credentials, DockerConfig};
use crate::error::{RegistryError, Result};
use crate::Event;

/// Manifests and indexes larger than this are refused (the distribution spec suggests 4 MiB).
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// Image configs larger than this are refused.
pub const CONFIG_LIMIT: u64 = 64 << 20;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Where credentials come from.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// Docker's `config.json` (and its credential helpers), at this path or the default one.
    DockerConfig(Option<std::path::PathBuf>),
    /// These credentials for every registry.
    Fixed(Credentials),
    Anonymous,
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Registries (host[:port]) spoken to over plain HTTP. Loopback hosts always are.
    pub insecure: Vec<String>,
    /// Attempts per request after a connection error or a 5xx/429 answer.
    pub retries: u32,
    /// First backoff delay; doubled each time.
    pub backoff: Duration,
    /// Upload blobs in chunks of this size (PATCH) instead of one PUT.
    pub chunk_size: Option<u64>,
    pub credentials: CredentialSource,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let mut insecure = Vec::new();
        if let Ok(list) = std::env::var("STRATA_INSECURE_REGISTRIES") {
            insecure
                .extend(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from));
        }
        ClientOptions {
            insecure,
            retries: 5,
            backoff: Duration::from_millis(200),
            chunk_size: None,
            credentials: CredentialSource::DockerConfig(None),
            user_agent: concat!("strata/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

#[derive(Clone)]
struct Token {
    value: String,
    expires: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AuthKind {
    None,
    Basic,
    Bearer,
}

type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// A registry client. Cheap to clone; clones share tokens and connections.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    opts: Arc<ClientOptions>,
    state: Arc<Mutex<State>>,
    /// Serialises token fetches, so requests that meet a challenge together share a token.
    token_fetch: Arc<tokio::sync::Mutex<()>>,
    events: EventSink,
}

#[derive(Default)]
struct State {
    creds: HashMap<String, Option<Credentials>>,
    kind: HashMap<String, AuthKind>,
    /// (registry, sorted scopes) -> token
    tokens: HashMap<(String, String), Token>,
    /// registry -> (realm, service) from its last bearer challenge
    realms: HashMap<String, (String, Option<String>)>,
}

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

/// A blob a request reads, for messages.
fn blob_url(base: &str, repo: &str, digest: &Digest) -> String {
    format!("{base}/v2/{repo}/blobs/{digest}")
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h == "::1" || h.starts_with("127.") || h.ends_with(".localhost")
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(opts.user_agent.clone())
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| RegistryError::Http {
                url: String::new(),
                message: format!("building HTTP client: {e}"),
            })?;
        Ok(Client {
            http,
            opts: Arc::new(opts),
            state: Arc::default(),
            token_fetch: Arc::default(),
            events: Arc::new(|_| {}),
        })
    }

    /// Sends progress and retry events to `sink`.
    pub fn with_events(mut self, sink: impl Fn(Event) + Send + Sync + 'static) -> Client {
        self.events = Arc::new(sink);
        self
    }

    pub(crate) fn emit(&self, e: Event) {
        (self.events)(e)
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// `https://host` or, for insecure registries, `http://host`.
    pub fn base_url(&self, registry: &str) -> String {
        let host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        if is_loopback(registry) || self.opts.insecure.iter().any(|i| i == registry) {
            format!("http://{host}")
        } else {
            format!("https://{host}")
        }
    }

    fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        if let Some(c) = self.lock().creds.get(registry) {
            return Ok(c.clone());
        }
        let creds = match &self.opts.credentials {
            CredentialSource::Anonymous => None,
            CredentialSource::Fixed(c) => Some(c.clone()),
            CredentialSource::DockerConfig(path) => {
                let cfg = match path {
                    Some(p) => DockerConfig::load(p)?,
                    None => DockerConfig::load_default()?,
                };
                cfg.get(registry)?
            }
        };
        self.lock().creds.insert(registry.to_string(), creds.clone());
        Ok(creds)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn auth_header(&self, registry: &str, scopes: &str) -> Result<Option<String>> {
        let kind = self.lock().kind.get(registry).copied().unwrap_or(AuthKind::None);
        Ok(match kind {
            AuthKind::None => None,
            AuthKind::Basic => self.credentials(registry)?.map(|c| basic(&c)),
            AuthKind::Bearer => {
                let key = (registry.to_string(), scopes.to_string());
                let cached = self.lock().tokens.get(&key).cloned();
                match cached {
                    Some(t) if t.expires > Instant::now() => Some(format!("Bearer {}", t.value)),
                    _ => None,
                }
            }
        })
    }

    /// Fetches a bearer token for `scopes` from the realm and caches it.
    async fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &str,
    ) -> Result<String> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Unauthorized {
            registry: registry.to_string(),
            message: format!("the token realm {realm:?} is not a URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes.split(' ').filter(|s| !s.is_empty()) {
                q.append_pair("scope", s);
            }
        }
        let mut req = self.http.get(url.clone());
        let creds = self.credentials(registry)?;
        if let Some(c) = &creds {
            req = req.header(AUTHORIZATION, basic(c));
        }
        let resp = req.send().await.map_err(|e| http_err(url.as_str(), e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(RegistryError::Unauthorized {
                registry: registry.to_string(),
                message: format!(
                    "the token service answered {status}{}{}",
                    if creds.is_none() { " (no credentials: run `strata login`)" } else { "" },
                    detail(&body)
                ),
            });
        }
        let body = read_limited(resp, 1 << 20, "token answer").await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Unauthorized {
                registry: registry.to_string(),
                message: format!("the token service sent invalid JSON: {e}"),
            })?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Unauthorized {
                registry: registry.to_string(),
                message: "the token service sent no token".into(),
            })?
            .to_string();
        let expires_in = v.get("expires_in").and_then(|e| e.as_u64()).unwrap_or(60).max(10);
        // Renew a little before the registry would refuse it.
        let expires = Instant::now() + Duration::from_secs(expires_in.saturating_sub(5));
        self.lock().tokens.insert(
            (registry.to_string(), scopes.to_string()),
            Token { value: token.clone(), expires },
        );
        Ok(token)
    }

    async fn authorization(&self, registry: &str, scopes: &str) -> Result<Option<String>> {
        if let Some(h) = self.auth_header(registry, scopes)? {
            return Ok(Some(h));
        }
        let bearer = self.lock().kind.get(registry) == Some(&AuthKind::Bearer);
        if bearer {
            let realm = self.lock().realms.get(registry).cloned();
            if let Some((realm, service)) = realm {
                let _one_at_a_time = self.token_fetch.lock().await;
                if let Some(h) = self.auth_header(registry, scopes)? {
                    return Ok(Some(h));
                }
                let t = self.fetch_token(registry, &realm, service.as_deref(), scopes).await?;
                return Ok(Some(format!("Bearer {t}")));
            }
        }
        Ok(None)
    }

    /// Reacts to a 401: learns the scheme, fetches a token. `false` when nothing can help.
    async fn on_unauthorized(
        &self,
        registry: &str,
        scopes: &str,
        sent: Option<&String>,
        headers: &HeaderMap,
    ) -> Result<bool> {
        let challenges: Vec<_> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm =
                b.params.get("realm").cloned().ok_or_else(|| RegistryError::Unauthorized {
                    registry: registry.to_string(),
                    message: "bearer challenge without a realm".into(),
                })?;
            let service = b.params.get("service").cloned();
            let _one_at_a_time = self.token_fetch.lock().await;
            {
                let mut st = self.lock();
                st.kind.insert(registry.to_string(), AuthKind::Bearer);
                st.realms.insert(registry.to_string(), (realm.clone(), service.clone()));
                let key = (registry.to_string(), scopes.to_string());
                // Another request fetched a fresh token since this one was sent: use it.
                if let Some(t) = st.tokens.get(&key) {
                    if t.expires > Instant::now() && sent != Some(&format!("Bearer {}", t.value)) {
                        return Ok(true);
                    }
                }
                st.tokens.remove(&key);
            }
            self.fetch_token(registry, &realm, service.as_deref(), scopes).await?;
            return Ok(true);
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            // Concurrent requests may all meet the challenge: each retries once.
            self.lock().kind.insert(registry.to_string(), AuthKind::Basic);
            return Ok(self.credentials(registry)?.is_some());
        }
        Ok(false)
    }

    /// Sends a request built by `build`, with auth, retrying connection errors and 5xx.
    /// `scopes` is the space-separated token scope the request needs.
    pub(crate) async fn send(
        &self,
        registry: &str,
        scopes: &str,
        what: &str,
        build: &(dyn Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder> + Sync),
    ) -> Result<reqwest::Response> {
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            let mut req = build(&self.http)?;
            let sent = self.authorization(registry, scopes).await?;
            if let Some(h) = &sent {
                req = req.header(AUTHORIZATION, h.as_str());
            }
            let req = req.build().map_err(|e| RegistryError::Http {
                url: what.to_string(),
                message: e.to_string(),
            })?;
            let url = req.url().to_string();
            match self.http.execute(req).await {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    if !reauthed
                        && self
                            .on_unauthorized(registry, scopes, sent.as_ref(), resp.headers())
                            .await?
                    {
                        reauthed = true;
                        continue;
                    }
                    let body = resp.text().await.unwrap_or_default();
                    let has_creds = self.credentials(registry)?.is_some();
                    return Err(RegistryError::Unauthorized {
                        registry: registry.to_string(),
                        message: format!(
                            "{what} was refused{}{}",
                            if has_creds {
                                " with the stored credentials"
                            } else {
                                " (no credentials: run `strata login`)"
                            },
                            detail(&body)
                        ),
                    });
                }
                Ok(resp)
                    if (resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS)
                        && attempt < self.opts.retries =>
                {
                    attempt += 1;
                    self.emit(Event::Retry {
                        what: what.to_string(),
                        attempt,
                        error: format!("HTTP {}", resp.status()),
                    });
                    self.backoff(attempt).await;
                }
                Ok(resp) => return Ok(resp),
                Err(e) if attempt < self.opts.retries && retryable(&e) => {
                    attempt += 1;
                    self.emit(Event::Retry {
                        what: what.to_string(),
                        attempt,
                        error: e.to_string(),
                    });
                    self.backoff(attempt).await;
                }
                Err(e) => return Err(http_err(&url, e)),
            }
        }
    }

    async fn backoff(&self, attempt: u32) {
        let d = self.opts.backoff.saturating_mul(1 << attempt.min(6).saturating_sub(1));
        tokio::time::sleep(d.min(Duration::from_secs(10))).await;
    }

    /// Checks the registry answers the API (`GET /v2/`) and that the credentials work.
    pub async fn ping(&self, registry: &str) -> Result<()> {
        let url = format!("{}/v2/", self.base_url(registry));
        // An empty scope: token services grant a token without access for it.
        let resp = self.send(registry, "", "logging in", &|h| Ok(h.get(&url))).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_err(&url, resp).await)
        }
    }

    /// Fetches a manifest by tag or digest; bounded to [`MANIFEST_LIMIT`].
    pub async fn get_manifest(
        &self,
        registry: &str,
        repo: &str,
        reference: &str,
    ) -> Result<FetchedManifest> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base_url(registry));
        let scope = pull_scope(repo);
        let resp = self
            .send(registry, &scope, &format!("manifest {repo}:{reference}"), &|h| {
                Ok(h.get(&url).header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                what: "manifest",
                name: format!("{registry}/{repo}:{reference}"),
            });
        }
        if !resp.status().is_success() {
            return Err(status_err(&url, resp).await);
        }
        let content_type =
            resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(String::from);
        let bytes =
            read_limited(resp, MANIFEST_LIMIT, &format!("manifest {repo}:{reference}")).await?;
        Ok(FetchedManifest { bytes, content_type })
    }

    /// Fetches a small blob (a config) into memory, checking its size and digest.
    pub async fn get_blob_bytes(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        limit: u64,
    ) -> Result<Vec<u8>> {
        if size > limit {
            return Err(RegistryError::TooLarge { what: format!("blob {digest}"), limit });
        }
        let url = blob_url(&self.base_url(registry), repo, digest);
        let resp = self
            .send(registry, &pull_scope(repo), &format!("blob {digest}"), &|h| Ok(h.get(&url)))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                what: "blob",
                name: format!("{registry}/{repo}@{digest}"),
            });
        }
        if !resp.status().is_success() {
            return Err(status_err(&url, resp).await);
        }
        let bytes = read_limited(resp, size, &format!("blob {digest}")).await?;
        if bytes.len() as u64 != size {
            return Err(RegistryError::SizeMismatch {
                what: format!("blob {digest}"),
                expected: size,
                actual: bytes.len() as u64,
            });
        }
        let actual = Digest::sha256_of(&bytes);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Streams a blob into `ingest`, at most `size` bytes, resuming with `Range` after a
    /// broken connection. The caller verifies the digest when it stages the ingest.
    pub async fn download_blob(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        blobs: &Blobs,
        ingest: &mut Ingest,
    ) -> Result<()> {
        self.download_into(registry, repo, digest, size, &mut IngestSink { blobs, ingest }).await
    }

    /// [`Client::download_blob`] into any [`BlobSink`].
    pub async fn download_into(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        ingest: &mut dyn BlobSink,
    ) -> Result<()> {
        let url = blob_url(&self.base_url(registry), repo, digest);
        let scope = pull_scope(repo);
        let what = format!("blob {digest}");
        let mut failures = 0u32;
        let mut last_report = Instant::now();
        loop {
            let offset = ingest.len();
            let resp = self
                .send(registry, &scope, &what, &|h| {
                    let r = h.get(&url);
                    Ok(if offset > 0 { r.header(RANGE, format!("bytes={offset}-")) } else { r })
                })
                .await?;
            match resp.status() {
                StatusCode::PARTIAL_CONTENT if offset > 0 => {}
                StatusCode::OK => {
                    if offset > 0 {
                        // The registry ignored the range: start over.
                        ingest.restart()?;
                    }
                }
                StatusCode::NOT_FOUND => {
                    return Err(RegistryError::NotFound {
                        what: "blob",
                        name: format!("{registry}/{repo}@{digest}"),
                    })
                }
                StatusCode::RANGE_NOT_SATISFIABLE => ingest.restart()?,
                _ => return Err(status_err(&url, resp).await),
            }
            if let Some(len) = resp.content_length() {
                if ingest.len() + len > size {
                    return Err(RegistryError::SizeMismatch {
                        what,
                        expected: size,
                        actual: ingest.len() + len,
                    });
                }
            }
            let mut resp = resp;
            let broken = loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        if ingest.len() + chunk.len() as u64 > size {
                            return Err(RegistryError::SizeMismatch {
                                what,
                                expected: size,
                                actual: ingest.len() + chunk.len() as u64,
                            });
                        }
                        ingest.write_chunk(&chunk)?;
                        if last_report.elapsed() >= Duration::from_millis(100) {
                            last_report = Instant::now();
                            self.emit(Event::BlobProgress {
                                digest: digest.clone(),
                                done: ingest.len(),
                                total: size,
                            });
                        }
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(error_chain(&e)),
                }
            };
            if ingest.len() == size {
                self.emit(Event::BlobProgress { digest: digest.clone(), done: size, total: size });
                return Ok(());
            }
            let error = broken.unwrap_or_else(|| {
                format!("connection closed after {} of {size} bytes", ingest.len())
            });
            if ingest.len() > offset {
                failures = 0;
            }
            failures += 1;
            if failures > self.opts.retries {
                return Err(RegistryError::Http {
                    url,
                    message: format!("download failed after {} attempts: {error}", failures),
                });
            }
            self.emit(Event::Retry {
                what: what.clone(),
                attempt: failures,
                error: format!("{error}; resuming at byte {}", ingest.len()),
            });
            self.backoff(failures).await;
        }
    }

    /// `HEAD` a blob: does the repository have it?
    pub async fn blob_exists(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        push: bool,
    ) -> Result<bool> {
        let url = blob_url(&self.base_url(registry), repo, digest);
        let scope = if push { push_scope(repo) } else { pull_scope(repo) };
        let resp =
            self.send(registry, &scope, &format!("blob {digest}"), &|h| Ok(h.head(&url))).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_err(&url, resp).await),
        }
    }

    /// Tries a cross-repository mount; `true` when the registry mounted the blob.
    pub async fn mount_blob(
        &self,
        registry: &str,
        repo: &str,
        from: &str,
        digest: &Digest,
    ) -> Result<bool> {
        let url = format!(
            "{}/v2/{repo}/blobs/uploads/?mount={digest}&from={from}",
            self.base_url(registry)
        );
        let scope = format!("{} {}", push_scope(repo), pull_scope(from));
        let resp = self
            .send(registry, &scope, &format!("mounting {digest} from {from}"), &|h| {
                Ok(h.post(&url).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            // 202: the registry opened an upload instead; leave it to expire.
            s if s.is_success() => Ok(false),
            _ => Ok(false),
        }
    }

    async fn start_upload(&self, registry: &str, repo: &str) -> Result<String> {
        let base = self.base_url(registry);
        let url = format!("{base}/v2/{repo}/blobs/uploads/");
        let resp = self
            .send(registry, &push_scope(repo), &format!("starting an upload to {repo}"), &|h| {
                Ok(h.post(&url).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_err(&url, resp).await);
        }
        location(&base, &url, resp.headers())
    }

    /// Uploads a blob from a file: monolithic (POST then PUT), or chunked (PATCHes) when the
    /// options ask for it. A failed attempt restarts the upload.
    pub async fn upload_blob(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            let result = match self.opts.chunk_size {
                Some(chunk) if chunk > 0 && size > chunk => {
                    self.upload_chunked(registry, repo, digest, size, path, chunk).await
                }
                _ => self.upload_monolithic(registry, repo, digest, size, path).await,
            };
            match result {
                Err(RegistryError::Http { message, .. }) if attempt < self.opts.retries => {
                    attempt += 1;
                    self.emit(Event::Retry {
                        what: format!("upload of {digest}"),
                        attempt,
                        error: message,
                    });
                    self.backoff(attempt).await;
                }
                other => return other,
            }
        }
    }

    async fn upload_monolithic(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
    ) -> Result<()> {
        let loc = self.start_upload(registry, repo).await?;
        let put = with_query(&loc, "digest", &digest.to_string())?;
        let resp = self
            .send(registry, &push_scope(repo), &format!("uploading {digest}"), &|h| {
                let file = std::fs::File::open(path)
                    .map_err(|e| RegistryError::io("reading", path.display(), e))?;
                let body = file_body(file);
                Ok(h.put(&put)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .body(body))
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_err(&put, resp).await);
        }
        Ok(())
    }

    async fn upload_chunked(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
        chunk: u64,
    ) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let base = self.base_url(registry);
        let mut loc = self.start_upload(registry, repo).await?;
        let mut offset = 0u64;
        while offset < size {
            let n = chunk.min(size - offset);
            let mut buf = vec![0u8; n as usize];
            let mut f = std::fs::File::open(path)
                .map_err(|e| RegistryError::io("reading", path.display(), e))?;
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| RegistryError::io("reading", path.display(), e))?;
            let body = bytes::Bytes::from(buf);
            let cur = loc.clone();
            let resp = self
                .send(registry, &push_scope(repo), &format!("uploading {digest}"), &|h| {
                    Ok(h.request(Method::PATCH, &cur)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header("Content-Range", format!("{offset}-{}", offset + n - 1))
                        .header(CONTENT_LENGTH, n)
                        .body(body.clone()))
                })
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(status_err(&cur, resp).await);
            }
            loc = location(&base, &cur, resp.headers())?;
            offset += n;
        }
        let put = with_query(&loc, "digest", &digest.to_string())?;
        let resp = self
            .send(registry, &push_scope(repo), &format!("finishing upload of {digest}"), &|h| {
                Ok(h.put(&put).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_err(&put, resp).await);
        }
        Ok(())
    }

    /// Puts a manifest under a tag or digest; returns the digest the registry reports.
    pub async fn put_manifest(
        &self,
        registry: &str,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Option<String>> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base_url(registry));
        let body = bytes::Bytes::copy_from_slice(bytes);
        let mt = media_type.to_string();
        let resp = self
            .send(registry, &push_scope(repo), &format!("manifest {repo}:{reference}"), &|h| {
                Ok(h.put(&url).header(CONTENT_TYPE, mt.as_str()).body(body.clone()))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_err(&url, resp).await);
        }
        Ok(resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(String::from))
    }

    /// Tags of a repository (`GET /v2/<repo>/tags/list`, following `Link` pagination).
    pub async fn list_tags(&self, registry: &str, repo: &str) -> Result<Vec<String>> {
        let base = self.base_url(registry);
        let mut url = format!("{base}/v2/{repo}/tags/list");
        let mut tags = Vec::new();
        for _ in 0..1000 {
            let u = url.clone();
            let resp = self
                .send(registry, &pull_scope(repo), &format!("tags of {repo}"), &|h| Ok(h.get(&u)))
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Err(RegistryError::NotFound {
                    what: "repository",
                    name: format!("{registry}/{repo}"),
                });
            }
            if !resp.status().is_success() {
                return Err(status_err(&u, resp).await);
            }
            let next = resp
                .headers()
                .get("Link")
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split_once('<'))
                .and_then(|(_, r)| r.split_once('>'))
                .map(
                    |(l, _)| if l.starts_with('/') { format!("{base}{l}") } else { l.to_string() },
                );
            let body = read_limited(resp, 16 << 20, "tag list").await?;
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                RegistryError::Http { url: u.clone(), message: format!("invalid tag list: {e}") }
            })?;
            if let Some(list) = v.get("tags").and_then(|t| t.as_array()) {
                tags.extend(list.iter().filter_map(|t| t.as_str()).map(String::from));
            }
            match next {
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
        Ok(tags)
    }
}

/// Where a download goes: written bytes are counted; `restart` drops them.
pub trait BlobSink: Send {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<()>;
    fn restart(&mut self) -> Result<()>;
}

struct IngestSink<'a> {
    blobs: &'a Blobs,
    ingest: &'a mut Ingest,
}

impl BlobSink for IngestSink<'_> {
    fn len(&self) -> u64 {
        self.ingest.len()
    }
    fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        self.ingest
            .write_all(bytes)
            .map_err(|e| RegistryError::io("writing", self.ingest.temp_path().display(), e))
    }
    fn restart(&mut self) -> Result<()> {
        *self.ingest = self.blobs.ingest()?;
        Ok(())
    }
}

/// A request body streaming a file in 1 MiB reads (reqwest's `From<File>` reads 4 KiB at
/// a time, each a trip to the blocking pool).
fn file_body(file: std::fs::File) -> reqwest::Body {
    let file = tokio::fs::File::from_std(file);
    let chunks = futures_util::stream::try_unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 1 << 20];
        let n = tokio::io::AsyncReadExt::read(&mut f, &mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((bytes::Bytes::from(buf), f)))
    });
    reqwest::Body::wrap_stream(chunks)
}

pub(crate) fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

pub(crate) fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

fn basic(c: &Credentials) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
    )
}

fn retryable(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

fn http_err(url: &str, e: reqwest::Error) -> RegistryError {
    RegistryError::Http { url: url.to_string(), message: error_chain(&e) }
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    message
}

fn detail(body: &str) -> String {
    let b = body.trim();
    if b.is_empty() {
        String::new()
    } else {
        let cut: String = b.chars().take(300).collect();
        format!(": {cut}")
    }
}

async fn status_err(url: &str, resp: reqwest::Response) -> RegistryError {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    RegistryError::Status { url: url.to_string(), status, detail: detail(&body) }
}

async fn read_limited(mut resp: reqwest::Response, limit: u64, what: &str) -> Result<Vec<u8>> {
    let url = resp.url().to_string();
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(RegistryError::TooLarge { what: what.to_string(), limit });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| http_err(&url, e))? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(RegistryError::TooLarge { what: what.to_string(), limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn location(base: &str, request_url: &str, headers: &HeaderMap) -> Result<String> {
    let loc =
        headers.get(LOCATION).and_then(|v: &HeaderValue| v.to_str().ok()).ok_or_else(|| {
            RegistryError::Http {
                url: request_url.to_string(),
                message: "upload answer has no Location".into(),
            }
        })?;
    if loc.starts_with("http://") || loc.starts_with("https://") {
        Ok(loc.to_string())
    } else if loc.starts_with('/') {
        Ok(format!("{base}{loc}"))
    } else {
        let u = reqwest::Url::parse(request_url).and_then(|u| u.join(loc)).map_err(|e| {
            RegistryError::Http {
                url: request_url.to_string(),
                message: format!("bad Location {loc:?}: {e}"),
            }
        })?;
        Ok(u.to_string())
    }
}

fn with_query(url: &str, key: &str, value: &str) -> Result<String> {
    let mut u = reqwest::Url::parse(url).map_err(|e| RegistryError::Http {
        url: url.to_string(),
        message: format!("bad upload URL: {e}"),
    })?;
    u.query_pairs_mut().append_pair(key, value);
    Ok(u.to_string())
}

/// Whether a media type names something a registry serves as a manifest.
pub fn is_manifest_type(mt: &str) -> bool {
    media_types::is_manifest(mt) || media_types::is_index(mt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_insecure() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5055"));
        assert!(is_loopback("[::1]:80"));
        assert!(!is_loopback("registry.example.com"));
        let c = Client::new(ClientOptions {
            insecure: vec!["reg.lan:5000".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.base_url("reg.lan:5000"), "http://reg.lan:5000");
        assert_eq!(c.base_url("quay.io"), "https://quay.io");
        assert_eq!(c.base_url("docker.io"), "https://registry-1.docker.io");
    }

    #[test]
    fn locations() {
        let mut h = HeaderMap::new();
        h.insert(LOCATION, HeaderValue::from_static("/v2/a/blobs/uploads/x?_state=1"));
        assert_eq!(
            location("http://r", "http://r/v2/a/blobs/uploads/", &h).unwrap(),
            "http://r/v2/a/blobs/uploads/x?_state=1"
        );
        assert_eq!(
            with_query("http://r/u?_state=1", "digest", "sha256:ab").unwrap(),
            "http://r/u?_state=1&digest=sha256%3Aab"
        );
    }
}

//! The HTTP API: routing of `/v2/...` paths (repository names contain `/`, so paths are
//! parsed here rather than by a path router), uploads, manifests, tags, referrers, catalog.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::digest::{Algorithm, Digest, Hasher};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use strata_oci::media_types as mt;

use crate::auth::{Action, Auth, Need};
use crate::error::{ApiError, Code};
use crate::gc::WriteLock;
use crate::metrics::Metrics;
use crate::storage::{Storage, UploadWriter};

/// Manifests larger than this are refused, as other registries do (4 MiB).
const MAX_MANIFEST: usize = 4 << 20;
/// Body bytes gathered before one blocking write.
const WRITE_BATCH: usize = 1 << 20;

pub struct AppState {
    pub storage: Arc<dyn Storage>,
    pub auth: Auth,
    pub delete_enabled: bool,
    pub upload_expiry: Duration,
    pub metrics: Metrics,
    pub write_lock: WriteLock,
    uploads: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

struct Session {
    repo: String,
    /// sha256 of the bytes so far; another algorithm is computed at the end if asked for.
    hasher: Hasher,
    size: u64,
    writer: Option<Box<dyn UploadWriter>>,
    last: Instant,
    /// Set once finished or cancelled, so a request that waited on the lock sees it is gone.
    closed: bool,
}

type ApiResult = Result<Response, ApiError>;

impl AppState {
    pub fn new(
        storage: Arc<dyn Storage>,
        auth: Auth,
        delete_enabled: bool,
        upload_expiry: Duration,
        write_lock: WriteLock,
    ) -> AppState {
        AppState {
            storage,
            auth,
            delete_enabled,
            upload_expiry,
            metrics: Metrics::default(),
            write_lock,
            uploads: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Runs a storage call on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Storage) -> Result<T, ApiError> + Send + 'static,
    {
        let s = self.storage.clone();
        tokio::task::spawn_blocking(move || f(&*s)).await.map_err(ApiError::internal)?
    }

    pub fn active_uploads(&self) -> usize {
        self.uploads.lock().expect("uploads").len()
    }

    /// Drops sessions idle longer than the expiry, with their files.
    pub async fn expire_uploads(&self) {
        let now = Instant::now();
        let sessions: Vec<(String, Arc<tokio::sync::Mutex<Session>>)> = self
            .uploads
            .lock()
            .expect("uploads")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, s) in sessions {
            let Ok(mut g) = s.try_lock() else { continue };
            if now.duration_since(g.last) > self.upload_expiry {
                g.closed = true;
                g.writer = None;
                self.uploads.lock().expect("uploads").remove(&id);
                let id2 = id.clone();
                let _ = self.blocking(move |st| Ok(st.upload_delete(&id2)?)).await;
                tracing::info!(upload = %id, repo = %g.repo, "expired idle upload session");
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    UploadStart(String),
    Upload(String, String),
    Referrers(String, String),
}

fn route(path: &str) -> Option<Route> {
    if path == "/v2" || path == "/v2/" {
        return Some(Route::Base);
    }
    let rest = path.strip_prefix("/v2/")?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let n = parts.len();
    let name = |k: usize| parts[..n - k].join("/");
    if n >= 4 && parts[n - 3] == "blobs" && parts[n - 2] == "uploads" {
        let id = parts[n - 1];
        return Some(if id.is_empty() {
            Route::UploadStart(name(3))
        } else {
            Route::Upload(name(3), id.to_string())
        });
    }
    if n >= 3 {
        let last = parts[n - 1].to_string();
        match parts[n - 2] {
            "tags" if last == "list" => return Some(Route::Tags(name(2))),
            "manifests" => return Some(Route::Manifest(name(2), last)),
            "blobs" if last == "uploads" => return Some(Route::UploadStart(name(2))),
            "blobs" => return Some(Route::Blob(name(2), last)),
            "referrers" => return Some(Route::Referrers(name(2), last)),
            _ => {}
        }
    }
    None
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most 255 bytes.
pub fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    name.split('/').all(|comp| {
        let b = comp.as_bytes();
        if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if is_alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !is_alnum(b[i]) {
                i += 1;
            }
            let sep = &comp[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return false;
            }
        }
        true
    })
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse::<Digest>().map_err(|e| ApiError::new(Code::DigestInvalid, e.to_string()))
}

fn query_map(req: &Request) -> Vec<(String, String)> {
    crate::auth::form_pairs(req.uri().query().unwrap_or(""))
}

fn q<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn resp(status: StatusCode, headers: &[(&str, String)], body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes())
                    .expect("static header names are valid"),
                v,
            );
        }
    }
    r
}

fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// The entry point for every `/v2/` request.
pub async fn dispatch(State(st): State<Arc<AppState>>, req: Request) -> Response {
    match handle(&st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(st: &Arc<AppState>, req: Request) -> ApiResult {
    let Some(route) = route(req.uri().path()) else {
        return Err(
            ApiError::new(Code::NameUnknown, "no such endpoint").with_status(StatusCode::NOT_FOUND)
        );
    };
    let name = match &route {
        Route::Base | Route::Catalog => None,
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::UploadStart(n)
        | Route::Upload(n, _)
        | Route::Referrers(n, _) => Some(n.clone()),
    };
    if let Some(n) = &name {
        if !valid_name(n) {
            return Err(ApiError::new(Code::NameInvalid, format!("invalid repository name {n:?}")));
        }
    }
    let method = req.method().clone();
    let pairs = query_map(&req);
    let mut needs = Vec::new();
    let action = match method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => match route {
            Route::Upload(..) => Action::Push,
            _ => Action::Delete,
        },
        _ => Action::Push,
    };
    match (&route, &name) {
        (Route::Base, _) => needs.push(Need::Base),
        (Route::Catalog, _) => needs.push(Need::Catalog),
        (_, Some(n)) => {
            needs.push(Need::Repo(n.clone(), action));
            if let (Route::UploadStart(_), Some(from)) = (&route, q(&pairs, "from")) {
                if q(&pairs, "mount").is_some() && valid_name(from) {
                    needs.push(Need::Repo(from.to_string(), Action::Pull));
                }
            }
        }
        _ => {}
    }
    let host = header(req.headers(), "host").unwrap_or("localhost").to_string();
    let authz = header(req.headers(), "authorization");
    let user = if st.auth.is_open() {
        "-".to_string()
    } else {
        // A first sign-in runs bcrypt (slow by design): let the runtime move other work away.
        tokio::task::block_in_place(|| st.auth.authorize(authz, &host, &needs))?
    };
    if let Some(ext) = req.extensions().get::<crate::metrics::UserSlot>() {
        ext.set(user);
    }

    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => Ok(resp(
            StatusCode::OK,
            &[
                ("docker-distribution-api-version", "registry/2.0".into()),
                ("content-type", "application/json".into()),
            ],
            Body::from("{}"),
        )),
        (Route::Catalog, Method::GET) => catalog(st, &pairs).await,
        (Route::Tags(n), Method::GET) => tags_list(st, n, &pairs).await,
        (Route::Manifest(n, r), m @ (Method::GET | Method::HEAD)) => {
            get_manifest(st, n, r, m == Method::HEAD).await
        }
        (Route::Manifest(n, r), Method::PUT) => put_manifest(st, n, r, req).await,
        (Route::Manifest(n, r), Method::DELETE) => delete_manifest(st, n, r).await,
        (Route::Blob(n, d), m @ (Method::GET | Method::HEAD)) => {
            get_blob(st, n, d, m == Method::HEAD, req.headers()).await
        }
        (Route::Blob(n, d), Method::DELETE) => delete_blob(st, n, d).await,
        (Route::UploadStart(n), Method::POST) => start_upload(st, n, pairs, req).await,
        (Route::Upload(n, id), Method::PATCH) => patch_upload(st, n, id, req).await,
        (Route::Upload(n, id), Method::PUT) => put_upload(st, n, id, pairs, req).await,
        (Route::Upload(n, id), Method::GET) => upload_status(st, n, id).await,
        (Route::Upload(n, id), Method::DELETE) => cancel_upload(st, n, id).await,
        (Route::Referrers(n, d), Method::GET) => referrers(st, n, d, &pairs).await,
        _ => Err(ApiError::new(Code::Unsupported, "method not allowed on this endpoint")),
    }
}

/// `n`/`last` pagination over a sorted list; returns the page and the `Link` header.
fn paginate(
    items: Vec<String>,
    pairs: &[(String, String)],
    base: &str,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let n = match q(pairs, "n") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(Code::Unsupported, format!("invalid n={v:?}"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
        None => None,
    };
    let last = q(pairs, "last");
    let filtered: Vec<String> =
        items.into_iter().filter(|t| last.is_none_or(|l| t.as_str() > l)).collect();
    let (page, more) = match n {
        Some(n) if filtered.len() > n => (filtered[..n].to_vec(), true),
        _ => (filtered, false),
    };
    let link = match (n, page.last()) {
        (Some(n), Some(l)) if more => Some(format!("<{base}?n={n}&last={l}>; rel=\"next\"")),
        _ => None,
    };
    Ok((page, link))
}

fn json_response(
    status: StatusCode,
    value: &Value,
    content_type: &str,
    extra: &[(&str, String)],
) -> Response {
    let body = serde_json::to_vec(value).expect("JSON values serialise");
    let mut headers = vec![
        ("content-type", content_type.to_string()),
        ("content-length", body.len().to_string()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    resp(status, &headers, Body::from(body))
}

async fn catalog(st: &Arc<AppState>, pairs: &[(String, String)]) -> ApiResult {
    let repos = st.blocking(|s| Ok(s.repositories()?)).await?;
    let (page, link) = paginate(repos, pairs, "/v2/_catalog")?;
    let extra: Vec<(&str, String)> = link.map(|l| ("link", l)).into_iter().collect();
    Ok(json_response(StatusCode::OK, &json!({ "repositories": page }), "application/json", &extra))
}

async fn tags_list(st: &Arc<AppState>, name: String, pairs: &[(String, String)]) -> ApiResult {
    let n2 = name.clone();
    let tags = st
        .blocking(move |s| {
            if !s.repository_exists(&n2)? {
                return Err(ApiError::new(
                    Code::NameUnknown,
                    format!("repository {n2:?} is not known"),
                ));
            }
            Ok(s.list_tags(&n2)?)
        })
        .await?;
    let (page, link) = paginate(tags, pairs, &format!("/v2/{name}/tags/list"))?;
    let extra: Vec<(&str, String)> = link.map(|l| ("link", l)).into_iter().collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "name": name, "tags": page }),
        "application/json",
        &extra,
    ))
}

/// Resolves a tag or digest to (digest, media type, bytes).
fn load_manifest(
    s: &dyn Storage,
    name: &str,
    reference: &str,
) -> Result<(Digest, String, Bytes), ApiError> {
    let unknown = || {
        ApiError::new(Code::ManifestUnknown, format!("manifest {reference:?} is not in {name:?}"))
    };
    let digest = if reference.contains(':') {
        parse_digest(reference)?
    } else {
        // A name that cannot be a tag cannot be stored either: it is unknown, not malformed.
        if !valid_tag(reference) {
            return Err(unknown());
        }
        s.get_tag(name, reference)?.ok_or_else(unknown)?
    };
    let media_type = s.manifest_media_type(name, &digest)?.ok_or_else(unknown)?;
    let bytes = s.blob_bytes(&digest)?.ok_or_else(unknown)?;
    Ok((digest, media_type, bytes))
}

async fn get_manifest(
    st: &Arc<AppState>,
    name: String,
    reference: String,
    head: bool,
) -> ApiResult {
    let (digest, media_type, bytes) =
        st.blocking(move |s| load_manifest(s, &name, &reference)).await?;
    let headers = [
        ("content-type", media_type),
        ("content-length", bytes.len().to_string()),
        ("docker-content-digest", digest.to_string()),
        ("etag", format!("\"{digest}\"")),
    ];
    let body = if head { Body::empty() } else { Body::from(bytes) };
    Ok(resp(StatusCode::OK, &headers, body))
}

/// What a manifest references, checked before it is accepted.
struct ManifestRefs {
    media_type: String,
    blobs: Vec<Digest>,
    manifests: Vec<Digest>,
    subject: Option<Digest>,
    artifact_type: Option<String>,
    annotations: Option<Value>,
}

fn descriptor_digest(v: &Value, field: &str) -> Result<Digest, ApiError> {
    let d = v.get("digest").and_then(Value::as_str).ok_or_else(|| {
        ApiError::new(Code::ManifestInvalid, format!("{field}: descriptor has no digest"))
    })?;
    if v.get("size").and_then(Value::as_u64).is_none() {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            format!("{field}: descriptor has no valid size"),
        ));
    }
    d.parse::<Digest>().map_err(|e| ApiError::new(Code::ManifestInvalid, format!("{field}: {e}")))
}

fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<ManifestRefs, ApiError> {
    let invalid = |m: String| ApiError::new(Code::ManifestInvalid, m);
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let obj = doc.as_object().ok_or_else(|| invalid("manifest is not a JSON object".into()))?;
    let doc_type = obj.get("mediaType").and_then(Value::as_str);
    let ct = content_type
        .map(|c| mt::essence(c).into_owned())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "application/octet-stream");
    if let (Some(ct), Some(dt)) = (&ct, doc_type) {
        if ct != dt {
            return Err(invalid(format!(
                "Content-Type {ct} differs from the manifest's mediaType {dt}"
            )));
        }
    }
    let media_type = match ct.as_deref().or(doc_type) {
        Some(t) => t.to_string(),
        None if obj.contains_key("manifests") => mt::OCI_INDEX.to_string(),
        None => mt::OCI_MANIFEST.to_string(),
    };
    if mt::is_schema1(&media_type) {
        return Err(invalid("Docker schema 1 manifests are not supported".into()));
    }
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2".into()));
    }
    let mut refs = ManifestRefs {
        media_type: media_type.clone(),
        blobs: Vec::new(),
        manifests: Vec::new(),
        subject: None,
        artifact_type: obj.get("artifactType").and_then(Value::as_str).map(String::from),
        annotations: obj.get("annotations").filter(|a| a.is_object()).cloned(),
    };
    if let Some(s) = obj.get("subject") {
        refs.subject = Some(descriptor_digest(s, "subject")?);
    }
    if mt::is_index(&media_type) {
        let list = obj
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("index has no manifests array".into()))?;
        for (i, m) in list.iter().enumerate() {
            refs.manifests.push(descriptor_digest(m, &format!("manifests[{i}]"))?);
        }
    } else if mt::is_manifest(&media_type) {
        let config = obj.get("config").ok_or_else(|| invalid("manifest has no config".into()))?;
        refs.blobs.push(descriptor_digest(config, "config")?);
        if refs.artifact_type.is_none() {
            refs.artifact_type = config.get("mediaType").and_then(Value::as_str).map(String::from);
        }
        let layers = obj
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("manifest has no layers array".into()))?;
        for (i, l) in layers.iter().enumerate() {
            let d = descriptor_digest(l, &format!("layers[{i}]"))?;
            // Foreign layers live elsewhere (their URLs); they need not be here.
            let foreign =
                l.get("urls").is_some_and(|u| u.as_array().is_some_and(|a| !a.is_empty()));
            if !foreign {
                refs.blobs.push(d);
            }
        }
    } else {
        return Err(invalid(format!("unsupported manifest media type {media_type:?}")));
    }
    Ok(refs)
}

async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        ApiError::new(Code::SizeInvalid, format!("manifest body: {e} (limit {limit} bytes)"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    })
}

async fn put_manifest(
    st: &Arc<AppState>,
    name: String,
    reference: String,
    req: Request,
) -> ApiResult {
    let content_type = header(req.headers(), "content-type").map(String::from);
    let (tag, want) = if reference.contains(':') {
        (None, Some(parse_digest(&reference)?))
    } else if valid_tag(&reference) {
        (Some(reference.clone()), None)
    } else {
        return Err(ApiError::new(Code::TagInvalid, format!("invalid tag {reference:?}")));
    };
    let bytes = read_limited(req.into_body(), MAX_MANIFEST).await?;
    let digest =
        Digest::of(want.as_ref().map(Digest::algorithm).unwrap_or(Algorithm::Sha256), &bytes);
    if let Some(w) = &want {
        if w != &digest {
            return Err(ApiError::new(
                Code::DigestInvalid,
                format!("manifest digest is {digest}, not {w}"),
            ));
        }
    }
    let refs = parse_manifest(&bytes, content_type.as_deref())?;
    let st2 = st.clone();
    let n2 = name.clone();
    let d2 = digest.clone();
    let subject = refs.subject.clone();
    st.blocking(move |s| {
        let _guard = st2.write_lock.shared()?;
        for b in &refs.blobs {
            if s.layer_linked(&n2, b)?.is_none() || s.blob_size(b)?.is_none() {
                return Err(ApiError::new(Code::ManifestBlobUnknown, format!("blob {b} is not in {n2:?}")));
            }
        }
        for m in &refs.manifests {
            if s.manifest_media_type(&n2, m)?.is_none() {
                return Err(ApiError::new(Code::ManifestBlobUnknown, format!("manifest {m} is not in {n2:?}")));
            }
        }
        for b in &refs.blobs {
            s.touch_layer(&n2, b)?;
        }
        s.put_blob(&d2, &bytes)?;
        s.link_manifest(&n2, &d2, &refs.media_type)?;
        if let Some(subject) = &refs.subject {
            let mut desc = json!({"mediaType": refs.media_type, "digest": d2.to_string(), "size": bytes.len()});
            if let Some(a) = &refs.artifact_type {
                desc["artifactType"] = json!(a);
            }
            if let Some(a) = &refs.annotations {
                desc["annotations"] = a.clone();
            }
            s.add_referrer(&n2, subject, &d2, &serde_json::to_vec(&desc).expect("JSON"))?;
        }
        if let Some(t) = &tag {
            s.set_tag(&n2, t, &d2)?;
        }
        Ok(())
    })
    .await?;
    let mut headers = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        ("docker-content-digest", digest.to_string()),
        ("content-length", "0".to_string()),
    ];
    if let Some(s) = subject {
        headers.push(("oci-subject", s.to_string()));
    }
    Ok(resp(StatusCode::CREATED, &headers, Body::empty()))
}

async fn delete_manifest(st: &Arc<AppState>, name: String, reference: String) -> ApiResult {
    if !st.delete_enabled {
        return Err(ApiError::new(Code::Unsupported, "deletion is disabled on this registry"));
    }
    st.blocking(move |s| {
        if !reference.contains(':') {
            if !valid_tag(&reference) {
                return Err(ApiError::new(Code::TagInvalid, format!("invalid tag {reference:?}")));
            }
            if !s.delete_tag(&name, &reference)? {
                return Err(ApiError::new(
                    Code::ManifestUnknown,
                    format!("tag {reference:?} is not in {name:?}"),
                ));
            }
            return Ok(());
        }
        let digest = parse_digest(&reference)?;
        if s.manifest_media_type(&name, &digest)?.is_none() {
            return Err(ApiError::new(
                Code::ManifestUnknown,
                format!("manifest {digest} is not in {name:?}"),
            ));
        }
        // Drop the referrers entry first: the manifest names its subject.
        if let Some(bytes) = s.blob_bytes(&digest)? {
            if let Ok(refs) = parse_manifest(&bytes, None) {
                if let Some(subject) = refs.subject {
                    s.remove_referrer(&name, &subject, &digest)?;
                }
            }
        }
        for t in s.list_tags(&name)? {
            if s.get_tag(&name, &t)?.as_ref() == Some(&digest) {
                s.delete_tag(&name, &t)?;
            }
        }
        s.unlink_manifest(&name, &digest)?;
        Ok(())
    })
    .await?;
    Ok(resp(StatusCode::ACCEPTED, &[("content-length", "0".into())], Body::empty()))
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` against `size`; `None` = not satisfiable.
fn parse_range(h: &str, size: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (size.saturating_sub(n), size.checked_sub(1)?)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size.checked_sub(1)?
        } else {
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?)
        };
        (start, end)
    };
    (start <= end && start < size).then_some((start, end))
}

async fn get_blob(
    st: &Arc<AppState>,
    name: String,
    digest: String,
    head: bool,
    headers: &HeaderMap,
) -> ApiResult {
    let digest = parse_digest(&digest)?;
    let d2 = digest.clone();
    let blob = st
        .blocking(move |s| {
            if s.layer_linked(&name, &d2)?.is_none() && s.manifest_media_type(&name, &d2)?.is_none()
            {
                return Ok(None);
            }
            if head {
                return Ok(s.blob_size(&d2)?.map(|n| (n, None)));
            }
            Ok(s.blob_bytes(&d2)?.map(|b| (b.len() as u64, Some(b))))
        })
        .await?;
    let Some((size, bytes)) = blob else {
        return Err(ApiError::new(
            Code::BlobUnknown,
            format!("blob {digest} is not in this repository"),
        ));
    };
    let mut h = vec![
        ("docker-content-digest", digest.to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("content-type", "application/octet-stream".to_string()),
        ("etag", format!("\"{digest}\"")),
    ];
    if let Some(range) = header(headers, "range") {
        let Some((start, end)) = parse_range(range, size) else {
            return Err(ApiError::new(
                Code::RangeInvalid,
                format!("range {range:?} is not satisfiable for {size} bytes"),
            )
            .with_header("content-range", format!("bytes */{size}")));
        };
        h.push(("content-range", format!("bytes {start}-{end}/{size}")));
        h.push(("content-length", (end - start + 1).to_string()));
        let body = match bytes {
            Some(b) => Body::from(b.slice(start as usize..=end as usize)),
            None => Body::empty(),
        };
        return Ok(resp(StatusCode::PARTIAL_CONTENT, &h, body));
    }
    h.push(("content-length", size.to_string()));
    Ok(resp(StatusCode::OK, &h, bytes.map(Body::from).unwrap_or_else(Body::empty)))
}

async fn delete_blob(st: &Arc<AppState>, name: String, digest: String) -> ApiResult {
    if !st.delete_enabled {
        return Err(ApiError::new(Code::Unsupported, "deletion is disabled on this registry"));
    }
    let digest = parse_digest(&digest)?;
    let removed = st.blocking(move |s| Ok(s.unlink_layer(&name, &digest)?)).await?;
    if !removed {
        return Err(ApiError::new(Code::BlobUnknown, "blob is not in this repository"));
    }
    Ok(resp(StatusCode::ACCEPTED, &[("content-length", "0".into())], Body::empty()))
}

fn new_upload_id() -> String {
    (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit())
}

async fn start_upload(
    st: &Arc<AppState>,
    name: String,
    pairs: Vec<(String, String)>,
    req: Request,
) -> ApiResult {
    // Cross-repository mount: link the blob when the source repository has it.
    if let Some(mount) = q(&pairs, "mount") {
        let digest = parse_digest(mount)?;
        if let Some(from) = q(&pairs, "from").filter(|f| valid_name(f)).map(String::from) {
            let (n2, d2, st2) = (name.clone(), digest.clone(), st.clone());
            let mounted = st
                .blocking(move |s| {
                    let _guard = st2.write_lock.shared()?;
                    if s.layer_linked(&from, &d2)?.is_some() && s.blob_size(&d2)?.is_some() {
                        s.link_layer(&n2, &d2)?;
                        return Ok(true);
                    }
                    Ok(false)
                })
                .await?;
            if mounted {
                return Ok(resp(
                    StatusCode::CREATED,
                    &[
                        ("location", format!("/v2/{name}/blobs/{digest}")),
                        ("docker-content-digest", digest.to_string()),
                        ("content-length", "0".into()),
                    ],
                    Body::empty(),
                ));
            }
        }
    }
    let id = new_upload_id();
    let id2 = id.clone();
    let writer = st.blocking(move |s| Ok(s.upload_create(&id2)?)).await?;
    let mut session = Session {
        repo: name.clone(),
        hasher: Hasher::new(Algorithm::Sha256),
        size: 0,
        writer: Some(writer),
        last: Instant::now(),
        closed: false,
    };
    // Monolithic upload: POST ?digest= with the whole blob.
    if let Some(d) = q(&pairs, "digest") {
        let digest = match parse_digest(d) {
            Ok(d) => d,
            Err(e) => {
                let _ = st.blocking(move |s| Ok(s.upload_delete(&id)?)).await;
                return Err(drain(req.into_body(), e).await);
            }
        };
        let result = async {
            append_body(st, &mut session, req.into_body()).await?;
            finish_upload(st, &name, &id, &mut session, digest.clone()).await
        }
        .await;
        if result.is_err() {
            session.writer = None;
            let id3 = id.clone();
            let _ = st.blocking(move |s| Ok(s.upload_delete(&id3)?)).await;
        }
        return result.map(|()| created_blob(&name, &digest));
    }
    st.uploads
        .lock()
        .expect("uploads")
        .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
    Ok(resp(
        StatusCode::ACCEPTED,
        &[
            ("location", format!("/v2/{name}/blobs/uploads/{id}")),
            ("range", "0-0".into()),
            ("docker-upload-uuid", id),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    ))
}

fn created_blob(name: &str, digest: &Digest) -> Response {
    resp(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

/// Streams a request body into the session: hashing and writing happen in batches on the
/// blocking pool, so a slow disk never stalls the async threads.
async fn append_body(
    st: &Arc<AppState>,
    session: &mut Session,
    body: Body,
) -> Result<(), ApiError> {
    let mut body = body;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0usize;
    loop {
        let frame = body.frame().await;
        let done = match frame {
            None => true,
            Some(Err(e)) => {
                return Err(ApiError::new(
                    Code::BlobUploadInvalid,
                    format!("reading the request body: {e}"),
                ))
            }
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    batch_len += data.len();
                    batch.push(data);
                }
                false
            }
        };
        if batch_len >= WRITE_BATCH || (done && batch_len > 0) {
            let mut writer =
                session.writer.take().ok_or_else(|| ApiError::internal("upload writer missing"))?;
            let mut hasher = std::mem::replace(&mut session.hasher, Hasher::new(Algorithm::Sha256));
            let chunks = std::mem::take(&mut batch);
            let (writer, hasher, res) = tokio::task::spawn_blocking(move || {
                let mut res = Ok(());
                for c in &chunks {
                    hasher.update(c);
                    if let Err(e) = writer.write_chunk(c) {
                        res = Err(e);
                        break;
                    }
                }
                (writer, hasher, res)
            })
            .await
            .map_err(ApiError::internal)?;
            session.writer = Some(writer);
            session.hasher = hasher;
            res?;
            session.size += batch_len as u64;
            st.metrics.add_received(batch_len as u64);
            batch_len = 0;
        }
        session.last = Instant::now();
        if done {
            return Ok(());
        }
    }
}

async fn finish_upload(
    st: &Arc<AppState>,
    name: &str,
    id: &str,
    session: &mut Session,
    digest: Digest,
) -> Result<(), ApiError> {
    let sha256 = std::mem::replace(&mut session.hasher, Hasher::new(Algorithm::Sha256)).finish();
    session.writer = None;
    let actual = if digest.algorithm() == Algorithm::Sha256 {
        sha256
    } else {
        let (id2, algo) = (id.to_string(), digest.algorithm());
        st.blocking(move |s| Ok(s.upload_digest(&id2, algo)?)).await?
    };
    if actual != digest {
        return Err(ApiError::new(
            Code::DigestInvalid,
            format!("uploaded content has digest {actual}, not {digest}"),
        ));
    }
    session.writer = None;
    session.closed = true;
    let (n2, id2, st2) = (name.to_string(), id.to_string(), st.clone());
    st.blocking(move |s| {
        let _guard = st2.write_lock.shared()?;
        if s.blob_size(&digest)?.is_some() {
            s.upload_delete(&id2)?;
        } else {
            s.upload_commit(&id2, &digest)?;
        }
        s.link_layer(&n2, &digest)?;
        Ok(())
    })
    .await
}

/// Finds a live session of `name`; a session of another repository is unknown here.
fn session(
    st: &AppState,
    name: &str,
    id: &str,
) -> Result<Arc<tokio::sync::Mutex<Session>>, ApiError> {
    let unknown = || ApiError::new(Code::BlobUploadUnknown, format!("upload {id:?} is not known"));
    if !valid_upload_id(id) {
        return Err(unknown());
    }
    let s = st.uploads.lock().expect("uploads").get(id).cloned().ok_or_else(unknown)?;
    if s.try_lock().map(|g| g.repo != name).unwrap_or(false) {
        return Err(unknown());
    }
    Ok(s)
}

fn upload_headers(name: &str, id: &str, size: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("range", range_header(size)),
        ("docker-upload-uuid", id.to_string()),
        ("content-length", "0".into()),
    ]
}

/// Checks `Content-Range: start-end` against the bytes already received.
fn check_content_range(
    headers: &HeaderMap,
    name: &str,
    id: &str,
    size: u64,
) -> Result<(), ApiError> {
    let Some(cr) = header(headers, "content-range") else { return Ok(()) };
    let spec = cr.trim().trim_start_matches("bytes").trim_start_matches([' ', '=']);
    let start = spec.split('-').next().and_then(|s| s.trim().parse::<u64>().ok());
    let refuse = || {
        let mut e = ApiError::new(
            Code::RangeInvalid,
            format!("Content-Range {cr:?} does not continue the {size} bytes received"),
        );
        for (k, v) in upload_headers(name, id, size) {
            if k != "content-length" {
                e = e.with_header(k, v);
            }
        }
        e
    };
    match start {
        Some(s) if s == size => Ok(()),
        _ => Err(refuse()),
    }
}

async fn patch_upload(st: &Arc<AppState>, name: String, id: String, req: Request) -> ApiResult {
    let (parts, body) = req.into_parts();
    let pre = async {
        let s = session(st, &name, &id)?;
        let g = s.lock_owned().await;
        if g.closed {
            return Err(ApiError::new(Code::BlobUploadUnknown, "upload is finished"));
        }
        check_content_range(&parts.headers, &name, &id, g.size)?;
        Ok(g)
    };
    let mut g = match pre.await {
        Ok(g) => g,
        Err(e) => return Err(drain(body, e).await),
    };
    append_body(st, &mut g, body).await?;
    Ok(resp(StatusCode::ACCEPTED, &upload_headers(&name, &id, g.size), Body::empty()))
}

/// Reads and drops a refused request's body (up to 64 MiB) so the client, still sending,
/// gets the error response instead of a broken pipe.
async fn drain(mut body: Body, err: ApiError) -> ApiError {
    let mut left: usize = 64 << 20;
    while let Some(Ok(frame)) = body.frame().await {
        let n = frame.data_ref().map(|d| d.len()).unwrap_or(0);
        if n > left {
            break;
        }
        left -= n;
    }
    err
}

async fn put_upload(
    st: &Arc<AppState>,
    name: String,
    id: String,
    pairs: Vec<(String, String)>,
    req: Request,
) -> ApiResult {
    let (parts, body) = req.into_parts();
    let pre = async {
        let s = session(st, &name, &id)?;
        let g = s.lock_owned().await;
        if g.closed {
            return Err(ApiError::new(Code::BlobUploadUnknown, "upload is finished"));
        }
        let digest = parse_digest(q(&pairs, "digest").ok_or_else(|| {
            ApiError::new(Code::DigestInvalid, "the digest query parameter is required")
        })?)?;
        check_content_range(&parts.headers, &name, &id, g.size)?;
        Ok((g, digest))
    };
    let (mut g, digest) = match pre.await {
        Ok(v) => v,
        Err(e) => return Err(drain(body, e).await),
    };
    append_body(st, &mut g, body).await?;
    let result = finish_upload(st, &name, &id, &mut g, digest.clone()).await;
    // Finished or failed, the session is over (the spec lets a client restart on failure).
    g.closed = true;
    g.writer = None;
    st.uploads.lock().expect("uploads").remove(&id);
    if result.is_err() {
        let id2 = id.clone();
        let _ = st.blocking(move |s| Ok(s.upload_delete(&id2)?)).await;
    }
    result.map(|()| created_blob(&name, &digest))
}

async fn upload_status(st: &Arc<AppState>, name: String, id: String) -> ApiResult {
    let s = session(st, &name, &id)?;
    let g = s.lock().await;
    if g.closed {
        return Err(ApiError::new(Code::BlobUploadUnknown, "upload is finished"));
    }
    Ok(resp(StatusCode::NO_CONTENT, &upload_headers(&name, &id, g.size), Body::empty()))
}

async fn cancel_upload(st: &Arc<AppState>, name: String, id: String) -> ApiResult {
    let s = session(st, &name, &id)?;
    let mut g = s.lock().await;
    g.closed = true;
    g.writer = None;
    st.uploads.lock().expect("uploads").remove(&id);
    st.blocking(move |s| Ok(s.upload_delete(&id)?)).await?;
    Ok(resp(StatusCode::NO_CONTENT, &[("content-length", "0".into())], Body::empty()))
}

async fn referrers(
    st: &Arc<AppState>,
    name: String,
    digest: String,
    pairs: &[(String, String)],
) -> ApiResult {
    let subject = parse_digest(&digest)?;
    let list = st.blocking(move |s| Ok(s.referrers(&name, &subject)?)).await?;
    let filter = q(pairs, "artifactType");
    let mut manifests: Vec<Value> = list
        .iter()
        .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
        .filter(|d| filter.is_none_or(|f| d.get("artifactType").and_then(Value::as_str) == Some(f)))
        .collect();
    manifests.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    let extra: Vec<(&str, String)> = if filter.is_some() {
        vec![("oci-filters-applied", "artifactType".into())]
    } else {
        vec![]
    };
    let index = json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": manifests});
    Ok(json_response(StatusCode::OK, &index, mt::OCI_INDEX, &extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(route("/v2/a/b/tags/list"), Some(Route::Tags("a/b".into())));
        assert_eq!(
            route("/v2/a/manifests/b/manifests/latest"),
            Some(Route::Manifest("a/manifests/b".into(), "latest".into()))
        );
        assert_eq!(route("/v2/a/blobs/uploads/"), Some(Route::UploadStart("a".into())));
        assert_eq!(route("/v2/a/blobs/uploads"), Some(Route::UploadStart("a".into())));
        assert_eq!(route("/v2/a/blobs/uploads/xyz"), Some(Route::Upload("a".into(), "xyz".into())));
        assert_eq!(
            route("/v2/a/blobs/sha256:00"),
            Some(Route::Blob("a".into(), "sha256:00".into()))
        );
        assert_eq!(
            route("/v2/a/referrers/sha256:00"),
            Some(Route::Referrers("a".into(), "sha256:00".into()))
        );
        assert_eq!(route("/v2/a"), None);
        assert_eq!(route("/other"), None);
    }

    #[test]
    fn names_and_tags() {
        for ok in ["a", "a/b", "a-b", "a--b", "a.b", "a_b", "a__b", "library/busybox", "x0/y1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "A", "a/", "/a", "a//b", "-a", "a-", "a___b", "a..b", "a/_x", "a b"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_tag("latest") && valid_tag("_x") && valid_tag("v1.0-rc"));
        assert!(
            !valid_tag("") && !valid_tag(".x") && !valid_tag("-x") && !valid_tag(&"a".repeat(129))
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), None);
    }

    #[test]
    fn pagination() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let p = |q: &str| paginate(items.clone(), &crate::auth::form_pairs(q), "/x").unwrap();
        assert_eq!(p(""), (items.clone(), None));
        assert_eq!(
            p("n=2"),
            (vec!["a".into(), "b".into()], Some("</x?n=2&last=b>; rel=\"next\"".into()))
        );
        assert_eq!(p("n=2&last=b"), (vec!["c".into(), "d".into()], None));
        assert_eq!(p("last=c"), (vec!["d".into()], None));
        assert_eq!(p("n=0").0, Vec::<String>::new());
        assert!(paginate(items, &crate::auth::form_pairs("n=x"), "/x").is_err());
    }
}

//! ADD from http(s) URLs, as BuildKit's HTTP source (source/http) and dockerfile2llb do:
//!
//! - the file name is the last segment of the URL's path as written (not the redirect
//!   target, not Content-Disposition), `__unnamed__` when there is none;
//! - the file is 0600, root's (then `--chown`/`--chmod` apply), its mtime the
//!   `Last-Modified` header when there is one; it is not extracted unless `--unpack=true`;
//! - `--checksum=sha256:...` is checked before the file is used; it is also the cache key,
//!   so a cached step does not download. Without it the URL is fetched on every build and
//!   the content's digest is the key (BuildKit re-validates with ETag; a full fetch gives
//!   the same answer).
//!
//! A build fetches each URL once: the download is kept in the build's work dir, named
//! after the URL, for the step that computes the key and the step that copies.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

/// A downloaded URL in the build's work dir.
pub(crate) struct Download {
    pub(crate) path: PathBuf,
    /// `sha256:<hex>` of the contents.
    pub(crate) digest: String,
}

/// One download at a time per process: two stages adding the same URL share it.
static FETCHING: Mutex<()> = Mutex::new(());

/// Whether ADD treats `src` as a git repository (which Strata does not fetch yet).
pub(crate) fn is_git(src: &str) -> bool {
    if src.starts_with("git@") || src.starts_with("git://") || src.starts_with("ssh://") {
        return true;
    }
    // BuildKit's dfgitutil: an http(s) URL whose path ends in .git (a #ref may follow).
    let no_frag = src.split('#').next().unwrap_or(src);
    is_http(src) && no_frag.trim_end_matches('/').ends_with(".git")
}

pub(crate) fn is_http(src: &str) -> bool {
    src.starts_with("http://") || src.starts_with("https://")
}

/// The name BuildKit gives the file: Go's `path.Base` of the URL's decoded path.
pub(crate) fn file_name(url: &str) -> String {
    let path = match reqwest::Url::parse(url) {
        Ok(u) => u.path().to_string(),
        Err(_) => return "__unnamed__".into(),
    };
    let trimmed = path.trim_end_matches('/');
    let base = trimmed.rsplit('/').next().unwrap_or_default();
    match percent_decode(base) {
        s if s.is_empty() || s == "." => "__unnamed__".into(),
        s => s,
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `--checksum` as a normalised `sha256:<hex>`, or why it is not one.
pub(crate) fn parse_checksum(c: &str) -> Result<String, String> {
    let (alg, hex) = c.split_once(':').ok_or_else(|| {
        format!("--checksum={c}: expected sha256:<64 hex digits> (the digest of the file)")
    })?;
    if alg != "sha256" {
        return Err(format!("--checksum={c}: only sha256 is supported for HTTP sources"));
    }
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("--checksum={c}: a sha256 digest is 64 hex digits"));
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// Downloads `url` into `work` (or reuses this build's earlier download of it).
pub(crate) fn fetch(url: &str, work: &Path) -> Result<Download, String> {
    let _one = FETCHING.lock().unwrap_or_else(|p| p.into_inner());
    let name = hex::encode(&Sha256::digest(url.as_bytes())[..12]);
    let path = work.join(format!("url-{name}"));
    if path.exists() {
        let digest = file_digest(&path).map_err(|e| format!("reading the download: {e}"))?;
        return Ok(Download { path, digest });
    }
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        // Per read: a stalled server fails, a slow big download does not.
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::limited(10))
        .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("setting up the HTTP client: {e}"))?;
    let mut resp = client.get(url).send().map_err(|e| describe(url, &e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("failed to download {url}: the server answered {status}"));
    }
    let mtime = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let partial = work.join(format!("url-{name}.partial"));
    let mut file = fs::File::create(&partial).map_err(|e| format!("creating the download: {e}"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("failed to download {url}: {e}")),
        };
        h.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| format!("writing the download: {e}"))?;
    }
    file.set_modified(mtime.unwrap_or_else(SystemTime::now))
        .map_err(|e| format!("writing the download: {e}"))?;
    drop(file);
    fs::rename(&partial, &path).map_err(|e| format!("writing the download: {e}"))?;
    Ok(Download { path, digest: format!("sha256:{}", hex::encode(h.finalize())) })
}

fn describe(url: &str, e: &reqwest::Error) -> String {
    // reqwest's Display stops at the outermost cause ("error sending request").
    let mut msg = format!("failed to download {url}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

fn file_digest(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_checksums() {
        assert_eq!(file_name("https://example.com/a/b/file.tar.gz?x=1#f"), "file.tar.gz");
        assert_eq!(file_name("https://example.com/a/dir/"), "dir");
        assert_eq!(file_name("https://example.com/my%20file"), "my file");
        assert_eq!(file_name("https://example.com"), "__unnamed__");
        assert_eq!(file_name("https://example.com/"), "__unnamed__");
        assert!(is_git("https://github.com/moby/buildkit.git#v0.10.1"));
        assert!(is_git("git@github.com:user/repo.git"));
        assert!(!is_git("https://example.com/archive.tar.gz"));
        let d = "A".repeat(64);
        assert_eq!(
            parse_checksum(&format!("sha256:{d}")).unwrap(),
            format!("sha256:{}", "a".repeat(64))
        );
        assert!(parse_checksum("sha512:abc").unwrap_err().contains("only sha256"));
        assert!(parse_checksum("abc").is_err());
        assert!(parse_checksum("sha256:abc").is_err());
    }
}

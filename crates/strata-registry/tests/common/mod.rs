//! Test peers: Debian's docker-registry on loopback (through scripts/peers.sh), fixtures,
//! and a TCP proxy that can tamper with or cut blob responses.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn fixture(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("STRATA_FIXTURES").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/strata-fixtures")
    });
    let p = dir.join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: fixture {} not found: run scripts/fixtures.sh", p.display());
        None
    }
}

pub fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: {tool} is not installed (scripts/install-deps.sh installs it)");
    }
    ok
}

/// A docker-registry on loopback, stopped (by its PID file) when dropped.
pub struct Registry {
    pub dir: PathBuf,
    pub addr: String,
}

impl Registry {
    pub fn start(dir: &Path, htpasswd: Option<(&str, &str)>) -> Option<Registry> {
        if !have("docker-registry") {
            return None;
        }
        let peers = repo_root().join("scripts/peers.sh");
        let mut cmd = Command::new(&peers);
        cmd.args(["registry", "start"]).arg(dir);
        if let Some((user, pass)) = htpasswd {
            let file = dir.join("htpasswd");
            std::fs::create_dir_all(dir).unwrap();
            let out = Command::new(&peers)
                .arg("htpasswd")
                .arg(&file)
                .args([user, pass])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
            cmd.arg("--htpasswd").arg(&file);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "registry start: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let addr = stdout
            .lines()
            .find_map(|l| l.strip_prefix("REGISTRY_ADDR="))
            .expect("REGISTRY_ADDR")
            .to_string();
        Some(Registry { dir: dir.to_path_buf(), addr })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/peers.sh"))
            .args(["registry", "stop"])
            .arg(&self.dir)
            .output();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProxyMode {
    /// Forward untouched.
    Pass,
    /// Flip one byte in the body of every large response.
    Tamper,
    /// Close the connection part-way through the body of the first `n` large responses.
    Cut(usize),
}

/// A threaded TCP proxy in front of a registry. Large responses (> 100 kB bodies: layers)
/// are tampered with or cut according to the mode.
pub struct Proxy {
    pub addr: String,
    stop: Arc<AtomicBool>,
    pub cuts: Arc<AtomicUsize>,
    pub tampered: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn start(upstream: &str, mode: ProxyMode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let tampered = Arc::new(AtomicUsize::new(0));
        let (s, c, t, up) = (stop.clone(), cuts.clone(), tampered.clone(), upstream.to_string());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(&up) else { continue };
                        let (c, t) = (c.clone(), t.clone());
                        std::thread::spawn(move || relay(client, server, mode, c, t));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { addr, stop, cuts, tampered }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn relay(
    client: TcpStream,
    server: TcpStream,
    mode: ProxyMode,
    cuts: Arc<AtomicUsize>,
    tampered: Arc<AtomicUsize>,
) {
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut server, mut client) = (server, client);
    let mut header: Vec<u8> = Vec::new();
    let mut remaining: u64 = 0;
    let mut offset: u64 = 0;
    let mut big = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut data = &mut buf[..n];
        while !data.is_empty() {
            if remaining == 0 {
                // In headers: collect up to the blank line.
                let mut i = 0;
                let mut done = false;
                while i < data.len() {
                    header.push(data[i]);
                    i += 1;
                    if header.ends_with(b"\r\n\r\n") {
                        done = true;
                        break;
                    }
                }
                if client.write_all(&data[..i]).is_err() {
                    return;
                }
                data = &mut data[i..];
                if done {
                    let text = String::from_utf8_lossy(&header).to_ascii_lowercase();
                    remaining = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    big = remaining > 100_000;
                    offset = 0;
                    header.clear();
                }
                continue;
            }
            let take = (remaining as usize).min(data.len());
            let (chunk, rest) = data.split_at_mut(take);
            if big && mode == ProxyMode::Tamper && offset <= 1000 && 1000 < offset + take as u64 {
                chunk[(1000 - offset) as usize] ^= 0x01;
                tampered.fetch_add(1, Ordering::Relaxed);
            }
            if let ProxyMode::Cut(n) = mode {
                let cut_at = 60_000;
                if big && offset + take as u64 > cut_at && cuts.load(Ordering::Relaxed) < n {
                    cuts.fetch_add(1, Ordering::Relaxed);
                    let keep = (cut_at.saturating_sub(offset)) as usize;
                    let _ = client.write_all(&chunk[..keep]);
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                    return;
                }
            }
            if client.write_all(chunk).is_err() {
                return;
            }
            offset += take as u64;
            remaining -= take as u64;
            data = rest;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// A bearer-token gate in front of a registry: answers 401 with a `Bearer` challenge,
/// serves tokens at `/token` (pull for anyone, push only with `user:pass`), and forwards
/// requests carrying a token whose scope covers the repository.
pub struct TokenGate {
    pub addr: String,
    stop: Arc<AtomicBool>,
    /// (scope query, had credentials) of every token request.
    pub token_requests: Arc<std::sync::Mutex<Vec<(String, bool)>>>,
}

impl Drop for TokenGate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl TokenGate {
    pub fn start(upstream: &str, user: &str, pass: &str) -> TokenGate {
        use base64::Engine;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reqs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tokens: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>> =
            Arc::default();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let (s, up, a, r) = (stop.clone(), upstream.to_string(), addr.clone(), reqs.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        let (up, a, r, t, b) =
                            (up.clone(), a.clone(), r.clone(), tokens.clone(), basic.clone());
                        std::thread::spawn(move || gate_conn(c, &up, &a, &r, &t, &b));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TokenGate { addr, stop, token_requests: reqs }
    }
}

fn read_head(c: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    Some(head)
}

fn gate_conn(
    mut c: TcpStream,
    upstream: &str,
    addr: &str,
    reqs: &std::sync::Mutex<Vec<(String, bool)>>,
    tokens: &std::sync::Mutex<std::collections::HashMap<String, String>>,
    basic: &str,
) {
    while let Some(head) = read_head(&mut c) {
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or_default().to_string();
        let mut parts = first.split(' ');
        let (method, target) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
        let len: usize = get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(get("transfer-encoding").is_none(), "the gate handles Content-Length bodies only");
        let mut body = vec![0u8; len];
        if c.read_exact(&mut body).is_err() {
            return;
        }
        let reply = |c: &mut TcpStream, status: &str, extra: &str, body: &str| {
            let _ = c.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/json\r\n{extra}\r\n{body}", body.len())
                    .as_bytes(),
            );
        };
        if let Some(q) = target.strip_prefix("/token?") {
            let authed = get("authorization").as_deref() == Some(basic);
            let bad_creds = get("authorization").is_some() && !authed;
            reqs.lock().unwrap().push((q.to_string(), authed));
            if bad_creds {
                reply(&mut c, "401 Unauthorized", "", r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#);
                continue;
            }
            // Grant what was asked, less push for anonymous callers.
            let granted: Vec<String> = q
                .split('&')
                .filter_map(|kv| kv.strip_prefix("scope="))
                .map(|s| s.replace("%3A", ":").replace("%2F", "/").replace("%2C", ","))
                .map(|s| if authed { s } else { s.replace(":pull,push", ":pull") })
                .collect();
            let tok = format!("tok-{}", rand_token());
            tokens.lock().unwrap().insert(tok.clone(), granted.join(" "));
            reply(&mut c, "200 OK", "", &format!(r#"{{"token":"{tok}","expires_in":300}}"#));
            continue;
        }
        let repo = target.strip_prefix("/v2/").and_then(|p| {
            ["/blobs/", "/manifests/", "/tags/"]
                .iter()
                .find_map(|m| p.find(m).map(|i| p[..i].to_string()))
        });
        let need = repo.as_ref().map(|r| {
            if method == "GET" || method == "HEAD" {
                format!("repository:{r}:pull")
            } else {
                format!("repository:{r}:pull,push")
            }
        });
        let token = get("authorization").and_then(|a| a.strip_prefix("Bearer ").map(String::from));
        let granted = token.and_then(|t| tokens.lock().unwrap().get(&t).cloned());
        let ok = match (&granted, &need) {
            (Some(_), None) => true,
            (Some(g), Some(n)) => g
                .split(' ')
                .any(|s| s == n || (n.ends_with(":pull") && s == n.replace(":pull", ":pull,push"))),
            _ => false,
        };
        if !ok {
            let scope = need.map(|n| format!(",scope=\"{n}\"")).unwrap_or_default();
            reply(
                &mut c,
                "401 Unauthorized",
                &format!("WWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"gate\"{scope}\r\n"),
                r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
            );
            continue;
        }
        // Forward on a fresh upstream connection without the token.
        let Ok(mut u) = TcpStream::connect(upstream) else { return };
        let mut out = format!("{first}\r\n");
        for (k, v) in &headers {
            if k != "authorization" && k != "connection" {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        out.push_str("connection: close\r\n\r\n");
        if u.write_all(out.as_bytes()).and_then(|_| u.write_all(&body)).is_err() {
            return;
        }
        let Some(rhead) = read_head(&mut u) else { return };
        let rtext = String::from_utf8_lossy(&rhead).to_ascii_lowercase();
        let rlen: usize = rtext
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let rlen = if method == "HEAD" { 0 } else { rlen };
        let mut rbody = vec![0u8; rlen];
        if u.read_exact(&mut rbody).is_err()
            || c.write_all(&rhead).and_then(|_| c.write_all(&rbody)).is_err()
        {
            return;
        }
    }
}

fn rand_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

//! Authentication (htpasswd basic auth, or bearer tokens from the built-in token service)
//! and authorisation (a small ACL of account x repository pattern -> actions).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::{AclEntry, AuthConfig};
use crate::error::{ApiError, Code};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
    fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// What a request needs: an action on a repository, or the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    Repo(String, Action),
    Catalog,
    /// `/v2/` itself: only that the caller is signed in when auth is on.
    Base,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("reading htpasswd file {0}: {1}")]
    Htpasswd(std::path::PathBuf, #[source] std::io::Error),
    #[error("htpasswd file {0}, line {1}: {2}")]
    HtpasswdLine(std::path::PathBuf, usize, String),
    #[error("token auth needs an htpasswd file (auth.htpasswd) to sign users in")]
    TokenWithoutUsers,
}

enum Mode {
    Open,
    Basic,
    Token { realm: Option<String>, service: String, expiry: u64 },
}

pub struct Auth {
    mode: Mode,
    users: HashMap<String, String>,
    acl: Vec<AclEntry>,
    anonymous_read: bool,
    key: Vec<u8>,
    /// bcrypt is slow on purpose; remember (user, sha256(password)) pairs already checked so
    /// a client sending basic auth on every request costs one hash, not one bcrypt.
    verified: Mutex<HashMap<(String, [u8; 32]), bool>>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    access: Vec<AccessClaim>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct AccessClaim {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

const ISSUER: &str = "strata-registry";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Auth {
    pub fn open() -> Auth {
        Auth {
            mode: Mode::Open,
            users: HashMap::new(),
            acl: Vec::new(),
            anonymous_read: true,
            key: Vec::new(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn from_config(cfg: &AuthConfig) -> Result<Auth, AuthSetupError> {
        let users = match &cfg.htpasswd {
            Some(p) => load_htpasswd(p)?,
            None => HashMap::new(),
        };
        let mode = match (&cfg.token, &cfg.htpasswd) {
            (Some(t), _) => {
                if cfg.htpasswd.is_none() && cfg.acl.iter().all(|a| a.account != "anonymous") {
                    return Err(AuthSetupError::TokenWithoutUsers);
                }
                Mode::Token {
                    realm: t.realm.clone(),
                    service: t.service.clone().unwrap_or_else(|| "strata-registry".into()),
                    expiry: t.expiry_secs.unwrap_or(300),
                }
            }
            (None, Some(_)) => Mode::Basic,
            (None, None) => Mode::Open,
        };
        let key = match cfg.token.as_ref().and_then(|t| t.secret.clone()) {
            Some(s) => s.into_bytes(),
            None => (0..32).map(|_| rand::random::<u8>()).collect(),
        };
        Ok(Auth {
            mode,
            users,
            acl: cfg.acl.clone(),
            anonymous_read: cfg.anonymous_read,
            key,
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::Open)
    }

    pub fn is_token(&self) -> bool {
        matches!(self.mode, Mode::Token { .. })
    }

    /// Checks a username/password against htpasswd.
    fn check_password(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else { return false };
        let key = (user.to_string(), Sha256::digest(password.as_bytes()).into());
        if let Some(ok) = self.verified.lock().expect("auth cache").get(&key) {
            return *ok;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        let mut cache = self.verified.lock().expect("auth cache");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(key, ok);
        ok
    }

    /// Decodes `Authorization: Basic` and checks it; `Ok(None)` when absent.
    fn basic_user(&self, header: Option<&str>) -> Result<Option<String>, ()> {
        let Some(h) = header else { return Ok(None) };
        let Some(b64) = h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")) else {
            return Ok(None);
        };
        let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| ())?;
        let raw = String::from_utf8(raw).map_err(|_| ())?;
        let (user, pass) = raw.split_once(':').ok_or(())?;
        // containers/image answers a Basic challenge with empty credentials when it has none.
        if user.is_empty() && pass.is_empty() {
            return Ok(None);
        }
        if self.check_password(user, pass) {
            Ok(Some(user.to_string()))
        } else {
            Err(())
        }
    }

    /// Actions the ACL grants `account` (None = anonymous) on `repo`.
    fn granted(&self, account: Option<&str>, repo: &str) -> Vec<Action> {
        let mut out = Vec::new();
        if account.is_none() && self.anonymous_read {
            out.push(Action::Pull);
        }
        if self.acl.is_empty() {
            if account.is_some() {
                out.extend([Action::Pull, Action::Push, Action::Delete]);
            }
            return out;
        }
        for e in &self.acl {
            let who = match account {
                Some(a) => e.account == a || e.account == "*",
                None => e.account == "anonymous",
            };
            if who && pattern_matches(&e.repository, repo) {
                for a in &e.actions {
                    if a == "*" {
                        out.extend([Action::Pull, Action::Push, Action::Delete]);
                    } else if let Some(a) = Action::parse(a) {
                        out.push(a);
                    }
                }
            }
        }
        out
    }

    fn allows(&self, account: Option<&str>, need: &Need) -> bool {
        match need {
            // Challenge anonymous callers even when they may read: clients learn the auth
            // scheme from `/v2/` and would not sign in for a push otherwise.
            Need::Base => account.is_some(),
            Need::Catalog => {
                account.is_some()
                    && (self.acl.is_empty() || self.granted(account, "*").contains(&Action::Pull))
                    || account.is_none() && self.anonymous_read
            }
            Need::Repo(repo, act) => self.granted(account, repo).contains(act),
        }
    }

    /// Decides a request. Returns the account name (or "-" for anonymous) for the access log.
    pub fn authorize(
        &self,
        header: Option<&str>,
        host: &str,
        needs: &[Need],
    ) -> Result<String, ApiError> {
        match &self.mode {
            Mode::Open => Ok("-".into()),
            Mode::Basic => {
                let user = self
                    .basic_user(header)
                    .map_err(|_| self.challenge(host, needs, "invalid username or password"))?;
                for n in needs {
                    if !self.allows(user.as_deref(), n) {
                        return Err(match user {
                            None => self.challenge(host, needs, "authentication required"),
                            Some(_) => ApiError::new(
                                Code::Denied,
                                "requested access to the resource is denied",
                            ),
                        });
                    }
                }
                Ok(user.unwrap_or_else(|| "-".into()))
            }
            Mode::Token { .. } => {
                let bearer = header
                    .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")));
                let claims = match bearer {
                    Some(t) => Some(
                        self.verify_token(t.trim()).map_err(|m| self.challenge(host, needs, &m))?,
                    ),
                    None => None,
                };
                for n in needs {
                    let ok = match (&claims, n) {
                        (None, n) => self.allows(None, n),
                        (Some(_), Need::Base) => true,
                        (Some(c), Need::Catalog) => {
                            c.access.iter().any(|a| a.kind == "registry" && a.name == "catalog")
                        }
                        (Some(c), Need::Repo(repo, act)) => c.access.iter().any(|a| {
                            a.kind == "repository"
                                && &a.name == repo
                                && a.actions.iter().any(|x| x == act.as_str() || x == "*")
                        }),
                    };
                    if !ok {
                        return Err(self.challenge(host, needs, "authentication required"));
                    }
                }
                Ok(claims.map(|c| c.sub).unwrap_or_else(|| "-".into()))
            }
        }
    }

    fn challenge(&self, host: &str, needs: &[Need], msg: &str) -> ApiError {
        let err = ApiError::new(Code::Unauthorized, msg.to_string());
        match &self.mode {
            Mode::Token { realm, service, .. } => {
                let realm = realm.clone().unwrap_or_else(|| format!("http://{host}/token"));
                let mut v = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
                let scopes: Vec<String> = needs
                    .iter()
                    .filter_map(|n| match n {
                        Need::Repo(r, a) => Some(format!("repository:{r}:{}", scope_actions(*a))),
                        Need::Catalog => Some("registry:catalog:*".into()),
                        Need::Base => None,
                    })
                    .collect();
                if !scopes.is_empty() {
                    v.push_str(&format!(",scope=\"{}\"", scopes.join(" ")));
                }
                err.with_header("www-authenticate", v)
            }
            _ => err.with_header("www-authenticate", "Basic realm=\"strata-registry\""),
        }
    }

    fn verify_token(&self, token: &str) -> Result<Claims, String> {
        let Mode::Token { service, .. } = &self.mode else {
            return Err("token auth is off".into());
        };
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.set_audience(&[service]);
        v.set_issuer(&[ISSUER]);
        jsonwebtoken::decode::<Claims>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(&self.key),
            &v,
        )
        .map(|d| d.claims)
        .map_err(|e| format!("invalid token: {e}"))
    }

    /// The token endpoint: signs in (basic auth, optional) and grants the requested scopes
    /// the ACL allows. Returns the JSON body.
    pub fn issue_token(
        &self,
        header: Option<&str>,
        query: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let Mode::Token { service, expiry, .. } = &self.mode else {
            return Err(ApiError::new(Code::Unsupported, "token auth is not configured"));
        };
        let user = self.basic_user(header).map_err(|_| {
            ApiError::new(Code::Unauthorized, "invalid username or password")
                .with_header("www-authenticate", "Basic realm=\"strata-registry\"")
        })?;
        let mut access: Vec<AccessClaim> = Vec::new();
        for (k, v) in form_pairs(query) {
            if k != "scope" {
                continue;
            }
            for scope in v.split(' ').filter(|s| !s.is_empty()) {
                let mut parts = scope.splitn(3, ':');
                let (Some(kind), Some(name), Some(acts)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(ApiError::new(
                        Code::Unsupported,
                        format!("malformed scope {scope:?}"),
                    ));
                };
                // "repository(plugin):name:actions" carries a resource class; drop it.
                let kind = kind.split('(').next().unwrap_or(kind);
                if kind == "registry" && name == "catalog" {
                    if self.allows(user.as_deref(), &Need::Catalog) {
                        access.push(AccessClaim {
                            kind: "registry".into(),
                            name: "catalog".into(),
                            actions: vec!["*".into()],
                        });
                    }
                    continue;
                }
                if kind != "repository" {
                    continue;
                }
                let granted = self.granted(user.as_deref(), name);
                let actions: Vec<String> = acts
                    .split(',')
                    .filter_map(|a| {
                        if a == "*" {
                            return granted.contains(&Action::Delete).then(|| "*".to_string());
                        }
                        Action::parse(a)
                            .filter(|a| granted.contains(a))
                            .map(|a| a.as_str().to_string())
                    })
                    .collect();
                access.push(AccessClaim {
                    kind: "repository".into(),
                    name: name.to_string(),
                    actions,
                });
            }
        }
        let iat = now();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: user.clone().unwrap_or_default(),
            aud: service.clone(),
            exp: iat + expiry,
            nbf: iat.saturating_sub(5),
            iat,
            access,
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&self.key),
        )
        .map_err(ApiError::internal)?;
        Ok(serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": expiry,
            "issued_at": chrono_like(iat),
        }))
    }
}

fn scope_actions(a: Action) -> &'static str {
    match a {
        Action::Pull => "pull",
        Action::Push => "pull,push",
        Action::Delete => "delete",
    }
}

/// RFC 3339 UTC time from Unix seconds, without pulling in a date crate.
fn chrono_like(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `team/*` matches `team/x` and `team/x/y`; `*` matches everything.
fn pattern_matches(pattern: &str, repo: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => repo.starts_with(prefix),
        None => pattern == repo,
    }
}

pub fn load_htpasswd(path: &Path) -> Result<HashMap<String, String>, AuthSetupError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AuthSetupError::Htpasswd(path.to_path_buf(), e))?;
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line.split_once(':').ok_or_else(|| {
            AuthSetupError::HtpasswdLine(path.to_path_buf(), i + 1, "expected user:hash".into())
        })?;
        if !hash.starts_with("$2") {
            return Err(AuthSetupError::HtpasswdLine(
                path.to_path_buf(),
                i + 1,
                format!("user {user:?}: only bcrypt hashes ($2y$...) are supported (htpasswd -B)"),
            ));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    Ok(users)
}

/// Decodes `a=b&c=d` with percent-escapes and `+` as space.
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        assert_eq!(
            percent_decode("repository%3Afoo%2Fbar%3Apull%2Cpush"),
            "repository:foo/bar:pull,push"
        );
        assert_eq!(percent_decode("a+b%"), "a b%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("team/*", "team/a/b"));
        assert!(!pattern_matches("team/*", "other"));
        assert!(pattern_matches("*", "x"));
        assert!(pattern_matches("x", "x"));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(chrono_like(0), "1970-01-01T00:00:00Z");
        assert_eq!(chrono_like(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}

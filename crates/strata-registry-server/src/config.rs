//! The `--config` file (TOML). Every field is optional; command-line flags win.
//!
//! ```toml
//! addr = "127.0.0.1:5000"
//! root = "/var/lib/strata-registry"
//! delete_enabled = true          # DELETE of manifests, tags and blobs
//! upload_expiry_secs = 86400     # upload sessions idle longer than this are dropped
//! gc_grace_secs = 3600           # GC keeps blobs linked more recently than this
//! tls_cert = "cert.pem"
//! tls_key = "key.pem"
//! sendfile = false               # blob bodies by sendfile(2) on plain HTTP (see zerocopy.rs)
//!
//! [auth]
//! htpasswd = "/etc/strata/htpasswd"   # bcrypt entries: user:$2y$...
//! anonymous_read = false
//! [auth.token]                        # present: clients use bearer tokens from /token
//! realm = "https://registry.example/token"   # default: this server's /token
//! service = "strata-registry"
//! secret = "change me"                # HS256 key; default: random per process
//! expiry_secs = 300
//! [[auth.acl]]
//! account = "alice"      # a user, "*" (any signed-in user) or "anonymous"
//! repository = "team/*"  # exact name, "prefix/*" or "*"
//! actions = ["pull", "push", "delete"]
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub addr: Option<String>,
    pub root: Option<PathBuf>,
    #[serde(default)]
    pub delete_enabled: bool,
    pub upload_expiry_secs: Option<u64>,
    pub gc_grace_secs: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub sendfile: bool,
    #[serde(default)]
    pub auth: AuthConfig,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub htpasswd: Option<PathBuf>,
    #[serde(default)]
    pub anonymous_read: bool,
    pub token: Option<TokenConfig>,
    #[serde(default)]
    pub acl: Vec<AclEntry>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub realm: Option<String>,
    pub service: Option<String>,
    pub secret: Option<String>,
    pub expiry_secs: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclEntry {
    pub account: String,
    pub repository: String,
    pub actions: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("config {0}: {1}")]
    Parse(PathBuf, String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        Config::parse(&text).map_err(|e| ConfigError::Parse(path.to_path_buf(), e))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, a) in cfg.auth.acl.iter().enumerate() {
            for act in &a.actions {
                if !matches!(act.as_str(), "pull" | "push" | "delete" | "*") {
                    return Err(format!(
                        "auth.acl[{i}]: unknown action {act:?} (pull, push, delete or *)"
                    ));
                }
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_clearly() {
        let c = Config::parse(
            "delete_enabled = true\n[auth]\nanonymous_read = true\n[auth.token]\nservice = \"s\"\n[[auth.acl]]\naccount = \"*\"\nrepository = \"team/*\"\nactions = [\"pull\"]\n",
        )
        .unwrap();
        assert!(c.delete_enabled && c.auth.anonymous_read && c.auth.token.is_some());
        assert_eq!(c.auth.acl[0].repository, "team/*");
        let e = Config::parse(
            "[[auth.acl]]\naccount = \"a\"\nrepository = \"*\"\nactions = [\"write\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("unknown action \"write\""), "{e}");
        let e = Config::parse("adress = \"x\"").unwrap_err();
        assert!(e.contains("adress"), "{e}");
    }
}

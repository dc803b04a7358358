//! Credentials in Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), read and written exactly as the Docker CLI does: `auths`
//! entries holding base64 `user:password`, `credsStore` and per-registry `credHelpers`
//! naming `docker-credential-<name>` programs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Map, Value};

use crate::error::{RegistryError, Result};

/// The key Docker uses for Docker Hub in `auths` and with credential helpers.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Where credentials were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    File(PathBuf),
    Helper(String),
}

/// Docker's `config.json`, kept as JSON so fields Strata does not know survive a rewrite.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: Map<String, Value>,
}

/// The key for a registry host in `config.json`: Docker Hub has its legacy URL.
pub fn config_key(registry: &str) -> String {
    if registry == "docker.io"
        || registry == "index.docker.io"
        || registry == "registry-1.docker.io"
    {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// `https://host/v1/` and `host` both name `host`, as in Docker's `ConvertToHostname`.
fn hostname_of(key: &str) -> &str {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_path() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir).join("config.json"));
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or_else(|| {
            RegistryError::Credentials("HOME is not set; set DOCKER_CONFIG".into())
        })?;
        Ok(PathBuf::from(home).join(".docker").join("config.json"))
    }

    pub fn load_default() -> Result<DockerConfig> {
        DockerConfig::load(&DockerConfig::default_path()?)
    }

    /// Reads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<DockerConfig> {
        let doc = match std::fs::read(path) {
            Ok(bytes) if bytes.iter().all(|b| b.is_ascii_whitespace()) => Map::new(),
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    return Err(RegistryError::Credentials(format!(
                        "{}: not a JSON object",
                        path.display()
                    )))
                }
                Err(e) => {
                    return Err(RegistryError::Credentials(format!("{}: {e}", path.display())))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(RegistryError::io("reading", path.display(), e)),
        };
        Ok(DockerConfig { path: path.to_path_buf(), doc })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential helper for a registry: `credHelpers[host]`, else `credsStore`.
    pub fn helper_for(&self, registry: &str) -> Option<String> {
        let key = config_key(registry);
        if let Some(Value::Object(h)) = self.doc.get("credHelpers") {
            for (k, v) in h {
                if (k == &key || hostname_of(k) == registry) && v.is_string() {
                    return v.as_str().map(str::to_string);
                }
            }
        }
        self.doc
            .get("credsStore")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The credentials for a registry host, or `None` for anonymous access.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        let key = config_key(registry);
        if let Some(helper) = self.helper_for(registry) {
            return helper_get(&helper, &key);
        }
        let Some(Value::Object(auths)) = self.doc.get("auths") else { return Ok(None) };
        let entry = auths.get(&key).or_else(|| {
            auths.iter().find(|(k, _)| hostname_of(k) == hostname_of(&key)).map(|(_, v)| v)
        });
        let Some(Value::Object(entry)) = entry else { return Ok(None) };
        if let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
            let decoded =
                base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|e| {
                    RegistryError::Credentials(format!(
                        "{}: auths[{key}].auth: {e}",
                        self.path.display()
                    ))
                })?;
            let text = String::from_utf8(decoded).map_err(|_| {
                RegistryError::Credentials(format!(
                    "{}: auths[{key}].auth is not UTF-8",
                    self.path.display()
                ))
            })?;
            let (user, pass) = text.split_once(':').ok_or_else(|| {
                RegistryError::Credentials(format!(
                    "{}: auths[{key}].auth is not base64 of user:password",
                    self.path.display()
                ))
            })?;
            return Ok(Some(Credentials {
                username: user.to_string(),
                password: pass.to_string(),
            }));
        }
        let user = entry.get("username").and_then(Value::as_str);
        let pass = entry.get("password").and_then(Value::as_str);
        match (user, pass) {
            (Some(u), Some(p)) => Ok(Some(Credentials { username: u.into(), password: p.into() })),
            _ => Ok(None),
        }
    }

    /// Saves credentials as `docker login` does: through the helper if one is configured,
    /// else base64 in `auths`. The file is replaced atomically with mode 0600.
    pub fn store(&mut self, registry: &str, creds: &Credentials) -> Result<Stored> {
        let key = config_key(registry);
        if let Some(helper) = self.helper_for(registry) {
            helper_store(&helper, &key, creds)?;
            // Docker leaves an empty entry so `auths` lists the registry.
            self.auths_mut().insert(key, Value::Object(Map::new()));
            self.save()?;
            return Ok(Stored::Helper(helper));
        }
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password));
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(auth));
        self.auths_mut().insert(key, Value::Object(entry));
        self.save()?;
        Ok(Stored::File(self.path.clone()))
    }

    /// Removes credentials; `false` when there were none.
    pub fn erase(&mut self, registry: &str) -> Result<bool> {
        let key = config_key(registry);
        let mut found = false;
        if let Some(helper) = self.helper_for(registry) {
            found |= helper_erase(&helper, &key)?;
        }
        let auths = self.auths_mut();
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| **k == key || hostname_of(k) == hostname_of(&key))
            .cloned()
            .collect();
        for k in keys {
            auths.remove(&k);
            found = true;
        }
        if found {
            self.save()?;
        }
        Ok(found)
    }

    fn auths_mut(&mut self) -> &mut Map<String, Value> {
        let v = self.doc.entry("auths").or_insert_with(|| Value::Object(Map::new()));
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        match v {
            Value::Object(m) => m,
            _ => unreachable!("just made an object"),
        }
    }

    fn save(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| RegistryError::io("creating", dir.display(), e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| RegistryError::io("writing", dir.display(), e))?;
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(self.doc.clone()))
            .map_err(|e| RegistryError::Credentials(e.to_string()))?;
        bytes.push(b'\n');
        let p = self.path.display();
        tmp.write_all(&bytes).map_err(|e| RegistryError::io("writing", &p, e))?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| RegistryError::io("writing", &p, e))?;
        tmp.as_file().sync_all().map_err(|e| RegistryError::io("syncing", &p, e))?;
        tmp.persist(&self.path).map_err(|e| RegistryError::io("writing", &p, e.error))?;
        Ok(())
    }
}

fn run_helper(helper: &str, action: &str, input: &[u8]) -> Result<(bool, Vec<u8>, String)> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RegistryError::Credentials(format!("running {program} {action}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| RegistryError::Credentials(format!("writing to {program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| RegistryError::Credentials(format!("running {program} {action}: {e}")))?;
    let msg =
        String::from_utf8_lossy(if out.stdout.is_empty() { &out.stderr } else { &out.stdout })
            .trim()
            .to_string();
    Ok((out.status.success(), out.stdout, msg))
}

fn is_not_found(msg: &str) -> bool {
    msg.contains("credentials not found")
}

fn helper_get(helper: &str, key: &str) -> Result<Option<Credentials>> {
    let (ok, stdout, msg) = run_helper(helper, "get", key.as_bytes())?;
    if !ok {
        if is_not_found(&msg) {
            return Ok(None);
        }
        return Err(RegistryError::Credentials(format!("docker-credential-{helper} get: {msg}")));
    }
    let v: Value = serde_json::from_slice(&stdout).map_err(|e| {
        RegistryError::Credentials(format!("docker-credential-{helper} get: bad answer: {e}"))
    })?;
    let user = v.get("Username").and_then(Value::as_str).unwrap_or_default();
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials { username: user.to_string(), password: secret.to_string() }))
}

fn helper_store(helper: &str, key: &str, creds: &Credentials) -> Result<()> {
    let input =
        serde_json::json!({"ServerURL": key, "Username": creds.username, "Secret": creds.password});
    let (ok, _, msg) = run_helper(helper, "store", input.to_string().as_bytes())?;
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Credentials(format!("docker-credential-{helper} store: {msg}")))
    }
}

fn helper_erase(helper: &str, key: &str) -> Result<bool> {
    let (ok, _, msg) = run_helper(helper, "erase", key.as_bytes())?;
    if ok {
        Ok(true)
    } else if is_not_found(&msg) {
        Ok(false)
    } else {
        Err(RegistryError::Credentials(format!("docker-credential-{helper} erase: {msg}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"experimental":"enabled","auths":{"other:1":{"auth":"YTpi"}}}"#)
            .unwrap();
        let mut c = DockerConfig::load(&path).unwrap();
        assert_eq!(
            c.get("other:1").unwrap(),
            Some(Credentials { username: "a".into(), password: "b".into() })
        );
        c.store("docker.io", &Credentials { username: "u".into(), password: "p:q".into() })
            .unwrap();
        let c = DockerConfig::load(&path).unwrap();
        assert_eq!(c.get("docker.io").unwrap().unwrap().password, "p:q");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"experimental\": \"enabled\""));
        assert!(text.contains(DOCKER_HUB_KEY));
        let mut c = c;
        assert!(c.erase("other:1").unwrap());
        assert!(!c.erase("other:1").unwrap());
        assert_eq!(c.get("other:1").unwrap(), None);
    }

    #[test]
    fn bad_auth_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths":{"r":{"auth":"!!!"}}}"#).unwrap();
        let err = DockerConfig::load(&path).unwrap().get("r").unwrap_err().to_string();
        assert!(err.contains("auths[r].auth"), "{err}");
    }
}

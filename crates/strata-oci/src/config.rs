//! The image configuration (the blob an image ID is the digest of).
//!
//! `oci-spec`'s `ImageConfiguration` drops Docker-only fields (Healthcheck, OnBuild, Shell,
//! ArgsEscaped, Hostname, `container_config`, ...). Loaded images must keep those byte for byte,
//! so [`ImageConfig`] keeps the raw bytes and the whole JSON, and reads typed views from it.
//! [`ImageConfigBuilder`] edits the JSON (never a lossy typed copy) for the build engine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::{Digest, DigestError};
use crate::json::canonical_json;
use crate::platform::Platform;

/// Why an image configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("image config is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("image config must be a JSON object")]
    NotAnObject,
    #[error("image config has no rootfs section")]
    MissingRootfs,
    #[error("image config rootfs.type is {0}: it must be \"layers\"")]
    RootfsType(String),
    #[error("image config rootfs.diff_ids must be an array of digests, found {0}")]
    DiffIdsNotArray(String),
    #[error("image config rootfs.diff_ids[{index}] {value} is not a valid digest: {source}")]
    BadDiffId {
        index: usize,
        value: String,
        #[source]
        source: DigestError,
    },
    #[error("image config field {field} has the wrong shape: {message}")]
    Field { field: &'static str, message: String },
}

/// The runtime defaults of an image (the `config` section), with Docker's field names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Keys are `port/proto` (`80/tcp`); values are empty objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
}

/// Docker's HEALTHCHECK settings; durations are in nanoseconds, as Docker stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// One `history` entry: one per Dockerfile step, whether or not it made a layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

impl History {
    pub fn is_empty_layer(&self) -> bool {
        self.empty_layer.unwrap_or(false)
    }
}

/// An image configuration: exact bytes, the whole JSON, and typed views of the parts Strata uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    raw: Vec<u8>,
    json: Map<String, Value>,
    config: ContainerConfig,
    diff_ids: Vec<Digest>,
    history: Vec<History>,
}

impl ImageConfig {
    /// Parses and validates a config blob (OCI or Docker; they share one shape).
    pub fn parse(bytes: impl Into<Vec<u8>>) -> Result<ImageConfig, ConfigError> {
        let raw = bytes.into();
        let value: Value = serde_json::from_slice(&raw).map_err(ConfigError::Json)?;
        let Value::Object(json) = value else {
            return Err(ConfigError::NotAnObject);
        };
        let diff_ids = parse_rootfs(&json)?;
        let config = typed_field(&json, "config")?.unwrap_or_default();
        let history = typed_field(&json, "history")?.unwrap_or_default();
        for field in ["created", "author", "architecture", "os", "variant", "os.version"] {
            if let Some(v) = json.get(field) {
                if !v.is_string() && !v.is_null() {
                    return Err(ConfigError::Field {
                        field,
                        message: format!("expected a string, found {v}"),
                    });
                }
            }
        }
        Ok(ImageConfig { raw, json, config, diff_ids, history })
    }

    /// The exact bytes.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The digest of the bytes: Docker's image ID.
    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.raw)
    }

    /// The whole document, Docker-only fields included.
    pub fn json(&self) -> &Map<String, Value> {
        &self.json
    }

    fn str_field(&self, name: &str) -> Option<&str> {
        self.json.get(name).and_then(Value::as_str)
    }

    /// RFC 3339 creation time, as written.
    pub fn created(&self) -> Option<&str> {
        self.str_field("created")
    }
    pub fn author(&self) -> Option<&str> {
        self.str_field("author")
    }
    pub fn architecture(&self) -> Option<&str> {
        self.str_field("architecture")
    }
    pub fn os(&self) -> Option<&str> {
        self.str_field("os")
    }
    pub fn variant(&self) -> Option<&str> {
        self.str_field("variant")
    }
    pub fn os_version(&self) -> Option<&str> {
        self.str_field("os.version")
    }

    /// The image's platform, normalised (`x86_64` -> `amd64`).
    pub fn platform(&self) -> Platform {
        Platform::normalized(
            self.os().unwrap_or(""),
            self.architecture().unwrap_or(""),
            self.variant(),
            self.os_version(),
        )
    }

    /// The runtime defaults (`config` section); empty when absent.
    pub fn config(&self) -> &ContainerConfig {
        &self.config
    }

    /// Uncompressed layer digests, base layer first.
    pub fn diff_ids(&self) -> &[Digest] {
        &self.diff_ids
    }

    pub fn history(&self) -> &[History] {
        &self.history
    }

    /// Chain IDs of the layer stack (OCI image spec): identifies each unpacked snapshot.
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(&self.diff_ids)
    }
}

/// `ChainID(L0) = DiffID(L0)`, `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

fn typed_field<T: serde::de::DeserializeOwned>(
    json: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<T>, ConfigError> {
    match json.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| ConfigError::Field { field, message: e.to_string() }),
    }
}

fn parse_rootfs(json: &Map<String, Value>) -> Result<Vec<Digest>, ConfigError> {
    let rootfs = json.get("rootfs").and_then(Value::as_object).ok_or(ConfigError::MissingRootfs)?;
    match rootfs.get("type") {
        Some(Value::String(t)) if t == "layers" => {}
        Some(other) => return Err(ConfigError::RootfsType(other.to_string())),
        None => return Err(ConfigError::RootfsType("missing".into())),
    }
    let ids = match rootfs.get("diff_ids") {
        // Docker writes an image with no layers (FROM scratch + only metadata) without the key.
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(ids)) => ids,
        Some(other) => return Err(ConfigError::DiffIdsNotArray(other.to_string())),
    };
    ids.iter()
        .enumerate()
        .map(|(index, v)| {
            let s = v.as_str().ok_or_else(|| ConfigError::BadDiffId {
                index,
                value: v.to_string(),
                source: DigestError::MissingAlgorithm(v.to_string()),
            })?;
            s.parse().map_err(|source| ConfigError::BadDiffId {
                index,
                value: format!("{s:?}"),
                source,
            })
        })
        .collect()
}

/// Edits an image configuration as JSON, so fields Strata does not model survive.
#[derive(Debug, Clone)]
pub struct ImageConfigBuilder {
    json: Map<String, Value>,
}

impl ImageConfigBuilder {
    /// An empty image (`FROM scratch`) for `platform`.
    pub fn new(platform: &Platform) -> ImageConfigBuilder {
        let mut json = Map::new();
        json.insert("architecture".into(), platform.architecture.clone().into());
        json.insert("os".into(), platform.os.clone().into());
        if let Some(v) = &platform.variant {
            json.insert("variant".into(), v.clone().into());
        }
        if let Some(v) = &platform.os_version {
            json.insert("os.version".into(), v.clone().into());
        }
        json.insert("config".into(), Value::Object(Map::new()));
        json.insert("rootfs".into(), serde_json::json!({"type": "layers", "diff_ids": []}));
        json.insert("history".into(), Value::Array(Vec::new()));
        ImageConfigBuilder { json }
    }

    /// A child of `parent` (`FROM parent`). Fields that describe how the parent itself was
    /// built (`container`, `container_config`, `docker_version`, `created`, legacy `id` and
    /// `parent`) are dropped, and ONBUILD triggers are cleared: the child runs them, it does
    /// not inherit them (Docker behaves the same).
    pub fn from_parent(parent: &ImageConfig) -> ImageConfigBuilder {
        let mut json = parent.json.clone();
        for stale in ["container", "container_config", "docker_version", "created", "id", "parent"]
        {
            json.remove(stale);
        }
        let mut b = ImageConfigBuilder { json };
        b.config_mut().remove("OnBuild");
        if !b.json.get("history").is_some_and(Value::is_array) {
            b.json.insert("history".into(), Value::Array(Vec::new()));
        }
        let rootfs = b.rootfs_mut();
        if !rootfs.get("diff_ids").is_some_and(Value::is_array) {
            rootfs.insert("diff_ids".into(), Value::Array(Vec::new()));
        }
        b
    }

    fn config_mut(&mut self) -> &mut Map<String, Value> {
        let entry = self.json.entry("config").or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        entry.as_object_mut().expect("just made an object")
    }

    fn rootfs_mut(&mut self) -> &mut Map<String, Value> {
        let entry = self
            .json
            .entry("rootfs")
            .or_insert_with(|| serde_json::json!({"type": "layers", "diff_ids": []}));
        if !entry.is_object() {
            *entry = serde_json::json!({"type": "layers", "diff_ids": []});
        }
        entry.as_object_mut().expect("just made an object")
    }

    fn set_config(&mut self, key: &str, value: Option<Value>) -> &mut Self {
        match value {
            Some(v) => self.config_mut().insert(key.into(), v),
            None => self.config_mut().remove(key),
        };
        self
    }

    fn map_insert(&mut self, key: &str, entry: &str, value: Value) -> &mut Self {
        let slot = self.config_mut().entry(key).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        slot.as_object_mut().expect("just made an object").insert(entry.into(), value);
        self
    }

    pub fn set_created(&mut self, rfc3339: &str) -> &mut Self {
        self.json.insert("created".into(), rfc3339.into());
        self
    }

    pub fn set_author(&mut self, author: &str) -> &mut Self {
        self.json.insert("author".into(), author.into());
        self
    }

    pub fn set_user(&mut self, user: &str) -> &mut Self {
        self.set_config("User", Some(user.into()))
    }

    /// Sets `key=value`, replacing an earlier value of `key` in place (as ENV does).
    pub fn set_env(&mut self, key: &str, value: &str) -> &mut Self {
        let entry = format!("{key}={value}");
        let prefix = format!("{key}=");
        let env = self.config_mut().entry("Env").or_insert_with(|| Value::Array(Vec::new()));
        if !env.is_array() {
            *env = Value::Array(Vec::new());
        }
        let list = env.as_array_mut().expect("just made an array");
        match list
            .iter_mut()
            .find(|v| v.as_str().is_some_and(|s| s.starts_with(&prefix) || s == key))
        {
            Some(existing) => *existing = entry.into(),
            None => list.push(entry.into()),
        }
        self
    }

    pub fn set_cmd(&mut self, cmd: Option<Vec<String>>) -> &mut Self {
        self.set_config("Cmd", cmd.map(Into::into))
    }

    pub fn set_entrypoint(&mut self, entrypoint: Option<Vec<String>>) -> &mut Self {
        self.set_config("Entrypoint", entrypoint.map(Into::into))
    }

    pub fn set_working_dir(&mut self, dir: &str) -> &mut Self {
        self.set_config("WorkingDir", Some(dir.into()))
    }

    pub fn set_label(&mut self, key: &str, value: &str) -> &mut Self {
        self.map_insert("Labels", key, value.into())
    }

    /// Adds an exposed port; a bare number means TCP (`80` -> `80/tcp`), as in Docker.
    pub fn expose_port(&mut self, port: &str) -> &mut Self {
        let key = if port.contains('/') { port.to_string() } else { format!("{port}/tcp") };
        self.map_insert("ExposedPorts", &key, Value::Object(Map::new()))
    }

    pub fn add_volume(&mut self, path: &str) -> &mut Self {
        self.map_insert("Volumes", path, Value::Object(Map::new()))
    }

    pub fn set_stop_signal(&mut self, signal: &str) -> &mut Self {
        self.set_config("StopSignal", Some(signal.into()))
    }

    pub fn set_healthcheck(&mut self, healthcheck: Option<&Healthcheck>) -> &mut Self {
        let v = healthcheck.map(|h| serde_json::to_value(h).expect("plain struct serialises"));
        self.set_config("Healthcheck", v)
    }

    /// Drops the ONBUILD triggers (a child that ran its base's triggers does not pass them on).
    pub fn clear_onbuild(&mut self) -> &mut Self {
        self.config_mut().remove("OnBuild");
        self
    }

    pub fn add_onbuild(&mut self, trigger: &str) -> &mut Self {
        let slot = self.config_mut().entry("OnBuild").or_insert_with(|| Value::Array(Vec::new()));
        if !slot.is_array() {
            *slot = Value::Array(Vec::new());
        }
        slot.as_array_mut().expect("just made an array").push(trigger.into());
        self
    }

    pub fn set_shell(&mut self, shell: Vec<String>) -> &mut Self {
        self.set_config("Shell", Some(shell.into()))
    }

    pub fn set_args_escaped(&mut self, escaped: bool) -> &mut Self {
        self.set_config("ArgsEscaped", Some(escaped.into()))
    }

    /// Appends a layer and the history entry for the step that made it.
    pub fn add_layer(&mut self, diff_id: &Digest, mut history: History) -> &mut Self {
        history.empty_layer = None;
        let ids = self.rootfs_mut().entry("diff_ids").or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = ids.as_array_mut() {
            list.push(diff_id.to_string().into());
        }
        self.push_history(history)
    }

    /// Appends the history entry of a step that made a layer whose diffID is not known yet
    /// (it is being written); [`ImageConfigBuilder::set_diff_ids`] fills the list later.
    pub fn add_layer_history(&mut self, mut history: History) -> &mut Self {
        history.empty_layer = None;
        self.push_history(history)
    }

    /// Replaces the rootfs diffIDs (the whole stack, base layers included).
    pub fn set_diff_ids<'d>(
        &mut self,
        diff_ids: impl IntoIterator<Item = &'d Digest>,
    ) -> &mut Self {
        let list: Vec<Value> = diff_ids.into_iter().map(|d| d.to_string().into()).collect();
        self.rootfs_mut().insert("diff_ids".into(), Value::Array(list));
        self
    }

    /// Appends a history entry for a step that changed only metadata.
    pub fn add_empty_layer_history(&mut self, mut history: History) -> &mut Self {
        history.empty_layer = Some(true);
        self.push_history(history)
    }

    fn push_history(&mut self, history: History) -> &mut Self {
        let v = serde_json::to_value(&history).expect("plain struct serialises");
        let slot = self.json.entry("history").or_insert_with(|| Value::Array(Vec::new()));
        if !slot.is_array() {
            *slot = Value::Array(Vec::new());
        }
        slot.as_array_mut().expect("just made an array").push(v);
        self
    }

    /// Serialises deterministically (sorted keys, compact) and validates the result.
    pub fn build(&self) -> Result<ImageConfig, ConfigError> {
        let bytes = canonical_json(&self.json).map_err(ConfigError::Json)?;
        ImageConfig::parse(bytes)
    }
}

#[cfg(test)]
mod tests;

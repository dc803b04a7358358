//! Lint configuration: severities, `.hadolint.yaml` files and their merging.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use crate::LintError;

/// How serious a finding is, hadolint's five levels. Ordered from the most
/// to the least serious (`Error < Warning` in `Ord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
    Style,
    Ignore,
}

impl Severity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
            Severity::Style => "style",
            Severity::Ignore => "ignore",
        }
    }

    /// Is `self` at least as serious as `threshold`?
    pub fn at_least(&self, threshold: Severity) -> bool {
        *self <= threshold
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(Severity::Error),
            "warning" => Ok(Severity::Warning),
            "info" => Ok(Severity::Info),
            "style" => Ok(Severity::Style),
            "ignore" | "none" => Ok(Severity::Ignore),
            other => Err(format!(
                "unknown severity {other:?}: expected error, warning, info, style or ignore"
            )),
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type a label of the label schema must have (hadolint's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelType {
    RawText,
    Url,
    Rfc3339,
    Spdx,
    GitHash,
    SemVer,
    Email,
}

impl std::str::FromStr for LabelType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" | "rawtext" => Ok(LabelType::RawText),
            "url" => Ok(LabelType::Url),
            "rfc3339" => Ok(LabelType::Rfc3339),
            "spdx" => Ok(LabelType::Spdx),
            "hash" | "githash" => Ok(LabelType::GitHash),
            "semver" => Ok(LabelType::SemVer),
            "email" => Ok(LabelType::Email),
            other => Err(format!(
                "unknown label type {other:?}: expected text, url, rfc3339, spdx, hash, semver or email"
            )),
        }
    }
}

/// Everything that changes what the linter reports.
#[derive(Debug, Clone)]
pub struct Config {
    /// Rule codes never reported.
    pub ignored: BTreeSet<String>,
    /// Registries FROM may use (DL3026); empty means any.
    pub trusted_registries: Vec<String>,
    /// Findings at or above this severity make the exit code 1.
    pub failure_threshold: Severity,
    /// Severity overrides per rule code.
    pub overrides: BTreeMap<String, Severity>,
    pub label_schema: BTreeMap<String, LabelType>,
    pub strict_labels: bool,
    pub no_fail: bool,
    /// Ignore `# hadolint ignore=` / `# strata ignore=` comments.
    pub disable_ignore_pragma: bool,
    /// The build context directory, for rules that look at it (ST1004,
    /// `.dockerignore`). `None` turns those rules off.
    pub context_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ignored: BTreeSet::new(),
            trusted_registries: Vec::new(),
            failure_threshold: Severity::Info,
            overrides: BTreeMap::new(),
            label_schema: BTreeMap::new(),
            strict_labels: false,
            no_fail: false,
            disable_ignore_pragma: false,
            context_dir: None,
        }
    }
}

/// Settings from a config file that are not part of [`Config`] (output).
#[derive(Debug, Clone, Default)]
pub struct FileSettings {
    pub format: Option<String>,
    pub no_color: Option<bool>,
}

fn strs(v: &Yaml, key: &str, path: &Path) -> Result<Vec<String>, LintError> {
    match v {
        Yaml::BadValue | Yaml::Null => Ok(Vec::new()),
        Yaml::String(s) => Ok(vec![s.clone()]),
        Yaml::Array(items) => items
            .iter()
            .map(|i| match i {
                Yaml::String(s) => Ok(s.clone()),
                Yaml::Integer(n) => Ok(n.to_string()),
                _ => Err(bad(path, format!("`{key}` must be a list of strings"))),
            })
            .collect(),
        _ => Err(bad(path, format!("`{key}` must be a list of strings"))),
    }
}

fn bad(path: &Path, message: String) -> LintError {
    LintError::Config { path: path.to_path_buf(), message }
}

fn boolean(v: &Yaml, key: &str, path: &Path) -> Result<Option<bool>, LintError> {
    match v {
        Yaml::BadValue | Yaml::Null => Ok(None),
        Yaml::Boolean(b) => Ok(Some(*b)),
        _ => Err(bad(path, format!("`{key}` must be true or false"))),
    }
}

impl Config {
    /// Merge the settings of a `.hadolint.yaml` text into `self` (values in
    /// the file replace or extend the current ones).
    pub fn merge_yaml(&mut self, text: &str, path: &Path) -> Result<FileSettings, LintError> {
        let docs =
            YamlLoader::load_from_str(text).map_err(|e| bad(path, format!("invalid YAML: {e}")))?;
        let mut settings = FileSettings::default();
        let Some(doc) = docs.into_iter().next() else { return Ok(settings) };
        let map = match doc {
            Yaml::Hash(h) => h,
            Yaml::Null => return Ok(settings),
            _ => return Err(bad(path, "the top level must be a mapping".to_string())),
        };
        for (k, v) in &map {
            let Yaml::String(key) = k else {
                return Err(bad(path, "keys must be strings".to_string()));
            };
            match key.as_str() {
                "ignored" => self.ignored.extend(strs(v, key, path)?),
                "trustedRegistries" | "trusted-registries" | "trusted_registries" => {
                    self.trusted_registries.extend(strs(v, key, path)?)
                }
                "failure-threshold" | "failureThreshold" | "failure_threshold" => {
                    let Yaml::String(s) = v else {
                        return Err(bad(path, format!("`{key}` must be a severity name")));
                    };
                    self.failure_threshold = s.parse().map_err(|e| bad(path, e))?;
                }
                "override" => {
                    let Yaml::Hash(h) = v else {
                        return Err(bad(
                            path,
                            "`override` must map severities to rule lists".into(),
                        ));
                    };
                    for (sev, codes) in h {
                        let Yaml::String(sev) = sev else {
                            return Err(bad(path, "`override` keys must be severities".into()));
                        };
                        let level: Severity = sev
                            .trim_end_matches("-level")
                            .parse()
                            .map_err(|e| bad(path, format!("in `override`: {e}")))?;
                        for c in strs(codes, sev, path)? {
                            self.overrides.insert(c, level);
                        }
                    }
                }
                "label-schema" | "labelSchema" | "label_schema" => {
                    let Yaml::Hash(h) = v else {
                        return Err(bad(
                            path,
                            "`label-schema` must map label names to types".into(),
                        ));
                    };
                    for (name, ty) in h {
                        let (Yaml::String(name), Yaml::String(ty)) = (name, ty) else {
                            return Err(bad(
                                path,
                                "`label-schema` entries must be name: type".into(),
                            ));
                        };
                        let t = ty.parse().map_err(|e| bad(path, format!("label {name}: {e}")))?;
                        self.label_schema.insert(name.clone(), t);
                    }
                }
                "strict-labels" | "strictLabels" | "strict_labels" => {
                    if let Some(b) = boolean(v, key, path)? {
                        self.strict_labels = b;
                    }
                }
                "no-fail" | "noFail" | "no_fail" => {
                    if let Some(b) = boolean(v, key, path)? {
                        self.no_fail = b;
                    }
                }
                "disable-ignore-pragma" | "disableIgnorePragma" | "disable_ignore_pragma" => {
                    if let Some(b) = boolean(v, key, path)? {
                        self.disable_ignore_pragma = b;
                    }
                }
                "no-color" | "noColor" | "no_color" => settings.no_color = boolean(v, key, path)?,
                "format" | "output-format" => match v {
                    Yaml::String(s) => settings.format = Some(s.clone()),
                    _ => return Err(bad(path, "`format` must be a string".into())),
                },
                "verbose" | "shell" => {}
                other => {
                    return Err(bad(
                        path,
                        format!(
                            "unknown key `{other}` (known: ignored, trustedRegistries, \
                             failure-threshold, override, label-schema, strict-labels, no-fail, \
                             disable-ignore-pragma, format, no-color)"
                        ),
                    ))
                }
            }
        }
        Ok(settings)
    }

    /// Read and merge a config file.
    pub fn merge_file(&mut self, path: &Path) -> Result<FileSettings, LintError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LintError::Io { path: path.to_path_buf(), source: e })?;
        self.merge_yaml(&text, path)
    }
}

/// Where hadolint looks for a config file when none is given: the current
/// directory first, then the user's config directories.
pub fn default_config_paths() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from(".hadolint.yaml"), PathBuf::from(".hadolint.yml")];
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME") {
        let x = PathBuf::from(x);
        v.push(x.join("hadolint.yaml"));
        v.push(x.join("hadolint.yml"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        let h = PathBuf::from(h);
        v.push(h.join(".config/hadolint.yaml"));
        v.push(h.join(".config/hadolint.yml"));
        v.push(h.join(".hadolint/hadolint.yaml"));
        v.push(h.join(".hadolint/hadolint.yml"));
        v.push(h.join(".hadolint.yaml"));
        v.push(h.join(".hadolint.yml"));
    }
    v
}

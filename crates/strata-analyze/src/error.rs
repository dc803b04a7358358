//! Errors of image analysis.

use std::path::PathBuf;

/// Everything that can stop an analysis. Messages say what was being read and why it failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Store(#[from] strata_store::StoreError),

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{what}: {reason}")]
    BadImage { what: String, reason: String },

    #[error("layer {index} ({layer}): {source}")]
    Layer { index: usize, layer: String, source: strata_layer::LayerError },

    #[error("layer {index} ({layer}): the layer tar is malformed: {source}")]
    LayerTar { index: usize, layer: String, source: std::io::Error },

    #[error("layer {index} ({layer}): entry {path:?} {reason}")]
    BadEntry { index: usize, layer: String, path: String, reason: String },

    #[error("CI configuration {path}: {reason}")]
    CiConfig { path: PathBuf, reason: String },

    #[error("invalid {flag} value {value:?}: {reason}")]
    BadFlag { flag: &'static str, value: String, reason: String },

    #[error("the interactive view failed: {0}")]
    Terminal(std::io::Error),

    #[error("writing the report: {0}")]
    Output(std::io::Error),
}

impl AnalyzeError {
    pub(crate) fn bad(what: impl Into<String>, reason: impl Into<String>) -> Self {
        AnalyzeError::BadImage { what: what.into(), reason: reason.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AnalyzeError::Io { path: path.into(), source }
    }
}

pub type Result<T, E = AnalyzeError> = std::result::Result<T, E>;

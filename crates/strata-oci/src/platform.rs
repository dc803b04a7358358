//! Platforms (`linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`), normalised the way containerd's
//! `platforms` package does, and selection of an index entry for a platform.
//!
//! One difference from containerd, on purpose: containerd normalises `arm64/v8` to `arm64` with
//! no variant, while Strata fills in the default variants (`arm64` -> `v8`, `arm` -> `v7`), which
//! is what Docker shows and what most indexes carry. Matching treats both spellings as equal.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageIndex};

/// Why a platform string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    #[error("platform is empty: expected os/arch[/variant], e.g. linux/amd64")]
    Empty,
    #[error("platform {0:?} has more than three parts: expected os/arch[/variant]")]
    TooManyParts(String),
    #[error("platform {0:?} has an empty part: expected os/arch[/variant]")]
    EmptyPart(String),
    #[error("platform {0:?}: part {1:?} may only contain letters, digits, '_', '-' and '.'")]
    InvalidPart(String, String),
}

/// An operating system and CPU, as in an image index or an image config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// Only meaningful on Windows (`10.0.17763.1879`).
    pub os_version: Option<String>,
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

impl Platform {
    /// Builds a normalised platform from its parts (e.g. from an image config).
    pub fn normalized(
        os: &str,
        architecture: &str,
        variant: Option<&str>,
        os_version: Option<&str>,
    ) -> Platform {
        let (architecture, variant) = normalize_arch(architecture, variant.unwrap_or(""));
        Platform {
            os: normalize_os(os),
            architecture,
            variant,
            os_version: os_version.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }

    /// Parses `os[/arch[/variant]]` (or a lone architecture, which means the host OS),
    /// as `docker --platform` does.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        if s.is_empty() {
            return Err(PlatformError::Empty);
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 3 {
            return Err(PlatformError::TooManyParts(s.to_string()));
        }
        for part in &parts {
            if part.is_empty() {
                return Err(PlatformError::EmptyPart(s.to_string()));
            }
            if !part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
                return Err(PlatformError::InvalidPart(s.to_string(), part.to_string()));
            }
        }
        let host = Platform::host();
        Ok(match parts[..] {
            [one] if KNOWN_OS.contains(&normalize_os(one).as_str()) => {
                // `linux` alone: the host's CPU.
                Platform::normalized(one, &host.architecture, host.variant.as_deref(), None)
            }
            [arch] => Platform::normalized(&host.os, arch, None, None),
            [os, arch] => Platform::normalized(os, arch, None, None),
            [os, arch, variant] => Platform::normalized(os, arch, Some(variant), None),
            _ => unreachable!("between one and three parts, checked above"),
        })
    }

    /// The platform this process runs on, in Go/OCI names.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "powerpc" => "ppc",
            "loongarch64" => "loong64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            "mips" if cfg!(target_endian = "little") => "mipsle",
            other => other,
        };
        Platform::normalized(std::env::consts::OS, arch, None, None)
    }

    /// From an index entry's platform.
    pub fn from_oci(p: &oci_spec::image::Platform) -> Platform {
        Platform::normalized(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
            p.os_version().as_deref(),
        )
    }

    /// To an index entry's platform.
    pub fn to_oci(&self) -> oci_spec::image::Platform {
        let mut p = oci_spec::image::Platform::default();
        p.set_os(self.os.as_str().into());
        p.set_architecture(self.architecture.as_str().into());
        p.set_variant(self.variant.clone());
        p.set_os_version(self.os_version.clone());
        p
    }

    /// Whether an image built for `candidate` runs here (self being the wanted platform).
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.preference(candidate).is_some()
    }

    /// 0 for an exact match, larger for less preferred compatible platforms (an arm/v6 image on
    /// an arm/v7 host), `None` for incompatible ones.
    fn preference(&self, candidate: &Platform) -> Option<usize> {
        let wanted =
            Platform::normalized(&self.os, &self.architecture, self.variant.as_deref(), None);
        let got = Platform::normalized(
            &candidate.os,
            &candidate.architecture,
            candidate.variant.as_deref(),
            None,
        );
        if wanted.os != got.os {
            return None;
        }
        wanted
            .compatible()
            .iter()
            .position(|(arch, variant)| *arch == got.architecture && *variant == got.variant)
    }

    /// The (architecture, variant) pairs this platform runs, most preferred first.
    fn compatible(&self) -> Vec<(String, Option<String>)> {
        let arch = self.architecture.as_str();
        let variant_num = self
            .variant
            .as_deref()
            .and_then(|v| v.strip_prefix('v'))
            .and_then(|n| n.split('.').next())
            .and_then(|n| n.parse::<u32>().ok());
        let arm = |from: u32| (5..=from).rev().map(|v| ("arm".to_string(), Some(format!("v{v}"))));
        match (arch, variant_num) {
            ("arm64", n) => {
                let top = n.unwrap_or(8).max(8);
                let mut out: Vec<_> =
                    (8..=top).rev().map(|v| ("arm64".to_string(), Some(format!("v{v}")))).collect();
                // 64-bit ARM runs 32-bit ARM binaries up to v8.
                out.extend(arm(8));
                out
            }
            ("arm", Some(n)) => arm(n.max(5)).collect(),
            ("amd64", n) => {
                let top = n.unwrap_or(1).max(1);
                (1..=top)
                    .rev()
                    .map(|v| ("amd64".to_string(), (v > 1).then(|| format!("v{v}"))))
                    .collect()
            }
            _ => vec![(self.architecture.clone(), self.variant.clone())],
        }
    }
}

/// Picks the index entry for `wanted`: an exact match if there is one, else the most preferred
/// compatible platform; ties go to the first entry, as in containerd. Entries without a
/// platform (attestations, artifacts) are never picked.
pub fn select<'a>(index: &'a ImageIndex, wanted: &Platform) -> Option<&'a Descriptor> {
    index
        .manifests()
        .iter()
        .filter_map(|d| {
            let p = Platform::from_oci(d.platform().as_ref()?);
            Some((wanted.preference(&p)?, d))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, d)| d)
}

fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    if os == "macos" {
        "darwin".into()
    } else {
        os
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    let some = |v: &str| Some(v.to_string());
    let (arch, variant) = match arch.as_str() {
        "i386" | "386" | "x86" => ("386", None),
        "x86_64" | "x86-64" | "amd64" => match variant.as_str() {
            "" | "v1" | "1" => ("amd64", None),
            v if v.starts_with('v') => ("amd64", some(v)),
            v => ("amd64", Some(format!("v{v}"))),
        },
        "aarch64" | "arm64" => match variant.as_str() {
            "" | "8" | "v8" | "v8.0" => ("arm64", some("v8")),
            "9" | "9.0" | "v9.0" => ("arm64", some("v9")),
            v if v.starts_with('v') => ("arm64", some(v)),
            v => ("arm64", Some(format!("v{v}"))),
        },
        "armhf" => ("arm", some("v7")),
        "armel" => ("arm", some("v6")),
        "arm" => match variant.as_str() {
            "" | "7" => ("arm", some("v7")),
            "5" | "6" | "8" => ("arm", Some(format!("v{variant}"))),
            v => ("arm", some(v)),
        },
        other => (other, (!variant.is_empty()).then(|| variant.clone())),
    };
    (arch.to_string(), variant)
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        Platform::parse(s)
    }
}

#[cfg(test)]
mod tests;

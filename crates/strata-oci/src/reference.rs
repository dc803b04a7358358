//! Image references (`busybox`, `localhost:5000/a/b:1`, `name@sha256:...`), normalised the way
//! Docker does it (`ParseNormalizedNamed` in github.com/distribution/reference):
//!
//! - a first path element is a registry only if it contains `.` or `:`, is `localhost`, or has
//!   an upper-case letter; otherwise the registry is `docker.io`;
//! - `index.docker.io` is the legacy name of Docker Hub and becomes `docker.io`
//!   (`registry-1.docker.io` is *not* rewritten: Docker leaves it alone too);
//! - a one-element repository on Docker Hub gets the `library/` prefix.
//!
//! Grammar (from the reference package):
//! `reference := name [":" tag] ["@" digest]`, `name := [domain "/"] path`,
//! `path-component := [a-z0-9]+ (separator [a-z0-9]+)*`, `separator := [._] | __ | -+`,
//! `tag := [\w][\w.-]{0,127}`, the whole name at most 255 characters.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Docker Hub's canonical registry name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The legacy Docker Hub name that normalises to [`DOCKER_HUB`].
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// The namespace of Docker Hub's official images.
const OFFICIAL_PREFIX: &str = "library/";
/// The tag assumed when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest accepted name (registry + "/" + repository), as in Docker.
pub const NAME_MAX_LEN: usize = 255;
/// Longest accepted tag.
pub const TAG_MAX_LEN: usize = 128;

/// Why an image reference was refused. Every variant names the offending input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format: image reference is empty")]
    Empty,
    #[error(
        "invalid repository name {0:?}: cannot be a 64-character hexadecimal string \
         (that is the form of an image ID)"
    )]
    AmbiguousImageId(String),
    #[error(
        "invalid reference format: repository name ({name}) must be lowercase (in {reference:?})"
    )]
    Uppercase { reference: String, name: String },
    #[error("invalid reference format: repository name {name:?} in {reference:?}: {reason}")]
    InvalidName { reference: String, name: String, reason: &'static str },
    #[error("invalid reference format: registry {registry:?} in {reference:?}: {reason}")]
    InvalidRegistry { reference: String, registry: String, reason: &'static str },
    #[error("invalid tag {tag:?} in {reference:?}: {reason}")]
    InvalidTag { reference: String, tag: String, reason: &'static str },
    #[error("invalid digest {digest:?} in reference {reference:?}: {source}")]
    InvalidDigest {
        reference: String,
        digest: String,
        #[source]
        source: DigestError,
    },
    #[error(
        "repository name {name:?} is {len} characters long: it must not be more than {NAME_MAX_LEN}"
    )]
    NameTooLong { name: String, len: usize },
}

/// A normalised image reference: registry, repository path, and an optional tag and digest.
///
/// Always valid: the only ways to build one check every part.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `s` (`busybox` -> `docker.io/library/busybox`).
    ///
    /// No default tag is added: call [`Reference::with_default_tag`] for Docker's
    /// "`latest` when nothing else is named" behaviour.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_image_id(s) {
            return Err(ReferenceError::AmbiguousImageId(s.to_string()));
        }
        let (registry, remainder) = split_registry(s);
        let remainder: &str = &remainder;

        // The digest follows the first '@'; nothing before it may contain one.
        let (name_and_tag, digest) = match remainder.split_once('@') {
            Some((before, d)) => (before, Some(parse_digest(s, d)?)),
            None => (remainder, None),
        };
        // Repository paths never contain ':', so the first one starts the tag.
        let (repository, tag) = match name_and_tag.split_once(':') {
            Some((repo, t)) => (repo, Some(t)),
            None => (name_and_tag, None),
        };

        check_registry(s, registry)?;
        check_repository(s, repository)?;
        if let Some(t) = tag {
            check_tag(s, t)?;
        }
        let full_len = registry.len() + 1 + repository.len();
        if full_len > NAME_MAX_LEN {
            return Err(ReferenceError::NameTooLong {
                name: format!("{registry}/{repository}"),
                len: full_len,
            });
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry host, with port if any: `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/busybox`, `a/b`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The full normalised name without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as Docker shows it: `busybox`, `user/app`, `localhost:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.registry != DOCKER_HUB {
            return self.name();
        }
        match self.repository.strip_prefix(OFFICIAL_PREFIX) {
            // `library/a/b` keeps its prefix: only one-element official names are shortened.
            Some(short) if !short.contains('/') => short.to_string(),
            _ => self.repository.clone(),
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same reference with `tag` (replacing any tag; a digest is kept, as Docker's `WithTag`).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        check_tag(&self.to_string(), tag)?;
        Ok(Reference { tag: Some(tag.to_string()), ..self.clone() })
    }

    /// The same reference pinned to `digest` (any tag is kept).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { digest: Some(digest), ..self.clone() }
    }

    /// The bare repository: no tag, no digest.
    pub fn without_tag_or_digest(&self) -> Reference {
        Reference { tag: None, digest: None, ..self.clone() }
    }

    /// Adds the `latest` tag when the reference names neither a tag nor a digest.
    pub fn with_default_tag(self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            Reference { tag: Some(DEFAULT_TAG.to_string()), ..self }
        } else {
            self
        }
    }

    /// The reference as Docker shows it: `busybox:latest`, `user/app@sha256:...`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

/// True for exactly 64 lower-case hex digits: Docker refuses these as names so they cannot be
/// confused with image IDs.
fn is_image_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits off the registry the way Docker's `splitDockerDomain` does, returning the normalised
/// registry and the rest (repository with tag and digest).
fn split_registry(s: &str) -> (&str, std::borrow::Cow<'_, str>) {
    use std::borrow::Cow;
    let (registry, rest) = match s.split_once('/') {
        // A single element is always a Docker Hub official image: `localhost:5000` alone is
        // the image `localhost` with tag `5000`, just as in Docker.
        None => return (DOCKER_HUB, Cow::Owned(format!("{OFFICIAL_PREFIX}{s}"))),
        Some((first, rest)) => {
            if first == "localhost" || first.contains(['.', ':']) || first.to_lowercase() != first {
                (first, rest)
            } else {
                (DOCKER_HUB, s)
            }
        }
    };
    let registry = if registry == LEGACY_DOCKER_HUB { DOCKER_HUB } else { registry };
    if registry == DOCKER_HUB && !rest.contains('/') {
        (registry, Cow::Owned(format!("{OFFICIAL_PREFIX}{rest}")))
    } else {
        (registry, Cow::Borrowed(rest))
    }
}

fn check_registry(reference: &str, registry: &str) -> Result<(), ReferenceError> {
    let bad = |reason| ReferenceError::InvalidRegistry {
        reference: reference.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let (host, port) = if let Some(inner) = registry.strip_prefix('[') {
        let (addr, after) =
            inner.split_once(']').ok_or_else(|| bad("an IPv6 address must be closed with ']'"))?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad("an IPv6 address may only contain hex digits and ':'"));
        }
        match after {
            "" => (addr, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return Err(bad("only ':port' may follow an IPv6 address")),
            },
        }
    } else {
        let (host, port) = match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        };
        for label in host.split('.') {
            if label.is_empty() {
                return Err(bad("the host name has an empty label"));
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(bad("a host name may only contain letters, digits, '-' and '.'"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a host name label must not start or end with '-'"));
            }
        }
        (host, port)
    };
    debug_assert!(!host.is_empty());
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the port must be a decimal number"));
        }
    }
    Ok(())
}

fn check_repository(reference: &str, repository: &str) -> Result<(), ReferenceError> {
    let bad = |reason| ReferenceError::InvalidName {
        reference: reference.to_string(),
        name: repository.to_string(),
        reason,
    };
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase {
            reference: reference.to_string(),
            name: repository.to_string(),
        });
    }
    for component in repository.split('/') {
        if component.is_empty() {
            return Err(bad("a path component is empty (leading, trailing or doubled '/')"));
        }
        check_path_component(component).map_err(bad)?;
    }
    Ok(())
}

/// `[a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*`
fn check_path_component(component: &str) -> Result<(), &'static str> {
    let is_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if component.chars().any(|c| !is_alnum(c) && !matches!(c, '.' | '_' | '-')) {
        return Err(
            "only lower-case letters, digits and the separators '.', '_', '__', '-' are allowed",
        );
    }
    if !component.starts_with(is_alnum) || !component.ends_with(is_alnum) {
        return Err("each path component must start and end with a lower-case letter or digit");
    }
    for separator in component.split(is_alnum).filter(|s| !s.is_empty()) {
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return Err("separators must be a single '.', one or two '_', or a run of '-'");
        }
    }
    Ok(())
}

fn check_tag(reference: &str, tag: &str) -> Result<(), ReferenceError> {
    let bad = |reason| ReferenceError::InvalidTag {
        reference: reference.to_string(),
        tag: tag.to_string(),
        reason,
    };
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.bytes().next() {
        None => return Err(bad("the tag is empty")),
        Some(b) if !word(b) => return Err(bad("a tag must start with a letter, digit or '_'")),
        Some(_) => {}
    }
    if !tag.bytes().all(|b| word(b) || b == b'.' || b == b'-') {
        return Err(bad("a tag may only contain letters, digits, '_', '.' and '-'"));
    }
    if tag.len() > TAG_MAX_LEN {
        return Err(bad("a tag must not be longer than 128 characters"));
    }
    Ok(())
}

fn parse_digest(reference: &str, digest: &str) -> Result<Digest, ReferenceError> {
    digest.parse().map_err(|source| ReferenceError::InvalidDigest {
        reference: reference.to_string(),
        digest: digest.to_string(),
        source,
    })
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;

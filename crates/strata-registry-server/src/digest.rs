//! Content digests as the distribution spec allows them: `sha256:<64 hex>` and
//! `sha512:<128 hex>`. (strata-oci's `Digest` is sha256-only, which suits the image store;
//! a registry must also accept sha512 content.)

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A valid digest; the two algorithms have different lengths, so the hex alone names one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form <algorithm>:<hex>")]
    Form(String),
    #[error("digest {0:?} uses an unsupported algorithm (sha256 and sha512 are supported)")]
    Algorithm(String),
    #[error("digest {0:?} must have {1} lower-case hex digits")]
    Hex(String, usize),
}

impl Digest {
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }

    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let hex = match algorithm {
            Algorithm::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
            Algorithm::Sha512 => hex::encode(sha2::Sha512::digest(bytes)),
        };
        Digest { algorithm, hex }
    }

    /// From a file name: 64 hex digits are sha256, 128 are sha512.
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        let algorithm = match hex.len() {
            64 => Algorithm::Sha256,
            128 => Algorithm::Sha512,
            _ => return Err(DigestError::Hex(hex.to_string(), 64)),
        };
        Digest::new(algorithm, hex, hex)
    }

    fn new(algorithm: Algorithm, hex: &str, whole: &str) -> Result<Digest, DigestError> {
        if hex.len() != algorithm.hex_len()
            || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Hex(whole.to_string(), algorithm.hex_len()));
        }
        Ok(Digest { algorithm, hex: hex.to_string() })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let (algo, hex) = s.split_once(':').ok_or_else(|| DigestError::Form(s.to_string()))?;
        let algorithm = match algo {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(DigestError::Algorithm(s.to_string())),
        };
        Digest::new(algorithm, hex, s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A streaming hasher for either algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => {
                Digest { algorithm: Algorithm::Sha256, hex: hex::encode(h.finalize()) }
            }
            Hasher::Sha512(h) => {
                Digest { algorithm: Algorithm::Sha512, hex: hex::encode(h.finalize()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_algorithms() {
        let a = Digest::sha256_of(b"x");
        assert_eq!(a.to_string().parse::<Digest>().unwrap(), a);
        let b = Digest::of(Algorithm::Sha512, b"x");
        assert_eq!(b.to_string().parse::<Digest>().unwrap(), b);
        assert_eq!(Digest::from_hex(b.hex()).unwrap(), b);
        assert!("md5:00".parse::<Digest>().is_err());
        assert!("sha256:AB".parse::<Digest>().is_err());
        assert!("sha512:".parse::<Digest>().is_err());
        assert!("nocolon".parse::<Digest>().is_err());
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"x");
        assert_eq!(h.finish(), b);
    }
}

//! Decompression-bomb limits: a layer may not expand past a size, nor by too large a factor.

/// Limits applied to the decompressed stream of a layer.
///
/// The ratio check only starts once `ratio_floor` decompressed bytes have been produced, so
/// small, highly compressible layers (a tar of empty files is mostly zero padding) pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fail once more than this many decompressed bytes have been produced.
    pub max_decompressed: Option<u64>,
    /// Fail once decompressed/compressed exceeds this (after `ratio_floor`).
    pub max_ratio: Option<u64>,
    /// Decompressed bytes below which the ratio is not checked.
    pub ratio_floor: u64,
}

impl Default for Limits {
    /// No size cap (the store decides how much disk a layer may use), and a ratio of 1000:1
    /// once past 1 GiB: deflate cannot exceed ~1032:1, so only zstd bombs and pathological
    /// inputs hit it, and real layers stay far below it.
    fn default() -> Self {
        Limits { max_decompressed: None, max_ratio: Some(1000), ratio_floor: 1 << 30 }
    }
}

impl Limits {
    /// No limits at all, for trusted input.
    pub fn unlimited() -> Self {
        Limits { max_decompressed: None, max_ratio: None, ratio_floor: 0 }
    }

    /// Checks the running totals; `compressed` is what has been pulled from the source.
    pub fn check(&self, decompressed: u64, compressed: u64) -> Result<(), LimitExceeded> {
        if let Some(limit) = self.max_decompressed {
            if decompressed > limit {
                return Err(LimitExceeded::Size { limit });
            }
        }
        if let Some(max_ratio) = self.max_ratio {
            if decompressed > self.ratio_floor && decompressed / compressed.max(1) > max_ratio {
                return Err(LimitExceeded::Ratio { decompressed, compressed, max_ratio });
            }
        }
        Ok(())
    }
}

/// A decompression limit was crossed; the stream was stopped there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error(
        "the layer decompresses to more than {limit} bytes, the configured maximum \
         (Limits::max_decompressed); raise it if this layer is trusted"
    )]
    Size { limit: u64 },
    #[error(
        "the layer expanded to {decompressed} bytes from only {compressed} compressed bytes, \
         a ratio above the configured {max_ratio}:1 (Limits::max_ratio): this looks like a \
         decompression bomb; raise the limit if this layer is trusted"
    )]
    Ratio { decompressed: u64, compressed: u64, max_ratio: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_ratio() {
        let l = Limits { max_decompressed: Some(100), max_ratio: Some(10), ratio_floor: 50 };
        assert!(l.check(100, 100).is_ok());
        assert_eq!(l.check(101, 100), Err(LimitExceeded::Size { limit: 100 }));
        // Below the floor a huge ratio is fine.
        assert!(l.check(50, 1).is_ok());
        assert!(l.check(60, 6).is_ok());
        assert!(matches!(l.check(60, 5), Err(LimitExceeded::Ratio { .. })));
        assert!(Limits::unlimited().check(u64::MAX, 0).is_ok());
    }
}

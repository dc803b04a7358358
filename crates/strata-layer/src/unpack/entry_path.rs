//! Lexical normalisation of tar entry names and hardlink targets.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::error::LayerError;

/// Whether a leading `/` is refused or read as "relative to the root".
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Absolute {
    /// Entry names: an absolute name is a sign of a hostile or broken tar.
    Refuse,
    /// Hardlink targets: interpreted inside the root, as Docker does.
    InRoot,
}

/// Splits `raw` into plain components: `.` and empty components dropped, `x/..` folded.
/// A `..` that would climb above the root is refused, naming `entry` (the entry's name).
pub(crate) fn normalize(
    raw: &[u8],
    entry: &str,
    what: &str,
    absolute: Absolute,
) -> Result<Vec<OsString>, LayerError> {
    if raw.is_empty() {
        return Err(LayerError::bad_entry(entry, format!("its {what} is empty")));
    }
    if raw[0] == b'/' && absolute == Absolute::Refuse {
        return Err(LayerError::unsafe_entry(
            entry,
            format!("its {what} is absolute; layer entries must be relative to the root"),
        ));
    }
    let mut out: Vec<OsString> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(LayerError::unsafe_entry(
                        entry,
                        format!(
                            "its {what} {:?} climbs out of the root with '..'",
                            String::from_utf8_lossy(raw)
                        ),
                    ));
                }
            }
            name => out.push(OsString::from_vec(name.to_vec())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<Vec<String>, String> {
        normalize(s.as_bytes(), s, "name", Absolute::Refuse)
            .map(|v| v.into_iter().map(|c| c.into_string().unwrap()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn folds_harmless_forms() {
        assert_eq!(norm("./a//b/./c/").unwrap(), ["a", "b", "c"]);
        assert_eq!(norm("a/../b").unwrap(), ["b"]);
        assert!(norm("./").unwrap().is_empty());
    }

    #[test]
    fn refuses_escapes() {
        assert!(norm("../x").unwrap_err().contains("climbs out of the root"));
        assert!(norm("a/../../x").unwrap_err().contains("climbs out of the root"));
        assert!(norm("/etc/passwd").unwrap_err().contains("absolute"));
        let inroot = normalize(b"/etc/passwd", "l", "hardlink target", Absolute::InRoot).unwrap();
        assert_eq!(inroot, ["etc", "passwd"]);
    }
}

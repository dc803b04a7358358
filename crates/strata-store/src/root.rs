//! Where the store lives: `$STRATA_ROOT`, else `/var/lib/strata` for root, else
//! `$XDG_DATA_HOME/strata` (`~/.local/share/strata`).

use std::path::PathBuf;

pub fn default_root() -> PathBuf {
    if let Some(root) = std::env::var_os("STRATA_ROOT").filter(|v| !v.is_empty()) {
        return PathBuf::from(root);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/strata");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("strata")
}

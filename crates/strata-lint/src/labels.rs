//! Value checks for the label schema (DL3048, DL3052-DL3056, DL3058).

/// Docker's label-key rules: lowercase alphanumerics, `.` and `-`, starting
/// and ending with an alphanumeric, no doubled separators, and none of the
/// namespaces Docker reserves for itself.
pub fn valid_label_key(key: &str) -> bool {
    let reserved = ["com.docker.", "io.docker.", "org.dockerproject."];
    if reserved.iter().any(|r| key.starts_with(r)) {
        return false;
    }
    let b = key.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    if !b.iter().all(|&c| alnum(c) || c == b'.' || c == b'-') {
        return false;
    }
    !(key.contains("..") || key.contains("--") || key.contains(".-") || key.contains("-."))
}

/// An absolute URL: `scheme://something`.
pub fn valid_url(v: &str) -> bool {
    let Some((scheme, rest)) = v.split_once("://") else { return false };
    let mut sc = scheme.chars();
    sc.next().is_some_and(|c| c.is_ascii_alphabetic())
        && sc.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !rest.starts_with('/')
        && !rest.chars().any(char::is_whitespace)
}

fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// An RFC 3339 date-time, e.g. `2021-03-10T10:26:33.564595127+01:00`.
pub fn valid_rfc3339(v: &str) -> bool {
    let (date, time) = match v.find(['T', 't', ' ']) {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => return false,
    };
    let d: Vec<&str> = date.split('-').collect();
    let (Some(_y), Some(m), Some(day)) = (
        d.first().and_then(|s| digits(s, 4)),
        d.get(1).and_then(|s| digits(s, 2)),
        d.get(2).and_then(|s| digits(s, 2)),
    ) else {
        return false;
    };
    if d.len() != 3 || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return false;
    }
    let (clock, zone) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, "")
    } else if let Some(i) = time.rfind(['+', '-']) {
        (&time[..i], &time[i..])
    } else {
        return false;
    };
    if !zone.is_empty() {
        let z = &zone[1..];
        let Some((h, m)) = z.split_once(':') else { return false };
        if digits(h, 2).is_none_or(|h| h > 23) || digits(m, 2).is_none_or(|m| m > 59) {
            return false;
        }
    }
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    if frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    let t: Vec<&str> = hms.split(':').collect();
    t.len() == 3
        && digits(t[0], 2).is_some_and(|h| h <= 23)
        && digits(t[1], 2).is_some_and(|m| m <= 59)
        && digits(t[2], 2).is_some_and(|s| s <= 60)
}

/// Commonly used SPDX license identifiers (a subset of the SPDX list; the
/// identifiers are facts, not creative content).
const SPDX_IDS: &[&str] = &[
    "0BSD",
    "AFL-3.0",
    "AGPL-1.0",
    "AGPL-3.0",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-1.0",
    "Apache-1.1",
    "Apache-2.0",
    "APSL-2.0",
    "Artistic-1.0",
    "Artistic-2.0",
    "BlueOak-1.0.0",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-2-Clause-Patent",
    "BSD-3-Clause",
    "BSD-3-Clause-Clear",
    "BSD-4-Clause",
    "BSL-1.0",
    "BUSL-1.1",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC-BY-NC-4.0",
    "CC0-1.0",
    "CDDL-1.0",
    "CDDL-1.1",
    "CECILL-2.1",
    "CPL-1.0",
    "ECL-2.0",
    "EFL-2.0",
    "EPL-1.0",
    "EPL-2.0",
    "EUPL-1.1",
    "EUPL-1.2",
    "GFDL-1.3",
    "GFDL-1.3-only",
    "GFDL-1.3-or-later",
    "GPL-1.0",
    "GPL-2.0",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "ISC",
    "LGPL-2.0",
    "LGPL-2.0-only",
    "LGPL-2.0-or-later",
    "LGPL-2.1",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "LPPL-1.3c",
    "MIT",
    "MIT-0",
    "MPL-1.1",
    "MPL-2.0",
    "MPL-2.0-no-copyleft-exception",
    "MS-PL",
    "MS-RL",
    "MulanPSL-2.0",
    "NCSA",
    "ODbL-1.0",
    "OFL-1.1",
    "OpenSSL",
    "OSL-3.0",
    "PHP-3.01",
    "PostgreSQL",
    "Python-2.0",
    "Ruby",
    "SSPL-1.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "UPL-1.0",
    "Vim",
    "W3C",
    "WTFPL",
    "X11",
    "Zlib",
    "ZPL-2.1",
    "Classpath-exception-2.0",
    "LLVM-exception",
    "GCC-exception-3.1",
];

fn spdx_id(s: &str) -> bool {
    let s = s.strip_suffix('+').unwrap_or(s);
    s.starts_with("LicenseRef-")
        || s.starts_with("DocumentRef-")
        || SPDX_IDS.iter().any(|id| id.eq_ignore_ascii_case(s))
}

/// An SPDX license expression: identifiers joined by AND, OR and WITH,
/// with optional parentheses.
pub fn valid_spdx(v: &str) -> bool {
    let spaced = v.replace('(', " ( ").replace(')', " ) ");
    let toks: Vec<&str> = spaced.split_whitespace().collect();
    if toks.is_empty() {
        return false;
    }
    let mut expect_id = true;
    let mut depth = 0i32;
    for t in toks {
        match t {
            "(" if expect_id => depth += 1,
            ")" if !expect_id => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            "AND" | "OR" | "WITH" | "and" | "or" | "with" if !expect_id => expect_id = true,
            id if expect_id && spdx_id(id) => expect_id = false,
            _ => return false,
        }
    }
    !expect_id && depth == 0
}

/// A git commit id: 7 to 40 hex digits (or 64 for SHA-256 repositories).
pub fn valid_git_hash(v: &str) -> bool {
    ((7..=40).contains(&v.len()) || v.len() == 64) && v.bytes().all(|b| b.is_ascii_hexdigit())
}

fn semver_num(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

fn semver_idents(s: &str) -> bool {
    s.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Semantic Versioning 2.0.0.
pub fn valid_semver(v: &str) -> bool {
    let (rest, build) = match v.split_once('+') {
        Some((a, b)) => (a, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| semver_num(p))
        && pre.is_none_or(semver_idents)
        && build.is_none_or(semver_idents)
}

/// A plain e-mail address `local@domain.tld` (RFC 5322 addr-spec without
/// comments or quoted local parts).
pub fn valid_email(v: &str) -> bool {
    let Some((local, domain)) = v.rsplit_once('@') else { return false };
    let local_ok = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert!(valid_label_key("org.valid-key.label3"));
        assert!(!valid_label_key("com.docker.label"));
        assert!(!valid_label_key("Maintainer"));
        assert!(valid_url("http://example.com") && !valid_url("not-url"));
        assert!(valid_rfc3339("2021-03-10T10:26:33.564595127+01:00"));
        assert!(valid_rfc3339("2021-03-10T10:26:33Z") && !valid_rfc3339("not-date"));
        assert!(valid_spdx("BSD-3-Clause") && valid_spdx("(MIT OR Apache-2.0)"));
        assert!(!valid_spdx("not-spdx") && !valid_spdx("MIT OR"));
        assert!(valid_git_hash("2dbfae9") && !valid_git_hash("not-git-hash"));
        assert!(valid_semver("1.0.0") && valid_semver("1.0.0-rc.1+b5"));
        assert!(!valid_semver("not-sem-ver") && !valid_semver("01.0.0"));
        assert!(valid_email("abcd@google.com") && !valid_email("not-email"));
    }
}

//! `.dockerignore`: reading the file and matching context paths the way
//! Docker and BuildKit do (moby/patternmatcher): patterns in order, the last
//! match wins, `!` re-includes, and a match on a parent directory excludes
//! everything inside it.

use std::path::{Path, PathBuf};

/// A pattern that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid .dockerignore pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// Read `.dockerignore` contents into the cleaned pattern list.
pub fn read_dockerignore(contents: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in contents.split('\n').enumerate() {
        let mut line = line.strip_suffix('\r').unwrap_or(line);
        if i == 0 {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        // A comment only when `#` is in column 0.
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = clean_path(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        if invert {
            cleaned.insert(0, '!');
        }
        out.push(cleaned);
    }
    out
}

/// The ignore file that applies to a Dockerfile: `<Dockerfile>.dockerignore`
/// beside it if that exists, else `.dockerignore` at the context root.
/// Returns `None` when neither exists.
pub fn find_ignore_file(dockerfile: &Path, context_root: &Path) -> Option<PathBuf> {
    if let Some(name) = dockerfile.file_name() {
        let mut specific = name.to_os_string();
        specific.push(".dockerignore");
        let candidate = dockerfile.with_file_name(specific);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    let root = context_root.join(".dockerignore");
    root.is_file().then_some(root)
}

/// Go's `filepath.Clean` for slash-separated paths.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(char),
    /// `*`: any run without `/`.
    Star,
    /// `?`: one character other than `/`.
    One,
    /// `[...]`: ranges, possibly negated; never matches `/`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` followed by more pattern: any number of leading segments.
    AnyDirs,
    /// `**` at the end: anything at all.
    AnyAll,
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The cleaned pattern text (without `!`).
    pub text: String,
    pub exclusion: bool,
    toks: Vec<Tok>,
    /// The pattern split on `/`, for deciding whether a directory may hold
    /// matches.
    segments: Vec<String>,
}

fn bad(pattern: &str, reason: &str) -> PatternError {
    PatternError { pattern: pattern.to_string(), reason: reason.to_string() }
}

/// Compile a glob as patternmatcher does, checking the syntax like Go's
/// `filepath.Match`.
fn compile(p: &str) -> Result<Vec<Tok>, PatternError> {
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => {
                if chars.get(i) == Some(&'*') {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i >= chars.len() {
                        toks.push(Tok::AnyAll);
                    } else {
                        toks.push(Tok::AnyDirs);
                    }
                } else {
                    toks.push(Tok::Star);
                }
            }
            '?' => toks.push(Tok::One),
            '\\' => {
                let Some(&n) = chars.get(i) else {
                    return Err(bad(p, "trailing backslash escapes nothing"));
                };
                i += 1;
                toks.push(Tok::Lit(n));
            }
            '[' => {
                let mut negated = false;
                if chars.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    match chars.get(i) {
                        None => return Err(bad(p, "unclosed character class '['")),
                        Some(']') if !ranges.is_empty() => {
                            i += 1;
                            break;
                        }
                        _ => {}
                    }
                    let lo = class_char(&chars, &mut i).ok_or_else(|| {
                        bad(p, "malformed character class (empty, or a bare '-' or ']')")
                    })?;
                    let mut hi = lo;
                    if chars.get(i) == Some(&'-') {
                        i += 1;
                        hi = class_char(&chars, &mut i)
                            .ok_or_else(|| bad(p, "malformed range in character class"))?;
                    }
                    ranges.push((lo, hi));
                }
                toks.push(Tok::Class { negated, ranges });
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

fn class_char(chars: &[char], i: &mut usize) -> Option<char> {
    let c = *chars.get(*i)?;
    if c == '-' || c == ']' {
        return None;
    }
    *i += 1;
    if c == '\\' {
        let n = *chars.get(*i)?;
        *i += 1;
        return Some(n);
    }
    Some(c)
}

/// Match tokens against a path. Memoised so that patterns full of stars
/// cannot take exponential time.
fn tok_match(toks: &[Tok], s: &[char]) -> bool {
    let mut memo = vec![None; (toks.len() + 1) * (s.len() + 1)];
    fn go(toks: &[Tok], s: &[char], ti: usize, si: usize, memo: &mut [Option<bool>]) -> bool {
        let key = ti * (s.len() + 1) + si;
        if let Some(v) = memo[key] {
            return v;
        }
        let r = match toks.get(ti) {
            None => si == s.len(),
            Some(Tok::Lit(c)) => s.get(si) == Some(c) && go(toks, s, ti + 1, si + 1, memo),
            Some(Tok::One) => {
                s.get(si).is_some_and(|c| *c != '/') && go(toks, s, ti + 1, si + 1, memo)
            }
            Some(Tok::Class { negated, ranges }) => {
                s.get(si).is_some_and(|c| {
                    *c != '/' && ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated
                }) && go(toks, s, ti + 1, si + 1, memo)
            }
            Some(Tok::Star) => {
                let mut j = si;
                loop {
                    if go(toks, s, ti + 1, j, memo) {
                        break true;
                    }
                    if j >= s.len() || s[j] == '/' {
                        break false;
                    }
                    j += 1;
                }
            }
            Some(Tok::AnyAll) => true,
            // `(.*/)?`: nothing, or anything ending in a slash.
            Some(Tok::AnyDirs) => {
                go(toks, s, ti + 1, si, memo)
                    || (si..s.len()).any(|j| s[j] == '/' && go(toks, s, ti + 1, j + 1, memo))
            }
        };
        memo[key] = Some(r);
        r
    }
    go(toks, s, 0, 0, &mut memo)
}

impl Pattern {
    /// Does this pattern match exactly `path` (not its parents)?
    pub fn matches_exact(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        tok_match(&self.toks, &chars)
    }

    /// Does the pattern match `path` or any of its parent directories?
    pub fn matches_or_parent(&self, path: &str) -> bool {
        if self.matches_exact(path) {
            return true;
        }
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            if self.matches_exact(&path[..end]) {
                return true;
            }
            end += 1;
        }
        false
    }

    /// Could something strictly inside directory `dir` match this pattern?
    /// Used to decide whether a walk must descend into a directory.
    pub fn may_match_inside(&self, dir: &str) -> bool {
        if self.text.contains("**") {
            return true;
        }
        let dir_segs: Vec<&str> = dir.split('/').collect();
        if self.segments.len() <= dir_segs.len() {
            return false;
        }
        dir_segs.iter().zip(&self.segments).all(|(d, p)| {
            compile(p).map(|t| tok_match(&t, &d.chars().collect::<Vec<_>>())).unwrap_or(false)
        })
    }
}

/// The compiled pattern list of a `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
    has_exclusions: bool,
}

impl IgnoreMatcher {
    /// Compile `patterns` (as returned by [`read_dockerignore`]).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<IgnoreMatcher, PatternError> {
        let mut out = Vec::new();
        let mut has_exclusions = false;
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let cleaned = clean_path(p);
            let (exclusion, text) = match cleaned.strip_prefix('!') {
                Some("") => {
                    return Err(bad(p, "illegal exclusion pattern: \"!\" needs a path after it"))
                }
                Some(rest) => (true, rest.to_string()),
                None => (false, cleaned.clone()),
            };
            has_exclusions |= exclusion;
            let toks = compile(&text)?;
            out.push(Pattern {
                segments: text.split('/').map(str::to_string).collect(),
                text,
                exclusion,
                toks,
            });
        }
        Ok(IgnoreMatcher { patterns: out, has_exclusions })
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Is `path` (slash-separated, relative to the context root) excluded?
    /// The path is matched as given, like patternmatcher does; callers pass
    /// clean relative paths.
    pub fn matches(&self, path: &str) -> bool {
        let mut matched = false;
        for p in &self.patterns {
            // Inclusions only matter while unmatched, exclusions while matched.
            if p.exclusion != matched {
                continue;
            }
            if p.matches_or_parent(path) {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// For an excluded directory: must a walk still look inside it because a
    /// later `!` pattern could re-include something there?
    pub fn must_descend(&self, dir: &str) -> bool {
        self.has_exclusions && self.patterns.iter().any(|p| p.exclusion && p.may_match_inside(dir))
    }

    /// What a context walker should do with an entry.
    pub fn walk_decision(&self, path: &str, is_dir: bool) -> WalkDecision {
        if !self.matches(path) {
            WalkDecision::Include
        } else if is_dir && self.must_descend(path) {
            WalkDecision::DescendOnly
        } else {
            WalkDecision::Skip
        }
    }
}

/// How a context walk treats one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkDecision {
    /// Send it (and for a directory, walk inside).
    Include,
    /// Excluded directory that may hold re-included entries: walk inside,
    /// and send the directory only if something inside is sent.
    DescendOnly,
    /// Excluded: skip it, and for a directory everything inside.
    Skip,
}

/// An entry of a tree being walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: String,
    pub is_dir: bool,
}

/// Filter a list of entries (any order) the way BuildKit's context transfer
/// walks them: sorted, directories before their contents, excluded
/// directories pruned unless a `!` pattern reaches inside, and parents of
/// re-included entries sent. `include` is a separate allow-list (as COPY
/// sources use); empty means everything.
pub fn filter_walk(
    entries: &[TreeEntry],
    exclude: &IgnoreMatcher,
    include: &[Pattern],
) -> Vec<TreeEntry> {
    let mut sorted: Vec<&TreeEntry> = entries.iter().collect();
    // Sorting by segments gives Go's filepath.Walk order.
    sorted.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    let mut out: Vec<TreeEntry> = Vec::new();
    // Directories that are pruned entirely.
    let mut pruned: Vec<String> = Vec::new();
    // Directories walked but not yet sent (sent when a child is sent).
    let mut pending: Vec<&TreeEntry> = Vec::new();
    for e in sorted {
        if pruned
            .iter()
            .any(|d| e.path.starts_with(d.as_str()) && e.path[d.len()..].starts_with('/'))
        {
            continue;
        }
        pending.retain(|p| e.path.starts_with(&p.path) && e.path[p.path.len()..].starts_with('/'));
        let mut decision = exclude.walk_decision(&e.path, e.is_dir);
        if decision == WalkDecision::Include && !include.is_empty() {
            let included = include.iter().any(|p| p.matches_or_parent(&e.path));
            if !included {
                decision = if e.is_dir && include.iter().any(|p| p.may_match_inside(&e.path)) {
                    WalkDecision::DescendOnly
                } else {
                    WalkDecision::Skip
                };
            }
        }
        match decision {
            WalkDecision::Include => {
                for p in pending.drain(..) {
                    out.push(p.clone());
                }
                out.push(e.clone());
            }
            WalkDecision::DescendOnly => pending.push(e),
            WalkDecision::Skip => {
                if e.is_dir {
                    pruned.push(e.path.clone());
                }
            }
        }
    }
    out
}

/// Compile include patterns (COPY source selectors).
pub fn compile_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Vec<Pattern>, PatternError> {
    Ok(IgnoreMatcher::new(patterns)?.patterns)
}

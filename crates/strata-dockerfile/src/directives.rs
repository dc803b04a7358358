//! Parser directives: the `# syntax=`, `# escape=` and `# check=` comments
//! that may only appear at the very top of a Dockerfile.

/// One parser directive found at the top of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lowercased name: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value, trimmed.
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

const VALID: &[&str] = &["syntax", "escape", "check"];

/// Split `<prefix> name = value` into its name and value, the way BuildKit's
/// directive regexp does (`^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`).
pub(crate) fn split_directive<'a>(line: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let is_re_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c');
    let rest = line.strip_prefix(prefix)?.trim_start_matches(is_re_space);
    let mut chars = rest.char_indices();
    let (_, first) = chars.next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let name_end = rest
        .char_indices()
        .find(|(_, c)| !c.is_ascii_alphanumeric())
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    let name = &rest[..name_end];
    let rest = rest[name_end..].trim_start_matches(is_re_space);
    let value =
        rest.strip_prefix('=')?.trim_start_matches(is_re_space).trim_end_matches(is_re_space);
    if value.is_empty() {
        return None;
    }
    Some((name, value))
}

/// Tracks the directive block while the parser reads lines: it ends at the
/// first line that is not a valid directive.
#[derive(Debug, Clone)]
pub(crate) struct DirectiveState {
    pub escape: char,
    pub done: bool,
    pub found: Vec<Directive>,
}

impl Default for DirectiveState {
    fn default() -> Self {
        DirectiveState { escape: '\\', done: false, found: Vec::new() }
    }
}

impl DirectiveState {
    /// Look at one line; returns an error message for a repeated directive or
    /// an invalid escape character.
    pub fn observe(&mut self, line: &str, line_no: usize) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let Some((name, value)) = split_directive(line, "#") else {
            self.done = true;
            return Ok(false);
        };
        let name = name.to_ascii_lowercase();
        if !VALID.contains(&name.as_str()) {
            self.done = true;
            return Ok(false);
        }
        if self.found.iter().any(|d| d.name == name) {
            return Err(format!("only one {name} parser directive can be used"));
        }
        if name == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(format!("invalid escape token '{other}' does not match ` or \\"))
                }
            };
        }
        self.found.push(Directive { name, value: value.to_string(), line: line_no });
        Ok(true)
    }
}

/// The result of looking for one directive with [`detect_directive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedDirective {
    /// The first word of the value (for `syntax`, the frontend image ref).
    pub reference: String,
    /// The whole value.
    pub cmdline: String,
    /// 1-based line it was found on.
    pub line: usize,
}

/// Find the `syntax` frontend of a Dockerfile as BuildKit's `DetectSyntax`
/// does: a `#` directive (after an optional `#!` line), a `//` directive, or a
/// leading JSON object with a `"syntax"` key.
pub fn detect_syntax(src: &str) -> Option<DetectedDirective> {
    detect_directive("syntax", src)
}

/// Find directive `key` at the top of `src`. Only `syntax` may also use the
/// `//` and JSON spellings.
pub fn detect_directive(key: &str, src: &str) -> Option<DetectedDirective> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let (body, line0) = match src.strip_prefix("#!") {
        Some(rest) => match rest.find('\n') {
            Some(i) => (&rest[i + 1..], 1),
            None => ("", 1),
        },
        None => (src, 0),
    };
    let prefixes: &[&str] = if key == "syntax" { &["#", "//"] } else { &["#"] };
    for prefix in prefixes {
        let mut seen_ok = Vec::new();
        for (i, line) in body.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let Some((name, value)) = split_directive(line, prefix) else {
                break;
            };
            let name = name.to_ascii_lowercase();
            if !VALID.contains(&name.as_str()) || seen_ok.contains(&name) {
                break;
            }
            if name == key {
                let reference = value.split(' ').next().unwrap_or("").to_string();
                return Some(DetectedDirective {
                    reference,
                    cmdline: value.to_string(),
                    line: line0 + i + 1,
                });
            }
            seen_ok.push(name);
        }
    }
    if key == "syntax" {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body)
        {
            if let Some(serde_json::Value::String(v)) = map.get(key) {
                return Some(DetectedDirective {
                    reference: v.clone(),
                    cmdline: v.clone(),
                    line: line0 + 1,
                });
            }
        }
    }
    None
}

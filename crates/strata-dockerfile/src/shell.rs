//! The shell-word expander: BuildKit's subset of POSIX parameter expansion,
//! quoting and word splitting, used for ARG/ENV substitution in instructions.
//!
//! This is not a shell: there is no command substitution, globbing or
//! arithmetic. It implements exactly what Dockerfile authors can rely on with
//! BuildKit, so that `$VAR` means the same thing under Strata.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShellError {
    /// Human-readable reason, in BuildKit's wording where it has one.
    pub message: String,
}

impl ShellError {
    fn new(message: impl Into<String>) -> Self {
        ShellError { message: message.into() }
    }
}

/// Where variable values come from during expansion.
pub trait Env {
    /// The value of `name`, or `None` if it is unset (an empty value is set).
    fn lookup(&self, name: &str) -> Option<String>;
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// `KEY=VALUE` pairs where the last occurrence of a key wins, as in a process
/// environment.
impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<String> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.as_slice().lookup(name)
    }
}

/// An environment where every variable is unset.
pub struct NoEnv;

impl Env for NoEnv {
    fn lookup(&self, _name: &str) -> Option<String> {
        None
    }
}

/// The full result of expanding a word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded text as one string (what `ProcessWord` returns).
    pub result: String,
    /// The expanded text split into words (what `ProcessWords` returns).
    pub words: Vec<String>,
    /// Variables that were referenced and found.
    pub matched: BTreeSet<String>,
    /// Variables that were referenced but unset.
    pub unmatched: BTreeSet<String>,
}

/// The expander, configured like BuildKit's `shell.Lex`.
#[derive(Debug, Clone, Copy)]
pub struct ShellLex {
    /// The escape character: `\` by default, or `` ` `` from `# escape=`.
    pub escape: char,
    /// Keep quote characters in the output (used to find heredoc words).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables in the text unexpanded.
    pub skip_unset_env: bool,
}

impl Default for ShellLex {
    fn default() -> Self {
        ShellLex::new('\\')
    }
}

impl ShellLex {
    pub fn new(escape: char) -> Self {
        ShellLex { escape, raw_quotes: false, raw_escapes: false, skip_unset_env: false }
    }

    /// Expand `word` into a single string; never split.
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ShellError> {
        Ok(self.process_word_with_matches(word, env)?.result)
    }

    /// Expand `word` and split the result on unquoted whitespace.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ShellError> {
        Ok(self.process_word_with_matches(word, env)?.words)
    }

    /// Expand `word`, also reporting which variables were found and which not.
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<Expansion, ShellError> {
        let mut w = Worker {
            lex: self,
            chars: word.chars().collect(),
            pos: 0,
            env,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        let (result, words) = w.process_stop_on(None, self.raw_escapes)?;
        Ok(Expansion { result, words, matched: w.matched, unmatched: w.unmatched })
    }
}

/// Builds the word list while the expander walks the input. Text that came
/// from quotes or escapes is "raw" and never splits; other text splits on
/// whitespace.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Worker<'a> {
    lex: &'a ShellLex,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

/// Special parameters (`$@`, `$#`, ...) are recognised as names but are never
/// set in a Dockerfile.
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

impl Worker<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v)
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    /// Process input until `stop` (or the end when `stop` is `None`).
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '\'' => {
                    let s = self.process_single_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '"' => {
                    let s = self.process_double_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '$' => {
                    let s = self.process_dollar()?;
                    result.push_str(&s);
                    words.add_string(&s);
                }
                _ => {
                    self.next();
                    if ch == self.lex.escape {
                        if raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // A lone escape at the very end is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(ShellError::new(format!(
                "unexpected end of statement while looking for matching {stop}"
            )));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, ShellError> {
        // Everything up to the next ' is literal: no escapes, no expansion.
        let mut s = String::new();
        self.next();
        if self.lex.raw_quotes {
            s.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(ShellError::new(
                        "unexpected end of statement while looking for matching single-quote",
                    ))
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        s.push('\'');
                    }
                    return Ok(s);
                }
                Some(ch) => s.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ShellError> {
        // Only `$`, `"` and the escape character itself are special inside "".
        let mut s = String::new();
        self.next();
        if self.lex.raw_quotes {
            s.push('"');
        }
        loop {
            let Some(ch) = self.peek() else {
                return Err(ShellError::new(
                    "unexpected end of statement while looking for matching double-quote",
                ));
            };
            match ch {
                '"' => {
                    self.next();
                    if self.lex.raw_quotes {
                        s.push('"');
                    }
                    return Ok(s);
                }
                '$' => {
                    let v = self.process_dollar()?;
                    s.push_str(&v);
                }
                _ => {
                    self.next();
                    if ch == self.lex.escape {
                        match self.peek() {
                            // An escape right before the end is ignored; the
                            // missing quote is reported on the next turn.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                self.next();
                                s.push(n);
                                continue;
                            }
                            Some(_) => {}
                        }
                    }
                    s.push(ch);
                }
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                // Positional parameters: all the digits form the name.
                while let Some(d) = self.peek().filter(|c| c.is_ascii_digit()) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }

    fn process_dollar(&mut self) -> Result<String, ShellError> {
        self.next(); // the '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // the '{'
        if self.peek().is_none() {
            return Err(ShellError::new("syntax error: missing '}'"));
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err(ShellError::new("syntax error: missing '}'"));
        };
        if name.is_empty() {
            return Err(ShellError::new(format!(
                "bad substitution: a variable name is required before '{ch}'"
            )));
        }
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            '/' => self.process_replace(&name),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                let mut modifier = ch.to_string();
                let op = if null_is_unset {
                    let Some(op) = self.next() else {
                        return Err(ShellError::new("syntax error: missing '}'"));
                    };
                    modifier.push(op);
                    op
                } else {
                    ch
                };
                let raw = op == '#' || op == '%';
                if null_is_unset && raw {
                    return Err(ShellError::new(format!(
                        "unsupported modifier ({modifier}) in substitution"
                    )));
                }
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err(ShellError::new("syntax error: missing '}'"));
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                if value.is_none() && self.lex.skip_unset_env {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let empty_or_unset = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match op {
                    '-' => Ok(if empty_or_unset { word } else { value.unwrap_or_default() }),
                    '+' => Ok(if empty_or_unset { String::new() } else { word }),
                    '?' => match value {
                        None => Err(ShellError::new(format!(
                            "{name}: {}",
                            if word.is_empty() { "is not allowed to be unset" } else { &word }
                        ))),
                        Some(v) if null_is_unset && v.is_empty() => Err(ShellError::new(format!(
                            "{name}: {}",
                            if word.is_empty() { "is not allowed to be empty" } else { &word }
                        ))),
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let (greedy, pat) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let pattern = Pattern::parse(pat);
                        let value = value.unwrap_or_default();
                        Ok(if op == '#' {
                            pattern.trim_prefix(&value, greedy)
                        } else {
                            pattern.trim_suffix(&value, greedy)
                        })
                    }
                    _ => Err(ShellError::new(format!(
                        "unsupported modifier ({modifier}) in substitution"
                    ))),
                }
            }
            other => {
                Err(ShellError::new(format!("unsupported modifier ({other}) in substitution")))
            }
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn process_replace(&mut self, name: &str) -> Result<String, ShellError> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((p, _)) => p,
            // Ran off the end: say what is missing rather than the inner error.
            Err(_) if self.peek().is_none() => {
                return Err(ShellError::new("syntax error: missing '/' in ${}"));
            }
            Err(e) => return Err(e),
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((r, _)) => r,
            Err(_) if self.peek().is_none() => {
                return Err(ShellError::new("syntax error: missing '}'"));
            }
            Err(e) => return Err(e),
        };
        let value = self.get_env(name);
        let Some(value) = value else {
            if self.lex.skip_unset_env {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        Ok(Pattern::parse(&pattern).replace(&value, &replacement, all))
    }
}

/// One element of a `${v#pattern}` style shell pattern.
#[derive(Debug, Clone, PartialEq)]
enum PatTok {
    Lit(char),
    AnyOne,
    AnyRun,
}

/// A shell pattern with `*`, `?` and `\`-escapes. Like BuildKit (which turns
/// these into Go regexps), wildcards never match a newline.
#[derive(Debug, Clone)]
struct Pattern(Vec<PatTok>);

impl Pattern {
    fn parse(src: &str) -> Pattern {
        let mut toks = Vec::new();
        let mut it = src.chars();
        while let Some(c) = it.next() {
            toks.push(match c {
                '*' => PatTok::AnyRun,
                '?' => PatTok::AnyOne,
                // A trailing backslash has nothing to escape: keep it literal.
                '\\' => PatTok::Lit(it.next().unwrap_or('\\')),
                c => PatTok::Lit(c),
            });
        }
        Pattern(toks)
    }

    /// Does the pattern match all of `s`? Iterative glob matching with one
    /// backtrack point, so it is linear-ish and cannot blow the stack.
    fn matches(&self, s: &[char]) -> bool {
        let p = &self.0;
        let (mut pi, mut si) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match p.get(pi) {
                Some(PatTok::AnyRun) => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                Some(PatTok::AnyOne) if s[si] != '\n' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                Some(PatTok::Lit(c)) if *c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                // The star may absorb one more character unless it is a newline.
                Some((sp, ss)) if s[ss] != '\n' => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                _ => return false,
            }
        }
        p[pi..].iter().all(|t| *t == PatTok::AnyRun)
    }

    fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut lens: Vec<usize> = (0..=chars.len()).collect();
        if longest {
            lens.reverse();
        }
        for n in lens {
            if self.matches(&chars[..n]) {
                return chars[n..].iter().collect();
            }
        }
        value.to_string()
    }

    fn trim_suffix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut starts: Vec<usize> = (0..=chars.len()).collect();
        if !longest {
            starts.reverse();
        }
        for start in starts {
            if self.matches(&chars[start..]) {
                return chars[..start].iter().collect();
            }
        }
        value.to_string()
    }

    /// Leftmost, longest match starting at or after `from`.
    fn find(&self, chars: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=chars.len()).find_map(|start| {
            (start..=chars.len())
                .rev()
                .find(|&end| self.matches(&chars[start..end]))
                .map(|end| (start, end))
        })
    }

    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut pos = 0;
        let mut prev_end: Option<usize> = None;
        while pos <= chars.len() {
            let Some((s, e)) = self.find(&chars, pos) else {
                break;
            };
            // As with Go's ReplaceAll, an empty match right after the
            // previous match is skipped.
            if s == e && prev_end == Some(s) {
                if s < chars.len() {
                    out.push(chars[s]);
                }
                pos = s + 1;
                continue;
            }
            out.extend(&chars[pos..s]);
            out.push_str(replacement);
            prev_end = Some(e);
            if !all {
                pos = e;
                out.extend(&chars[pos..]);
                return out;
            }
            if e == s {
                if s < chars.len() {
                    out.push(chars[s]);
                }
                pos = s + 1;
            } else {
                pos = e;
            }
        }
        if pos < chars.len() {
            out.extend(&chars[pos..]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn replace_all_with_empty_pattern_inserts_between_chars() {
        let lex = ShellLex::default();
        let e = env(&[("FOO", "ab"), ("BAR", "")]);
        assert_eq!(lex.process_word("${FOO//$BAR/-}", &e).unwrap(), "-a-b-");
    }

    #[test]
    fn backtick_escape_changes_quoting() {
        let lex = ShellLex::new('`');
        let e = env(&[("A", "x")]);
        assert_eq!(lex.process_word("`$A\\n", &e).unwrap(), "$A\\n");
    }

    #[test]
    fn skip_unset_env_keeps_reference() {
        let lex = ShellLex { skip_unset_env: true, ..ShellLex::default() };
        assert_eq!(lex.process_word("a${B:-c}$D", &NoEnv).unwrap(), "a${B:-c}$D");
    }
}

//! A small POSIX-shell command splitter for linting RUN instructions.
//!
//! It does not execute or expand anything: it splits a script into simple
//! commands on `&&`, `||`, `;`, `|`, `&` and newlines, honours single and
//! double quotes, backslash escapes and line continuations, skips comments,
//! and drops shell keywords (`if`, `then`, `do`, ...) and leading variable
//! assignments so that each [`Command`] starts with the program name.

/// How a command is joined to the one after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sep {
    And,
    Or,
    Pipe,
    Seq,
    Background,
    End,
}

/// One simple command: program name and its arguments, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub args: Vec<String>,
    /// The separator that follows this command.
    pub sep: Sep,
}

impl Command {
    /// Arguments that are not options (do not start with `-`).
    pub fn positionals(&self) -> impl Iterator<Item = &str> {
        self.args.iter().map(String::as_str).filter(|a| !a.starts_with('-'))
    }

    /// Is there a flag among `names`? Long flags match exactly or as
    /// `--flag=value`; single-letter flags also match inside a cluster
    /// (`-yq` holds `-y`).
    pub fn has_flag(&self, names: &[&str]) -> bool {
        self.args.iter().any(|a| flag_matches(a, names))
    }

    /// The first positional argument (often a subcommand).
    pub fn subcommand(&self) -> Option<&str> {
        self.positionals().next()
    }

    /// The program name without a directory (`/usr/bin/pip` -> `pip`).
    pub fn base_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }
}

/// Does `arg` match any flag in `names` (e.g. `["-y", "--yes"]`)?
pub fn flag_matches(arg: &str, names: &[&str]) -> bool {
    if arg == "--" || !arg.starts_with('-') {
        return false;
    }
    names.iter().any(|n| {
        if n.starts_with("--") {
            arg == *n || arg.strip_prefix(n).is_some_and(|r| r.starts_with('='))
        } else if n.len() == 2 && !arg.starts_with("--") {
            let c = n.as_bytes()[1] as char;
            arg[1..].chars().take_while(|ch| ch.is_ascii_alphabetic()).any(|ch| ch == c)
        } else {
            arg == *n || arg.strip_prefix(n).is_some_and(|r| r.starts_with('='))
        }
    })
}

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "(", ")",
    "case", "esac", "for", "in",
];

/// Words of a script with operators as separate tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Op(Sep),
}

fn tokenize(src: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let flush = |cur: &mut String, in_word: &mut bool, toks: &mut Vec<Tok>| {
        if *in_word {
            toks.push(Tok::Word(std::mem::take(cur)));
            *in_word = false;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                if chars.get(i + 1) == Some(&'\n') {
                    i += 2;
                    continue;
                }
                if let Some(&n) = chars.get(i + 1) {
                    cur.push(n);
                    in_word = true;
                    i += 2;
                    continue;
                }
                i += 1;
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    cur.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        let n = chars[i + 1];
                        if n == '\n' {
                            i += 2;
                            continue;
                        }
                        if matches!(n, '"' | '\\' | '$' | '`') {
                            cur.push(n);
                            i += 2;
                            continue;
                        }
                    }
                    cur.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                // Command substitution: keep it inside the word, balanced.
                in_word = true;
                let mut depth = 0usize;
                while i < chars.len() {
                    let ch = chars[i];
                    cur.push(ch);
                    if ch == '(' {
                        depth += 1;
                    } else if ch == ')' {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    i += 1;
                }
            }
            '`' => {
                in_word = true;
                cur.push(c);
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    cur.push(chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    cur.push('`');
                }
                i += 1;
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ' ' | '\t' | '\r' => {
                flush(&mut cur, &mut in_word, &mut toks);
                i += 1;
            }
            '\n' | ';' => {
                flush(&mut cur, &mut in_word, &mut toks);
                if c == ';' && chars.get(i + 1) == Some(&';') {
                    i += 1;
                }
                toks.push(Tok::Op(Sep::Seq));
                i += 1;
            }
            '&' => {
                if chars.get(i + 1) == Some(&'&') {
                    flush(&mut cur, &mut in_word, &mut toks);
                    toks.push(Tok::Op(Sep::And));
                    i += 2;
                } else if in_word && (cur.ends_with('>') || cur.ends_with('<')) {
                    // Redirection such as 2>&1.
                    cur.push(c);
                    i += 1;
                } else if chars.get(i + 1) == Some(&'>') {
                    // &> file
                    flush(&mut cur, &mut in_word, &mut toks);
                    cur.push_str("&>");
                    in_word = true;
                    i += 2;
                } else {
                    flush(&mut cur, &mut in_word, &mut toks);
                    toks.push(Tok::Op(Sep::Background));
                    i += 1;
                }
            }
            '|' => {
                flush(&mut cur, &mut in_word, &mut toks);
                if chars.get(i + 1) == Some(&'|') {
                    toks.push(Tok::Op(Sep::Or));
                    i += 2;
                } else {
                    toks.push(Tok::Op(Sep::Pipe));
                    i += 1;
                }
            }
            '(' | ')' if !in_word => {
                toks.push(Tok::Op(Sep::Seq));
                i += 1;
            }
            _ => {
                cur.push(c);
                in_word = true;
                i += 1;
            }
        }
    }
    flush(&mut cur, &mut in_word, &mut toks);
    toks
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// Is `w` a redirection word such as `>/dev/null`, `2>&1` or `>`?
fn is_redirect(w: &str) -> bool {
    let t = w.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&');
    t.starts_with('>') || t.starts_with('<')
}

/// Split a shell script into simple commands.
pub fn split(src: &str) -> Vec<Command> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let finish = |words: &mut Vec<String>, sep: Sep, out: &mut Vec<Command>| {
        let mut ws: Vec<String> = std::mem::take(words);
        // Drop redirections (and the file word after a bare operator).
        let mut cleaned = Vec::with_capacity(ws.len());
        let mut skip_next = false;
        for w in ws.drain(..) {
            if skip_next {
                skip_next = false;
                continue;
            }
            if is_redirect(&w) {
                let t = w.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&');
                let t = t.trim_start_matches(['>', '<', '&']);
                if t.is_empty() {
                    skip_next = true;
                }
                continue;
            }
            cleaned.push(w);
        }
        let mut it = cleaned.into_iter().peekable();
        while let Some(w) = it.peek() {
            if KEYWORDS.contains(&w.as_str()) || is_assignment(w) {
                it.next();
            } else {
                break;
            }
        }
        let rest: Vec<String> = it.collect();
        if let Some((name, args)) = rest.split_first() {
            out.push(Command { name: name.clone(), args: args.to_vec(), sep });
        } else if let Some(last) = out.last_mut() {
            if sep != Sep::Seq {
                last.sep = sep;
            }
        }
    };
    for t in tokenize(src) {
        match t {
            Tok::Word(w) => words.push(w),
            Tok::Op(sep) => finish(&mut words, sep, &mut out),
        }
    }
    finish(&mut words, Sep::End, &mut out);
    out
}

/// Commands with wrappers removed: `sudo apt-get ...` also yields
/// `apt-get ...`, so rules about the wrapped program still apply.
pub fn unwrap(cmds: &[Command]) -> Vec<Command> {
    let mut out = Vec::with_capacity(cmds.len());
    for c in cmds {
        let mut cur = c.clone();
        loop {
            let base = cur.base_name().to_string();
            let wrapper = matches!(
                base.as_str(),
                "sudo"
                    | "env"
                    | "exec"
                    | "time"
                    | "nohup"
                    | "nice"
                    | "command"
                    | "gosu"
                    | "su-exec"
            );
            if !wrapper {
                break;
            }
            let mut args = cur.args.iter();
            let mut next_name = None;
            // gosu/su-exec take a user first.
            let mut need_user = matches!(base.as_str(), "gosu" | "su-exec");
            for a in args.by_ref() {
                if a.starts_with('-') || is_assignment(a) {
                    continue;
                }
                if need_user {
                    need_user = false;
                    continue;
                }
                next_name = Some(a.clone());
                break;
            }
            match next_name {
                Some(n) => {
                    cur = Command { name: n, args: args.cloned().collect(), sep: cur.sep };
                }
                None => break,
            }
        }
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<String> {
        split(s).into_iter().map(|c| c.name).collect()
    }

    #[test]
    fn splits_operators() {
        assert_eq!(names("a && b || c; d | e & f"), ["a", "b", "c", "d", "e", "f"]);
        let c = split("a | b");
        assert_eq!(c[0].sep, Sep::Pipe);
    }

    #[test]
    fn quotes_and_continuations() {
        let c = split("apt-get install -y \\\n  'foo bar' \"baz\\\"q\"");
        assert_eq!(c[0].args, ["install", "-y", "foo bar", "baz\"q"]);
        assert_eq!(names("echo 'a && b' && ls"), ["echo", "ls"]);
    }

    #[test]
    fn keywords_assignments_comments_redirects() {
        assert_eq!(names("if true; then FOO=1 apt-get x; fi"), ["true", "apt-get"]);
        assert_eq!(names("# c && x\nls"), ["ls"]);
        let c = split("curl x > /dev/null 2>&1");
        assert_eq!(c[0].args, ["x"]);
        assert_eq!(names("a $(b && c) && d"), ["a", "d"]);
    }

    #[test]
    fn flags() {
        let c = &split("apt-get -yqq install x")[0];
        assert!(c.has_flag(&["-y", "--yes"]));
        assert!(!c.has_flag(&["--no-install-recommends"]));
        let u = unwrap(&split("sudo -E apt-get install x"));
        assert_eq!(u[0].name, "apt-get");
    }
}

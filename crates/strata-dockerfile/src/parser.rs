//! The line-level Dockerfile parser: directives, continuation lines,
//! comments, heredoc bodies and the per-instruction argument shapes, giving
//! the same tree as BuildKit's `parser.Parse` plus a source span on every node.

use std::sync::Arc;

use crate::diagnostics::{Diag, LineIndex, SourceFile, Span};
use crate::directives::{Directive, DirectiveState};
use crate::heredoc::{heredocs_from_line, Heredoc};

/// BuildKit reads lines with a 64 KiB scanner buffer.
pub const MAX_LINE_LEN: usize = 65535;

/// One instruction as written, before typing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword in lowercase (`from`, `run`, ...).
    pub keyword: String,
    /// The keyword as written, for casing checks and messages.
    pub keyword_as_written: String,
    /// The whole logical line, continuation lines joined.
    pub original: String,
    /// Leading `--flag` words, quotes removed.
    pub flags: Vec<String>,
    /// Argument nodes, in BuildKit's shape for this instruction (see the
    /// README of the parser test vectors).
    pub args: Vec<String>,
    /// ONBUILD's nested instruction.
    pub sub: Option<Box<Node>>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    /// Comment lines right above the instruction (for stage/arg descriptions).
    pub comments: Vec<String>,
    pub start_line: usize,
    pub end_line: usize,
    /// From the first character of the keyword to the end of the last line.
    pub span: Span,
}

impl Node {
    /// BuildKit's `Node.Dump` format, e.g. `(copy ["--from=a"] "x" "/y")`.
    pub fn dump(&self) -> String {
        let mut s = String::from("(");
        s.push_str(&self.keyword);
        if !self.flags.is_empty() {
            s.push_str(" [");
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&quoted.join(" "));
            s.push(']');
        }
        if let Some(sub) = &self.sub {
            s.push(' ');
            s.push_str(&sub.dump());
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(a));
        }
        s.push(')');
        s
    }
}

/// Go's `strconv.Quote`, which the dump format uses.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A parsed Dockerfile at the syntax level.
#[derive(Debug, Clone)]
pub struct Ast {
    pub source: SourceFile,
    pub directives: Vec<Directive>,
    /// `\` or `` ` ``.
    pub escape: char,
    pub nodes: Vec<Node>,
    /// Things BuildKit's parser warns about (empty continuation lines).
    pub warnings: Vec<Diag>,
    /// First and last line holding an instruction.
    pub start_line: usize,
    pub end_line: usize,
}

impl Ast {
    /// The whole tree in BuildKit's `result` format, one line per instruction.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            s.push_str(&n.dump());
            s.push('\n');
        }
        s
    }
}

/// A physical line of the file.
struct Line<'a> {
    /// Without the line terminator (`\n` or `\r\n`).
    text: &'a str,
    /// With its terminator, for heredoc bodies.
    full: &'a str,
    offset: usize,
    number: usize,
}

fn split_lines(src: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut offset = 0;
    for (i, full) in src.split_inclusive('\n').enumerate() {
        let text = full.trim_end_matches(['\r', '\n']);
        lines.push(Line { text, full, offset, number: i + 1 });
        offset += full.len();
    }
    lines
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// If `line` ends with an unescaped escape character (optionally followed by
/// blanks), remove it and say the instruction continues.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape) {
        if !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

/// Parse a Dockerfile. `name` is used in diagnostics.
pub fn parse(name: &str, src: &str) -> Result<Ast, Diag> {
    let source = SourceFile::new(name, Arc::<str>::from(src));
    parse_source(source)
}

fn parse_source(source: SourceFile) -> Result<Ast, Diag> {
    let text = source.text.clone();
    let src: &str = &text;
    let lines = split_lines(src);
    let index = LineIndex::new(src);
    let err = |msg: String, start: usize, end: usize| -> Diag {
        Diag::error("dockerfile::parse", msg).at(index.span(src, start, end)).in_file(&source)
    };

    if let Some(l) = lines.iter().find(|l| l.text.len() > MAX_LINE_LEN) {
        return Err(err(
            format!("dockerfile line greater than max allowed size of {MAX_LINE_LEN}"),
            l.offset,
            l.offset,
        )
        .with_label("this line is too long"));
    }

    let mut d = DirectiveState::default();
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        let mut text = line.text;
        let mut offset = line.offset;
        if i == 0 {
            if let Some(t) = text.strip_prefix('\u{feff}') {
                text = t;
                offset += 3;
            }
        }
        i += 1;
        let stripped = text.trim_start();
        offset += text.len() - stripped.len();
        let is_directive = d
            .observe(stripped, line.number)
            .map_err(|m| err(m, offset, offset + stripped.len()))?;
        if is_comment(stripped) {
            let c = stripped[1..].trim();
            // An empty `#` line ends a comment block; directives are not
            // comments of the first instruction.
            if c.is_empty() {
                comments.clear();
            } else if !is_directive {
                comments.push(c.to_string());
            }
            continue;
        }
        if stripped.is_empty() {
            // Like BuildKit, blank lines do not end a comment block; only an
            // empty `#` line or an instruction does.
            continue;
        }
        let start_offset = offset;
        let start_line = line.number;
        let (first, mut end_of_line) = trim_continuation(stripped, d.escape);
        let mut buf = first.to_string();
        let mut end_offset = line.offset + line.text.len();
        let mut end_line = line.number;
        let mut empty_continuation = false;
        while !end_of_line && i < lines.len() {
            let l = &lines[i];
            i += 1;
            d.observe(l.text, l.number).map_err(|m| err(m, l.offset, l.offset + l.text.len()))?;
            end_line = l.number;
            end_offset = l.offset + l.text.len();
            if is_comment(l.text) {
                continue;
            }
            if l.text.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (c, eol) = trim_continuation(l.text, d.escape);
            buf.push_str(c);
            end_of_line = eol;
        }
        if buf.trim().is_empty() {
            continue;
        }
        let span = index.span(src, start_offset, end_offset);
        if empty_continuation {
            warnings.push(
                Diag::warning(
                    "NoEmptyContinuation",
                    format!("Empty continuation line found in: {buf}"),
                )
                .with_label("empty continuation line in this instruction")
                .with_help("Empty continuation lines will become errors in a future release")
                .with_url("https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/")
                .at(span)
                .in_file(&source),
            );
        }
        let mut node = node_from_line(&buf, d.escape).map_err(|m| {
            let mut e = err(m.message, start_offset, end_offset);
            if let Some(h) = m.help {
                e = e.with_help(h);
            }
            e
        })?;
        node.comments = std::mem::take(&mut comments);
        node.start_line = start_line;
        node.span = span;

        if can_contain_heredoc(&node) && buf.contains("<<") {
            let docs =
                heredocs_from_line(&buf).map_err(|e| err(e.message, start_offset, end_offset))?;
            let target = match &mut node.sub {
                Some(sub) => sub.as_mut(),
                None => &mut node,
            };
            for mut doc in docs {
                let mut terminated = false;
                while i < lines.len() {
                    let l = &lines[i];
                    i += 1;
                    end_line = l.number;
                    end_offset = l.offset + l.text.len();
                    let candidate =
                        if doc.chomp { l.text.trim_start_matches('\t') } else { l.text };
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(l.full);
                }
                if !terminated {
                    return Err(err("unterminated heredoc".to_string(), start_offset, end_offset)
                        .with_label(format!("heredoc `{}` starts here", doc.name))
                        .with_help(format!(
                            "end the heredoc with a line holding only `{}`",
                            doc.name
                        )));
                }
                target.heredocs.push(doc);
            }
            node.span = index.span(src, start_offset, end_offset);
        }
        node.end_line = end_line;
        if let Some(sub) = &mut node.sub {
            sub.start_line = node.start_line;
            sub.end_line = end_line;
            sub.span = node.span;
        }
        nodes.push(node);
    }

    if nodes.is_empty() {
        let end = src.len();
        return Err(err("file with no instructions".to_string(), end, end)
            .with_label("expected an instruction such as FROM")
            .with_help("a Dockerfile needs at least a FROM instruction"));
    }
    Ok(Ast {
        start_line: nodes[0].start_line,
        end_line: nodes.last().map(|n| n.end_line).unwrap_or(0),
        directives: d.found,
        escape: d.escape,
        nodes,
        warnings,
        source,
    })
}

fn can_contain_heredoc(node: &Node) -> bool {
    let n = match &node.sub {
        Some(sub) if node.keyword == "onbuild" => sub.as_ref(),
        _ => node,
    };
    matches!(n.keyword.as_str(), "run" | "copy" | "add") && !n.json
}

/// An error from building one node, before it has a location.
pub(crate) struct NodeError {
    pub message: String,
    pub help: Option<String>,
}

impl From<String> for NodeError {
    fn from(message: String) -> Self {
        NodeError { message, help: None }
    }
}

/// Go's `unicode.IsSpace` restricted to ASCII, for byte-wise scanning.
fn is_go_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

fn is_go_ws(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Split on runs of space, tab, VT, FF and CR (BuildKit's `reWhitespace`).
fn split_ws(s: &str) -> Vec<String> {
    s.split(is_go_ws).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

pub(crate) const KNOWN_INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Build a node from one logical line (also used for ONBUILD's payload).
pub(crate) fn node_from_line(line: &str, escape: char) -> Result<Node, NodeError> {
    let trimmed = line.trim();
    let (cmd, rest) = match trimmed.find(is_go_ws) {
        Some(i) => (&trimmed[..i], trimmed[i..].trim_start_matches(is_go_ws)),
        None => (trimmed, ""),
    };
    let (flags, rest) = extract_builder_flags(rest);
    let rest = rest.trim();
    let keyword = cmd.to_lowercase();
    let mut node = Node {
        keyword: keyword.clone(),
        keyword_as_written: cmd.to_string(),
        original: line.to_string(),
        flags,
        args: Vec::new(),
        sub: None,
        json: false,
        heredocs: Vec::new(),
        comments: Vec::new(),
        start_line: 0,
        end_line: 0,
        span: Span::default(),
    };
    match keyword.as_str() {
        "add" | "copy" | "volume" => match parse_json_array(rest)? {
            Some(a) => {
                node.args = a;
                node.json = true;
            }
            None => node.args = split_ws(rest),
        },
        "from" | "expose" => node.args = split_ws(rest),
        "run" | "cmd" | "entrypoint" | "shell" => {
            let (args, json) = parse_maybe_json(rest)?;
            node.args = args;
            node.json = json;
        }
        "healthcheck" => {
            let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if sep > 0 {
                node.args.push(rest[..sep].to_string());
                let (args, json) = parse_maybe_json(rest[sep..].trim_start())?;
                node.args.extend(args);
                node.json = json;
            }
        }
        "env" | "label" => node.args = parse_name_val(rest, &cmd.to_uppercase(), escape)?,
        "arg" => node.args = parse_words(rest, escape),
        "maintainer" | "user" | "workdir" | "stopsignal" => {
            if !rest.is_empty() {
                node.args.push(rest.to_string());
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                node.sub = Some(Box::new(node_from_line(rest, escape)?));
            }
        }
        // Unknown keywords are kept (BuildKit's parser ignores them); the
        // instruction layer reports them with a suggestion.
        _ => node.args.push(String::new()),
    }
    Ok(node)
}

/// `Some(strings)` for a JSON array of strings, `None` for anything that is
/// not JSON, and an error for a JSON array holding something else.
pub(crate) fn parse_json_array(rest: &str) -> Result<Option<Vec<String>>, NodeError> {
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(rest)
    else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        match it {
            serde_json::Value::String(s) => out.push(s),
            _ => {
                return Err(NodeError {
                    message:
                        "when using JSON array syntax, arrays must be comprised of strings only"
                            .to_string(),
                    help: Some(
                        "quote every element, e.g. [\"echo\", \"42\"], or use the shell form"
                            .to_string(),
                    ),
                })
            }
        }
    }
    Ok(Some(out))
}

fn parse_maybe_json(rest: &str) -> Result<(Vec<String>, bool), NodeError> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match parse_json_array(rest)? {
        Some(a) => (a, true),
        None => (vec![rest.to_string()], false),
    })
}

/// Split leading `--flag` words off `line`. Quotes in a flag are removed and
/// `\` escapes the next character; a bare `--` ends the flags.
pub(crate) fn extract_builder_flags(line: &str) -> (Vec<String>, &str) {
    let b = line.as_bytes();
    let mut flags = Vec::new();
    let mut pos = 0;
    loop {
        while pos < b.len() && is_go_space_byte(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            return (flags, "");
        }
        if !(b[pos] == b'-' && b.get(pos + 1) == Some(&b'-')) {
            return (flags, &line[pos..]);
        }
        let mut word: Vec<u8> = Vec::new();
        let mut blank_ok = false;
        let mut quote: Option<u8> = None;
        while pos < b.len() {
            let c = b[pos];
            match quote {
                None => {
                    if is_go_space_byte(c) {
                        break;
                    }
                    if c == b'\'' || c == b'"' {
                        quote = Some(c);
                        blank_ok = true;
                    } else if c == b'\\' {
                        if pos + 1 < b.len() {
                            pos += 1;
                            word.push(b[pos]);
                        }
                    } else {
                        word.push(c);
                    }
                }
                Some(q) => {
                    if c == q {
                        quote = None;
                    } else if c == b'\\' {
                        if pos + 1 < b.len() {
                            pos += 1;
                            word.push(b[pos]);
                        } else {
                            quote = None;
                        }
                    } else {
                        word.push(c);
                    }
                }
            }
            pos += 1;
        }
        if word == b"--" {
            let rest = &line[pos..];
            return (flags, rest);
        }
        if blank_ok || !word.is_empty() {
            flags.push(String::from_utf8_lossy(&word).into_owned());
        }
    }
}

/// Split on unquoted whitespace, keeping quotes and escapes in the words
/// (BuildKit's `parseWords`, used by ENV, LABEL and ARG).
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        if !in_word {
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            in_word = true;
        }
        match quote {
            None => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    in_word = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if i + 1 == chars.len() {
                        // An escape at the very end is dropped.
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    word.push(chars[i]);
                    i += 1;
                    continue;
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    if i + 1 == chars.len() {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    word.push(chars[i]);
                    i += 1;
                    continue;
                }
                word.push(ch);
            }
        }
        i += 1;
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// ENV/LABEL arguments as `key value sep` triples.
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, NodeError> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    if !words[0].contains('=') {
        // Legacy `ENV key value...` form.
        let trimmed = rest;
        return match trimmed.find(is_go_ws) {
            Some(i) => Ok(vec![
                trimmed[..i].to_string(),
                trimmed[i..].trim_start_matches(is_go_ws).to_string(),
                String::new(),
            ]),
            None => Err(NodeError {
                message: format!("{key} must have two arguments"),
                help: Some(format!("write `{key} {}=<value>`", words[0])),
            }),
        };
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(NodeError {
                message: format!(
                    "Syntax error - can't find = in {}. Must be of the form: name=value",
                    go_quote(&w)
                ),
                help: Some(format!("write `{w}=<value>`, or quote the value if it has spaces")),
            });
        };
        out.push(k.to_string());
        out.push(v.to_string());
        out.push("=".to_string());
    }
    Ok(out)
}

/// Parse `rest` as BuildKit's exec form would: `Ok(Some)` for a JSON array of
/// strings, `Ok(None)` for anything that is not JSON (the shell form), and an
/// error message for an array holding something other than strings.
pub fn parse_json_array_public(rest: &str) -> Result<Option<Vec<String>>, String> {
    parse_json_array(rest).map_err(|e| e.message)
}

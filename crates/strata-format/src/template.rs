//! `--format` handling with Docker's semantics (docker/cli `cli/command/formatter` and
//! `templates`), on top of the `gtmpl` Go-template engine.
//!
//! gtmpl differs from Go's `text/template` in a few places that matter to Docker users;
//! this module closes those gaps by rewriting the template's actions before parsing:
//!
//! * Printing: gtmpl prints arrays and maps with Rust's `Debug`
//!   (`[String("a")]`). Every printing action `{{PIPELINE}}` becomes
//!   `{{PIPELINE | __strata_print}}`, which prints as Go's `fmt` does: `[a b]`,
//!   `map[k:v]`, `<nil>`, `<no value>`.
//! * `range` over a map: gtmpl iterates a `HashMap` in random order; Go sorts by key.
//!   `{{range PIPE}}` becomes `{{range PIPE | __strata_values}}` (values sorted by key),
//!   and `{{range $k, $v := PIPE}}` also gets `$k` from a key list sorted the same way.
//! * `print` / `println` are replaced by Go-compatible versions.

use std::collections::HashMap;
use std::fmt::Write as _;

use gtmpl::{Context, Func, FuncError, Template, Value};

use crate::FormatError;

/// What kind of output a `--format` string asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatKind {
    /// `table` or `table TEMPLATE`: a header row and aligned columns.
    Table,
    /// `json`: each item as one line of JSON.
    Json,
    /// Any other template: rendered once per item, each followed by a newline.
    Raw,
}

/// A parsed `--format` value, ready to render items.
pub struct Formatter {
    kind: FormatKind,
    source: String,
    body: String,
    template: Option<Template>,
    header_template: Option<Template>,
}

impl std::fmt::Debug for Formatter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Formatter").field("kind", &self.kind).field("source", &self.source).finish()
    }
}

/// Picks the format to use as Docker commands do: no `--format`, or the bare word
/// `table`, means the command's default table format.
pub fn resolve_format<'a>(user: Option<&'a str>, default_table: &'a str) -> &'a str {
    match user {
        None | Some("") | Some("table") => default_table,
        Some(f) => f,
    }
}

/// Docker's preFormat: strip `table`, map `json` to `{{json .}}`, trim spaces, and turn
/// the two-character sequences `\t` and `\n` into a tab and a newline.
fn pre_format(format: &str) -> (FormatKind, String) {
    let (kind, body) = if let Some(rest) = format.strip_prefix("table") {
        (FormatKind::Table, rest.to_string())
    } else if format == "json" {
        (FormatKind::Json, "{{json .}}".to_string())
    } else {
        (FormatKind::Raw, format.to_string())
    };
    let body = body.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n");
    (kind, body)
}

impl Formatter {
    /// Parses a `--format` value. Parse errors read `template parsing error: ...`.
    pub fn new(format: &str) -> Result<Self, FormatError> {
        let (kind, body) = pre_format(format);
        let (template, header_template) = if kind == FormatKind::Json {
            (None, None)
        } else {
            let rewritten = rewrite(&body)?;
            let t = build_template(&rewritten, BASIC_FUNCS)?;
            let h = if kind == FormatKind::Table {
                Some(build_template(&rewritten, HEADER_FUNCS)?)
            } else {
                None
            };
            (Some(t), h)
        };
        Ok(Formatter { kind, source: format.to_string(), body, template, header_template })
    }

    /// The kind of output this format produces.
    pub fn kind(&self) -> FormatKind {
        self.kind
    }

    /// True for `table ...` formats.
    pub fn is_table(&self) -> bool {
        self.kind == FormatKind::Table
    }

    /// True for the `json` format.
    pub fn is_json(&self) -> bool {
        self.kind == FormatKind::Json
    }

    /// True when the user's format mentions `sub` (Docker's `Format.Contains`), e.g. to
    /// decide whether digests must be computed for `{{.Digest}}`.
    pub fn contains(&self, sub: &str) -> bool {
        self.source.contains(sub)
    }

    /// The template text after Docker's preprocessing (without `table`).
    pub fn template_text(&self) -> &str {
        &self.body
    }

    /// Renders one item, without the trailing newline.
    pub fn render_item(&self, item: &serde_json::Value) -> Result<String, FormatError> {
        match &self.template {
            None => {
                // Through the template value, so keys come out sorted as Go's maps do,
                // whatever order the caller built the object in.
                Ok(serde_json::to_string(&value_to_json(&json_to_value(item)))
                    .map_err(|e| FormatError::Execute(e.to_string()))?)
            }
            Some(t) => {
                let ctx = Context::from(json_to_value(item));
                t.render(&ctx).map_err(|e| FormatError::Execute(e.to_string()))
            }
        }
    }

    /// Renders the header row of a table format: each `{{.Field}}` becomes the header
    /// given for `Field` in `headers` (fields without a header become empty, as in
    /// Docker); `json`, `upper`, `lower`, `title`, `split`, `join` and `truncate`
    /// leave header names untouched, `pad` still pads.
    pub fn render_header(&self, headers: &[(&str, &str)]) -> String {
        let Some(t) = &self.header_template else {
            return String::new();
        };
        let map: HashMap<String, Value> =
            headers.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        let mut out: Vec<u8> = Vec::new();
        // Docker ignores header execution errors and keeps what was written so far.
        let _ = t.execute(&mut out, &Context::from(Value::Map(map)));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Renders all items the way the Docker CLI prints them: for tables the header row
    /// and rows aligned by the tabwriter (minwidth 10, padding 3); otherwise each item
    /// followed by a newline.
    pub fn render(
        &self,
        items: &[serde_json::Value],
        headers: &[(&str, &str)],
    ) -> Result<String, FormatError> {
        let mut rows = String::new();
        for item in items {
            rows.push_str(&self.render_item(item)?);
            rows.push('\n');
        }
        if !self.is_table() {
            return Ok(rows);
        }
        let mut tw = crate::TabWriter::docker();
        tw.write_str(&self.render_header(headers));
        tw.write_str("\n");
        tw.write_str(&rows);
        Ok(tw.finish())
    }
}

fn build_template(text: &str, funcs: &[(&str, Func)]) -> Result<Template, FormatError> {
    let mut t = Template::default();
    t.add_funcs(funcs);
    t.parse(text).map_err(|e| FormatError::Parse(e.to_string()))?;
    Ok(t)
}

/// Renders a single template against one value (for `docker inspect --format`).
pub fn render_template(format: &str, item: &serde_json::Value) -> Result<String, FormatError> {
    Formatter::new(format)?.render_item(item)
}

// ---------------------------------------------------------------------------
// Values

/// Converts JSON into a gtmpl value: objects become maps (a missing key yields
/// `<no value>`, as for the `map[string]any` Docker's inspect falls back to), integers stay
/// integers, `null` becomes nil.
pub fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(json_to_value).collect()),
        serde_json::Value::Object(o) => {
            Value::Map(o.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect())
        }
    }
}

/// Converts a gtmpl value back to JSON (map keys come out sorted, as Go's encoder sorts them).
pub fn value_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into()
            } else if let Some(i) = n.as_i64() {
                i.into()
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(value_to_json).collect()),
        Value::Object(m) | Value::Map(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), value_to_json(&m[k]));
            }
            serde_json::Value::Object(out)
        }
    }
}

fn go_number(n: &gtmpl_value::Number) -> String {
    if let Some(u) = n.as_u64() {
        u.to_string()
    } else if let Some(i) = n.as_i64() {
        i.to_string()
    } else {
        crate::units::go_format_float_v(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Prints a value as Go's `fmt` `%v` does for the shapes JSON data can take.
pub fn go_print(v: &Value) -> String {
    let mut s = String::new();
    go_print_into(v, &mut s, true);
    s
}

fn go_print_into(v: &Value, out: &mut String, top: bool) {
    match v {
        Value::NoValue => out.push_str(if top { "<no value>" } else { "<nil>" }),
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::String(s) => out.push_str(s),
        Value::Number(n) => out.push_str(&go_number(n)),
        Value::Function(_) => out.push_str("<func>"),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_print_into(e, out, false);
            }
            out.push(']');
        }
        Value::Object(m) | Value::Map(m) => {
            out.push_str("map[");
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                go_print_into(&m[k], out, false);
            }
            out.push(']');
        }
    }
}

// ---------------------------------------------------------------------------
// Template functions

const BASIC_FUNCS: &[(&str, Func)] = &[
    ("__strata_print", f_print_action as Func),
    ("__strata_values", f_range_values as Func),
    ("__strata_keys", f_range_keys as Func),
    ("print", f_print as Func),
    ("println", f_println as Func),
    ("json", f_json as Func),
    ("split", f_split as Func),
    ("join", f_join as Func),
    ("title", f_title as Func),
    ("lower", f_lower as Func),
    ("upper", f_upper as Func),
    ("pad", f_pad as Func),
    ("truncate", f_truncate as Func),
];

const HEADER_FUNCS: &[(&str, Func)] = &[
    ("__strata_print", f_print_header as Func),
    ("__strata_values", f_range_values as Func),
    ("__strata_keys", f_range_keys as Func),
    ("print", f_print as Func),
    ("println", f_println as Func),
    ("json", f_first as Func),
    ("split", f_first as Func),
    ("join", f_first as Func),
    ("title", f_first as Func),
    ("lower", f_first as Func),
    ("upper", f_first as Func),
    ("pad", f_pad as Func),
    ("truncate", f_first as Func),
];

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() != n {
        return Err(FuncError::Generic(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        )));
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::NoValue => "<no value>",
        Value::Nil => "nil",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Object(_) | Value::Map(_) => "map",
        Value::Array(_) => "array",
        Value::Function(_) => "func",
        Value::Number(_) => "number",
    }
}

fn want_str<'a>(name: &str, v: &'a Value) -> Result<&'a str, FuncError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(FuncError::Generic(format!(
            "{name}: expected string; got {} {}",
            type_name(other),
            go_print(other)
        ))),
    }
}

fn want_int(name: &str, v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            FuncError::Generic(format!("{name}: expected integer; got {}", go_number(n)))
        }),
        other => Err(FuncError::Generic(format!(
            "{name}: expected integer; got {} {}",
            type_name(other),
            go_print(other)
        ))),
    }
}

fn f_print_action(args: &[Value]) -> Result<Value, FuncError> {
    arity("print", args, 1)?;
    Ok(Value::String(go_print(&args[0])))
}

fn f_print_header(args: &[Value]) -> Result<Value, FuncError> {
    arity("print", args, 1)?;
    Ok(match &args[0] {
        Value::NoValue => Value::String(String::new()),
        v => Value::String(go_print(v)),
    })
}

/// Go's `fmt.Sprint`: spaces between operands when neither side is a string.
fn f_print(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = matches!(a, Value::String(_));
        if i > 0 && !is_str && !matches!(args[i - 1], Value::String(_)) {
            out.push(' ');
        }
        out.push_str(&go_print(a));
    }
    Ok(Value::String(out))
}

/// Go's `fmt.Sprintln`: always spaces between operands, newline at the end.
fn f_println(args: &[Value]) -> Result<Value, FuncError> {
    let parts: Vec<String> = args.iter().map(go_print).collect();
    Ok(Value::String(format!("{}\n", parts.join(" "))))
}

fn f_json(args: &[Value]) -> Result<Value, FuncError> {
    arity("json", args, 1)?;
    serde_json::to_string(&value_to_json(&args[0]))
        .map(Value::String)
        .map_err(|e| FuncError::Generic(format!("json: {e}")))
}

fn f_split(args: &[Value]) -> Result<Value, FuncError> {
    arity("split", args, 2)?;
    let s = want_str("split", &args[0])?;
    let sep = want_str("split", &args[1])?;
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep).map(|p| Value::String(p.to_string())).collect()
    };
    Ok(Value::Array(parts))
}

fn f_join(args: &[Value]) -> Result<Value, FuncError> {
    arity("join", args, 2)?;
    let sep = want_str("join", &args[1])?;
    match &args[0] {
        Value::Array(a) => Ok(Value::String(a.iter().map(go_print).collect::<Vec<_>>().join(sep))),
        Value::Nil => Ok(Value::String(String::new())),
        other => Err(FuncError::Generic(format!(
            "join: expected []string; got {} {}",
            type_name(other),
            go_print(other)
        ))),
    }
}

fn is_title_separator(c: char) -> bool {
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_');
    }
    if c.is_alphanumeric() {
        return false;
    }
    c.is_whitespace()
}

/// Go's (deprecated) `strings.Title`: upper-cases the first letter of each word.
fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    arity("title", args, 1)?;
    let s = want_str("title", &args[0])?;
    let mut prev = ' ';
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_title_separator(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    Ok(Value::String(out))
}

fn f_lower(args: &[Value]) -> Result<Value, FuncError> {
    arity("lower", args, 1)?;
    Ok(Value::String(want_str("lower", &args[0])?.to_lowercase()))
}

fn f_upper(args: &[Value]) -> Result<Value, FuncError> {
    arity("upper", args, 1)?;
    Ok(Value::String(want_str("upper", &args[0])?.to_uppercase()))
}

/// `pad STRING PREFIX SUFFIX`: spaces around a non-empty string.
fn f_pad(args: &[Value]) -> Result<Value, FuncError> {
    arity("pad", args, 3)?;
    let s = want_str("pad", &args[0])?;
    let pre = want_int("pad", &args[1])?;
    let suf = want_int("pad", &args[2])?;
    if pre < 0 || suf < 0 {
        return Err(FuncError::Generic(format!("pad: negative padding {pre} {suf}")));
    }
    if s.is_empty() {
        return Ok(Value::String(String::new()));
    }
    Ok(Value::String(format!("{}{}{}", " ".repeat(pre as usize), s, " ".repeat(suf as usize))))
}

/// `truncate STRING LENGTH`: the first LENGTH bytes (cut back to a character boundary).
fn f_truncate(args: &[Value]) -> Result<Value, FuncError> {
    arity("truncate", args, 2)?;
    let s = want_str("truncate", &args[0])?;
    let n = want_int("truncate", &args[1])?;
    if n < 0 {
        return Err(FuncError::Generic(format!("truncate: negative length {n}")));
    }
    let mut n = n as usize;
    if s.len() < n {
        return Ok(Value::String(s.to_string()));
    }
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    Ok(Value::String(s[..n].to_string()))
}

fn f_first(args: &[Value]) -> Result<Value, FuncError> {
    args.first().cloned().ok_or_else(|| FuncError::AtLeastXArgs("header function".into(), 1))
}

fn sorted_entries(m: &HashMap<String, Value>) -> Vec<(&String, &Value)> {
    let mut e: Vec<(&String, &Value)> = m.iter().collect();
    e.sort_by(|a, b| a.0.cmp(b.0));
    e
}

fn f_range_values(args: &[Value]) -> Result<Value, FuncError> {
    arity("range", args, 1)?;
    Ok(match &args[0] {
        Value::Map(m) | Value::Object(m) => {
            Value::Array(sorted_entries(m).into_iter().map(|(_, v)| v.clone()).collect())
        }
        // Go ranges over nothing for a nil value.
        Value::Nil | Value::NoValue => Value::Array(Vec::new()),
        other => other.clone(),
    })
}

fn f_range_keys(args: &[Value]) -> Result<Value, FuncError> {
    arity("range", args, 1)?;
    Ok(match &args[0] {
        Value::Map(m) | Value::Object(m) => Value::Array(
            sorted_entries(m).into_iter().map(|(k, _)| Value::String(k.clone())).collect(),
        ),
        Value::Array(a) => Value::Array((0..a.len()).map(|i| Value::from(i as u64)).collect()),
        _ => Value::Array(Vec::new()),
    })
}

// ---------------------------------------------------------------------------
// Template rewriting

struct Action<'a> {
    left_trim: bool,
    right_trim: bool,
    inner: &'a str,
}

/// Finds the end of an action starting after `{{`, skipping quoted strings and comments.
fn find_action_end(text: &str, from: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let rest = &text[i + 2..];
                i = i + 2 + rest.find("*/")? + 2;
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => i += 1,
        }
    }
    None
}

const KEYWORDS: &[&str] =
    &["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"];

fn first_word(s: &str) -> &str {
    let end = s.find(|c: char| c.is_whitespace() || c == '(' || c == '|').unwrap_or(s.len());
    &s[..end]
}

/// Splits `$a, $b := rest` / `$a := rest` into declared variables and the pipeline.
fn split_decl(inner: &str) -> Option<(Vec<&str>, &str)> {
    let t = inner.trim_start();
    if !t.starts_with('$') {
        return None;
    }
    let mut vars = Vec::new();
    let mut rest = t;
    loop {
        let end = rest
            .find(|c: char| !(c == '$' || c == '_' || c.is_alphanumeric()))
            .unwrap_or(rest.len());
        vars.push(&rest[..end]);
        rest = rest[end..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            if !rest.starts_with('$') {
                return None;
            }
            continue;
        }
        if let Some(r) = rest.strip_prefix(":=") {
            return Some((vars, r));
        }
        if rest.starts_with('=') && !rest.starts_with("==") {
            return Some((vars, &rest[1..]));
        }
        return None;
    }
}

fn open(a: &Action) -> &'static str {
    if a.left_trim {
        "{{- "
    } else {
        "{{"
    }
}

fn close(trim: bool) -> &'static str {
    if trim {
        " -}}"
    } else {
        "}}"
    }
}

/// Rewrites printing actions and `range` actions (see the module docs).
fn rewrite(text: &str) -> Result<String, FormatError> {
    let mut out = String::with_capacity(text.len() + 32);
    let mut pos = 0;
    let mut counter = 0usize;
    while let Some(rel) = text[pos..].find("{{") {
        let start = pos + rel;
        out.push_str(&text[pos..start]);
        let mut body_start = start + 2;
        let left_trim = text[body_start..].starts_with("- ")
            || text[body_start..].starts_with("-\t")
            || text[body_start..].starts_with("-\n");
        if left_trim {
            body_start += 2;
        }
        let Some(end) = find_action_end(text, body_start) else {
            // Let the parser report the unclosed action.
            out.push_str(&text[start..]);
            return Ok(out);
        };
        let mut inner = &text[body_start..end];
        let right_trim = inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-");
        if right_trim {
            inner = &inner[..inner.len() - 2];
        }
        let action = Action { left_trim, right_trim, inner };
        rewrite_action(&action, &mut out, &mut counter);
        pos = end + 2;
    }
    out.push_str(&text[pos..]);
    Ok(out)
}

fn rewrite_action(a: &Action, out: &mut String, counter: &mut usize) {
    let trimmed = a.inner.trim();
    let verbatim = |out: &mut String| {
        out.push_str(open(a));
        out.push_str(a.inner);
        out.push_str(close(a.right_trim));
    };
    if trimmed.is_empty() || trimmed.starts_with("/*") {
        verbatim(out);
        return;
    }
    let word = first_word(trimmed);
    if word == "range" {
        let rest = &trimmed["range".len()..];
        match split_decl(rest) {
            Some((vars, pipe)) if vars.len() == 2 => {
                *counter += 1;
                let keys = format!("$__strata_k{counter}");
                let idx = format!("$__strata_i{counter}");
                let _ = write!(
                    out,
                    "{}{keys} := {pipe} | __strata_keys}}}}{{{{range {idx}, {} := {pipe} | __strata_values}}}}{{{{{} := index {keys} {idx}{}",
                    open(a),
                    vars[1],
                    vars[0],
                    close(a.right_trim)
                );
            }
            Some((vars, pipe)) => {
                let _ = write!(
                    out,
                    "{}range {} := {pipe} | __strata_values{}",
                    open(a),
                    vars.join(", "),
                    close(a.right_trim)
                );
            }
            None => {
                let _ =
                    write!(out, "{}range {rest} | __strata_values{}", open(a), close(a.right_trim));
            }
        }
        return;
    }
    if KEYWORDS.contains(&word) || split_decl(trimmed).is_some() {
        verbatim(out);
        return;
    }
    let _ = write!(out, "{}{} | __strata_print{}", open(a), a.inner, close(a.right_trim));
}

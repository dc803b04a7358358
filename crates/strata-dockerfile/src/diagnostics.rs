//! Errors and warnings that point into the Dockerfile: file, line, column,
//! the source line and a caret, through `miette::Diagnostic`.

use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, SourceSpan};

/// A position in a source file: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// A region of the source: byte offset and length, plus start and end
/// positions for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
    pub start: Position,
    pub end: Position,
}

impl Span {
    /// The same span narrowed to `len` bytes from `offset` (clamped to the
    /// original), for pointing at one word of an instruction.
    pub fn sub(&self, offset: usize, len: usize, src: &str) -> Span {
        let lo = floor_char_boundary(src, offset.clamp(self.offset, self.offset + self.len));
        let hi = floor_char_boundary(src, (offset + len).clamp(lo, self.offset + self.len));
        // Walk only the text inside this span: cheap even for huge files.
        let start = advance(self.start, src.get(self.offset..lo).unwrap_or(""));
        let end = advance(start, src.get(lo..hi).unwrap_or(""));
        Span { offset: lo, len: hi - lo, start, end }
    }

    /// Compute line/column positions for a byte range of `src`.
    pub fn from_offsets(src: &str, start: usize, end: usize) -> Span {
        let start = floor_char_boundary(src, start.min(src.len()));
        let end = floor_char_boundary(src, end.clamp(start, src.len()));
        Span {
            offset: start,
            len: end - start,
            start: position_of(src, start),
            end: position_of(src, end),
        }
    }
}

/// Byte offsets of line starts, for turning offsets into positions without
/// rescanning the file (the parser makes a span for every instruction).
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(src: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    pub fn position(&self, src: &str, offset: usize) -> Position {
        let offset = floor_char_boundary(src, offset.min(src.len()));
        let line = self.starts.partition_point(|s| *s <= offset);
        let start = self.starts[line - 1];
        Position { line, column: src[start..offset].chars().count() + 1 }
    }

    pub fn span(&self, src: &str, start: usize, end: usize) -> Span {
        let start = floor_char_boundary(src, start.min(src.len()));
        let end = floor_char_boundary(src, end.clamp(start, src.len()));
        Span {
            offset: start,
            len: end - start,
            start: self.position(src, start),
            end: self.position(src, end),
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn advance(mut p: Position, text: &str) -> Position {
    for c in text.chars() {
        if c == '\n' {
            p.line += 1;
            p.column = 1;
        } else {
            p.column += 1;
        }
    }
    p
}

/// 1-based line and column of byte `offset` in `src`.
pub fn position_of(src: &str, offset: usize) -> Position {
    let before = &src[..floor_char_boundary(src, offset.min(src.len()))];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    Position { line, column }
}

impl From<Span> for SourceSpan {
    fn from(s: Span) -> SourceSpan {
        SourceSpan::new(s.offset.into(), s.len)
    }
}

/// A Dockerfile together with the name it is reported under.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        SourceFile { name: name.into(), text: text.into() }
    }

    /// The text of 1-based `line`, without its newline.
    pub fn line(&self, line: usize) -> Option<&str> {
        self.text.split('\n').nth(line.checked_sub(1)?).map(|l| l.strip_suffix('\r').unwrap_or(l))
    }
}

/// Is this a hard error or a warning (a build check)?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One error or warning about a Dockerfile. Boxed so that `Result<_, Diag>`
/// stays small; fields are reached through `Deref` to [`DiagInfo`].
#[derive(Debug, Clone)]
pub struct Diag(Box<DiagInfo>);

/// The contents of a [`Diag`].
#[derive(Debug, Clone)]
pub struct DiagInfo {
    pub severity: Severity,
    /// A stable name: a BuildKit check rule name (`JSONArgsRecommended`) for
    /// warnings, or `dockerfile::<kind>` for errors.
    pub code: String,
    /// One line saying what is wrong.
    pub message: String,
    /// Short text shown under the caret.
    pub label: String,
    /// What to do about it (e.g. "did you mean COPY?").
    pub help: Option<String>,
    /// Documentation link, for build checks.
    pub url: Option<String>,
    /// Where, if the problem has a place in the file.
    pub span: Option<Span>,
    pub source: Option<SourceFile>,
}

impl Diag {
    pub fn error(code: &str, message: impl Into<String>) -> Diag {
        Diag(Box::new(DiagInfo {
            severity: Severity::Error,
            code: code.to_string(),
            message: message.into(),
            label: "here".to_string(),
            help: None,
            url: None,
            span: None,
            source: None,
        }))
    }

    pub fn warning(code: &str, message: impl Into<String>) -> Diag {
        let mut d = Diag::error(code, message);
        d.severity = Severity::Warning;
        d
    }

    pub fn at(mut self, span: Span) -> Diag {
        self.span = Some(span);
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Diag {
        self.label = label.into();
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diag {
        self.help = Some(help.into());
        self
    }

    pub fn with_url(mut self, url: impl Into<String>) -> Diag {
        self.url = Some(url.into());
        self
    }

    pub fn in_file(mut self, source: &SourceFile) -> Diag {
        self.source = Some(source.clone());
        self
    }

    /// `file:line:column` (or just the file when there is no position).
    pub fn location(&self) -> String {
        let file = self.source.as_ref().map(|s| s.name.as_str()).unwrap_or("Dockerfile");
        match self.span {
            Some(s) => format!("{file}:{}:{}", s.start.line, s.start.column),
            None => file.to_string(),
        }
    }

    /// Plain-text rendering that needs no terminal support: location,
    /// message, the source line and a caret under the offending text.
    pub fn render_plain(&self) -> String {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!("{}: {kind}: {}\n", self.location(), self.message);
        if let (Some(span), Some(src)) = (self.span, &self.source) {
            if let Some(text) = src.line(span.start.line) {
                let gutter = span.start.line.to_string().len();
                out.push_str(&format!("{:gutter$} |\n", ""));
                out.push_str(&format!("{} | {}\n", span.start.line, text));
                let width = if span.end.line == span.start.line {
                    span.end.column.saturating_sub(span.start.column).max(1)
                } else {
                    text.chars().count().saturating_sub(span.start.column - 1).max(1)
                };
                let pad: String = text
                    .chars()
                    .take(span.start.column - 1)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                out.push_str(&format!(
                    "{:gutter$} | {pad}{} {}\n",
                    "",
                    "^".repeat(width),
                    self.label
                ));
            }
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("  help: {help}\n"));
        }
        out
    }
}

impl std::ops::Deref for Diag {
    type Target = DiagInfo;
    fn deref(&self) -> &DiagInfo {
        &self.0
    }
}

impl std::ops::DerefMut for Diag {
    fn deref_mut(&mut self) -> &mut DiagInfo {
        &mut self.0
    }
}

/// Just the message: miette prints the location in its own header; use
/// [`Diag::location`] or [`Diag::render_plain`] for plain text.
impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diag {}

impl miette::Diagnostic for Diag {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn url<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.url.as_ref().map(|u| Box::new(u) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span?;
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(Some(self.label.clone()), span))))
    }
}

/// Lets miette print the file name above the snippet.
impl miette::SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self.text.read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
    }
}

/// Typo suggestions: the closest candidate by edit distance, if close enough.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let mut best: Option<(&str, usize)> = None;
    for c in candidates {
        let d = strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase());
        if best.is_none_or(|(_, bd)| d < bd) {
            best = Some((c, d));
        }
    }
    // Allow roughly one mistake per three characters.
    let limit = (word.chars().count() / 3).max(1);
    best.filter(|(_, d)| *d <= limit && *d > 0).map(|(c, _)| c)
}

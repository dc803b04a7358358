//! Heredocs (`RUN <<EOF`, `COPY <<file.txt /dest`): finding the heredoc words
//! on an instruction line and classifying them as BuildKit does.

use crate::shell::{NoEnv, ShellError, ShellLex};

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF` for `<<'EOF'`).
    pub name: String,
    /// File descriptor written before `<<` (`3<<EOF`), 0 when absent.
    pub file_descriptor: u32,
    /// False when any part of the delimiter was quoted: the body is then
    /// taken literally, without variable expansion.
    pub expand: bool,
    /// `<<-`: leading tabs are removed from body lines.
    pub chomp: bool,
    /// The raw body, every line with its newline, before tab removal.
    pub content: String,
}

impl Heredoc {
    /// The body as the build will see it (tabs stripped for `<<-`).
    pub fn body(&self) -> String {
        if self.chomp {
            chomp_tabs(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// Remove leading tabs from every line, as `<<-` does.
pub fn chomp_tabs(src: &str) -> String {
    src.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

/// Classify one word: `Ok(Some)` for a heredoc, `Ok(None)` for an ordinary
/// word, `Err` for a delimiter with an unterminated quote.
pub fn parse_heredoc_word(src: &str) -> Result<Option<Heredoc>, ShellError> {
    let digits = src.bytes().take_while(|b| b.is_ascii_digit()).count();
    let Some(rest) = src[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let file_descriptor = if digits == 0 {
        0
    } else {
        match src[..digits].parse::<u32>() {
            Ok(fd) => fd,
            Err(_) => return Ok(None),
        }
    };
    let mut lex = ShellLex::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &NoEnv)?;
    if words.len() != 1 {
        return Ok(None);
    }
    // Lex again keeping the quotes: if the quote counts differ, part of the
    // delimiter was quoted and the body must not be expanded.
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &NoEnv)?;
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let expand = raw.len() == 1 && quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        file_descriptor,
        expand,
        chomp,
        content: String::new(),
    }))
}

/// All heredocs introduced on an instruction line, in order.
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ShellError> {
    let mut lex = ShellLex::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    // A line that does not even lex has no heredocs; the instruction itself
    // reports the problem later.
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let mut word = words[i].clone();
        // `<< EOF` and `<<- EOF`: the delimiter may be the next word.
        let bare = word.trim_start_matches(|c: char| c.is_ascii_digit());
        if (bare == "<<" || bare == "<<-") && i + 1 < words.len() {
            word.push(' ');
            word.push_str(&words[i + 1]);
            i += 1;
        }
        if let Some(doc) = parse_heredoc_word(&word)? {
            docs.push(doc);
        }
        i += 1;
    }
    Ok(docs)
}

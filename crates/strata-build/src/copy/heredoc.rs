//! COPY/ADD heredocs (`COPY <<EOF /dest`): each becomes a file named after its delimiter.
//!
//! BuildKit (instructions.SourcesAndDest.ExpandRaw) expands an unquoted heredoc's body with
//! the stage's ARG/ENV using a lexer that keeps quotes as plain characters
//! (`SkipProcessQuotes`) but still processes `\` escapes (always `\`, whatever the
//! `# escape=` directive says): `\$HOME` stays literal, a lone `\` before any other
//! character is dropped. A quoted delimiter (`<<"EOF"`) leaves the body as written.

use strata_dockerfile::{Env, Heredoc, ShellError, ShellLex};

/// The file contents a COPY heredoc produces (after `<<-` tab stripping and expansion).
pub(crate) fn body(h: &Heredoc, env: &dyn Env) -> Result<String, ShellError> {
    let text = h.body();
    if !h.expand {
        return Ok(text);
    }
    ShellLex::new('\\').process_word(&quotes_as_text(&text), env)
}

/// Escapes every quote the lexer would otherwise treat as quoting, leaving existing
/// escapes (`\x`) as they are, so the lexer sees quotes as ordinary characters.
fn quotes_as_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '\'' | '"' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn doc(content: &str, expand: bool, chomp: bool) -> Heredoc {
        Heredoc { name: "EOF".into(), file_descriptor: 0, expand, chomp, content: content.into() }
    }

    #[test]
    fn expansion_keeps_quotes_and_processes_escapes() {
        let env: BTreeMap<String, String> = [("FOO".to_string(), "bar".to_string())].into();
        let b = |c: &str| body(&doc(c, true, false), &env).unwrap();
        assert_eq!(b("echo \"hello ${FOO}\" '$FOO'\n"), "echo \"hello bar\" 'bar'\n");
        assert_eq!(b("a \\$FOO \\\\ b\n"), "a $FOO \\ b\n");
        // A backslash before an ordinary character is consumed (BuildKit PR #2442).
        assert_eq!(b("printf 'a\\nb'\n"), "printf 'anb'\n");
        assert_eq!(b("${MISSING:-dflt} ${FOO:+\"set\"}\n"), "dflt \"set\"\n");
        assert_eq!(b("$UNSET.\n"), ".\n");
        // Quoted delimiter: literal; <<-: leading tabs go.
        assert_eq!(body(&doc("$FOO \\n\n", false, false), &env).unwrap(), "$FOO \\n\n");
        assert_eq!(body(&doc("\t\tx $FOO\n\ty\n", true, true), &env).unwrap(), "x bar\ny\n");
    }
}

//! Entry points for the cargo-fuzz targets in `fuzz/`: each drives as much
//! of the crate as possible from one input. They live here so that the fuzz
//! targets stay one-liners and keep compiling as the API grows.

use std::collections::BTreeMap;

use crate::shell::ShellLex;

/// Parse a Dockerfile and run every later stage on it: typing, scoping,
/// the stage graph, checks and the three `--call` reports. Returns whether
/// it parsed.
pub fn fuzz_entry_dockerfile(text: &str) -> bool {
    let ast = match crate::parser::parse("Dockerfile", text) {
        Ok(ast) => ast,
        Err(e) => {
            let _ = e.render_plain();
            return false;
        }
    };
    let _ = ast.dump();
    let df = match crate::model::Dockerfile::from_ast(ast) {
        Ok(df) => df,
        Err(e) => {
            let _ = e.render_plain();
            return true;
        }
    };
    let mut args = BTreeMap::new();
    args.insert("UNUSED".to_string(), "1".to_string());
    let _ = crate::calls::call_targets(&df);
    let targets: Vec<Option<String>> = std::iter::once(None)
        .chain(df.stages.iter().filter_map(|s| s.name.clone()).take(4).map(Some))
        .collect();
    for t in &targets {
        match crate::calls::call_outline(&df, &args, t.as_deref()) {
            Ok(s) => drop(s),
            Err(e) => drop(e.render_plain()),
        }
        if let Ok(report) = crate::calls::call_check(&df, &args, t.as_deref()) {
            for w in &report.warnings {
                let _ = w.render_plain();
            }
        }
    }
    true
}

/// Expand `text` in every mode the crate uses.
pub fn fuzz_entry_expand(text: &str) {
    let env: BTreeMap<String, String> = [("A", "x y"), ("EMPTY", ""), ("P", "/a/*b")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for escape in ['\\', '`'] {
        let mut lex = ShellLex::new(escape);
        let _ = lex.process_word_with_matches(text, &env);
        lex.raw_quotes = true;
        lex.raw_escapes = true;
        let _ = lex.process_words(text, &env);
        lex.skip_unset_env = true;
        let _ = lex.process_word(text, &env);
    }
    let _ = crate::heredoc::heredocs_from_line(text);
    let _ = crate::parser::parse_words(text, '\\');
}

/// Read `.dockerignore` text and match a few paths derived from it.
pub fn fuzz_entry_dockerignore(text: &str) {
    let patterns = crate::dockerignore::read_dockerignore(text);
    if let Ok(m) = crate::dockerignore::IgnoreMatcher::new(&patterns) {
        for p in patterns.iter().take(8) {
            let _ = m.matches(p.trim_start_matches('!'));
            let _ = m.must_descend(p);
        }
        let _ = m.matches("a/b/c");
    }
}

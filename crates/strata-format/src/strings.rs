//! String helpers the Docker CLI applies to column values.

use unicode_width::UnicodeWidthChar;

/// Docker's `stringid.TruncateID`: drops an algorithm prefix (`"sha256:"`, or anything up
/// to the first `:`) and keeps the first 12 characters.
///
/// `truncate_id("sha256:90db7e2d1c9f...") == "90db7e2d1c9f"`.
pub fn truncate_id(id: &str) -> String {
    let id = match id.find(':') {
        Some(i) => &id[i + 1..],
        None => id,
    };
    id.chars().take(12).collect()
}

/// East Asian Wide and Fullwidth characters take two columns, everything else one: the
/// rule docker/cli's `Ellipsis` uses (`golang.org/x/text/width`).
fn char_width(c: char) -> usize {
    if c.width().unwrap_or(1) >= 2 {
        2
    } else {
        1
    }
}

/// Docker's `formatter.Ellipsis`: truncates `s` to at most `max_width` display columns,
/// ending with `…` when it had to cut.
///
/// A width of 0 gives `""`; a width of 1 gives the first character even if it is wide.
/// `docker history` uses it with 45 for the `CREATED BY` column.
pub fn ellipsis(s: &str, max_width: usize) -> String {
    if max_width == 0 {
        return String::new();
    }
    let chars: Vec<char> = s.chars().collect();
    if max_width == 1 {
        return chars.first().map(|c| c.to_string()).unwrap_or_default();
    }
    let total: usize = chars.iter().map(|c| char_width(*c)).sum();
    if total <= max_width {
        return s.to_string();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in chars {
        let cw = char_width(c);
        if w + cw > max_width - 1 {
            break;
        }
        w += cw;
        out.push(c);
    }
    if out.is_empty() {
        // docker/cli returns the string unchanged when not even the first character fits
        // before the ellipsis (e.g. a wide character with a width of 2).
        return s.to_string();
    }
    out.push('…');
    out
}

/// The `CREATED BY` cell of `docker history`: tabs become spaces, and unless `no_trunc`
/// the text is cut to 45 columns with [`ellipsis`].
pub fn history_created_by(created_by: &str, no_trunc: bool) -> String {
    let s = created_by.replace('\t', " ");
    if no_trunc {
        s
    } else {
        ellipsis(&s, 45)
    }
}

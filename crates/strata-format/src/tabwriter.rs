//! Elastic tabstops, as Go's `text/tabwriter` (and docker/cli's copy of it) lays them out.
//!
//! Cells are *terminated* by `\t` (or `\v`); the text after the last tab of a line is not
//! part of any column. Contiguous lines that have a cell in column *k* form a column
//! block whose width is `max(minwidth, widest cell + padding)`. docker/cli uses
//! `NewWriter(out, 10, 1, 3, ' ', 0)`: see [`TabWriter::docker`].
//!
//! Cell widths count display columns (East Asian wide characters count 2), as docker's
//! copy of the tabwriter does with `go-runewidth`.
//! Escapes (`\xff`) and HTML filtering, unused by Docker, are not supported.

use unicode_width::UnicodeWidthStr;

#[derive(Debug, Clone, Default)]
struct Cell {
    text: String,
    width: usize,
    htab: bool,
}

/// Layout flags of Go's `tabwriter` that make sense for terminal output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TabFlags {
    /// Right-align cell contents (Go's `AlignRight`).
    pub align_right: bool,
    /// Drop columns whose cells are all empty and `\v`-terminated (`DiscardEmptyColumns`).
    pub discard_empty_columns: bool,
    /// Print `|` between columns (`Debug`).
    pub debug: bool,
}

/// A text/tabwriter equivalent that accumulates its output in a `String`.
#[derive(Debug, Clone)]
pub struct TabWriter {
    minwidth: usize,
    tabwidth: usize,
    padding: usize,
    padchar: char,
    flags: TabFlags,
    lines: Vec<Vec<Cell>>,
    cell: String,
    widths: Vec<usize>,
    out: String,
}

impl TabWriter {
    /// Same parameters as Go's `tabwriter.NewWriter(out, minwidth, tabwidth, padding, padchar, flags)`.
    pub fn new(
        minwidth: usize,
        tabwidth: usize,
        padding: usize,
        padchar: char,
        flags: TabFlags,
    ) -> Self {
        let mut flags = flags;
        if padchar == '\t' {
            flags.align_right = false;
        }
        TabWriter {
            minwidth,
            tabwidth,
            padding,
            padchar,
            flags,
            lines: vec![Vec::new()],
            cell: String::new(),
            widths: Vec::new(),
            out: String::new(),
        }
    }

    /// The settings of every Docker CLI table: minwidth 10, tabwidth 1, padding 3, spaces.
    pub fn docker() -> Self {
        Self::new(10, 1, 3, ' ', TabFlags::default())
    }

    fn terminate_cell(&mut self, htab: bool) -> usize {
        let text = std::mem::take(&mut self.cell);
        let width = UnicodeWidthStr::width(text.as_str());
        let line = self.lines.last_mut().expect("tabwriter always has a current line");
        line.push(Cell { text, width, htab });
        line.len()
    }

    /// Appends text; `\t`/`\v` end a cell, `\n`/`\f` end a line (`\f` also flushes).
    pub fn write_str(&mut self, text: &str) {
        for ch in text.chars() {
            match ch {
                '\t' | '\u{b}' | '\n' | '\u{c}' => {
                    let ncells = self.terminate_cell(ch == '\t');
                    if ch == '\n' || ch == '\u{c}' {
                        self.lines.push(Vec::new());
                        if ch == '\u{c}' || ncells == 1 {
                            // A line with a single cell cannot affect later alignment.
                            self.flush();
                            if ch == '\u{c}' && self.flags.debug {
                                self.out.push_str("---\n");
                            }
                        }
                    }
                }
                c => self.cell.push(c),
            }
        }
    }

    /// Lays out everything buffered so far (Go's `Flush`).
    pub fn flush(&mut self) {
        if !self.cell.is_empty() {
            self.terminate_cell(false);
        }
        let nlines = self.lines.len();
        self.format(0, nlines);
        self.lines.clear();
        self.lines.push(Vec::new());
        self.widths.clear();
    }

    /// Flushes and returns the laid-out text.
    pub fn finish(mut self) -> String {
        self.flush();
        self.out
    }

    fn write_padding(&mut self, textw: usize, cellw: usize) {
        if self.padchar == '\t' {
            if self.tabwidth == 0 {
                return;
            }
            let cellw = cellw.div_ceil(self.tabwidth) * self.tabwidth;
            let n = cellw.saturating_sub(textw);
            for _ in 0..n.div_ceil(self.tabwidth) {
                self.out.push('\t');
            }
            return;
        }
        for _ in 0..cellw.saturating_sub(textw) {
            self.out.push(self.padchar);
        }
    }

    fn write_lines(&mut self, line0: usize, line1: usize) {
        for i in line0..line1 {
            let line = std::mem::take(&mut self.lines[i]);
            for (j, c) in line.iter().enumerate() {
                if j > 0 && self.flags.debug {
                    self.out.push('|');
                }
                let colw = self.widths.get(j).copied();
                if c.text.is_empty() {
                    if let Some(w) = colw {
                        self.write_padding(c.width, w);
                    }
                } else if !self.flags.align_right {
                    self.out.push_str(&c.text);
                    if let Some(w) = colw {
                        self.write_padding(c.width, w);
                    }
                } else {
                    if let Some(w) = colw {
                        self.write_padding(c.width, w);
                    }
                    self.out.push_str(&c.text);
                }
            }
            self.lines[i] = line;
            if i + 1 == self.lines.len() {
                // Last buffered line: no newline yet, write the pending cell text.
                let pending = self.cell.clone();
                self.out.push_str(&pending);
            } else {
                self.out.push('\n');
            }
        }
    }

    fn format(&mut self, line0: usize, line1: usize) {
        let mut line0 = line0;
        let column = self.widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            // This line has a cell in `column`: print the lines before the block.
            self.write_lines(line0, this);
            line0 = this;

            let mut width = self.minwidth;
            let mut discardable = true;
            while this < line1 {
                let line = &self.lines[this];
                if column + 1 >= line.len() {
                    break;
                }
                let c = &line[column];
                width = width.max(c.width + self.padding);
                if c.width > 0 || c.htab {
                    discardable = false;
                }
                this += 1;
            }
            if discardable && self.flags.discard_empty_columns {
                width = 0;
            }
            self.widths.push(width);
            self.format(line0, this);
            self.widths.pop();
            line0 = this;
        }
        self.write_lines(line0, line1);
    }
}

/// Lays out `text` with Docker's table settings ([`TabWriter::docker`]).
pub fn docker_table(text: &str) -> String {
    let mut tw = TabWriter::docker();
    tw.write_str(text);
    tw.finish()
}

//! The interactive view: layers on the left, the file tree of the selected layer on the
//! right, with what that layer added, modified and removed marked. Plain crossterm over
//! the terminal (alternate screen, raw mode), so it works over SSH and in tmux.

use std::collections::HashSet;
use std::io;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::{Frame, Terminal};

use crate::analysis::{Analysis, Change};
use crate::error::{AnalyzeError, Result};
use crate::report::size;
use crate::scan::Kind;
use crate::source::Loaded;
use crate::tree::{tree_at, visible, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Focus {
    Layers,
    Tree,
}

/// State of the view; key handling is separate from drawing so it can be tested.
pub struct App<'a> {
    loaded: &'a Loaded,
    analysis: &'a Analysis,
    focus: Focus,
    layer: usize,
    layer_state: ListState,
    rows: Vec<Row>,
    shown: Vec<usize>,
    tree_state: ListState,
    collapsed: HashSet<String>,
    filter: String,
    editing: bool,
    changes_only: bool,
    pub quit: bool,
}

impl<'a> App<'a> {
    pub fn new(loaded: &'a Loaded, analysis: &'a Analysis) -> Self {
        let mut app = App {
            loaded,
            analysis,
            focus: Focus::Layers,
            layer: 0,
            layer_state: ListState::default(),
            rows: Vec::new(),
            shown: Vec::new(),
            tree_state: ListState::default(),
            collapsed: HashSet::new(),
            filter: String::new(),
            editing: false,
            changes_only: false,
            quit: false,
        };
        app.select_layer(0);
        app
    }

    fn select_layer(&mut self, layer: usize) {
        let n = self.loaded.scans.len();
        self.layer = if n == 0 { 0 } else { layer.min(n - 1) };
        self.layer_state.select(if n == 0 { None } else { Some(self.layer) });
        self.rows = tree_at(&self.loaded.scans, self.layer);
        self.refresh();
    }

    fn refresh(&mut self) {
        let keep = self
            .tree_state
            .selected()
            .and_then(|i| self.shown.get(i))
            .map(|&r| self.rows.get(r).map(|r| r.path.clone()));
        self.shown = visible(&self.rows, &self.collapsed, &self.filter, self.changes_only);
        let sel = keep
            .flatten()
            .and_then(|p| self.shown.iter().position(|&i| self.rows[i].path == p))
            .unwrap_or(0);
        self.tree_state.select(if self.shown.is_empty() { None } else { Some(sel) });
    }

    /// The selected layer (for tests).
    pub fn layer(&self) -> usize {
        self.layer
    }

    fn move_by(&mut self, delta: isize) {
        match self.focus {
            Focus::Layers => {
                let n = self.loaded.scans.len() as isize;
                if n > 0 {
                    let next = (self.layer as isize + delta).clamp(0, n - 1) as usize;
                    if next != self.layer {
                        self.select_layer(next);
                    }
                }
            }
            Focus::Tree => {
                let n = self.shown.len() as isize;
                if n > 0 {
                    let cur = self.tree_state.selected().unwrap_or(0) as isize;
                    self.tree_state.select(Some((cur + delta).clamp(0, n - 1) as usize));
                }
            }
        }
    }

    fn selected_row(&self) -> Option<&Row> {
        self.tree_state.selected().and_then(|i| self.shown.get(i)).map(|&r| &self.rows[r])
    }

    fn set_collapsed(&mut self, collapse: Option<bool>) {
        let Some(row) = self.selected_row() else { return };
        if !row.has_children {
            return;
        }
        let path = row.path.clone();
        let now = self.collapsed.contains(&path);
        let want = collapse.unwrap_or(!now);
        if want {
            self.collapsed.insert(path);
        } else {
            self.collapsed.remove(&path);
        }
        self.refresh();
    }

    pub fn on_key(&mut self, key: KeyEvent) {
        if key.kind != KeyEventKind::Press {
            return;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter.clear();
                    self.refresh();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                    self.refresh();
                }
                KeyCode::Char(c) => {
                    self.filter.push(c);
                    self.refresh();
                }
                _ => {}
            }
            return;
        }
        let page = 10;
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.refresh();
            }
            KeyCode::Esc => self.quit = true,
            KeyCode::Tab | KeyCode::BackTab => {
                self.focus = if self.focus == Focus::Layers { Focus::Tree } else { Focus::Layers };
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-page),
            KeyCode::PageDown => self.move_by(page),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX / 2),
            KeyCode::Char('/') => {
                self.focus = Focus::Tree;
                self.editing = true;
            }
            KeyCode::Char('c') => {
                self.changes_only = !self.changes_only;
                self.refresh();
            }
            KeyCode::Enter | KeyCode::Char(' ') if self.focus == Focus::Tree => {
                self.set_collapsed(None)
            }
            KeyCode::Left | KeyCode::Char('h') if self.focus == Focus::Tree => {
                self.set_collapsed(Some(true))
            }
            KeyCode::Right | KeyCode::Char('l') if self.focus == Focus::Tree => {
                self.set_collapsed(Some(false))
            }
            KeyCode::Char('e') => {
                self.collapsed.clear();
                self.refresh();
            }
            KeyCode::Char('a') => {
                self.collapsed =
                    self.rows.iter().filter(|r| r.has_children).map(|r| r.path.clone()).collect();
                self.refresh();
            }
            _ => {}
        }
    }

    pub fn draw(&mut self, f: &mut Frame) {
        let outer = Layout::default()
            .direction(Direction::Vertical)
            .constraints([Constraint::Min(3), Constraint::Length(1)])
            .split(f.area());
        let cols = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Percentage(42), Constraint::Percentage(58)])
            .split(outer[0]);
        let left = Layout::default()
            .direction(Direction::Vertical)
            .constraints([Constraint::Percentage(45), Constraint::Length(6), Constraint::Min(4)])
            .split(cols[0]);
        self.draw_layers(f, left[0]);
        self.draw_layer_details(f, left[1]);
        self.draw_image_details(f, left[2]);
        self.draw_tree(f, cols[1]);
        let help = if self.editing {
            format!(" Filter: {}▏  (Enter: done, Esc: clear)", self.filter)
        } else {
            " q quit │ Tab switch pane │ ↑↓ move │ Space collapse/expand │ / filter │ c changes only │ a/e collapse/expand all".to_string()
        };
        f.render_widget(
            Paragraph::new(help).style(Style::default().add_modifier(Modifier::REVERSED)),
            outer[1],
        );
    }

    fn block(&self, title: String, focus: bool) -> Block<'static> {
        let style = if focus {
            Style::default().fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        Block::default().borders(Borders::ALL).title(Span::styled(title, style)).border_style(style)
    }

    fn draw_layers(&mut self, f: &mut Frame, area: Rect) {
        let items: Vec<ListItem> = self
            .analysis
            .layers
            .iter()
            .map(|l| {
                let cmd = l.command.replace(['\n', '\t'], " ");
                ListItem::new(Line::from(format!("{:>3} {:>8}  {}", l.index, size(l.size), cmd)))
            })
            .collect();
        let list = List::new(items)
            .block(self.block(" Layers ".into(), self.focus == Focus::Layers))
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
            .highlight_symbol("▶");
        f.render_stateful_widget(list, area, &mut self.layer_state);
    }

    fn draw_layer_details(&self, f: &mut Frame, area: Rect) {
        let Some(l) = self.analysis.layers.get(self.layer) else { return };
        let lines = vec![
            Line::from(format!("Digest: {}", l.digest)),
            Line::from(vec![
                Span::raw(format!("Size: {}  ", size(l.size))),
                Span::styled(format!("+{} added ", l.added), Style::default().fg(Color::Green)),
                Span::styled(
                    format!("~{} modified ", l.modified),
                    Style::default().fg(Color::Yellow),
                ),
                Span::styled(format!("-{} removed", l.removed), Style::default().fg(Color::Red)),
            ]),
            Line::from(format!("Command: {}", l.command.replace(['\n', '\t'], " "))),
        ];
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: true })
                .block(self.block(format!(" Layer {} ", l.index), false)),
            area,
        );
    }

    fn draw_image_details(&self, f: &mut Frame, area: Rect) {
        let a = self.analysis;
        let mut lines = vec![
            Line::from(format!("Image: {}", a.image)),
            Line::from(format!(
                "Total size: {}   Wasted: {}   Efficiency: {:.2} %",
                size(a.size_bytes),
                size(a.wasted_bytes),
                a.efficiency * 100.0
            )),
            Line::from(Span::styled(
                "Count  Wasted     Layers  Path",
                Style::default().add_modifier(Modifier::BOLD),
            )),
        ];
        for w in a.inefficiencies.iter().take(area.height.saturating_sub(5) as usize) {
            let layers: Vec<String> = w.layers.iter().map(usize::to_string).collect();
            lines.push(Line::from(format!(
                "{:>5}  {:>9}  {:>6}  {}",
                w.count,
                size(w.wasted_bytes),
                layers.join(","),
                w.path
            )));
        }
        f.render_widget(Paragraph::new(lines).block(self.block(" Image ".into(), false)), area);
    }

    fn draw_tree(&mut self, f: &mut Frame, area: Rect) {
        let items: Vec<ListItem> = self
            .shown
            .iter()
            .map(|&i| {
                let r = &self.rows[i];
                let (mark, color) = match r.change {
                    Change::Added => ("A", Some(Color::Green)),
                    Change::Modified => ("M", Some(Color::Yellow)),
                    Change::Removed => ("D", Some(Color::Red)),
                    Change::Unchanged => (" ", None),
                };
                let fold = if r.has_children {
                    if self.collapsed.contains(&r.path) {
                        "⊕ "
                    } else {
                        "▾ "
                    }
                } else {
                    "  "
                };
                let mut name = r.name().to_string();
                if r.meta.kind == Kind::Dir {
                    name.push('/');
                }
                if let Some(link) = &r.meta.link {
                    name.push_str(" → ");
                    name.push_str(link);
                }
                let text = format!(
                    "{mark} {} {:>8} {:>5}:{:<5} {}{}{}",
                    mode_string(r.meta.kind, r.meta.mode),
                    size(r.size),
                    r.meta.uid,
                    r.meta.gid,
                    "  ".repeat(r.depth),
                    fold,
                    name
                );
                let style = color.map_or(Style::default(), |c| Style::default().fg(c));
                ListItem::new(Line::from(Span::styled(text, style)))
            })
            .collect();
        let mut title = format!(" Layer {} contents (A added, M modified, D removed) ", self.layer);
        if self.changes_only {
            title.push_str("[changes only] ");
        }
        if !self.filter.is_empty() {
            title.push_str(&format!("[filter: {}] ", self.filter));
        }
        let list = List::new(items)
            .block(self.block(title, self.focus == Focus::Tree))
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
        f.render_stateful_widget(list, area, &mut self.tree_state);
    }
}

/// `drwxr-xr-x`, as `ls -l` prints it (setuid/setgid/sticky included).
fn mode_string(kind: Kind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::Hardlink => 'h',
        Kind::Other => 'c',
        Kind::File | Kind::Whiteout => '-',
    });
    for (i, (r, w, x)) in
        [(0o400, 0o200, 0o100), (0o40, 0o20, 0o10), (0o4, 0o2, 0o1)].iter().enumerate()
    {
        s.push(if mode & r != 0 { 'r' } else { '-' });
        s.push(if mode & w != 0 { 'w' } else { '-' });
        let special = [0o4000, 0o2000, 0o1000][i] & mode != 0;
        s.push(match (mode & x != 0, special, i) {
            (true, true, 2) => 't',
            (false, true, 2) => 'T',
            (true, true, _) => 's',
            (false, true, _) => 'S',
            (true, false, _) => 'x',
            (false, false, _) => '-',
        });
    }
    s
}

/// Restores the terminal however the view ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, ratatui::crossterm::cursor::Show);
    }
}

/// Runs the view until the user quits.
pub fn run(loaded: &Loaded, analysis: &Analysis) -> Result<()> {
    enable_raw_mode().map_err(AnalyzeError::Terminal)?;
    let _guard = TerminalGuard;
    execute!(io::stdout(), EnterAlternateScreen).map_err(AnalyzeError::Terminal)?;
    let mut terminal =
        Terminal::new(CrosstermBackend::new(io::stdout())).map_err(AnalyzeError::Terminal)?;
    terminal.clear().map_err(AnalyzeError::Terminal)?;
    let mut app = App::new(loaded, analysis);
    while !app.quit {
        terminal.draw(|f| app.draw(f)).map_err(AnalyzeError::Terminal)?;
        match event::read().map_err(AnalyzeError::Terminal)? {
            Event::Key(key) => app.on_key(key),
            Event::Resize(..) => {}
            _ => {}
        }
    }
    terminal.show_cursor().map_err(AnalyzeError::Terminal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::scan::{Entry, LayerScan};
    use crate::source::ImageMeta;

    fn entry(path: &str, kind: Kind, size: u64) -> Entry {
        Entry { path: path.into(), kind, size, mode: 0o644, uid: 0, gid: 0, link: None }
    }

    fn loaded() -> Loaded {
        let l0 = LayerScan {
            entries: vec![entry("app", Kind::Dir, 0), entry("app/main", Kind::File, 5000)],
            size: 5000,
            ..Default::default()
        };
        let l1 = LayerScan {
            entries: vec![
                entry("app/.wh.main", Kind::Whiteout, 0),
                entry("app/new", Kind::File, 10),
            ],
            size: 10,
            ..Default::default()
        };
        let config = serde_json::json!({"history": [{"created_by": "/bin/sh -c one"}, {"created_by": "/bin/sh -c two"}]});
        Loaded {
            meta: ImageMeta { name: "t".into(), id: None, config, layers: Vec::new(), others: 0 },
            scans: vec![l0, l1],
        }
    }

    fn screen(app: &mut App) -> String {
        let mut t = Terminal::new(TestBackend::new(120, 30)).unwrap();
        t.draw(|f| app.draw(f)).unwrap();
        let buf = t.backend().buffer();
        let mut s = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                s.push_str(buf[(x, y)].symbol());
            }
            s.push('\n');
        }
        s
    }

    fn press(app: &mut App, code: KeyCode) {
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
    }

    #[test]
    fn keys_move_filter_collapse_and_quit() {
        let loaded = loaded();
        let analysis = crate::analysis::analyze(&loaded.meta, &loaded.scans);
        let mut app = App::new(&loaded, &analysis);
        let s = screen(&mut app);
        assert!(s.contains("Layer 0 contents"), "{s}");
        assert!(s.contains("RUN one"), "{s}");
        assert!(s.lines().any(|l| l.contains("A ") && l.contains("main")), "{s}");
        press(&mut app, KeyCode::Down);
        assert_eq!(app.layer(), 1);
        let s = screen(&mut app);
        assert!(s.contains("Layer 1 contents"), "{s}");
        assert!(s.lines().any(|l| l.contains("D ") && l.contains("main")), "{s}");
        assert!(s.lines().any(|l| l.contains("A ") && l.contains("new")), "{s}");
        // Past the last layer stays on it.
        press(&mut app, KeyCode::Down);
        assert_eq!(app.layer(), 1);
        // Filter.
        press(&mut app, KeyCode::Char('/'));
        for c in "new".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        press(&mut app, KeyCode::Enter);
        let s = screen(&mut app);
        assert!(s.contains("[filter: new]"), "{s}");
        assert!(!s.lines().any(|l| l.contains("D ") && l.contains("main")), "{s}");
        press(&mut app, KeyCode::Esc);
        // Collapse app/ (the first row of the tree, which has the focus after "/").
        press(&mut app, KeyCode::Home);
        press(&mut app, KeyCode::Char(' '));
        let s = screen(&mut app);
        assert!(s.contains("⊕"), "{s}");
        assert!(!s.lines().any(|l| l.contains("A ") && l.contains("new")), "{s}");
        press(&mut app, KeyCode::Char('e'));
        let s = screen(&mut app);
        assert!(s.lines().any(|l| l.contains("A ") && l.contains("new")), "{s}");
        assert!(!app.quit);
        press(&mut app, KeyCode::Char('q'));
        assert!(app.quit);
    }

    #[test]
    fn modes() {
        assert_eq!(mode_string(Kind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(Kind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(Kind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(Kind::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(Kind::File, 0o2640), "-rw-r-S---");
    }

    #[test]
    fn empty_image_draws() {
        let loaded = Loaded {
            meta: ImageMeta {
                name: "empty".into(),
                id: None,
                config: serde_json::json!({}),
                layers: Vec::new(),
                others: 0,
            },
            scans: Vec::new(),
        };
        let analysis = crate::analysis::analyze(&loaded.meta, &loaded.scans);
        let mut app = App::new(&loaded, &analysis);
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Tab);
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Char(' '));
        let s = screen(&mut app);
        assert!(s.contains("Layers"), "{s}");
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(app.quit);
    }
}

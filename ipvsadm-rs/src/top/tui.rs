//! The full-screen view of `--top`: its state and what each key does
//! ([`View`], pure), its drawing ([`draw`], onto any ratatui backend),
//! and the terminal loop ([`run`]), which only reads, draws and waits.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line as TextLine;
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table};

use ipvs_netlink::{Handle, ServiceId};
use ipvsadm_compat::messages as strerror;

use super::model::{self, human_rate, lines, Column, Frame, Line, Order, Rates};
use super::text::{forward_name, id_cells};
use super::OwnerSource;
use crate::cli::top::TopArgs;

/// What the view shows and how: everything the keys change.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Sort column, direction, filter.
    pub order: Order,
    /// The services whose real servers are hidden.
    pub collapsed: HashSet<ServiceId>,
    /// The selected line (an index into [`model::lines`]).
    pub selected: usize,
    /// No refresh while paused.
    pub paused: bool,
    /// The help is shown.
    pub help: bool,
    /// The filter is being typed.
    pub editing: bool,
}

/// What a key asks of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Draw again.
    Redraw,
    /// Leave.
    Quit,
}

/// The lines of the help, shown on `?`.
pub const HELP: &[&str] = &[
    "q, Ctrl-C     quit",
    "?             this help (any key closes it)",
    "Up/Down, j/k  select a line; PgUp/PgDn, Home/End",
    "Enter         collapse or expand the selected service",
    "Left/Right    collapse / expand it",
    "c / e         collapse / expand every service",
    "< / >         sort by the column before / after",
    "r             reverse the sort",
    "/             filter: words found in the protocol, address:port,",
    "              real servers or Kubernetes name (Enter keeps, Esc clears)",
    "p             pause / resume the refresh",
];

impl View {
    /// Applies one key; `frame` and `shown` (its lines) are what is on
    /// the screen.
    pub fn key(&mut self, key: KeyEvent, frame: &Frame, shown: &[Line]) -> Action {
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        if ctrl_c {
            return Action::Quit;
        }
        if self.help {
            self.help = false;
            return Action::Redraw;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.order.filter.clear();
                }
                KeyCode::Backspace => {
                    self.order.filter.pop();
                }
                KeyCode::Char(c) => self.order.filter.push(c),
                _ => {}
            }
            self.selected = 0;
            return Action::Redraw;
        }
        let last = shown.len().saturating_sub(1);
        let service_of = |i: usize| match shown.get(i) {
            Some(Line::Service(s)) | Some(Line::Dest(s, _)) => {
                frame.services.get(*s).map(|r| r.service.id)
            }
            None => None,
        };
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Esc if !self.order.filter.is_empty() => self.order.filter.clear(),
            KeyCode::Esc => return Action::Quit,
            KeyCode::Char('?') | KeyCode::Char('h') => self.help = true,
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1).min(last),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(20),
            KeyCode::PageDown => self.selected = (self.selected + 20).min(last),
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = last,
            KeyCode::Enter | KeyCode::Left | KeyCode::Right => {
                if let Some(id) = service_of(self.selected) {
                    let collapse = match key.code {
                        KeyCode::Left => true,
                        KeyCode::Right => false,
                        _ => !self.collapsed.contains(&id),
                    };
                    if collapse {
                        self.collapsed.insert(id);
                        // Stay on the service's own line.
                        while self.selected > 0
                            && matches!(shown.get(self.selected), Some(Line::Dest(..)))
                        {
                            self.selected -= 1;
                        }
                    } else {
                        self.collapsed.remove(&id);
                    }
                }
            }
            KeyCode::Char('c') => {
                self.collapsed = frame.services.iter().map(|s| s.service.id).collect();
                self.selected = 0;
            }
            KeyCode::Char('e') => self.collapsed.clear(),
            KeyCode::Char('<') => self.order.column = self.order.column.previous(),
            KeyCode::Char('>') => self.order.column = self.order.column.next(),
            KeyCode::Char('r') => self.order.reversed = !self.order.reversed,
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            _ => {}
        }
        Action::Redraw
    }
}

fn rate(r: Option<&Rates>, c: Column) -> String {
    human_rate(r.map(|r| match c {
        Column::Conns => r.conns,
        Column::InPackets => r.in_packets,
        Column::OutPackets => r.out_packets,
        Column::InBytes => r.in_bytes,
        _ => r.out_bytes,
    }))
}

fn cells(frame: &Frame, line: Line) -> Vec<String> {
    const RATES: [Column; 5] = [
        Column::Conns,
        Column::InPackets,
        Column::OutPackets,
        Column::InBytes,
        Column::OutBytes,
    ];
    match line {
        Line::Service(i) => {
            let Some(s) = frame.services.get(i) else {
                return Vec::new();
            };
            let (prot, addr) = id_cells(&s.service.id);
            let mut v = vec![
                format!("{prot:<4} {addr}"),
                s.service.scheduler.clone(),
                s.weight.to_string(),
                s.active.to_string(),
                s.inactive.to_string(),
            ];
            v.extend(RATES.iter().map(|c| rate(s.rates.as_ref(), *c)));
            v.push(match &s.owner {
                Some(n) if !n.is_empty() => n.clone(),
                Some(_) => "from-k8s".into(),
                None => String::new(),
            });
            v
        }
        Line::Dest(i, j) => {
            let Some(d) = frame.services.get(i).and_then(|s| s.dests.get(j)) else {
                return Vec::new();
            };
            let mut v = vec![
                format!("  -> {}", d.dest.socket_addr()),
                forward_name(d.dest.forward),
                d.dest.weight.to_string(),
                d.dest.active_conns.to_string(),
                d.dest.inactive_conns.to_string(),
            ];
            v.extend(RATES.iter().map(|c| rate(d.rates.as_ref(), *c)));
            v.push(String::new());
            v
        }
    }
}

/// The first line: the frame, the sort, the filter, the state.
pub fn status(frame: &Frame, view: &View) -> String {
    let interval = frame
        .interval
        .map_or("-".to_owned(), |i| format!("{:.2}s", i.as_secs_f64()));
    let mut s = format!(
        "ipvsadm-rs --top  {} services  interval {interval}  read {:.1} ms  sort {}{}",
        frame.services.len(),
        frame.took.as_secs_f64() * 1000.0,
        view.order.column.title(),
        if view.order.reversed {
            " (reversed)"
        } else {
            ""
        },
    );
    if view.editing || !view.order.filter.is_empty() {
        s.push_str(&format!("  filter: {}", view.order.filter));
        if view.editing {
            s.push('_');
        }
    }
    if view.paused {
        s.push_str("  PAUSED");
    }
    s
}

/// Draws the view of `frame` on `area` of `f`: the status line, the table
/// (the lines around the selected one), a line of keys, and the help
/// over them when asked.
pub fn draw(f: &mut ratatui::Frame, frame: &Frame, view: &mut View) {
    let shown = lines(frame, &view.order, &view.collapsed);
    view.selected = view.selected.min(shown.len().saturating_sub(1));
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(status(frame, view)), top);
    let height = usize::from(body.height.saturating_sub(1)).max(1);
    let first = view.selected.saturating_sub(height - 1);
    let header = Row::new(Column::ALL.iter().map(|c| {
        let mark = match (*c == view.order.column, c.numeric() != view.order.reversed) {
            (true, true) => "▼",
            (true, false) => "▲",
            _ => "",
        };
        Cell::from(format!("{}{mark}", c.title()))
    }))
    .style(Style::default().add_modifier(Modifier::REVERSED));
    let rows = shown
        .iter()
        .enumerate()
        .skip(first)
        .take(height)
        .map(|(i, line)| {
            let row = Row::new(cells(frame, *line));
            if i == view.selected {
                row.style(Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED))
            } else {
                row
            }
        });
    let widths = [
        Constraint::Min(28),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Min(10),
    ];
    f.render_widget(Table::new(rows, widths).header(header), body);
    f.render_widget(
        Paragraph::new("q quit  ? help  </> sort  r reverse  / filter  Enter expand  p pause"),
        bottom,
    );
    if view.help {
        let area = centered(f.area(), 76, HELP.len() as u16 + 2);
        f.render_widget(Clear, area);
        f.render_widget(
            Paragraph::new(HELP.iter().map(|l| TextLine::from(*l)).collect::<Vec<_>>())
                .block(Block::default().borders(Borders::ALL).title(" keys ")),
            area,
        );
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// The terminal loop: read the table every interval (unless paused), draw,
/// and wait for a key until the next read. Returns the exit status.
pub fn run(handle: &mut Handle, args: &TopArgs, owners: &mut OwnerSource) -> i32 {
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ipvsadm-rs: --top: cannot set the terminal up: {e}");
            return 1;
        }
    };
    let result = screen_loop(&mut terminal, handle, args, owners);
    ratatui::restore();
    match result {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("{msg}");
            1
        }
    }
}

fn screen_loop(
    terminal: &mut ratatui::DefaultTerminal,
    handle: &mut Handle,
    args: &TopArgs,
    owners: &mut OwnerSource,
) -> Result<(), String> {
    let origin = Instant::now();
    let mut view = View::default();
    let mut frame = Frame::default();
    let mut number = 0u64;
    let mut due = Instant::now();
    loop {
        if !view.paused && Instant::now() >= due {
            if args.count.is_some_and(|n| number >= n) {
                return Ok(());
            }
            due = Instant::now() + args.interval;
            let now = super::read(handle, origin).map_err(|e| strerror::describe(&e))?;
            let names = owners.owners().map_err(|m| format!("ipvsadm-rs: {m}"))?;
            number += 1;
            let next = model::frame(number, Some(&frame).filter(|_| number > 1), now, names);
            frame = next;
        }
        terminal
            .draw(|f| draw(f, &frame, &mut view))
            .map_err(|e| format!("ipvsadm-rs: --top: {e}"))?;
        let wait = if view.paused {
            Duration::from_secs(3600)
        } else {
            due.saturating_duration_since(Instant::now())
        };
        if event::poll(wait).map_err(|e| format!("ipvsadm-rs: --top: {e}"))? {
            match event::read().map_err(|e| format!("ipvsadm-rs: --top: {e}"))? {
                Event::Key(key) if key.kind != KeyEventKind::Release => {
                    let shown = lines(&frame, &view.order, &view.collapsed);
                    if view.key(key, &frame, &shown) == Action::Quit {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_netlink::{Destination, ForwardMethod, Service, Stats};
    use model::Owners;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn table() -> Frame {
        let svc = |vip: &str, conns: u64| {
            let mut s = Service::new(ServiceId::tcp(vip.parse().unwrap()), "rr");
            let mut stats = Stats::default();
            stats.conns = conns;
            s.stats = Some(stats);
            s
        };
        let dest = |a: &str, active: u32| {
            let mut d = Destination::new(a.parse().unwrap());
            d.forward = ForwardMethod::Masquerade;
            d.active_conns = active;
            d
        };
        let sample = |secs, c1, c2| model::Sample {
            at: Duration::from_secs(secs),
            took: Duration::from_millis(2),
            table: vec![
                (svc("10.0.0.1:80", c1), vec![dest("10.1.0.1:80", 1)]),
                (
                    svc("10.0.0.2:443", c2),
                    vec![dest("10.1.0.2:443", 7), dest("10.1.0.3:443", 0)],
                ),
            ],
        };
        let owners: Owners = [(
            ServiceId::tcp("10.0.0.2:443".parse().unwrap()),
            String::new(),
        )]
        .into();
        let first = model::frame(1, None, sample(1, 0, 0), &owners);
        model::frame(2, Some(&first), sample(3, 50, 4), &owners)
    }

    fn press(view: &mut View, frame: &Frame, code: KeyCode) -> Action {
        let shown = lines(frame, &view.order, &view.collapsed);
        view.key(KeyEvent::from(code), frame, &shown)
    }

    fn screen(frame: &Frame, view: &mut View) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(120, 10)).unwrap();
        t.draw(|f| draw(f, frame, view)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_owned())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn keys_sort_filter_collapse_pause_help_and_quit() {
        let f = table();
        let mut v = View::default();
        press(&mut v, &f, KeyCode::Char('>'));
        assert_eq!(v.order.column, Column::Scheduler);
        press(&mut v, &f, KeyCode::Char('<'));
        press(&mut v, &f, KeyCode::Char('<'));
        assert_eq!(v.order.column, Column::Name);
        press(&mut v, &f, KeyCode::Char('r'));
        assert!(v.order.reversed);
        // Select the second service (line 2: after 10.0.0.1 and its server).
        press(&mut v, &f, KeyCode::Char('r'));
        v.order.column = Column::Service;
        press(&mut v, &f, KeyCode::Down);
        press(&mut v, &f, KeyCode::Down);
        press(&mut v, &f, KeyCode::Enter);
        assert!(v.collapsed.contains(&f.services[1].service.id));
        press(&mut v, &f, KeyCode::Right);
        assert!(v.collapsed.is_empty());
        press(&mut v, &f, KeyCode::Char('c'));
        assert_eq!(v.collapsed.len(), 2);
        press(&mut v, &f, KeyCode::Char('e'));
        assert!(v.collapsed.is_empty());
        press(&mut v, &f, KeyCode::Char('/'));
        for c in ":443".chars() {
            press(&mut v, &f, KeyCode::Char(c));
        }
        press(&mut v, &f, KeyCode::Enter);
        assert_eq!(v.order.filter, ":443");
        assert!(!v.editing);
        press(&mut v, &f, KeyCode::Char('p'));
        assert!(v.paused);
        press(&mut v, &f, KeyCode::Char('?'));
        assert!(v.help);
        // Any key closes the help, even q.
        assert_eq!(press(&mut v, &f, KeyCode::Char('q')), Action::Redraw);
        assert!(!v.help);
        assert_eq!(press(&mut v, &f, KeyCode::Esc), Action::Redraw);
        assert!(v.order.filter.is_empty());
        assert_eq!(press(&mut v, &f, KeyCode::Char('q')), Action::Quit);
    }

    #[test]
    fn the_screen_shows_the_rows_in_the_view_order() {
        let f = table();
        let mut v = View::default();
        let s = screen(&f, &mut v);
        assert!(
            s[0].starts_with("ipvsadm-rs --top  2 services  interval 2.00s"),
            "{s:#?}"
        );
        assert!(s[1].starts_with("Prot LocalAddress:Port▲"), "{s:#?}");
        assert!(s[2].starts_with("TCP  10.0.0.1:80"), "{s:#?}");
        assert!(s[3].starts_with("  -> 10.1.0.1:80"), "{s:#?}");
        assert!(s[4].starts_with("TCP  10.0.0.2:443"), "{s:#?}");
        assert!(s[4].ends_with("from-k8s"), "{s:#?}");
        // 50 connections over 2 s.
        assert!(s[2].contains(" 25 "), "{s:#?}");
        assert!(s[9].starts_with("q quit"), "{s:#?}");
        v.order.column = Column::Conns;
        v.collapsed.insert(f.services[0].service.id);
        let s = screen(&f, &mut v);
        assert!(s[1].contains("Conn/s▼"), "{s:#?}");
        assert!(s[2].starts_with("TCP  10.0.0.1:80"), "{s:#?}");
        assert!(s[3].starts_with("TCP  10.0.0.2:443"), "{s:#?}");
        v.help = true;
        let s = screen(&f, &mut v);
        assert!(s.iter().any(|l| l.contains("q, Ctrl-C     quit")), "{s:#?}");
    }
}

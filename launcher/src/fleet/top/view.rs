/*!
The dashboard's drawing: a header, one row per agent, the selected agent's last line of
output, and a bottom line that says the keys or what is being asked. Fits 80x24: the name
column takes what the fixed columns leave. Every text from outside (names, output) passes
[`printable`] first.
*/

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use mosaic_core::status::render::{format_activity, format_age, printable};

use super::model::{is_waiting, Mode, Model};
use crate::fleet::ls::{self, Agent, AgentState};
use crate::fleet::Fleet;

/// The keys, for `?` and for the bottom line.
pub const KEYS: [(&str, &str); 11] = [
    ("Up/Down j/k", "select an agent"),
    ("Enter", "attach (detach to come back)"),
    ("s", "stop the agent (after y)"),
    ("r", "restart the agent (after y)"),
    ("p", "send it a prompt (Enter sends)"),
    ("l", "its recent output"),
    ("/", "filter by name (Enter applies)"),
    ("Esc", "clear the filter"),
    ("?", "these keys"),
    ("q", "quit"),
    ("Ctrl-C", "quit"),
];

const HINT: &str = "Enter attach  s stop  r restart  p prompt  l log  / filter  ? keys  q quit";

pub fn draw(frame: &mut Frame, fleet: &Fleet, model: &Model, now: i64) {
    let [head, body, preview, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let visible: Vec<&Agent> = model.visible().collect();
    let shown = if model.filter.is_empty() {
        String::new()
    } else {
        format!(
            " [/{}: {} of {}]",
            printable(&model.filter),
            visible.len(),
            model.total()
        )
    };
    let agents: Vec<Agent> = visible.iter().map(|a| (*a).clone()).collect();
    frame.render_widget(
        Line::from(format!(
            "mosaic-fleet top: {} on {}{shown}",
            ls::summary(&agents),
            fleet.socket
        ))
        .bold(),
        head,
    );
    if let Mode::Log(agent, lines) = &model.mode {
        log(frame, body.union(preview), agent, lines);
    } else {
        table(frame, body, model, &visible, now);
    }
    let text = match model.selected() {
        Some(agent) => format!(
            "{}{}> {}",
            printable(&agent.name),
            model
                .worktree
                .as_ref()
                .map_or(String::new(), |(path, branch)| {
                    format!(" [{branch} in {}]", printable(&path.to_string_lossy()))
                }),
            printable(model.preview.as_deref().unwrap_or(""))
        ),
        None => String::new(),
    };
    if !matches!(model.mode, Mode::Log(..)) {
        frame.render_widget(Line::from(text).italic(), preview);
    }
    frame.render_widget(bottom_line(model), bottom);
    if model.mode == Mode::Help {
        help(frame, body);
    }
}

fn table(frame: &mut Frame, area: Rect, model: &Model, agents: &[&Agent], now: i64) {
    let dash = || "-".to_string();
    let rows = agents.iter().map(|agent| {
        let cells = [
            printable(&agent.name),
            agent.state.as_str().to_string(),
            agent.activity().map_or_else(dash, format_activity),
            agent.restarts().map_or_else(dash, |n| n.to_string()),
            ls::exit_text(agent, now).unwrap_or_else(dash),
            agent
                .uptime(now)
                .map_or_else(dash, |s| format_age(s as f64)),
        ];
        Row::new(cells).style(row_style(agent))
    });
    let widths = [
        Constraint::Min(10),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Length(18),
        Constraint::Length(6),
    ];
    let header = Row::new(["AGENT", "STATE", "ACTIVITY", "RESTARTS", "EXIT", "UPTIME"]).bold();
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol(">");
    let mut state = TableState::new().with_selected(model.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

/// Waiting agents in bold yellow, dead or failed ones in red: the eye finds them first.
fn row_style(agent: &Agent) -> Style {
    if is_waiting(agent) {
        return Style::new().yellow().bold();
    }
    match agent.state {
        AgentState::Exited | AgentState::Failed | AgentState::Invalid => Style::new().red(),
        AgentState::Stale | AgentState::NoHeartbeat | AgentState::OrphanFile => {
            Style::new().magenta()
        }
        AgentState::Stopped => Style::new().dim(),
        AgentState::Running | AgentState::Restarting => Style::new(),
    }
}

fn bottom_line(model: &Model) -> Line<'static> {
    match &model.mode {
        Mode::Filter(text) => Line::from(format!(
            "/{}_  (Enter applies, Esc clears)",
            printable(text)
        )),
        Mode::Confirm(verb, agent) => Line::from(format!(
            "{} {}? y: yes, any other key: no",
            verb.as_str(),
            printable(agent)
        ))
        .bold()
        .reversed(),
        Mode::Prompt(agent, text) => {
            // The end of a long prompt: what is being typed stays in sight.
            let text = printable(text);
            let start = text.len().saturating_sub(40);
            let start = (start..=text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            Line::from(format!(
                "send {}> {}_  (Enter sends, Esc cancels)",
                printable(agent),
                &text[start..]
            ))
            .bold()
        }
        Mode::Help | Mode::Log(..) => Line::from("any key: back to the list  q: quit"),
        Mode::List => match &model.message {
            Some(message) => Line::from(printable(message)),
            None => Line::from(HINT).dim(),
        },
    }
}

fn help(frame: &mut Frame, body: Rect) {
    let lines: Vec<Line> = KEYS
        .iter()
        .map(|(key, what)| Line::from(format!("{key:>12}  {what}")))
        .collect();
    let width = 48.min(body.width);
    let height = (lines.len() as u16 + 2).min(body.height);
    let area = Rect::new(body.x + (body.width - width) / 2, body.y, width, height);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys ")),
        area,
    );
}

fn log(frame: &mut Frame, area: Rect, agent: &str, lines: &[String]) {
    // The last lines that fit, below a title line.
    let room = area.height.saturating_sub(1) as usize;
    let start = lines.len().saturating_sub(room);
    let mut text = vec![Line::from(format!("{}: recent output", printable(agent))).bold()];
    text.extend(lines[start..].iter().map(|l| Line::from(printable(l))));
    frame.render_widget(Paragraph::new(text), area);
}

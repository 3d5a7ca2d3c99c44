/*!
The dashboard's state: the fleet as `ls` joins it ([`super::super::ls::join`]), the selection,
the filter and what the bottom line is doing (a filter being typed, a confirmation, help, a
log). Keys become [`Action`]s here, without any I/O, so the rules are unit-tested; the event
loop (`mod.rs`) carries the actions out with the CLI verbs' own code.
*/

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mosaic_core::activity::Activity;

use crate::fleet::ls::Agent;

/// A verb that changes an agent, asked for with a key and done only after `y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Stop,
    Restart,
}

impl Verb {
    /// The CLI verb, as `mosaic-fleet` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
}

/// What the screen is doing besides the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    List,
    /// A filter being typed (not yet applied).
    Filter(String),
    /// `VERB AGENT?`, waiting for `y`.
    Confirm(Verb, String),
    /// A prompt for an agent being typed (sent with Enter).
    Prompt(String, String),
    /// The keys.
    Help,
    /// An agent's recent output.
    Log(String, Vec<String>),
}

/// What a key asks the event loop to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    Attach(String),
    Run(Verb, String),
    /// `mosaic-fleet send AGENT` with this text.
    Send(String, String),
    Log(String),
}

/// The dashboard's model.
#[derive(Debug)]
pub struct Model {
    /// Every agent, in display order: waiting first, then as `ls` sorts (live first, by name).
    agents: Vec<Agent>,
    /// The selected agent's name: a selection follows its agent when rows move.
    selected: Option<String>,
    /// The applied filter: a part of the name.
    pub filter: String,
    pub mode: Mode,
    /// The last line of the selected agent's output.
    pub preview: Option<String>,
    /// The selected agent's git worktree and branch, when it has one (its launch file).
    pub worktree: Option<(std::path::PathBuf, String)>,
    /// What the last action or read said.
    pub message: Option<String>,
}

impl Model {
    pub fn new() -> Model {
        Model {
            agents: Vec::new(),
            selected: None,
            filter: String::new(),
            mode: Mode::List,
            preview: None,
            worktree: None,
            message: None,
        }
    }

    /// A new reading of the fleet (`ls::join`'s order), waiting agents moved first.
    pub fn set_agents(&mut self, mut agents: Vec<Agent>) {
        // A stable sort: within each group, `ls`'s order stays.
        agents.sort_by_key(|a| !is_waiting(a));
        self.agents = agents;
        self.keep_selection();
    }

    /// The agents shown: those whose name holds the filter. None is hidden otherwise, dead
    /// or gone ones included.
    pub fn visible(&self) -> impl Iterator<Item = &Agent> {
        self.agents
            .iter()
            .filter(|a| self.filter.is_empty() || a.name.contains(&self.filter))
    }

    pub fn total(&self) -> usize {
        self.agents.len()
    }

    /// The selected agent's row among [`Model::visible`].
    pub fn selected_index(&self) -> Option<usize> {
        let name = self.selected.as_deref()?;
        self.visible().position(|a| a.name == name)
    }

    pub fn selected(&self) -> Option<&Agent> {
        let name = self.selected.as_deref()?;
        self.visible().find(|a| a.name == name)
    }

    /// The selection stays on its agent while it is shown, else the first row.
    fn keep_selection(&mut self) {
        if self.selected_index().is_none() {
            let first = self.visible().next().map(|a| a.name.clone());
            if first != self.selected {
                self.preview = None;
            }
            self.selected = first;
        }
    }

    fn step(&mut self, down: bool) {
        let names: Vec<&str> = self.visible().map(|a| a.name.as_str()).collect();
        let Some(last) = names.len().checked_sub(1) else {
            return;
        };
        let at = self.selected_index().unwrap_or(0);
        let to = if down {
            (at + 1).min(last)
        } else {
            at.saturating_sub(1)
        };
        if names[to] != self.selected.as_deref().unwrap_or("") {
            self.selected = Some(names[to].to_string());
            self.preview = None;
        }
    }

    /// One key, in the current mode.
    pub fn key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match std::mem::replace(&mut self.mode, Mode::List) {
            Mode::List => self.list_key(key.code),
            Mode::Filter(mut text) => {
                match key.code {
                    KeyCode::Enter => {
                        self.filter = text;
                        self.keep_selection();
                    }
                    KeyCode::Esc => {
                        self.filter.clear();
                        self.keep_selection();
                    }
                    KeyCode::Backspace => {
                        text.pop();
                        self.mode = Mode::Filter(text);
                    }
                    KeyCode::Char(c) if !c.is_control() => {
                        text.push(c);
                        self.mode = Mode::Filter(text);
                    }
                    _ => self.mode = Mode::Filter(text),
                }
                Action::None
            }
            Mode::Prompt(agent, mut text) => match key.code {
                KeyCode::Enter if text.trim().is_empty() => {
                    self.message = Some(format!("send {agent}: nothing typed, nothing sent"));
                    Action::None
                }
                KeyCode::Enter => Action::Send(agent, text),
                KeyCode::Esc => {
                    self.message = Some(format!("send {agent}: cancelled"));
                    Action::None
                }
                KeyCode::Backspace => {
                    text.pop();
                    self.mode = Mode::Prompt(agent, text);
                    Action::None
                }
                code => {
                    if let KeyCode::Char(c) = code {
                        // A control character is refused by `send`: never typed.
                        if !c.is_control() {
                            text.push(c);
                        }
                    }
                    self.mode = Mode::Prompt(agent, text);
                    Action::None
                }
            },
            Mode::Confirm(verb, agent) => {
                if key.code == KeyCode::Char('y') {
                    Action::Run(verb, agent)
                } else {
                    self.message = Some(format!("{} {agent}: cancelled", verb.as_str()));
                    Action::None
                }
            }
            // Any key closes help or the log; `q` also quits from there.
            Mode::Help | Mode::Log(..) if key.code == KeyCode::Char('q') => Action::Quit,
            Mode::Help | Mode::Log(..) => Action::None,
        }
    }

    fn list_key(&mut self, code: KeyCode) -> Action {
        let selected = self.selected().map(|a| a.name.clone());
        match code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Up | KeyCode::Char('k') => self.step(false),
            KeyCode::Down | KeyCode::Char('j') => self.step(true),
            KeyCode::Char('/') => self.mode = Mode::Filter(self.filter.clone()),
            KeyCode::Esc => {
                self.filter.clear();
                self.keep_selection();
            }
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Enter => return selected.map_or(Action::None, Action::Attach),
            KeyCode::Char('l') => return selected.map_or(Action::None, Action::Log),
            KeyCode::Char('s') => {
                if let Some(agent) = selected {
                    self.mode = Mode::Confirm(Verb::Stop, agent);
                }
            }
            KeyCode::Char('r') => {
                if let Some(agent) = selected {
                    self.mode = Mode::Confirm(Verb::Restart, agent);
                }
            }
            KeyCode::Char('p') => {
                if let Some(agent) = selected {
                    self.mode = Mode::Prompt(agent, String::new());
                }
            }
            _ => {}
        }
        Action::None
    }
}

/// Whether the agent waits for a person (its sidecar saw a bell since its last output).
pub fn is_waiting(agent: &Agent) -> bool {
    matches!(agent.activity(), Some((Activity::Waiting, _)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::ls::AgentState;

    fn agent(name: &str, state: AgentState) -> Agent {
        Agent {
            name: name.into(),
            state,
            pane: None,
            row: None,
            socket: None,
            worktree: None,
        }
    }

    fn press(model: &mut Model, code: KeyCode) -> Action {
        model.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn names(model: &Model) -> Vec<&str> {
        model.visible().map(|a| a.name.as_str()).collect()
    }

    fn fleet() -> Model {
        let mut model = Model::new();
        model.set_agents(vec![
            agent("alpha", AgentState::Running),
            agent("beta", AgentState::Running),
            agent("gone", AgentState::Exited),
        ]);
        model
    }

    /// A running agent whose sidecar says `activity`.
    fn busy_or_waiting(name: &str, activity: &str) -> Agent {
        use mosaic_core::status::{scan::Keeper, Row};
        let now = chrono::Utc::now();
        let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let text = format!(
            "ts={ts}\npid=7\nstatus=ok\ninterval=1\nactivity={activity}\nactivity_since={ts}\n"
        );
        let read = mosaic_core::record::parse(text.as_bytes());
        let row = Row::new(name.into(), read, Keeper::Held, now, 30.0);
        Agent {
            name: name.into(),
            state: AgentState::Running,
            pane: None,
            row: Some(row),
            socket: None,
            worktree: None,
        }
    }

    #[test]
    fn waiting_agents_come_first_and_nobody_is_hidden() {
        let mut model = Model::new();
        model.set_agents(vec![
            busy_or_waiting("a-busy", "busy"),
            busy_or_waiting("b-waits", "waiting"),
            agent("c-dead", AgentState::Exited),
            busy_or_waiting("d-waits", "waiting"),
        ]);
        assert!(is_waiting(model.visible().next().unwrap()));
        assert_eq!(names(&model), ["b-waits", "d-waits", "a-busy", "c-dead"]);
    }

    #[test]
    fn the_selection_moves_and_follows_its_agent() {
        let mut model = fleet();
        assert_eq!(model.selected().unwrap().name, "alpha");
        press(&mut model, KeyCode::Char('j'));
        press(&mut model, KeyCode::Down);
        press(&mut model, KeyCode::Down);
        assert_eq!(model.selected().unwrap().name, "gone");
        press(&mut model, KeyCode::Char('k'));
        assert_eq!(model.selected().unwrap().name, "beta");
        // alpha leaves: beta stays selected, at another row.
        model.set_agents(vec![
            agent("beta", AgentState::Running),
            agent("gone", AgentState::Exited),
        ]);
        assert_eq!(model.selected_index(), Some(0));
        assert_eq!(model.selected().unwrap().name, "beta");
    }

    #[test]
    fn a_filter_applies_on_enter_and_esc_clears_it() {
        let mut model = fleet();
        press(&mut model, KeyCode::Char('/'));
        for c in "ta".chars() {
            press(&mut model, KeyCode::Char(c));
        }
        assert_eq!(model.mode, Mode::Filter("ta".into()));
        assert_eq!(names(&model).len(), 3, "not applied while typed");
        press(&mut model, KeyCode::Enter);
        assert_eq!(names(&model), ["beta"]);
        assert_eq!(model.selected().unwrap().name, "beta");
        press(&mut model, KeyCode::Char('/'));
        press(&mut model, KeyCode::Esc);
        assert_eq!(names(&model), ["alpha", "beta", "gone"]);
    }

    #[test]
    fn stop_and_restart_need_a_y() {
        let mut model = fleet();
        assert_eq!(press(&mut model, KeyCode::Char('s')), Action::None);
        assert_eq!(model.mode, Mode::Confirm(Verb::Stop, "alpha".into()));
        assert_eq!(press(&mut model, KeyCode::Char('n')), Action::None);
        assert_eq!(model.mode, Mode::List);
        press(&mut model, KeyCode::Char('r'));
        assert_eq!(
            press(&mut model, KeyCode::Char('y')),
            Action::Run(Verb::Restart, "alpha".into())
        );
        assert_eq!(model.mode, Mode::List);
    }

    #[test]
    fn keys_quit_attach_and_log() {
        let mut model = fleet();
        assert_eq!(
            press(&mut model, KeyCode::Enter),
            Action::Attach("alpha".into())
        );
        assert_eq!(
            press(&mut model, KeyCode::Char('l')),
            Action::Log("alpha".into())
        );
        // A prompt: typed, edited, sent with Enter; Esc and an empty one send nothing.
        press(&mut model, KeyCode::Char('p'));
        for c in "hi;$(x)!".chars() {
            press(&mut model, KeyCode::Char(c));
        }
        press(&mut model, KeyCode::Backspace);
        press(&mut model, KeyCode::Tab);
        assert_eq!(model.mode, Mode::Prompt("alpha".into(), "hi;$(x)".into()));
        assert_eq!(
            press(&mut model, KeyCode::Enter),
            Action::Send("alpha".into(), "hi;$(x)".into())
        );
        press(&mut model, KeyCode::Char('p'));
        press(&mut model, KeyCode::Char('q'));
        assert_eq!(press(&mut model, KeyCode::Esc), Action::None);
        assert_eq!(model.message.as_deref(), Some("send alpha: cancelled"));
        press(&mut model, KeyCode::Char('p'));
        assert_eq!(press(&mut model, KeyCode::Enter), Action::None);
        assert_eq!(model.mode, Mode::List);
        press(&mut model, KeyCode::Char('?'));
        assert_eq!(model.mode, Mode::Help);
        assert_eq!(press(&mut model, KeyCode::Char('x')), Action::None);
        assert_eq!(model.mode, Mode::List);
        assert_eq!(press(&mut model, KeyCode::Char('q')), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        press(&mut model, KeyCode::Char('/'));
        assert_eq!(model.key(ctrl_c), Action::Quit);
        assert_eq!(Model::new().key(ctrl_c), Action::Quit);
        assert_eq!(press(&mut Model::new(), KeyCode::Enter), Action::None);
    }
}

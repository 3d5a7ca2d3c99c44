/*!
`mosaic-fleet ls`: tmux's panes joined with the heartbeat records, one row per agent.

Two reads, whatever the fleet's size: one `tmux list-panes -a` (every session's pane: pid,
dead or alive, exit status or signal) and one pass over the heartbeat directory
([`mosaic_core::status::report`], which classifies each record as `mosaic-hb status` does).

| state          | tmux session            | heartbeat record                                        |
|----------------|-------------------------|---------------------------------------------------------|
| `running`      | pane alive              | `ok`, fresh, for this pane's pid                        |
| `stale`        | pane alive              | `ok` for this pid but old: the sidecar is gone          |
| `no-heartbeat` | pane alive              | none, or not for this pid, or the sidecar was stopped   |
| `exited`       | pane dead, or none      | any (dead pane), or `exited` (no session)               |
| `restarting`   | any                     | `restarting`, fresh: its restart policy starts it again |
| `failed`       | pane dead, or none      | `failed`: its restart policy gave up                    |
| `stopped`      | none                    | `stopped`: a deliberate stop                            |
| `orphan-file`  | none                    | `ok` (fresh or stale): a record for no session here     |
| `invalid`      | any                     | does not parse (with the reason)                        |

A `running` agent whose sidecar reports its activity shows it with its length (`busy 12s`,
`waiting 3m`: see `mosaic_core::activity`), in the ACTIVITY column (left out when no agent has
one) and as `activity`/`activity_s` in JSON.

Live agents (`running`, `stale`, `no-heartbeat`) come first. Agents without a session whose
record is older than [`HIDE_AFTER`] are hidden unless `--all`; the footer says how many.
*/

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use mosaic_core::activity::Activity;
use mosaic_core::death::Death;
use mosaic_core::status::{self, Row, State};
use serde::Serialize;

use super::{failed, print, tmux_failed, Fail, Fleet, Where};
use crate::tmux::PaneRow;

pub const HELP: &str = "Environment: each option above reads the variable shown beside it.\n\
    Exit codes: 0 the report was printed, 1 tmux or the heartbeat dir failed at run time, 2 bad \
    input.\n\
    States: running, stale (sidecar gone), no-heartbeat, restarting, exited, failed (its restart \
    policy gave up), stopped, orphan-file (a record with no session on this socket), invalid.";

/// Records of agents long gone are hidden after this (seconds) unless `--all`.
pub const HIDE_AFTER: f64 = 24.0 * 3600.0;

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Also show agents gone for more than 24 hours.
    #[arg(long)]
    all: bool,
    /// Print a JSON object: {socket, hb_dir, agents: [...], hidden}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    place: Where,
}

/// An agent's state in the fleet view. The order is the listing's and the summary's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgentState {
    Running,
    Stale,
    NoHeartbeat,
    Restarting,
    Exited,
    Failed,
    Stopped,
    OrphanFile,
    Invalid,
}

impl AgentState {
    pub const ALL: [AgentState; 9] = [
        AgentState::Running,
        AgentState::Stale,
        AgentState::NoHeartbeat,
        AgentState::Restarting,
        AgentState::Exited,
        AgentState::Failed,
        AgentState::Stopped,
        AgentState::OrphanFile,
        AgentState::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Running => "running",
            AgentState::Stale => "stale",
            AgentState::NoHeartbeat => "no-heartbeat",
            AgentState::Restarting => "restarting",
            AgentState::Exited => "exited",
            AgentState::Failed => "failed",
            AgentState::Stopped => "stopped",
            AgentState::OrphanFile => "orphan-file",
            AgentState::Invalid => "invalid",
        }
    }

    /// Whether tmux shows the agent's process alive.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            AgentState::Running | AgentState::Stale | AgentState::NoHeartbeat
        )
    }
}

/// One agent: its session's pane and its heartbeat record, either of which may be missing.
#[derive(Clone, Debug)]
pub struct Agent {
    pub name: String,
    pub state: AgentState,
    pub pane: Option<PaneRow>,
    pub row: Option<Row>,
    /// For an `orphan-file` row: the other socket its launch file says it was started on.
    pub socket: Option<String>,
    /// Its git worktree and branch (`--worktree`), as its launch file says.
    pub worktree: Option<(PathBuf, String)>,
}

impl Agent {
    /// Restarts by the sidecar's restart policy, when it has one.
    pub fn restarts(&self) -> Option<u32> {
        self.row.as_ref()?.record.as_ref()?.lifecycle.restarts
    }

    /// The agent's pid: the pane's, else the record's.
    pub fn pid(&self) -> Option<i32> {
        self.pane
            .as_ref()
            .and_then(|p| p.pid)
            .or_else(|| self.record_pid())
    }

    fn record_pid(&self) -> Option<i32> {
        self.row.as_ref()?.record.as_ref().map(|r| r.pid)
    }

    /// Its activity (busy, idle, waiting) and for how long, while it is running and its
    /// sidecar reports one.
    pub fn activity(&self) -> Option<(Activity, f64)> {
        if self.state != AgentState::Running {
            return None;
        }
        self.row.as_ref()?.activity
    }

    /// Seconds since the heartbeat record was written.
    pub fn hb_age(&self) -> Option<f64> {
        self.row.as_ref()?.age
    }

    /// Seconds the current run has been up (live panes only): its process's age, not its
    /// session's, which counts every run a restart kept it for (the session's age if the
    /// process cannot be read).
    pub fn uptime(&self, now: i64) -> Option<i64> {
        let pane = self.pane.as_ref().filter(|p| !p.dead)?;
        match pane.pid.and_then(mosaic_core::proc::age) {
            Some(age) => Some(age as i64),
            None => Some(now - pane.created?),
        }
    }

    /// How the last run ended (exit status or signal) and when (seconds since the epoch):
    /// tmux's word for a dead pane, else the record's, which outlives the session.
    pub fn ended(&self) -> Option<(Death, Option<i64>)> {
        if let Some(pane) = self.pane.as_ref().filter(|p| p.dead) {
            return Some((pane.death, pane.dead_time));
        }
        if self.state.is_live() {
            return None;
        }
        let record = self.row.as_ref()?.record.as_ref()?;
        let death = match (record.lifecycle.exit_status, record.lifecycle.exit_signal) {
            (Some(status), _) => Death::Status(status),
            (None, Some(sig)) => Death::Signal(sig),
            (None, None) => return None,
        };
        // A stopped record was written later than the end it keeps: no time for it.
        let time =
            (record.status != mosaic_core::record::Status::Stopped).then(|| record.ts.timestamp());
        Some((death, time))
    }

    /// Whether it is gone for longer than [`HIDE_AFTER`] (never a session, never invalid).
    pub fn long_gone(&self) -> bool {
        self.pane.is_none()
            && self.state != AgentState::Invalid
            && self.hb_age().is_some_and(|age| age > HIDE_AFTER)
    }
}

/// The fleet view: panes and records joined, sorted live first, then by name.
pub fn join(panes: Vec<PaneRow>, rows: Vec<Row>) -> Vec<Agent> {
    let mut rows: std::collections::HashMap<String, Row> =
        rows.into_iter().map(|r| (r.agent.clone(), r)).collect();
    let mut agents: Vec<Agent> = Vec::with_capacity(panes.len() + rows.len());
    for pane in panes {
        let row = rows.remove(&pane.session);
        agents.push(Agent {
            name: pane.session.clone(),
            state: with_session(&pane, row.as_ref()),
            pane: Some(pane),
            row,
            socket: None,
            worktree: None,
        });
    }
    for (name, row) in rows {
        agents.push(Agent {
            name,
            state: without_session(&row),
            pane: None,
            row: Some(row),
            socket: None,
            worktree: None,
        });
    }
    agents.sort_by(|a, b| (!a.state.is_live(), &a.name).cmp(&(!b.state.is_live(), &b.name)));
    agents
}

fn with_session(pane: &PaneRow, row: Option<&Row>) -> AgentState {
    if row.is_some_and(|r| r.state == State::Invalid) {
        return AgentState::Invalid;
    }
    let said = row.map(|r| r.state);
    if said == Some(State::Restarting) {
        return AgentState::Restarting;
    }
    if pane.dead {
        return match said {
            Some(State::Failed) => AgentState::Failed,
            _ => AgentState::Exited,
        };
    }
    let record = row.and_then(|r| r.record.as_ref().map(|rec| (r.state, rec)));
    match record {
        Some((state, rec)) if pane.pid.is_none_or(|pid| rec.pid == pid) => {
            match state {
                State::Ok => AgentState::Running,
                State::Stale => AgentState::Stale,
                // The pane is alive: a sidecar that stopped (or saw its pid end while tmux
                // still shows it) no longer vouches for it.
                _ => AgentState::NoHeartbeat,
            }
        }
        _ => AgentState::NoHeartbeat,
    }
}

fn without_session(row: &Row) -> AgentState {
    match row.state {
        State::Invalid => AgentState::Invalid,
        State::Exited => AgentState::Exited,
        State::Failed => AgentState::Failed,
        State::Restarting => AgentState::Restarting,
        State::Stopped => AgentState::Stopped,
        State::Ok | State::Stale => AgentState::OrphanFile,
    }
}

/// Reads the fleet: one tmux round trip and one pass over the heartbeat directory. A missing
/// heartbeat directory is an empty one (no agent has written there yet).
pub fn read(fleet: &Fleet) -> Result<Vec<Agent>, Fail> {
    let panes = fleet.tmux().list_panes().map_err(tmux_failed)?;
    let rows = if fleet.hb_dir.exists() {
        status::report(&fleet.hb_dir, status::classify::STALE_AFTER)
            .map_err(|f| failed(f.message))?
    } else {
        Vec::new()
    };
    let mut agents = join(panes, rows);
    // From its launch file: its worktree, and whose an orphan is (a heartbeat dir shared by
    // two sockets shows each one's agents as orphans of the other: the file names the socket).
    for agent in agents.iter_mut() {
        let Ok(name) = mosaic_core::validate::agent(&agent.name) else {
            continue;
        };
        let Ok(Some(config)) = crate::config::LaunchConfig::load(&fleet.hb_dir, name) else {
            continue;
        };
        agent.worktree = config.worktree.map(|wt| (wt.path, wt.branch));
        if agent.state == AgentState::OrphanFile && config.socket != fleet.socket {
            agent.socket = Some(config.socket);
        }
    }
    Ok(agents)
}

/// An agent's worktree and branch, from its launch file (`--worktree`).
pub fn worktree_of(hb_dir: &std::path::Path, agent: &str) -> Option<(PathBuf, String)> {
    let agent = mosaic_core::validate::agent(agent).ok()?;
    let config = crate::config::LaunchConfig::load(hb_dir, agent).ok()??;
    config.worktree.map(|wt| (wt.path, wt.branch))
}

pub fn run(args: &LsArgs) -> Result<ExitCode, Fail> {
    let fleet = args.place.resolve()?;
    let agents = read(&fleet)?;
    let (shown, hidden): (Vec<Agent>, Vec<Agent>) =
        agents.into_iter().partition(|a| args.all || !a.long_gone());
    let now = Utc::now();
    let text = if args.json {
        json(&fleet, &shown, hidden.len(), now)
    } else {
        table(&fleet, &shown, hidden.len(), now)
    };
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// What ended the last run, and when: `status 3, 2m ago` / `signal 15, 5s ago`.
pub fn exit_text(agent: &Agent, now: i64) -> Option<String> {
    let (death, time) = agent.ended()?;
    let how = match death {
        Death::Signal(sig) => format!("signal {sig}"),
        Death::Status(status) => format!("status {status}"),
        Death::Unknown => "dead".to_string(),
    };
    Some(match time {
        Some(t) => format!(
            "{how}, {} ago",
            status::render::format_age((now - t) as f64)
        ),
        None => how,
    })
}

fn note(agent: &Agent) -> String {
    match agent.state {
        // `mosaic-hb status` says why a record is invalid or stale.
        AgentState::Invalid | AgentState::Stale => agent
            .row
            .as_ref()
            .and_then(|r| r.reason.clone())
            .unwrap_or_default(),
        AgentState::NoHeartbeat => "no sidecar watches it".into(),
        AgentState::OrphanFile => match &agent.socket {
            Some(socket) => format!("no session on this socket: launched on socket {socket}"),
            None => "a record with no session on this socket".into(),
        },
        _ => String::new(),
    }
}

fn table(fleet: &Fleet, agents: &[Agent], hidden: usize, now: DateTime<Utc>) -> String {
    let secs = now.timestamp();
    let mut out = format!(
        "socket {} ({}), heartbeat dir {}\n",
        fleet.socket,
        crate::tmux::socket_path(&fleet.socket).display(),
        fleet.hb_dir.display()
    );
    let dash = || "-".to_string();
    // RESTARTS only when some agent runs under a restart policy.
    let with_restarts = agents.iter().any(|a| a.restarts().is_some());
    let mut cells: Vec<[String; 11]> = vec![[
        "AGENT",
        "STATE",
        "ACTIVITY",
        "PID",
        "UPTIME",
        "RESTARTS",
        "EXIT",
        "HEARTBEAT",
        "BRANCH",
        "WORKTREE",
        "NOTE",
    ]
    .map(String::from)];
    // ACTIVITY only when some agent reports one (sidecars started alone, on no terminal, do not).
    let with_activity = agents.iter().any(|a| a.activity().is_some());
    for agent in agents {
        cells.push([
            status::render::printable(&agent.name),
            agent.state.as_str().to_string(),
            agent
                .activity()
                .map_or_else(dash, status::render::format_activity),
            agent.pid().map_or_else(dash, |p| p.to_string()),
            agent
                .uptime(secs)
                .map_or_else(dash, |s| status::render::format_age(s as f64)),
            agent.restarts().map_or_else(dash, |n| n.to_string()),
            exit_text(agent, secs).unwrap_or_else(dash),
            agent.hb_age().map_or_else(dash, |age| {
                format!("{} ago", status::render::format_age(age))
            }),
            agent.worktree.as_ref().map_or_else(dash, |w| w.1.clone()),
            agent
                .worktree
                .as_ref()
                .map_or_else(dash, |w| status::render::printable(&w.0.to_string_lossy())),
            status::render::printable(&note(agent)),
        ]);
    }
    // BRANCH and WORKTREE only when some agent has its own worktree.
    let with_worktree = agents.iter().any(|a| a.worktree.is_some());
    if !agents.is_empty() {
        status::render::columns(&mut out, &cells, |i| match i {
            2 => with_activity,
            5 => with_restarts,
            8 | 9 => with_worktree,
            _ => true,
        });
    }
    out.push_str(&summary(agents));
    if hidden > 0 {
        let _ = write!(
            out,
            " ({hidden} gone for over 24h not shown; --all shows them)"
        );
    }
    out.push('\n');
    out
}

/// `4 agents: 2 running, 1 exited, 1 stopped` (states with no agent left out).
pub fn summary(agents: &[Agent]) -> String {
    status::render::summary_line(
        agents.len(),
        AgentState::ALL.map(|state| {
            let count = agents.iter().filter(|a| a.state == state).count();
            (state.as_str(), count)
        }),
    )
}

/// `ls --json`: `socket`, `hb_dir`, `agents` (one object per agent and per line), `hidden`.
fn json(fleet: &Fleet, agents: &[Agent], hidden: usize, now: DateTime<Utc>) -> String {
    let secs = now.timestamp();
    let report = JsonLs {
        socket: &fleet.socket,
        hb_dir: fleet.hb_dir.to_string_lossy(),
        agents: agents.iter().map(|a| JsonAgent::new(a, secs)).collect(),
        hidden,
    };
    let mut out = mosaic_core::json::lines(&report);
    out.push('\n');
    out
}

#[derive(Serialize)]
struct JsonLs<'a> {
    socket: &'a str,
    hb_dir: Cow<'a, str>,
    agents: Vec<JsonAgent<'a>>,
    hidden: usize,
}

/// One agent of `ls --json`, its fields in the order they have always had.
#[derive(Serialize)]
struct JsonAgent<'a> {
    agent: &'a str,
    state: &'static str,
    pid: Option<i32>,
    session: bool,
    uptime_s: Option<i64>,
    exit_status: Option<i32>,
    exit_signal: Option<i32>,
    exited_at: Option<String>,
    hb_age_s: Option<f64>,
    restarts: Option<u32>,
    activity: Option<&'static str>,
    activity_s: Option<f64>,
    note: Option<String>,
    /// Only for an agent with its own worktree (`--worktree`).
    #[serde(skip_serializing_if = "Option::is_none")]
    worktree: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    branch: Option<&'a str>,
}

impl<'a> JsonAgent<'a> {
    fn new(agent: &'a Agent, now: i64) -> JsonAgent<'a> {
        let ended = agent.ended();
        let note = note(agent);
        JsonAgent {
            agent: &agent.name,
            state: agent.state.as_str(),
            pid: agent.pid(),
            session: agent.pane.is_some(),
            uptime_s: agent.uptime(now),
            exit_status: ended.and_then(|(d, _)| d.keys().0),
            exit_signal: ended.and_then(|(d, _)| d.keys().1),
            exited_at: ended
                .and_then(|(_, t)| DateTime::from_timestamp(t?, 0))
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            hb_age_s: agent.hb_age(),
            restarts: agent.restarts(),
            activity: agent.activity().map(|(a, _)| a.as_str()),
            activity_s: agent.activity().map(|(_, secs)| secs),
            note: (!note.is_empty()).then_some(note),
            worktree: agent.worktree.as_ref().map(|w| w.0.to_string_lossy()),
            branch: agent.worktree.as_ref().map(|w| w.1.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosaic_core::record::Status;

    fn pane(name: &str, pid: i32, dead: bool) -> PaneRow {
        PaneRow {
            session: name.into(),
            pid: Some(pid),
            dead,
            death: if dead {
                Death::Status(3)
            } else {
                Death::Unknown
            },
            dead_time: dead.then_some(100),
            created: Some(50),
        }
    }

    /// A row as `mosaic-hb status` makes it, from a record that classifies as `state`.
    fn row(name: &str, pid: i32, state: State) -> Row {
        use mosaic_core::status::scan::Keeper;
        let status = match state {
            State::Exited => Status::Exited,
            State::Stopped => Status::Stopped,
            _ => Status::Ok,
        };
        let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let text = format!(
            "ts={ts}\npid={pid}\nstatus={}\ninterval=1\n",
            status.as_str()
        );
        let read = match state {
            State::Invalid => Err("bad".to_string()),
            _ => mosaic_core::record::parse(text.as_bytes()),
        };
        // A free lock makes an ok record stale at once.
        let keeper = match state {
            State::Stale => Keeper::LockFree,
            _ => Keeper::Held,
        };
        let row = Row::new(
            name.as_bytes().to_vec(),
            read,
            keeper,
            Utc::now(),
            status::classify::STALE_AFTER,
        );
        assert_eq!(row.state, state, "{row:?}");
        row
    }

    #[test]
    fn every_state_comes_from_its_join() {
        let panes = vec![
            pane("live", 10, false),
            pane("dead", 11, true),
            pane("stale", 12, false),
            pane("bare", 13, false),
            pane("reused", 14, false),
        ];
        let rows = vec![
            row("live", 10, State::Ok),
            row("dead", 11, State::Exited),
            row("stale", 12, State::Stale),
            row("reused", 99, State::Ok),
            row("stopped", 15, State::Stopped),
            row("gone", 16, State::Exited),
            row("orphan", 17, State::Ok),
            row("junk", 0, State::Invalid),
        ];
        let got: Vec<(String, AgentState)> = join(panes, rows)
            .into_iter()
            .map(|a| (a.name, a.state))
            .collect();
        use AgentState::*;
        let want = [
            ("bare", NoHeartbeat),
            ("live", Running),
            ("reused", NoHeartbeat),
            ("stale", Stale),
            ("dead", Exited),
            ("gone", Exited),
            ("junk", Invalid),
            ("orphan", OrphanFile),
            ("stopped", Stopped),
        ];
        let want: Vec<(String, AgentState)> =
            want.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn dead_panes_say_how_and_when() {
        let agent = |pane: PaneRow| Agent {
            name: pane.session.clone(),
            state: if pane.dead {
                AgentState::Exited
            } else {
                AgentState::Running
            },
            pane: Some(pane),
            row: None,
            socket: None,
            worktree: None,
        };
        let mut p = pane("d", 1, true);
        assert_eq!(
            exit_text(&agent(p.clone()), 130).as_deref(),
            Some("status 3, 30s ago")
        );
        p.death = Death::Signal(15);
        assert_eq!(
            exit_text(&agent(p), 100).as_deref(),
            Some("signal 15, 0s ago")
        );
        assert_eq!(exit_text(&agent(pane("l", 1, false)), 100), None);
    }
}

/*!
What a launch says it did: [`Report`] (its [`Outcome`] and the sidecar's part), printed as one
line of text or one JSON object, and the launch configuration stored beside the record of an
agent this run started (`mosaic-fleet restart` reads it).
*/

use std::borrow::Cow;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::plan::Plan;
use super::say;
use crate::config::LaunchConfig;
use crate::tmux::DeadPane;

/// How the agent came to be running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Started,
    AlreadyRunning,
    /// Its pane was dead (the previous run's end is kept here) and was started again.
    Restarted(DeadPane),
    /// Its pane is dead and its own supervising sidecar starts it again (when, if known):
    /// left to that sidecar.
    Restarting(DeadPane, Option<DateTime<Utc>>),
}

/// The sidecar's part in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarState {
    Started,
    /// Kept by a sidecar that was already running.
    Running,
    None,
}

impl SidecarState {
    fn as_str(self) -> &'static str {
        match self {
            SidecarState::Started => "started",
            SidecarState::Running => "running",
            SidecarState::None => "none",
        }
    }
}

/// What happened, for the report.
pub struct Report {
    pub outcome: Outcome,
    pub pane_pid: Option<i32>,
    pub sidecar: SidecarState,
    /// The heartbeat file the agent has (the session's own, which may differ from the plan's).
    pub heartbeat: Option<PathBuf>,
    /// A previously running sidecar was replaced.
    pub healed: bool,
}

/// Stores the configuration of an agent this run started, so `mosaic-fleet restart` can start
/// it again the same way. The agent runs either way: a failure is a warning, not an error.
pub fn store_config(plan: &Plan, report: &Report, program: &str) {
    let Some(config) = LaunchConfig::of(plan) else {
        return;
    };
    if report.outcome == Outcome::AlreadyRunning || report.sidecar != SidecarState::Started {
        return;
    }
    if let Err(why) = config.store() {
        say(
            program,
            &format!("warning: {why} (`mosaic-fleet restart` cannot restart it)"),
        );
    }
}

/// The one line a person reads.
pub(super) fn render_text(plan: &Plan, report: &Report) -> String {
    let ended = |death: &DeadPane| at(death.time.and_then(|t| DateTime::from_timestamp(t, 0)));
    let mut line = match &report.outcome {
        Outcome::Started => format!(
            "started agent {} on tmux socket {}",
            plan.agent, plan.socket
        ),
        Outcome::AlreadyRunning => format!(
            "agent {} already running on tmux socket {}",
            plan.agent, plan.socket
        ),
        Outcome::Restarted(death) => format!(
            "restarted agent {} on tmux socket {} (its last run ended with {}{})",
            plan.agent,
            plan.socket,
            death.describe(),
            ended(death)
        ),
        Outcome::Restarting(death, due) => format!(
            "agent {} is restarting on tmux socket {} (its last run ended with {}{}): its \
             sidecar starts it again{}",
            plan.agent,
            plan.socket,
            death.describe(),
            ended(death),
            at(*due)
        ),
    };
    if let Some(pid) = report.pane_pid {
        line += &format!(": pane pid {pid}");
    }
    match (&report.heartbeat, report.sidecar) {
        (Some(file), SidecarState::Started) => line += &format!(", heartbeat {}", file.display()),
        (Some(file), SidecarState::Running) => {
            line += &format!(", heartbeat {} (sidecar running)", file.display())
        }
        _ => line += ", no heartbeat",
    }
    if report.healed {
        line += " (sidecar restarted)";
    }
    if let Some(wt) = &plan.worktree {
        line += &format!(", worktree {} on branch {}", wt.path.display(), wt.branch);
    }
    line
}

/// ` at 2026-11-27T16:29:23Z`, or nothing.
fn at(time: Option<DateTime<Utc>>) -> String {
    time.map_or(String::new(), |t| {
        format!(
            " at {}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    })
}

/// The one JSON object a program reads.
pub(super) fn render_json(plan: &Plan, report: &Report) -> String {
    let heartbeat = match (&report.heartbeat, report.sidecar) {
        (Some(file), SidecarState::Started | SidecarState::Running) => Some(file.to_string_lossy()),
        _ => None,
    };
    let status = match report.outcome {
        Outcome::Started => "started",
        Outcome::AlreadyRunning => "already running",
        Outcome::Restarted(_) => "restarted",
        Outcome::Restarting(..) => "restarting",
    };
    // How the previous run ended, as tmux kept it: only after a restart.
    let previous = match &report.outcome {
        Outcome::Restarted(dead) | Outcome::Restarting(dead, _) => Some(dead),
        _ => None,
    };
    let restart_at = match &report.outcome {
        Outcome::Restarting(_, due) => {
            Some(due.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        }
        _ => None,
    };
    let json = JsonReport {
        agent: plan.agent.as_str(),
        socket: plan.socket.as_str(),
        status,
        pane_pid: report.pane_pid,
        heartbeat,
        sidecar: report.sidecar.as_str(),
        workdir: plan.workdir.to_string_lossy(),
        worktree: plan.worktree.as_ref().map(|wt| wt.path.to_string_lossy()),
        branch: plan.worktree.as_ref().map(|wt| wt.branch.as_str()),
        previous_exit_status: previous.map(|d| d.death.keys().0),
        previous_signal: previous.map(|d| d.death.keys().1),
        previous_time: previous.map(|d| d.time),
        restart_at,
    };
    serde_json::to_string(&json).expect("a report serializes")
}

/// `--json`'s one object. A field that is `Some(None)` is `null`; a `None` one is left out.
#[derive(Serialize)]
struct JsonReport<'a> {
    agent: &'a str,
    socket: &'a str,
    status: &'static str,
    pane_pid: Option<i32>,
    heartbeat: Option<Cow<'a, str>>,
    sidecar: &'static str,
    workdir: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worktree: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    branch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_exit_status: Option<Option<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_signal: Option<Option<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_time: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_at: Option<Option<String>>,
}

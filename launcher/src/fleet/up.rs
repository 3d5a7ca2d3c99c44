/*!
`mosaic-fleet up`, `diff` and `down`: the fleet file applied to what runs.

One look at the fleet (one `tmux list-panes -a`, one pass over the heartbeat directory, the
launch files of the file's agents), then a plan, one [`Step`] per agent of the file:

| the agent                                   | step                                   |
|---------------------------------------------|----------------------------------------|
| no session, exited, failed, stopped         | `start` (a dead pane is started again) |
| live, its stored launch configuration equal | nothing (no tmux call, no write)       |
| live, only `labels` differ                  | `update`: the launch file rewritten    |
| live, anything else differs (or none stored)| `restart`: stop, then start            |
| live, equal, but its sidecar gone or late   | `heal`: the launcher restarts the sidecar |
| restarting by its sidecar, equal            | left to that sidecar                   |
| restarting by its sidecar, changed          | `restart`                              |

and agents on the socket that the file does not name: reported, and with `--prune` stopped
and their files pruned. What is compared is the resolved [`LaunchConfig`] the launcher stores
beside the record (`HB_DIR/.AGENT.launch`), so relative paths or another caller's directory
change nothing. `diff` prints the plan (exit 0 in step, 3 when `up` would change something);
`up` carries it out: the stops first (all at once, one grace), then the launches, each through
the launcher's own `plan`/`launch` (so a start means what `mosaic-launcher` means by it). One
agent's failure does not stop the others; the summary names each. `down` stops the file's
agents and no other.
*/

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use mosaic_core::status;
use serde::Serialize;

use super::file::{self, FleetFile, Overrides};
use super::ls::{self, AgentState};
use super::prune::Pruned;
use super::stop::{self, Was};
use super::{failed, print, tmux_failed, usage, Fail, Fleet};
use crate::child::Stop;
use crate::config::LaunchConfig;
use crate::launch::{self, Outcome, SidecarState};
use mosaic_core::lock::Turn;

/// `diff`'s exit code when `up` would change something.
const DIFFERS: u8 = 3;

pub const UP_HELP: &str = "Environment: each option above reads the variable shown beside it; \
    MOSAIC_HB_BIN names mosaic-hb as for the launcher. No other MOSAIC_* variable reaches an \
    agent: the file says what each agent is.\n\
    Exit codes: 0 the fleet matches the file, 1 an agent failed to start or stop (the others \
    went on; the summary names each), 2 bad input (a bad file: nothing was started or written), \
    129/130/143 interrupted (launches not begun are not started).";

pub const DIFF_HELP: &str = "Environment: each option above reads the variable shown beside it.\n\
    Exit codes: 0 the fleet matches the file, 3 `up` would change something, 1 failed at run \
    time, 2 bad input.";

pub const DOWN_HELP: &str = "Environment: each option above reads the variable shown beside it.\n\
    Exit codes: 0 done, 1 failed at run time, 2 bad input (nothing was stopped).";

/// The fleet file and where its fleet lives: the file's `[fleet]`, unless a flag or its
/// variable says otherwise.
#[derive(Args, Debug)]
pub struct FileArgs {
    /// The fleet file.
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = file::DEFAULT_FILE)]
    file: PathBuf,
    /// tmux socket name, over the file's `[fleet] socket` [default: mosaic].
    #[arg(long, env = "MOSAIC_TMUX_SOCKET", value_name = "SOCKET")]
    socket: Option<OsString>,
    /// Heartbeat directory, over the file's `[fleet] hb_dir` [default: $XDG_RUNTIME_DIR/
    /// mosaic/heartbeat, else /tmp/mosaic-UID/heartbeat].
    #[arg(long, env = "MOSAIC_HEARTBEAT_RUN_DIR", value_name = "DIR")]
    hb_dir: Option<OsString>,
    /// Deadline in seconds for every tmux call and sidecar start, 0.01 to 3600.
    #[arg(
        long,
        env = "MOSAIC_TMUX_TIMEOUT",
        value_name = "SECS",
        default_value = "10",
        value_parser = super::tmux_timeout
    )]
    tmux_timeout: Duration,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    place: FileArgs,
    /// Also stop the agents on the socket that the file does not name, and prune their files.
    #[arg(long)]
    prune: bool,
    /// Report one JSON object: {file, socket, hb_dir, agents: [...], not_in_file, unchanged}.
    #[arg(long)]
    json: bool,
    /// Seconds between SIGTERM and SIGKILL for the agents stopped (restarted or pruned).
    #[arg(long = "grace", value_name = "SECS", default_value = "10", value_parser = super::seconds)]
    grace: Duration,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    place: FileArgs,
    /// Plan as `up --prune` would: agents the file does not name count as changes.
    #[arg(long)]
    prune: bool,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    #[command(flatten)]
    place: FileArgs,
    /// Report in JSON, one object per line per agent stopped.
    #[arg(long)]
    json: bool,
    /// Seconds between SIGTERM and SIGKILL, 0 to 86400.
    #[arg(long = "grace", value_name = "SECS", default_value = "10", value_parser = super::seconds)]
    grace: Duration,
}

/// What `up` does with one agent of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not running: started (`was` says how it was found, if at all).
    Start { was: Option<AgentState> },
    /// Running as the file says: untouched.
    Keep,
    /// Running as the file says, but its sidecar is gone or late: the launcher heals it.
    Heal { was: AgentState },
    /// Running, configured otherwise: stopped, then started. The keys that differ.
    Restart { keys: Vec<&'static str> },
    /// Running, only keys differ that it does not run with (labels; a worktree's base,
    /// setup, teardown): its launch file is rewritten.
    Update { keys: Vec<&'static str> },
    /// Its sidecar's restart policy is starting it again as the file says: left to it.
    Restarting,
}

impl Step {
    fn changes(&self) -> bool {
        !matches!(self, Step::Keep | Step::Restarting)
    }
}

/// The plan for a file.
pub struct Converge {
    /// One step per agent of the file, in the file's (name) order.
    pub steps: Vec<Step>,
    /// Agents on the socket that the file does not name.
    pub extra: Vec<String>,
    /// Sessions on the socket, as read.
    sessions: BTreeSet<String>,
}

/// Reads the fleet and plans; touches nothing.
pub fn converge(file: &FleetFile, fleet: &Fleet) -> Result<Converge, Fail> {
    let panes = fleet.tmux().list_panes().map_err(tmux_failed)?;
    let rows = if fleet.hb_dir.exists() {
        status::report(&fleet.hb_dir, status::classify::STALE_AFTER)
            .map_err(|f| failed(f.message))?
    } else {
        Vec::new()
    };
    let agents: BTreeMap<String, AgentState> = ls::join(panes.clone(), rows)
        .into_iter()
        .map(|a| (a.name, a.state))
        .collect();
    let named: BTreeSet<&str> = file.agents.iter().map(|a| a.name.as_str()).collect();
    let mut steps = Vec::with_capacity(file.agents.len());
    for agent in &file.agents {
        let state = agents.get(&agent.name).copied();
        let stored = || {
            LaunchConfig::load(&fleet.hb_dir, &agent.name)
                .ok()
                .flatten()
        };
        let differs = || match stored() {
            Some(stored) => file::changed(&stored, &agent.config),
            None => vec!["launch configuration (none stored)"],
        };
        let step = match state {
            None
            | Some(
                AgentState::Exited
                | AgentState::Failed
                | AgentState::Stopped
                | AgentState::OrphanFile
                | AgentState::Invalid,
            ) => Step::Start { was: state },
            Some(AgentState::Restarting) => match differs() {
                keys if keys.is_empty() => Step::Restarting,
                keys => Step::Restart { keys },
            },
            Some(live @ (AgentState::Running | AgentState::Stale | AgentState::NoHeartbeat)) => {
                match differs() {
                    keys if keys.is_empty() && live == AgentState::Running => Step::Keep,
                    keys if keys.is_empty() => Step::Heal { was: live },
                    keys if file::only_stored(&keys) && live == AgentState::Running => {
                        Step::Update { keys }
                    }
                    keys => Step::Restart { keys },
                }
            }
        };
        steps.push(step);
    }
    // Not in the file: a session on this socket, or a record whose launch file names this
    // socket (a heartbeat dir may be shared by fleets on other sockets: theirs are not ours).
    let extra = agents
        .iter()
        .filter(|(name, _)| !named.contains(name.as_str()))
        .filter(|(name, state)| {
            panes.iter().any(|p| &p.session == *name)
                || (**state != AgentState::Stopped
                    && LaunchConfig::load(&fleet.hb_dir, name)
                        .ok()
                        .flatten()
                        .is_some_and(|c| c.socket == fleet.socket))
        })
        .map(|(name, _)| name.clone())
        .collect();
    let sessions = panes.into_iter().map(|p| p.session).collect();
    Ok(Converge {
        steps,
        extra,
        sessions,
    })
}

fn load(args: &FileArgs) -> Result<(FleetFile, Fleet), Fail> {
    let over = Overrides {
        socket: args.socket.clone(),
        hb_dir: args.hb_dir.clone(),
        timeout: Some(args.tmux_timeout),
        hb_bin: std::env::var_os("MOSAIC_HB_BIN").filter(|b| !b.is_empty()),
    };
    let file = file::load(&args.file, &over).map_err(|r| usage(r.0))?;
    let fleet = Fleet {
        socket: file.socket.clone(),
        hb_dir: file.hb_dir.clone(),
        timeout: args.tmux_timeout,
    };
    Ok((file, fleet))
}

/// How a state is said in a plan: "exited", "failed (its restart policy gave up)".
fn was_text(state: AgentState) -> &'static str {
    match state {
        AgentState::Failed => "failed: its restart policy gave up",
        AgentState::Stale => "its sidecar is late",
        AgentState::NoHeartbeat => "no sidecar keeps its heartbeat",
        AgentState::OrphanFile => "a record but no session",
        other => other.as_str(),
    }
}

/// The plan as `diff` prints it, one line per change, then how many are unchanged.
fn render_plan(file: &FleetFile, plan: &Converge, prune: bool) -> String {
    let mut out = String::new();
    let mut unchanged = 0;
    for (agent, step) in file.agents.iter().zip(&plan.steps) {
        let name = &agent.name;
        match step {
            Step::Start { was: None } => out += &format!("+ start {name}\n"),
            Step::Start { was: Some(was) } => {
                out += &format!("+ start {name} ({})\n", was_text(*was))
            }
            Step::Restart { keys } => {
                out += &format!("~ restart {name} ({} changed)\n", keys.join(", "))
            }
            Step::Update { keys } => {
                out += &format!("~ update {name} ({} changed)\n", keys.join(", "))
            }
            Step::Heal { was } => {
                out += &format!("~ heal {name} ({}: restart the sidecar)\n", was_text(*was))
            }
            Step::Restarting => {
                out += &format!("= {name} is restarting (left to its sidecar)\n");
                unchanged += 1;
            }
            Step::Keep => unchanged += 1,
        }
    }
    let path = file.path.display();
    for name in &plan.extra {
        out += &if prune {
            format!("- stop {name} (not in {path}; its files pruned)\n")
        } else {
            format!("? {name} is not in {path} (left alone; `up --prune` stops it)\n")
        };
    }
    out += &format!("{unchanged} unchanged\n");
    out
}

pub fn run_diff(args: &DiffArgs) -> Result<ExitCode, Fail> {
    let (file, fleet) = load(&args.place)?;
    let plan = converge(&file, &fleet)?;
    print(&render_plan(&file, &plan, args.prune))?;
    let differs = plan.steps.iter().any(Step::changes) || (args.prune && !plan.extra.is_empty());
    Ok(if differs {
        ExitCode::from(DIFFERS)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `up` did with one agent.
struct Done {
    agent: String,
    /// `start`, `restart`, `heal`, `update`, `stop` (pruned), `keep`, `restarting`.
    action: &'static str,
    changed: Vec<&'static str>,
    /// What came of it: the launcher's outcome, or why it failed.
    result: Result<Option<launch::Report>, String>,
}

pub fn run_up(args: &UpArgs) -> Result<ExitCode, Fail> {
    let (file, fleet) = load(&args.place)?;
    let plan = converge(&file, &fleet)?;
    let stop_signals = Stop::new();
    let mut done: Vec<Done> = Vec::with_capacity(file.agents.len());

    // 1. The stops, all at once: agents restarted, and those pruned.
    let mut stopping: Vec<&str> = file
        .agents
        .iter()
        .zip(&plan.steps)
        .filter(|(_, s)| matches!(s, Step::Restart { .. }))
        .map(|(a, _)| a.name.as_str())
        .collect();
    if args.prune {
        stopping.extend(plan.extra.iter().map(String::as_str));
    }
    let stopped: BTreeMap<String, stop::Stopped> = stop::stop(&fleet, &stopping, args.grace)?
        .into_iter()
        .map(|s| (s.agent.clone(), s))
        .collect();

    launch_all(&file, &plan, &stopped, &stop_signals, &mut done);
    let pruned = if args.prune {
        prune_extra(&fleet, &plan, &stopped, &mut done)
    } else {
        Pruned::default()
    };

    let out = if args.json {
        render_up_json(&file, &plan, &done, &pruned, args.prune)
    } else {
        render_up_text(&file, &plan, &done, &pruned, args.prune)
    };
    print(&out)?;
    let failures: Vec<String> = done
        .iter()
        .filter_map(|d| {
            d.result
                .as_ref()
                .err()
                .map(|why| format!("{} ({why})", d.agent))
        })
        .collect();
    if let Some(sig) = stop_signals.signal() {
        eprintln!(
            "mosaic-fleet: up interrupted by signal {sig}: agents not begun were not started"
        );
        return Ok(ExitCode::from(128 + sig as u8));
    }
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    Err(failed(format!(
        "{} of {} agents failed: {}",
        failures.len(),
        done.len(),
        failures.join("; ")
    )))
}

/// The launches, each as `mosaic-launcher` makes it, in the agent's turn (no stop of it
/// meanwhile); a failure does not stop the rest. Agents without a session (new, stopped, or
/// just stopped for a restart) start together ([`launch::launch_many`]: their sessions made in
/// a few chained tmux calls); a dead pane to start again, or a sidecar to heal, alone.
fn launch_all(
    file: &FleetFile,
    plan: &Converge,
    stopped: &BTreeMap<String, stop::Stopped>,
    stop_signals: &Stop,
    done: &mut Vec<Done>,
) {
    type Result1 = Result<Option<launch::Report>, String>;
    let mut results: Vec<Option<Result1>> = (0..file.agents.len()).map(|_| None).collect();
    let mut together: Vec<(usize, Option<Turn>)> = Vec::new();
    for (i, (agent, step)) in file.agents.iter().zip(&plan.steps).enumerate() {
        results[i] = match step {
            Step::Keep | Step::Restarting => Some(Ok(None)),
            Step::Update { .. } => Some(agent.config.store().map(|()| None)),
            Step::Restart { .. } if stopped.get(&agent.name).is_some_and(still_there) => {
                Some(Err(format!(
                    "not stopped: {}",
                    stopped[&agent.name]
                        .warning
                        .as_deref()
                        .unwrap_or("its session is still there")
                )))
            }
            // An agent with a git worktree starts alone: its worktree (and setup) first.
            Step::Restart { .. } | Step::Start { .. }
                if agent.plan.worktree.is_none()
                    && (matches!(step, Step::Restart { .. })
                        || !plan.sessions.contains(&agent.name)) =>
            {
                match launch::take_turn(&agent.plan, stop_signals) {
                    Ok(turn) => {
                        together.push((i, turn));
                        None
                    }
                    Err(f) => Some(Err(f.message)),
                }
            }
            Step::Start { .. } | Step::Heal { .. } | Step::Restart { .. } => None,
        };
    }
    let stored = |i: usize, result: Result<launch::Report, Fail>| -> Result1 {
        let report = result.map_err(|f| f.message)?;
        launch::store_config(&file.agents[i].plan, &report, "mosaic-fleet");
        Ok(Some(report))
    };
    let plans: Vec<&launch::Plan> = together
        .iter()
        .map(|(i, _)| &file.agents[*i].plan)
        .collect();
    let launched = launch::launch_many(&plans, stop_signals);
    for ((i, turn), result) in together.into_iter().zip(launched) {
        results[i] = Some(stored(i, result));
        drop(turn);
    }
    for (i, agent) in file.agents.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        results[i] = Some(match stop_signals.signal() {
            Some(sig) => Err(format!("not started: interrupted by signal {sig}")),
            None => match launch::take_turn(&agent.plan, stop_signals) {
                Ok(turn) => {
                    let report = stored(i, launch::launch(&agent.plan, stop_signals));
                    drop(turn);
                    report
                }
                Err(f) => Err(f.message),
            },
        });
    }
    for ((agent, step), result) in file.agents.iter().zip(&plan.steps).zip(results) {
        let (action, changed) = match step {
            Step::Keep => ("keep", vec![]),
            Step::Restarting => ("restarting", vec![]),
            Step::Update { keys } => ("update", keys.clone()),
            Step::Start { .. } => ("start", vec![]),
            Step::Heal { .. } => ("heal", vec![]),
            Step::Restart { keys } => ("restart", keys.clone()),
        };
        done.push(Done {
            agent: agent.name.clone(),
            action,
            changed,
            result: result.expect("every agent has a result"),
        });
    }
}

/// Agents the file does not name, with `--prune`: stopped already; their files go too.
fn prune_extra(
    fleet: &Fleet,
    plan: &Converge,
    stopped: &BTreeMap<String, stop::Stopped>,
    done: &mut Vec<Done>,
) -> Pruned {
    let mut pruned = Pruned::default();
    if !plan.extra.is_empty() {
        let extra: BTreeSet<&str> = plan.extra.iter().map(String::as_str).collect();
        match super::prune::prune_only(fleet, false, |a| extra.contains(a)) {
            Ok(p) => pruned = p,
            Err(Fail { message: why, .. }) => {
                for name in &plan.extra {
                    done.push(Done {
                        agent: name.clone(),
                        action: "stop",
                        changed: vec![],
                        result: Err(format!("cannot prune its files: {why}")),
                    });
                }
            }
        }
        for name in &plan.extra {
            if done.iter().any(|d| &d.agent == name) {
                continue;
            }
            let result = match stopped.get(name) {
                Some(s) if still_there(s) => Err(format!(
                    "not stopped: {}",
                    s.warning.as_deref().unwrap_or("its session is still there")
                )),
                _ => Ok(None),
            };
            done.push(Done {
                agent: name.clone(),
                action: "stop",
                changed: vec![],
                result,
            });
        }
    }
    pruned
}

/// A stop that left the agent's session behind (a restart must not start over it).
fn still_there(s: &stop::Stopped) -> bool {
    s.was == Was::Busy || (s.was != Was::NotRunning && !s.session_gone)
}

fn outcome_text(report: &launch::Report) -> String {
    let mut line = match &report.outcome {
        Outcome::Started => "started".to_string(),
        Outcome::AlreadyRunning if report.healed => "sidecar restarted".to_string(),
        Outcome::AlreadyRunning => "already running".to_string(),
        Outcome::Restarted(death) => format!(
            "started again (its last run ended with {})",
            death.describe()
        ),
        Outcome::Restarting(..) => "restarting (left to its sidecar)".to_string(),
    };
    if let Some(pid) = report.pane_pid {
        line += &format!(": pane pid {pid}");
    }
    if report.sidecar == SidecarState::None {
        line += ", no heartbeat";
    }
    line
}

fn render_up_text(
    file: &FleetFile,
    plan: &Converge,
    done: &[Done],
    pruned: &Pruned,
    prune: bool,
) -> String {
    let mut out = String::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in done {
        let key = match (&d.result, d.action) {
            (Err(_), _) => "failed",
            (Ok(_), "keep" | "restarting") => "unchanged",
            (Ok(_), "start") => "started",
            (Ok(_), "restart") => "restarted",
            (Ok(_), "heal") => "healed",
            (Ok(_), "update") => "updated",
            (Ok(_), _) => "stopped",
        };
        *counts.entry(key).or_default() += 1;
        let name = &d.agent;
        let line = match (&d.result, d.action) {
            (_, "keep") => continue,
            (Err(why), action) => format!("! {action} {name} failed: {why}"),
            (Ok(_), "restarting") => format!("= {name} is restarting (left to its sidecar)"),
            (Ok(_), "update") => format!("~ updated {name} ({} changed)", d.changed.join(", ")),
            (Ok(Some(r)), "restart") => format!(
                "~ restarted {name} ({} changed): {}",
                d.changed.join(", "),
                outcome_text(r)
            ),
            (Ok(Some(r)), "heal") => format!("~ healed {name}: {}", outcome_text(r)),
            (Ok(Some(r)), _) => format!("+ {name}: {}", outcome_text(r)),
            (Ok(None), _) => {
                let kept = pruned.worktrees_kept.iter().find(|w| &w.0 == name);
                let files = match kept {
                    Some((_, path, why)) => {
                        format!("its files and worktree {} kept: {why}", path.display())
                    }
                    None if pruned.pruned.contains(name) => "its files pruned".into(),
                    None => "its files kept".into(),
                };
                format!("- stopped {name} (not in {}; {files})", file.path.display())
            }
        };
        out += &launch::printable(&line);
        out.push('\n');
    }
    if !prune {
        for name in &plan.extra {
            out += &format!(
                "? {name} is not in {} (left alone; `up --prune` stops it)\n",
                file.path.display()
            );
        }
    }
    let summary: Vec<String> = [
        "started",
        "restarted",
        "healed",
        "updated",
        "stopped",
        "unchanged",
        "failed",
    ]
    .iter()
    .filter_map(|k| counts.get(k).map(|n| format!("{n} {k}")))
    .collect();
    let summary = if summary.is_empty() {
        "nothing to do".to_string()
    } else {
        summary.join(", ")
    };
    out += &format!("up: {summary}\n");
    out
}

fn render_up_json(
    file: &FleetFile,
    plan: &Converge,
    done: &[Done],
    pruned: &Pruned,
    prune: bool,
) -> String {
    #[derive(Serialize)]
    struct Agent<'a> {
        agent: &'a str,
        action: &'static str,
        changed: &'a [&'static str],
        status: &'static str,
        pane_pid: Option<i32>,
        error: Option<&'a str>,
        /// A pruned agent's worktree kept (with its files), and why.
        #[serde(skip_serializing_if = "Option::is_none")]
        worktree_kept: Option<Cow<'a, str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        why: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Up<'a> {
        file: String,
        socket: &'a str,
        hb_dir: String,
        agents: Vec<Agent<'a>>,
        not_in_file: &'a [String],
        prune: bool,
        unchanged: usize,
    }
    let agents = done
        .iter()
        .map(|d| {
            let (status, pane_pid, error) = match &d.result {
                Ok(Some(r)) => (
                    match &r.outcome {
                        Outcome::Started => "started",
                        Outcome::AlreadyRunning if r.healed => "healed",
                        Outcome::AlreadyRunning => "already running",
                        Outcome::Restarted(_) => "restarted",
                        Outcome::Restarting(..) => "restarting",
                    },
                    r.pane_pid,
                    None,
                ),
                Ok(None) => (
                    match d.action {
                        "keep" => "unchanged",
                        "restarting" => "restarting",
                        "update" => "updated",
                        _ => "stopped",
                    },
                    None,
                    None,
                ),
                Err(why) => ("failed", None, Some(why.as_str())),
            };
            let kept = pruned.worktrees_kept.iter().find(|w| w.0 == d.agent);
            Agent {
                agent: &d.agent,
                action: d.action,
                changed: &d.changed,
                status,
                pane_pid,
                error,
                worktree_kept: kept.map(|w| w.1.to_string_lossy()),
                why: kept.map(|w| w.2.as_str()),
            }
        })
        .collect();
    let up = Up {
        file: file.path.to_string_lossy().into_owned(),
        socket: &file.socket,
        hb_dir: file.hb_dir.to_string_lossy().into_owned(),
        agents,
        not_in_file: &plan.extra,
        prune,
        unchanged: done.iter().filter(|d| d.action == "keep").count(),
    };
    let mut out =
        serde_json::to_string(&up).expect("serializing our own report into memory cannot fail");
    out.push('\n');
    out
}

pub fn run_down(args: &DownArgs) -> Result<ExitCode, Fail> {
    let (file, fleet) = load(&args.place)?;
    let names: Vec<&str> = file.agents.iter().map(|a| a.name.as_str()).collect();
    let reports = stop::stop(&fleet, &names, args.grace)?;
    let mut out = String::new();
    for report in &reports {
        out += &if args.json {
            stop::render_json(report)
        } else {
            stop::render_text(report, &fleet)
        };
        out.push('\n');
    }
    print(&out)?;
    let stuck: Vec<&str> = reports
        .iter()
        .filter(|r| still_there(r))
        .map(|r| r.agent.as_str())
        .collect();
    if stuck.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(failed(format!(
            "{} of {} agents not stopped: {}",
            stuck.len(),
            reports.len(),
            stuck.join(", ")
        )))
    }
}

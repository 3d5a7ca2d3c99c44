/*!
`mosaic-fleet stop` and `restart`: a deliberate stop, and a stop followed by the same launch.

A stop, for each agent, in an order that keeps the record true:

0. it takes the agent's turn ([`mosaic_core::lock::Turn`]), which every launch of the agent
   also takes, and only then reads the agent's pane: no launch replaces the pane under it, and
   a second stop waits and then finds nothing left to end;
1. the sidecar (the holder of `.AGENT.hb.lock`) gets SIGTERM (and SIGCONT, should someone have
   stopped it) while the agent still lives, so it writes `status=stopped`, not `exited`, and
   leaves; we wait for it (pidfd), or for it to let go of the file (its lock: a sidecar with
   an event hook runs its `stopped` hook after that, in a process group of its own, which
   nothing below ends). A sidecar that does not in time (hung) is killed: the stop takes the
   record over;
2. the pane's session and process group get SIGTERM, then SIGKILL after `--grace`
   ([`mosaic_core::teardown`]); every agent's grace runs at once, so `--all` waits one grace;
   then each run so ended gets its closing line in the agent's transcript, saying how (an
   `end` through its control file: `kill-session` could otherwise outrun tmux's `pane-died`
   hook, and tmux 3.3a sometimes loses the pane's SIGCHLD, so it is sent again);
3. `kill-session`, in the same tmux command as a last look at the pane: a pane that its
   sidecar's respawn helper started meanwhile is ended too (no process outlives its session);
4. if no sidecar said `stopped` (none was running, or it had to be killed), we take the lock
   and write that record ourselves: a stopped agent's record says `stopped`, also when its pane
   had died before.

An agent that is not running is not an error: the report says so (exit 0), and its record
says `stopped` from then on, so an `exited` or `failed` agent stops failing `mosaic-hb status
--check` (as `systemctl stop` ends a unit's alert, or `pm2 stop` an errored process). A session
whose pane is dead (kept by `remain-on-exit`) is removed, and what its agent left behind is
ended. An agent the socket has no session of and the heartbeat directory no file of is bad
input (exit 2, nothing stopped), as for `logs` and `attach`.
*/

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use mosaic_core::death::Death;
use mosaic_core::layout;
use mosaic_core::lock::{self, Turn};
use mosaic_core::record::{Lifecycle, Status};
use mosaic_core::teardown::{self, Step, Teardown};
use mosaic_core::transcript;
use nix::sys::signal::Signal;
use serde::Serialize;

use super::{agent_name, failed, print, tmux_failed, usage, Fail, Fleet, Where};
use crate::config::LaunchConfig;
use crate::tmux::PaneRow;

pub const STOP_HELP: &str = "Environment: each option above reads the variable shown beside it.\n\
    Exit codes: 0 every agent named is stopped (or was not running: its record now says \
    stopped), 1 failed at run time (tmux, the heartbeat dir, or another launch or stop of an \
    agent held it for 30s), 2 bad input (also an agent with neither a session nor a heartbeat \
    file: nothing is stopped).\n\
    What is ended: every process whose session id or process group is the pane's pid \
    (/proc/PID/stat fields 6 and 5); a child that called setsid itself escapes.";

pub const RESTART_HELP: &str = "Environment: each option above reads the variable shown beside \
    it; the agent starts again with the configuration stored when it was launched \
    (HB_DIR/.AGENT.launch), not with the caller's MOSAIC_* variables.\n\
    Exit codes: 0 restarted (every agent named), 1 failed at run time (a start that failed: the \
    others are still restarted; or no stored configuration), 2 bad input (also an agent with \
    neither a session nor a file: pruned, or never started; nothing is restarted).";

/// How long the sidecar gets to write `status=stopped` and leave.
const SIDECAR_WAIT: Duration = Duration::from_secs(5);

/// How often a stop looks whether the sidecar has let go of its file.
const LOCK_LOOK: Duration = Duration::from_millis(10);

/// How long a sidecar that did not leave gets to die of SIGKILL before the stop writes the
/// record anyway (a process in uninterruptible sleep dies when it wakes).
const KILLED_WAIT: Duration = Duration::from_secs(1);

/// What `stop` and `restart` share: the grace, JSON, and where the fleet is.
#[derive(Args, Debug)]
pub struct Manner {
    /// Seconds between SIGTERM and SIGKILL, 0 to 86400.
    #[arg(long = "grace", value_name = "SECS", default_value = "10", value_parser = super::seconds)]
    grace: Duration,
    /// Report in JSON, one object per line (per agent stopped; `restart`: the stop, then the
    /// start).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    place: Where,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Agents to stop.
    #[arg(
        value_name = "AGENT",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    agents: Vec<String>,
    /// Stop every agent with a session on the socket.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    manner: Manner,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    /// Agents to restart.
    #[arg(
        value_name = "AGENT",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    agents: Vec<String>,
    /// Restart every agent with a session on the socket.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    manner: Manner,
}

/// What the agent was doing when the stop began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Was {
    Running,
    /// Its session kept a dead pane.
    Exited,
    /// No session on the socket.
    NotRunning,
    /// Another launch or stop of it held its turn too long: nothing was done.
    Busy,
}

/// What a stop did, for one agent.
#[derive(Clone, Debug)]
pub struct Stopped {
    pub agent: String,
    pub was: Was,
    /// Processes of the agent's session ended (by SIGTERM or SIGKILL).
    pub ended: usize,
    /// Whether SIGKILL was needed.
    pub killed: bool,
    /// Whether the record now says `status=stopped`.
    pub recorded: bool,
    /// Whether no tmux session is left (removed by us, or gone with its pane).
    pub session_gone: bool,
    /// A step that did not work out, for the report (the stop still went on).
    pub warning: Option<String>,
}

struct Pending {
    report: Stopped,
    /// The pane's pid (alive, or a dead pane's whose leftovers may live on), and its start
    /// time, to tell a reused pid.
    pane_pid: Option<(i32, Option<u64>)>,
    teardown: Option<Teardown>,
    /// The record's file, when one exists, and whether a sidecar wrote `stopped` to it.
    hb_file: Option<PathBuf>,
    /// The sidecar told to stop, until it has left.
    sidecar: Option<(i32, OwnedFd)>,
    /// The agent's transcript folder, as its launch file names it (`None`: `--no-log`).
    transcript: Option<PathBuf>,
}

/// Stops `agents` (all at once: one grace for all), each in its turn: the turns are taken in
/// name order (so two stops never wait for each other in a circle), then the panes are read.
pub fn stop(fleet: &Fleet, agents: &[&str], grace: Duration) -> Result<Vec<Stopped>, Fail> {
    let mut names = agents.to_vec();
    names.sort_unstable();
    names.dedup();
    let deadline = Instant::now() + lock::TURN_WAIT;
    let mut turns = Vec::new();
    let mut busy = Vec::new();
    for agent in names {
        match take_turn(fleet, agent, deadline) {
            Ok(turn) => turns.push((agent, turn)),
            Err(why) => busy.push(Stopped {
                agent: agent.to_string(),
                was: Was::Busy,
                ended: 0,
                killed: false,
                recorded: false,
                session_gone: false,
                warning: Some(why),
            }),
        }
    }
    let ours: Vec<&str> = turns.iter().map(|(agent, _)| *agent).collect();
    let mut reports = stop_in_turn(fleet, &ours, grace)?;
    reports.append(&mut busy);
    // In the caller's order, each agent once.
    let mut ordered = Vec::new();
    for agent in agents {
        if let Some(at) = reports.iter().position(|r| r.agent == *agent) {
            ordered.push(reports.swap_remove(at));
        }
    }
    Ok(ordered)
}

/// The turn of `agent` (none when its heartbeat directory does not exist: no launch with a
/// heartbeat has run there, so there is nothing to wait for).
fn take_turn(fleet: &Fleet, agent: &str, deadline: Instant) -> Result<Option<Turn>, String> {
    if !fleet.hb_dir.is_dir() {
        return Ok(None);
    }
    let file = fleet.hb_file(agent);
    Turn::take_for(&file, deadline, &|| false)
        .map(Some)
        .map_err(|e| match e {
            lock::LockError::Held(pid) => format!(
                "another launch or stop of it{} did not finish within {}s; try again",
                pid.map_or(String::new(), |p| format!(" (pid {p})")),
                lock::TURN_WAIT.as_secs()
            ),
            lock::LockError::Io(e) => format!(
                "cannot take its turn beside {}: {}",
                file.display(),
                mosaic_core::why(&e)
            ),
        })
}

/// Stops `agents`, whose turns the caller holds.
fn stop_in_turn(fleet: &Fleet, agents: &[&str], grace: Duration) -> Result<Vec<Stopped>, Fail> {
    if agents.is_empty() {
        return Ok(Vec::new());
    }
    // Read in turn: no launch of these agents runs until we are done.
    let panes = fleet.tmux().list_panes().map_err(tmux_failed)?;
    let mut pending: Vec<Pending> = agents
        .iter()
        .map(|&agent| begin(fleet, agent, panes.iter().find(|p| p.session == agent)))
        .collect();
    // Every sidecar was told at once; they leave together, within one wait.
    let deadline = Instant::now() + SIDECAR_WAIT;
    for p in &mut pending {
        if let Some((pid, pidfd)) = p.sidecar.take() {
            match let_go(&pidfd, p.hb_file.as_deref(), deadline) {
                Ok(true) => {}
                Ok(false) => {
                    // Hung, or stopped again: it answers no more, and the stop takes its
                    // record over (it writes nothing once SIGKILL is on its way).
                    let _ = teardown::send(&pidfd, Signal::SIGKILL);
                    let gone = teardown::wait_exit(&pidfd, Instant::now() + KILLED_WAIT);
                    p.report.warning = Some(format!(
                        "sidecar pid {pid} did not leave within {}s: killed{}",
                        SIDECAR_WAIT.as_secs(),
                        if matches!(gone, Ok(true)) {
                            ""
                        } else {
                            ", not gone yet"
                        }
                    ))
                }
                Err(e) => {
                    p.report.warning = Some(format!(
                        "cannot wait for sidecar pid {pid}: {}",
                        mosaic_core::why(&e)
                    ))
                }
            }
        }
    }
    for p in &mut pending {
        // Only now, after every sidecar was told: a stopped sidecar no longer reaps.
        if let Some((pid, _)) = p.pane_pid {
            p.teardown = Some(Teardown::begin(pid, grace));
        }
    }
    run_teardowns(pending.iter_mut().filter_map(|p| p.teardown.as_mut()));
    close_transcripts(fleet, &pending);
    Ok(pending
        .into_iter()
        .map(|p| finish(fleet, p, grace))
        .collect())
}

/// Step 2 and a half: each run the stop ended (or found ended) gets its closing line in the
/// transcript, saying how, before its session goes ([`transcript::tell_end`]); all are told,
/// then waited for together, for at most [`transcript::ANNOUNCE_WAIT`].
fn close_transcripts(fleet: &Fleet, pending: &[Pending]) {
    let deadline = Instant::now() + transcript::ANNOUNCE_WAIT;
    // Each run to close: its agent, its transcript folder, the pane pid the stop saw.
    let mut waiting: Vec<(&str, &Path, Option<i32>)> = Vec::new();
    for p in pending
        .iter()
        .filter(|p| matches!(p.report.was, Was::Running | Was::Exited))
    {
        let Some(dir) = p.transcript.as_deref() else {
            continue;
        };
        if let Some((pid, Some(started))) = p.pane_pid {
            // tmux may have lost its SIGCHLD, and then never says the pane is dead.
            let left = deadline.saturating_duration_since(Instant::now());
            mosaic_core::proc::hurry_tmux(pid, started, left);
        }
        waiting.push((&p.report.agent, dir, p.pane_pid.map(|(pid, _)| pid)));
    }
    let mut told = Vec::new();
    // One look at every pane a round: a pane is dead once tmux has read its terminal to its end.
    while !waiting.is_empty() {
        let Ok(panes) = fleet.tmux().list_panes() else {
            break;
        };
        waiting.retain(|&(agent, dir, seen)| {
            match panes.iter().find(|row| row.session == agent) {
                Some(row) if row.dead => {
                    if let Some(pid) = row.pid {
                        // Without tmux's word (a SIGCHLD it lost), the zombie's own.
                        let death = match row.death {
                            Death::Unknown => mosaic_core::proc::zombie_status(pid)
                                .map_or(Death::Unknown, Death::from_wait_status),
                            known => known,
                        };
                        if transcript::tell_end(dir, agent, death, pid).is_ok() {
                            told.push((dir, agent));
                        }
                    }
                    false
                }
                // Live still under the pid the stop ended: its end is not read yet. Under
                // another, a racer respawned it (step 3 ends that); gone: nothing to say.
                Some(row) => seen.is_some() && row.pid == seen,
                None => false,
            }
        });
        if waiting.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    while told
        .iter()
        .any(|(dir, agent)| !transcript::closed(dir, agent))
    {
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the sidecar has exited or let go of `file` (its lock is free: its last hooks
/// may still run); false at the deadline.
fn let_go(pidfd: &OwnedFd, file: Option<&Path>, deadline: Instant) -> std::io::Result<bool> {
    loop {
        let soon = deadline.min(Instant::now() + LOCK_LOOK);
        if teardown::wait_exit(pidfd, soon)? || file.is_some_and(|f| !lock_held(f)) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
}

fn lock_held(file: &Path) -> bool {
    !matches!(lock::is_held(file), Ok(false))
}

/// Drives teardowns under way until each is done.
fn run_teardowns<'a>(teardowns: impl Iterator<Item = &'a mut Teardown>) {
    let mut teardowns: Vec<&mut Teardown> = teardowns.collect();
    loop {
        let mut waiting = false;
        for t in teardowns.iter_mut() {
            waiting |= t.step() == Step::Waiting;
        }
        if !waiting {
            break;
        }
        let wait = teardowns.iter().map(|t| t.wait()).min().unwrap_or_default();
        std::thread::sleep(wait);
    }
}

/// Step 1: finds the agent and tells its sidecar to stop.
fn begin(fleet: &Fleet, agent: &str, pane: Option<&PaneRow>) -> Pending {
    let was = match pane {
        Some(p) if !p.dead => Was::Running,
        Some(_) => Was::Exited,
        None => Was::NotRunning,
    };
    let hb_file = fleet.hb_file(agent);
    let hb_file = hb_file.exists().then_some(hb_file);
    let mut warning = None;
    let mut sidecar = None;
    // Also for a dead pane: a sidecar under a restart policy may be about to restart it, and a
    // stopped sidecar restarts nothing.
    if let Some(file) = &hb_file {
        match stop_sidecar(file) {
            Ok(told) => sidecar = told,
            Err(why) => warning = Some(why),
        }
    }
    let pane_pid = match was {
        Was::NotRunning | Was::Busy => None,
        _ => pane.and_then(|p| p.pid).and_then(identify),
    };
    Pending {
        report: Stopped {
            agent: agent.to_string(),
            was,
            ended: 0,
            killed: false,
            recorded: false,
            session_gone: false,
            warning,
        },
        pane_pid,
        teardown: None,
        hb_file,
        sidecar,
        transcript: LaunchConfig::load(&fleet.hb_dir, agent)
            .ok()
            .flatten()
            .and_then(|c| c.transcript_dir()),
    }
}

/// A pane's pid, as a teardown may take it: a live process (with its start time), or a dead
/// pane's pid that no live process has (its leftovers keep the session id from reuse); a live
/// process behind a dead pane's pid is a stranger.
fn identify(pid: i32) -> Option<(i32, Option<u64>)> {
    match mosaic_core::proc::start_time(pid) {
        Some(started) if teardown::alive(pid) => Some((pid, Some(started))),
        _ if !teardown::alive(pid) => Some((pid, None)),
        _ => None,
    }
}

/// Steps 3 and 4: the session, then the record.
fn finish(fleet: &Fleet, mut p: Pending, grace: Duration) -> Stopped {
    if let Some(t) = &p.teardown {
        p.report.ended = t.ended();
        p.report.killed = t.killed();
    }
    let report = &mut p.report;
    if report.was != Was::NotRunning {
        match fleet.tmux().end_session_naming_pane(&report.agent) {
            Ok(last) => {
                report.session_gone = true;
                // A pane respawned since we looked (its sidecar's helper was quicker than the
                // stop signal): it goes too, with its session.
                let seen = p.pane_pid.map(|(pid, _)| pid);
                if let Some((pid, dead)) = last.filter(|&(pid, _)| Some(pid) != seen) {
                    let pid = if dead {
                        identify(pid)
                    } else {
                        Some((pid, None))
                    };
                    if let Some((pid, _)) = pid {
                        let t = Teardown::run(pid, grace);
                        report.ended += t.ended();
                        report.killed |= t.killed();
                    }
                }
            }
            Err(why) => report.warning = Some(super::tmux_failed(why).message),
        }
    }
    if let Some(file) = &p.hb_file {
        report.recorded = says_stopped(file);
        // Also of an agent that was not running: its `exited` or `failed` was an alert, and
        // someone has now seen to it.
        if !report.recorded && report.was != Was::Busy {
            match record_stopped(file, p.pane_pid.map(|(pid, _)| pid), &report.agent) {
                Ok(()) => report.recorded = true,
                Err(why) => report.warning = Some(why),
            }
        }
    }
    p.report
}

/// SIGTERMs the sidecar keeping `file` (the lock's holder); returns it, to wait for.
fn stop_sidecar(file: &Path) -> Result<Option<(i32, OwnedFd)>, String> {
    if !matches!(lock::is_held(file), Ok(true)) {
        return Ok(None);
    }
    let Some(pid) = lock::holder(file) else {
        return Err(format!(
            "the sidecar keeping {} did not say its pid",
            file.display()
        ));
    };
    let pidfd = teardown::pidfd(pid)
        .map_err(|e| format!("cannot reach sidecar pid {pid}: {}", mosaic_core::why(&e)))?;
    // The lock is still held by that very process (a pidfd pins it): not a reused pid.
    if !matches!(lock::is_held(file), Ok(true)) {
        return Ok(None);
    }
    teardown::send_term(&pidfd)
        .map_err(|e| format!("cannot stop sidecar pid {pid}: {}", mosaic_core::why(&e)))?;
    // A sidecar someone stopped (SIGSTOP, a debugger's ^Z) reads its SIGTERM only once it runs
    // again; the target still lives, so it writes `stopped` and leaves.
    let _ = teardown::send(&pidfd, Signal::SIGCONT);
    Ok(Some((pid, pidfd)))
}

fn says_stopped(file: &Path) -> bool {
    mosaic_core::record::read(file).is_some_and(|r| r.status == Status::Stopped)
}

/// Writes `status=stopped` under the lock, for an agent no sidecar kept.
fn record_stopped(file: &Path, pane_pid: Option<i32>, agent: &str) -> Result<(), String> {
    let old = mosaic_core::record::read(file);
    let pid = pane_pid
        .or(old.as_ref().map(|r| r.pid))
        .ok_or("no pid for the record")?;
    let interval = old
        .as_ref()
        .and_then(|r| r.interval)
        .map_or(Duration::from_secs(30), Duration::from_secs_f64);
    let (dir, agent_file) = (file.parent().ok_or("no directory")?, agent);
    let _lock = crate::config::lock_agent(dir, agent_file)
        .map_err(|why| format!("cannot write status=stopped: {why}"))?;
    // How its last run ended, and its restarts, stay on record; a pending restart does not.
    let lifecycle = old.as_ref().map_or_else(Default::default, |r| Lifecycle {
        restart_at: None,
        ..r.lifecycle
    });
    let beat = mosaic_core::record::Beat {
        pid,
        status: Status::Stopped,
        agent: Some(agent),
        interval,
        seq: old.as_ref().and_then(|r| r.seq).map_or(1, |s| s + 1),
        hb_pid: std::process::id() as i32,
        started: old.as_ref().and_then(|r| r.started),
        lifecycle,
        activity: None,
    };
    let mut buf = Vec::new();
    mosaic_core::record::render(&mut buf, chrono::Utc::now(), &beat);
    // 0644, as the sidecar writes it: readers may be other users.
    crate::config::replace_file(dir, &layout::record_name(agent), &buf, 0o644).map_err(|e| {
        format!(
            "cannot write status=stopped to {}: {}",
            file.display(),
            mosaic_core::why(&e)
        )
    })
}

pub fn run_stop(args: &StopArgs) -> Result<ExitCode, Fail> {
    let fleet = args.manner.place.resolve()?;
    for agent in &args.agents {
        agent_name(agent)?;
    }
    let names: Vec<String> = if args.all {
        fleet.sessions()?
    } else {
        args.agents.clone()
    };
    let agents: Vec<&str> = names.iter().map(String::as_str).collect();
    // All or nothing: an unknown name stops nobody.
    if !args.all {
        let panes = fleet.tmux().list_panes().map_err(tmux_failed)?;
        if let Some(unknown) = agents.iter().find(|agent| !fleet.knows(&panes, agent)) {
            return Err(fleet.unknown(&[unknown]));
        }
    }
    let reports = stop(&fleet, &agents, args.manner.grace)?;
    let mut out = String::new();
    for report in &reports {
        out += &if args.manner.json {
            render_json(report)
        } else {
            render_text(report, &fleet)
        };
        out.push('\n');
    }
    if args.all && reports.is_empty() && !args.manner.json {
        out += &format!(
            "no agent is running on tmux socket {}: nothing to stop\n",
            fleet.socket
        );
    }
    print(&out)?;
    if reports.iter().any(|r| r.was == Was::Busy) {
        return Ok(ExitCode::from(mosaic_core::exit::Exit::Failed.code()));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_restart(args: &RestartArgs) -> Result<ExitCode, Fail> {
    let asked = args.manner.place.resolve()?;
    for agent in &args.agents {
        agent_name(agent)?;
    }
    let names: Vec<String> = if args.all {
        asked.sessions()?
    } else {
        args.agents.clone()
    };
    // Every launch file first: an agent that cannot be restarted restarts nobody.
    let configs = names
        .iter()
        .map(|agent| launch_config(&asked, agent))
        .collect::<Result<Vec<_>, Fail>>()?;
    if configs.is_empty() && !args.manner.json {
        print(&format!(
            "no agent is running on tmux socket {}: nothing to restart\n",
            asked.socket
        ))?;
    }
    let mut code = ExitCode::SUCCESS;
    for config in configs {
        // The agent runs where it was started, whatever the caller's socket.
        let fleet = Fleet {
            socket: config.socket.clone(),
            hb_dir: config.hb_dir.clone(),
            timeout: asked.timeout,
        };
        let agent = config.agent.as_str();
        // One turn for the stop and the start: no other launch or stop comes in between.
        let turn = take_turn(&fleet, agent, Instant::now() + lock::TURN_WAIT)
            .map_err(|why| failed(format!("cannot restart {agent}: {why}")))?;
        let report = stop_in_turn(&fleet, &[agent], args.manner.grace)?.remove(0);
        let line = if args.manner.json {
            render_json(&report)
        } else {
            render_text(&report, &fleet)
        };
        print(&format!("{line}\n"))?;
        let started =
            crate::launch::run_in_turn("mosaic-fleet", config.to_cli(args.manner.json), turn);
        // The first failure's code; the others are still restarted.
        if code == ExitCode::SUCCESS {
            code = started;
        }
    }
    Ok(code)
}

/// The stored launch of `agent`, or an error that says why there is none.
fn launch_config(asked: &Fleet, agent: &str) -> Result<LaunchConfig, Fail> {
    match LaunchConfig::load(&asked.hb_dir, agent).map_err(failed)? {
        Some(config) if config.agent == agent => Ok(config),
        Some(config) => Err(usage(format!(
            "cannot restart {agent}: its launch file names agent {}",
            config.agent
        ))),
        None => {
            let panes = asked.tmux().list_panes().map_err(tmux_failed)?;
            if asked.knows(&panes, agent) {
                Err(failed(format!(
                    "cannot restart {agent}: no launch configuration in {} (started with \
                     --no-heartbeat, or by an older launcher); stop it and use `mosaic-fleet \
                     start`",
                    asked.hb_dir.display()
                )))
            } else {
                // Nothing of it left here: never started with this heartbeat dir, or pruned.
                Err(usage(format!(
                    "cannot restart {agent}: no agent {agent} on tmux socket {} and no file of \
                     it in {} (pruned, or never started here); start it again with \
                     `mosaic-fleet start {agent} --command ...`",
                    asked.socket,
                    asked.hb_dir.display()
                )))
            }
        }
    }
}

pub fn render_text(r: &Stopped, fleet: &Fleet) -> String {
    let ended = match (r.ended, r.killed) {
        (1, false) => "ended 1 process".to_string(),
        (n, false) => format!("ended {n} processes"),
        (n, true) => format!(
            "ended {n} process{} (SIGKILL after the grace)",
            if n == 1 { "" } else { "es" }
        ),
    };
    let mut line = match r.was {
        Was::Running => format!("stopped agent {}: {ended}", r.agent),
        Was::Exited => format!(
            "agent {} was not running (its pane had exited): session removed, {ended}",
            r.agent
        ),
        Was::NotRunning => format!(
            "agent {} is not running on tmux socket {}: nothing to stop",
            r.agent, fleet.socket
        ),
        Was::Busy => format!("agent {} was not stopped", r.agent),
    };
    if r.recorded {
        line += ", heartbeat says stopped";
    }
    if let Some(warning) = &r.warning {
        line += &format!(" (warning: {warning})");
    }
    line
}

pub fn render_json(r: &Stopped) -> String {
    #[derive(Serialize)]
    struct Json<'a> {
        agent: &'a str,
        was: &'static str,
        ended: usize,
        sigkill: bool,
        recorded_stopped: bool,
        session_gone: bool,
        warning: Option<&'a str>,
    }
    let was = match r.was {
        Was::Running => "running",
        Was::Exited => "exited",
        Was::NotRunning => "not running",
        Was::Busy => "busy",
    };
    serde_json::to_string(&Json {
        agent: &r.agent,
        was,
        ended: r.ended,
        sigkill: r.killed,
        recorded_stopped: r.recorded,
        session_gone: r.session_gone,
        warning: r.warning.as_deref(),
    })
    .expect("a report serializes")
}

/*!
`mosaic-launcher AGENT`: a drop-in for `start-agent-session.sh`.

One run: validate everything (exit 2, nothing started or written); make the agent's git
worktree if it asks for one and has none yet ([`crate::worktree`]); prepare the heartbeat
directory and find `setsid` and `mosaic-hb` (exit 1, nothing started); ask tmux for the session
and, while it works, start the sidecar waiting for its pane; watch the pane's process until it
has executed the agent's command ([`verdict`](crate::verdict)); then hand the sidecar its
pane, or cancel it when the agent needs none (one already keeps the file, or tmux named no
pane), and wait for the sidecar's answer, which follows its first record.

Invariants:
- A launch reports started only after exec: a command that cannot be executed (not found, not
  executable, a bad interpreter) or that exits at once is a failure (exit 1) with the shell's
  status and message, and the session this run created is removed.
- All or nothing, also when interrupted: SIGINT, SIGTERM and SIGHUP are held back for the
  launch ([`Stop`]); one that arrives before the sidecar has its pane undoes what this run
  created (the session, by its `@mosaic_launch` mark; the pending sidecar) and exits 128+N;
  one that arrives later lets the launch complete, then exits 128+N saying so.
- One agent, one sidecar: the session names its heartbeat file (`@mosaic_hb`); a relaunch
  reports (or heals) that file, and a heartbeat file kept for another process is never
  reported as this agent's. A restart its sidecar has pending is the sidecar's: a relaunch
  says `restarting` and starts nothing.
- One launch or stop of an agent at a time: the launch runs in the agent's turn
  ([`mosaic_core::lock::Turn`]), so a stop never removes a session this launch is starting.

The launch's rooms, in the order a launch goes through them: `plan.rs` (validate, touch
nothing), `start.rs` (prepare, start the session and the sidecar, the verdict, the hand-over,
undo on failure), `relaunch.rs` (the session existed: report, heal or start a dead pane
again), `many.rs` (many new agents at once, for `mosaic-fleet up`), `report.rs` (what happened, printed as text or JSON, and the stored launch
configuration).
*/

mod many;
mod plan;
mod relaunch;
mod report;
mod start;

use std::io::Write;
use std::process::ExitCode;

use mosaic_core::death::signal_name;
use mosaic_core::exit::{Exit, Fail};
use mosaic_core::lock::{self, Turn};

pub use self::many::launch_many;
pub use self::plan::{plan, Heartbeat, Log, Plan};
pub use self::report::{store_config, Outcome, Report, SidecarState};
pub use self::start::launch;
use crate::child::Stop;
use crate::cli::Cli;

/// `mosaic-launcher AGENT`, from parsed arguments to exit code.
pub fn run(cli: Cli) -> ExitCode {
    run_as("mosaic-launcher", cli)
}

/// [`run`], its errors prefixed with `program`: `mosaic-fleet start` is the launcher, under
/// the fleet CLI's name.
pub fn run_as(program: &str, cli: Cli) -> ExitCode {
    run_in_turn(program, cli, None)
}

/// [`run_as`], in the agent's turn when the caller holds it already (`mosaic-fleet restart`,
/// between its stop and this start); else the launch takes it.
pub fn run_in_turn(program: &str, cli: Cli, turn: Option<Turn>) -> ExitCode {
    let say = |message: &str| say(program, message);
    let stop = Stop::new();
    let json = cli.json;
    let result = plan(cli).and_then(|plan| {
        let turn = match turn {
            Some(turn) => Some(turn),
            None => take_turn(&plan, &stop)?,
        };
        launch(&plan, &stop).map(|report| (plan, report, turn))
    });
    let late = stop.signal();
    match result {
        Ok((plan, report, turn)) => {
            report::store_config(&plan, &report, program);
            // The launch and its stored configuration are complete: a stop may go ahead.
            drop(turn);
            let line = if json {
                report::render_json(&plan, &report)
            } else {
                printable(&report::render_text(&plan, &report))
            };
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
                say(&format!(
                    "cannot write the report to stdout: {} (agent {} is running)",
                    mosaic_core::why(&e),
                    plan.agent
                ));
                return ExitCode::from(Exit::Failed.code());
            }
            if let Some(sig) = late {
                say(&format!(
                    "interrupted by {} after agent {} had started: it keeps running",
                    signal(sig),
                    plan.agent
                ));
                return ExitCode::from(128 + sig as u8);
            }
            ExitCode::SUCCESS
        }
        Err(fail) => {
            say(&fail.message);
            ExitCode::from(fail.code)
        }
    }
}

/// Takes the agent's turn ([`mosaic_core::lock::Turn`]), which every stop of it also takes: a
/// stop never reads a pane this launch is about to replace, nor removes a session before its
/// sidecar holds it. Waits for a stop under way (its grace), bounded by
/// [`mosaic_core::lock::TURN_WAIT`]; a stop signal cuts the wait. None without a heartbeat.
pub fn take_turn(plan: &Plan, stop: &Stop) -> Result<Option<Turn>, Fail> {
    let Some(hb) = &plan.heartbeat else {
        return Ok(None);
    };
    mosaic_core::dirs::prepare(&hb.dir).map_err(Fail::failed)?;
    let deadline = std::time::Instant::now() + lock::TURN_WAIT;
    match Turn::take_for(&hb.file, deadline, &|| stop.signal().is_some()) {
        Ok(turn) => Ok(Some(turn)),
        Err(_) if stop.signal().is_some() => Err(interrupted(
            stop.signal().unwrap_or_default(),
            &plan.agent,
            false,
        )),
        Err(lock::LockError::Held(pid)) => Err(Fail::failed(format!(
            "agent {} is busy: another launch or stop of it{} did not finish within {}s; try again",
            plan.agent,
            pid.map_or(String::new(), |p| format!(" (pid {p})")),
            lock::TURN_WAIT.as_secs()
        ))),
        Err(lock::LockError::Io(e)) => Err(Fail::failed(format!(
            "cannot take the turn of agent {} in {}: {}",
            plan.agent,
            hb.dir.display(),
            mosaic_core::why(&e)
        ))),
    }
}

/// One line on stderr, control characters escaped; a stderr that cannot be written is
/// ignored (the exit code still tells).
pub(super) fn say(program: &str, message: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "{program}: {}",
        printable(message)
    );
}

/// `text` with every control character escaped (`\n`, `\x1b`, `\u{85}`), so that one line
/// printed is one line read, and no escape sequence reaches a terminal raw.
pub fn printable(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `SIGINT`, as a person who pressed Ctrl-C reads it.
fn signal(sig: i32) -> String {
    match signal_name(sig) {
        Some(name) => format!("SIG{name}"),
        None => format!("signal {sig}"),
    }
}

fn interrupted(sig: i32, agent: &str, undone: bool) -> Fail {
    let what = if undone {
        format!("the launch of agent {agent} was undone")
    } else {
        format!("agent {agent} was not started")
    };
    Fail::new(
        128 + sig as u8,
        format!("interrupted by {}: {what}", signal(sig)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_only() {
        assert_eq!(printable("a b/é"), "a b/é");
        assert_eq!(printable("x\nstarted agent evil"), "x\\nstarted agent evil");
        assert_eq!(printable("\u{1b}[31mred"), "\\x1b[31mred");
        assert_eq!(printable("\u{85}\u{7f}"), "\\u{85}\\x7f");
    }

    #[test]
    fn signals_are_named() {
        assert_eq!(signal(libc::SIGINT), "SIGINT");
        assert_eq!(signal(libc::SIGHUP), "SIGHUP");
        assert_eq!(signal(libc::SIGTERM), "SIGTERM");
    }
}

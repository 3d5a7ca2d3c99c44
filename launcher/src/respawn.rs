/*!
`mosaic-respawn`: the hands of a supervising sidecar in tmux (an internal binary).

A sidecar under a restart policy (`mosaic-hb --restart ...`) cannot talk to tmux (only
[`crate::tmux`] does), so on each death of its agent it runs this helper with its stdin and
stdout as pipes, and they speak the line protocol of [`mosaic_core::supervise::Answer`]:

1. The helper asks tmux how the agent's pane died (tmux reaps it and keeps its status, thanks
   to `remain-on-exit`) and prints `dead status N`, `dead signal N` or `dead unknown`; or `live
   PID TICKS` when the pane already runs again (a launcher restarted it), or `gone` when the
   session is gone (then it is done).
2. It waits on stdin. EOF (the policy said no, the sidecar gave up or was stopped) ends it
   without touching anything; `go` (the backoff delay and the fleet-wide guard are over) makes
   it respawn the pane as it was made ([`Tmux::respawn_as_before`]), after handing the
   transcript's writer the run's opening line (`mosaic_core::transcript::announce`; the
   launch file says where), and print `started PID TICKS`, the new pane's pid and start time, which the sidecar then watches.

It blocks where it likes (it is not the sidecar), but never past a bound: each tmux call has
the launcher's deadline, and the dead pane's status is awaited for at most [`STATUS_WAIT`].
*/

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mosaic_core::death::Death;
use mosaic_core::exit::Exit;
use mosaic_core::handover::Target;
use mosaic_core::supervise::{Answer, GO};
use mosaic_core::validate;

use crate::tmux::{self, Pane, Tmux};

/// How long tmux may take to report a dead pane's status after its process is gone: the
/// process's exit (our pidfd) and tmux's reaping of it (its status) are two events.
pub const STATUS_WAIT: Duration = Duration::from_secs(3);

/// The helper's arguments, as the sidecar passes them.
#[derive(clap::Args, Debug)]
pub struct RespawnArgs {
    /// tmux socket of the agent's session.
    #[arg(long, value_name = "SOCKET")]
    pub socket: String,
    /// The pane pid that died (tmux may still show it live for a moment).
    #[arg(long, value_name = "PID")]
    pub pid: Option<String>,
    /// Its start time (clock ticks since boot), so a pid reused since is never torn down.
    #[arg(long, value_name = "TICKS")]
    pub started: Option<String>,
    /// The agent: its session's name.
    #[arg(value_name = "AGENT")]
    pub agent: String,
}

/// Runs the helper; errors go to stderr (the sidecar's log) and exit 1, which the sidecar
/// reads as "nothing to restart".
pub fn run(args: &RespawnArgs) -> ExitCode {
    match respawn(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, why)) => {
            eprintln!("mosaic-respawn: {why}");
            ExitCode::from(code.code())
        }
    }
}

fn respawn(args: &RespawnArgs) -> Result<(), (Exit, String)> {
    let usage = |why: String| (Exit::Usage, why);
    validate::agent(&args.agent).map_err(usage)?;
    validate::socket(&args.socket).map_err(usage)?;
    let died = match &args.pid {
        Some(pid) => Some(validate::pid(pid).map_err(usage)?),
        None => None,
    };
    let tmux = Tmux::new(&args.socket, tmux::DEFAULT_TIMEOUT, None);
    let failed = |f: tmux::Failure| {
        (
            Exit::Failed,
            match f {
                tmux::Failure::Error(why) => why,
                tmux::Failure::Interrupted(sig) => format!("interrupted by signal {sig}"),
            },
        )
    };
    let answer = how_it_died(&tmux, &args.agent, died).map_err(failed)?;
    say(answer)?;
    if !matches!(answer, Answer::Dead(_)) {
        return Ok(());
    }
    // The sidecar's word: `go`, or EOF to leave everything as it is.
    let mut line = Vec::new();
    let _ = std::io::stdin().lock().read_until(b'\n', &mut line);
    if line != GO {
        return Ok(());
    }
    if let Some((dir, command)) = transcript(&tmux, &args.agent) {
        let ended = match answer {
            Answer::Dead(Death::Unknown) => None,
            Answer::Dead(death) => Some((death, died)),
            _ => None,
        };
        crate::transcript::announce(&dir, &args.agent, ended, &command, "run restarted");
    }
    let answer = match tmux.respawn_as_before(&args.agent).map_err(failed)? {
        Some(pids) => Answer::Started(pids.pane, Target::now(pids.pane).started),
        // Someone respawned it first: that run is the one to watch.
        None => match tmux.pane(&args.agent).map_err(failed)? {
            Pane::Live(pid) => Answer::Live(pid, Target::now(pid).started),
            _ => Answer::Gone,
        },
    };
    say(answer)
}

/// The agent's transcript folder and command, from the launch file beside its heartbeat file
/// (the session names it): `None` when it keeps no transcript.
fn transcript(tmux: &Tmux, agent: &str) -> Option<(std::path::PathBuf, Vec<u8>)> {
    let hb = std::path::PathBuf::from(tmux.hb_file(agent).ok()??);
    let config = crate::config::LaunchConfig::load(hb.parent()?, agent).ok()??;
    let dir = config.transcript_dir()?;
    Some((dir, config.command.into_encoded_bytes()))
}

/// Asks tmux until the pane is dead with a status, or shows it live again under another pid,
/// for at most [`STATUS_WAIT`].
fn how_it_died(tmux: &Tmux, agent: &str, died: Option<i32>) -> Result<Answer, tmux::Failure> {
    let deadline = Instant::now() + STATUS_WAIT;
    loop {
        let late = Instant::now() >= deadline;
        match tmux.pane(agent)? {
            Pane::Dead(d) if d.known() || late => return Ok(Answer::Dead(d.death)),
            Pane::Live(pid) if Some(pid) != died => {
                return Ok(Answer::Live(pid, Target::now(pid).started))
            }
            Pane::Live(_) if late => return Ok(Answer::Dead(Death::Unknown)),
            Pane::Gone(_) | Pane::Unknown => return Ok(Answer::Gone),
            // Dead without a status yet, or still shown live: tmux has not reaped it yet.
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn say(answer: Answer) -> Result<(), (Exit, String)> {
    let mut out = std::io::stdout().lock();
    out.write_all(answer.line().as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            (
                Exit::Failed,
                format!("cannot answer the sidecar: {}", mosaic_core::why(&e)),
            )
        })
}

/*!
The launcher's side of transcripts (`mosaic_core::transcript`): before tmux starts a run, the
log dir is prepared and the run's opening line written, and the session is given what keeps
the transcript from then on, in the same tmux command that creates it: the writer
(`mosaic-log`, found like `mosaic-hb`) as the pane's `pipe-pane -O` command, and the
`pane-died` hook that tells the writer how each run ended.
*/

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use mosaic_core::death::Death;
use mosaic_core::transcript;

use crate::launch::Log;
use crate::pane;

/// What the session is given so its pane's output is kept (see [`crate::tmux::Spec`]).
pub struct Keeping {
    /// The writer's shell command (`exec 'mosaic-log' 'DIR' ...`), for `pipe-pane -O`.
    pub pipe: OsString,
    /// The first run's opening line as one more shell word of it (the writer writes it
    /// first): only a session this launch creates gets a pipe, so only its run an opening.
    pub opening: OsString,
    /// The `pane-died` hook (`pane::died_hook`).
    pub died_hook: OsString,
}

/// Prepares `log.dir` and checks (creating them) the agent's transcript and control files:
/// before tmux starts anything, so a planted symlink or an unusable directory fails the launch
/// with nothing started.
pub fn prepare(
    log: &Log,
    agent: &str,
    command: &[u8],
    bell: Option<&Path>,
) -> Result<Keeping, String> {
    let bin = locate(log.bin.as_deref())?;
    transcript::prepare(&log.dir)?;
    transcript::open_append(&log.dir, &transcript::ctl_name(agent))?;
    transcript::open_append(&log.dir, &transcript::log_name(agent))?;
    let mut opening = Vec::new();
    pane::quote(&mut opening, &transcript::opening("run started", command));
    Ok(Keeping {
        pipe: pipe_command(&bin, bell, &log.dir, agent, log.max_size, log.keep),
        opening: OsString::from_vec(opening),
        died_hook: pane::died_hook(&log.dir.join(transcript::ctl_name(agent))),
    })
}

/// Before a respawn of `agent`'s dead pane: tells its writer how the last run (of the pid,
/// when known) ended and hands it the next run's opening line (see `transcript::announce`).
pub fn announce(
    dir: &Path,
    agent: &str,
    ended: Option<(Death, Option<i32>)>,
    command: &[u8],
    what: &str,
) {
    let line = transcript::opening(what, command);
    if let Err(why) = transcript::announce(dir, agent, ended, &line) {
        eprintln!("mosaic-launcher: {why}");
    }
}

/// `exec 'BIN' [--bell 'MARK'] 'DIR' 'AGENT.log' '.AGENT.log.ctl' MAX KEEP`, every path
/// single-quoted.
fn pipe_command(
    bin: &Path,
    bell: Option<&Path>,
    dir: &Path,
    agent: &str,
    max: u64,
    keep: u32,
) -> OsString {
    let mut out = b"exec ".to_vec();
    pane::quote(&mut out, bin.as_os_str().as_bytes());
    out.push(b' ');
    if let Some(bell) = bell {
        out.extend_from_slice(b"--bell ");
        pane::quote(&mut out, bell.as_os_str().as_bytes());
        out.push(b' ');
    }
    pane::quote(&mut out, dir.as_os_str().as_bytes());
    out.push(b' ');
    pane::quote(&mut out, transcript::log_name(agent).as_bytes());
    out.push(b' ');
    pane::quote(&mut out, transcript::ctl_name(agent).as_bytes());
    out.extend_from_slice(format!(" {max} {keep}").as_bytes());
    OsString::from_vec(out)
}

/// `mosaic-log`: the override (`MOSAIC_LOG_BIN`), else next to us, else on PATH.
fn locate(over: Option<&Path>) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    match over {
        Some(bin) if executable(bin) => Ok(bin.to_path_buf()),
        Some(bin) => Err(format!(
            "cannot use mosaic-log {}: not an executable file",
            bin.display()
        )),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("mosaic-log")))
            .filter(|p| executable(p))
            .or_else(|| crate::sidecar::on_path("mosaic-log"))
            .ok_or_else(|| {
                "cannot find mosaic-log next to mosaic-launcher or on PATH (set MOSAIC_LOG_BIN, or --no-log)"
                    .into()
            }),
    }
}

/*!
`mosaic-fleet logs AGENT --follow`: the pane's last lines, then its output as it comes, until
the agent's process ends, its session goes, or a stop signal.

One tmux command captures the pane and opens `pipe-pane -o -O` into a FIFO in a private
directory of ours, so no output falls between the capture and the stream, and none is shown
twice. We hold the FIFO open for reading and writing (a reader that is never at EOF, whoever
writes), and ask tmux once a second whether the pane still lives. The stream is the pane's
raw output, made plain text ([`super::plain`]: escape sequences, controls and broken UTF-8
dropped), so an agent cannot drive the operator's terminal through us. On the way out, whatever the
reason, the pipe is closed and the directory removed.

One follower per pane: a pane that already has a pipe (another follower, or someone's
`pipe-pane`) is refused, and that pipe is left alone; the refusal says how to close it. A
follower that died without its way out (SIGKILL) leaves its pipe, its pane option and its
directory; the next follower clears them: a follower's directory and pane option carry its
pid (`mosaic-follow-PID_RANDOM`, `@mosaic_follow_PID_RANDOM`), and what belongs to a pid that
no longer runs is a dead follower's. Its pipe is closed and its process ended (found, like our
own, by the FIFO it writes to), and its directory removed; every dead follower's directory
under `$TMPDIR` goes, whichever pane it followed (their pipes end at the next output, which
nobody reads).
*/

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

use super::plain::{self, Printable};
use super::{failed, last_lines, print, print_bytes, tmux_failed, Fail};
use crate::child::{self, Cut, Stop};
use crate::tmux::{Pane, Tmux};

/// How often tmux is asked whether the pane still lives.
const LOOK: Duration = Duration::from_secs(1);

/// How long the last output of a pane found dead may take to come through the pipe.
const LAST_WORDS: Duration = Duration::from_millis(100);

pub fn follow(tmux: &Tmux, agent: &str, lines: usize) -> Result<ExitCode, Fail> {
    let stop = Stop::new();
    // The pane's first: a dead follower's pipe that is still opening its FIFO blocks there
    // (and is found) while the FIFO exists, and would fail at once, unseen, without it.
    clear_dead_followers(tmux, agent);
    sweep_dead_followers();
    let dir = Private::new()?;
    let fifo = dir.path.join("pane");
    nix::unistd::mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR)
        .map_err(|e| failed(format!("cannot make a FIFO in {}: {e}", dir.path.display())))?;
    // Read and write: a reader that never sees EOF, whoever writes or stops writing.
    let mut stream = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(|e| {
            failed(format!(
                "cannot open {}: {}",
                fifo.display(),
                mosaic_core::why(&e)
            ))
        })?;
    let option = format!("{OPTION_PREFIX}{}", dir.id);
    let Some(piped) = tmux
        .capture_and_pipe(agent, &fifo, &option)
        .map_err(tmux_failed)?
    else {
        return Err(super::no_such_agent(agent, tmux.socket()));
    };
    if piped.already {
        tmux.unpipe(agent, &option, false);
        return Err(failed(format!(
            "the pane of agent {agent} already has a pipe (another `logs --follow`, or tmux \
             pipe-pane): one follower at a time; if none runs, `tmux -L {} pipe-pane -t \
             ={agent}:` closes it",
            tmux.socket()
        )));
    }
    let result = stream_until_the_end(tmux, agent, lines, &piped.kept, &mut stream, &stop);
    // Ours, found by the FIFO it writes to, while it still runs: tmux closes its pipe (which
    // ends it), and, for a dead pane, whose pipe tmux 3.3a will not close, we end it.
    let ours = piped
        .server
        .and_then(|server| our_pipe(server, &fifo, false));
    tmux.unpipe(agent, &option, ours.is_some());
    if let Some(pidfd) = ours {
        let _ = mosaic_core::sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGTERM);
    }
    result
}

/// The process tmux runs for our pipe: the server's child whose stdout is `fifo` (our own,
/// in a directory only we can enter), as a pidfd opened before that is checked. It lives as
/// long as the pane's pipe is ours (tmux closing the pipe ends it), once its shell has
/// opened the FIFO: a follow cut short right after it began gives it a moment.
fn our_pipe(server: i32, fifo: &Path, opening: bool) -> Option<OwnedFd> {
    let give_up = Instant::now() + PIPE_START;
    loop {
        let found = pipe_into(server, fifo, opening);
        if found.is_some() || Instant::now() >= give_up {
            return found;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The tmux server's child whose stdout is `fifo` (also once that name is removed: the link
/// then reads `FIFO (deleted)`), or, with `opening`, that still runs the pipe's command
/// ([`crate::tmux::follow_command`], its FIFO's path unique to one follower): a shell that
/// opens a FIFO whose reader died blocks in that open for good. As a pidfd opened before the
/// check.
fn pipe_into(server: i32, fifo: &Path, opening: bool) -> Option<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let deleted = {
        let mut name = fifo.as_os_str().to_owned();
        name.push(" (deleted)");
        PathBuf::from(name)
    };
    let command = crate::tmux::follow_command(fifo);
    let kids = std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"));
    kids.ok()?.split_whitespace().find_map(|kid| {
        let pidfd = mosaic_core::sys::pidfd_open(kid.parse().ok()?).ok()?;
        let out = std::fs::read_link(format!("/proc/{kid}/fd/1")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{kid}/cmdline")).unwrap_or_default();
        let runs = cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == command.as_bytes());
        (out == fifo || out == deleted || (opening && runs)).then_some(pidfd)
    })
}

/// The pane option of follower `id`, and the prefix every follower's shares.
const OPTION_PREFIX: &str = "@mosaic_follow_";

/// The directory name of follower `id` under `$TMPDIR`, and the prefix every one shares.
const DIR_PREFIX: &str = "mosaic-follow-";

/// Whether follower `id` (`PID_RANDOM`) is dead: its pid runs no more. (A pid reused since
/// keeps its leftovers a while longer; they are never taken for a live follower's.)
fn dead(id: &str) -> bool {
    let pid = id.split('_').next().and_then(|p| p.parse::<i32>().ok());
    pid.is_some_and(|pid| pid > 0 && !mosaic_core::teardown::alive(pid))
}

/// Clears what dead followers left on `agent`'s pane: each one's option unset, its directory
/// removed, and its pipe closed and its process ended while that process still writes into
/// its FIFO (else the pane's pipe, if any, is someone else's, and left alone).
fn clear_dead_followers(tmux: &Tmux, agent: &str) {
    let options = tmux.pane_options(agent, OPTION_PREFIX);
    if options.is_empty() {
        return;
    }
    let server = tmux.server_pid();
    for option in options {
        let id = &option[OPTION_PREFIX.len()..];
        if !dead(id) {
            continue;
        }
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{id}"));
        // A pipe forked a moment before its follower died may not have executed yet.
        let writer = server.and_then(|server| our_pipe(server, &dir.join("pane"), true));
        tmux.unpipe(agent, &option, writer.is_some());
        if let Some(pidfd) = writer {
            let _ = mosaic_core::sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGTERM);
        }
        remove_own_dir(&dir);
    }
}

/// Removes the directories dead followers left under `$TMPDIR` (ours only).
fn sweep_dead_followers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        if dead(id) {
            remove_own_dir(&entry.path());
        }
    }
}

/// Removes `dir` and what is in it, if it is a directory of ours (not a link, our uid).
fn remove_own_dir(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw());
    if ours {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// How long the pipe's process may take to open the FIFO.
const PIPE_START: Duration = Duration::from_millis(500);

fn stream_until_the_end(
    tmux: &Tmux,
    agent: &str,
    lines: usize,
    kept: &[u8],
    stream: &mut File,
    stop: &Stop,
) -> Result<ExitCode, Fail> {
    let kept = plain::plain(kept);
    let text: String = last_lines(&kept, lines)
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    print(&text)?;
    let mut printable = Printable::default();
    let mut next_look = Instant::now() + LOOK;
    loop {
        let wait = next_look.saturating_duration_since(Instant::now());
        match child::wait_readable(stream.as_fd(), wait, Some(stop)) {
            Ok(_) | Err(Cut::TimedOut) => {}
            // Like a process the signal had ended: 128+N, with the pipe closed behind us.
            Err(Cut::Interrupted(sig)) => return Ok(ExitCode::from(128 + sig as u8)),
            Err(Cut::Io(e)) => {
                return Err(failed(format!(
                    "cannot wait for the pane's output: {}",
                    mosaic_core::why(&e)
                )))
            }
        }
        pass_on(stream, &mut printable)?;
        if Instant::now() < next_look {
            continue;
        }
        next_look = Instant::now() + LOOK;
        let end = match tmux.pane(agent).map_err(tmux_failed)? {
            Pane::Live(_) | Pane::Unknown => continue,
            Pane::Dead(death) => format!("agent {agent} exited with {}", death.describe()),
            Pane::Gone(_) => format!("the session of agent {agent} is gone"),
        };
        std::thread::sleep(LAST_WORDS);
        pass_on(stream, &mut printable)?;
        if printable.mid_line() {
            print("\n")?;
        }
        eprintln!("mosaic-fleet: {end}");
        return Ok(ExitCode::SUCCESS);
    }
}

/// Passes on what the pipe holds now, made printable.
fn pass_on(stream: &mut File, printable: &mut Printable) -> Result<(), Fail> {
    let mut buf = [0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => printable.push(&buf[..n], &mut out),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(format!("cannot read the pane's output: {e}"))),
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    print_bytes(&out)
}

/// A directory of our own under `$TMPDIR` (mode 0700), removed with what is in it when
/// dropped.
struct Private {
    path: PathBuf,
    /// `PID-RANDOM`: names the directory and our pane option.
    id: String,
}

impl Private {
    fn new() -> Result<Private, Fail> {
        let base = std::env::temp_dir();
        let id = format!(
            "{}_{:016x}",
            std::process::id(),
            mosaic_core::sys::random_u64()
        );
        let path = base.join(format!("{DIR_PREFIX}{id}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| {
                failed(format!(
                    "cannot make a directory in {}: {}",
                    base.display(),
                    mosaic_core::why(&e)
                ))
            })?;
        Ok(Private { path, id })
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

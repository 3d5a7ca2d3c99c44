/*!
The start verdict, with the meaning of systemd's `Type=exec`. Invariant: a launch reports
started only after exec — after the pane's shell has really executed the agent's command.

tmux names the pane's process as soon as it has forked it. That process then goes through
three states, each visible in `/proc/PID/cmdline`: tmux's fork (the server's command line),
the shell (`/bin/sh -c <pane command>`), and the agent once the shell's `exec` succeeded.
We watch for the third, holding a pidfd so that an exit (a command not found: the shell
exits 127) is seen the moment it happens and a reused pid is never mistaken for the agent.
*/

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use crate::child::{self, Cut, Stop};
use crate::tmux::{PanePids, PANE_SHELL};

/// How the pane's process fared.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It runs the agent's command (and outlived the settle time).
    Running,
    /// It exited before, during or right after its exec; its wait status when it was read
    /// from the zombie (`/proc/PID/stat` field 52) before tmux reaped it.
    Exited(Option<i32>),
    /// It was never seen to exec before the deadline.
    NoExec,
}

/// The pane's argv as the shell has it, to tell the shell from the agent it executes.
pub fn shell_cmdline(pane_argument: &OsStr) -> Vec<u8> {
    let mut line = Vec::new();
    for arg in [OsStr::new(PANE_SHELL), OsStr::new("-c"), pane_argument] {
        line.extend_from_slice(arg.as_bytes());
        line.push(0);
    }
    line
}

/// Watches pane process `pids.pane` until it has executed the agent (then waits `settle`
/// more for a crash), or has exited, or `deadline`. A stop signal cuts the watch short.
pub fn watch(
    pids: PanePids,
    shell_line: &[u8],
    settle: Duration,
    deadline: Instant,
    stop: &Stop,
) -> Result<Verdict, Cut> {
    let mut bufs = Buffers::new();
    let mut watch = match Watch::new(pids, shell_line, settle, deadline, &mut bufs) {
        Ok(watch) => watch,
        Err(verdict) => return Ok(verdict),
    };
    loop {
        if let Some(sig) = stop.signal() {
            return Err(Cut::Interrupted(sig));
        }
        if let Some(verdict) = watch.look(&mut bufs) {
            return Ok(verdict);
        }
        match watch.settled_at {
            // Executed: its death, or the end of the settle time, whichever comes first.
            Some(until) => match &watch.pidfd {
                Some(fd) => {
                    let left = until.saturating_duration_since(Instant::now());
                    child::wait_readable(fd.as_fd(), left, Some(stop))?;
                }
                None => std::thread::sleep(until.saturating_duration_since(Instant::now())),
            },
            None => std::thread::sleep(PAUSE),
        }
    }
}

/// Watches many panes at once (`mosaic-fleet up`), as [`watch`] does one: `decided` is told
/// each one's verdict as soon as there is one, in the order they come, so that it can act on
/// it while the others are still watched. A stop signal decides every pane not yet decided.
pub fn watch_many(
    panes: Vec<(usize, Watch)>,
    stop: &Stop,
    mut decided: impl FnMut(usize, Result<Verdict, Cut>),
) {
    let mut bufs = Buffers::new();
    let mut left = panes;
    // Short steps while something moves, longer while nothing does: every look at a pane is
    // CPU taken from the panes starting beside it.
    let mut pause = PAUSE;
    while !left.is_empty() {
        if let Some(sig) = stop.signal() {
            for (at, _) in left.drain(..) {
                decided(at, Err(Cut::Interrupted(sig)));
            }
            return;
        }
        let before = left.len();
        left.retain_mut(|(at, watch)| match watch.look(&mut bufs) {
            Some(verdict) => {
                decided(*at, Ok(verdict));
                false
            }
            None => true,
        });
        pause = if left.len() < before {
            PAUSE
        } else {
            (pause * 2).min(PAUSE_MANY)
        };
        // Only settling ones left: nothing to look for before the first settle time ends.
        // (`None` orders first: one pane still to execute makes the minimum `Some(None)`.)
        let first_settled = left.iter().map(|(_, w)| w.settled_at).min().flatten();
        let nap = match first_settled {
            Some(first) => first.saturating_duration_since(Instant::now()),
            None => pause,
        };
        if !left.is_empty() {
            let _ = stop.nap(nap);
        }
    }
}

/// The step between looks at a pane that has not executed yet: the exec is a millisecond or
/// two away, and every step of latency here is launch time (a few dozen /proc reads cost far
/// less).
const PAUSE: Duration = Duration::from_micros(100);

/// The longest step between looks at many panes while none of them moves.
const PAUSE_MANY: Duration = Duration::from_millis(1);

/// Two reads' worth of command line, allocated once for any number of panes.
pub struct Buffers {
    first: Vec<u8>,
    second: Vec<u8>,
}

impl Buffers {
    pub fn new() -> Buffers {
        Buffers {
            first: vec![0u8; CMDLINE_MAX],
            second: vec![0u8; CMDLINE_MAX],
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers::new()
    }
}

/// One pane's verdict under way ([`Watch::look`] until there is one).
pub struct Watch {
    pid: i32,
    pidfd: Option<OwnedFd>,
    /// The server's command line: the pane's process before it executes anything.
    server_line: Option<Vec<u8>>,
    shell_line: Vec<u8>,
    cmdline_path: String,
    settle: Duration,
    deadline: Instant,
    /// Once it has executed the agent: when it will have settled.
    settled_at: Option<Instant>,
}

impl Watch {
    /// Starts watching pane process `pids.pane`; the verdict at once if it is already gone.
    pub fn new(
        pids: PanePids,
        shell_line: &[u8],
        settle: Duration,
        deadline: Instant,
        bufs: &mut Buffers,
    ) -> Result<Watch, Verdict> {
        let pid = pids.pane;
        let pidfd = match child::pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(Verdict::Exited(None)),
            // No pidfd (an old kernel, a seccomp filter): /proc alone, as below.
            Err(_) => None,
        };
        let server_line = read_cmdline(&format!("/proc/{}/cmdline", pids.server), &mut bufs.first)
            .ok()
            .map(<[u8]>::to_vec);
        Ok(Watch {
            pid,
            pidfd,
            server_line,
            shell_line: shell_line.to_vec(),
            cmdline_path: format!("/proc/{pid}/cmdline"),
            settle,
            deadline,
            settled_at: None,
        })
    }

    /// One look at the pane: its verdict, once there is one.
    pub fn look(&mut self, bufs: &mut Buffers) -> Option<Verdict> {
        let pid = self.pid;
        if let Some(until) = self.settled_at {
            return if exited(self.pidfd.as_ref(), pid) {
                Some(Verdict::Exited(mosaic_core::proc::zombie_status(pid)))
            } else {
                (Instant::now() >= until).then_some(Verdict::Running)
            };
        }
        let line = read_cmdline(&self.cmdline_path, &mut bufs.first);
        if exited(self.pidfd.as_ref(), pid) || (self.pidfd.is_none() && line.is_err()) {
            return Some(Verdict::Exited(mosaic_core::proc::zombie_status(pid)));
        }
        // Empty while the kernel swaps in the new program (and for a zombie, which the pidfd
        // or /proc/PID/stat tell): not yet anything.
        let line = line.unwrap_or_default();
        let forked = self.server_line.as_deref() == Some(line);
        // The same answer twice: an exec between two reads could have mixed two programs.
        if !line.is_empty()
            && !forked
            && line != self.shell_line
            && read_cmdline(&self.cmdline_path, &mut bufs.second).is_ok_and(|again| again == line)
        {
            // Read while it lived; a pidfd readable now means it died right after its exec.
            if exited(self.pidfd.as_ref(), pid) {
                return Some(Verdict::Exited(mosaic_core::proc::zombie_status(pid)));
            }
            if self.settle.is_zero() {
                return Some(Verdict::Running);
            }
            self.settled_at = Some(Instant::now() + self.settle);
            return None;
        }
        (Instant::now() >= self.deadline).then_some(Verdict::NoExec)
    }
}

/// `/proc/PID/cmdline` in one `read(2)`: `std::fs::read` starts with a small probe read, and an
/// exec between its reads would splice two programs' command lines into one that is neither.
fn read_cmdline<'b>(path: &str, buf: &'b mut [u8]) -> std::io::Result<&'b [u8]> {
    use std::io::Read;
    let n = std::fs::File::open(path)?.read(buf)?;
    Ok(&buf[..n])
}

/// How much of a command line is read: enough to tell the shell's from the agent's.
const CMDLINE_MAX: usize = 64 * 1024;

/// Whether the process has exited (pidfd readable), or without a pidfd, is gone or a zombie.
fn exited(pidfd: Option<&OwnedFd>, pid: i32) -> bool {
    match pidfd {
        Some(fd) => child::wait_readable(fd.as_fd(), Duration::ZERO, None).unwrap_or(false),
        None => mosaic_core::proc::process_state(pid).is_none_or(|s| matches!(s, 'Z' | 'X')),
    }
}

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
    let pid = pids.pane;
    let pidfd = match child::pidfd_open(pid) {
        Ok(fd) => Some(fd),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(Verdict::Exited(None)),
        // No pidfd (an old kernel, a seccomp filter): /proc alone, as below.
        Err(_) => None,
    };
    // Two reads' worth, allocated once: the loop below looks every 100 µs.
    let (mut first, mut second) = (vec![0u8; CMDLINE_MAX], vec![0u8; CMDLINE_MAX]);
    let server_line = read_cmdline(&format!("/proc/{}/cmdline", pids.server), &mut first)
        .ok()
        .map(<[u8]>::to_vec);
    let cmdline_path = format!("/proc/{pid}/cmdline");
    // Short, even steps: the exec is a millisecond or two away, and every step of latency
    // here is launch time (a few dozen /proc reads cost far less).
    let pause = Duration::from_micros(100);
    loop {
        if let Some(sig) = stop.signal() {
            return Err(Cut::Interrupted(sig));
        }
        let line = read_cmdline(&cmdline_path, &mut first);
        if exited(pidfd.as_ref(), pid) || (pidfd.is_none() && line.is_err()) {
            return Ok(Verdict::Exited(mosaic_core::proc::zombie_status(pid)));
        }
        // Empty while the kernel swaps in the new program (and for a zombie, which the pidfd
        // or /proc/PID/stat tell): not yet anything.
        let line = line.unwrap_or_default();
        let forked = server_line.as_deref() == Some(line);
        // The same answer twice: an exec between two reads could have mixed two programs.
        if !line.is_empty()
            && !forked
            && line != shell_line
            && read_cmdline(&cmdline_path, &mut second).is_ok_and(|again| again == line)
        {
            break;
        }
        if Instant::now() >= deadline {
            return Ok(Verdict::NoExec);
        }
        std::thread::sleep(pause);
    }
    // Read while it lived; a pidfd readable now means it died right after its exec.
    if exited(pidfd.as_ref(), pid) {
        return Ok(Verdict::Exited(mosaic_core::proc::zombie_status(pid)));
    }
    if !settle.is_zero() {
        let died = match &pidfd {
            Some(fd) => child::wait_readable(fd.as_fd(), settle, Some(stop))?,
            None => {
                std::thread::sleep(settle);
                exited(None, pid)
            }
        };
        if died {
            return Ok(Verdict::Exited(mosaic_core::proc::zombie_status(pid)));
        }
    }
    Ok(Verdict::Running)
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

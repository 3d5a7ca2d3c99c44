/*!
Child processes the launcher can always get away from: a deadline on every wait, the stop
signals (SIGINT, SIGTERM, SIGHUP) held back and seen as events, and no inherited descriptor
passed on.

Invariants:
- Nothing but fds 0-2 crosses into tmux or the sidecar: [`Stop::new`] marks every descriptor
  the launcher inherited above 2 close-on-exec before anything is spawned, and everything the
  launcher opens itself is close-on-exec (std's default, and the pidfds and signalfd here).
- The stop signals are caught, never blocked: a blocked mask would be inherited by tmux, its
  server and every pane (std does not reset it), and a pane deaf to SIGHUP outlives its server.
- No wait is unbounded: [`Running::finish`] returns at the deadline, or when a stop signal
  arrives, having killed the child (its whole process group when it has one of its own: a
  tmux client) and reaped it.
*/

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

pub use mosaic_core::sys::pidfd_open;

/// Why a wait ended without the child's own exit.
#[derive(Debug)]
pub enum Cut {
    /// The deadline passed.
    TimedOut,
    /// A stop signal arrived (its number).
    Interrupted(i32),
    /// The child could not be started or waited for.
    Io(std::io::Error),
}

/// The stop signals, caught for the duration of a launch and readable from a pipe, so that a
/// launch is all or nothing also when it is told to stop: the launch decides when to look, and
/// rolls back or completes. (Caught, not blocked: a blocked mask would be inherited by tmux,
/// its server and every pane, while a handler is reset by `exec`.)
pub struct Stop {
    read: Option<OwnedFd>,
    write: Option<OwnedFd>,
    old: Vec<(Signal, SigAction)>,
    got: std::cell::Cell<Option<i32>>,
}

const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Where the handler writes: the write end of the current `Stop`'s pipe, or -1.
static PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    let fd = PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: the write end of the current `Stop`'s pipe, which unhooks it (in `Drop`)
        // before closing it.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        // write(2) is async-signal-safe; a full pipe just drops the byte (one is enough).
        let _ = nix::unistd::write(fd, &[sig as u8]);
    }
}

impl Stop {
    /// Catches SIGINT, SIGTERM and SIGHUP, and marks inherited descriptors above 2
    /// close-on-exec.
    pub fn new() -> Stop {
        // Whatever our caller leaked to us (a held `flock`, the write end of a pipe) must not
        // live on in a tmux server or a sidecar.
        mosaic_core::sys::release_inherited_fds(mosaic_core::sys::Inherited::CloseOnExec);
        let Ok((read, write)) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) else {
            // No pipe, no catching: the signals keep their default action (nothing is
            // created yet if they kill us now; later, tmux's own cleanup is all there is).
            return Stop {
                read: None,
                write: None,
                old: Vec::new(),
                got: std::cell::Cell::new(None),
            };
        };
        PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(on_stop_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let mut old = Vec::new();
        for sig in STOP_SIGNALS {
            // SAFETY: the handler only calls write(2), which is async-signal-safe; the
            // previous action is saved for Drop.
            if let Ok(previous) = unsafe { signal::sigaction(sig, &action) } {
                old.push((sig, previous));
            }
        }
        Stop {
            read: Some(read),
            write: Some(write),
            old,
            got: std::cell::Cell::new(None),
        }
    }

    /// The stop signal received so far, if any (reads the pipe without waiting).
    pub fn signal(&self) -> Option<i32> {
        if self.got.get().is_none() {
            if let Some(fd) = &self.read {
                let mut byte = [0u8];
                // Non-blocking: EAGAIN when no signal came.
                if nix::unistd::read(fd, &mut byte) == Ok(1) {
                    self.got.set(Some(i32::from(byte[0])));
                }
            }
        }
        self.got.get()
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.read.as_ref().map(AsFd::as_fd)
    }

    /// Sleeps `timeout`, or less if a stop signal comes: then returns it.
    pub fn nap(&self, timeout: Duration) -> Option<i32> {
        match self.fd() {
            Some(fd) => {
                let _ = poll(&[Some(fd), None, None, None], Instant::now() + timeout);
            }
            None => std::thread::sleep(timeout),
        }
        self.signal()
    }
}

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        for (sig, previous) in &self.old {
            // SAFETY: restores the action saved in `new`.
            let _ = unsafe { signal::sigaction(*sig, previous) };
        }
        if let Some(write) = &self.write {
            let _ =
                PIPE.compare_exchange(write.as_raw_fd(), -1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// How a wait for a child ended.
pub enum Finished {
    /// It exited.
    Exited(Output),
    /// It said the line waited for, and runs on.
    Said,
}

/// A started child with its pidfd, for bounded waits.
pub struct Running {
    child: Child,
    pidfd: Option<OwnedFd>,
    own_group: bool,
}

/// Spawns `cmd`; with `own_group`, in a process group of its own, so that a timeout can kill
/// whatever it forked too (a tmux client spinning with a helper).
pub fn spawn(cmd: &mut Command, own_group: bool) -> std::io::Result<Running> {
    if own_group {
        cmd.process_group(0);
    }
    let child = cmd.spawn()?;
    // Our own unreaped child: the pid cannot be reused before we wait for it.
    let pidfd = pidfd_open(child.id() as i32).ok();
    Ok(Running {
        child,
        pidfd,
        own_group,
    })
}

/// Runs `cmd` to completion within `deadline`, collecting stdout and stderr.
pub fn output(
    cmd: &mut Command,
    own_group: bool,
    deadline: Instant,
    stop: Option<&Stop>,
) -> Result<Output, Cut> {
    spawn(cmd, own_group)
        .map_err(Cut::Io)?
        .finish(deadline, stop)
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Waits for the child's exit, reading its piped stdout and stderr, until `deadline` or a
    /// stop signal; then the child is killed and reaped.
    pub fn finish(self, deadline: Instant, stop: Option<&Stop>) -> Result<Output, Cut> {
        match self.until(None, deadline, stop)? {
            Finished::Exited(out) => Ok(out),
            Finished::Said => unreachable!("no line to wait for"),
        }
    }

    /// [`Running::finish`], or [`Finished::Said`] as soon as its stdout begins with `line`:
    /// then the child runs on, never waited for (when we exit, init adopts it).
    pub fn finish_or_said(
        self,
        line: &[u8],
        deadline: Instant,
        stop: Option<&Stop>,
    ) -> Result<Finished, Cut> {
        self.until(Some(line), deadline, stop)
    }

    fn until(
        mut self,
        line: Option<&[u8]>,
        deadline: Instant,
        stop: Option<&Stop>,
    ) -> Result<Finished, Cut> {
        drop(self.child.stdin.take());
        let mut stdout = self.child.stdout.take();
        let mut stderr = self.child.stderr.take();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            let pipes = stdout.is_some() || stderr.is_some();
            // Pipes first; once both are closed, the pidfd (or, without one, a short poll).
            let exit_fd = if !pipes {
                match self.pidfd.as_ref().map(AsFd::as_fd) {
                    Some(fd) => Some(fd),
                    None => match self.child.try_wait() {
                        Ok(Some(status)) => {
                            return Ok(Finished::Exited(collected(status, out, err)))
                        }
                        Ok(None) => None,
                        Err(e) => return Err(self.cut(Cut::Io(e))),
                    },
                }
            } else {
                None
            };
            let waits_exit = exit_fd.is_some();
            let fds = [
                stdout.as_ref().map(AsFd::as_fd),
                stderr.as_ref().map(AsFd::as_fd),
                exit_fd,
                stop.and_then(Stop::fd),
            ];
            // With nothing that can wake us (no pidfd, pipes closed), look again soon.
            let wake = if fds[..3].iter().all(Option::is_none) {
                deadline.min(Instant::now() + Duration::from_millis(2))
            } else {
                deadline
            };
            let ready = match poll(&fds, wake) {
                Ok(ready) => ready,
                Err(e) => return Err(self.cut(Cut::Io(e))),
            };
            if let Some(sig) = stop.filter(|_| ready[3]).and_then(Stop::signal) {
                return Err(self.cut(Cut::Interrupted(sig)));
            }
            if !ready.iter().any(|&r| r) && Instant::now() >= deadline {
                return Err(self.cut(Cut::TimedOut));
            }
            if ready[0] {
                drain(&mut stdout, &mut out);
                if line.is_some_and(|line| out.starts_with(line)) {
                    return Ok(Finished::Said);
                }
            }
            if ready[1] {
                drain(&mut stderr, &mut err);
            }
            if ready[2] || (!waits_exit && !pipes) {
                match self.child.try_wait() {
                    Ok(Some(status)) => return Ok(Finished::Exited(collected(status, out, err))),
                    Ok(None) => {}
                    Err(e) => return Err(self.cut(Cut::Io(e))),
                }
            }
        }
    }

    fn cut(&mut self, why: Cut) -> Cut {
        self.kill();
        why
    }

    /// Kills the child (and its group, when it has its own) and reaps it.
    pub fn kill(&mut self) {
        // The child is unreaped, so its pid (and group id) is still ours.
        let pid = Pid::from_raw(self.child.id() as i32);
        if self.own_group {
            let _ = signal::killpg(pid, Signal::SIGKILL);
        }
        let _ = signal::kill(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn collected(status: ExitStatus, stdout: Vec<u8>, stderr: Vec<u8>) -> Output {
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Reads what is there; EOF (or an error) closes our end.
fn drain<R: Read>(pipe: &mut Option<R>, into: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    if let Some(r) = pipe {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => *pipe = None,
            Ok(n) => into.extend_from_slice(&buf[..n]),
        }
    }
}

/// Polls the descriptors given (None: not polled) until one is ready or `deadline`; returns
/// which are ready. EINTR counts as nothing ready.
fn poll(fds: &[Option<BorrowedFd<'_>>; 4], deadline: Instant) -> std::io::Result<[bool; 4]> {
    let given: Vec<(usize, BorrowedFd)> = fds
        .iter()
        .enumerate()
        .filter_map(|(i, fd)| Some((i, (*fd)?)))
        .collect();
    let mut pfds: Vec<PollFd> = given
        .iter()
        .map(|&(_, fd)| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    // Rounded up to whole milliseconds: never wake before the deadline.
    let wait = deadline.saturating_duration_since(Instant::now());
    let ms = wait.as_millis() + u128::from(!wait.subsec_nanos().is_multiple_of(1_000_000));
    let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    let mut ready = [false; 4];
    match nix::poll::poll(&mut pfds, timeout) {
        Ok(_) => {}
        Err(Errno::EINTR) => return Ok(ready),
        Err(e) => return Err(e.into()),
    }
    for (&(i, _), p) in given.iter().zip(&pfds) {
        ready[i] = p.revents().is_some_and(|r| !r.is_empty());
    }
    Ok(ready)
}

/// Waits up to `timeout` for `fd` to turn readable (a pidfd: its process exited; a pipe: data
/// came) or a stop signal. Returns true when it is readable.
pub fn wait_readable(
    fd: BorrowedFd<'_>,
    timeout: Duration,
    stop: Option<&Stop>,
) -> Result<bool, Cut> {
    let deadline = Instant::now() + timeout;
    loop {
        let fds = [Some(fd), None, None, stop.and_then(Stop::fd)];
        let ready = poll(&fds, deadline).map_err(Cut::Io)?;
        if let Some(sig) = stop.filter(|_| ready[3]).and_then(Stop::signal) {
            return Err(Cut::Interrupted(sig));
        }
        if ready[0] {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
}

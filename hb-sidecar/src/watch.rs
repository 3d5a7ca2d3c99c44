/*!
The sidecar's event loop: one thread, one `ppoll`; no child process but the respawn helper
of a restart ([`crate::restart`]).

```text
            +-------- timeout: target still ours? --yes--> write status=ok --+
            |                                   \--no---> write exited, end
  ppoll(pidfd, signalfd; until next beat) ------ pidfd readable ----------> write exited, end
            |
            +-------- signalfd readable (TERM, INT, HUP) --> write stopped, end
            |
            +-------- inotify readable, or its deadline -----> activity changed? write ok
```

The third descriptor is the agent's terminal and bell mark ([`crate::activity`]), present only
when the target has a terminal; while it rests (a second after each wake-up) it is left out.
Under a restart policy, a death does not end the loop but hands it to [`crate::restart`],
which waits in the same `ppoll` (the third descriptor is then the respawn helper's stdout)
and hands back a new target, or ends with `exited`, `failed` or `stopped`.

Beats are scheduled on a fixed grid (`next += interval`), so the rate does not drift with the
cost of a write; after a stall (a suspended machine) the grid restarts from now rather than
bursting to catch up. A write error never ends the loop: the last good file stays in place,
the error is logged once, and the next beat tries again.
*/

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;

use crate::activity;
use crate::hbfile::HbFile;
use crate::restart::{Ending, Outcome, Supervisor};
use crate::target::{Gone, Target};
use mosaic_core::activity::Activity;
use mosaic_core::death::Death;
use mosaic_core::handover::Ready;
use mosaic_core::record::{render, Beat, Lifecycle, Status};
use mosaic_core::teardown::{self, Step, Teardown};

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Exited(Gone),
    Stopped(i32),
    /// `ppoll` itself failed (not an interruption): the sidecar cannot wait any more, and
    /// says so rather than spin. No final record: the last one goes stale, the lock is freed.
    Failed(Errno),
    /// The target died once too often for its restart policy: `status=failed`.
    GaveUp(Gone),
}

/// Keeps the heartbeat file: renders and replaces one record per call.
pub struct Writer<'a> {
    file: HbFile,
    pid: i32,
    started: Option<u64>,
    agent: Option<&'a str>,
    interval: Duration,
    seq: u64,
    /// Our own pid, read once: create the writer after going into the background.
    hb_pid: i32,
    buf: Vec<u8>,
    failing: bool,
    /// Written with `status=ok` only.
    activity: Option<(Activity, chrono::DateTime<Utc>)>,
    /// What supervision adds to each record.
    pub lifecycle: Lifecycle,
}

impl<'a> Writer<'a> {
    pub fn new(
        file: HbFile,
        pid: i32,
        started: Option<u64>,
        agent: Option<&'a str>,
        interval: Duration,
    ) -> Self {
        Writer {
            file,
            pid,
            started,
            agent,
            interval,
            seq: 0,
            hb_pid: nix::unistd::getpid().as_raw(),
            buf: Vec::with_capacity(256),
            failing: false,
            activity: None,
            lifecycle: Lifecycle::default(),
        }
    }

    /// The pid the records name.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The start time the records name.
    pub fn started(&self) -> Option<u64> {
        self.started
    }

    /// Points the records at a restarted target.
    pub fn retarget(&mut self, pid: i32, started: Option<u64>) {
        self.pid = pid;
        self.started = started;
    }

    /// The heartbeat directory (the fleet-wide restart guard lives there).
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.file.dir()
    }

    /// The heartbeat file's name in [`Writer::dir`].
    pub fn name(&self) -> &std::ffi::CStr {
        self.file.name()
    }

    /// Writes one record. Errors are logged when they start and when they end, not per beat;
    /// `seq` counts records attempted, so a gap shows in it.
    pub fn write(&mut self, status: Status) -> bool {
        self.seq += 1;
        let beat = Beat {
            pid: self.pid,
            status,
            agent: self.agent,
            interval: self.interval,
            seq: self.seq,
            hb_pid: self.hb_pid,
            started: self.started,
            lifecycle: self.lifecycle,
            activity: self.activity.filter(|_| status == Status::Ok),
        };
        render(&mut self.buf, Utc::now(), &beat);
        match self.file.replace(&self.buf) {
            Ok(()) => {
                if self.failing {
                    self.failing = false;
                    crate::log(format_args!(
                        "heartbeat file {} written again",
                        self.file.path().display()
                    ));
                }
                true
            }
            Err(e) => {
                if !self.failing {
                    crate::log(format_args!(
                        "cannot write heartbeat file {}: {} (will retry every beat)",
                        self.file.path().display(),
                        mosaic_core::why(&e)
                    ));
                }
                self.failing = true;
                false
            }
        }
    }
}

/// Answers the launcher, once, then does what start-up put off so as not to keep it waiting:
/// removing what a predecessor killed mid-beat left behind, and handing back start-up's
/// memory.
fn answer(ready: &mut Option<Ready>, writer: &Writer) {
    if let Some(ready) = ready.take() {
        ready.send();
        // A failure only leaves litter, which status never reads (dotfiles).
        let _ = writer.file.remove_stale_temps();
        mosaic_core::sys::release_startup_memory();
    }
}

/// A target and its heartbeat file, driven by [`Sidecar::run`].
pub struct Sidecar<'a> {
    target: Target,
    writer: Writer<'a>,
    interval: Duration,
    activity: Option<activity::Watch>,
    supervisor: Option<Supervisor>,
    /// The grace of the teardown after each death of the target, when asked to reap.
    reap: Option<Duration>,
    /// The hand-over's answer, sent once the first record is written.
    ready: Option<Ready>,
}

impl<'a> Sidecar<'a> {
    pub fn new(target: Target, file: HbFile, agent: Option<&'a str>, interval: Duration) -> Self {
        let writer = Writer::new(file, target.pid(), target.started(), agent, interval);
        Sidecar {
            target,
            writer,
            interval,
            activity: None,
            supervisor: None,
            reap: None,
            ready: None,
        }
    }

    /// Answers the launcher ([`Ready::send`]) once the first record is written: `ok`, or
    /// under a restart policy `restarting` for a target that died at once.
    pub fn on_first_record(mut self, ready: Ready) -> Self {
        self.ready = Some(ready);
        self
    }

    /// Whether the launcher has had its answer (or there was none to give): false for a
    /// target that was gone before the first record.
    pub fn answered(&self) -> bool {
        self.ready.is_none()
    }

    fn answer(&mut self) {
        answer(&mut self.ready, &self.writer);
    }

    /// After each death of the target, also ends what it left in its session and process
    /// group: SIGTERM, then SIGKILL after `grace` ([`teardown`]), counted as `reaped=`.
    pub fn with_reap(mut self, grace: Option<Duration>) -> Self {
        self.reap = grace;
        self
    }

    /// The pid watched last (a restart changes it).
    pub fn pid(&self) -> i32 {
        self.writer.pid
    }

    /// Restarts the target under a policy when it dies ([`crate::restart`]).
    pub fn supervised(mut self, supervisor: Supervisor) -> Self {
        self.writer.lifecycle.restarts = Some(supervisor.restarts());
        self.supervisor = Some(supervisor);
        self
    }

    /// Also reports the target's activity (`activity=`), from `watch`.
    pub fn with_activity(mut self, watch: Option<activity::Watch>) -> Self {
        self.activity = watch;
        self
    }

    /// Beats until the target is gone (for good, under a restart policy) or a stop signal
    /// arrives, then writes the final record. Returns how it ended, and the final status with
    /// whether that record was written (none when waiting itself failed).
    pub fn run(&mut self, signals: &Signals) -> (End, Option<(Status, bool)>) {
        loop {
            let end = self.beat_until_end(signals);
            let reap = self.reap.filter(|_| matches!(end, End::Exited(_)));
            let (End::Exited(gone), Some(supervisor)) = (end, self.supervisor.as_mut()) else {
                if let End::Exited(_) = end {
                    // How it ended, when the zombie can still tell (before its parent, tmux,
                    // reaps it): readers that do not know the keys ignore them.
                    if let Some(raw) = mosaic_core::proc::zombie_status(self.target.pid()) {
                        let lifecycle = &mut self.writer.lifecycle;
                        (lifecycle.exit_status, lifecycle.exit_signal) =
                            Death::from_wait_status(raw).keys();
                    }
                }
                let status = match end {
                    End::Exited(_) => Status::Exited,
                    End::Stopped(_) => Status::Stopped,
                    End::GaveUp(_) => Status::Failed,
                    End::Failed(_) => return (end, None),
                };
                let mut written = self.writer.write(status);
                if let Some(grace) = reap {
                    // The death is on record at once; what it left is ended after, and counted.
                    let (reaped, _) = reap_leftovers(&self.target, grace, signals);
                    self.writer.lifecycle.reaped = Some(reaped);
                    written = self.writer.write(status);
                }
                return (end, Some((status, written)));
            };
            // Dead, and in its policy's hands: on record at once.
            supervisor.died(&self.target);
            self.writer.lifecycle.restart_at = None;
            self.writer.write(Status::Restarting);
            answer(&mut self.ready, &self.writer);
            if let Some(grace) = reap {
                // A restarted run must not start beside the last one's leftovers.
                let (reaped, stop) = reap_leftovers(&self.target, grace, signals);
                self.writer.lifecycle.reaped = Some(reaped);
                if let Some(sig) = stop {
                    // A stop during the teardown is a stop: nothing is restarted.
                    let written = self.writer.write(Status::Stopped);
                    return (End::Stopped(sig), Some((Status::Stopped, written)));
                }
            }
            match supervisor.after_death(&mut self.writer, signals, self.interval) {
                Outcome::Restarted(target) => {
                    self.target = target;
                    self.rewatch_activity();
                }
                Outcome::Final(status, written, ending) => {
                    let end = match ending {
                        Ending::Stopped(sig) => End::Stopped(sig),
                        Ending::GaveUp => End::GaveUp(gone),
                        Ending::Left => End::Exited(gone),
                        Ending::WaitFailed(e) => return (End::Failed(e), None),
                    };
                    return (end, Some((status, written)));
                }
            }
        }
    }

    /// A restarted pane has a new terminal: watch that one.
    fn rewatch_activity(&mut self) {
        let Some(old) = self.activity.take() else {
            return;
        };
        let (pid, dir, name) = (self.target.pid(), self.writer.dir(), self.writer.name());
        self.activity = match activity::Watch::attach(pid, dir, name, old.idle_after()) {
            Ok(watch) => watch,
            Err(e) => {
                crate::log(format_args!(
                    "cannot watch the activity of pid {pid}: {} (no activity= reported)",
                    mosaic_core::why(&e)
                ));
                None
            }
        };
    }

    fn beat_until_end(&mut self, signals: &Signals) -> End {
        let mut next = Instant::now();
        loop {
            if let Err(gone) = self.target.check_beat() {
                return End::Exited(gone);
            }
            self.writer.activity = self.activity.as_ref().map(activity::Watch::current);
            self.writer.write(Status::Ok);
            self.answer();
            if let Some(supervisor) = &mut self.supervisor {
                supervisor.reap();
            }
            next += self.interval;
            let now = Instant::now();
            if next <= now {
                next = now + self.interval;
            }
            loop {
                let left = next.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let watch = self.activity.as_ref();
                let left = match watch.and_then(activity::Watch::deadline) {
                    Some(at) => left.min(at.saturating_duration_since(Instant::now())),
                    None => left,
                };
                let watch_fd = watch.and_then(activity::Watch::fd);
                match wait(self.target.pidfd(), signals.fd(), watch_fd, left) {
                    event @ (Event::Timeout | Event::Activity) => {
                        if let Err(gone) = self.update_activity(event == Event::Activity) {
                            return End::Exited(gone);
                        }
                    }
                    Event::Interrupted => continue,
                    Event::Failed(e) => return End::Failed(e),
                    Event::TargetExited => return End::Exited(Gone::NoProcess),
                    Event::Signal => {
                        if let Some(sig) = signals.take() {
                            // A stop that races the target's death reports the death.
                            return match self.target.check_beat() {
                                Ok(()) => End::Stopped(sig),
                                Err(gone) => End::Exited(gone),
                            };
                        }
                    }
                }
            }
        }
    }

    /// Lets the activity watch take in what happened; a change is written at once (after the
    /// same check as a beat), so it does not wait for the next beat.
    fn update_activity(&mut self, readable: bool) -> Result<(), Gone> {
        let Some(watch) = &mut self.activity else {
            return Ok(());
        };
        if watch.update(Instant::now(), readable) {
            self.target.check_beat()?;
            self.writer.activity = Some(watch.current());
            self.writer.write(Status::Ok);
        }
        Ok(())
    }
}

/// Ends what the dead `target` left in its session and process group; returns how many
/// processes. The loop's one `ppoll` (on the signals only) is the only wait: a stop signal skips
/// the rest of the grace, and the whole phase lasts at most the grace plus
/// [`teardown::KILL_WAIT`].
/// Also returns the stop signal that cut the grace short, if one did.
fn reap_leftovers(target: &Target, grace: Duration, signals: &Signals) -> (u32, Option<i32>) {
    // A pid that names another process now means no member was left to pin the session id,
    // which a stranger may have taken since.
    if teardown::leader_reused(target.pid(), target.started()) {
        return (0, None);
    }
    let mut stop = None;
    let mut teardown = Teardown::begin(target.pid(), grace);
    while teardown.step() == Step::Waiting {
        match wait(None, signals.fd(), None, teardown.wait()) {
            Event::Signal => {
                if let Some(sig) = signals.take() {
                    stop = Some(sig);
                    teardown.hurry();
                }
            }
            Event::Failed(_) => teardown.hurry(),
            _ => {}
        }
    }
    (u32::try_from(teardown.ended()).unwrap_or(u32::MAX), stop)
}

/// What woke the one `ppoll`.
#[derive(PartialEq, Eq)]
pub(crate) enum Event {
    Timeout,
    Interrupted,
    Failed(Errno),
    TargetExited,
    Signal,
    /// The third descriptor is readable: the activity watch while the target lives, the
    /// respawn helper's stdout while a restart is under way ([`crate::restart`]).
    Activity,
}

/// The sidecar's one wait point.
pub(crate) fn wait(
    pidfd: Option<BorrowedFd>,
    signals: BorrowedFd,
    activity: Option<BorrowedFd>,
    timeout: Duration,
) -> Event {
    // Only the descriptors there are: without a pidfd (old kernels) the beat checks the target;
    // without a terminal, or while the activity watch rests, it is left out.
    let mut fds: [PollFd; 3] = std::array::from_fn(|_| PollFd::new(signals, PollFlags::POLLIN));
    let (mut n, mut target_at, mut activity_at) = (1, None, None);
    for (fd, at) in [(pidfd, &mut target_at), (activity, &mut activity_at)] {
        if let Some(fd) = fd {
            fds[n] = PollFd::new(fd, PollFlags::POLLIN);
            *at = Some(n);
            n += 1;
        }
    }
    let fds = &mut fds[..n];
    match ppoll(fds, Some(TimeSpec::from(timeout)), None) {
        Ok(_) => {}
        Err(Errno::EINTR) => return Event::Interrupted,
        Err(e) => return Event::Failed(e),
    }
    let ready =
        |at: Option<usize>| at.is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty()));
    if ready(target_at) {
        Event::TargetExited
    } else if ready(Some(0)) {
        Event::Signal
    } else if ready(activity_at) {
        Event::Activity
    } else {
        Event::Timeout
    }
}

/// SIGTERM, SIGINT and SIGHUP, blocked and delivered through a signalfd, so that a stop is
/// seen by the one `ppoll` and never interrupts a write half-way.
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let mut set = SigSet::empty();
        for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            set.add(sig);
        }
        // Blocked for this (single) thread, so they arrive only through the descriptor.
        set.thread_block()?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(Signals { fd })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The next pending stop signal, if any.
    pub(crate) fn take(&self) -> Option<i32> {
        let info = self.fd.read_signal().ok()??;
        i32::try_from(info.ssi_signo).ok()
    }
}

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
bursting to catch up. A write error never ends the loop ([`crate::writer`]).

Each event (the first record of a run, a change of activity, a restart decided, the final
record) is also noted for the event hooks (`--on-event`, [`crate::hooks`]), which the one wait
point runs; the last ones run after the final record, once the file is let go
([`Sidecar::finish_hooks`]).

The loop's parts are modules of their own, below it: the record writer ([`crate::writer`]),
the one wait point and what woke it ([`crate::wait`]), the stop signals ([`crate::signals`]).
[`crate::restart`] uses them too, and not this module: it hands back an [`Outcome`].
*/

use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::activity;
use crate::hbfile::HbFile;
use crate::hooks::Hooks;
use crate::restart::{Ending, Outcome, Supervisor};
use crate::signals::{Signals, Stop};
use crate::target::{Gone, Target};
use crate::wait::{wait, Event};
use crate::writer::Writer;
use mosaic_core::death::Death;
use mosaic_core::handover::Ready;
use mosaic_core::record::Status;
use mosaic_core::teardown::{self, Step, Teardown};

/// How long a death's record may wait for tmux to reap the pane ([`Sidecar::hurry_tmux`]):
/// tmux does within milliseconds of a SIGCHLD it does not lose.
const HURRY: Duration = Duration::from_secs(1);

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Exited(Gone),
    Stopped(Stop),
    /// `ppoll` itself failed (not an interruption): the sidecar cannot wait any more, and
    /// says so rather than spin. No final record: the last one goes stale, the lock is freed.
    Failed(Errno),
    /// The target died once too often for its restart policy: `status=failed`.
    GaveUp(Gone),
}

/// How the loop ended, and its final status with whether that record was written (none when
/// waiting itself failed).
pub type Last = (End, Option<(Status, bool)>);

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
    /// Removing what a predecessor killed mid-beat left behind is due at the next beat.
    tidy: bool,
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
            tidy: false,
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

    /// Answers the launcher, once, then does what start-up put off so as not to keep it
    /// waiting: handing back start-up's memory; and, at the next beat, removing what a
    /// predecessor killed mid-beat left behind (a directory read, which in a directory shared
    /// by a fleet `up` is making is best done after the rush: a hundred sidecars reading a
    /// thousand names each).
    fn answer(&mut self) {
        if let Some(ready) = self.ready.take() {
            ready.send();
            mosaic_core::sys::release_startup_memory();
            self.tidy = true;
        }
    }

    /// After each death of the target, also ends what it left in its session and process
    /// group: SIGTERM, then SIGKILL after `grace` ([`teardown`]), counted as `reaped=`.
    pub fn with_reap(mut self, grace: Option<Duration>) -> Self {
        self.reap = grace;
        self
    }

    /// The pid watched last (a restart changes it).
    pub fn pid(&self) -> i32 {
        self.writer.pid()
    }

    /// Restarts the target under a policy when it dies ([`crate::restart`]).
    pub fn supervised(mut self, supervisor: Supervisor) -> Self {
        self.writer.supervised(supervisor.restarts());
        self.supervisor = Some(supervisor);
        self
    }

    /// Also reports the target's activity (`activity=`), from `watch`.
    pub fn with_activity(mut self, watch: Option<activity::Watch>) -> Self {
        self.activity = watch;
        self
    }

    /// Runs `hooks` on the agent's events ([`crate::hooks`]).
    pub fn with_hooks(mut self, hooks: Option<Hooks>) -> Self {
        if let Some(hooks) = hooks {
            self.writer.with_hooks(hooks);
        }
        self
    }

    /// After the final record, with the file let go (its lock freed, so a new sidecar may
    /// keep it): runs the hooks still due, the final event's last, each bounded by its
    /// timeout, in the one `ppoll`. A stop signal now gives up on them.
    pub fn finish_hooks(&mut self, signals: &Signals) {
        while let Some(hooks) = self.writer.hooks() {
            // Started here, so that a hook that could not start leaves nothing to wait for.
            hooks.service();
            if !hooks.busy() {
                return;
            }
            match wait(None, signals, None, Some(hooks), Duration::from_secs(3600)) {
                Event::Stop(_) | Event::Failed(_) => {
                    if let Some(hooks) = self.writer.hooks() {
                        hooks.abandon();
                    }
                    return;
                }
                _ => {}
            }
        }
    }

    /// Beats until the target is gone (for good, under a restart policy) or a stop signal
    /// arrives, then writes the final record.
    pub fn run(&mut self, signals: &Signals) -> Last {
        loop {
            let end = self.beat_until_end(signals);
            let (End::Exited(gone), Some(mut supervisor)) = (end, self.supervisor.take()) else {
                return self.finish(end, signals);
            };
            let outcome = self.after_death(&mut supervisor, signals);
            self.supervisor = Some(supervisor);
            match outcome {
                Outcome::Restarted(target) => {
                    self.target = target;
                    self.rewatch_activity();
                }
                Outcome::Final(status, written, ending) => {
                    let end = match ending {
                        Ending::Stopped(stop) => End::Stopped(stop),
                        Ending::GaveUp => End::GaveUp(gone),
                        Ending::Left => End::Exited(gone),
                        Ending::WaitFailed(e) => return (End::Failed(e), None),
                    };
                    return (end, Some((status, written)));
                }
            }
        }
    }

    /// The final record of a run no policy restarts: the death (and, with `--reap`, what it
    /// left) or the stop.
    fn finish(&mut self, end: End, signals: &Signals) -> Last {
        let status = match end {
            End::Exited(_) => Status::Exited,
            End::Stopped(_) => Status::Stopped,
            End::GaveUp(_) => Status::Failed,
            End::Failed(_) => return (end, None),
        };
        if let End::Exited(_) = end {
            // How it ended, when the zombie can still tell (before its parent, tmux, reaps
            // it): readers that do not know the keys ignore them.
            if let Some(raw) = mosaic_core::proc::zombie_status(self.target.pid()) {
                self.writer.record_death(Death::from_wait_status(raw));
            }
        }
        let mut written = self.writer.end(status);
        if let End::Exited(_) = end {
            self.hurry_tmux();
        }
        if let (End::Exited(_), Some(grace)) = (end, self.reap) {
            // The death is on record at once; what it left is ended after, and counted.
            let hooks = self.writer.hooks();
            let (reaped, _) = reap_leftovers(&self.target, grace, signals, hooks);
            self.writer.record_reaped(reaped);
            written = self.writer.end(status);
        }
        (end, Some((status, written)))
    }

    /// A death in its policy's hands: on record at once, what it left ended (with `--reap`),
    /// then [`Supervisor::after_death`] decides, waits and restarts.
    fn after_death(&mut self, supervisor: &mut Supervisor, signals: &Signals) -> Outcome {
        supervisor.died(&self.target);
        // Due when the backoff will say (unless the helper's answer changes the verdict).
        supervisor.schedule(&mut self.writer);
        self.answer();
        self.hurry_tmux();
        if let Some(grace) = self.reap {
            // A restarted run must not start beside the last one's leftovers.
            let hooks = self.writer.hooks();
            let (reaped, stop) = reap_leftovers(&self.target, grace, signals, hooks);
            self.writer.record_reaped(reaped);
            if let Some(stop) = stop {
                // A stop during the teardown is a stop: nothing is restarted.
                let written = self.writer.end(Status::Stopped);
                return Outcome::Final(Status::Stopped, written, Ending::Stopped(stop));
            }
        }
        supervisor.after_death(&mut self.writer, signals, self.interval)
    }

    /// After a death, once it is on record: tmux may have lost the target's SIGCHLD, and until
    /// it reaps the pane it neither says how it ended nor runs `pane-died` (which closes the
    /// run in the transcript). See [`mosaic_core::proc::hurry_tmux`]; a signal, no process.
    fn hurry_tmux(&self) {
        if let Some(started) = self.target.started() {
            mosaic_core::proc::hurry_tmux(self.target.pid(), started, HURRY);
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
            let activity = self.activity.as_ref().map(activity::Watch::current);
            self.writer.beat(activity);
            if std::mem::take(&mut self.tidy) {
                self.writer.remove_stale_temps();
            }
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
                let hooks = self.writer.hooks();
                match wait(self.target.pidfd(), signals, watch_fd, hooks, left) {
                    event @ (Event::Timeout | Event::Readable) => {
                        if let Err(gone) = self.update_activity(event == Event::Readable) {
                            return End::Exited(gone);
                        }
                    }
                    Event::Interrupted => continue,
                    Event::Failed(e) => return End::Failed(e),
                    Event::TargetExited => return End::Exited(Gone::NoProcess),
                    Event::Stop(stop) => {
                        // A stop that races the target's death reports the death.
                        return match self.target.check_beat() {
                            Ok(()) => End::Stopped(stop),
                            Err(gone) => End::Exited(gone),
                        };
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
            self.writer.beat(Some(watch.current()));
        }
        Ok(())
    }
}

/// Ends what the dead `target` left in its session and process group; returns how many
/// processes. The loop's one `ppoll` (on the signals only) is the only wait: a stop signal skips
/// the rest of the grace, and the whole phase lasts at most the grace plus
/// [`teardown::KILL_WAIT`].
/// Also returns the stop signal that cut the grace short, if one did.
fn reap_leftovers(
    target: &Target,
    grace: Duration,
    signals: &Signals,
    mut hooks: Option<&mut Hooks>,
) -> (u32, Option<Stop>) {
    // A pid that names another process now means no member was left to pin the session id,
    // which a stranger may have taken since.
    if teardown::leader_reused(target.pid(), target.started()) {
        return (0, None);
    }
    let mut stop = None;
    let mut teardown = Teardown::begin(target.pid(), grace);
    while teardown.step() == Step::Waiting {
        match wait(None, signals, None, hooks.as_deref_mut(), teardown.wait()) {
            Event::Stop(signal) => {
                stop = Some(signal);
                teardown.hurry();
            }
            Event::Failed(_) => teardown.hurry(),
            _ => {}
        }
    }
    (u32::try_from(teardown.ended()).unwrap_or(u32::MAX), stop)
}

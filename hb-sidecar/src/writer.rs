/*!
`Writer` keeps the heartbeat file: it holds what the records say (the target, the lifecycle
of a supervised agent, the activity) and renders and replaces one record per call. The event
loop ([`crate::watch`]) and a restart ([`crate::restart`]) tell it what happened (a beat, a
death, a restart scheduled or done, a teardown's count) and it decides the record's keys: no
other module edits them.

It also tells the event hooks ([`crate::hooks`]) what the records tell: the first record of
a run (`started`), a change of activity, a decided restart, the final status. It only notes
them: the one wait point runs them ([`crate::wait`]).

A write error never ends the sidecar: the last good file stays in place, the error is logged
when it starts and when it ends, not per beat, and the next record tries again.
*/

use std::ffi::CStr;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::hbfile::HbFile;
use crate::hooks::{Happened, HookEvent, Hooks};
use mosaic_core::activity::Activity;
use mosaic_core::death::Death;
use mosaic_core::record::{render, Beat, Lifecycle, Status};

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
    activity: Option<(Activity, DateTime<Utc>)>,
    /// What supervision adds to each record.
    lifecycle: Lifecycle,
    /// The status of the last record, so that an event is told once.
    last: Option<Status>,
    hooks: Option<Hooks>,
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
            last: None,
            hooks: None,
        }
    }

    /// Tells `hooks` each event; the records count their failures and drops.
    pub fn with_hooks(&mut self, hooks: Hooks) {
        self.hooks = Some(hooks);
    }

    /// The event hooks, for the wait point that runs them.
    pub fn hooks(&mut self) -> Option<&mut Hooks> {
        self.hooks.as_mut()
    }

    /// The pid the records name.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The start time the records name.
    pub fn started(&self) -> Option<u64> {
        self.started
    }

    /// The heartbeat directory (the fleet-wide restart guard lives there).
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.file.dir()
    }

    /// The heartbeat file's name in [`Writer::dir`].
    pub fn name(&self) -> &CStr {
        self.file.name()
    }

    /// Removes the temp files a predecessor killed mid-beat left. A failure only leaves
    /// litter, which status never reads (dotfiles).
    pub fn remove_stale_temps(&self) {
        let _ = self.file.remove_stale_temps();
    }

    /// The target lives: `status=ok`, with its activity when it has a terminal.
    pub fn beat(&mut self, activity: Option<(Activity, DateTime<Utc>)>) -> bool {
        let was = self.activity.map(|(activity, _)| activity);
        self.activity = activity;
        if self.last != Some(Status::Ok) {
            self.happened(HookEvent::Started);
        } else if let Some((now, _)) = activity.filter(|(now, _)| Some(*now) != was) {
            self.happened(now.into());
        }
        self.write(Status::Ok)
    }

    /// The agent is supervised: each record counts its restarts, from `restarts`.
    pub fn supervised(&mut self, restarts: u32) {
        self.lifecycle.restarts = Some(restarts);
    }

    /// How the target died (`exit_status=` or `exit_signal=`), for the records that follow.
    pub fn record_death(&mut self, death: Death) {
        (self.lifecycle.exit_status, self.lifecycle.exit_signal) = death.keys();
    }

    /// How many processes the last death left that a teardown ended (`reaped=`).
    pub fn record_reaped(&mut self, reaped: u32) {
        self.lifecycle.reaped = Some(reaped);
    }

    /// A restart is due `delay` from now: `status=restarting` with `restart_at=`.
    pub fn schedule_restart(&mut self, delay: Duration) -> bool {
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        self.lifecycle.restart_at = Some(Utc::now() + delay);
        self.write(Status::Restarting)
    }

    /// The policy restarts the agent after `death`, `delay` from now, or with `None` when the
    /// record already says ([`Writer::schedule_restart`]): on record, and the `restarting`
    /// event.
    pub fn will_restart(&mut self, death: Death, delay: Option<Duration>) -> bool {
        self.record_death(death);
        self.happened(HookEvent::Restarting);
        match delay {
            Some(delay) => self.schedule_restart(delay),
            None => self.write(Status::Restarting),
        }
    }

    /// The records name the restarted target from now on, `restarts` times restarted, with
    /// nothing due. (No record here: a new run's first is its first beat.)
    pub fn restarted(&mut self, pid: i32, started: Option<u64>, restarts: u32) {
        self.pid = pid;
        self.started = started;
        self.lifecycle.restarts = Some(restarts);
        self.lifecycle.restart_at = None;
    }

    /// The sidecar's last record: `status` (exited, stopped, failed), nothing due any more.
    pub fn end(&mut self, status: Status) -> bool {
        self.lifecycle.restart_at = None;
        if self.last != Some(status) {
            match status {
                Status::Exited => self.happened(HookEvent::Exited),
                Status::Stopped => self.happened(HookEvent::Stopped),
                Status::Failed => self.happened(HookEvent::Failed),
                Status::Ok | Status::Restarting => {}
            }
        }
        self.write(status)
    }

    fn happened(&mut self, event: HookEvent) {
        if let Some(hooks) = &mut self.hooks {
            hooks.push(Happened {
                event,
                exit_status: self.lifecycle.exit_status,
                exit_signal: self.lifecycle.exit_signal,
                restarts: self.lifecycle.restarts.unwrap_or(0),
                at: Utc::now(),
            });
        }
    }

    /// Writes one record. `seq` counts records attempted, so a gap shows in it.
    pub fn write(&mut self, status: Status) -> bool {
        self.seq += 1;
        self.last = Some(status);
        if let Some(hooks) = &self.hooks {
            self.lifecycle.hook_failures = Some(hooks.failures);
            self.lifecycle.hook_dropped = Some(hooks.dropped);
        }
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

/*!
A relaunch: the session existed. A live pane is "already running" (its sidecar checked, and
healed when it is stuck or gone; a heartbeat file kept for another process is a collision,
never this agent's); a dead pane is started again, unless its own supervising sidecar is about
to (then the report says `restarting` and nothing starts).
*/

use std::path::{Path, PathBuf};

use mosaic_core::exit::Fail;

use super::interrupted;
use super::report::{Outcome, Report, SidecarState};
use super::start::Launch;
use crate::sidecar::{self, Keeper, Pending, Sidecar};
use crate::tmux::{DeadPane, Pane};

impl Launch<'_> {
    /// The session existed: a live pane is "already running" (its sidecar checked, healed if
    /// stuck or gone); a dead one is started again.
    pub(super) fn existing(
        &self,
        pending: Option<Pending>,
        sidecar: Option<&Sidecar>,
    ) -> Result<Report, Fail> {
        match self.tmux.pane(self.agent()).map_err(|f| self.fail(f))? {
            Pane::Live(pid) => self.running(pid, pending, sidecar),
            Pane::Dead(death) => self.restart(death, pending),
            Pane::Unknown => Ok(Report {
                outcome: Outcome::AlreadyRunning,
                pane_pid: None,
                sidecar: SidecarState::None,
                heartbeat: None,
                healed: false,
            }),
            Pane::Gone(why) => Err(Fail::failed(format!(
                "agent {} exited at once: its session is gone ({why})",
                self.agent()
            ))),
        }
    }

    fn running(
        &self,
        pid: i32,
        pending: Option<Pending>,
        sidecar: Option<&Sidecar>,
    ) -> Result<Report, Fail> {
        let report = |(sidecar, heartbeat), healed| Report {
            outcome: Outcome::AlreadyRunning,
            pane_pid: Some(pid),
            sidecar,
            heartbeat,
            healed,
        };
        let (Some(hb), Some(mut pending), Some(locator)) = (&self.plan.heartbeat, pending, sidecar)
        else {
            return Ok(report((SidecarState::None, None), false));
        };
        // The session's own heartbeat file, when it names one, wins: one agent, one sidecar.
        let own = self.tmux.hb_file(self.agent()).map_err(|f| self.fail(f))?;
        let file = match own.map(PathBuf::from) {
            Some(own) if own != hb.file && own.is_absolute() => {
                // Hand the sidecar that file instead.
                drop(pending);
                pending = locator
                    .spawn(&own, hb, self.agent(), &self.plan.socket, self.plan.timeout)
                    .map_err(Fail::failed)?;
                own
            }
            Some(_) => hb.file.clone(),
            None => {
                // A session from before `@mosaic_hb` (or started without a heartbeat): it gets
                // ours from now on, so a later launch from elsewhere finds it.
                self.tmux.set_hb_file(self.agent(), &hb.file);
                hb.file.clone()
            }
        };
        match sidecar::keeper(&file, pid, self.deadline()) {
            Keeper::Healthy => return Ok(report((SidecarState::Running, Some(file)), false)),
            Keeper::Other { hb_pid, pid } => return Err(collision(&file, hb_pid, pid)),
            Keeper::Stuck { hb_pid, .. } => {
                sidecar::end_stuck(&file, hb_pid, self.deadline()).map_err(Fail::failed)?;
            }
            Keeper::Nobody => {}
        }
        if let Some(sig) = self.stop.signal() {
            return Err(interrupted(sig, self.agent(), false));
        }
        self.start_sidecar(pending, pid, &file).map(|state| {
            let healed = state.0 == SidecarState::Started;
            report(state, healed)
        })
    }

    /// A dead pane: start the agent again in it (tmux refuses if a racer did first: then it
    /// is already running), unless its own sidecar is about to.
    fn restart(&self, death: DeadPane, pending: Option<Pending>) -> Result<Report, Fail> {
        let own = self
            .tmux
            .hb_file(self.agent())
            .ok()
            .flatten()
            .map(PathBuf::from);
        // Under a restart policy, the pane's sidecar outlives it and starts it again when its
        // delay is up: a second start here would race it. Say so instead.
        let kept = own
            .clone()
            .or_else(|| self.plan.heartbeat.as_ref().map(|hb| hb.file.clone()));
        if let Some(file) = kept {
            if let Some((_, at)) = sidecar::restarting(&file, death.pid) {
                drop(pending);
                return Ok(Report {
                    outcome: Outcome::Restarting(death, at),
                    pane_pid: None,
                    sidecar: SidecarState::Running,
                    heartbeat: Some(file),
                    healed: false,
                });
            }
        }
        if let Some(log) = &self.plan.log {
            let command = self.plan.command.as_encoded_bytes();
            let pid = Some(death.pid).filter(|&p| p > 0);
            let ended = death.known().then_some((death.death, pid));
            crate::transcript::announce(&log.dir, self.agent(), ended, command, "run started");
        }
        let respawned = self
            .tmux
            .respawn(
                self.agent(),
                &self.plan.pane_workdir(),
                &self.plan.pane_command,
            )
            .map_err(|f| self.fail(f))?;
        let Some(pids) = respawned else {
            return match self.tmux.pane(self.agent()).map_err(|f| self.fail(f))? {
                Pane::Live(pid) => Ok(Report {
                    outcome: Outcome::AlreadyRunning,
                    pane_pid: Some(pid),
                    sidecar: SidecarState::None,
                    heartbeat: None,
                    healed: false,
                }),
                _ => Err(Fail::failed(format!(
                    "agent {} could not be started again",
                    self.agent()
                ))),
            };
        };
        // A failed restart leaves the pane dead, now with this run's end: no session to undo.
        self.verdict(pids)?;
        let (sidecar, heartbeat) = match (&self.plan.heartbeat, pending, own) {
            (Some(hb), Some(pending), own) if own.as_ref().is_none_or(|f| *f == hb.file) => {
                self.start_sidecar(pending, pids.pane, &hb.file)?
            }
            _ => (SidecarState::None, None),
        };
        Ok(Report {
            outcome: Outcome::Restarted(death),
            pane_pid: Some(pids.pane),
            sidecar,
            heartbeat,
            healed: false,
        })
    }
}

/// A heartbeat file kept for another agent of the same name.
pub(super) fn collision(file: &Path, hb_pid: Option<i32>, pid: i32) -> Fail {
    let by = hb_pid.map_or("a sidecar".into(), |p| format!("mosaic-hb pid {p}"));
    Fail::failed(format!(
        "heartbeat file {} is kept by {by} for pid {pid}, another agent of the same name \
         (on another tmux socket?): use another MOSAIC_HEARTBEAT_RUN_DIR (--hb-dir) or socket",
        file.display()
    ))
}

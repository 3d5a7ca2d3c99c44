/*!
The launch itself: prepare the heartbeat directory and find the sidecar, ask tmux for the
session and, while it works, start the sidecar waiting for its pane; watch the pane's process
until it has executed the agent's command (the verdict); then hand the sidecar its pane.
Whatever fails or is interrupted before the sidecar has its pane undoes what this run created
([`Launch::undo`]). A session that existed already goes to [`super::relaunch`].
*/

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mosaic_core::dirs;
use mosaic_core::exit::Fail;

use super::interrupted;
use super::plan::Plan;
use super::relaunch::collision;
use super::report::{Outcome, Report, SidecarState};
use crate::child::{Cut, Stop};
use crate::pane;
use crate::sidecar::{self, Detach, Keeper, Pending, Sidecar, Started};
use crate::tmux::{self, Created, Failure, Pane, PanePids, Spec, Tmux};
use crate::verdict::{self, Verdict};
use crate::worktree;

/// A unique mark for the session this launch creates, so that its roll-back removes that
/// session and never one a racing launcher made.
pub(super) fn launch_token() -> String {
    format!(
        "{}-{:016x}",
        std::process::id(),
        mosaic_core::sys::random_u64()
    )
}

/// One launch, all or nothing. Signals in `stop` are looked at, never acted upon by default.
/// The agent's worktree (`--worktree`) is made first; one this launch made goes again if the
/// launch fails, unless something was written in it.
pub fn launch(plan: &Plan, stop: &Stop) -> Result<Report, Fail> {
    if let Some(sig) = stop.signal() {
        return Err(interrupted(sig, &plan.agent, false));
    }
    let Some(wt) = &plan.worktree else {
        return launch_session(plan, stop);
    };
    let made = worktree::ensure(wt, &plan.agent, plan.timeout, stop).map_err(|fail| match stop
        .signal()
    {
        Some(sig) => interrupted(sig, &plan.agent, false),
        None => fail,
    })?;
    let workdir = plan.pane_workdir();
    let result = if workdir.is_dir() {
        launch_session(plan, stop)
    } else {
        Err(Fail::failed(format!(
            "workdir {} of agent {} is not in its worktree {} (git tracks no such directory there)",
            plan.workdir.display(),
            plan.agent,
            wt.path.display()
        )))
    };
    match result {
        Err(mut fail) if made => {
            let teardown = wt.teardown.as_deref();
            fail.message +=
                &match worktree::remove(&wt.path, teardown, &plan.agent, false, plan.timeout) {
                    Ok(worktree::Removed::Dirty) => format!(
                        " (its new worktree {} stays: it has changes)",
                        wt.path.display()
                    ),
                    Ok(_) => " (its new worktree was removed)".to_string(),
                    Err(why) => format!(" (its new worktree stays: {why})"),
                };
            Err(fail)
        }
        result => result,
    }
}

fn launch_session(plan: &Plan, stop: &Stop) -> Result<Report, Fail> {
    enough_descriptors().map_err(Fail::failed)?;
    let sidecar = match &plan.heartbeat {
        Some(hb) => {
            dirs::prepare(&hb.dir).map_err(Fail::failed)?;
            Some((
                hb,
                Sidecar::locate(hb.hb_bin.as_deref(), Detach::Setsid).map_err(Fail::failed)?,
            ))
        }
        None => None,
    };
    let tmux = Tmux::new(&plan.socket, plan.timeout, Some(stop));
    let token = launch_token();
    // A bell in the pane marks the sidecar's bell file (see `mosaic_core::activity`): the
    // transcript's writer marks it, which reads the pane's bytes in order, else tmux's hook.
    let bell = plan.bell_mark();
    let log = match &plan.log {
        Some(log) => Some(
            crate::transcript::prepare(
                log,
                &plan.agent,
                plan.command.as_encoded_bytes(),
                bell.as_deref(),
            )
            .map_err(Fail::failed)?,
        ),
        None => None,
    };
    let bell_hook = bell
        .filter(|_| log.is_none())
        .map(|bell| pane::bell_hook(&bell));
    let spec = Spec {
        log: log.as_ref(),
        bell_hook: bell_hook.as_deref(),
        agent: &plan.agent,
        workdir: &plan.pane_workdir(),
        pane_command: &plan.pane_command,
        token: &token,
        hb_file: plan.heartbeat.as_ref().map(|hb| hb.file.as_path()),
    };
    let mut run = Launch {
        plan,
        stop,
        tmux: &tmux,
        token: &token,
        created: false,
    };
    let session = tmux.start_new_session(&spec).map_err(|f| run.fail(f))?;
    // While tmux works, the sidecar starts and waits for its pane (see `sidecar`); dropping
    // `pending` cancels it.
    let pending = match &sidecar {
        Some((hb, sidecar)) => {
            match sidecar.spawn(&hb.file, hb, &plan.agent, &plan.socket, plan.timeout) {
                Ok(pending) => Some(pending),
                Err(why) => {
                    let created = session.finish();
                    run.created = matches!(created, Ok(Created::New(_)) | Err(_));
                    return Err(run.undo(Fail::failed(why)));
                }
            }
        }
        None => None,
    };
    let mut created = session.finish();
    if matches!(&created, Err(Failure::Error(why)) if why.contains("server exited unexpectedly")) {
        // We reached a server that was exiting (its last session had just ended, or, before
        // remain-on-exit held, our own command ended at once): no session of ours survived
        // that. Once more, with a server of our own.
        created = tmux
            .start_new_session(&spec)
            .and_then(tmux::NewSession::finish);
    }
    // Even a failed or cut `new-session` may have made the session: the roll-back checks.
    run.created = !matches!(created, Ok(Created::AlreadyRunning));
    let created = created.map_err(|f| run.fail(f))?;
    let sidecar = sidecar.map(|(_, s)| s);
    match created {
        Created::New(Some(pids)) => run.new_session(pids, pending),
        Created::New(None) => run.stand_in(pending),
        Created::AlreadyRunning => run.existing(pending, sidecar.as_ref()),
    }
}

/// The fewest open files a tmux server is given: with `ulimit -n 16` and less, tmux 3.3a's
/// server (which inherits our limit) spins at full CPU instead of failing.
const MIN_OPEN_FILES: u64 = 32;

/// Raises the soft open-file limit to what tmux needs, if the hard limit allows; refuses to
/// start anything otherwise.
pub(super) fn enough_descriptors() -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return Ok(());
    };
    // Raising the soft limit up to the hard one is always allowed.
    if soft >= MIN_OPEN_FILES
        || (hard >= MIN_OPEN_FILES
            && setrlimit(Resource::RLIMIT_NOFILE, MIN_OPEN_FILES, hard).is_ok())
    {
        return Ok(());
    }
    Err(format!(
        "the open-file limit (ulimit -n) is {soft}: tmux needs at least {MIN_OPEN_FILES}; nothing was started"
    ))
}

/// A launch under way: what it must undo if it fails.
pub(super) struct Launch<'a> {
    pub(super) plan: &'a Plan,
    pub(super) stop: &'a Stop,
    pub(super) tmux: &'a Tmux<'a>,
    pub(super) token: &'a str,
    /// This run may have created the session (its roll-back removes it, if it carries our
    /// token).
    pub(super) created: bool,
}

impl Launch<'_> {
    pub(super) fn agent(&self) -> &str {
        &self.plan.agent
    }

    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.plan.timeout
    }

    /// Removes what this run created, and passes the failure on.
    pub(super) fn undo(&self, fail: Fail) -> Fail {
        if self.created {
            self.tmux.remove_own_session(self.agent(), self.token);
        }
        fail
    }

    /// A tmux failure, after the roll-back.
    pub(super) fn fail(&self, failure: Failure) -> Fail {
        match failure {
            Failure::Interrupted(sig) => self.undo(interrupted(sig, self.agent(), self.created)),
            Failure::Error(why) => self.undo(Fail::failed(why)),
        }
    }

    /// Rolls back if a stop signal has arrived: the last look before committing.
    pub(super) fn check_stop(&self) -> Result<(), Fail> {
        match self.stop.signal() {
            Some(sig) => Err(self.undo(interrupted(sig, self.agent(), self.created))),
            None => Ok(()),
        }
    }

    /// A session this run created, with its pane's pid: the verdict, then the sidecar.
    pub(super) fn new_session(
        &self,
        pids: PanePids,
        pending: Option<Pending>,
    ) -> Result<Report, Fail> {
        self.verdict(pids)?;
        self.check_stop()?;
        let (sidecar, heartbeat) = self.hand_over(pids.pane, pending)?;
        Ok(Report {
            outcome: Outcome::Started,
            pane_pid: Some(pids.pane),
            sidecar,
            heartbeat,
            healed: false,
        })
    }

    /// Watches the pane until its process has executed the agent; a process that exits
    /// instead is reported with tmux's record of its end, and its session removed.
    pub(super) fn verdict(&self, pids: PanePids) -> Result<(), Fail> {
        let line = self.shell_line();
        let verdict = verdict::watch(pids, &line, self.plan.settle, self.deadline(), self.stop);
        self.judge(pids, verdict)
    }

    /// The pane's command line while its shell runs, before the agent's exec.
    pub(super) fn shell_line(&self) -> Vec<u8> {
        verdict::shell_cmdline(&tmux::pane_argument(&self.plan.pane_command))
    }

    /// The launch's fate by its pane's verdict: on, or rolled back with the reason.
    pub(super) fn judge(&self, pids: PanePids, verdict: Result<Verdict, Cut>) -> Result<(), Fail> {
        let verdict = verdict.map_err(|cut| match cut {
            Cut::Interrupted(sig) => self.undo(interrupted(sig, self.agent(), self.created)),
            other => self.undo(Fail::failed(format!(
                "cannot watch pane pid {} of agent {}: {other:?}",
                pids.pane,
                self.agent()
            ))),
        })?;
        match verdict {
            Verdict::Running => Ok(()),
            Verdict::NoExec => Err(self.undo(Fail::failed(format!(
                "agent {} did not execute its command within {} (MOSAIC_TMUX_TIMEOUT)",
                self.agent(),
                tmux::seconds(self.plan.timeout)
            )))),
            Verdict::Exited(status) => {
                Err(self.undo(Fail::failed(self.why_exited(pids.pane, status))))
            }
        }
    }

    /// "agent A exited at once with status 127: sh: 1: exec: nosuchcmd: not found", from
    /// the dead pane tmux keeps (it may take tmux a moment to notice the exit).
    fn why_exited(&self, pid: i32, wait_status: Option<i32>) -> String {
        // tmux notices the exit in its event loop; its status follows the pane's EOF. Give it
        // a moment, not the whole deadline: the exit itself is already certain.
        let deadline = Instant::now() + self.plan.timeout.min(Duration::from_secs(2));
        let mut death = None;
        let mut gone = None;
        loop {
            match self.tmux.pane(self.agent()) {
                Ok(Pane::Dead(d)) if d.pid == pid => {
                    // What we read from the zombie ourselves will do if tmux has nothing.
                    let known = d.known() || wait_status.is_some();
                    death = Some(d);
                    if known {
                        break;
                    }
                }
                Ok(Pane::Gone(why)) => {
                    gone = Some(why);
                    break;
                }
                Err(_) => break,
                _ => {}
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let (Some(d), Some(raw)) = (death.as_mut(), wait_status) {
            d.fill_from_wait_status(raw);
        }
        // The pane's last output may still be on its way into tmux's screen, or half of it
        // (`/bin/sh: 1: exec:` without its end): look until two looks agree, for at most half
        // a second (a failed launch only; a busy machine's tmux may be that slow).
        let mut words = None;
        if death.is_some() {
            let give_up = Instant::now() + Duration::from_millis(500);
            loop {
                let now = self.tmux.last_words(self.agent());
                let settled = now.is_some() && now == words;
                words = now;
                if settled || Instant::now() >= give_up {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let mut why = format!("agent {} exited at once", self.agent());
        match (&death, gone) {
            (Some(d), _) => why += &format!(" with {}", d.describe()),
            (None, Some(gone)) => why += &format!(": its session is gone ({gone})"),
            (None, None) => why += &format!(" (pane pid {pid})"),
        }
        if let Some(words) = words {
            why += &format!(": {words}");
        }
        // The README's first example on a machine without `mosaic`: say what ran, and the way
        // out.
        let default = self
            .plan
            .command
            .as_encoded_bytes()
            .starts_with(b"mosaic yolo ");
        if default
            && death
                .as_ref()
                .is_some_and(|d| d.death == mosaic_core::death::Death::Status(127))
        {
            why += &format!(
                " (the default command, `{}`: install mosaic, or name the agent's command with \
                 --command or MOSAIC_AGENT_COMMAND)",
                self.plan.command.to_string_lossy()
            );
        }
        why
    }

    /// Hands the pane to the pending sidecar and waits for its answer, which comes after its
    /// first record. Returns the sidecar's state and the heartbeat file.
    fn hand_over(
        &self,
        pane_pid: i32,
        pending: Option<Pending>,
    ) -> Result<(SidecarState, Option<PathBuf>), Fail> {
        let (Some(hb), Some(pending)) = (&self.plan.heartbeat, pending) else {
            return Ok((SidecarState::None, None));
        };
        self.start_sidecar(pending, pane_pid, &hb.file)
    }

    pub(super) fn start_sidecar(
        &self,
        pending: Pending,
        pane_pid: i32,
        file: &Path,
    ) -> Result<(SidecarState, Option<PathBuf>), Fail> {
        self.sidecar_started(pending.start(pane_pid), pane_pid, file)
    }

    /// The launch's fate by its sidecar's answer.
    pub(super) fn sidecar_started(
        &self,
        started: Result<Started, String>,
        pane_pid: i32,
        file: &Path,
    ) -> Result<(SidecarState, Option<PathBuf>), Fail> {
        match started {
            // Its answer came after its first record.
            Ok(Started::Running) => Ok((SidecarState::Started, Some(file.to_path_buf()))),
            Ok(Started::AlreadyKept) => match sidecar::keeper(file, pane_pid, self.deadline()) {
                Keeper::Other { hb_pid, pid } => Err(self.undo(collision(file, hb_pid, pid))),
                _ => Ok((SidecarState::Running, Some(file.to_path_buf()))),
            },
            Ok(Started::TargetGone(why)) => Err(self.undo(Fail::failed(format!(
                "agent {} exited at once: {why}",
                self.agent()
            )))),
            Err(why) => Err(self.undo(Fail::failed(why))),
        }
    }

    /// A stand-in tmux that created a session but printed no pane: ask for the pane, and hand
    /// the sidecar whatever pid it names, without a verdict.
    fn stand_in(&self, pending: Option<Pending>) -> Result<Report, Fail> {
        let report = |pane_pid, (sidecar, heartbeat)| Report {
            outcome: Outcome::Started,
            pane_pid,
            sidecar,
            heartbeat,
            healed: false,
        };
        if pending.is_none() {
            return Ok(report(None, (SidecarState::None, None)));
        }
        match self.tmux.pane(self.agent()).map_err(|f| self.fail(f))? {
            Pane::Live(pid) => {
                // A real tmux that printed no pane (it has been seen under load): the verdict
                // still holds, given the server's pid.
                if let Some(server) = self.tmux.server_pid() {
                    self.verdict(PanePids { pane: pid, server })?;
                }
                let hb = self.plan.heartbeat.as_ref().map(|hb| hb.file.as_path());
                let pending = pending.expect("checked above");
                match pending.start(pid) {
                    Ok(Started::Running | Started::AlreadyKept) => Ok(report(
                        Some(pid),
                        (SidecarState::Started, hb.map(Path::to_path_buf)),
                    )),
                    Ok(Started::TargetGone(why)) => Err(self.undo(Fail::failed(format!(
                        "agent {} exited at once: {why}",
                        self.agent()
                    )))),
                    Err(why) => Err(self.undo(Fail::failed(why))),
                }
            }
            Pane::Dead(d) => Err(self.undo(Fail::failed(format!(
                "agent {} exited at once with {}",
                self.agent(),
                d.describe()
            )))),
            Pane::Unknown => Ok(report(None, (SidecarState::None, None))),
            Pane::Gone(why) => Err(self.undo(Fail::failed(format!(
                "agent {} exited at once: its session is gone ({why})",
                self.agent()
            )))),
        }
    }
}

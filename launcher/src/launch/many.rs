/*!
Many new agents at once (`mosaic-fleet up`): each launched as [`launch`](super::launch) would,
all or nothing per agent, but their `new-session`s chained in a few tmux calls (the server makes
each chain without returning to its event loop, so a hundred sessions cost one client each few
dozen, not a hundred), every sidecar spawned while tmux works, and each chain's agents judged
and handed over while tmux works on the next.
*/

use std::ffi::OsString;
use std::path::Path;

use mosaic_core::dirs;
use mosaic_core::exit::Fail;

use super::plan::{Heartbeat, Plan};
use super::report::{Outcome, Report, SidecarState};
use super::start::{enough_descriptors, launch, launch_token, Launch};
use crate::child::{Cut, Stop};
use crate::pane;
use crate::sidecar::{Detach, Handed, Pending, Sidecar};
use crate::tmux::{NewSessions, PanePids, Spec, Tmux};
use crate::verdict::{self, Verdict, Watch};

/// How many agents [`launch_many`] starts together: each holds three pipes to its pending
/// sidecar until its hand-over, so a group stays well within the usual 1024 open files.
const GROUP: usize = 128;

/// Launches many agents at once (`mosaic-fleet up`), each as [`launch`] would: their
/// `new-session`s chained in a few tmux calls, their sidecars spawned while tmux works, then
/// each agent's verdict and hand-over, all or nothing per agent. One whose session the chain
/// did not make (it existed, or tmux stopped the chain) is launched alone. Results in order.
pub fn launch_many(plans: &[&Plan], stop: &Stop) -> Vec<Result<Report, Fail>> {
    let mut results = Vec::with_capacity(plans.len());
    if let Err(why) = enough_descriptors() {
        return plans
            .iter()
            .map(|_| Err(Fail::failed(why.clone())))
            .collect();
    }
    for group in plans.chunks(GROUP) {
        launch_group(group, stop, &mut results);
    }
    results
}

/// Per sidecar binary, the sidecar found (or why not); per plan, its heartbeat and the index of
/// its sidecar there, or why it cannot start. Each heartbeat dir is prepared once, each binary
/// found once.
type Inputs<'p> = (
    Vec<(Option<&'p Path>, Result<Sidecar, String>)>,
    Vec<Result<Option<(&'p Heartbeat, usize)>, String>>,
);

fn inputs<'p>(plans: &[&'p Plan]) -> Inputs<'p> {
    let mut prepared: Vec<(&Path, Result<(), String>)> = Vec::new();
    let mut located: Vec<(Option<&Path>, Result<Sidecar, String>)> = Vec::new();
    let mut ready = Vec::new();
    for plan in plans {
        let Some(hb) = &plan.heartbeat else {
            ready.push(Ok(None));
            continue;
        };
        if !prepared.iter().any(|(dir, _)| *dir == hb.dir) {
            prepared.push((&hb.dir, dirs::prepare(&hb.dir)));
        }
        let bin = hb.hb_bin.as_deref();
        let at = match located.iter().position(|(b, _)| *b == bin) {
            Some(at) => at,
            None => {
                located.push((bin, Sidecar::locate(bin, Detach::Itself)));
                located.len() - 1
            }
        };
        let dir_failed = prepared
            .iter()
            .find(|(d, _)| *d == hb.dir)
            .and_then(|(_, r)| r.as_ref().err());
        ready.push(match (dir_failed, &located[at].1) {
            (Some(why), _) | (None, Err(why)) => Err(why.clone()),
            (None, Ok(_)) => Ok(Some((hb, at))),
        });
    }
    (located, ready)
}

fn launch_group(plans: &[&Plan], stop: &Stop, results: &mut Vec<Result<Report, Fail>>) {
    let first = plans[0];
    let (located, ready) = inputs(plans);
    // Each transcript prepared (a failure is the agent's own launch's to report).
    let logs: Vec<Option<crate::transcript::Keeping>> = plans
        .iter()
        .map(|plan| {
            let log = plan.log.as_ref()?;
            let command = plan.command.as_encoded_bytes();
            crate::transcript::prepare(log, &plan.agent, command, plan.bell_mark().as_deref()).ok()
        })
        .collect();
    // Only what can be chained: the group's socket and deadline, every input ready, no git
    // worktree to make first ([`launch`] alone makes it).
    let chained: Vec<usize> = (0..plans.len())
        .filter(|&i| {
            ready[i].is_ok()
                && plans[i].socket == first.socket
                && plans[i].timeout == first.timeout
                && plans[i].worktree.is_none()
                && plans[i].log.is_some() == logs[i].is_some()
        })
        .collect();
    let tmux = Tmux::new(&first.socket, first.timeout, Some(stop));
    let tokens: Vec<String> = plans.iter().map(|_| launch_token()).collect();
    // A logged pane's bells are marked by its writer (see `launch`).
    let hooks: Vec<Option<OsString>> = plans
        .iter()
        .zip(&logs)
        .map(|(plan, log)| {
            let bell = plan.bell_mark().filter(|_| log.is_none())?;
            Some(pane::bell_hook(&bell))
        })
        .collect();
    let specs: Vec<Spec> = chained
        .iter()
        .map(|&i| Spec {
            log: logs[i].as_ref(),
            bell_hook: hooks[i].as_deref(),
            agent: &plans[i].agent,
            workdir: &plans[i].workdir,
            pane_command: &plans[i].pane_command,
            token: &tokens[i],
            hb_file: plans[i].heartbeat.as_ref().map(|hb| hb.file.as_path()),
        })
        .collect();
    let calls = if stop.signal().is_none() {
        tmux.start_new_sessions(&specs)
    } else {
        Vec::new()
    };
    // While tmux works, every sidecar starts and waits for its pane.
    let sidecars: Vec<Option<Result<Pending, String>>> = plans
        .iter()
        .enumerate()
        .map(|(i, plan)| match &ready[i] {
            Ok(Some((hb, at))) if !calls.is_empty() && chained.contains(&i) => {
                let Ok(locator) = &located[*at].1 else {
                    return None;
                };
                Some(locator.spawn(&hb.file, hb, &plan.agent, &plan.socket, plan.timeout))
            }
            _ => None,
        })
        .collect();
    let mut group = Group {
        plans,
        stop,
        tmux: &tmux,
        tokens: &tokens,
        pids: vec![None; plans.len()],
        sidecars,
        handed: Vec::new(),
        results: plans.iter().map(|_| None).collect(),
    };
    group.follow(calls, &chained);
    // Not made by a chain (or its sidecar never spawned): alone, as ever, once the group's
    // sidecars that were never handed a pane are gone.
    for (result, plan) in group.answers().into_iter().zip(plans) {
        results.push(result.unwrap_or_else(|| launch(plan, stop)));
    }
}

/// A group's chained agents between their chain and their sidecars' answers.
struct Group<'g> {
    plans: &'g [&'g Plan],
    stop: &'g Stop,
    tmux: &'g Tmux<'g>,
    tokens: &'g [String],
    /// Each agent's pane, as its chain printed it.
    pids: Vec<Option<PanePids>>,
    /// Each agent's sidecar (or why it could not start), until it is handed its pane.
    sidecars: Vec<Option<Result<Pending, String>>>,
    /// The agents whose panes executed, in that order, and their sidecars.
    handed: Vec<(usize, Option<Handed>)>,
    results: Vec<Option<Result<Report, Fail>>>,
}

impl Group<'_> {
    /// Each call's agents watched together as soon as that call is done, while tmux works on
    /// the next; each one that has executed its command is handed to its sidecar at once.
    fn follow(&mut self, calls: Vec<NewSessions>, chained: &[usize]) {
        let mut bufs = verdict::Buffers::new();
        let mut next = chained.iter();
        for call in calls {
            let mut watches = Vec::new();
            for pids in call.finish() {
                let Some(&i) = next.next() else { break };
                let Some(pids) = pids else { continue };
                self.pids[i] = Some(pids);
                if let Some(Err(why)) = &self.sidecars[i] {
                    let fail = self.launch(i).undo(Fail::failed(why.clone()));
                    self.results[i] = Some(Err(fail));
                    continue;
                }
                let run = self.launch(i);
                let (settle, deadline) = (self.plans[i].settle, run.deadline());
                match Watch::new(pids, &run.shell_line(), settle, deadline, &mut bufs) {
                    Ok(watch) => watches.push((i, watch)),
                    Err(gone) => self.decide(i, Ok(gone)),
                }
            }
            verdict::watch_many(watches, self.stop, |i, verdict| self.decide(i, verdict));
        }
    }

    /// The sidecars' answers, awaited last (all of them started meanwhile): every result the
    /// group has, `None` for an agent its chains did not make. The sidecars never handed a
    /// pane are cancelled here.
    fn answers(mut self) -> Vec<Option<Result<Report, Fail>>> {
        for (i, handed) in std::mem::take(&mut self.handed) {
            let result = self.answered(i, handed);
            self.results[i] = Some(result);
        }
        self.results
    }

    /// Agent `i`'s launch, whose session the chain made.
    fn launch(&self, i: usize) -> Launch<'_> {
        Launch {
            plan: self.plans[i],
            stop: self.stop,
            tmux: self.tmux,
            token: &self.tokens[i],
            created: true,
        }
    }

    /// Agent `i`'s pane has its verdict: its sidecar is handed the pane (the launch is then
    /// committed), or the launch is rolled back. A stop signal rolls back any not yet handed.
    fn decide(&mut self, i: usize, verdict: Result<Verdict, Cut>) {
        let pids = self.pids[i].expect("a watched pane has its pids");
        let judged = {
            let run = self.launch(i);
            run.judge(pids, verdict).and_then(|()| run.check_stop())
        };
        match judged {
            Ok(()) => {
                let sidecar = self.sidecars[i].take().and_then(Result::ok);
                let handed = sidecar.map(|p| p.hand(pids.pane));
                self.handed.push((i, handed));
            }
            Err(fail) => self.results[i] = Some(Err(fail)),
        }
    }

    /// Agent `i`'s report once its sidecar (if any) has answered.
    fn answered(&self, i: usize, handed: Option<Handed>) -> Result<Report, Fail> {
        let pane = self.pids[i].expect("a handed pane has its pids").pane;
        let run = self.launch(i);
        let (sidecar, heartbeat) = match (&self.plans[i].heartbeat, handed) {
            (Some(hb), Some(handed)) => run.sidecar_started(handed.answer(), pane, &hb.file)?,
            _ => (SidecarState::None, None),
        };
        Ok(Report {
            outcome: Outcome::Started,
            pane_pid: Some(pane),
            sidecar,
            heartbeat,
            healed: false,
        })
    }
}

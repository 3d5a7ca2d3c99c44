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
use super::report::Report;
use super::start::{enough_descriptors, launch, launch_token, Launch};
use crate::child::Stop;
use crate::pane;
use crate::sidecar::{Pending, Sidecar};
use crate::tmux::{Spec, Tmux};

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
                located.push((bin, Sidecar::locate(bin)));
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
    let mut pending: Vec<Option<Result<Pending, String>>> = plans
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
    // Each call's agents are judged and handed over as soon as that call is done, while tmux
    // works on the next; those the chain did not make are launched alone at the end.
    let mut results_of: Vec<Option<Result<Report, Fail>>> = plans.iter().map(|_| None).collect();
    let mut next = chained.iter();
    for call in calls {
        for pids in call.finish() {
            let Some(&i) = next.next() else { break };
            let Some(pids) = pids else { continue };
            let run = Launch {
                plan: plans[i],
                stop,
                tmux: &tmux,
                token: &tokens[i],
                created: true,
            };
            // The verdict looks at the stop signals first: a stop undoes this session.
            results_of[i] = Some(match pending[i].take().transpose() {
                Ok(pending) => run.new_session(pids, pending),
                Err(why) => Err(run.undo(Fail::failed(why))),
            });
        }
    }
    for (i, plan) in plans.iter().enumerate() {
        // Not made by a chain (or its sidecar never spawned): alone, as ever.
        let result = results_of[i].take().unwrap_or_else(|| {
            drop(pending[i].take());
            launch(plan, stop)
        });
        results.push(result);
    }
}

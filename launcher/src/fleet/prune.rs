/*!
`mosaic-fleet prune`: removes the files of agents that are neither running nor kept.

An agent's files are `AGENT.hb` (the record), `.AGENT.hb.lock` (the sidecars' lock),
`.AGENT.hb.bell` (the bell mark of its activity watch) and `.AGENT.launch` (its launch
configuration). They go only when the agent has no tmux session on
the socket *and* we can take its lock: a file a live sidecar holds is never touched. The lock
is held while the files are removed, the lock file last; a sidecar that was waiting for that
lock finds its file unlinked and opens a fresh one ([`mosaic_core::lock`]), so two sidecars
never hold two different lock files for one agent.

An agent launched with `--worktree` (its launch file says where) loses its worktree with its
files, its `teardown` run first, but only when `git status` in it shows nothing: one with
uncommitted or untracked changes is kept, and so is the agent's every file (its launch file
knows the worktree), reported with its path. Its branch always stays: nothing of its work is
lost.

With `--logs`, the transcripts of each pruned agent go too (`AGENT.log`, its rotated files,
`.AGENT.log.ctl`, in the folder its launch file names, read before that file goes), and those
in the socket's transcript folder of agents with neither a session nor heartbeat files.
Without it, transcripts stay: they are the record of what agents did.
*/

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use mosaic_core::{layout, lock, transcript};
use serde::Serialize;

use super::{failed, print, tmux_failed, Fail, Fleet, Where};
use crate::worktree;

pub const HELP: &str = "Environment: each option above reads the variable shown beside it.\n\
    Exit codes: 0 done (also when nothing was removed), 1 failed at run time (tmux, the \
    heartbeat dir), 2 bad input.";

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Report a JSON object: {pruned: [...], kept: [...], files}.
    #[arg(long)]
    json: bool,
    /// Remove the pruned agents' transcripts too (and those of agents nobody runs).
    #[arg(long)]
    logs: bool,
    /// Base directory of transcripts, when an agent's launch file does not name it
    /// [default: $XDG_STATE_HOME/mosaic/logs, else ~/.local/state/mosaic/logs].
    #[arg(long, env = "MOSAIC_LOG_DIR", value_name = "DIR")]
    log_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    place: Where,
}

/// What prune did with each agent that has files.
#[derive(Debug, Default)]
pub struct Pruned {
    pub pruned: Vec<String>,
    /// Agents with a session, or whose lock a sidecar holds.
    pub kept: Vec<String>,
    /// Files removed (or, dry, that would be).
    pub files: usize,
    /// Each pruned agent's transcript folder, as its launch file named it (`None`: the default).
    pub logs: Vec<(String, Option<std::path::PathBuf>)>,
    /// Worktrees removed (or, dry, that would be): agent, path, branch (kept).
    pub worktrees: Vec<(String, PathBuf, String)>,
    /// Worktrees kept with their agent's files: agent, path, why.
    pub worktrees_kept: Vec<(String, PathBuf, String)>,
    /// Some worktree could not be looked at or removed (teardown or git failed): exit 1.
    pub worktree_failed: bool,
}

impl Pruned {
    /// Takes the agent's worktree away if clean (`dry`: says whether it would); whether the
    /// agent's files may go.
    fn worktree(&mut self, fleet: &Fleet, agent: &str, dry: bool) -> bool {
        let Ok(Some(config)) = crate::config::LaunchConfig::load(&fleet.hb_dir, agent) else {
            return true;
        };
        let Some(wt) = config.worktree else {
            return true;
        };
        let teardown = wt.teardown.as_deref();
        let kept = |why: &str| (agent.to_string(), wt.path.clone(), why.to_string());
        match worktree::remove(&wt.path, teardown, agent, dry, fleet.timeout) {
            Ok(worktree::Removed::Gone) => true,
            Ok(worktree::Removed::Removed) => {
                self.worktrees
                    .push((agent.to_string(), wt.path.clone(), wt.branch));
                true
            }
            Ok(worktree::Removed::Dirty) => {
                self.worktrees_kept
                    .push(kept("uncommitted or untracked changes"));
                false
            }
            Err(why) => {
                self.worktree_failed = true;
                self.worktrees_kept.push(kept(&why));
                false
            }
        }
    }
}

/// The agents with files in `dir`, and which of their files exist.
fn agents_with_files(dir: &Path) -> Result<BTreeMap<String, Vec<String>>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| mosaic_core::dirs::cannot("read", dir, &e))?;
    let mut agents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let agent = layout::classify(&name).map(|(_, agent)| agent);
        // Only names an agent can have: nothing else in the directory is ours to remove.
        if let Some(agent) = agent.filter(|a| mosaic_core::validate::agent(a).is_ok()) {
            agents.entry(agent.to_string()).or_default().push(name);
        }
    }
    Ok(agents)
}

/// [`prune`] of every agent; with `logs` (the socket's default transcript folder), their
/// transcripts too.
pub fn prune(fleet: &Fleet, dry_run: bool, logs: Option<&Path>) -> Result<Pruned, Fail> {
    let sessions = sessions(fleet)?;
    let mut result = prune_only(fleet, dry_run, |_| true)?;
    let Some(folder) = logs else {
        return Ok(result);
    };
    for (agent, dir) in &result.logs {
        // An agent kept after all (its worktree dirty) keeps its transcript too.
        if result.pruned.contains(agent) {
            result.files += remove_transcripts(dir.as_deref().unwrap_or(folder), agent, dry_run);
        }
    }
    // Transcripts of agents with no heartbeat files left (pruned before, or never had any).
    let has_files = agents_with_files(&fleet.hb_dir).unwrap_or_default();
    for agent in transcript_agents(folder) {
        let known = result.pruned.contains(&agent) || result.kept.contains(&agent);
        if known || sessions.contains(&agent) || (!dry_run && has_files.contains_key(&agent)) {
            continue;
        }
        result.files += remove_transcripts(folder, &agent, dry_run);
        result.pruned.push(agent);
    }
    result.pruned.sort();
    Ok(result)
}

fn sessions(fleet: &Fleet) -> Result<HashSet<String>, Fail> {
    Ok(fleet
        .tmux()
        .list_panes()
        .map_err(tmux_failed)?
        .into_iter()
        .map(|p| p.session)
        .collect())
}

/// The agents with a transcript file in `dir`.
fn transcript_agents(dir: &Path) -> Vec<String> {
    let mut agents: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let agent = name.split(".log").next()?.trim_start_matches('.');
            mosaic_core::validate::agent(agent).ok()?;
            (transcript::files(dir, agent)
                .iter()
                .any(|f| f.ends_with(&name))
                || name == transcript::ctl_name(agent))
            .then(|| agent.to_string())
        })
        .collect();
    agents.sort();
    agents.dedup();
    agents
}

/// Removes (dry: counts) `agent`'s transcript files in `dir`, never following a link.
fn remove_transcripts(dir: &Path, agent: &str, dry_run: bool) -> usize {
    let mut files = transcript::files(dir, agent);
    files.push(dir.join(transcript::ctl_name(agent)));
    files
        .iter()
        .filter(|f| std::fs::symlink_metadata(f).is_ok())
        .filter(|f| dry_run || std::fs::remove_file(f).is_ok())
        .count()
}

/// [`prune`] of the agents `only` accepts (`mosaic-fleet up --prune`: those gone from the file).
pub fn prune_only(
    fleet: &Fleet,
    dry_run: bool,
    only: impl Fn(&str) -> bool,
) -> Result<Pruned, Fail> {
    let mut result = Pruned::default();
    if !fleet.hb_dir.exists() {
        return Ok(result);
    }
    let sessions = sessions(fleet)?;
    for (agent, mut files) in agents_with_files(&fleet.hb_dir).map_err(failed)? {
        if !only(&agent) {
            continue;
        }
        let record = fleet.hb_file(&agent);
        let lock_name = layout::lock_path(&record)
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_string();
        // Probing a lock file that does not exist would create it.
        let held = files.contains(&lock_name) && !matches!(lock::is_held(&record), Ok(false));
        if sessions.contains(&agent) || held {
            result.kept.push(agent);
            continue;
        }
        // Read before the launch file goes: where its transcript is.
        let folder = match crate::config::LaunchConfig::load(&fleet.hb_dir, &agent) {
            Ok(Some(config)) => config.transcript_dir(),
            _ => None,
        };
        result.logs.push((agent.clone(), folder));
        if dry_run {
            if !result.worktree(fleet, &agent, true) {
                result.kept.push(agent);
                continue;
            }
            result.files += files.len();
            result.pruned.push(agent);
            continue;
        }
        // A launch or stop under way keeps the agent; one that starts meanwhile waits, then
        // finds the turn file gone and opens the name again.
        let Ok(_turn) = lock::Turn::take_for(&record, std::time::Instant::now(), &|| false) else {
            result.kept.push(agent);
            continue;
        };
        // Held while we remove; a sidecar that starts meanwhile waits, then keeps this agent.
        let Ok(_lock) = crate::config::lock_agent(&fleet.hb_dir, &agent) else {
            result.kept.push(agent);
            continue;
        };
        // In the agent's turn: no launch makes or enters its worktree meanwhile.
        if !result.worktree(fleet, &agent, false) {
            result.kept.push(agent);
            continue;
        }
        // The lock and turn files go last, while we still hold them (take and acquire
        // created them if they were missing: they go too).
        let turn_name = layout::turn_name(layout::record_name(&agent).as_bytes());
        let turn_name = String::from_utf8_lossy(&turn_name).into_owned();
        for made in [&lock_name, &turn_name] {
            if !files.contains(made) {
                files.push(made.clone());
            }
        }
        files.sort_by_key(|f| (*f == lock_name || *f == turn_name, *f == turn_name));
        for file in &files {
            match std::fs::remove_file(fleet.hb_dir.join(file)) {
                Ok(()) => result.files += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(failed(format!(
                        "cannot remove {}: {}",
                        fleet.hb_dir.join(file).display(),
                        mosaic_core::why(&e)
                    )))
                }
            }
        }
        result.pruned.push(agent);
    }
    Ok(result)
}

pub fn run(args: &PruneArgs) -> Result<ExitCode, Fail> {
    let fleet = args.place.resolve()?;
    let folder = args.logs.then(|| {
        let base = args.log_dir.clone().filter(|d| !d.as_os_str().is_empty());
        base.or_else(transcript::default_base)
            .map(|base| transcript::socket_dir(&base, &fleet.socket))
    });
    let result = prune(&fleet, args.dry_run, folder.flatten().as_deref())?;
    let text = if args.json {
        #[derive(Serialize)]
        struct Json<'a> {
            hb_dir: Cow<'a, str>,
            dry_run: bool,
            pruned: &'a [String],
            kept: &'a [String],
            files: usize,
            // Only when there are any: the report of a fleet without worktrees is as before.
            #[serde(skip_serializing_if = "Vec::is_empty")]
            worktrees_removed: Vec<JsonWorktree<'a>>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            worktrees_kept: Vec<JsonWorktree<'a>>,
        }
        #[derive(Serialize)]
        struct JsonWorktree<'a> {
            agent: &'a str,
            worktree: Cow<'a, str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            branch: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            why: Option<&'a str>,
        }
        fn wt((agent, path, more): &(String, PathBuf, String), kept: bool) -> JsonWorktree<'_> {
            JsonWorktree {
                agent,
                worktree: path.to_string_lossy(),
                branch: (!kept).then_some(more.as_str()),
                why: kept.then_some(more.as_str()),
            }
        }
        let json = Json {
            hb_dir: fleet.hb_dir.to_string_lossy(),
            dry_run: args.dry_run,
            pruned: &result.pruned,
            kept: &result.kept,
            files: result.files,
            worktrees_removed: result.worktrees.iter().map(|w| wt(w, false)).collect(),
            worktrees_kept: result.worktrees_kept.iter().map(|w| wt(w, true)).collect(),
        };
        serde_json::to_string(&json).expect("a report serializes") + "\n"
    } else {
        let verb = if args.dry_run {
            "would prune"
        } else {
            "pruned"
        };
        let mut text = format!(
            "{verb} {} agent{} in {} ({} file{})",
            result.pruned.len(),
            if result.pruned.len() == 1 { "" } else { "s" },
            fleet.hb_dir.display(),
            result.files,
            if result.files == 1 { "" } else { "s" },
        );
        if !result.pruned.is_empty() {
            text += &format!(": {}", result.pruned.join(", "));
        }
        if !result.kept.is_empty() {
            text += &format!(
                "; kept {} (running, kept by a sidecar, or its worktree kept): {}",
                result.kept.len(),
                result.kept.join(", ")
            );
        }
        text.push('\n');
        let would = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for (agent, path, branch) in &result.worktrees {
            text += &format!(
                "{would} worktree {} of {agent} (branch {branch} kept)\n",
                path.display()
            );
        }
        for (agent, path, why) in &result.worktrees_kept {
            text += &format!("kept worktree {} of {agent}: {why}\n", path.display());
        }
        text
    };
    print(&text)?;
    if result.worktree_failed {
        return Ok(ExitCode::from(mosaic_core::exit::Exit::Failed.code()));
    }
    Ok(ExitCode::SUCCESS)
}

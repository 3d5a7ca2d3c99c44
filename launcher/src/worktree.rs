/*!
A git worktree per agent (`--worktree`): the agent works in its own checkout of the repository
at its workdir, on its own branch, so agents on one repository never write each other's files
or fight over one branch.

- Where: `<git common dir>/mosaic-worktrees/AGENT` (`git rev-parse --git-common-dir`, the
  repository's `.git`, shared by all its worktrees). Inside `.git`, the main checkout's `git
  status` never shows it, `git clean -dfx` there never touches it, and it goes with the
  repository; every checkout of one repository finds the same one. The agent starts in the same
  subdirectory of it as its workdir is of its checkout.
- Branch `mosaic/AGENT`, made from `base` (default `HEAD` at the workdir, resolved to a commit
  by [`resolve`]) at the first start; a branch that exists is checked out as it is, never reset.
- `setup` runs once, when the worktree is made; one that fails leaves no worktree (only setup
  has run in it), so the next launch makes it and runs setup again. `teardown` runs before
  [`remove`] takes the worktree away, which it does only when `git status` in it shows nothing
  (`git worktree remove` without `--force`); the branch always stays.

Invariants: git runs by argument vector, never through a shell, in a bounded wait, with the
repository-local `GIT_*` variables of the caller removed (`git rev-parse --local-env-vars`): a
caller's `GIT_DIR` or `GIT_WORK_TREE` never points these commands at another repository.
`setup` and `teardown` run as `sh -c CMD` with the agent's name and worktree in their
environment (`MOSAIC_AGENT`, `MOSAIC_WORKTREE`), never in the command's text.
*/

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mosaic_core::exit::Fail;

use crate::child::{self, Cut, Stop};

/// The branch prefix: `mosaic/AGENT`.
pub const BRANCH_PREFIX: &str = "mosaic/";
/// The directory, in the repository's common git dir, that holds the agents' worktrees.
pub const DIR: &str = "mosaic-worktrees";
/// The longest a `setup` or `teardown` command may run (installing dependencies can be slow).
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(3600);

/// What git reads from its environment about which repository it is in: a caller's value
/// would point our commands elsewhere (`git rev-parse --local-env-vars`, git 2.47).
const LOCAL_ENV: [&str; 15] = [
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
];

/// An agent's worktree, resolved by [`resolve`] (nothing made yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worktree {
    /// `<common dir>/mosaic-worktrees/AGENT`.
    pub path: PathBuf,
    /// `mosaic/AGENT`.
    pub branch: String,
    /// The base as given (stored), and the commit it names now (a new branch starts there).
    pub base: Option<String>,
    pub commit: String,
    /// The workdir's place in its checkout (`--show-prefix`): where in the worktree the agent
    /// starts.
    pub prefix: PathBuf,
    pub setup: Option<OsString>,
    pub teardown: Option<OsString>,
}

impl Worktree {
    /// Where the agent's pane starts.
    pub fn workdir(&self) -> PathBuf {
        self.path.join(&self.prefix)
    }
}

/// `mosaic/AGENT`, checked against `git check-ref-format`'s rules (an agent name that passes
/// `validate::agent` always passes them; checked anyway, for a name rule that may change).
pub fn branch(agent: &str) -> Result<String, String> {
    let bad = agent.is_empty()
        || agent.starts_with('.')
        || agent.ends_with('.')
        || agent.ends_with(".lock")
        || agent.contains("..")
        || agent.contains("@{")
        || agent == "@"
        || agent
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\/".contains(&b));
    if bad {
        return Err(format!("agent name {agent:?} cannot name a git branch"));
    }
    Ok(format!("{BRANCH_PREFIX}{agent}"))
}

/// Checks that `workdir` is in a git work tree and `base` names a commit; runs only
/// read-only git commands. Bad input (exit 2): not a repository, a bad base; git missing
/// or failing otherwise: exit 1.
pub fn resolve(
    agent: &str,
    workdir: &Path,
    base: Option<String>,
    hooks: [Option<OsString>; 2],
    timeout: Duration,
) -> Result<Worktree, Fail> {
    let branch = branch(agent).map_err(Fail::usage)?;
    if let Some(b) = &base {
        if b.is_empty() || b.starts_with('-') || b.chars().any(char::is_control) {
            return Err(Fail::usage(format!(
                "invalid base {b:?} (--base): a branch, tag or commit"
            )));
        }
    }
    let out = git(
        workdir,
        &[
            "rev-parse",
            "--path-format=absolute",
            "--git-common-dir",
            "--show-toplevel",
            "--show-prefix",
        ],
        timeout,
        None,
    )
    .map_err(|e| match e {
        Git::Said(why) => Fail::usage(format!(
            "--worktree: workdir {} is not in a git work tree: {why}",
            workdir.display()
        )),
        Git::Failed(why) => Fail::failed(format!("--worktree: {why}")),
    })?;
    let lines: Vec<&[u8]> = out
        .strip_suffix(b"\n")
        .unwrap_or(&out)
        .split(|&b| b == b'\n')
        .collect();
    let [common, _top, prefix] = lines[..] else {
        return Err(Fail::usage(format!(
            "--worktree: cannot read the repository of workdir {} (a newline in its path?)",
            workdir.display()
        )));
    };
    let path = Path::new(OsStr::from_bytes(common)).join(DIR).join(agent);
    let prefix = PathBuf::from(OsStr::from_bytes(prefix));
    let base_rev = format!("{}^{{commit}}", base.as_deref().unwrap_or("HEAD"));
    let commit = git(
        workdir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &base_rev,
        ],
        timeout,
        None,
    )
    .or_else(|e| match e {
        // An agent whose branch exists needs no base (a restart after its base branch was
        // deleted, say): the branch is checked out as it is.
        Git::Said(_) if has_branch(workdir, &branch, timeout, None) => Ok(Vec::new()),
        Git::Said(_) => Err(Fail::usage(format!(
            "invalid base {} (--base) in {}: not a commit of the repository",
            base.as_deref().unwrap_or("HEAD"),
            workdir.display()
        ))),
        Git::Failed(why) => Err(Fail::failed(format!("--worktree: {why}"))),
    })?;
    let [setup, teardown] = hooks;
    Ok(Worktree {
        path,
        branch,
        base,
        commit: String::from_utf8_lossy(&commit).trim().to_string(),
        prefix,
        setup,
        teardown,
    })
}

/// Makes the agent's worktree unless it is there; runs `setup` in a new one. `Ok(true)`:
/// made by this call.
pub fn ensure(wt: &Worktree, agent: &str, timeout: Duration, stop: &Stop) -> Result<bool, Fail> {
    if wt.path.join(".git").exists() {
        return Ok(false);
    }
    let failed = |what: &str, why: String| {
        Fail::failed(format!(
            "cannot {what} worktree {} of agent {agent}: {why}",
            wt.path.display()
        ))
    };
    let repo = wt
        .path
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/"));
    // A worktree whose directory was deleted by hand is still registered, and git refuses to
    // add it again: removing a missing one clears only its registration (and fails, harmlessly,
    // for one git does not know).
    let _ = git(
        repo,
        &[os("worktree"), os("remove"), wt.path.as_os_str()],
        timeout,
        Some(stop),
    );
    let mut add: Vec<&OsStr> = vec![os("worktree"), os("add")];
    if has_branch(repo, &wt.branch, timeout, Some(stop)) {
        add.extend([wt.path.as_os_str(), os(&wt.branch)]);
    } else {
        add.extend([
            os("-b"),
            os(&wt.branch),
            wt.path.as_os_str(),
            os(&wt.commit),
        ]);
    }
    git(repo, &add, timeout, Some(stop)).map_err(|e| failed("make", e.why()))?;
    if let Some(setup) = &wt.setup {
        if let Err(why) = hook(setup, &wt.path, agent, Some(stop)) {
            // Only setup has run in it: nothing of the agent's is lost. The branch stays.
            let removed = git(
                repo,
                &[
                    os("worktree"),
                    os("remove"),
                    os("--force"),
                    wt.path.as_os_str(),
                ],
                timeout,
                None,
            );
            let left = match removed {
                Ok(_) => "the worktree was removed; the next launch makes it again".to_string(),
                Err(e) => format!("the worktree stays: {}", e.why()),
            };
            return Err(Fail::failed(format!(
                "setup of agent {agent} failed in {}: {why} ({left})",
                wt.path.display()
            )));
        }
    }
    Ok(true)
}

/// Whether the repository at `dir` has branch `branch`.
fn has_branch(dir: &Path, branch: &str, timeout: Duration, stop: Option<&Stop>) -> bool {
    let name = format!("refs/heads/{branch}");
    git(
        dir,
        &["rev-parse", "--verify", "--quiet", &name],
        timeout,
        stop,
    )
    .is_ok()
}

/// What [`remove`] did with a worktree.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// Removed (its branch kept), or already gone.
    Removed,
    Gone,
    /// Kept: `git status` in it shows changes or untracked files (or teardown made some).
    Dirty,
}

/// Takes the agent's worktree away, its branch kept: only a clean one, `teardown` first.
/// `dry`: says what it would do, runs nothing but `git status`.
pub fn remove(
    path: &Path,
    teardown: Option<&OsStr>,
    agent: &str,
    dry: bool,
    timeout: Duration,
) -> Result<Removed, String> {
    if !path.join(".git").exists() {
        return Ok(Removed::Gone);
    }
    let clean = || -> Result<bool, String> {
        git(
            path,
            &["status", "--porcelain", "--untracked-files=all"],
            timeout,
            None,
        )
        .map(|out| out.is_empty())
        .map_err(|e| format!("cannot read git status in {}: {}", path.display(), e.why()))
    };
    if !clean()? {
        return Ok(Removed::Dirty);
    }
    if dry {
        return Ok(Removed::Removed);
    }
    if let Some(teardown) = teardown {
        hook(teardown, path, agent, None)
            .map_err(|why| format!("teardown failed in {}: {why}", path.display()))?;
        if !clean()? {
            return Ok(Removed::Dirty);
        }
    }
    let repo = path
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/"));
    git(
        repo,
        &[os("worktree"), os("remove"), path.as_os_str()],
        timeout,
        None,
    )
    .map(|_| Removed::Removed)
    .map_err(|e| format!("cannot remove worktree {}: {}", path.display(), e.why()))
}

/// Runs `sh -c CMD` in the worktree, its output on our stderr (stdout is the report's).
fn hook(command: &OsStr, path: &Path, agent: &str, stop: Option<&Stop>) -> Result<(), String> {
    use std::os::fd::AsFd;
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::null(), Stdio::from);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(path)
        .env("MOSAIC_AGENT", agent)
        .env("MOSAIC_WORKTREE", path)
        .stdin(Stdio::null())
        .stdout(stderr)
        .stderr(Stdio::inherit());
    for var in LOCAL_ENV {
        cmd.env_remove(var);
    }
    // With the launch's stop signals, in a group of its own, ended with it; without (prune),
    // in the caller's, so a Ctrl-C reaches it too.
    let out = child::output(
        &mut cmd,
        stop.is_some(),
        Instant::now() + HOOK_TIMEOUT,
        stop,
    )
    .map_err(|cut| cut_why(cut, "sh"))?;
    if out.status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    Err(mosaic_core::death::Death::from_pane(out.status.code(), out.status.signal()).describe())
}

enum Git {
    /// git ran and said no (its last line of stderr).
    Said(String),
    /// git could not be run or waited for.
    Failed(String),
}

impl Git {
    fn why(self) -> String {
        match self {
            Git::Said(why) | Git::Failed(why) => why,
        }
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `git -C DIR ARGS...`, bounded by `timeout`; its stdout.
fn git<S: AsRef<OsStr>>(
    dir: &Path,
    args: &[S],
    timeout: Duration,
    stop: Option<&Stop>,
) -> Result<Vec<u8>, Git> {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        // `status` need not refresh the index (and lock it) under a running agent.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in LOCAL_ENV {
        cmd.env_remove(var);
    }
    let out = child::output(&mut cmd, true, Instant::now() + timeout, stop)
        .map_err(|cut| Git::Failed(cut_why(cut, "git")))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(Git::Said(if last.is_empty() {
        format!("git exited with status {:?}", out.status.code())
    } else {
        last.trim().to_string()
    }))
}

fn cut_why(cut: Cut, what: &str) -> String {
    match cut {
        Cut::TimedOut => format!("{what} did not finish in time"),
        Cut::Interrupted(sig) => format!("{what} interrupted by signal {sig}"),
        Cut::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("{what} not found (install it, or put it on PATH)")
        }
        Cut::Io(e) => format!("cannot run {what}: {}", mosaic_core::why(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_follow_check_ref_format() {
        assert_eq!(branch("builder-1").as_deref(), Ok("mosaic/builder-1"));
        for bad in [
            "a.lock", "a..b", "a@{b", ".a", "a.", "@", "a b", "a:b", "a~1", "",
        ] {
            assert!(branch(bad).is_err(), "{bad}");
        }
    }
}

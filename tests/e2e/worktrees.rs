/*!
A git worktree per agent (`--worktree`, `worktree = true`), against a real git and a real
tmux: made at the first start on `mosaic/AGENT` from its base, reused after with its work,
the main checkout left clean, agents on one repository kept apart, `setup` and `teardown`,
`prune` that removes a clean worktree (its branch kept) and keeps a dirty one, and the
refusals before anything starts. The repositories live at hostile paths (spaces, quotes, `#`,
`$(...)`); git runs with the sandbox's HOME, so no `~/.gitconfig` of the caller is read.
*/

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::e2e;
use crate::support::*;

/// A repository directory name no shell or tmux format would pass unquoted.
const HOSTILE: &str = "re po #1 'q\" $(x)";

/// `git -C DIR ARGS...` as a test's person runs it: the sandbox's HOME, an identity, no system
/// config, none of the caller's `GIT_*`. Its stdout, trimmed.
#[track_caller]
fn git(sb: &Sandbox, dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("HOME", sb.path("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "e2e")
        .env("GIT_AUTHOR_EMAIL", "e2e@example.com")
        .env("GIT_COMMITTER_NAME", "e2e")
        .env("GIT_COMMITTER_EMAIL", "e2e@example.com");
    expect_success(&mut cmd).trim().to_string()
}

/// A repository at `sb/name` on branch main with two commits: `README` (`one`), `sub/file`
/// and a `.gitignore` of `*.ignored`, then `README` says `two`. Its path and the first commit.
fn repo(sb: &Sandbox, name: &str) -> (PathBuf, String) {
    let dir = sb.path(name);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    git(sb, &dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README"), "one\n").unwrap();
    std::fs::write(dir.join("sub/file"), "file\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "*.ignored\n").unwrap();
    git(sb, &dir, &["add", "-A"]);
    git(sb, &dir, &["commit", "-q", "-m", "one"]);
    let first = git(sb, &dir, &["rev-parse", "HEAD"]);
    std::fs::write(dir.join("README"), "two\n").unwrap();
    git(sb, &dir, &["commit", "-q", "-am", "two"]);
    (dir, first)
}

/// Where agent `agent`'s worktree of `repo` lives.
fn worktree(repo: &Path, agent: &str) -> PathBuf {
    repo.join(".git/mosaic-worktrees").join(agent)
}

/// The main checkout shows nothing new.
#[track_caller]
fn assert_clean(sb: &Sandbox, repo: &Path) {
    let status = git(
        sb,
        repo,
        &["status", "--porcelain", "--untracked-files=all"],
    );
    assert_eq!(
        status,
        "",
        "the main checkout of {} is not clean",
        repo.display()
    );
}

/// `mosaic-launcher AGENT --worktree` in `workdir`, running `command`.
fn launch(sb: &Sandbox, agent: &str, workdir: &Path, command: &str) -> Command {
    let mut cmd = sb.launcher(agent);
    cmd.env("MOSAIC_AGENT_WORKDIR", workdir)
        .env("MOSAIC_AGENT_COMMAND", command)
        .arg("--worktree");
    cmd
}

/// Waits until `path` holds `want`.
#[track_caller]
fn wait_for_file(path: &Path, want: &str) {
    wait_until(
        &format!("{} to hold {want:?}", path.display()),
        Duration::from_secs(10),
        || (std::fs::read_to_string(path).ok()? == want).then_some(()),
        || format!("{:?}", std::fs::read_to_string(path)),
    );
}

const APPEND_A: &str = "sh -c 'echo from-a >> work.txt; exec sleep 600'";

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_worktree_is_made_at_first_start_and_reused_with_its_work() {
    e2e!();
    let sb = Sandbox::new();
    let (repo, first) = repo(&sb, HOSTILE);
    let wt = worktree(&repo, "a");
    // Started in a subdirectory, from the first commit; through the variable, as a script would.
    let mut cmd = launch(&sb, "a", &repo.join("sub"), APPEND_A);
    cmd.env("MOSAIC_WORKTREE_BASE", &first);
    let out = expect_success(&mut cmd);
    assert!(
        out.contains(&format!("worktree {} on branch mosaic/a", wt.display())),
        "{out}"
    );
    assert_eq!(git(&sb, &wt, &["branch", "--show-current"]), "mosaic/a");
    assert_eq!(git(&sb, &wt, &["rev-parse", "HEAD"]), first);
    assert_eq!(std::fs::read_to_string(wt.join("README")).unwrap(), "one\n");
    wait_for_file(&wt.join("sub/work.txt"), "from-a\n");
    assert_eq!(
        sb.pane_path("a"),
        wt.join("sub").as_os_str().as_encoded_bytes()
    );
    assert_clean(&sb, &repo);
    assert!(!repo.join("sub/work.txt").exists());

    // The agent's work, committed on its branch, and a file it leaves untracked.
    git(&sb, &wt, &["add", "sub/work.txt"]);
    git(&sb, &wt, &["commit", "-q", "-m", "agent work"]);
    let work = git(&sb, &wt, &["rev-parse", "HEAD"]);
    std::fs::write(wt.join("notes.txt"), "draft\n").unwrap();

    // A restart, then a stop and a new launch with the same base: reused, never reset.
    expect_success(&mut fleet(&sb, &["restart", "a"]));
    wait_for_file(&wt.join("sub/work.txt"), "from-a\nfrom-a\n");
    expect_success(&mut fleet(&sb, &["stop", "a"]));
    let mut cmd = launch(&sb, "a", &repo.join("sub"), APPEND_A);
    cmd.arg("--base").arg(&first);
    let out = expect_success(&mut cmd);
    assert!(out.starts_with("started agent a"), "{out}");
    wait_for_file(&wt.join("sub/work.txt"), "from-a\nfrom-a\nfrom-a\n");
    assert_eq!(git(&sb, &wt, &["rev-parse", "HEAD"]), work);
    assert_eq!(
        std::fs::read_to_string(wt.join("notes.txt")).unwrap(),
        "draft\n"
    );
    // Its branch there, a base that names nothing (deleted since, say) does not matter.
    let mut cmd = launch(&sb, "a", &repo.join("sub"), APPEND_A);
    let out = expect_success(cmd.args(["--base", "no-such-branch"]));
    assert!(out.starts_with("agent a already running"), "{out}");
    assert_clean(&sb, &repo);

    // ls and ls --json show the worktree and its branch.
    let ls = expect_success(&mut fleet(&sb, &["ls"]));
    assert!(ls.contains("BRANCH") && ls.contains("mosaic/a"), "{ls}");
    assert!(ls.contains(&wt.display().to_string()), "{ls}");
    let ls = json(&expect_success(&mut fleet(&sb, &["ls", "--json"])));
    let agent = &ls["agents"][0];
    assert_eq!(agent["branch"], "mosaic/a", "{ls}");
    assert_eq!(agent["worktree"], wt.to_str().unwrap(), "{ls}");
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn two_agents_on_one_repository_are_kept_apart() {
    e2e!();
    let sb = Sandbox::new();
    let (repo, _) = repo(&sb, HOSTILE);
    // Both at once: two `git worktree add` in one repository side by side.
    let mut children: Vec<_> = ["a", "b"]
        .iter()
        .map(|agent| {
            let command = format!("sh -c 'echo {agent} > same.txt; exec sleep 600'");
            let mut cmd = launch(&sb, agent, &repo, &command);
            if *agent == "b" {
                // The variable instead of the flag.
                cmd = sb.launcher(agent);
                cmd.env("MOSAIC_AGENT_WORKDIR", &repo)
                    .env("MOSAIC_AGENT_COMMAND", &command)
                    .env("MOSAIC_AGENT_WORKTREE", "1");
            }
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            (cmd.spawn().unwrap(), cmd)
        })
        .collect();
    for (child, cmd) in children.drain(..) {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", explain(&cmd, &out));
    }
    for agent in ["a", "b"] {
        let wt = worktree(&repo, agent);
        wait_for_file(&wt.join("same.txt"), &format!("{agent}\n"));
        assert_eq!(
            git(&sb, &wt, &["branch", "--show-current"]),
            format!("mosaic/{agent}")
        );
    }
    assert!(!repo.join("same.txt").exists());
    assert_eq!(git(&sb, &repo, &["branch", "--show-current"]), "main");
    assert_clean(&sb, &repo);
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn setup_runs_once_and_teardown_before_removal_with_the_agent_and_its_path() {
    e2e!();
    let sb = Sandbox::new();
    let (repo, _) = repo(&sb, HOSTILE);
    let log = sb.path("hooks.log");
    let hook = |what: &str| {
        format!("printf '{what}|%s|%s|%s\\n' \"$MOSAIC_AGENT\" \"$MOSAIC_WORKTREE\" \"$PWD\" >> \"$HOOK_LOG\"")
    };
    let wt = worktree(&repo, "s");
    let line = |what: &str| format!("{what}|s|{}|{}\n", wt.display(), wt.display());
    let start = || {
        let mut cmd = launch(&sb, "s", &repo, "sleep 600");
        cmd.env("HOOK_LOG", &log).args([
            "--setup",
            &hook("setup"),
            "--teardown",
            &hook("teardown"),
        ]);
        cmd
    };
    expect_success(&mut start());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), line("setup"));
    // Not again for a worktree that is there.
    expect_success(&mut fleet(&sb, &["stop", "s"]));
    expect_success(&mut start());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), line("setup"));
    expect_success(&mut fleet(&sb, &["stop", "s"]));
    let mut prune = fleet(&sb, &["prune"]);
    prune.env("HOOK_LOG", &log);
    let out = expect_success(&mut prune);
    assert!(
        out.contains(&format!(
            "removed worktree {} of s (branch mosaic/s kept)",
            wt.display()
        )),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        line("setup") + &line("teardown")
    );
    assert!(!wt.exists());
    git(
        &sb,
        &repo,
        &["rev-parse", "--verify", "refs/heads/mosaic/s"],
    );
    assert_clean(&sb, &repo);

    // A failing setup fails the launch: no session, no worktree (its branch stays), and the
    // next launch makes it again.
    let mut cmd = launch(&sb, "f", &repo, "sleep 600");
    cmd.args(["--setup", "touch half-made; echo oops >&2; exit 7"]);
    let (_, err) = expect_exit(&mut cmd, 1);
    assert!(
        err.contains("mosaic-launcher: setup of agent f failed"),
        "{err}"
    );
    assert!(!sb.has_session("f"));
    assert!(!worktree(&repo, "f").exists());
    assert!(!git(&sb, &repo, &["worktree", "list"]).contains("mosaic-worktrees/f"));
    let mut cmd = launch(&sb, "f", &repo, "sleep 600");
    cmd.args(["--setup", "touch made"]);
    expect_success(&mut cmd);
    assert!(worktree(&repo, "f").join("made").exists());
    assert_clean(&sb, &repo);
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn prune_removes_a_clean_worktree_and_keeps_a_dirty_one() {
    e2e!();
    let sb = Sandbox::new();
    let (repo, _) = repo(&sb, HOSTILE);
    expect_success(&mut launch(&sb, "clean", &repo, "sleep 600"));
    let dirty_cmd = "sh -c 'echo edit >> README; echo new > untracked.txt; exec sleep 600'";
    expect_success(&mut launch(&sb, "dirty", &repo, dirty_cmd));
    let (clean, dirty) = (worktree(&repo, "clean"), worktree(&repo, "dirty"));
    wait_for_file(&dirty.join("untracked.txt"), "new\n");
    expect_success(&mut fleet(&sb, &["stop", "--all"]));

    let out = expect_success(&mut fleet(&sb, &["prune", "--dry-run"]));
    assert!(
        out.contains(&format!(
            "would remove worktree {} of clean",
            clean.display()
        )),
        "{out}"
    );
    assert!(clean.exists(), "a dry run removed it");

    let out = json(&expect_success(&mut fleet(&sb, &["prune", "--json"])));
    assert_eq!(out["pruned"], serde_json::json!(["clean"]), "{out}");
    assert_eq!(out["kept"], serde_json::json!(["dirty"]), "{out}");
    assert_eq!(
        out["worktrees_removed"][0]["worktree"],
        clean.to_str().unwrap()
    );
    assert_eq!(out["worktrees_removed"][0]["branch"], "mosaic/clean");
    assert_eq!(
        out["worktrees_kept"][0]["worktree"],
        dirty.to_str().unwrap()
    );
    assert!(!clean.exists());
    git(
        &sb,
        &repo,
        &["rev-parse", "--verify", "refs/heads/mosaic/clean"],
    );
    // Nothing of the dirty one is lost, its launch file included (it knows the worktree).
    assert_eq!(
        std::fs::read_to_string(dirty.join("untracked.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        std::fs::read_to_string(dirty.join("README")).unwrap(),
        "two\nedit\n"
    );
    assert!(sb.hb_dir().join(".dirty.launch").exists());
    let out = expect_success(&mut fleet(&sb, &["prune"]));
    assert!(
        out.contains(&format!(
            "kept worktree {} of dirty: uncommitted or untracked changes",
            dirty.display()
        )),
        "{out}"
    );

    // Committed, it goes; the commit stays on its branch.
    git(&sb, &dirty, &["add", "-A"]);
    git(&sb, &dirty, &["commit", "-q", "-m", "agent work"]);
    let work = git(&sb, &dirty, &["rev-parse", "HEAD"]);
    let out = expect_success(&mut fleet(&sb, &["prune"]));
    assert!(out.contains("removed worktree"), "{out}");
    assert!(!dirty.exists());
    assert_eq!(git(&sb, &repo, &["rev-parse", "mosaic/dirty"]), work);
    assert!(!sb.hb_dir().join(".dirty.launch").exists());
    assert_clean(&sb, &repo);
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn worktree_outside_a_repository_is_refused_before_anything_starts() {
    e2e!();
    let sb = Sandbox::new();
    let (repo, _) = repo(&sb, HOSTILE);
    // A caller whose GIT_DIR and GIT_WORK_TREE name a repository: not ours to follow.
    let mut cmd = launch(&sb, "a", &sb.path("work"), "sleep 600");
    cmd.env("GIT_DIR", repo.join(".git"))
        .env("GIT_WORK_TREE", &repo);
    let (out, err) = expect_exit(&mut cmd, 2);
    assert_eq!(out, "");
    assert!(
        err.starts_with("mosaic-launcher: --worktree: workdir "),
        "{err}"
    );
    assert!(err.contains("not in a git work tree"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for bad in [vec!["--base", "no-such-branch"], vec!["--base=--output=x"]] {
        let mut cmd = launch(&sb, "a", &repo, "sleep 600");
        let (_, err) = expect_exit(cmd.args(&bad), 2);
        assert!(err.contains("invalid base"), "{err}");
    }
    let mut cmd = sb.launcher("a");
    let (_, err) = expect_exit(cmd.args(["--setup", "true"]), 2);
    assert!(err.contains("--setup needs --worktree"), "{err}");
    assert_eq!(sb.session_count(), 0);
    assert!(std::fs::read_dir(sb.hb_dir()).map_or(true, |mut d| d.next().is_none()));
    assert!(!repo.join(".git/mosaic-worktrees").exists());

    // A fleet file with one such agent is refused whole.
    let file = sb.path("mosaic.toml");
    std::fs::write(
        &file,
        format!(
            "[fleet]\nsocket = \"{}\"\nhb_dir = \"hb\"\n[defaults]\nworktree = true\n\
             [agents.good]\ncommand = \"sleep 600\"\nworkdir = {:?}\n\
             [agents.bad]\ncommand = \"sleep 600\"\nworkdir = \"work\"\n",
            sb.socket,
            repo.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut up = sb.isolated("mosaic-fleet");
    up.args(["up", "-f"]).arg(&file);
    let (_, err) = expect_exit(&mut up, 2);
    assert!(
        err.contains("agent bad") && err.contains("not in a git work tree"),
        "{err}"
    );
    assert_eq!(sb.session_count(), 0);
    assert!(!repo.join(".git/mosaic-worktrees").exists());

    // A workdir git does not track (an empty directory) is not in the worktree: a failure at
    // run time, and the worktree it made goes again.
    std::fs::create_dir(repo.join("local")).unwrap();
    let (_, err) = expect_exit(&mut launch(&sb, "a", &repo.join("local"), "sleep 600"), 1);
    assert!(err.contains("is not in its worktree"), "{err}");
    assert!(err.contains("its new worktree was removed"), "{err}");
    assert_eq!(sb.session_count(), 0);
    assert!(!worktree(&repo, "a").exists());
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_fleet_file_gives_its_agents_worktrees() {
    e2e!();
    let sb = Sandbox::new();
    let (repo, first) = repo(&sb, HOSTILE);
    let file = sb.path("mosaic.toml");
    let write = |setup: &str, agents: &[&str]| {
        let mut text = format!(
            "[fleet]\nsocket = \"{}\"\nhb_dir = \"hb\"\n[defaults]\nhb_interval = 0.2\n\
             worktree = true\nbase = \"{first}\"\nworkdir = {:?}\n",
            sb.socket,
            repo.to_str().unwrap()
        );
        for agent in agents {
            text += &format!(
                "[agents.{agent}]\ncommand = \"sh -c 'echo {agent} > mine.txt; exec sleep 600'\"\n\
                 setup = \"{setup}\"\n"
            );
        }
        std::fs::write(&file, text).unwrap();
    };
    let up = |args: &[&str]| {
        let mut cmd = sb.isolated("mosaic-fleet");
        cmd.arg("up").arg("-f").arg(&file).args(args);
        cmd
    };
    write("touch set-up.ignored", &["a", "b"]);
    let out = expect_success(&mut up(&[]));
    assert!(out.contains("up: 2 started"), "{out}");
    for agent in ["a", "b"] {
        let wt = worktree(&repo, agent);
        wait_for_file(&wt.join("mine.txt"), &format!("{agent}\n"));
        assert!(wt.join("set-up.ignored").exists());
        assert_eq!(git(&sb, &wt, &["rev-parse", "HEAD"]), first);
    }
    assert_clean(&sb, &repo);
    let out = expect_success(&mut up(&[]));
    assert!(out.contains("up: 2 unchanged"), "{out}");

    // A new setup changes nothing that runs: stored, not restarted.
    let pid = sb.pane_pid("a");
    write("touch other.ignored", &["a", "b"]);
    let out = expect_success(&mut up(&[]));
    assert!(out.contains("~ updated a (setup changed)"), "{out}");
    assert_eq!(sb.pane_pid("a"), pid);

    // Gone from the file with --prune: b's clean worktree goes (ignored files and all), a's
    // dirty one stays.
    let (a, b) = (worktree(&repo, "a"), worktree(&repo, "b"));
    std::fs::remove_file(b.join("mine.txt")).unwrap();
    write("touch other.ignored", &["c"]);
    let out = expect_success(&mut up(&["--prune"]));
    assert!(!b.exists(), "{out}");
    assert!(
        out.contains(&format!(
            "- stopped a (not in {}; its files and worktree {} kept: uncommitted or untracked changes)",
            file.display(),
            a.display()
        )),
        "{out}"
    );
    assert!(a.join("mine.txt").exists());
    assert_clean(&sb, &repo);
}

/*!
Hostile input, races and faults, end to end: the release binaries against a real tmux, real
shells and real file systems, fed what an attacker, a confused operator or a bad day would.

Every test checks the same three things besides its own: nothing panics (exit 101 or
"panicked" on stderr), an error is one line that names what it refused, and no sidecar is left
behind once its target is gone. Faults that need root (an immutable directory, a full tmpfs)
skip loudly without it. The unit-level counterparts are the `proptests` modules.

By topic: `bytes.rs` (non-UTF-8 arguments and variables), `names.rs` (hostile names and
paths), `races.rs`, `faults.rs`; the checks they share are here.
*/

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::*;
use crate::{e2e, test_name};

mod bytes;
mod faults;
mod names;
mod races;

const WAIT: Duration = Duration::from_secs(10);

fn os(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}

/// Fails if `out` shows a panic: exit 101, "panicked" on stderr, or death by a signal
/// (`panic = "abort"` in release turns a panic into SIGABRT).
#[track_caller]
fn assert_no_panic(cmd: &Command, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some() && out.status.code() != Some(101) && !err.contains("panicked"),
        "a panic\n{}",
        explain(cmd, out)
    );
}

/// Runs `cmd`, which must refuse with exit `code`, nothing on stdout and one line on stderr
/// starting `prog: `; returns that line.
#[track_caller]
fn refused(cmd: &mut Command, code: i32, prog: &str) -> String {
    let out = run(cmd);
    assert_no_panic(cmd, &out);
    assert_eq!(out.status.code(), Some(code), "{}", explain(cmd, &out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.stdout.is_empty(), "{}", explain(cmd, &out));
    assert!(
        err.starts_with(&format!("{prog}: ")) && err.lines().count() == 1,
        "not one line: {}",
        explain(cmd, &out)
    );
    err
}

/// Runs `cmd`, which must succeed without a panic; returns stdout.
#[track_caller]
fn succeeds(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert_no_panic(cmd, &out);
    assert!(out.status.success(), "{}", explain(cmd, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every path under `dir` (not following symlinks).
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut all = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path.clone());
            }
            all.insert(path);
        }
    }
    all
}

/// Files an injected `touch canary` or `> canary` would have made (directory names that merely
/// contain the word do not count).
fn canaries(dir: &Path) -> Vec<PathBuf> {
    tree(dir)
        .into_iter()
        .filter(|p| {
            matches!(
                p.file_name().and_then(OsStr::to_str),
                Some("canary" | "pwned")
            )
        })
        .collect()
}

/// Names in `dir`.
fn names(dir: &Path) -> BTreeSet<OsString> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// Names in the heartbeat dir that are not this agent's file, lock, bell mark or a passing
/// temp file.
fn strangers(dir: &Path, agent: &[u8]) -> Vec<OsString> {
    let file = [agent, b".hb"].concat();
    let lock = [b".", agent, b".hb.lock"].concat();
    let bell = [b".", agent, b".hb.bell"].concat();
    // The turn a launch or stop of the agent takes.
    let turn = [b".", agent, b".hb.turn"].concat();
    let temp = [b".", agent, b".hb."].concat();
    // The launch configuration `mosaic-fleet restart` reads.
    let launch = [b".", agent, b".launch"].concat();
    names(dir)
        .into_iter()
        .filter(|n| {
            let n = n.as_bytes();
            n != file
                && n != lock
                && n != bell
                && n != turn
                && n != launch
                && !(n.starts_with(&temp) && n.ends_with(b".tmp"))
        })
        .collect()
}

/// Live `mosaic-hb` processes whose command line says `--file FILE`.
fn sidecars_for_file(file: &Path) -> Vec<i32> {
    sidecars_with("--file", |f| f == file.as_os_str().as_bytes())
}

/// Ends the sandbox's agents and waits for their sidecars to write `exited` and leave, so that
/// no final record lands while the sandbox is being removed.
fn end_agents(sb: &Sandbox) {
    let _ = sb.tmux(&["kill-server"]);
    let root = sb.dir.as_os_str().as_bytes();
    wait_no_sidecars("the sandbox", || {
        sidecars_with("--file", |f| f.starts_with(root))
    });
}

#[track_caller]
fn wait_no_sidecars(what: &str, find: impl Fn() -> Vec<i32>) {
    wait_until(
        &format!("no sidecar left for {what}"),
        WAIT,
        || find().is_empty().then_some(()),
        || format!("{:?}", find()),
    );
}

/// The process's voluntary context switches: each sleep in `ppoll` adds one, so a rise of N
/// proves at least N waits for a beat, whatever the file system lets the sidecar show.
fn sleeps(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the sidecar `pid` has gone round its loop `n` more times.
#[track_caller]
fn wait_beats(pid: i32, n: u64) {
    let start = sleeps(pid);
    wait_until(
        &format!("sidecar {pid} to wait for {n} more beats"),
        WAIT,
        || (sleeps(pid) >= start + n).then_some(()),
        || format!("{} sleeps, alive: {}", sleeps(pid), alive(pid)),
    );
}

/// The arguments that send a sidecar's diagnostics to `log`.
fn logged(log: &Path) -> [&OsStr; 2] {
    [OsStr::new("--log"), log.as_os_str()]
}

/// Removes `dir` and everything in it while a sidecar may be creating temp files there.
#[track_caller]
fn remove_dir_racing(dir: &Path) {
    wait_until(
        &format!("{} to be removed", dir.display()),
        WAIT,
        || std::fs::remove_dir_all(dir).ok().filter(|_| !dir.exists()),
        || format!("{:?}", names(dir)),
    );
}

fn read_log(log: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned()
}

#[track_caller]
fn wait_log(log: &Path, needle: &str) {
    wait_until(
        &format!("{} to say {needle:?}", log.display()),
        WAIT,
        || read_log(log).contains(needle).then_some(()),
        || read_log(log),
    );
}

/// The first executable `name` on PATH.
fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

/// POSIX single quotes, written here independently of the launcher's `pane::quote`: the text
/// split at each `'`, the pieces quoted and joined by an escaped quote (`'\''`).
fn sh_quote(bytes: &[u8]) -> Vec<u8> {
    let pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\'').collect();
    [&b"'"[..], &pieces.join(&b"'\\''"[..]), &b"'"[..]].concat()
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn is_root() -> bool {
    euid() == 0
}

/// Undoes what a root-only fault test did to the machine, before the sandbox is removed:
/// kills the sidecars that hold the directory, clears `chattr +i`, unmounts.
#[derive(Default)]
struct Undo {
    pids: Vec<i32>,
    immutable: Vec<PathBuf>,
    mounts: Vec<PathBuf>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for dir in &self.immutable {
            let _ = Command::new("chattr").arg("-i").arg(dir).status();
        }
        for mount in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
    }
}

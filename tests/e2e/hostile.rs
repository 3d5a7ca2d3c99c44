/*!
Hostile input, races and faults, end to end: the release binaries against a real tmux, real
shells and real file systems, fed what an attacker, a confused operator or a bad day would.

Every test checks the same three things besides its own: nothing panics (exit 101 or
"panicked" on stderr), an error is one line that names what it refused, and no sidecar is left
behind once its target is gone. Faults that need root (an immutable directory, a full tmpfs)
skip loudly without it. The unit-level counterparts are the `proptests` modules.
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

// ---------------------------------------------------------------------------------------------
// Non-UTF-8 arguments and variables

// Values that must be text are refused with exit 2 and one line: nothing starts, nothing is
// written.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn non_utf8_text_values_are_refused() {
    e2e!();
    let sb = Sandbox::new();
    let work = sb.path("work");
    let launcher = |agent: &OsStr| {
        let mut cmd = sb.launcher(agent);
        cmd.current_dir(&work);
        cmd
    };
    let err = refused(&mut launcher(&os(b"ag\xffent")), 2, "mosaic-launcher");
    assert!(
        err.contains("invalid agent name") && err.contains("not UTF-8 text"),
        "{err}"
    );
    refused(&mut launcher(&os(b"\xc3\x28")), 2, "mosaic-launcher");
    for (var, value) in [
        ("MOSAIC_TMUX_SOCKET", &b"sock\xff"[..]),
        ("MOSAIC_HEARTBEAT_INTERVAL", b"1\xff"),
        ("MOSAIC_AGENT_RUNTIME", b"pi\xfe"),
    ] {
        let err = refused(
            launcher(OsStr::new("ok")).env(var, os(value)),
            2,
            "mosaic-launcher",
        );
        // The message names the variable, not just "invalid UTF-8 somewhere".
        assert!(
            err.contains("not UTF-8 text") && err.contains(var),
            "{var}: {err}"
        );
    }
    let target = sb.spawn_target().to_string();
    let file = sb.hb_file("u");
    let file = file.as_os_str().as_bytes();
    let cases: [&[&[u8]]; 4] = [
        &[b"--pid", b"12\xff", b"--file", file],
        &[
            b"--pid",
            target.as_bytes(),
            b"--file",
            file,
            b"--agent",
            b"a\xffb",
        ],
        &[
            b"--pid",
            target.as_bytes(),
            b"--file",
            file,
            b"--interval",
            b"\xff",
        ],
        &[
            b"--pid",
            target.as_bytes(),
            b"--file",
            file,
            b"--interval=1\xfe",
        ],
    ];
    for args in cases {
        let args: Vec<OsString> = args.iter().map(|a| os(a)).collect();
        let err = refused(sb.hb().args(&args), 2, "mosaic-hb");
        assert!(err.contains("UTF-8"), "{args:?}: {err}");
    }
    assert_eq!(sb.session_count(), 0, "a refused launch started tmux");
    assert!(
        !sb.hb_dir().exists(),
        "a refused start wrote the heartbeat dir"
    );
    assert!(canaries(&sb.dir).is_empty());
}

// A non-UTF-8 command, workdir and runtime bin reach tmux byte for byte (the fake tmux records
// its argv), with `#` doubled in the workdir only (tmux expands formats in `-c`).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn non_utf8_values_reach_tmux_byte_for_byte() {
    e2e!();
    let sb = Sandbox::new();
    let fakes = fake_bin(&sb.dir, "");
    let workdir = sb.path("work").join(os(b"w\xfe #{pane_pid} \xe9"));
    let runtime_bin = sb.path("work").join(os(b"rt \xff'bin $(touch canary)"));
    std::fs::create_dir_all(&workdir).unwrap();
    std::fs::create_dir_all(&runtime_bin).unwrap();
    let command = b"printf '%s' caf\xe9 \xff\xfe; `x` $(y) \"z\" #{q}";
    let flag_command = b"exec \xc0\xaf --flag";
    for (via_flag, cmd_bytes) in [(false, &command[..]), (true, &flag_command[..])] {
        let mut cmd = sb.launcher("nu");
        cmd.env("PATH", path_with(&[&fakes]))
            .env("MOSAIC_AGENT_WORKDIR", &workdir)
            .env("MOSAIC_RUNTIME_BIN", &runtime_bin)
            .current_dir(sb.path("work"));
        if via_flag {
            cmd.arg("--command").arg(os(cmd_bytes));
        } else {
            cmd.env("MOSAIC_AGENT_COMMAND", os(cmd_bytes));
        }
        let out = succeeds(&mut cmd);
        assert!(out.contains("no heartbeat"), "{out}");
        let raw = std::fs::read(sb.path("tmux-args")).expect("fake tmux saw new-session");
        let got: Vec<&[u8]> = raw
            .strip_suffix(b"\n")
            .unwrap()
            .split(|&b| b == b'\n')
            .collect();
        let escaped_workdir =
            workdir
                .as_os_str()
                .as_bytes()
                .iter()
                .fold(Vec::new(), |mut v, &b| {
                    v.push(b);
                    if b == b'#' {
                        v.push(b'#');
                    }
                    v
                });
        let mut pane = b"export PATH=".to_vec();
        pane.extend(sh_quote(runtime_bin.as_os_str().as_bytes()));
        pane.extend_from_slice(b":\"$PATH\"; exec ");
        pane.extend_from_slice(cmd_bytes);
        let want: Vec<&[u8]> = vec![
            b"-L",
            sb.socket.as_bytes(),
            b"new-session",
            b"-d",
            b"-s",
            b"nu",
            b"-P",
            b"-F",
            b"#{pane_pid} #{pid}",
            b"-c",
            &escaped_workdir,
            b"-e",
            b"MOSAIC_AGENT_NAME=nu",
            b"/bin/sh",
            b"-c",
            &pane,
        ];
        // Then the same command sequence sets remain-on-exit and the session's marks.
        let got = &got[..want.len().min(got.len())];
        assert_eq!(
            got,
            want,
            "via flag: {via_flag}\ngot  {:?}\nwant {:?}",
            got.iter()
                .map(|a| String::from_utf8_lossy(a))
                .collect::<Vec<_>>(),
            want.iter()
                .map(|a| String::from_utf8_lossy(a))
                .collect::<Vec<_>>()
        );
    }
    assert!(canaries(&sb.dir).is_empty());
}

// Through a real tmux and a real pane shell: a non-UTF-8 runtime bin is first on the pane's
// PATH exactly, and a non-UTF-8 argument in the command arrives exactly.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn non_utf8_runtime_bin_and_command_reach_the_pane() {
    e2e!();
    let sb = Sandbox::new();
    let runtime_bin = sb
        .path("work")
        .join(os(b"rt \xff\"q\" 'x' $(touch canary) `touch canary`;"));
    std::fs::create_dir_all(&runtime_bin).unwrap();
    let arg = b"\xff\xfe caf\xe9 $(touch canary) '";
    let mut command = b"sh -c 'printf \"%s\" \"$PATH\" > path.out; printf \"%s\" \"$1\" > arg.out; exec sleep 600' sh ".to_vec();
    command.extend(sh_quote(arg));
    let mut cmd = sb.launcher("nx");
    cmd.env("MOSAIC_RUNTIME_BIN", &runtime_bin)
        .env("MOSAIC_AGENT_COMMAND", os(&command))
        .current_dir(sb.path("work"));
    let out = succeeds(&mut cmd);
    assert!(out.starts_with("started agent nx"), "{out}");
    let work = sb.path("work");
    let read = |name: &str| {
        wait_until(
            &format!("the pane to write {name}"),
            WAIT,
            || {
                std::fs::read(work.join(name))
                    .ok()
                    .filter(|b| !b.is_empty())
            },
            || format!("{:?}", names(&work)),
        )
    };
    let path = read("path.out");
    let mut want = runtime_bin.as_os_str().as_bytes().to_vec();
    want.push(b':');
    assert!(
        path.starts_with(&want),
        "pane PATH {:?}",
        String::from_utf8_lossy(&path)
    );
    assert_eq!(read("arg.out"), arg);
    let rec = wait_for_status(&sb.hb_file("nx"), Status::Ok, WAIT);
    assert_eq!(rec.pid, sb.pane_pid("nx"));
    assert!(canaries(&sb.dir).is_empty(), "{:?}", canaries(&sb.dir));
    end_agents(&sb);
}

// The sidecar takes non-UTF-8 --file and --log paths and uses them exactly.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn non_utf8_sidecar_paths() {
    e2e!();
    let sb = Sandbox::new();
    let dir = sb.path("work").join(os(b"hb \xff dir $(touch canary)"));
    let file = dir.join(os(b"caf\xe9.hb"));
    let log = sb.path("work").join(os(b"log \xfe.log"));
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "0.05", logged(&log));
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(strangers(&dir, b"caf\xe9"), Vec::<OsString>::new());
    sb.kill_target(target);
    wait_for_status(&file, Status::Exited, WAIT);
    wait_gone(hb);
    let log = read_log(&log);
    assert!(
        log.contains("wrote status=exited") && !log.contains("panicked"),
        "{log}"
    );
    assert!(canaries(&sb.dir).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Hostile names and paths

// Agent names that would leave the heartbeat dir, be rewritten by tmux, or smuggle shell code
// are refused by both binaries before anything starts.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn hostile_agent_names_are_refused() {
    e2e!();
    let sb = Sandbox::new();
    let work = sb.path("work");
    let long = "a".repeat(65);
    let huge = "b".repeat(100_000);
    let names: Vec<&str> = vec![
        "../x",
        "..",
        ".",
        "a/b",
        "/etc/passwd",
        "a=b",
        "=a",
        "a:b",
        "a.b",
        "a.hb",
        "$(touch canary)",
        "`touch canary`",
        "a;touch canary",
        "a|touch canary",
        "a&&touch canary",
        "a b",
        "a\nb",
        "a\tb",
        "a\rb",
        "#{pane_pid}",
        "a'b",
        "a\"b",
        "a\\b",
        "-",
        "-rf",
        "_a",
        "",
        "é",
        "\u{ff21}",
        "a\u{200b}",
        &long,
        &huge,
    ];
    let target = sb.spawn_target().to_string();
    for name in &names {
        let err = refused(sb.launcher(name).current_dir(&work), 2, "mosaic-launcher");
        // A leading `-x` is an option to clap; everything else reaches `validate::agent`.
        assert!(
            err.contains("invalid agent name") || (name.starts_with('-') && name.len() > 1),
            "{name:?}: {err}"
        );
        let mut hb = sb.hb();
        hb.current_dir(&work)
            .args(["--pid", &target, "--file"])
            .arg(sb.hb_file("x"))
            .arg(format!("--agent={name}"));
        refused(&mut hb, 2, "mosaic-hb");
    }
    // `--` leaves no agent at all.
    refused(sb.launcher("--").current_dir(&work), 2, "mosaic-launcher");
    assert_eq!(sb.session_count(), 0, "a refused name started tmux");
    assert!(
        !sb.hb_dir().exists(),
        "a refused name wrote the heartbeat dir"
    );
    assert!(canaries(&sb.dir).is_empty(), "{:?}", canaries(&sb.dir));
    assert!(sidecars_watching(target.parse().unwrap()).is_empty());
}

// The longest allowed name, and names at the edges of the alphabet, work end to end.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn edge_of_the_rule_names_work() {
    e2e!();
    let sb = Sandbox::new();
    let longest = format!("Z{}", "9-_".repeat(21));
    assert_eq!(longest.len(), 64);
    for name in [longest.as_str(), "0", "a-", "A_"] {
        let out = succeeds(&mut sb.launcher(name));
        assert!(out.starts_with(&format!("started agent {name} ")), "{out}");
        assert!(sb.has_session(name));
        let rec = wait_for_status(&sb.hb_file(name), Status::Ok, WAIT);
        assert_eq!(rec.agent.as_deref(), Some(name));
        assert_eq!(rec.pid, sb.pane_pid(name));
    }
    assert_eq!(sb.session_count(), 4);
    assert_eq!(
        names(&sb.hb_dir())
            .iter()
            .filter(|n| n.as_bytes().ends_with(b".hb"))
            .count(),
        4
    );
    end_agents(&sb);
}

// A workdir made of shell and tmux metacharacters, a newline and bad UTF-8 is the pane's
// directory exactly (per the kernel and per tmux), and nothing in it ran.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn hostile_workdir_reaches_the_pane_exactly() {
    e2e!();
    let sb = Sandbox::new();
    let workdir = sb.path("work").join(os(
        b"$(touch canary) `touch canary` ; touch canary\n'q' \"dq\" #{session_name} ##{pane_pid} \xff\xfe \\ & | > canary",
    ));
    std::fs::create_dir_all(&workdir).unwrap();
    let before = tree(&sb.dir);
    succeeds(
        sb.launcher("wd")
            .env("MOSAIC_AGENT_WORKDIR", &workdir)
            .current_dir(sb.path("work")),
    );
    let pid = sb.pane_pid("wd");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd.as_os_str().as_bytes(), workdir.as_os_str().as_bytes());
    assert_eq!(sb.pane_path("wd"), workdir.as_os_str().as_bytes());
    wait_for_status(&sb.hb_file("wd"), Status::Ok, WAIT);
    let new: Vec<PathBuf> = tree(&sb.dir)
        .difference(&before)
        .filter(|p| !p.starts_with(sb.hb_dir()))
        .cloned()
        .collect();
    assert!(
        new.is_empty(),
        "the launch wrote outside its heartbeat dir: {new:?}"
    );
    assert!(canaries(&sb.dir).is_empty(), "{:?}", canaries(&sb.dir));
    assert!(
        names(&workdir).is_empty(),
        "something ran in the workdir: {:?}",
        names(&workdir)
    );
    end_agents(&sb);
}

// A heartbeat dir full of metacharacters works, and everything the launch writes is inside it.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn hostile_heartbeat_dir_is_used_exactly_and_only() {
    e2e!();
    let sb = Sandbox::new();
    let hb_dir = sb.path("work").join(os(
        b"hb dir 'q' \"dq\" $(touch canary) `touch canary` ; \xff #{x}/new\nlevel",
    ));
    let before = tree(&sb.dir);
    let out = succeeds(
        sb.launcher("hd")
            .env("MOSAIC_HEARTBEAT_RUN_DIR", &hb_dir)
            .current_dir(sb.path("work")),
    );
    assert!(out.starts_with("started agent hd"), "{out}");
    let file = hb_dir.join("hd.hb");
    let rec = wait_for_status(&file, Status::Ok, WAIT);
    assert_eq!(rec.pid, sb.pane_pid("hd"));
    assert_eq!(sidecars_for_file(&file).len(), 1);
    assert_eq!(
        std::fs::metadata(&hb_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(strangers(&hb_dir, b"hd"), Vec::<OsString>::new());
    let parent = hb_dir.parent().unwrap();
    let outside: Vec<PathBuf> = tree(&sb.dir)
        .difference(&before)
        .filter(|p| !p.starts_with(&hb_dir) && *p != parent)
        .cloned()
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the heartbeat dir: {outside:?}"
    );
    assert!(canaries(&sb.dir).is_empty(), "{:?}", canaries(&sb.dir));
    end_agents(&sb);
}

// A symlink planted at the lock file's name is not followed: the sidecar refuses to start, and
// the file it points at is untouched.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn planted_lock_symlink_is_not_followed() {
    e2e!();
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.hb_dir()).unwrap();
    let victim = sb.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, sb.hb_dir().join(".lk.hb.lock")).unwrap();
    let target = sb.spawn_target();
    let file = sb.hb_file("lk");
    let out = run(sb
        .hb()
        .args(["--pid", &target.to_string(), "--file"])
        .arg(&file));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(1 | 2))
            && err.starts_with("mosaic-hb: cannot lock heartbeat file")
            && err.lines().count() == 1,
        "{err} ({})",
        out.status
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(sidecars_watching(target).is_empty());
    // Through the launcher: the session it made is removed again, nothing is left.
    let (_, err) = expect_exit(sb.launcher("lk").current_dir(sb.path("work")), 1);
    assert!(
        err.starts_with("mosaic-launcher: cannot start heartbeat sidecar"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!sb.has_session("lk"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    wait_no_sidecars("lk.hb", || sidecars_for_file(&file));
}

// A target that names itself like a zombie's /proc line (`x) Z 1 ...`) is still alive to the
// sidecar: the state is read after the kernel's last `)`, not the process's.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_target_named_like_a_zombie_is_alive() {
    e2e!();
    let sb = Sandbox::new();
    let fake = sb.path("work").join("x) Z 1 2 (");
    std::os::unix::fs::symlink(which("sleep"), &fake).unwrap();
    // argv[0] stays `sleep` for multi-call binaries; comm comes from the file name.
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new(&fake)
            .arg0("sleep")
            .arg("600")
            .spawn()
            .unwrap()
    };
    let target = child.id() as i32;
    sb.track(target);
    let comm = || std::fs::read_to_string(format!("/proc/{target}/comm")).unwrap_or_default();
    wait_until(
        "the target to carry its hostile name",
        WAIT,
        || comm().starts_with("x) Z 1 2 (").then_some(()),
        || format!("comm {:?}", comm()),
    );
    let file = sb.hb_file("zz");
    let hb = sb.start_sidecar(target, &file, "0.05", logged(&sb.path("zz.log")));
    wait_beats(hb, 5);
    let rec = read_record(&file).unwrap();
    assert_eq!(rec.status, Status::Ok, "{}", show_file(&file));
    assert!(rec.seq.unwrap() >= 2, "{}", show_file(&file));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(target),
        nix::sys::signal::Signal::SIGKILL,
    );
    let mut child = child;
    let _ = child.wait();
    wait_for_status(&file, Status::Exited, WAIT);
    wait_gone(hb);
}

// `XDG_RUNTIME_DIR` is checked level by level like the `/tmp` fallback (`su` without `-` keeps
// the previous user's): a world-writable one with another user's symlink planted at `mosaic`,
// ours with that symlink, and ours with another user's world-writable `mosaic/heartbeat`. Both
// binaries refuse each, and nothing is created through the link; a private one is used.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn xdg_runtime_dir_is_checked_level_by_level() {
    e2e!();
    if !is_root() {
        let why = format!("needs root to plant another user's files (uid {})", euid());
        return skip(test_name!(), why);
    }
    let sb = Sandbox::new();
    let elsewhere = sb.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let target = sb.spawn_target();
    let make = |name: &str, mode: u32| {
        let xdg = sb.path(name);
        std::fs::create_dir(&xdg).unwrap();
        std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(mode)).unwrap();
        xdg
    };
    let plant_link = |xdg: &Path| {
        let link = xdg.join("mosaic");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    };
    let open_link = make("xdg-open", 0o777);
    plant_link(&open_link);
    let ours_link = make("xdg-link", 0o700);
    plant_link(&ours_link);
    let foreign = make("xdg-foreign", 0o700);
    let heartbeat = foreign.join("mosaic/heartbeat");
    std::fs::create_dir_all(&heartbeat).unwrap();
    std::fs::set_permissions(
        foreign.join("mosaic"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::set_permissions(&heartbeat, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&heartbeat, Some(65534), Some(65534)).unwrap();
    let cases = [
        (
            &open_link,
            open_link.clone(),
            "it is writable by group or others (mode 777)",
        ),
        (
            &ours_link,
            ours_link.join("mosaic"),
            "it is not a real directory",
        ),
        (
            &foreign,
            heartbeat.clone(),
            "it is owned by uid 65534, not 0",
        ),
    ];
    for (xdg, refused_dir, reason) in cases {
        let file = xdg.join("mosaic/heartbeat/x.hb");
        let mut hb = sb.hb();
        hb.args(["--pid", &target.to_string(), "--file"])
            .arg(&file)
            .env("XDG_RUNTIME_DIR", xdg);
        let err = refused(&mut hb, 2, "mosaic-hb");
        let want = format!("refusing heartbeat dir {}: {reason}", refused_dir.display());
        assert!(err.contains(&want), "{want}\n{err}");
        let mut launcher = sb.launcher("x");
        launcher
            .env_remove("MOSAIC_HEARTBEAT_RUN_DIR")
            .env("XDG_RUNTIME_DIR", xdg);
        let err = refused(&mut launcher, 1, "mosaic-launcher");
        assert!(err.contains(&want), "{want}\n{err}");
        assert!(!sb.has_session("x"), "{}", xdg.display());
        assert_eq!(
            tree(&elsewhere),
            BTreeSet::new(),
            "{}: written through the planted link",
            xdg.display()
        );
    }
    assert!(!heartbeat.join("x.hb").exists());
    // A private one is used, and what we create there is private too.
    let private = make("xdg-private", 0o700);
    let mut launcher = sb.launcher("x");
    launcher
        .env_remove("MOSAIC_HEARTBEAT_RUN_DIR")
        .env("XDG_RUNTIME_DIR", &private);
    succeeds(&mut launcher);
    let file = private.join("mosaic/heartbeat/x.hb");
    wait_for_status(&file, Status::Ok, WAIT);
    for level in [private.join("mosaic"), private.join("mosaic/heartbeat")] {
        let mode = std::fs::metadata(&level).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", level.display());
    }
}

// The `/tmp` fallback dir, planted by another user before us: a symlink to elsewhere, or a real
// directory they own. Both binaries refuse it, and nothing is created through it. Run in a
// private mount namespace with its own `/tmp`, so the machine's real `/tmp/mosaic-UID` is never
// touched.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn planted_tmp_fallback_dir_is_refused_untouched() {
    e2e!();
    if let Err(why) = root_with_unshare("for a private /tmp") {
        return skip(test_name!(), why);
    }
    let sb = Sandbox::new();
    let script = r#"
        set -u
        # The checkout (our cwd, the launcher's default workdir) may live under /tmp too.
        cd /
        # The binaries may live under /tmp: bind them somewhere the new /tmp cannot hide.
        for at in /mnt /srv /media /opt; do [ -d "$at" ] && break; done
        mount --bind "$BIN_DIR" "$at" || exit 77
        HB="$at/mosaic-hb" LAUNCHER="$at/mosaic-launcher"
        mount -t tmpfs -o mode=1777 tmpfs /tmp || exit 77
        root="/tmp/mosaic-$(id -u)"
        mkdir /tmp/elsewhere
        for plant in symlink foreign writable; do
            case $plant in
                symlink) ln -s /tmp/elsewhere "$root" ;;
                foreign) rm "$root"; mkdir -m 0755 "$root"; chown 65534 "$root" ;;
                writable) rmdir "$root"; mkdir "$root"; chmod 0777 "$root" ;;
            esac
            "$HB" --pid $$ --file "$root/heartbeat/a.hb" 2>/tmp/err
            echo "$plant hb $? $(cat /tmp/err)"
            env -u XDG_RUNTIME_DIR -u MOSAIC_HEARTBEAT_RUN_DIR "$LAUNCHER" ag \
                --command 'sleep 1' --socket "$SOCKET" 2>/tmp/err
            echo "$plant launcher $? $(cat /tmp/err)"
            tmux -L "$SOCKET" kill-server 2>/dev/null
            echo "$plant created $(find -H "$root" -mindepth 1 | tr '\n' ' ')"
        done
    "#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("BIN_DIR", bin("mosaic-hb").parent().unwrap())
        .env("SOCKET", &sb.socket)
        .env("HOME", sb.path("home"))
        .env_remove("TMUX");
    let out = run(&mut cmd);
    if out.status.code() == Some(77) {
        let why = format!(
            "cannot mount here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return skip(test_name!(), why);
    }
    assert!(out.status.success(), "{}", explain(&cmd, &out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |plant: &str, what: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{plant} {what} ")))
            .unwrap_or_else(|| panic!("no {plant} {what} in {text}"))
            .to_string()
    };
    let reasons = [
        ("symlink", "it is not a real directory"),
        ("foreign", "it is owned by uid 65534"),
        ("writable", "it is writable by group or others (mode 777)"),
    ];
    for (plant, reason) in reasons {
        let hb = line(plant, "hb");
        assert!(hb.contains(reason), "{plant}: {hb}");
        assert!(
            hb.starts_with("2 mosaic-hb: refusing heartbeat dir /tmp/mosaic-"),
            "{plant}: {hb}"
        );
        let launcher = line(plant, "launcher");
        assert!(
            launcher.starts_with("1 mosaic-launcher: refusing heartbeat dir /tmp/mosaic-")
                && launcher.contains(reason),
            "{plant}: {launcher}"
        );
        assert!(!hb.contains("panicked") && !launcher.contains("panicked"));
        assert_eq!(
            line(plant, "created").trim(),
            "",
            "{plant}: a refused fallback dir was written into (the planted target now holds it)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Races

fn spawn_all(cmds: Vec<Command>) -> Vec<(Command, Output)> {
    let children: Vec<_> = cmds
        .into_iter()
        .map(|mut cmd| {
            let child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (cmd, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(cmd, child)| {
            let out = child.wait_with_output().unwrap();
            (cmd, out)
        })
        .collect()
}

// Twelve launchers for one agent: one session, one sidecar, all exit 0. Then its sidecar is
// killed and twelve more race to heal it: still one sidecar, exactly one restarted it.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn twelve_launchers_one_agent_then_twelve_healers() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("herd");
    let launch = |n: usize| {
        let mut cmd = sb.launcher("herd");
        if n % 2 == 1 {
            cmd.arg("--json");
        }
        cmd
    };
    let results = spawn_all((0..12).map(launch).collect());
    let mut created = 0;
    for (cmd, out) in &results {
        assert_no_panic(cmd, out);
        assert!(out.status.success(), "{}", explain(cmd, out));
        let text = String::from_utf8_lossy(&out.stdout);
        let started = if text.starts_with('{') {
            json(&text)["status"] == "started"
        } else {
            text.starts_with("started agent herd")
        };
        created += usize::from(started);
    }
    assert_eq!(created, 1, "exactly one launcher creates the session");
    assert_eq!(sb.session_count(), 1);
    let pane = sb.pane_pid("herd");
    let rec = wait_for_status(&file, Status::Ok, WAIT);
    let first = rec.hb_pid.unwrap();
    assert_eq!(sidecars_watching(pane), vec![first]);
    wait_until(
        "more beats from the same sidecar",
        WAIT,
        || read_record(&file).filter(|r| r.seq > rec.seq.map(|s| s + 3)),
        || show_file(&file),
    );
    assert_eq!(read_record(&file).unwrap().hb_pid, Some(first));
    assert_eq!(
        sidecars_watching(pane),
        vec![first],
        "a second writer appeared"
    );

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_gone(first);
    let results = spawn_all((0..12).map(launch).collect());
    let mut restarted = 0;
    for (cmd, out) in &results {
        assert_no_panic(cmd, out);
        assert!(out.status.success(), "{}", explain(cmd, out));
        let text = String::from_utf8_lossy(&out.stdout);
        let (running, healed) = if text.starts_with('{') {
            let report = json(&text);
            (
                report["status"] == "already running",
                report["sidecar"] == "started",
            )
        } else {
            (
                text.contains("already running"),
                text.contains("(sidecar restarted)"),
            )
        };
        assert!(running, "{text}");
        restarted += usize::from(healed);
    }
    assert_eq!(restarted, 1, "exactly one healer starts the new sidecar");
    let healed = wait_until(
        "the new sidecar's record",
        WAIT,
        || read_record(&file).filter(|r| r.hb_pid != Some(first)),
        || show_file(&file),
    );
    assert_eq!(healed.pid, pane);
    assert_eq!(sidecars_watching(pane), vec![healed.hb_pid.unwrap()]);
    assert_eq!(sb.session_count(), 1);
    end_agents(&sb);
}

// Sixteen agents, two launchers each, all at once: every session, one sidecar per pane, no lost
// or shared heartbeat file. Then the server goes, and so does every sidecar.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_fleet_launched_at_once() {
    e2e!();
    let sb = Sandbox::new();
    let agents: Vec<String> = (0..16).map(|i| format!("fleet-{i:02}")).collect();
    let cmds = agents
        .iter()
        .chain(agents.iter())
        .map(|a| sb.launcher(a))
        .collect();
    for (cmd, out) in spawn_all(cmds) {
        assert_no_panic(&cmd, &out);
        assert!(out.status.success(), "{}", explain(&cmd, &out));
    }
    assert_eq!(sb.session_count(), agents.len());
    let mut hb_pids = BTreeSet::new();
    let mut panes = Vec::new();
    for a in &agents {
        let rec = wait_for_status(&sb.hb_file(a), Status::Ok, WAIT);
        let pane = sb.pane_pid(a);
        assert_eq!((rec.pid, rec.agent.as_deref()), (pane, Some(a.as_str())));
        let watching = sidecars_watching(pane);
        assert_eq!(watching, vec![rec.hb_pid.unwrap()], "{a}");
        hb_pids.insert(watching[0]);
        panes.push(pane);
    }
    assert_eq!(hb_pids.len(), agents.len(), "two agents share a sidecar");
    let hb_files: Vec<OsString> = names(&sb.hb_dir())
        .into_iter()
        .filter(|n| n.as_bytes().ends_with(b".hb"))
        .collect();
    assert_eq!(hb_files.len(), agents.len(), "{hb_files:?}");

    assert!(sb.tmux(&["kill-server"]).status.success());
    for a in &agents {
        wait_for_status(&sb.hb_file(a), Status::Exited, WAIT);
    }
    for pane in panes {
        wait_no_sidecars(&format!("pane {pane}"), || sidecars_watching(pane));
    }
}

// Twelve sidecars started at once on one file: one wins, eleven are refused naming the
// holder, one process watches.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn twelve_sidecars_race_for_one_file() {
    e2e!();
    let sb = Sandbox::new();
    let target = sb.spawn_target();
    let file = sb.hb_file("one");
    let cmds = (0..12)
        .map(|_| {
            let mut cmd = sb.hb();
            cmd.args(["--pid", &target.to_string(), "--interval", "0.05", "--file"])
                .arg(&file);
            cmd
        })
        .collect();
    let results = spawn_all(cmds);
    let rec = wait_for_status(&file, Status::Ok, WAIT);
    let winner = rec.hb_pid.unwrap();
    sb.track(winner);
    let mut won = 0;
    for (cmd, out) in &results {
        assert_no_panic(cmd, out);
        match out.status.code() {
            Some(0) => won += 1,
            Some(1) => {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains("is already kept by") && err.lines().count() == 1,
                    "{err}"
                );
            }
            _ => panic!("{}", explain(cmd, out)),
        }
    }
    assert_eq!(won, 1, "one sidecar per file");
    assert_eq!(sidecars_watching(target), vec![winner]);
    sb.kill_target(target);
    wait_for_status(&file, Status::Exited, WAIT);
    wait_no_sidecars("the killed target", || sidecars_watching(target));
}

// ---------------------------------------------------------------------------------------------
// Faults

// A `ppoll` that fails for good ends the sidecar with one logged error; it never spins on it.
// The failure is real: RLIMIT_NOFILE lowered to 1 under the running sidecar makes its ppoll of
// two descriptors fail with EINVAL at the next wait.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_failing_ppoll_ends_the_sidecar_with_a_logged_error() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("p");
    let log = sb.path("p.log");
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "0.05", logged(&log));
    expect_success(
        Command::new("prlimit")
            .arg(format!("--pid={hb}"))
            .arg("--nofile=1:1"),
    );
    wait_log(
        &log,
        "cannot wait for events: invalid argument: giving up, the last record goes stale",
    );
    wait_gone(hb);
    let text = read_log(&log);
    assert_eq!(text.matches("cannot wait for events").count(), 1, "{text}");
}

// tmux missing, killed by a signal, or naming a pane pid that does not exist: exit 1 with one
// line, and no sidecar left behind.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn tmux_missing_dying_or_lying() {
    e2e!();
    let sb = Sandbox::new();
    let only_setsid = sb.path("only-setsid");
    std::fs::create_dir_all(&only_setsid).unwrap();
    std::os::unix::fs::symlink(which("setsid"), only_setsid.join("setsid")).unwrap();
    let err = refused(
        sb.launcher("t1").env("PATH", &only_setsid),
        1,
        "mosaic-launcher",
    );
    assert!(err.contains("tmux") && err.contains("not found"), "{err}");
    assert!(!sb.hb_file("t1").exists());

    let dying = sb.path("dying");
    std::fs::create_dir_all(&dying).unwrap();
    write_script(&dying.join("tmux"), "#!/bin/sh\nkill -KILL $$\n");
    let err = refused(
        sb.launcher("t2").env("PATH", path_with(&[&dying])),
        1,
        "mosaic-launcher",
    );
    assert!(
        err.contains("tmux new-session") && err.contains("signal"),
        "{err}"
    );

    // pid_max is at most 2^22: this pid never exists.
    let ghost = "2147483646";
    let lying = sb.path("lying");
    std::fs::create_dir_all(&lying).unwrap();
    write_script(
        &lying.join("tmux"),
        &format!("#!/bin/sh\ncase \"$3\" in new-session|list-panes) echo {ghost};; esac\nexit 0\n"),
    );
    let err = refused(
        sb.launcher("t3").env("PATH", path_with(&[&lying])),
        1,
        "mosaic-launcher",
    );
    assert!(
        err.contains("agent t3 exited at once") && err.contains(ghost),
        "{err}"
    );
    let rec = read_record(&sb.hb_file("t3")).expect("the sidecar leaves a true record");
    assert_eq!(
        (rec.status, rec.pid.to_string()),
        (Status::Exited, ghost.to_string())
    );
    for agent in ["t1", "t2", "t3"] {
        wait_no_sidecars(agent, || sidecars_for_file(&sb.hb_file(agent)));
    }
}

// Commands that end at once or very soon: the launcher either reports it (exit 1, one line)
// or starts a sidecar that sees the end; either way nothing is left running.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn targets_that_exit_before_or_while_the_launcher_looks() {
    e2e!();
    let sb = Sandbox::new();
    let commands = [
        "true",
        "exit 3",
        "kill -9 $$",
        "sleep 0.01",
        "sleep 0.05",
        "sleep 0.2",
    ];
    let mut reported = 0;
    for (i, command) in commands.iter().enumerate() {
        let agent = format!("quick{i}");
        let mut cmd = sb.launcher(&agent);
        cmd.env("MOSAIC_AGENT_COMMAND", command);
        let out = run(&mut cmd);
        assert_no_panic(&cmd, &out);
        let err = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(1) => {
                assert!(
                    err.starts_with(&format!("mosaic-launcher: agent {agent} exited at once"))
                        && err.lines().count() == 1,
                    "{command}: {err}"
                );
                reported += 1;
            }
            Some(0) => assert!(err.is_empty(), "{command}: {err}"),
            _ => panic!("{command}: {}", explain(&cmd, &out)),
        }
        let file = sb.hb_file(&agent);
        if out.status.code() == Some(1) {
            // A failed launch leaves no session; a started one keeps its dead pane.
            assert!(!sb.has_session(&agent), "{command}: session left");
        } else {
            wait_until(
                &format!("{command}: pane of {agent} dead"),
                WAIT,
                || {
                    let out = sb.tmux(&[
                        "list-panes",
                        "-t",
                        &format!("={agent}:"),
                        "-F",
                        "#{pane_dead}",
                    ]);
                    (String::from_utf8_lossy(&out.stdout).trim() == "1").then_some(())
                },
                || String::from_utf8_lossy(&sb.tmux(&["ls"]).stdout).into_owned(),
            );
        }
        wait_no_sidecars(command, || sidecars_for_file(&file));
        if file.exists() {
            wait_for_status(&file, Status::Exited, WAIT);
        }
    }
    // `exit 3` (`exec exit`: not found) is always reported; the others execute, then race
    // with the sidecar's attach.
    assert!(
        reported >= 1,
        "{reported} of {} caught exiting at once",
        commands.len()
    );
}

// The tmux server is SIGKILLed under four running agents: every sidecar sees its pane die,
// writes exited and leaves. A new launch then starts a new server.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn tmux_server_killed_mid_run() {
    e2e!();
    let sb = Sandbox::new();
    let agents = ["k0", "k1", "k2", "k3"];
    let mut watched = Vec::new();
    for a in agents {
        succeeds(&mut sb.launcher(a));
        let rec = wait_for_status(&sb.hb_file(a), Status::Ok, WAIT);
        watched.push((rec.pid, rec.hb_pid.unwrap()));
    }
    let out = sb.tmux(&["display-message", "-p", "#{pid}"]);
    let server: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // This sandbox's own tmux server.
    signal(server, libc::SIGKILL);
    for a in agents {
        let rec = wait_for_status(&sb.hb_file(a), Status::Exited, WAIT);
        assert!(watched.iter().any(|&(pane, _)| pane == rec.pid));
    }
    for (pane, hb) in watched {
        wait_gone(hb);
        wait_gone(pane);
        assert!(sidecars_watching(pane).is_empty());
    }
    let out = succeeds(&mut sb.launcher("k0"));
    assert!(out.starts_with("started agent k0"), "{out}");
    let rec = wait_until(
        "a fresh record for k0",
        WAIT,
        || read_record(&sb.hb_file("k0")).filter(|r| r.status == Status::Ok),
        || show_file(&sb.hb_file("k0")),
    );
    assert_eq!(rec.pid, sb.pane_pid("k0"));
    end_agents(&sb);
}

// The heartbeat dir is removed under a running sidecar. It keeps running and watching, logs
// the failure once, and never panics. It holds the old directory by descriptor, so a new
// directory at the same path stays empty: the old one is unreachable, by design (a path swapped
// under a sidecar is never followed). A new sidecar for the same file can start there, and
// both leave when the target ends.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn heartbeat_dir_removed_under_a_running_sidecar() {
    e2e!();
    let sb = Sandbox::new();
    let dir = sb.path("gone");
    let file = dir.join("g.hb");
    let log = sb.path("g.log");
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "0.05", logged(&log));
    remove_dir_racing(&dir);
    wait_log(&log, "cannot write heartbeat file");
    wait_beats(hb, 5);
    assert!(alive(hb), "the sidecar died with its directory");
    std::fs::create_dir(&dir).unwrap();
    wait_beats(hb, 5);
    assert!(alive(hb));
    assert_eq!(
        names(&dir),
        BTreeSet::new(),
        "the sidecar wrote into a directory made after it started"
    );
    let text = read_log(&log);
    assert_eq!(
        text.matches("cannot write heartbeat file").count(),
        1,
        "{text}"
    );
    assert!(text.contains("no such file or directory"), "{text}");

    let mut cmd = sb.hb();
    cmd.args(["--pid", &target.to_string(), "--interval", "0.05", "--file"])
        .arg(&file);
    succeeds(&mut cmd);
    let second = wait_for_status(&file, Status::Ok, WAIT).hb_pid.unwrap();
    sb.track(second);
    let mut both = sidecars_watching(target);
    both.sort();
    let mut want = vec![hb, second];
    want.sort();
    assert_eq!(both, want);
    sb.kill_target(target);
    wait_for_status(&file, Status::Exited, WAIT);
    wait_gone(hb);
    wait_gone(second);
    assert!(!read_log(&log).contains("panicked"));
}

// When the target ends while the directory is gone, the last record cannot be written; the
// log must not claim that it was.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn an_unwritten_final_record_is_not_reported_as_written() {
    e2e!();
    let sb = Sandbox::new();
    let dir = sb.path("gone");
    let file = dir.join("u.hb");
    let log = sb.path("u.log");
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "0.05", logged(&log));
    remove_dir_racing(&dir);
    wait_log(&log, "cannot write heartbeat file");
    sb.kill_target(target);
    wait_gone(hb);
    let text = read_log(&log);
    let last = text.lines().last().unwrap_or_default();
    assert!(last.contains("is not running"), "{text}");
    assert!(
        !last.contains("wrote status=exited"),
        "the log claims a record that was never written: {last}"
    );
}

/// How a test makes a directory unwritable even for root.
#[derive(Clone, Copy)]
enum ReadOnly {
    /// `chattr +i` on the directory itself (ext4, xfs, btrfs, tmpfs on Linux 6.0+).
    Immutable,
    /// A tmpfs mounted on the directory, remounted read-only.
    Remount,
}

impl ReadOnly {
    /// Picks what works on this machine, preparing `dir`; None when nothing does.
    fn prepare(dir: &Path, undo: &mut Undo) -> Option<ReadOnly> {
        std::fs::create_dir_all(dir).unwrap();
        if chattr("+i", dir) && chattr("-i", dir) {
            return Some(ReadOnly::Immutable);
        }
        // The mount must be in place before the sidecar opens the directory.
        mount_tmpfs(dir, "1m", undo).map(|()| ReadOnly::Remount)
    }

    fn set(self, dir: &Path, read_only: bool, undo: &mut Undo) {
        let ok = match self {
            ReadOnly::Immutable => {
                undo.immutable.push(dir.to_path_buf());
                chattr(if read_only { "+i" } else { "-i" }, dir)
            }
            ReadOnly::Remount => Command::new("mount")
                .args([
                    "-o",
                    if read_only {
                        "remount,ro"
                    } else {
                        "remount,rw"
                    },
                ])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success()),
        };
        assert!(ok, "cannot set read_only={read_only} on {}", dir.display());
    }
}

fn chattr(flag: &str, dir: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Mounts a tmpfs of `size` on `dir` (root only); None if this machine does not allow it.
fn mount_tmpfs(dir: &Path, size: &str, undo: &mut Undo) -> Option<()> {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "mount tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    undo.mounts.push(dir.to_path_buf());
    Some(())
}

// The heartbeat dir turns read-only under a running sidecar: the last good file stays, the
// error is logged once, the sidecar keeps watching, and it recovers when the dir is writable
// again. A launch into a read-only dir fails cleanly and removes the session it made.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn read_only_heartbeat_dir() {
    e2e!();
    if !is_root() {
        let why = format!("needs root for chattr +i or mount (uid {})", euid());
        return skip(test_name!(), why);
    }
    let sb = Sandbox::new();
    let mut undo = Undo::default();
    let dir = sb.path("ro");
    let file = dir.join("r.hb");
    let log = sb.path("r.log");
    let Some(how) = ReadOnly::prepare(&dir, &mut undo) else {
        return skip(test_name!(), "neither chattr +i nor mount works here");
    };
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "0.05", logged(&log));
    undo.pids.push(hb);
    how.set(&dir, true, &mut undo);
    wait_log(&log, "cannot write heartbeat file");
    let kept = std::fs::read(&file).unwrap();
    let last = parse(&kept).expect("the last good record is intact");
    assert_eq!(last.status, Status::Ok);
    wait_beats(hb, 5);
    assert!(alive(hb));
    assert_eq!(
        std::fs::read(&file).unwrap(),
        kept,
        "a read-only dir's file changed"
    );
    assert_eq!(strangers(&dir, b"r"), Vec::<OsString>::new());

    // A launch into the read-only dir: exit 1, one line, no session, no sidecar.
    let err = refused(
        sb.launcher("ro").env("MOSAIC_HEARTBEAT_RUN_DIR", &dir),
        1,
        "mosaic-launcher",
    );
    // Refused at its turn (a file beside the record) or, had that been made before, at its
    // sidecar's start.
    assert!(
        err.contains("cannot take the turn") || err.contains("cannot start heartbeat sidecar"),
        "{err}"
    );
    assert!(!sb.has_session("ro"));
    wait_no_sidecars("ro.hb", || sidecars_for_file(&dir.join("ro.hb")));

    how.set(&dir, false, &mut undo);
    let fresh = wait_until(
        "a new record after the dir is writable again",
        WAIT,
        || read_record(&file).filter(|r| r.ts > last.ts),
        || show_file(&file),
    );
    assert_eq!((fresh.status, fresh.hb_pid), (Status::Ok, Some(hb)));
    assert!(
        fresh.seq.unwrap() > last.seq.unwrap() + 1,
        "seq shows no gap"
    );
    wait_log(&log, "written again");
    let text = read_log(&log);
    assert_eq!(
        text.matches("cannot write heartbeat file").count(),
        1,
        "{text}"
    );
    sb.kill_target(target);
    wait_for_status(&file, Status::Exited, WAIT);
    wait_gone(hb);
}

// A full file system (a 16 KiB tmpfs, filled): the last good file stays, the error is logged
// once, the sidecar keeps watching, and a new record appears once space is freed.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn full_disk() {
    e2e!();
    if !is_root() {
        let why = format!("needs root to mount a small tmpfs (uid {})", euid());
        return skip(test_name!(), why);
    }
    let sb = Sandbox::new();
    let mut undo = Undo::default();
    let dir = sb.path("full");
    if mount_tmpfs(&dir, "16k", &mut undo).is_none() {
        return skip(test_name!(), "cannot mount a tmpfs here");
    }
    let file = dir.join("d.hb");
    let log = sb.path("d.log");
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "0.05", logged(&log));
    undo.pids.push(hb);
    let filler = dir.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let page = [0u8; 4096];
        let mut written = 0;
        while f.write_all(&page).is_ok() {
            written += 1;
            assert!(written < 64, "a 16k tmpfs took {written} pages");
        }
    }
    wait_log(&log, "cannot write heartbeat file");
    let text = read_log(&log);
    assert!(text.contains("no space left on device"), "{text}");
    let kept = std::fs::read(&file).unwrap();
    let last = parse(&kept).expect("the last good record is intact");
    assert_eq!(last.status, Status::Ok);
    wait_beats(hb, 5);
    assert!(alive(hb));
    assert_eq!(
        std::fs::read(&file).unwrap(),
        kept,
        "a full disk's file changed"
    );
    let left: Vec<OsString> = strangers(&dir, b"d")
        .into_iter()
        .filter(|n| n != "filler")
        .collect();
    assert_eq!(left, Vec::<OsString>::new(), "temp files left behind");

    std::fs::remove_file(&filler).unwrap();
    let fresh = wait_until(
        "a new record after space is freed",
        WAIT,
        || read_record(&file).filter(|r| r.ts > last.ts),
        || show_file(&file),
    );
    assert_eq!((fresh.status, fresh.hb_pid), (Status::Ok, Some(hb)));
    wait_log(&log, "written again");
    let text = read_log(&log);
    assert_eq!(
        text.matches("cannot write heartbeat file").count(),
        1,
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    sb.kill_target(target);
    wait_for_status(&file, Status::Exited, WAIT);
    wait_gone(hb);
}

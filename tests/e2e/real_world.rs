/*!
The launcher in the real world (issue 15): a user's tmux config, inherited descriptors,
signals at random moments, closed or full outputs, a directory where the file should be, the
first record, another heartbeat dir, control characters, a tiny open-file limit.
*/

use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::e2e;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

fn pane_of(sb: &Sandbox, agent: &str) -> Option<i32> {
    let out = sb.tmux(&[
        "display-message",
        "-p",
        "-t",
        &format!("={agent}:"),
        "#{pane_pid}",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn assert_no_panic(err: &str) {
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

// base-index 1 and pane-base-index 1 (a common ~/.tmux.conf): relaunch, healing a killed
// sidecar and restarting a dead pane all find the pane.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn base_index_one_changes_nothing() {
    e2e!();
    let sb = Sandbox::new();
    std::fs::write(
        sb.path("home/.tmux.conf"),
        "set -g base-index 1\nsetw -g pane-base-index 1\n",
    )
    .unwrap();
    expect_success(&mut sb.launcher("a1"));
    let out = sb.tmux(&[
        "display-message",
        "-p",
        "-t",
        "=a1:",
        "#{window_index}.#{pane_index}",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.1");
    let out = expect_success(&mut sb.launcher("a1"));
    assert!(out.contains("already running"), "{out}");
    let rec = wait_for_status(&sb.hb_file("a1"), Status::Ok, WAIT);
    signal(rec.hb_pid.unwrap(), libc::SIGKILL);
    wait_gone(rec.hb_pid.unwrap());
    let out = expect_success(&mut sb.launcher("a1"));
    assert!(out.contains("(sidecar restarted)"), "{out}");
    let pane = pane_of(&sb, "a1").unwrap();
    signal(pane, libc::SIGKILL);
    wait_for_status(&sb.hb_file("a1"), Status::Exited, WAIT);
    wait_until(
        "the pane to be dead",
        WAIT,
        || {
            let out = sb.tmux(&["display-message", "-p", "-t", "=a1:", "#{pane_dead}"]);
            (String::from_utf8_lossy(&out.stdout).trim() == "1").then_some(())
        },
        String::new,
    );
    let out = expect_success(&mut sb.launcher("a1"));
    assert!(out.starts_with("restarted agent a1"), "{out}");
}

// Only fds 0-2 reach tmux and the sidecar: a held flock is free once the launcher is gone,
// and a pipe on fd 3 reaches EOF.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn inherited_descriptors_stay_behind() {
    e2e!();
    let sb = Sandbox::new();
    let lock = sb.path("work/lock");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("exec 9>\"$1\"; flock 9; exec \"$2\" k2")
        .arg("sh")
        .arg(&lock)
        .arg(bin("mosaic-launcher"));
    for (k, v) in sb.launcher("x").get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    expect_success(&mut cmd);
    let free = Command::new("flock")
        .args(["-n"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap();
    assert!(
        free.success(),
        "the lock is still held after the launcher left"
    );
    // No process of the agent's holds the lock file.
    let server: i32 =
        String::from_utf8_lossy(&sb.tmux(&["display-message", "-p", "#{pid}"]).stdout)
            .trim()
            .parse()
            .unwrap();
    let hb = read_record(&sb.hb_file("k2")).unwrap().hb_pid.unwrap();
    for pid in [server, hb, pane_of(&sb, "k2").unwrap()] {
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|l| l.display().to_string())
            .collect();
        assert!(
            !fds.iter().any(|l| l.contains("work/lock")),
            "pid {pid}: {fds:?}"
        );
    }

    // `{ mosaic-launcher k3 3>&1 >/dev/null; } | cat` ends.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("{ \"$1\" k3 3>&1 >/dev/null; } | cat")
        .arg("sh")
        .arg(bin("mosaic-launcher"))
        .stdout(Stdio::null());
    for (k, v) in sb.launcher("x").get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.spawn().unwrap();
    let status = wait_until(
        "the pipeline to end",
        WAIT,
        || child.try_wait().unwrap(),
        String::new,
    );
    assert!(status.success());
    assert!(sb.has_session("k3"));
}

// SIGINT, SIGTERM and SIGHUP at random moments over 60 launches: each launch either completed
// (a live pane, a sidecar watching it, its record) or left nothing (no session, no sidecar);
// the exit code is 0, 1, or 128+N with a message.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn signals_at_random_moments_leave_all_or_nothing() {
    e2e!();
    let sb = Sandbox::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let signals = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    let (mut completed, mut undone) = (0, 0);
    for i in 0..60 {
        let agent = format!("u{i}");
        let sig = signals[(rng.next() % 3) as usize];
        let delay = Duration::from_micros(rng.next() % 30_000);
        let child = sb
            .launcher(&agent)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        // Our own unreaped child.
        signal(child.id() as i32, sig);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_no_panic(&err);
        let what = format!("{agent} {sig} after {delay:?}: {:?} {err}", out.status);
        match out.status.code() {
            Some(0) | Some(1) => {}
            Some(code) if code == 128 + sig => {
                assert!(err.contains("interrupted by SIG"), "{what}")
            }
            // Killed before the launcher caught anything: it had started nothing.
            None => {}
            Some(_) => panic!("{what}"),
        }
        let file = sb.hb_file(&agent);
        if sb.has_session(&agent) {
            let pane = pane_of(&sb, &agent).unwrap_or_else(|| panic!("{what}: no pane"));
            let rec = read_record(&file).unwrap_or_else(|| panic!("{what}: no record"));
            assert_eq!(rec.pid, pane, "{what}");
            assert_eq!(sidecars_watching(pane), vec![rec.hb_pid.unwrap()], "{what}");
            completed += 1;
        } else {
            wait_until(
                &format!("{what}: no sidecar"),
                WAIT,
                || sidecars_for(&file).is_empty().then_some(()),
                || format!("{:?}", sidecars_for(&file)),
            );
            undone += 1;
        }
    }
    eprintln!("{completed} completed, {undone} undone");
    assert!(
        undone > 0,
        "no launch was caught mid-way: {completed} completed"
    );
}

fn sidecars_for(file: &std::path::Path) -> Vec<i32> {
    sidecars_with("--file", |f| f == file.as_os_str().as_bytes())
}

/// A pipe whose read end is already closed: writing to it is EPIPE.
fn broken_pipe() -> Stdio {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    drop(read);
    Stdio::from(write)
}

fn dev_full() -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap(),
    )
}

// Output that cannot be written is an error with a documented code, never a panic (134).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn unwritable_output_is_an_exit_code_not_a_panic() {
    e2e!();
    let sb = Sandbox::new();
    let out = run(sb.launcher("b1").stdout(dev_full()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("mosaic-launcher: cannot write the report to stdout: ")
            && err.contains("agent b1 is running"),
        "{err}"
    );
    assert!(sb.has_session("b1"));
    let out = run(sb.launcher("b2").stdout(broken_pipe()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("broken pipe"), "{err}");
    let out = run(sb
        .launcher("b5")
        .env("MOSAIC_AGENT_WORKDIR", "/nonexistent")
        .stderr(dev_full()));
    assert_eq!(out.status.code(), Some(2));
    let out = run(sb
        .hb()
        .args(["--pid", "4000000", "--file"])
        .arg(sb.path("x.hb"))
        .stderr(dev_full()));
    assert_eq!(out.status.code(), Some(1));
}

// A directory at NAME.hb is refused before anything starts: the sidecar's start-up probe
// proves the name can be replaced.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_directory_at_the_heartbeat_name_is_refused() {
    e2e!();
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.hb_file("c1")).unwrap();
    let (out, err) = expect_exit(&mut sb.launcher("c1"), 1);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&sb.hb_file("c1").display().to_string()) && err.contains("is a directory"),
        "{err}"
    );
    assert!(!sb.has_session("c1"), "the session was left");
    assert!(sidecars_for(&sb.hb_file("c1")).is_empty());
    let target = sb.spawn_target();
    let dir = sb.path("work/d");
    std::fs::create_dir_all(&dir).unwrap();
    let (_, err) = expect_exit(
        sb.hb()
            .args(["--pid", &target.to_string(), "--file"])
            .arg(format!("{}/", dir.display())),
        2,
    );
    assert!(err.contains("is a directory"), "{err}");
}

// When the launcher says started, the record is there: 100 launches, each read at once.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn started_means_the_record_exists() {
    e2e!();
    let sb = Sandbox::new();
    for i in 0..100 {
        let agent = format!("r{i}");
        let out = expect_success(&mut sb.launcher(&agent));
        assert!(out.starts_with("started"), "{out}");
        let rec = read_record(&sb.hb_file(&agent))
            .unwrap_or_else(|| panic!("launch {i}: no record right after exit 0"));
        assert_eq!(Some(rec.pid), pane_of(&sb, &agent));
        let _ = sb.tmux(&["kill-session", "-t", &format!("={agent}:")]);
    }
}

// Same socket, another heartbeat dir: the relaunch reports the session's own file (one agent,
// one sidecar), and heals it there when its sidecar is gone.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn another_heartbeat_dir_finds_the_same_sidecar() {
    e2e!();
    let sb = Sandbox::new();
    expect_success(&mut sb.launcher("w1"));
    let a = sb.hb_file("w1");
    let rec = wait_for_status(&a, Status::Ok, WAIT);
    let other = sb.path("other-hb");
    let mut cmd = sb.launcher("w1");
    cmd.env("MOSAIC_HEARTBEAT_RUN_DIR", &other);
    let out = expect_success(&mut cmd);
    assert!(
        out.contains("already running")
            && out.contains(&format!("heartbeat {} (sidecar running)", a.display())),
        "{out}"
    );
    assert!(!other.join("w1.hb").exists());
    assert_eq!(sidecars_watching(rec.pid), vec![rec.hb_pid.unwrap()]);
    signal(rec.hb_pid.unwrap(), libc::SIGKILL);
    wait_gone(rec.hb_pid.unwrap());
    let out = expect_success(&mut cmd);
    assert!(
        out.contains(&format!("heartbeat {}", a.display())) && out.contains("(sidecar restarted)"),
        "{out}"
    );
    // The killed sidecar's last ok record is still there: wait for the healer's own.
    let healed = wait_until(
        "the healed sidecar's record",
        WAIT,
        || read_record(&a).filter(|r| r.status == Status::Ok && r.hb_pid != rec.hb_pid),
        || show_file(&a),
    );
    assert_eq!(sidecars_watching(rec.pid), vec![healed.hb_pid.unwrap()]);
    assert!(!other.join("w1.hb").exists());
}

// One line means one line: control characters in paths are escaped in the report and in
// errors; --json stays exact JSON.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn control_characters_are_escaped() {
    e2e!();
    let sb = Sandbox::new();
    let evil = sb.path("hb\nstarted agent evil");
    let mut cmd = sb.launcher("n1");
    cmd.env("MOSAIC_HEARTBEAT_RUN_DIR", &evil);
    let out = expect_success(&mut cmd);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(out.contains("hb\\nstarted agent evil/n1.hb"), "{out:?}");
    let out = expect_success(cmd.arg("--json"));
    assert_eq!(out.lines().count(), 1, "{out:?}");
    let file = evil.join("n1.hb");
    assert_eq!(json(&out)["heartbeat"], file.to_str().unwrap(), "{out:?}");
    let out = run(sb
        .launcher("n2")
        .env("MOSAIC_AGENT_WORKDIR", "/nonexistent\u{1b}[31mred"));
    assert_eq!(out.status.code(), Some(2));
    assert!(!out.stderr.contains(&0x1b), "{:?}", out.stderr);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent\\x1b[31mred"), "{err}");
    assert_eq!(err.lines().count(), 1);
}

// `ulimit -n 8`: refused before anything starts (tmux 3.3a's server spins with that few
// descriptors); a low soft limit under a higher hard one is raised.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_tiny_open_file_limit_is_an_error_not_a_hang() {
    e2e!();
    let sb = Sandbox::new();
    for (limit, code) in [
        ("ulimit -n 8", 1),
        ("ulimit -n 9", 1),
        ("ulimit -S -n 8", 0),
    ] {
        let agent = if code == 0 { "lim-ok" } else { "lim" };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{limit} && exec \"$1\" {agent}"))
            .arg("sh")
            .arg(bin("mosaic-launcher"));
        for (k, v) in sb.launcher("x").get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let (_, err) = expect_exit(&mut cmd, code);
        if code == 1 {
            assert!(
                err.contains("open-file limit (ulimit -n) is")
                    && err.contains("nothing was started"),
                "{limit}: {err}"
            );
            assert!(!sb.has_session(agent));
        } else {
            assert!(sb.has_session(agent), "{limit}");
        }
    }
}

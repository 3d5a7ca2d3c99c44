/*!
`mosaic-hb` end to end: death seen at once, identity, one writer, signals, safe files, daemon
hygiene and self-healing. Real processes, real signals, real files. The hand-over (`--pid -`)
is `handover.rs`.
*/

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;
use crate::{e2e, test_name};

mod handover;

// At a 30 s interval, the death of the target is written at once (pidfd), not at the next beat.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn death_is_seen_at_once() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("d");
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "30", ["--agent", "t"]);
    sb.kill_target(target);
    // Far less than the 30 s interval: only an event-driven sidecar can meet this deadline.
    let rec = wait_for_status(&file, Status::Exited, Duration::from_secs(3));
    assert_eq!(rec.pid, target);
    wait_gone(hb);
}

// Without a pidfd (kernels before 5.3), the next tick's kill(2) and /proc check still see it.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn death_is_seen_without_pidfd() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("np");
    let target = sb.spawn_target();
    let mut cmd = sb.hb();
    cmd.args([
        "--no-pidfd",
        "--pid",
        &target.to_string(),
        "--interval",
        "0.05",
        "--file",
    ])
    .arg(&file);
    expect_success(&mut cmd);
    let hb = wait_for_status(&file, Status::Ok, Duration::from_secs(5))
        .hb_pid
        .unwrap();
    sb.track(hb);
    sb.kill_target(target);
    wait_for_status(&file, Status::Exited, Duration::from_secs(5));
    wait_gone(hb);
}

// SIGTERM, SIGINT and SIGHUP each write status=stopped and end the sidecar promptly, even in
// the middle of a long interval.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn stop_signals_write_stopped() {
    e2e!();
    let sb = Sandbox::new();
    for (n, sig) in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP]
        .into_iter()
        .enumerate()
    {
        let file = sb.hb_file(&format!("s{n}"));
        let target = sb.spawn_target();
        let hb = sb.start_sidecar(target, &file, "30", ["--agent", "t"]);
        signal(hb, sig);
        let rec = wait_for_status(&file, Status::Stopped, Duration::from_secs(3));
        assert_eq!(rec.pid, target);
        wait_gone(hb);
        assert!(
            alive(target),
            "stopping the sidecar must not touch the target"
        );
    }
}

// kill -9 of the sidecar: nothing more is written (ts stops advancing) and the lock is free.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn killed_sidecar_goes_stale_and_frees_its_lock() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("k");
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "0.05", ["--agent", "t"]);
    signal(hb, libc::SIGKILL);
    wait_gone(hb);
    let last = std::fs::read(&file).unwrap();
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        assert_eq!(
            std::fs::read(&file).unwrap(),
            last,
            "a dead sidecar's file changed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        parse(&last).unwrap().status,
        Status::Ok,
        "kill -9 leaves the last ok record: stale"
    );
    // The lock died with its holder: a new sidecar takes over.
    let mut cmd = sb.hb();
    cmd.args(["--pid", &target.to_string(), "--interval", "0.05", "--file"])
        .arg(&file);
    expect_success(&mut cmd);
    let rec = wait_until(
        "the new sidecar's record",
        Duration::from_secs(5),
        || read_record(&file).filter(|r| r.hb_pid != Some(hb)),
        || show_file(&file),
    );
    sb.track(rec.hb_pid.unwrap());
    assert_eq!(rec.status, Status::Ok);
}

// A program whose main thread called `pthread_exit` while a worker runs shows its leader as a
// zombie (`Z`), yet runs: the sidecar attaches and beats ok, and says exited only once the
// whole group is gone. The program is C, built here with the system's `cc`.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_live_process_whose_main_thread_exited_is_not_a_zombie() {
    e2e!();
    let sb = Sandbox::new();
    let src = sb.path("main-exits.c");
    std::fs::write(&src, include_str!("../main-exits.c")).unwrap();
    let program = sb.path("main-exits");
    let mut cc = Command::new("cc");
    cc.args(["-pthread", "-o"]).arg(&program).arg(&src);
    expect_success(&mut cc);
    let mut child = Command::new(&program).spawn().unwrap();
    let pid = child.id() as i32;
    let stat = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    wait_until(
        "the leader to show as a zombie",
        Duration::from_secs(5),
        || {
            stat()
                .rsplit(')')
                .next()?
                .trim_start()
                .starts_with('Z')
                .then_some(())
        },
        stat,
    );
    let file = sb.hb_file("pt");
    for no_pidfd in [false, true] {
        let extra: &[&str] = if no_pidfd { &["--no-pidfd"] } else { &[] };
        let hb = sb.start_sidecar(pid, &file, "0.05", extra);
        let seq = read_record(&file).unwrap().seq.unwrap();
        let later = wait_until(
            "more ok beats",
            Duration::from_secs(5),
            || read_record(&file).filter(|r| r.seq.unwrap_or(0) > seq + 2),
            || show_file(&file),
        );
        assert_eq!(later.status, Status::Ok, "{}", show_file(&file));
        if !no_pidfd {
            signal(hb, libc::SIGTERM);
            wait_for_status(&file, Status::Stopped, Duration::from_secs(5));
            wait_gone(hb);
        } else {
            child.kill().unwrap();
            wait_for_status(&file, Status::Exited, Duration::from_secs(5));
            wait_gone(hb);
        }
    }
    child.wait().unwrap();
}

// Sidecars at a 0.01 s interval killed with `kill -9` at random moments leave temp files now
// and then (one killed between its temp file's creation and its rename). The next sidecar to
// hold the lock removes every temp file of its own name at start, real leftovers and planted
// ones alike, and nothing else.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn stale_temp_files_of_its_own_name_are_removed_at_start() {
    e2e!();
    let sb = Sandbox::new();
    let dir = sb.hb_dir();
    let file = sb.hb_file("k");
    let target = sb.spawn_target();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let temps = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".k.hb.") && n.ends_with(".tmp"))
            .collect();
        names.sort();
        names
    };
    let mut leftovers = 0;
    for _ in 0..60 {
        // start_sidecar waits for an ok record: it must be the new sidecar's.
        let _ = std::fs::remove_file(&file);
        let hb = sb.start_sidecar(target, &file, "0.01", ["--agent", "k"]);
        std::thread::sleep(Duration::from_micros(next() % 30_000));
        signal(hb, libc::SIGKILL);
        wait_gone(hb);
        leftovers = leftovers.max(temps().len());
    }
    eprintln!("seed {seed}: up to {leftovers} temp files left by killed sidecars");
    // What a killed sidecar leaves, for certain, and names that are not its temp files.
    let planted = [".k.hb.99999.tmp", ".k.hb.99999.0123456789abcdef.tmp"];
    let kept = [
        ".k.hb.lock",
        ".other.hb.99999.tmp",
        ".k.hb.notes.tmp",
        "k.hb.99999.tmp",
    ];
    for name in planted.iter().chain(&kept) {
        std::fs::write(dir.join(name), b"x").unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    std::fs::remove_file(&file).unwrap();
    let hb = sb.start_sidecar(target, &file, "0.05", ["--agent", "k"]);
    // Its own temp name may exist for an instant at each beat; nothing else of the kind.
    let own = format!(".k.hb.{hb}.");
    let stale: Vec<String> = temps()
        .into_iter()
        .filter(|n| !n.starts_with(&own) && !kept.contains(&n.as_str()))
        .collect();
    assert_eq!(stale, Vec::<String>::new(), "seed {seed}");
    for name in kept {
        assert!(dir.join(name).exists(), "{name} was removed (seed {seed})");
    }
}

// One writer per file: a second sidecar is refused with exit 1, naming the holder.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn second_sidecar_is_refused() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("one");
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "0.2", ["--agent", "t"]);
    let mut cmd = sb.hb();
    cmd.args(["--pid", &target.to_string(), "--file"])
        .arg(&file);
    let (_, err) = expect_exit(&mut cmd, 1);
    assert_eq!(
        err.trim_end(),
        format!(
            "mosaic-hb: heartbeat file {} is already kept by mosaic-hb pid {hb}",
            file.display()
        )
    );
    // The first one is still the writer: the next beats are its own.
    let seq = read_record(&file).unwrap().seq.unwrap();
    let later = wait_until(
        "three more beats",
        Duration::from_secs(5),
        || read_record(&file).filter(|r| r.seq.unwrap_or(0) > seq + 2),
        || show_file(&file),
    );
    assert_eq!(later.hb_pid, Some(hb));
}

// A target that is not alive at start: a record saying exited, a message, exit 1, no daemon.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn dead_target_at_start() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("dead");
    let target = sb.spawn_target();
    sb.kill_target(target);
    let mut cmd = sb.hb();
    cmd.args(["--pid", &target.to_string(), "--file"])
        .arg(&file);
    let (_, err) = expect_exit(&mut cmd, 1);
    assert_eq!(
        err.trim_end(),
        format!("mosaic-hb: pid {target} is not running")
    );
    let rec = read_record(&file).expect("a record is left behind");
    assert_eq!((rec.status, rec.pid), (Status::Exited, target));
    assert!(sidecars_watching(target).is_empty());
}

// The launcher hands over the pane's start time; a process with another one under that PID is
// a stranger: refused (exit 1) with an exited record, never watched as ok.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_stranger_under_the_pid_is_refused() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("stranger");
    let target = sb.spawn_target();
    let stat = std::fs::read_to_string(format!("/proc/{target}/stat")).unwrap();
    let started: u64 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let mut cmd = sb.hb();
    cmd.args([
        "--pid",
        &target.to_string(),
        "--started",
        &(started + 7).to_string(),
        "--file",
    ])
    .arg(&file);
    let (_, err) = expect_exit(&mut cmd, 1);
    assert_eq!(
        err.trim_end(),
        format!("mosaic-hb: pid {target} now names a different process (start time changed)")
    );
    let rec = read_record(&file).unwrap();
    assert_eq!(
        (rec.status, rec.started),
        (Status::Exited, Some(started + 7))
    );
    // The right start time is accepted.
    let mut cmd = sb.hb();
    cmd.args([
        "--pid",
        &target.to_string(),
        "--started",
        &started.to_string(),
        "--file",
    ])
    .arg(&file);
    expect_success(&mut cmd);
    let rec = wait_until(
        "an ok record",
        Duration::from_secs(5),
        || read_record(&file).filter(|r| r.status == Status::Ok),
        || show_file(&file),
    );
    sb.track(rec.hb_pid.unwrap());
    assert_eq!(rec.started, Some(started));
}

// Bad arguments: exit 2 with one line, before daemonizing, nothing left running or written.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn bad_arguments_are_refused() {
    e2e!();
    let sb = Sandbox::new();
    let target = sb.spawn_target().to_string();
    let file = sb.hb_file("bad");
    let file = file.to_str().unwrap();
    let cases: [(&[&str], &str); 14] = [
        (&["--pid", "0", "--file", file], "invalid pid \"0\""),
        (&["--pid", "-4", "--file", file], "invalid pid"),
        (&["--pid", "x", "--file", file], "invalid pid \"x\""),
        (
            &["--pid", &target, "--file", file, "--interval", "0"],
            "invalid interval",
        ),
        (
            &["--pid", &target, "--file", file, "--interval", "nan"],
            "invalid interval",
        ),
        (
            &["--pid", &target, "--file", file, "--interval", "0.001"],
            "invalid interval",
        ),
        (
            &["--pid", &target, "--file", file, "--agent", "a/b"],
            "invalid agent name",
        ),
        (
            &["--pid", &target, "--file", "/proc/1/nope/x.hb"],
            "cannot create heartbeat dir /proc/1/nope",
        ),
        (
            &["--pid", &target, "--file", "/proc/x.hb"],
            "cannot write heartbeat file /proc/x.hb",
        ),
        (&["--pid", &target], "required arguments were not provided"),
        (
            &["--pid", &target, "--file", file, "--bogus"],
            "unexpected argument",
        ),
        (
            &["--pid", &target, "--file", file, "--started", "soon"],
            "invalid start time",
        ),
        (
            &["--pid", &target, "--file", file, "--started", "-5"],
            "invalid start time \"-5\"",
        ),
        (
            &["--pid", &target, "--file", file, "--reap", "-1"],
            "--reap: invalid interval \"-1\"",
        ),
    ];
    for (args, message) in cases {
        let (out, err) = expect_exit(sb.hb().args(args), 2);
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.starts_with("mosaic-hb: ") && err.contains(message),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    assert!(
        !sb.hb_dir().exists(),
        "a refused start created the heartbeat dir"
    );
    assert!(sidecars_watching(target.parse().unwrap()).is_empty());
}

// Symlinks planted at the heartbeat path and at the temp name are replaced, never followed.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn planted_symlinks_are_not_followed() {
    e2e!();
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.hb_dir()).unwrap();
    let victim = sb.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let file = sb.hb_file("sym");
    std::os::unix::fs::symlink(&victim, &file).unwrap();
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "0.02", ["--agent", "t"]);
    // Now plant links at the daemon's own temp name and at a few random-looking ones.
    let planted: Vec<PathBuf> = std::iter::once(format!(".sym.hb.{hb}.tmp"))
        .chain((0..4).map(|i| format!(".sym.hb.{hb}.{i:016x}.tmp")))
        .map(|name| sb.hb_dir().join(name))
        .collect();
    for link in &planted {
        // The daemon's own temp name is taken for an instant at every beat: retry until the
        // link is planted, so the test never passes without the plant it is about.
        wait_until(
            &format!("planting {}", link.display()),
            Duration::from_secs(5),
            || match std::os::unix::fs::symlink(&victim, link) {
                Ok(()) => Some(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                Err(e) => panic!("cannot plant {}: {e}", link.display()),
            },
            || show_file(link),
        );
    }
    let seq = read_record(&file).unwrap().seq.unwrap();
    wait_until(
        "more beats after planting",
        Duration::from_secs(5),
        || read_record(&file).filter(|r| r.seq.unwrap() > seq + 5),
        || show_file(&file),
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(&file)
        .unwrap()
        .file_type()
        .is_file());
    for link in &planted {
        assert!(
            std::fs::symlink_metadata(link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{}",
            link.display()
        );
    }
}

// A reader that reads the file thousands of times while it is rewritten every 10 ms never sees
// a partial record.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn readers_never_see_a_partial_file() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("torn");
    let target = sb.spawn_target();
    sb.start_sidecar(target, &file, "0.01", ["--agent", "t"]);
    let first = read_record(&file).unwrap().seq.unwrap();
    let mut reads = 0;
    let mut seqs = std::collections::BTreeSet::new();
    while reads < 5000 || seqs.len() < 20 {
        let bytes = std::fs::read(&file).unwrap();
        let rec = parse(&bytes)
            .unwrap_or_else(|e| panic!("read {reads}: {e}: {:?}", String::from_utf8_lossy(&bytes)));
        assert!(
            bytes.ends_with(b"\n") && rec.started.is_some(),
            "truncated: {bytes:?}"
        );
        seqs.insert(rec.seq.unwrap());
        reads += 1;
        assert!(reads < 5_000_000, "the file stopped changing: {seqs:?}");
    }
    assert!(*seqs.iter().next_back().unwrap() > first);
}

// Fractional intervals down to 0.01 s beat at about that rate.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn fractional_intervals() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("frac");
    let target = sb.spawn_target();
    sb.start_sidecar(target, &file, "0.01", ["--agent", "t"]);
    let rec = read_record(&file).unwrap();
    assert_eq!(rec.interval, Some(0.01));
    wait_until(
        "seq to pass 30",
        Duration::from_secs(10),
        || read_record(&file).filter(|r| r.seq > Some(30)),
        || show_file(&file),
    );
}

// After daemonizing: cwd /, stdio on /dev/null, its own session without a terminal, one
// thread, no children, and no descriptors beyond its own.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn daemon_hygiene() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("hyg");
    let target = sb.spawn_target();
    // Leak a descriptor into the sidecar's start: a daemon must not keep it.
    let leak = std::fs::File::open("/etc/hostname")
        .or_else(|_| std::fs::File::open("/etc/passwd"))
        .unwrap();
    let mut cmd = sb.hb();
    cmd.args(["--pid", &target.to_string(), "--interval", "0.05", "--file"])
        .arg(&file);
    inherit(&mut cmd, &leak);
    expect_success(&mut cmd);
    let hb = wait_for_status(&file, Status::Ok, Duration::from_secs(5))
        .hb_pid
        .unwrap();
    sb.track(hb);
    let proc = |rel: &str| PathBuf::from(format!("/proc/{hb}/{rel}"));
    assert_eq!(std::fs::read_link(proc("cwd")).unwrap(), Path::new("/"));
    for fd in 0..3 {
        assert_eq!(
            std::fs::read_link(proc(&format!("fd/{fd}"))).unwrap(),
            Path::new("/dev/null"),
            "fd {fd}"
        );
    }
    let stat = std::fs::read_to_string(proc("stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // Fields after the comm: state ppid pgrp session tty_nr ...
    let (session, tty) = (fields[3].parse::<i32>().unwrap(), fields[4]);
    let ours = nix::unistd::getsid(None).unwrap().as_raw();
    assert_ne!(session, ours, "the daemon shares our session");
    assert_eq!(tty, "0", "the daemon has a controlling terminal");
    let status = std::fs::read_to_string(proc("status")).unwrap();
    assert!(status.lines().any(|l| l == "Threads:\t1"), "{status}");
    let children =
        std::fs::read_to_string(proc(&format!("task/{hb}/children"))).unwrap_or_default();
    assert!(children.trim().is_empty(), "children: {children}");
    // Its descriptors; a beat holds its temp file open for a moment: read again until a
    // reading falls between two beats (a temp file kept open would fail this).
    let fds = || {
        let mut others = Vec::new();
        for entry in std::fs::read_dir(proc("fd")).unwrap().flatten() {
            let n: i32 = entry.file_name().to_string_lossy().parse().unwrap();
            let to = std::fs::read_link(entry.path())
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if n > 2 {
                others.push(to);
            }
        }
        others
    };
    let mut others = wait_until(
        "a reading of the daemon's fds between two beats",
        Duration::from_secs(10),
        || Some(fds()).filter(|fds| !fds.iter().any(|f| f.ends_with(".tmp"))),
        || format!("{:?}", fds()),
    );
    others.sort();
    let dir = sb.hb_dir().display().to_string();
    let lock = sb.hb_dir().join(".hyg.hb.lock").display().to_string();
    let mut want = [
        dir.as_str(),
        lock.as_str(),
        "anon_inode:[pidfd]",
        "anon_inode:[signalfd]",
    ];
    want.sort();
    assert_eq!(others, want);
}

// Relaunching a running agent whose sidecar was killed starts a new one; relaunching one whose
// sidecar lives starts none.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn relaunch_heals_a_killed_sidecar() {
    e2e!();
    let sb = Sandbox::new();
    expect_success(&mut sb.launcher("heal"));
    let file = sb.hb_file("heal");
    let first = wait_for_status(&file, Status::Ok, Duration::from_secs(5));
    let hb = first.hb_pid.unwrap();
    let out = expect_success(&mut sb.launcher("heal"));
    assert!(
        out.contains("already running") && out.contains("(sidecar running)"),
        "{out}"
    );
    signal(hb, libc::SIGKILL);
    wait_gone(hb);
    let out = expect_success(&mut sb.launcher("heal"));
    assert!(
        out.contains("already running") && out.contains("(sidecar restarted)"),
        "{out}"
    );
    let healed = wait_until(
        "a new sidecar's record",
        Duration::from_secs(5),
        || read_record(&file).filter(|r| r.hb_pid != Some(hb) && r.status == Status::Ok),
        || show_file(&file),
    );
    assert_eq!(healed.pid, first.pid);
    assert_eq!(sidecars_watching(first.pid).len(), 1);
}

// The pane's death (the agent ends) reaches the file at once through the launcher's sidecar.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn agent_exit_is_reported() {
    e2e!();
    let sb = Sandbox::new();
    expect_success(sb.launcher("ends").env("MOSAIC_HEARTBEAT_INTERVAL", "30"));
    let file = sb.hb_file("ends");
    let rec = wait_for_status(&file, Status::Ok, Duration::from_secs(5));
    let out = sb.tmux(&["kill-session", "-t", "=ends"]);
    assert!(out.status.success());
    wait_for_status(&file, Status::Exited, Duration::from_secs(3));
    wait_gone(rec.hb_pid.unwrap());
}

// PID reuse, forced inside a private PID namespace: the watched pid is killed and handed to a
// new process (via ns_last_pid); the sidecar, in its kill(2)-only mode where a pidfd cannot
// help, must notice the changed start time and say exited, never ok for the impostor.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn pid_reuse_is_caught() {
    e2e!();
    if let Err(why) = root_with_unshare("for a private PID namespace") {
        return skip(test_name!(), why);
    }
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.hb_dir()).unwrap();
    let file = sb.hb_file("reuse");
    let log = sb.path("reuse.log");
    let script = r#"
        set -eu
        sleep 600 & T=$!
        "$HB" --foreground --no-pidfd --pid "$T" --file "$F" --interval 1 --log "$LOG" &
        H=$!
        seq_of() { sed -n 's/^seq=//p' "$F" 2>/dev/null || true; }
        until [ -n "$(seq_of)" ]; do sleep 0.01; done
        # Act right after a beat, far from the next one, so the next tick sees the impostor.
        s=$(seq_of); until [ "$(seq_of)" != "$s" ]; do sleep 0.002; done
        kill -9 "$T"; wait "$T" 2>/dev/null || true
        echo $((T - 1)) > /proc/sys/kernel/ns_last_pid
        sleep 600 & N=$!
        echo "target=$T impostor=$N"
        # Bounded: a sidecar fooled by the impostor would beat ok forever.
        i=0; while [ $i -lt 500 ] && grep -q '^status=ok' "$F"; do sleep 0.01; i=$((i + 1)); done
        kill "$H" "$N" 2>/dev/null || true
        wait "$H" || true
    "#;
    let out = run(Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", script])
        .env("HB", bin("mosaic-hb"))
        .env("F", &file)
        .env("LOG", &log));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (t, n) = stdout
        .trim()
        .strip_prefix("target=")
        .and_then(|s| s.split_once(" impostor="))
        .unwrap_or_else(|| panic!("unexpected output {stdout:?}"));
    assert_eq!(t, n, "the namespace did not hand the pid out again");
    let rec = read_record(&file).unwrap();
    assert_eq!(rec.status, Status::Exited, "{}", show_file(&file));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("now names a different process"), "{log}");
}

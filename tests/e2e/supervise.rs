/*!
Supervision end to end: restart policies, backoff, give-up, stops and the fleet-wide guard.

The sidecar-level tests here replace the respawn helper (`mosaic-fleet respawn`) with a script
(`--respawn-bin`) that says how the "pane" died and, on `go`, starts the next run of a scripted
agent itself: they test the sidecar's restart driver with real processes, real signals and
real files, and no tmux.
*/

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::e2e;
use crate::support::*;

/// The scripted respawn helper. It logs each call to `$FAKE_DIR/calls`, answers
/// `dead $FAKE_DEATH` (default `status 1`), and on `go` starts `$FAKE_RUN` in a session of its
/// own, logs `go TIME PID` and answers `started PID TICKS`; on EOF it logs `cancelled`.
const HELPER: &str = r#"#!/bin/sh
echo "respawn $*" >> "$FAKE_DIR/calls"
echo "dead ${FAKE_DEATH:-status 1}"
if ! read line; then echo cancelled >> "$FAKE_DIR/calls"; exit 0; fi
[ "$line" = go ] || exit 0
setsid sh -c "$FAKE_RUN" </dev/null >/dev/null 2>&1 &
pid=$!
echo "go $(date +%s.%N) $pid" >> "$FAKE_DIR/calls"
ticks=$(cut -d' ' -f22 /proc/$pid/stat 2>/dev/null)
echo "started $pid${ticks:+ $ticks}"
"#;

struct Scripted {
    dir: PathBuf,
    helper: PathBuf,
}

impl Scripted {
    fn new(sb: &Sandbox) -> Scripted {
        let dir = sb.path("fake");
        std::fs::create_dir_all(&dir).unwrap();
        let helper = dir.join("respawn");
        write_script(&helper, HELPER);
        std::fs::write(dir.join("calls"), b"").unwrap();
        Scripted { dir, helper }
    }

    /// `mosaic-hb` supervising `target` as agent `agent` with the scripted helper; `run` is
    /// what each restart runs; `extra` adds flags.
    fn sidecar(
        &self,
        sb: &Sandbox,
        target: i32,
        agent: &str,
        run: &str,
        extra: &[&str],
    ) -> Command {
        let mut cmd = sb.hb();
        cmd.args(["--pid", &target.to_string(), "--interval", "0.2", "--file"])
            .arg(sb.hb_file(agent))
            .args(["--agent", agent, "--socket", "unused", "--respawn-bin"])
            .arg(&self.helper)
            .args(extra)
            .env("FAKE_DIR", &self.dir)
            .env("FAKE_RUN", run);
        cmd
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.join("calls")).unwrap_or_default()
    }

    /// The `go` lines: (seconds since the epoch, pid of the new run).
    fn goes(&self) -> Vec<(f64, i32)> {
        self.calls()
            .lines()
            .filter_map(|line| {
                let mut words = line.strip_prefix("go ")?.split(' ');
                Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
            })
            .collect()
    }

    /// Registers every run the helper started, so the sandbox kills what is left of them.
    fn track_runs(&self, sb: &Sandbox) {
        for (_, pid) in self.goes() {
            sb.track(pid);
        }
    }
}

/// A target that dies with `code` after `secs`, in a session of its own like a pane.
fn dying_target(sb: &Sandbox, secs: &str, code: u8) -> i32 {
    let child = Command::new("setsid")
        .args(["sh", "-c", &format!("sleep {secs}; exit {code}")])
        .stdin(Stdio::null())
        .spawn()
        .expect("setsid runs");
    let pid = child.id() as i32;
    // Reaped by nobody but init once it exits: the sidecar must see the death by its pidfd.
    std::mem::forget(child);
    sb.track(pid);
    pid
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// An agent that dies at once, every time: restarted after 0.1, 0.2, 0.4 s, then given up at
// the 4th death (burst 4); the record says failed, restarts=3, and the last exit status.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_crash_loop_backs_off_then_gives_up() {
    e2e!();
    let sb = Sandbox::new();
    let fake = Scripted::new(&sb);
    let target = dying_target(&sb, "0.3", 1);
    let mut cmd = fake.sidecar(
        &sb,
        target,
        "loop",
        "exit 1",
        &[
            "--restart",
            "on-failure",
            "--restart-delay",
            "0.1",
            "--restart-burst",
            "4",
            "--restart-guard",
            "0",
        ],
    );
    expect_success(&mut cmd);
    let file = sb.hb_file("loop");
    let rec = wait_for_status(&file, Status::Failed, Duration::from_secs(20));
    fake.track_runs(&sb);
    assert_eq!(rec.lifecycle.restarts, Some(3), "{}", show_file(&file));
    assert_eq!(rec.lifecycle.exit_status, Some(1));
    assert_eq!(rec.lifecycle.restart_at, None);
    let goes = fake.goes();
    assert_eq!(goes.len(), 3, "{}", fake.calls());
    // Each restart waited at least its delay after the previous run's start (which died at
    // once): 0.2 s, then 0.4 s.
    for (pair, delay) in goes.windows(2).zip([0.2, 0.4]) {
        assert!(
            pair[1].0 - pair[0].0 >= delay,
            "restarts closer than {delay}s: {}",
            fake.calls()
        );
    }
    // The give-up closes the last helper's stdin: it leaves without restarting.
    wait_until(
        "the last helper to be cancelled",
        Duration::from_secs(5),
        || fake.calls().trim_end().ends_with("cancelled").then_some(()),
        || fake.calls(),
    );
    assert_eq!(fake.goes().len(), 3, "{}", fake.calls());
    wait_gone(rec.hb_pid.unwrap() as i32);
}

// Exit 0 under on-failure: not restarted; the record says exited with exit_status=0.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn exit_0_is_not_restarted_under_on_failure() {
    e2e!();
    let sb = Sandbox::new();
    let fake = Scripted::new(&sb);
    let target = dying_target(&sb, "0.3", 0);
    let mut cmd = fake.sidecar(&sb, target, "clean", "exit 1", &["--restart", "on-failure"]);
    cmd.env("FAKE_DEATH", "status 0");
    expect_success(&mut cmd);
    let file = sb.hb_file("clean");
    let rec = wait_for_status(&file, Status::Exited, Duration::from_secs(10));
    assert_eq!(
        (rec.lifecycle.restarts, rec.lifecycle.exit_status),
        (Some(0), Some(0))
    );
    wait_gone(rec.hb_pid.unwrap() as i32);
    assert!(fake.goes().is_empty(), "{}", fake.calls());
    assert!(fake.calls().contains("cancelled"), "{}", fake.calls());
}

// A stop signal while a restart is pending cancels it: status=stopped, no restart, ever.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_stop_while_restarting_cancels_the_restart() {
    e2e!();
    let sb = Sandbox::new();
    let fake = Scripted::new(&sb);
    let target = dying_target(&sb, "0.3", 3);
    let mut cmd = fake.sidecar(
        &sb,
        target,
        "halt",
        "sleep 600",
        &["--restart", "always", "--restart-delay", "3"],
    );
    cmd.env("FAKE_DEATH", "status 3");
    expect_success(&mut cmd);
    let file = sb.hb_file("halt");
    // Dead at once, then (the helper's answer) due at restart_at.
    let rec = wait_until(
        "a restart to be due",
        Duration::from_secs(10),
        || read_record(&file).filter(|r| r.lifecycle.restart_at.is_some()),
        || show_file(&file),
    );
    assert_eq!(rec.status, Status::Restarting);
    assert_eq!(rec.lifecycle.exit_status, Some(3));
    let hb = rec.hb_pid.unwrap() as i32;
    signal(hb, libc::SIGTERM);
    let stopped = wait_for_status(&file, Status::Stopped, Duration::from_secs(5));
    assert_eq!(
        stopped.lifecycle.restart_at, None,
        "nothing is due any more"
    );
    wait_gone(hb);
    // Past the restart's due time: nothing was restarted.
    wait_until(
        "the helper to see its stdin closed",
        Duration::from_secs(5),
        || fake.calls().contains("cancelled").then_some(()),
        || fake.calls(),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(fake.goes().is_empty(), "{}", fake.calls());
    assert_eq!(read_record(&file).unwrap().status, Status::Stopped);
}

// A run longer than the stability period resets the backoff: every crash after a stable run
// restarts after the floor delay, where crashes in a row would double it.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_crash_after_a_stable_run_restarts_after_the_floor() {
    e2e!();
    let sb = Sandbox::new();
    let fake = Scripted::new(&sb);
    let target = dying_target(&sb, "0.8", 1);
    let mut cmd = fake.sidecar(
        &sb,
        target,
        "steady",
        "sleep 0.8; exit 1",
        &[
            "--restart",
            "on-failure",
            "--restart-delay",
            "0.5",
            "--restart-stable",
            "0.6",
            "--restart-guard",
            "0",
        ],
    );
    expect_success(&mut cmd);
    let file = sb.hb_file("steady");
    // Each pending restart's record says when it is due; collect three of them.
    let mut delays: Vec<f64> = Vec::new();
    let mut seen = None;
    wait_until(
        "three restarts pending in turn",
        Duration::from_secs(20),
        || {
            if let Some(rec) = read_record(&file) {
                if let (Status::Restarting, Some(at)) = (rec.status, rec.lifecycle.restart_at) {
                    if seen != rec.lifecycle.restarts {
                        seen = rec.lifecycle.restarts;
                        let ms = at.signed_duration_since(rec.ts).num_milliseconds();
                        delays.push(ms as f64 / 1000.0);
                    }
                }
            }
            (delays.len() >= 3).then_some(())
        },
        || show_file(&file),
    );
    fake.track_runs(&sb);
    for delay in &delays {
        // restart_at and ts are taken a moment apart in one process: the delay itself.
        assert!((0.4..0.6).contains(delay), "not the floor: {delays:?}");
    }
    signal(
        read_record(&file).unwrap().hb_pid.unwrap() as i32,
        libc::SIGTERM,
    );
}

// Twenty agents that die together are restarted one per guard period, not all at once.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn twenty_agents_dying_together_are_restarted_one_per_guard_period() {
    e2e!();
    let sb = Sandbox::new();
    let fake = Scripted::new(&sb);
    const N: usize = 20;
    const GUARD: f64 = 0.25;
    let targets: Vec<i32> = (0..N).map(|_| sb.spawn_target()).collect();
    for (i, &target) in targets.iter().enumerate() {
        let agent = format!("a{i}");
        let mut cmd = fake.sidecar(
            &sb,
            target,
            &agent,
            "sleep 600",
            &[
                "--restart",
                "always",
                "--restart-delay",
                "0.01",
                "--restart-guard",
                &GUARD.to_string(),
            ],
        );
        expect_success(&mut cmd);
        wait_for_status(&sb.hb_file(&agent), Status::Ok, Duration::from_secs(10));
    }
    let t0 = now_secs();
    for &target in &targets {
        sb.kill_target(target);
    }
    wait_until(
        "every agent restarted once",
        Duration::from_secs(60),
        || {
            (0..N)
                .all(|i| {
                    read_record(&sb.hb_file(&format!("a{i}")))
                        .is_some_and(|r| r.status == Status::Ok && r.lifecycle.restarts == Some(1))
                })
                .then_some(())
        },
        || fake.calls(),
    );
    fake.track_runs(&sb);
    let mut goes: Vec<f64> = fake.goes().into_iter().map(|(t, _)| t).collect();
    assert_eq!(goes.len(), N, "{}", fake.calls());
    goes.sort_by(f64::total_cmp);
    // The k-th restart took the guard no earlier than (k-1) periods after the deaths.
    let spread = goes[N - 1] - t0;
    assert!(
        spread >= (N - 1) as f64 * GUARD,
        "{N} restarts within {spread:.2}s of the deaths, guard {GUARD}s: {}",
        fake.calls()
    );
    let guard = sb.hb_dir().join(".restart-guard");
    assert!(
        std::fs::symlink_metadata(&guard).is_ok_and(|m| m.is_file()),
        "{}",
        guard.display()
    );
    for i in 0..N {
        let hb = read_record(&sb.hb_file(&format!("a{i}")))
            .unwrap()
            .hb_pid
            .unwrap();
        sb.track(hb as i32);
    }
}

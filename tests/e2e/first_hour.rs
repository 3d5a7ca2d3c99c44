/*!
A newcomer's first hour (issue 23): what a user of systemd, pm2 or docker expects of the
fleet, each behaviour against a real tmux: logs of a dead pane are its output, a stop ends an
alert, an exit with status 0 is not a failure, an unknown agent is bad input for every verb,
`mosaic-fleet start` speaks as itself, and a silent agent is not busy.
*/

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::e2e;
use crate::support::*;

/// Starts `agent` running `command` (`sh -c` is the caller's) through the launcher.
fn start(sb: &Sandbox, agent: &str, command: &str) {
    expect_success(sb.launcher(agent).env("MOSAIC_AGENT_COMMAND", command));
}

/// `mosaic-hb status --check` over the sandbox's heartbeat dir: its exit code and report.
fn check(sb: &Sandbox) -> (i32, String) {
    let out = run(sb.hb().args(["status", "--check"]).arg(sb.hb_dir()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

/// Waits for the pane of `agent` to be dead (its agent ended, the pane kept).
fn wait_dead(sb: &Sandbox, agent: &str) {
    let target = format!("={agent}:");
    wait_until(
        "the pane to be dead",
        Duration::from_secs(10),
        || {
            let out = sb.tmux(&["display-message", "-p", "-t", &target, "#{pane_dead}"]);
            (String::from_utf8_lossy(&out.stdout).trim() == "1").then_some(())
        },
        || String::from_utf8_lossy(&sb.tmux(&["list-panes", "-a"]).stdout).into_owned(),
    );
}

// `logs` of a dead pane (no transcript) is what the agent printed: no blank screen rows, no tmux "Pane is
// dead" line, and `-n 3` is the last three lines of output.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn logs_of_a_dead_pane_are_its_output() {
    e2e!();
    let sb = Sandbox::new();
    // The pane itself (a transcript adds lines of ours: transcripts.rs).
    expect_success(
        sb.launcher("quitter")
            .env(
                "MOSAIC_AGENT_COMMAND",
                "sh -c 'sleep 0.3; for i in 1 2 3 4 5; do echo line-$i; done; exit 3'",
            )
            .arg("--no-log"),
    );
    wait_dead(&sb, "quitter");
    let all = expect_success(&mut fleet(&sb, &["logs", "quitter"]));
    assert_eq!(all, "line-1\nline-2\nline-3\nline-4\nline-5\n");
    let last = expect_success(&mut fleet(&sb, &["logs", "quitter", "-n", "3"]));
    assert_eq!(last, "line-3\nline-4\nline-5\n");
    let json = expect_success(&mut fleet(&sb, &["logs", "quitter", "-n", "1", "--json"]));
    assert_eq!(json, "{\"agent\":\"quitter\",\"lines\":[\"line-5\"]}\n");
}

// `stop` of an agent that exited (its pane dead, then its session gone) records it stopped, so
// `mosaic-hb status --check` stops failing, as `systemctl stop` ends a unit's alert.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn stop_of_an_exited_agent_ends_its_alert() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "crasher", "sh -c 'sleep 0.3; exit 1'");
    start(&sb, "gone", "sh -c 'sleep 0.3; exit 1'");
    for agent in ["crasher", "gone"] {
        wait_for_status(&sb.hb_file(agent), Status::Exited, Duration::from_secs(10));
    }
    let (code, report) = check(&sb);
    assert_eq!(code, 1, "{report}");
    // One with its dead pane still there, one whose session is gone already.
    sb.tmux(&["kill-session", "-t", "=gone"]);
    let out = expect_success(&mut fleet(&sb, &["stop", "crasher", "gone", "--json"]));
    for line in out.lines() {
        assert!(line.contains("\"recorded_stopped\":true"), "{out}");
    }
    for agent in ["crasher", "gone"] {
        let rec = read_record(&sb.hb_file(agent)).unwrap();
        assert_eq!(rec.status, Status::Stopped, "{agent}: {rec:?}");
    }
    let (code, report) = check(&sb);
    assert_eq!(code, 0, "{report}");
}

// An agent that ended by itself with exit status 0 is done, not failing (systemd: inactive,
// not failed); with status 3 it is failing. The record is written by a sidecar run alone, on a
// child this test reaps only afterwards, so the sidecar always reads how it ended.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn an_exit_with_status_0_does_not_fail_the_check() {
    e2e!();
    for (status, failing) in [(0, false), (3, true)] {
        let sb = Sandbox::new();
        let mut child = Command::new("sh")
            .args(["-c", &format!("read line; exit {status}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let file = sb.hb_file("job");
        sb.start_sidecar(child.id() as i32, &file, "0.1", ["--agent", "job"]);
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let rec = wait_for_status(&file, Status::Exited, Duration::from_secs(10));
        child.wait().unwrap();
        assert_eq!(rec.lifecycle.exit_status, Some(status), "{rec:?}");
        let (code, report) = check(&sb);
        assert_eq!(code, i32::from(failing), "exit {status}: {report}");
        let metrics = expect_success(
            sb.hb()
                .args(["status", "--format", "prometheus"])
                .arg(sb.hb_dir()),
        );
        let want = format!("agent=\"job\"}} {}", u8::from(failing));
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("mosaic_agent_failing{") && l.ends_with(&want)),
            "{metrics}"
        );
    }
}

// An agent the socket does not have is bad input for every verb alike: exit 2, one line that
// names it, and `stop` stops nobody, also not the known agent named beside it.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn an_unknown_agent_is_bad_input_for_every_verb() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "known", "sleep 600");
    for args in [
        &["stop", "nobody"][..],
        &["stop", "known", "nobody"],
        &["logs", "nobody"],
        &["logs", "nobody", "--follow"],
        &["attach", "nobody"],
    ] {
        let (_, err) = expect_exit(&mut fleet(&sb, args), 2);
        assert!(
            err.starts_with("mosaic-fleet: no agent nobody"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(sb.has_session("known"));
    let rec = read_record(&sb.hb_file("known")).unwrap();
    assert_eq!(rec.status, Status::Ok, "{rec:?}");
}

// `mosaic-fleet start` is the launcher under the fleet CLI's name: its errors say so.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn fleet_start_errors_name_mosaic_fleet() {
    e2e!();
    let sb = Sandbox::new();
    let mut cmd = fleet(&sb, &["start", "a1", "--command", "sleep 600", "--workdir"]);
    cmd.arg(sb.path("no-such-dir"));
    let (_, err) = expect_exit(&mut cmd, 2);
    assert!(err.starts_with("mosaic-fleet: "), "{err}");
    let mut cmd = fleet(&sb, &["start", "a1", "--command", "no-such-command-here"]);
    cmd.env("MOSAIC_AGENT_WORKDIR", sb.path("work"));
    let (_, err) = expect_exit(&mut cmd, 1);
    assert!(err.starts_with("mosaic-fleet: "), "{err}");
}

// An agent that has printed nothing (`sleep 1000`) is idle from its first record, not busy
// for the length of the idle threshold.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_silent_agent_is_idle_from_the_start() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "sleeper", "sleep 1000");
    let rec = read_record(&sb.hb_file("sleeper")).expect("a record once started");
    assert_eq!(rec.status, Status::Ok, "{rec:?}");
    assert_eq!(
        rec.activity,
        Some(mosaic_core::activity::Activity::Idle),
        "{rec:?}"
    );
}

// The fleet-wide guard spaces restarts of different agents, not one agent's own: with a
// guard of 60 s, an agent that crashes at once still backs off by its own delays and gives up
// at its 4th death, long before a second guard period.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn the_guard_does_not_hold_an_agents_own_restarts() {
    e2e!();
    let sb = Sandbox::new();
    let mut launch = sb.launcher("looper");
    launch
        .env("MOSAIC_AGENT_COMMAND", "sh -c 'sleep 0.2; exit 1'")
        .args([
            "--restart",
            "on-failure",
            "--restart-delay",
            "0.05",
            "--restart-burst",
            "4",
            "--restart-guard",
            "60",
        ]);
    expect_success(&mut launch);
    let rec = wait_for_status(
        &sb.hb_file("looper"),
        Status::Failed,
        Duration::from_secs(30),
    );
    assert_eq!(rec.lifecycle.restarts, Some(3), "{rec:?}");
    // The guard still holds another agent back: the file names the last restart's agent.
    let guard = std::fs::read_to_string(sb.hb_dir().join(".restart-guard")).unwrap();
    assert!(guard.trim_end().ends_with(" looper"), "{guard:?}");
}

// `--restart-window 0` would count no death but the last, and so never give up: refused.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_restart_window_of_0_is_refused() {
    e2e!();
    let sb = Sandbox::new();
    let mut launch = sb.launcher("w0");
    launch.args(["--restart", "on-failure", "--restart-window", "0"]);
    let (_, err) = expect_exit(&mut launch, 2);
    assert!(err.contains("restart window"), "{err}");
    assert!(!sb.has_session("w0"));
    let mut hb = sb.hb();
    hb.args(["--pid", "1", "--file"])
        .arg(sb.hb_file("w0"))
        .args(["--restart", "on-failure", "--restart-window", "0"]);
    let (_, err) = expect_exit(&mut hb, 2);
    assert!(err.contains("restart window"), "{err}");
}

// The README's first example on a machine without `mosaic`: the default command is named,
// with the way out, and nothing is left running.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn the_default_command_missing_says_what_ran_and_the_way_out() {
    e2e!();
    let sb = Sandbox::new();
    let mut launch = sb.launcher("builder-1");
    launch
        .env_remove("MOSAIC_AGENT_COMMAND")
        .env("MOSAIC_AGENT_RUNTIME", "claude");
    let (_, err) = expect_exit(&mut launch, 1);
    assert!(err.contains("status 127"), "{err}");
    assert!(err.contains("`mosaic yolo claude`"), "{err}");
    assert!(err.contains("--command"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!sb.has_session("builder-1"));
}

/// The pid of `agent`'s pane, once tmux has one.
fn pane_pid(sb: &Sandbox, agent: &str) -> i32 {
    sb.pane_pid(agent)
}

// `restart a b` restarts both, `restart --all` every agent on the socket, each as launched.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn restart_takes_several_agents_and_all() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "ra", "sleep 600");
    start(&sb, "rb", "sleep 600");
    let before = [pane_pid(&sb, "ra"), pane_pid(&sb, "rb")];
    let out = expect_success(&mut fleet(&sb, &["restart", "ra", "rb", "--grace", "1"]));
    assert_eq!(out.matches("started agent").count(), 2, "{out}");
    let middle = [pane_pid(&sb, "ra"), pane_pid(&sb, "rb")];
    assert!(before[0] != middle[0] && before[1] != middle[1], "{out}");
    let out = expect_success(&mut fleet(&sb, &["restart", "--all", "--grace", "1"]));
    assert_eq!(out.matches("started agent").count(), 2, "{out}");
    let after = [pane_pid(&sb, "ra"), pane_pid(&sb, "rb")];
    assert!(after[0] != middle[0] && after[1] != middle[1], "{out}");
    // One name that cannot be restarted restarts nobody.
    let (_, err) = expect_exit(&mut fleet(&sb, &["restart", "ra", "nobody"]), 2);
    assert!(err.contains("nobody"), "{err}");
    assert_eq!(pane_pid(&sb, "ra"), after[0]);
}

// `start NAME` of a known agent, without --command: as it was launched (its launch file).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn start_of_a_known_agent_uses_its_launch_file() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "known", "sleep 777");
    expect_success(&mut fleet(&sb, &["stop", "known", "--grace", "1"]));
    assert!(!sb.has_session("known"));
    let out = expect_success(&mut fleet(&sb, &["start", "known"]));
    assert!(out.starts_with("started agent known"), "{out}");
    let pid = pane_pid(&sb, "known");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\x00777\x00");
}

// After `prune`, `restart` says the agent's files are gone, as bad input (2), not that it was
// started with --no-heartbeat.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn restart_after_prune_says_what_happened() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "pruned", "sleep 600");
    expect_success(&mut fleet(&sb, &["stop", "pruned", "--grace", "1"]));
    expect_success(&mut fleet(&sb, &["prune"]));
    let (_, err) = expect_exit(&mut fleet(&sb, &["restart", "pruned"]), 2);
    assert!(err.contains("pruned, or never started here"), "{err}");
    assert!(!err.contains("--no-heartbeat"), "{err}");
}

/// `mosaic-fleet ls --json --all`'s object for `agent`.
fn ls_agent(sb: &Sandbox, agent: &str) -> serde_json::Value {
    let out = expect_success(&mut fleet(sb, &["ls", "--json", "--all"]));
    let all = json(&out);
    all["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == agent)
        .unwrap_or_else(|| panic!("no {agent}: {out}"))
        .clone()
}

// UPTIME is the current run's: a relaunched dead pane starts from 0, though its session is
// older; the run's exit stays in `ls` after the session is gone (from the record, as `mosaic-hb
// status` has it).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn ls_uptime_is_the_runs_and_exit_outlives_the_session() {
    e2e!();
    let sb = Sandbox::new();
    let flags = ["--restart", "on-failure", "--restart-burst", "1"];
    let mut launch = sb.launcher("runner");
    launch
        .env("MOSAIC_AGENT_COMMAND", "sh -c 'read x; exit 4'")
        .args(flags);
    expect_success(&mut launch);
    let created: i64 = String::from_utf8_lossy(
        &sb.tmux(&[
            "display-message",
            "-p",
            "-t",
            "=runner:",
            "#{session_created}",
        ])
        .stdout,
    )
    .trim()
    .parse()
    .unwrap();
    // Let the session age three seconds, then end the run: it exits 4, and its policy gives
    // up at once (burst 1), keeping the dead pane.
    wait_until(
        "the session to be 3 s old",
        Duration::from_secs(10),
        || (chrono::Utc::now().timestamp() >= created + 3).then_some(()),
        String::new,
    );
    sb.tmux(&["send-keys", "-t", "=runner:", "go", "Enter"]);
    let rec = wait_for_status(
        &sb.hb_file("runner"),
        Status::Failed,
        Duration::from_secs(10),
    );
    assert_eq!(rec.lifecycle.exit_status, Some(4), "{rec:?}");
    // A new run in the same session: its uptime counts from its own start.
    let mut again = sb.launcher("runner");
    again
        .env("MOSAIC_AGENT_COMMAND", "sh -c 'read x; exit 4'")
        .args(flags);
    expect_success(&mut again);
    let line = ls_agent(&sb, "runner");
    let uptime = line["uptime_s"].as_i64().expect("a live run has an uptime");
    let session_age = chrono::Utc::now().timestamp() - created;
    assert!(
        uptime + 2 <= session_age,
        "uptime {uptime}, session {session_age}: {line}"
    );
    // It fails again; once the session is gone the record still says how it ended.
    sb.tmux(&["send-keys", "-t", "=runner:", "go", "Enter"]);
    wait_for_status(
        &sb.hb_file("runner"),
        Status::Failed,
        Duration::from_secs(10),
    );
    sb.tmux(&["kill-session", "-t", "=runner"]);
    let line = ls_agent(&sb, "runner");
    assert_eq!(line["state"], "failed", "{line}");
    assert_eq!(line["exit_status"], 4, "{line}");
    let table = expect_success(&mut fleet(&sb, &["ls", "--all"]));
    let row = table.lines().find(|l| l.starts_with("runner")).unwrap();
    assert!(row.contains("status 4"), "{table}");
}

// A heartbeat dir shared by two sockets: each socket's `ls` shows the other's agent as an
// orphan-file, and names the socket it was launched on.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn an_orphan_file_names_its_socket() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "elsewhere", "sleep 600");
    let other = format!("{}-other", sb.socket);
    let mut ls = fleet(&sb, &["ls", "--all"]);
    ls.env("MOSAIC_TMUX_SOCKET", &other);
    let table = expect_success(&mut ls);
    let row = table.lines().find(|l| l.starts_with("elsewhere")).unwrap();
    assert!(row.contains("orphan-file"), "{table}");
    assert!(
        row.contains(&format!("launched on socket {}", sb.socket)),
        "{table}"
    );
}

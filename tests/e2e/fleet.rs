/*! `mosaic-fleet`: every verb against a real tmux, real process trees and real records. */

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::e2e;
use crate::support::*;

/// An agent that leaves children behind: one in the background, one under `nohup`, and a
/// subshell that ignores SIGTERM (it needs the SIGKILL after the grace) and SIGHUP (which the
/// terminal sends its process group when the pane's process ends).
const FAMILY: &str = "sh -c 'sleep 1000 & nohup sleep 1000 >/dev/null 2>&1 & \
    (trap \"\" TERM HUP; sleep 1000; :) & echo family-up; exec sleep 600'";

/// `mosaic-fleet start AGENT` with the launcher's sandbox environment.
fn start(sb: &Sandbox, agent: &str, command: &str, extra: &[&str]) -> String {
    let mut cmd = sb.launcher(agent);
    cmd.env("MOSAIC_AGENT_COMMAND", command);
    // The same environment, another program: `mosaic-fleet start AGENT`.
    let mut fleet_start = Command::new(bin("mosaic-fleet"));
    fleet_start.arg("start").arg(agent).args(extra);
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => fleet_start.env(key, v),
            None => fleet_start.env_remove(key),
        };
    }
    fleet_start.stdin(Stdio::null());
    expect_success(&mut fleet_start)
}

/// Live processes whose session id or process group is `leader` (`/proc/PID/stat` 6 and 5).
fn session_members(leader: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let (pgrp, sid) = (fields.get(2).copied(), fields.get(3).copied());
        let me = leader.to_string();
        if (sid == Some(me.as_str()) || pgrp == Some(me.as_str())) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// `mosaic-fleet ls --json`, as (agent, state) pairs.
fn states(sb: &Sandbox, all: bool) -> Vec<(String, String)> {
    let mut args = vec!["ls", "--json"];
    if all {
        args.push("--all");
    }
    let out = json(&expect_success(&mut fleet(sb, &args)));
    let agents = out["agents"].as_array().expect("agents is an array");
    agents
        .iter()
        .map(|a| {
            let field = |key: &str| a[key].as_str().expect("a string").to_string();
            (field("agent"), field("state"))
        })
        .collect()
}

fn state_of(sb: &Sandbox, agent: &str) -> Option<String> {
    states(sb, true)
        .into_iter()
        .find(|(a, _)| a == agent)
        .map(|(_, s)| s)
}

#[track_caller]
fn wait_state(sb: &Sandbox, agent: &str, want: &str) {
    wait_until(
        &format!("ls to show {agent} {want}"),
        Duration::from_secs(10),
        || (state_of(sb, agent).as_deref() == Some(want)).then_some(()),
        || String::from_utf8_lossy(&run(&mut fleet(sb, &["ls", "--all"])).stdout).into_owned(),
    );
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn stop_ends_the_whole_tree_and_records_stopped() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "family", FAMILY, &[]);
    let ok = wait_for_status(&sb.hb_file("family"), Status::Ok, Duration::from_secs(10));
    let sidecar = ok.hb_pid.unwrap();
    let pane = sb.pane_pid("family");
    // sh (now sleep 600), sleep, nohup sleep, the trapping subshell and its sleep.
    let members = wait_until(
        "the agent's children to start",
        Duration::from_secs(10),
        || Some(session_members(pane)).filter(|m| m.len() >= 5),
        || format!("{:?}", session_members(pane)),
    );
    let out = expect_success(&mut fleet(&sb, &["stop", "family", "--grace", "0.5"]));
    assert!(
        out.starts_with(&format!(
            "stopped agent family: ended {} processes",
            members.len()
        )),
        "{out}(the tree was {members:?})"
    );
    assert!(
        out.contains("SIGKILL"),
        "the TERM-immune child needs SIGKILL: {out}"
    );
    assert!(out.contains("heartbeat says stopped"), "{out}");
    for pid in members {
        assert!(
            !alive(pid),
            "pid {pid} of the agent's tree survived the stop"
        );
    }
    assert!(session_members(pane).is_empty());
    assert!(!sb.has_session("family"));
    assert!(!alive(sidecar), "the sidecar left");
    let rec = read_record(&sb.hb_file("family")).unwrap();
    assert_eq!(
        rec.status,
        Status::Stopped,
        "{}",
        show_file(&sb.hb_file("family"))
    );
    assert_eq!(rec.pid, pane);
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn stop_reports_in_json_and_a_stopped_agent_is_not_running() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "one", "sleep 600", &[]);
    wait_for_status(&sb.hb_file("one"), Status::Ok, Duration::from_secs(10));
    let out = expect_success(&mut fleet(&sb, &["stop", "one", "--json"]));
    assert_eq!(
        json(&out),
        serde_json::json!({"agent": "one", "was": "running", "ended": 1, "sigkill": false,
            "recorded_stopped": true, "session_gone": true, "warning": null}),
        "{out}"
    );
    let keys = [
        "agent",
        "was",
        "ended",
        "sigkill",
        "recorded_stopped",
        "session_gone",
        "warning",
    ];
    assert!(json(&out).as_object().unwrap().keys().eq(keys), "{out}");
    // Again: exit 0, and said so. An agent that never was is bad input (first_hour.rs).
    let out = expect_success(&mut fleet(&sb, &["stop", "one"]));
    assert!(out.contains("agent one is not running"), "{out}");
    assert_eq!(
        read_record(&sb.hb_file("one")).unwrap().status,
        Status::Stopped
    );
    // Bad input touches nothing.
    let (_, err) = expect_exit(&mut fleet(&sb, &["stop", "../x"]), 2);
    assert!(err.starts_with("mosaic-fleet: invalid agent name"), "{err}");
    expect_exit(&mut fleet(&sb, &["stop"]), 2);
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn stop_all_stops_every_session_in_one_grace() {
    e2e!();
    let sb = Sandbox::new();
    for agent in ["a", "b", "c"] {
        start(&sb, agent, "sh -c 'trap \"\" TERM; sleep 600; :'", &[]);
    }
    start(&sb, "bare", "sleep 600", &["--no-heartbeat"]);
    let out = expect_success(&mut fleet(&sb, &["stop", "--all", "--grace", "1"]));
    assert_eq!(out.lines().count(), 4, "{out}");
    assert_eq!(sb.session_count(), 0, "{out}");
    for agent in ["a", "b", "c"] {
        assert_eq!(
            read_record(&sb.hb_file(agent)).unwrap().status,
            Status::Stopped
        );
    }
    assert_eq!(out.matches("SIGKILL after the grace").count(), 3, "{out}");
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn ls_shows_every_state() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "live", "sleep 600", &[]);
    start(&sb, "unwatched", "sleep 600", &["--no-heartbeat"]);
    start(&sb, "stopped", "sleep 600", &[]);
    start(&sb, "stale", "sleep 600", &[]);
    start(&sb, "dead", "sleep 2", &[]);
    for agent in ["live", "stopped", "stale"] {
        wait_for_status(&sb.hb_file(agent), Status::Ok, Duration::from_secs(10));
    }
    expect_success(&mut fleet(&sb, &["stop", "stopped"]));
    // The stale agent's sidecar dies without a word: its last ok ages.
    let hb = read_record(&sb.hb_file("stale")).unwrap().hb_pid.unwrap();
    signal(hb, libc::SIGKILL);
    wait_gone(hb);
    wait_for_status(&sb.hb_file("dead"), Status::Exited, Duration::from_secs(10));
    // A record no session on this socket answers for, and one that does not parse.
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::fs::write(
        sb.hb_file("orphan"),
        format!("ts={ts}\npid=1\nstatus=ok\ninterval=3600\n"),
    )
    .unwrap();
    std::fs::write(sb.hb_file("junk"), "hello\n").unwrap();
    wait_state(&sb, "stale", "stale");
    let got = states(&sb, false);
    let want = [
        ("live", "running"),
        ("stale", "stale"),
        ("unwatched", "no-heartbeat"),
        ("dead", "exited"),
        ("junk", "invalid"),
        ("orphan", "orphan-file"),
        ("stopped", "stopped"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, s)| (a.to_string(), s.to_string()))
        .collect();
    assert_eq!(got, want);
    // The table names where it looked, and the dead pane's pid and the live ones' uptime.
    let table = expect_success(&mut fleet(&sb, &["ls"]));
    let first = table.lines().next().unwrap();
    assert!(first.contains(&format!("socket {}", sb.socket)), "{table}");
    assert!(
        first.contains(&sb.hb_dir().display().to_string()),
        "{table}"
    );
    assert!(
        table.trim_end().ends_with(
            "7 agents: 1 running, 1 stale, 1 no-heartbeat, 1 exited, 1 stopped, 1 orphan-file, 1 invalid"
        ),
        "{table}"
    );
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn ls_hides_the_long_gone_unless_all() {
    e2e!();
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.hb_dir()).unwrap();
    std::fs::write(
        sb.hb_file("ancient"),
        "ts=2020-01-01T00:00:00Z\npid=5\nstatus=exited\n",
    )
    .unwrap();
    assert!(states(&sb, false).is_empty());
    assert_eq!(states(&sb, true), [("ancient".into(), "exited".into())]);
    let table = expect_success(&mut fleet(&sb, &["ls"]));
    assert!(
        table.contains("1 gone for over 24h not shown; --all shows them"),
        "{table}"
    );
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn logs_show_the_pane_also_after_death() {
    e2e!();
    let sb = Sandbox::new();
    start(
        &sb,
        "talker",
        "sh -c 'for i in 1 2 3 4 5; do echo line-$i; done; exec sleep 600'",
        &[],
    );
    let out = wait_until(
        "the pane's output",
        Duration::from_secs(10),
        || {
            let out = run(&mut fleet(&sb, &["logs", "talker", "-n", "2"]));
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("line-5").then_some(text)
        },
        String::new,
    );
    assert_eq!(out, "line-4\nline-5\n");
    let out = expect_success(&mut fleet(&sb, &["logs", "talker", "-n", "1", "--json"]));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(
        json(&out),
        serde_json::json!({"agent": "talker", "lines": ["line-5"]})
    );
    let (_, err) = expect_exit(&mut fleet(&sb, &["logs", "nobody"]), 2);
    assert!(err.contains("no agent nobody"), "{err}");
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn prune_removes_the_dead_and_keeps_the_live() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "live", "sleep 600", &[]);
    start(&sb, "gone", "sleep 600", &[]);
    wait_for_status(&sb.hb_file("live"), Status::Ok, Duration::from_secs(10));
    wait_for_status(&sb.hb_file("gone"), Status::Ok, Duration::from_secs(10));
    expect_success(&mut fleet(&sb, &["stop", "gone"]));
    // A record kept by a sidecar that watches a process outside tmux: not ours to remove.
    let target = sb.spawn_target();
    sb.start_sidecar(target, &sb.hb_file("kept"), "0.2", ["--agent", "kept"]);
    let files = |agent: &str| {
        [
            format!("{agent}.hb"),
            format!(".{agent}.hb.lock"),
            format!(".{agent}.launch"),
        ]
        .map(|f| sb.hb_dir().join(f).exists())
    };
    assert_eq!(files("gone"), [true; 3]);
    let of_gone = || {
        let names = std::fs::read_dir(sb.hb_dir()).unwrap();
        let names = names.map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        names.filter(|n| n.contains("gone")).count()
    };
    let before = of_gone();
    let dry = expect_success(&mut fleet(&sb, &["prune", "--dry-run"]));
    assert!(dry.starts_with("would prune 1 agent"), "{dry}");
    assert_eq!(of_gone(), before);
    let out = expect_success(&mut fleet(&sb, &["prune", "--json"]));
    let mut report = json(&out);
    let dir = report.as_object_mut().unwrap().shift_remove("hb_dir");
    assert!(dir.is_some_and(|d| d.is_string()), "{out}");
    assert_eq!(
        report,
        serde_json::json!({"dry_run": false, "pruned": ["gone"], "kept": ["kept", "live"],
            "files": before}),
        "{out}"
    );
    assert_eq!(of_gone(), 0, "every file of the agent is gone");
    assert_eq!(files("live"), [true; 3]);
    assert!(Path::new(&sb.hb_file("kept")).exists());
    // The live agent's sidecar still keeps its file.
    let before = read_record(&sb.hb_file("live")).unwrap().seq;
    wait_until(
        "the live agent to beat after prune",
        Duration::from_secs(5),
        || (read_record(&sb.hb_file("live"))?.seq > before).then_some(()),
        || show_file(&sb.hb_file("live")),
    );
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn restart_starts_the_same_launch_whatever_the_callers_environment() {
    e2e!();
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("elsewhere")).unwrap();
    start(
        &sb,
        "again",
        "sh -c 'echo started-$$; exec sleep 600'",
        &["--hb-interval", "0.3"],
    );
    let first = wait_for_status(&sb.hb_file("again"), Status::Ok, Duration::from_secs(10));
    // The caller's variables say something else entirely: restart ignores them.
    let mut cmd = fleet(&sb, &["restart", "again", "--grace", "1"]);
    cmd.env("MOSAIC_AGENT_COMMAND", "false")
        .env("MOSAIC_AGENT_WORKDIR", sb.path("elsewhere"))
        .env("MOSAIC_HEARTBEAT_INTERVAL", "7");
    let out = expect_success(&mut cmd);
    let mut lines = out.lines();
    assert!(
        lines.next().unwrap().starts_with("stopped agent again"),
        "{out}"
    );
    assert!(
        lines.next().unwrap().starts_with("started agent again"),
        "{out}"
    );
    let second = wait_until(
        "a new ok record",
        Duration::from_secs(10),
        || {
            read_record(&sb.hb_file("again"))
                .filter(|r| r.status == Status::Ok && r.pid != first.pid)
        },
        || show_file(&sb.hb_file("again")),
    );
    assert_eq!(second.interval, Some(0.3));
    assert_eq!(
        sb.pane_path("again"),
        sb.path("work").as_os_str().as_encoded_bytes()
    );
    assert!(!alive(first.pid));
    // An agent with nothing stored cannot be restarted, and nothing is stopped.
    start(&sb, "bare", "sleep 600", &["--no-heartbeat"]);
    let (_, err) = expect_exit(&mut fleet(&sb, &["restart", "bare"]), 1);
    assert!(err.contains("no launch configuration"), "{err}");
    assert!(sb.has_session("bare"));
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn start_is_the_launcher() {
    e2e!();
    let sb = Sandbox::new();
    let out = json(&start(&sb, "same", "sleep 600", &["--json"]));
    assert!(
        out["agent"] == "same" && out["status"] == "started",
        "{out}"
    );
    let again = expect_success(&mut sb.launcher("same"));
    assert!(again.contains("already running"), "{again}");
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn attach_puts_a_terminal_on_the_session() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "seen", "sleep 600", &["--no-heartbeat"]);
    // script(1) gives `attach` the terminal tmux needs.
    let mut cmd = fleet(&sb, &[]);
    let fleet_bin = bin("mosaic-fleet");
    cmd = {
        let mut script = Command::new("script");
        script
            .args(["-q", "-c"])
            .arg(format!("{} attach seen", fleet_bin.display()))
            .arg("/dev/null");
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => script.env(key, v),
                None => script.env_remove(key),
            };
        }
        script
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        script
    };
    let mut child = cmd.spawn().expect("script runs");
    let clients = wait_until(
        "a client attached to the session",
        Duration::from_secs(10),
        || {
            let out = sb.tmux(&["list-clients", "-F", "#{session_name}"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (!text.is_empty()).then_some(text)
        },
        String::new,
    );
    assert_eq!(clients.trim(), "seen");
    sb.tmux(&["detach-client", "-a"]);
    sb.tmux(&["detach-client", "-s", "=seen"]);
    let _ = child.kill();
    let _ = child.wait();
    let (_, err) = expect_exit(&mut fleet(&sb, &["attach", "nobody"]), 2);
    assert!(err.contains("no agent nobody"), "{err}");
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn every_verb_documents_its_variables_and_exit_codes() {
    e2e!();
    let sb = Sandbox::new();
    for verb in [
        "start", "ls", "logs", "attach", "send", "stop", "restart", "prune",
    ] {
        let out = expect_success(&mut fleet(&sb, &[verb, "--help"]));
        assert!(out.contains("MOSAIC_TMUX_SOCKET"), "{verb}: {out}");
        assert!(out.contains("MOSAIC_HEARTBEAT_RUN_DIR"), "{verb}: {out}");
        assert!(out.contains("Exit codes"), "{verb}: {out}");
    }
    let out = expect_success(&mut fleet(&sb, &["--help"]));
    assert!(out.contains("Exit codes"), "{out}");
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_dead_agents_leftovers_are_ended_by_its_sidecar() {
    e2e!();
    let sb = Sandbox::new();
    // Children that outlive the agent: the terminal's hang-up (SIGHUP) does not end them.
    start(
        &sb,
        "leaver",
        "sh -c 'nohup sleep 1000 >/dev/null 2>&1 & (trap \"\" HUP; sleep 1000; :) & sleep 1; exit 3'",
        &[],
    );
    let ok = wait_for_status(&sb.hb_file("leaver"), Status::Ok, Duration::from_secs(10));
    let leftovers = wait_until(
        "the agent's children to start",
        Duration::from_secs(10),
        || {
            let kids: Vec<i32> = session_members(ok.pid)
                .into_iter()
                .filter(|&p| p != ok.pid)
                .collect();
            (kids.len() >= 3).then_some(kids)
        },
        || format!("{:?}", session_members(ok.pid)),
    );
    let rec = wait_until(
        "the sidecar to record what it ended",
        Duration::from_secs(20),
        || {
            read_record(&sb.hb_file("leaver"))
                .filter(|r| r.status == Status::Exited && r.lifecycle.reaped.is_some())
        },
        || show_file(&sb.hb_file("leaver")),
    );
    assert_eq!(rec.lifecycle.reaped, Some(3), "{leftovers:?}");
    for pid in leftovers {
        assert!(!alive(pid), "pid {pid} outlived its agent");
    }
    // The dead pane stays for `ls` and `logs`, with how it ended.
    let ls = expect_success(&mut fleet(&sb, &["ls"]));
    assert!(ls.contains("status 3"), "{ls}");
    assert_eq!(state_of(&sb, "leaver").as_deref(), Some("exited"));
}

/// `mosaic-fleet logs AGENT --follow ARGS` with its own TMPDIR (a name a shell would trip on),
/// stdout and stderr piped.
fn follower(sb: &Sandbox, agent: &str, args: &[&str]) -> (std::process::Child, std::path::PathBuf) {
    let tmp = sb.path("tmp 'it's $HOME #{pid};");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = fleet(sb, &["logs", agent, "--follow"]);
    cmd.args(args)
        .env("TMPDIR", &tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (cmd.spawn().unwrap(), tmp)
}

/// The first `n` lines the follower printed (blocking: the capture comes at once), and
/// whether more had come with them (those are dropped).
fn first_lines(child: &mut std::process::Child, n: usize) -> (Vec<String>, bool) {
    use std::io::BufRead;
    let stdout = child.stdout.as_mut().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    let mut lines = Vec::new();
    for _ in 0..n {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        lines.push(line);
    }
    let more = !reader.buffer().is_empty();
    (lines, more)
}

/// Waits for the follower's exit (10 s at most): its code, the rest of stdout, stderr.
fn follower_end(mut child: std::process::Child) -> (Option<i32>, String, String) {
    let status = wait_until(
        "the follower to end",
        Duration::from_secs(10),
        || child.try_wait().unwrap(),
        String::new,
    );
    let out = child.wait_with_output().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Nothing of a follower is left: its directory under TMPDIR is gone, no child of the tmux
/// server writes into it, and its pane option is unset.
fn no_follower_left(sb: &Sandbox, agent: &str, tmp: &Path) {
    let left: Vec<_> = std::fs::read_dir(tmp).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let server = String::from_utf8_lossy(&sb.tmux(&["display-message", "-p", "#{pid}"]).stdout)
        .trim()
        .to_string();
    let kids = std::fs::read_to_string(format!("/proc/{server}/task/{server}/children")).unwrap();
    for kid in kids.split_whitespace() {
        let out = std::fs::read_link(format!("/proc/{kid}/fd/1")).unwrap_or_default();
        assert!(
            !out.starts_with(tmp),
            "pid {kid} still writes to {}",
            out.display()
        );
    }
    let options = sb.tmux(&["show-options", "-p", "-t", &format!("={agent}:")]);
    let options = String::from_utf8_lossy(&options.stdout);
    assert!(!options.contains("@mosaic_follow"), "{options}");
}

// `logs --follow`: the last lines, then what the agent prints, each line once, with terminal
// control sequences, carriage returns, C1 controls sent as UTF-8 and broken UTF-8 dropped; it
// ends when the agent does (exit 0, its status on stderr), leaving nothing behind, even for the
// dead pane tmux keeps piped.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn logs_follow_streams_the_output_until_the_agent_exits() {
    e2e!();
    let sb = Sandbox::new();
    let go = sb.path("go");
    let script = sb.path("talk.sh");
    write_script(
        &script,
        &format!(
            "#!/bin/sh\nfor i in 1 2 3; do echo old-$i; done\nwhile [ ! -e '{}' ]; do sleep 0.05; done\n\
             printf 'new-1 \\033[31mred\\033[0m\\302\\233\\302\\205\\377\\r\\n\\033]0;title\\007new-2\\r\\n'\nprintf partial\nsleep 0.3\nexit 3\n",
            go.display()
        ),
    );
    // The pane's own pipe (a transcript's follower reads its file: transcripts.rs).
    start(&sb, "talker", &script.display().to_string(), &["--no-log"]);
    wait_until(
        "the old lines",
        Duration::from_secs(10),
        || {
            let out = run(&mut fleet(&sb, &["logs", "talker"]));
            String::from_utf8_lossy(&out.stdout)
                .contains("old-3")
                .then_some(())
        },
        String::new,
    );
    let (mut child, tmp) = follower(&sb, "talker", &["-n", "2"]);
    // The agent waits for `go`: these two lines are all there is yet.
    let (lines, more) = first_lines(&mut child, 2);
    assert_eq!(
        (lines, more),
        (vec!["old-2\n".to_string(), "old-3\n".into()], false)
    );
    std::fs::write(&go, b"").unwrap();
    let (code, out, err) = follower_end(child);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "new-1 red\nnew-2\npartial\n");
    assert!(err.contains("agent talker exited with status 3"), "{err}");
    no_follower_left(&sb, "talker", &tmp);
}

// Ctrl-C ends a follow with 130 and closes its pipe (the agent runs on); a pane that already
// has a pipe (another follower, or someone's pipe-pane) is refused, and that pipe kept; a
// follow is no JSON.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn logs_follow_stops_on_ctrl_c_and_leaves_other_pipes_alone() {
    e2e!();
    let sb = Sandbox::new();
    start(
        &sb,
        "ticker",
        "sh -c 'while :; do echo tick; sleep 0.1; done'",
        &["--no-log"],
    );
    let (mut child, tmp) = follower(&sb, "ticker", &["-n", "1"]);
    assert_eq!(first_lines(&mut child, 1).0, ["tick\n"]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (code, _, err) = follower_end(child);
    assert_eq!(code, Some(130), "{err}");
    let pipe = |sb: &Sandbox| {
        let out = sb.tmux(&[
            "display-message",
            "-p",
            "-t",
            "=ticker:",
            "#{pane_pipe} #{pane_dead}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(pipe(&sb), "0 0");
    no_follower_left(&sb, "ticker", &tmp);
    // Someone else's pipe.
    let theirs = sb.path("theirs");
    let cmd = format!("cat >> '{}'", theirs.display());
    assert!(sb
        .tmux(&["pipe-pane", "-t", "=ticker:", &cmd])
        .status
        .success());
    let (child, tmp) = follower(&sb, "ticker", &[]);
    let (code, _, err) = follower_end(child);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("already has a pipe"), "{err}");
    assert_eq!(pipe(&sb), "1 0");
    let before = std::fs::metadata(&theirs).map_or(0, |m| m.len());
    wait_until(
        "their pipe to go on",
        Duration::from_secs(5),
        || (std::fs::metadata(&theirs).map_or(0, |m| m.len()) > before).then_some(()),
        String::new,
    );
    no_follower_left(&sb, "ticker", &tmp);
    let (_, err) = expect_exit(&mut fleet(&sb, &["logs", "ticker", "-f", "--json"]), 2);
    assert!(err.contains("cannot be used with"), "{err}");
}

// A follower killed with SIGKILL on a silent pane leaves its pipe, its pane option and its
// directory behind; the next `logs --follow` clears all three (the dead follower's pipe is
// closed, its process ended, its directory removed) and follows, and leaves nothing itself.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_killed_followers_leftovers_are_cleared_by_the_next() {
    e2e!();
    let sb = Sandbox::new();
    start(
        &sb,
        "quiet",
        "sh -c 'echo said-once; exec sleep 600'",
        &["--no-log"],
    );
    wait_until(
        "the agent's one line",
        Duration::from_secs(10),
        || {
            let out = run(&mut fleet(&sb, &["logs", "quiet"]));
            String::from_utf8_lossy(&out.stdout)
                .contains("said-once")
                .then_some(())
        },
        String::new,
    );
    let (mut first, tmp) = follower(&sb, "quiet", &["-n", "1"]);
    assert_eq!(first_lines(&mut first, 1).0, ["said-once\n"]);
    first.kill().unwrap();
    first.wait().unwrap();
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "the killed follower's directory: {left:?}");
    // A second dead follower's directory, of another pane (its pid is long gone).
    let other = tmp.join("mosaic-follow-999999999_00000000deadbeef");
    std::fs::create_dir(&other).unwrap();
    nix::unistd::mkfifo(&other.join("pane"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (mut second, _) = follower(&sb, "quiet", &["-n", "1"]);
    let (lines, _) = first_lines(&mut second, 1);
    if lines != ["said-once\n"] {
        let (code, out, err) = follower_end(second);
        let server = String::from_utf8_lossy(&sb.tmux(&["display-message", "-p", "#{pid}"]).stdout)
            .trim()
            .to_string();
        let kids = std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"))
            .unwrap_or_default();
        let kids: Vec<String> = kids
            .split_whitespace()
            .map(|k| {
                format!(
                    "{k} {:?} {:?} {:?}",
                    std::fs::read(format!("/proc/{k}/cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).into_owned()),
                    std::fs::read_link(format!("/proc/{k}/fd/1")),
                    std::fs::read_to_string(format!("/proc/{k}/stat"))
                )
            })
            .collect();
        let options = sb.tmux(&["show-options", "-p", "-t", "=quiet:"]);
        panic!(
            "the next follower did not follow: {lines:?} {code:?} {out:?} {err:?}; server {server} children {kids:?}; options {}",
            String::from_utf8_lossy(&options.stdout)
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (code, _, err) = follower_end(second);
    assert_eq!(code, Some(130), "{err}");
    no_follower_left(&sb, "quiet", &tmp);
}

// A pane whose pipe is someone else's (no follower's mark) is refused with the way to close it.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_refused_follower_says_how_to_clear_the_pipe() {
    e2e!();
    let sb = Sandbox::new();
    // The pane's pipe is free without a transcript (whose writer holds it).
    start(&sb, "piped", "sleep 600", &["--no-log"]);
    let theirs = sb.path("theirs");
    let cmd = format!("cat >> '{}'", theirs.display());
    assert!(sb
        .tmux(&["pipe-pane", "-t", "=piped:", &cmd])
        .status
        .success());
    let (child, tmp) = follower(&sb, "piped", &[]);
    let (code, _, err) = follower_end(child);
    assert_eq!(code, Some(1), "{err}");
    let how = format!("`tmux -L {} pipe-pane -t =piped:` closes it", sb.socket);
    assert!(err.contains(&how), "{err}");
    no_follower_left(&sb, "piped", &tmp);
}

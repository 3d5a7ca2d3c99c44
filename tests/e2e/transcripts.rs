/*!
Durable transcripts (issue 27): every agent's output in `LOG_DIR/AGENT.log`, each run opened and
closed by a line of ours, across restarts and relaunches, after `stop` and the tmux server's
death, rotated by size, nothing lost in a burst; private and symlink-proof; read by `logs`
(`-n`, `--raw`, `--follow`) also when the session is gone; removed by `prune --logs`.
*/

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::e2e;
use crate::support::*;

/// The sandbox's transcript folder: the default base under its HOME, then the socket.
fn log_dir(sb: &Sandbox) -> PathBuf {
    sb.path("home/.local/state/mosaic/logs").join(&sb.socket)
}

/// Every transcript file of `agent`, oldest first, joined.
fn transcript(sb: &Sandbox, agent: &str) -> String {
    let dir = log_dir(sb);
    let mut names: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(&format!("{agent}.log"))?;
            let n = if rest.is_empty() {
                0
            } else {
                rest.strip_prefix('.')?.parse().ok()?
            };
            Some((n, e.path()))
        })
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.0));
    names
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect()
}

/// Waits until `agent`'s transcript holds `text`; returns it.
#[track_caller]
fn wait_for(sb: &Sandbox, agent: &str, text: &str) -> String {
    wait_until(
        &format!("{agent}'s transcript to hold {text:?}"),
        Duration::from_secs(15),
        || Some(transcript(sb, agent)).filter(|t| t.contains(text)),
        || transcript(sb, agent),
    )
}

/// The lines of ours in a transcript, each without its time: `run started: CMD`, ...
fn ours(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("[mosaic] "))
        .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_string())
        .collect()
}

// Two runs under a restart policy, then a relaunch by hand: one transcript, each run's output
// between its opening and closing lines, in order.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn every_run_is_kept_across_restarts_and_relaunches() {
    e2e!();
    let sb = Sandbox::new();
    let script = sb.path("work/runs.sh");
    write_script(
        &script,
        "#!/bin/sh\nn=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count\n\
         echo \"output of run $n\"; sleep 0.3; exit 3\n",
    );
    let command = script.to_str().unwrap();
    expect_success(
        sb.launcher("runs")
            .env("MOSAIC_AGENT_COMMAND", command)
            .args([
                "--restart",
                "on-failure",
                "--restart-delay",
                "0.1",
                "--restart-burst",
                "2",
            ]),
    );
    wait_for_status(
        &sb.hb_file("runs"),
        mosaic_core::record::Status::Failed,
        Duration::from_secs(15),
    );
    wait_for(&sb, "runs", "output of run 2");
    expect_success(sb.launcher("runs").env("MOSAIC_AGENT_COMMAND", command));
    let text = wait_for(&sb, "runs", "output of run 3");
    let text = wait_until(
        "the third run's end",
        Duration::from_secs(10),
        || Some(transcript(&sb, "runs")).filter(|t| ours(t).len() == 6),
        || text.clone(),
    );
    let run = |n| format!("output of run {n}\r\n");
    let at = |s: &str| {
        text.find(s)
            .unwrap_or_else(|| panic!("{s:?} not in {text:?}"))
    };
    assert!(
        at(&run(1)) < at(&run(2)) && at(&run(2)) < at(&run(3)),
        "{text}"
    );
    assert_eq!(
        ours(&text),
        [
            format!("run started: {command}"),
            "run ended: exit status 3".into(),
            format!("run restarted: {command}"),
            "run ended: exit status 3".into(),
            format!("run started: {command}"),
            "run ended: exit status 3".into(),
        ],
        "{text}"
    );
    // Each run's output sits between its own lines.
    let lines: Vec<&str> = text.lines().collect();
    for (n, line) in lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("output of run"))
    {
        assert!(
            lines[n - 1].contains("run st") || lines[n - 1].contains("run rest"),
            "{text}"
        );
        assert!(lines[n + 1].contains("run ended"), "{line}: {text}");
    }
}

// tmux 3.3a (built with libutempter) loses a pane's SIGCHLD now and then: the pane stays an
// unreaped zombie, with no status and no `pane-died` hook, until the server's next SIGCHLD (6 of
// 12 deaths one at a time, by hand). The sidecar has tmux reap it before it leaves: once it is
// gone, tmux knows how the pane ended, and the run is closed with that in the transcript.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn every_death_is_closed_even_when_tmux_loses_its_sigchld() {
    e2e!();
    let sb = Sandbox::new();
    for n in 0..12 {
        let agent = format!("dies{n}");
        let command = format!("sh -c 'echo said-{n}; sleep 0.3; exit 3'");
        expect_success(
            sb.launcher(&agent)
                .env("MOSAIC_AGENT_COMMAND", &command)
                .args(["--settle", "0"]),
        );
        let record = wait_for_status(
            &sb.hb_file(&agent),
            mosaic_core::record::Status::Exited,
            Duration::from_secs(15),
        );
        wait_gone(record.hb_pid.expect("the sidecar says its pid"));
        let target = format!("={agent}:");
        let out = sb.tmux(&[
            "display-message",
            "-p",
            "-t",
            &target,
            "#{pane_dead_status}",
        ]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3", "{agent}");
        let text = wait_for(&sb, &agent, "run ended");
        assert_eq!(
            ours(&text),
            [
                format!("run started: {command}"),
                "run ended: exit status 3".into()
            ],
            "{text}"
        );
        assert!(
            text.find(&format!("said-{n}\r\n")) < text.find("run ended"),
            "{text}"
        );
    }
}

// A stop right after the agent spoke: its session goes only once the run is closed with how it
// ended (the stop's SIGTERM), never as "pane closed" (its removal outran tmux's hook, 7 stops in
// 20 by hand before the stop said how itself).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_stop_closes_the_run_before_the_session_goes() {
    e2e!();
    let sb = Sandbox::new();
    for n in 0..8 {
        let agent = format!("quick{n}");
        expect_success(
            sb.launcher(&agent)
                .env("MOSAIC_AGENT_COMMAND", "sh -c 'echo up; sleep 600'"),
        );
        wait_for(&sb, &agent, "up\r\n");
        expect_success(&mut fleet(&sb, &["stop", &agent]));
        // Closed before `stop` returned: no wait here.
        let text = transcript(&sb, &agent);
        assert_eq!(
            ours(&text),
            [
                "run started: sh -c 'echo up; sleep 600'".to_string(),
                "run ended: signal 15".into()
            ],
            "{text}"
        );
    }
}

// The transcript outlives the session (`stop`) and the tmux server (`kill-server`), and says
// how the pane went.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn the_transcript_survives_stop_and_the_servers_death() {
    e2e!();
    let sb = Sandbox::new();
    let command = "sh -c 'echo stop-me; sleep 600'";
    expect_success(sb.launcher("stopped").env("MOSAIC_AGENT_COMMAND", command));
    expect_success(
        sb.launcher("killed")
            .env("MOSAIC_AGENT_COMMAND", "sh -c 'echo kill-me; sleep 600'"),
    );
    wait_for(&sb, "stopped", "stop-me\r\n");
    wait_for(&sb, "killed", "kill-me\r\n");
    expect_success(&mut fleet(&sb, &["stop", "stopped"]));
    // The stop's SIGTERM ended the run; then its session went.
    let text = wait_for(&sb, "stopped", "run ended: signal 15");
    assert!(
        text.contains("run started: sh -c 'echo stop-me; sleep 600'"),
        "{text}"
    );
    assert!(text.find("stop-me\r\n") < text.find("run ended"), "{text}");
    assert!(!sb.has_session("stopped"));
    let out = sb.tmux(&["kill-server"]);
    assert!(out.status.success(), "{out:?}");
    let text = wait_for(
        &sb,
        "killed",
        "pane closed: its session or the tmux server is gone",
    );
    assert!(text.contains("kill-me\r\n"), "{text}");
}

// Rotation by size keeps --log-keep files, the oldest dropped, and loses nothing in between.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn transcripts_rotate_by_size_and_keep_their_number() {
    e2e!();
    let sb = Sandbox::new();
    // 2000 lines of 10 bytes: 20 kB through 4 kB files, 2 kept.
    let command = "sh -c 'seq -f %08g 1 2000; sleep 600'";
    expect_success(
        sb.launcher("rot")
            .env("MOSAIC_AGENT_COMMAND", command)
            .args(["--log-max-size", "4K", "--log-keep", "2"]),
    );
    let text = wait_for(&sb, "rot", "00002000\r\n");
    let dir = log_dir(&sb);
    for name in ["rot.log", "rot.log.1", "rot.log.2"] {
        let len = std::fs::metadata(dir.join(name)).unwrap().len();
        assert!(len > 0 && len <= 4096, "{name}: {len} bytes");
    }
    assert!(
        !dir.join("rot.log.3").exists(),
        "a third rotated file was kept"
    );
    assert!(
        !text.contains("run started"),
        "the oldest file was not dropped: {text}"
    );
    // What is kept is one unbroken run of lines up to the last.
    // (The oldest file kept may start mid-line: rotation is by bytes.)
    let numbers: Vec<u32> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.trim_end_matches('\r').parse().ok())
        .collect();
    assert!(numbers.len() > 500, "{} lines kept", numbers.len());
    let first = numbers[0];
    assert!(
        numbers == (first..=2000).collect::<Vec<_>>(),
        "a gap in lines {first} to 2000: {numbers:?}"
    );
}

// 20,000 lines printed at once are all in the transcript, in order.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_burst_of_20000_lines_is_kept_whole() {
    e2e!();
    let sb = Sandbox::new();
    expect_success(
        sb.launcher("burst")
            .env("MOSAIC_AGENT_COMMAND", "sh -c 'seq 1 20000; sleep 600'"),
    );
    let text = wait_for(&sb, "burst", "\r\n20000\r\n");
    let numbers: Vec<u32> = text
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').parse().ok())
        .collect();
    assert_eq!(numbers, (1..=20000).collect::<Vec<_>>());
}

// --no-log keeps no transcript and gives the pane no pipe.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn no_log_keeps_nothing() {
    e2e!();
    let sb = Sandbox::new();
    expect_success(
        sb.launcher("quiet")
            .env("MOSAIC_AGENT_COMMAND", "sh -c 'echo hidden; sleep 600'")
            .arg("--no-log"),
    );
    let out = sb.tmux(&["display-message", "-p", "-t", "=quiet:", "#{pane_pipe}"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert!(!sb.path("home/.local/state").exists(), "a log dir was made");
}

// Directories 0700 level by level, files 0600; a symlink planted at the transcript's path is
// refused before anything starts, and what it points at is untouched.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn transcripts_are_private_and_symlink_proof() {
    e2e!();
    let sb = Sandbox::new();
    expect_success(
        sb.launcher("priv")
            .env("MOSAIC_AGENT_COMMAND", "sh -c 'echo secret; sleep 600'"),
    );
    wait_for(&sb, "priv", "secret");
    let mode = |p: PathBuf| std::fs::symlink_metadata(&p).unwrap().permissions().mode() & 0o777;
    for level in ["home/.local/state/mosaic", "home/.local/state/mosaic/logs"] {
        assert_eq!(mode(sb.path(level)), 0o700, "{level}");
    }
    assert_eq!(mode(log_dir(&sb)), 0o700);
    assert_eq!(mode(log_dir(&sb).join("priv.log")), 0o600);
    assert_eq!(mode(log_dir(&sb).join(".priv.log.ctl")), 0o600);

    let victim = sb.path("victim");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, log_dir(&sb).join("trap.log")).unwrap();
    let (_, err) = expect_exit(
        sb.launcher("trap").env("MOSAIC_AGENT_COMMAND", "sleep 600"),
        1,
    );
    assert!(err.contains("trap.log") && err.contains("symlink"), "{err}");
    assert!(!sb.has_session("trap"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");

    // A log dir open to others is refused too.
    let dir = sb.path("open-logs");
    std::fs::create_dir_all(dir.join(&sb.socket)).unwrap();
    std::fs::set_permissions(dir.join(&sb.socket), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (_, err) = expect_exit(sb.launcher("open").arg("--log-dir").arg(&dir), 1);
    assert!(
        err.contains("refusing log dir") && err.contains("777"),
        "{err}"
    );
}

// `logs` reads the transcript: `-n` lines of it, escapes dropped unless `--raw`, and also once
// the session and then the server are gone.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn logs_read_the_transcript_also_when_the_session_is_gone() {
    e2e!();
    let sb = Sandbox::new();
    let command = "sh -c 'printf \"one\\n\\033[31mtwo\\033[0m\\nthree\\n\"; sleep 600'";
    expect_success(sb.launcher("reader").env("MOSAIC_AGENT_COMMAND", command));
    wait_for(&sb, "reader", "three");
    let logs =
        |args: &[&str]| expect_success(&mut fleet(&sb, &[&["logs", "reader"], args].concat()));
    assert_eq!(logs(&["-n", "2"]), "two\nthree\n");
    assert_eq!(
        logs(&["-n", "2", "--raw"]),
        "\x1b[31mtwo\x1b[0m\r\nthree\r\n"
    );
    let all = logs(&[]);
    assert!(
        all.starts_with("[mosaic] ") && all.contains("run started: sh -c"),
        "{all}"
    );
    assert!(all.ends_with("one\ntwo\nthree\n"), "{all}");
    // Gone: the session (the pane was what `logs` read before transcripts), then the server.
    expect_success(&mut fleet(&sb, &["stop", "reader"]));
    wait_for(&sb, "reader", "run ended");
    let after = logs(&["-n", "0"]);
    assert!(
        after.contains("one\ntwo\nthree\n") && after.contains("run ended: signal 15"),
        "{after}"
    );
    let json = json(&expect_success(&mut fleet(
        &sb,
        &["logs", "reader", "-n", "1", "--json"],
    )));
    assert!(
        json["lines"][0].as_str().unwrap().starts_with("[mosaic] "),
        "{json}"
    );
    let _ = sb.tmux(&["kill-server"]);
    assert_eq!(logs(&["-n", "0"]), after);
    // With no session and no transcript, the name is still the mistake.
    let (_, err) = expect_exit(&mut fleet(&sb, &["logs", "nobody"]), 2);
    assert!(err.contains("no agent nobody"), "{err}");
}

// `logs --follow` on a transcript: the last lines, then what comes (through rotations), each
// once and made plain; it ends with the run, after the writer's closing line, and the pane's
// pipe stays the writer's.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn logs_follow_reads_the_transcript_as_it_grows() {
    e2e!();
    let sb = Sandbox::new();
    let go = sb.path("go");
    let script = sb.path("talk.sh");
    write_script(
        &script,
        &format!(
            "#!/bin/sh\nfor i in 1 2 3; do echo old-$i; done\nwhile [ ! -e '{}' ]; do sleep 0.05; done\n\
             printf 'new-1 \\033[31mred\\033[0m\\r\\n'\nseq -f %08g 1 600\nprintf partial\nsleep 0.3\nexit 3\n",
            go.display()
        ),
    );
    let command = script.to_str().unwrap();
    expect_success(
        sb.launcher("talker")
            .env("MOSAIC_AGENT_COMMAND", command)
            .args(["--log-max-size", "2K", "--log-keep", "10"]),
    );
    wait_for(&sb, "talker", "old-3");
    let mut cmd = fleet(&sb, &["logs", "talker", "--follow", "-n", "2"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    for _ in 0..2 {
        std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
    }
    assert_eq!(first, "old-2\nold-3\n");
    std::fs::write(&go, b"").unwrap();
    let status = wait_until(
        "the follower to end",
        Duration::from_secs(20),
        || child.try_wait().unwrap(),
        || transcript(&sb, "talker"),
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("agent talker exited with status 3"), "{err}");
    let numbers: Vec<String> = (1..=600).map(|n| format!("{n:08}")).collect();
    let expected = format!("new-1 red\n{}\npartial\n", numbers.join("\n"));
    assert!(rest.starts_with(&expected), "{rest}");
    let tail = &rest[expected.len()..];
    assert!(
        tail.starts_with("[mosaic] ") && tail.contains("run ended: exit status 3"),
        "{tail}"
    );
    assert!(
        log_dir(&sb).join("talker.log.2").exists(),
        "it did not rotate"
    );
    let out = sb.tmux(&["display-message", "-p", "-t", "=talker:", "#{pane_pipe}"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

// `prune` leaves transcripts; `prune --logs` removes those of agents nobody runs (found through
// their launch file, or in the socket's folder once their other files are gone), never a live
// agent's.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn prune_removes_transcripts_only_with_logs() {
    e2e!();
    let sb = Sandbox::new();
    let elsewhere = sb.path("elsewhere");
    for (agent, extra) in [
        ("live", vec![]),
        ("old", vec![]),
        ("moved", vec!["--log-dir"]),
    ] {
        let mut cmd = sb.launcher(agent);
        cmd.env(
            "MOSAIC_AGENT_COMMAND",
            format!("sh -c 'echo {agent}-said; sleep 600'"),
        );
        if !extra.is_empty() {
            cmd.args(extra).arg(&elsewhere);
        }
        expect_success(&mut cmd);
    }
    wait_for(&sb, "live", "live-said");
    wait_for(&sb, "old", "old-said");
    let moved = elsewhere.join(&sb.socket);
    wait_until(
        "moved's transcript",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(moved.join("moved.log")).ok()?;
            text.contains("moved-said").then_some(())
        },
        || format!("{:?}", std::fs::read_dir(&moved).map(|d| d.count())),
    );
    expect_success(&mut fleet(&sb, &["stop", "old", "moved"]));
    wait_for(&sb, "old", "run ended");
    // Plain prune: the heartbeat files go, the transcripts stay.
    expect_success(&mut fleet(&sb, &["prune"]));
    assert!(!sb.hb_file("old").exists());
    assert!(log_dir(&sb).join("old.log").exists());
    assert!(moved.join("moved.log").exists());
    // Now `moved` has files again (a start and a stop), `old` has only its transcript left.
    expect_success(sb.launcher("moved").arg("--log-dir").arg(&elsewhere));
    expect_success(&mut fleet(&sb, &["stop", "moved"]));
    let out = expect_success(&mut fleet(&sb, &["prune", "--logs", "--dry-run"]));
    assert!(out.contains("moved") && out.contains("old"), "{out}");
    assert!(log_dir(&sb).join("old.log").exists(), "a dry run removed");
    let out = expect_success(&mut fleet(&sb, &["prune", "--logs"]));
    assert!(
        out.contains("pruned 2 agents") && !out.contains("live,"),
        "{out}"
    );
    let left = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(left(&log_dir(&sb)), [".live.log.ctl", "live.log"]);
    assert!(left(&moved).is_empty(), "{:?}", left(&moved));
    assert!(transcript(&sb, "live").contains("live-said"));
}

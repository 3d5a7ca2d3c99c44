/*!
Activity end to end: scripted terminal agents in real tmux panes, started by the real launcher
(which installs the bell hook), watched by the real sidecar. The scripts act when the test
creates a file in their workdir, so each step is timed by the test, not by a sleep.
*/

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mosaic_core::activity::{self, Activity};

use crate::e2e;
use crate::support::*;

/// Starts `agent` running `script` (sh, in the sandbox's workdir) with the given idle threshold
/// and interval; returns its heartbeat file once it says ok.
#[track_caller]
fn launch_script(sb: &Sandbox, agent: &str, script: &str, idle_after: &str, interval: &str) {
    let path = sb.path("work").join(format!("{agent}.sh"));
    write_script(&path, script);
    let mut cmd = sb.launcher(agent);
    cmd.env("MOSAIC_AGENT_COMMAND", format!("sh ./{agent}.sh"))
        .env("MOSAIC_IDLE_AFTER", idle_after)
        .env("MOSAIC_HEARTBEAT_INTERVAL", interval);
    expect_success(&mut cmd);
    wait_for_status(&sb.hb_file(agent), Status::Ok, Duration::from_secs(10));
}

/// Waits until the agent's record says `activity`; returns the record.
#[track_caller]
fn wait_for_activity(sb: &Sandbox, agent: &str, activity: Activity, within: Duration) -> Record {
    let file = sb.hb_file(agent);
    wait_until(
        &format!("{} to say activity={}", file.display(), activity.as_str()),
        within,
        || read_record(&file).filter(|r| r.activity == Some(activity)),
        || pane_and_file(sb, agent, &file),
    )
}

fn pane_and_file(sb: &Sandbox, agent: &str, file: &Path) -> String {
    let pane = sb.tmux(&["capture-pane", "-p", "-t", &format!("={agent}:0.0")]);
    format!(
        "{}; pane: {:?}",
        show_file(file),
        String::from_utf8_lossy(&pane.stdout).trim_end()
    )
}

/// Tells the script to go on: creates `name` in the workdir; returns when.
fn trigger(sb: &Sandbox, name: &str) -> DateTime<Utc> {
    let now = Utc::now();
    std::fs::write(sb.path("work").join(name), "").unwrap();
    now
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1e3
}

/// Waits, without printing, until the test creates file `$1`.
const WAIT_FOR: &str = "wait_for() { while [ ! -e \"$1\" ]; do sleep 0.05; done; }\n";

// An agent that prints for a while is busy; once it goes quiet it turns idle after the
// threshold (not before: the record's own times say so), within the threshold and one interval.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn busy_while_printing_then_idle_after_the_threshold() {
    e2e!();
    let sb = Sandbox::new();
    let script = format!(
        "{WAIT_FOR}i=0\nwhile [ ! -e stop ]; do i=$((i+1)); echo \"line $i\"; sleep 0.1; done\n\
         : > quiet\nsleep 600\n"
    );
    let (idle_after, interval) = (2.0, 1.5);
    launch_script(&sb, "talker", &script, "2", "1.5");
    let busy = wait_for_activity(&sb, "talker", Activity::Busy, Duration::from_secs(5));
    // It keeps printing for longer than the threshold: busy all along, one spell.
    let file = sb.hb_file("talker");
    let since = busy.activity_since.unwrap();
    wait_until(
        "a record written a threshold after busy began",
        Duration::from_secs(10),
        || {
            let rec = read_record(&file)?;
            assert_eq!(rec.activity, Some(Activity::Busy), "{rec:?}");
            assert_eq!(rec.activity_since, Some(since), "{rec:?}");
            (secs(rec.ts - since) > idle_after + 0.5).then_some(())
        },
        || show_file(&file),
    );
    trigger(&sb, "stop");
    let quiet_file = sb.path("work").join("quiet");
    let quiet: DateTime<Utc> = wait_until(
        "the agent to go quiet",
        Duration::from_secs(5),
        || std::fs::metadata(&quiet_file).ok()?.modified().ok(),
        || show_file(&quiet_file),
    )
    .into();
    let idle = wait_for_activity(
        &sb,
        "talker",
        Activity::Idle,
        Duration::from_secs_f64(idle_after + interval + 5.0),
    );
    let since = idle.activity_since.expect("activity_since with activity");
    // Idle since the last output, which came just before the script went quiet, as seen to
    // within a quiet second...
    let quiet_second = chrono::Duration::from_std(activity::QUIET).unwrap();
    assert!(
        since <= quiet + quiet_second,
        "idle since {since}, quiet at {quiet}"
    );
    // ...written no sooner than the threshold after it, and within threshold + interval of
    // the moment the script went quiet.
    assert!(
        secs(idle.ts - since) >= idle_after,
        "idle written {} s after the last output",
        secs(idle.ts - since)
    );
    assert!(
        secs(idle.ts - quiet) <= idle_after + interval,
        "idle written {} s after the agent went quiet",
        secs(idle.ts - quiet)
    );
}

// A bell is `waiting` within 2 s, and stays so (a bell is a question) until the agent prints
// again: then it is busy again.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_bell_is_waiting_until_new_output() {
    e2e!();
    let sb = Sandbox::new();
    let script = format!(
        "{WAIT_FOR}echo starting\nwait_for ring\nprintf 'Allow this? [y/n]\\a'\n\
         wait_for answer\necho ' y'\necho working\nsleep 600\n"
    );
    launch_script(&sb, "asker", &script, "60", "30");
    wait_for_activity(&sb, "asker", Activity::Busy, Duration::from_secs(5));
    let rang = trigger(&sb, "ring");
    let waiting = wait_for_activity(&sb, "asker", Activity::Waiting, Duration::from_secs(5));
    let since = waiting.activity_since.unwrap();
    assert!(
        secs(waiting.ts - rang) <= 2.0,
        "waiting written {} s after the bell was asked for",
        secs(waiting.ts - rang)
    );
    assert!(since >= rang, "waiting since {since}, bell at {rang}");
    // At a 30 s interval that was an extra record: nothing else would have come so soon.
    assert!(waiting.seq.unwrap() >= 2, "{waiting:?}");
    // Quiet, it stays waiting (no idle threshold applies to a question).
    let answered = trigger(&sb, "answer");
    let busy = wait_for_activity(&sb, "asker", Activity::Busy, Duration::from_secs(5));
    assert!(busy.activity_since.unwrap() >= answered, "{busy:?}");
}

// A spinner's redraws are output: the agent stays busy past any number of thresholds.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_spinner_looks_busy() {
    e2e!();
    let sb = Sandbox::new();
    let script = "while :; do for c in - '\\' '|' /; do printf '\\r%s working' \"$c\"; \
                  sleep 0.2; done; done\n";
    launch_script(&sb, "spinner", script, "1", "0.25");
    let first = wait_for_activity(&sb, "spinner", Activity::Busy, Duration::from_secs(5));
    let file = sb.hb_file("spinner");
    wait_until(
        "20 more records",
        Duration::from_secs(30),
        || {
            let rec = read_record(&file)?;
            assert_eq!(rec.activity, Some(Activity::Busy), "{rec:?}");
            assert_eq!(rec.activity_since, first.activity_since, "{rec:?}");
            (rec.seq? >= first.seq? + 20).then_some(())
        },
        || show_file(&file),
    );
}

// The sidecar alone on a process without a terminal reports no activity at all.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn no_terminal_no_activity() {
    e2e!();
    let sb = Sandbox::new();
    let mut child = std::process::Command::new("sleep")
        .arg("600")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let file = sb.hb_file("plain");
    sb.start_sidecar(child.id() as i32, &file, "0.05", ["--idle-after", "1"]);
    let text = std::fs::read_to_string(&file).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(!text.contains("activity"), "{text}");
}

// The bell hook (a pane without a transcript: `--no-log`) reaches a heartbeat directory whose
// name holds every character that means something to tmux's parser, its formats or the shell;
// and it marks only its own agent, even beside an agent whose name it prefixes.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn bell_hook_survives_a_hostile_directory_and_a_prefix_name() {
    e2e!();
    bells_reach_a_hostile_directory(true);
}

// The same with transcripts: the writer's bell mark, handed to it through the shell, in that
// directory; no hook is set.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn the_writers_bell_mark_survives_a_hostile_directory_and_a_prefix_name() {
    e2e!();
    bells_reach_a_hostile_directory(false);
}

fn bells_reach_a_hostile_directory(no_log: bool) {
    let sb = Sandbox::new();
    let hb_dir = sb.path("hb it's \"#{session_name}\" $HOME; `x` %s \\");
    let script =
        format!("{WAIT_FOR}echo up\nwait_for ring-$MOSAIC_AGENT_NAME\nprintf '\\a'\nsleep 600\n");
    for agent in ["a", "ab"] {
        let path = sb.path("work").join(format!("{agent}.sh"));
        write_script(&path, &script);
        let mut cmd = sb.launcher(agent);
        cmd.env("MOSAIC_AGENT_COMMAND", format!("sh ./{agent}.sh"))
            .env("MOSAIC_HEARTBEAT_RUN_DIR", &hb_dir)
            .env("MOSAIC_HEARTBEAT_INTERVAL", "30");
        if no_log {
            cmd.arg("--no-log");
        }
        expect_success(&mut cmd);
    }
    let (a, ab) = (hb_dir.join("a.hb"), hb_dir.join("ab.hb"));
    for file in [&a, &ab] {
        wait_for_status(file, Status::Ok, Duration::from_secs(10));
    }
    std::fs::write(sb.path("work").join("ring-ab"), "").unwrap();
    wait_until(
        "ab to say waiting",
        Duration::from_secs(5),
        || read_record(&ab).filter(|r| r.activity == Some(Activity::Waiting)),
        || show_file(&ab),
    );
    // Each session's hook names its own mark: `a`'s was not set on `ab` by prefix.
    for (agent, mark) in [("a", ".a.hb.bell"), ("ab", ".ab.hb.bell")] {
        let hooks = sb.tmux(&["show-hooks", "-t", &format!("={agent}:")]);
        let hooks = String::from_utf8_lossy(&hooks.stdout).into_owned();
        if !no_log {
            assert!(!hooks.contains("alert-bell"), "{agent}: {hooks}");
            continue;
        }
        assert_eq!(hooks.matches("alert-bell").count(), 1, "{agent}: {hooks}");
        assert!(hooks.contains(&format!("/{mark}")), "{agent}: {hooks}");
    }
    let other = read_record(&a).unwrap();
    assert_ne!(other.activity, Some(Activity::Waiting), "{other:?}");
    std::fs::write(sb.path("work").join("ring-a"), "").unwrap();
    wait_until(
        "a to say waiting",
        Duration::from_secs(5),
        || read_record(&a).filter(|r| r.activity == Some(Activity::Waiting)),
        || show_file(&a),
    );
}

// The hook rides on the `new-session` that creates the session (one tmux command: a session
// exists with its hook or not at all), with the exact target `=AGENT:`; `--no-heartbeat`
// installs none (nothing would watch the mark); the sidecar is told the threshold.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn the_hook_is_chained_to_new_session_with_an_exact_target() {
    e2e!();
    let sb = Sandbox::new();
    let fakes = fake_bin(&sb.dir, "88888");
    let mut cmd = sb.launcher("hk");
    // No transcript: its writer and hook would be chained too (transcripts.rs).
    cmd.env("PATH", path_with(&[&fakes]))
        .env("MOSAIC_IDLE_AFTER", "90")
        .arg("--no-log");
    expect_success(&mut cmd);
    let chained = std::fs::read_to_string(sb.path("tmux-chained")).unwrap();
    let bell = sb.hb_dir().join(".hk.hb.bell");
    let hook = format!("run-shell -b 'printf . >> {}'", bell.display());
    assert_eq!(
        chained.lines().collect::<Vec<_>>(),
        ["set-hook", "-t", "=hk:", "alert-bell", hook.as_str()]
    );
    let setsid = std::fs::read(sb.path("setsid-args")).unwrap();
    let setsid: Vec<&[u8]> = setsid.split(|&b| b == 0).collect();
    assert!(
        setsid
            .windows(2)
            .any(|w| w == [&b"--idle-after"[..], b"90"]),
        "{setsid:?}"
    );
    std::fs::remove_file(sb.path("tmux-chained")).unwrap();
    let mut cmd = sb.launcher("quiet");
    cmd.env("PATH", path_with(&[&fakes])).arg("--no-heartbeat");
    expect_success(&mut cmd);
    // The sequence still sets remain-on-exit and the session's mark, but installs no hook.
    let chained = std::fs::read_to_string(sb.path("tmux-chained")).unwrap_or_default();
    assert!(!chained.contains("set-hook"), "a hook without a sidecar");
}

// `mosaic-hb status` shows what the sidecar wrote: the ACTIVITY column (`waiting 0s`), the JSON
// fields, and the Prometheus state set with its start time.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn status_shows_activity_in_every_format() {
    e2e!();
    let sb = Sandbox::new();
    let script = format!("{WAIT_FOR}echo up\nwait_for ring\nprintf 'ok? \\a'\nsleep 600\n");
    launch_script(&sb, "st", &script, "60", "30");
    trigger(&sb, "ring");
    let rec = wait_for_activity(&sb, "st", Activity::Waiting, Duration::from_secs(5));
    let status = |args: &[&str]| {
        let mut cmd = sb.hb();
        cmd.arg("status").args(args).arg(sb.hb_dir());
        expect_success(&mut cmd)
    };
    let table = status(&[]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("AGENT  STATE  ACTIVITY"), "{table}");
    let line = table.lines().nth(1).unwrap();
    assert!(line.starts_with("st     ok     waiting "), "{table}");
    let out = status(&["--json"]);
    let since = rec
        .activity_since
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let row = &json(&out)[0];
    assert_eq!(row["activity"], "waiting", "{out}");
    assert_eq!(row["activity_since"], since.as_str(), "{out}");
    let metrics = status(&["--format", "prometheus"]);
    let series =
        |activity: &str, value: u8| format!("agent=\"st\",activity=\"{activity}\"}} {value}\n");
    for (activity, value) in [("busy", 0), ("idle", 0), ("waiting", 1)] {
        assert!(metrics.contains(&series(activity, value)), "{metrics}");
    }
    let since_s = rec.activity_since.unwrap().timestamp_millis() as f64 / 1000.0;
    let want = format!("agent=\"st\"}} {since_s}");
    assert!(
        metrics.lines().any(|l| {
            l.starts_with("mosaic_agent_activity_since_timestamp_seconds{") && l.ends_with(&want)
        }),
        "{metrics}"
    );
}

// Claude Code's session file, when it names our agent's process (its pid and start time),
// decides the activity: busy through a silent spell, waiting, idle; another process's file is
// ignored; once it is gone, the terminal decides again.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_claude_session_file_decides_while_it_is_there() {
    e2e!();
    let sb = Sandbox::new();
    let sessions = sb.path("claude/sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    // A stranger's session (this test process) says waiting: it must never show.
    let me = std::process::id();
    let my_start = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let my_start = my_start
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(19)
        .unwrap();
    std::fs::write(
        sessions.join(format!("{me}.json")),
        format!(r#"{{"pid":{me},"procStart":"{my_start}","status":"waiting"}}"#),
    )
    .unwrap();
    let script = format!(
        "{WAIT_FOR}start=$(cut -d' ' -f22 /proc/$$/stat)\n\
         dir=\"$CLAUDE_CONFIG_DIR/sessions\"\n\
         say() {{ printf '{{\"pid\":%s,\"procStart\":\"%s\",\"status\":\"%s\",\"statusUpdatedAt\":%s}}' \
         $$ \"$start\" \"$1\" \"$(date +%s%3N)\" > \"$dir/.tmp\"; mv \"$dir/.tmp\" \"$dir/$$.json\"; }}\n\
         echo up\nsay busy\nwait_for waiting\nsay waiting\nwait_for idle\nsay idle\n\
         wait_for gone\nrm \"$dir/$$.json\"\necho back\nsleep 600\n"
    );
    let path = sb.path("work").join("cc.sh");
    write_script(&path, &script);
    let mut cmd = sb.launcher("cc");
    cmd.env("MOSAIC_AGENT_COMMAND", "sh ./cc.sh")
        .env("MOSAIC_IDLE_AFTER", "1")
        .env("MOSAIC_HEARTBEAT_INTERVAL", "0.25")
        .env("CLAUDE_CONFIG_DIR", sb.path("claude"));
    expect_success(&mut cmd);
    let file = sb.hb_file("cc");
    let busy = wait_for_activity(&sb, "cc", Activity::Busy, Duration::from_secs(10));
    // Silent, but its session says busy: busy well past the 1 s threshold.
    wait_until(
        "busy 3 s on",
        Duration::from_secs(10),
        || {
            let rec = read_record(&file)?;
            assert_eq!(rec.activity, Some(Activity::Busy), "{rec:?}");
            (secs(rec.ts - busy.ts) > 3.0).then_some(())
        },
        || show_file(&file),
    );
    let asked = trigger(&sb, "waiting");
    let waiting = wait_for_activity(&sb, "cc", Activity::Waiting, Duration::from_secs(5));
    assert!(secs(waiting.ts - asked) <= 2.0, "{waiting:?}");
    trigger(&sb, "idle");
    wait_for_activity(&sb, "cc", Activity::Idle, Duration::from_secs(5));
    // The file is gone and the agent prints: the terminal says busy again.
    trigger(&sb, "gone");
    wait_for_activity(&sb, "cc", Activity::Busy, Duration::from_secs(5));
}

// `mosaic-fleet ls` shows it too: the ACTIVITY column and the JSON fields.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn fleet_ls_shows_activity() {
    e2e!();
    let sb = Sandbox::new();
    let script = format!("{WAIT_FOR}echo up\nwait_for ring\nprintf 'ok? \\a'\nsleep 600\n");
    launch_script(&sb, "fl", &script, "60", "30");
    trigger(&sb, "ring");
    wait_for_activity(&sb, "fl", Activity::Waiting, Duration::from_secs(5));
    let ls = |json: bool| {
        let mut cmd = fleet(&sb, &["ls"]);
        cmd.args(json.then_some("--json"));
        expect_success(&mut cmd)
    };
    let table = ls(false);
    let mut lines = table.lines().skip(1);
    let header = lines.next().unwrap();
    assert!(header.starts_with("AGENT  STATE    ACTIVITY"), "{table}");
    let row = lines.next().unwrap();
    assert!(row.starts_with("fl     running  waiting "), "{table}");
    let out = ls(true);
    assert_eq!(json(&out)["agents"][0]["activity"], "waiting", "{out}");
}

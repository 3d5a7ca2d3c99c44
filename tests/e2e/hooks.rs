/*!
Event hooks end to end (`--on-event`): real agents in real tmux panes, started by the real
launcher, whose sidecar runs a recording hook. Each event with its variables, a hook that
hangs (beats go on; it is killed with its group at the timeout), a hook that fails, a burst
beyond the queue, hostile values, and the examples of `contrib/hooks/`.
*/

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mosaic_core::record::Status;

use crate::e2e;
use crate::support::*;

/// The hook's variables, in the order the recorder writes them.
const VARS: [&str; 9] = [
    "MOSAIC_AGENT",
    "MOSAIC_EVENT",
    "MOSAIC_PREVIOUS",
    "MOSAIC_EXIT_STATUS",
    "MOSAIC_EXIT_SIGNAL",
    "MOSAIC_RESTARTS",
    "MOSAIC_SOCKET",
    "MOSAIC_HB_FILE",
    "MOSAIC_TIME",
];

/// One hook run, as the recorder wrote it.
#[derive(Debug, Clone)]
struct Seen {
    agent: String,
    event: String,
    previous: String,
    exit_status: String,
    exit_signal: String,
    restarts: String,
    socket: String,
    hb_file: String,
    time: String,
}

/// Writes the recording hook: one line per run, the variables separated by a unit separator,
/// into `events` beside it. Returns the command to give `--on-event`.
fn recorder(sb: &Sandbox) -> String {
    let script = sb.path("record.sh");
    let fields: Vec<String> = VARS.iter().map(|v| format!("\"${v}\"")).collect();
    write_script(
        &script,
        &format!(
            "#!/bin/sh\nprintf '%s\\037%s\\037%s\\037%s\\037%s\\037%s\\037%s\\037%s\\037%s\\n' {} >> '{}'\n",
            fields.join(" "),
            sb.path("events").display()
        ),
    );
    format!("'{}'", script.display())
}

fn seen(sb: &Sandbox) -> Vec<Seen> {
    std::fs::read_to_string(sb.path("events"))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let f: Vec<String> = line.split('\u{1f}').map(String::from).collect();
            assert_eq!(f.len(), VARS.len(), "{line:?}");
            Seen {
                agent: f[0].clone(),
                event: f[1].clone(),
                previous: f[2].clone(),
                exit_status: f[3].clone(),
                exit_signal: f[4].clone(),
                restarts: f[5].clone(),
                socket: f[6].clone(),
                hb_file: f[7].clone(),
                time: f[8].clone(),
            }
        })
        .collect()
}

fn events(sb: &Sandbox) -> Vec<String> {
    seen(sb).into_iter().map(|s| s.event).collect()
}

/// Waits until the hook has run `n` times; returns what it saw.
#[track_caller]
fn wait_for_runs(sb: &Sandbox, n: usize, within: Duration) -> Vec<Seen> {
    wait_until(
        &format!("{n} hook runs"),
        within,
        || Some(seen(sb)).filter(|s| s.len() >= n),
        || format!("{:?}", events(sb)),
    )
}

/// Waits, without printing, until the test creates file `$1`.
const WAIT_FOR: &str = "wait_for() { while [ ! -e \"$1\" ]; do sleep 0.05; done; }\n";

/// Launches `agent` running `script` (sh, in the workdir) with hook `hook` and `extra` flags.
#[track_caller]
fn launch(sb: &Sandbox, agent: &str, script: &str, hook: &str, extra: &[&str]) -> PathBuf {
    let path = sb.path("work").join(format!("{agent}.sh"));
    write_script(&path, script);
    let mut cmd = sb.launcher(agent);
    cmd.env("MOSAIC_AGENT_COMMAND", format!("sh ./{agent}.sh"))
        .env("MOSAIC_ON_EVENT", hook)
        .args(extra);
    expect_success(&mut cmd);
    sb.hb_file(agent)
}

fn touch(sb: &Sandbox, name: &str) {
    std::fs::write(sb.path("work").join(name), "").unwrap();
}

/// The processes whose parent is `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .nth(1);
            ppid == Some(&pid.to_string())
        })
        .collect()
}

// Each event of a supervised agent's life reaches the hook once, in order, with the event
// before it, the exit status of a death, the restarts, the socket, the file and the time;
// between events the sidecar has no child.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn each_event_reaches_the_hook_with_its_variables() {
    e2e!();
    let sb = Sandbox::new();
    let script = format!(
        "{WAIT_FOR}if [ ! -e ran ]; then : > ran\n\
         wait_for talk\nwhile [ ! -e quiet ]; do echo line; sleep 0.1; done\n\
         wait_for die\nexit 3\nfi\n\
         wait_for ask\necho asking\nwait_for ring\nprintf '\\a'\nsleep 600\n"
    );
    let hook = recorder(&sb);
    let restart = [
        "--restart",
        "on-failure",
        "--restart-delay",
        "0.1",
        "--restart-guard",
        "0",
        "--idle-after",
        "1",
    ];
    let file = launch(&sb, "life", &script, &hook, &restart);
    wait_for_runs(&sb, 1, Duration::from_secs(10));
    // Nothing runs between events.
    let hb_pid = read_record(&file).unwrap().hb_pid.unwrap();
    wait_until(
        "the started hook to be reaped",
        Duration::from_secs(5),
        || children_of(hb_pid).is_empty().then_some(()),
        || format!("{:?}", children_of(hb_pid)),
    );
    touch(&sb, "talk");
    wait_for_runs(&sb, 2, Duration::from_secs(10));
    touch(&sb, "quiet");
    wait_for_runs(&sb, 3, Duration::from_secs(10));
    touch(&sb, "die");
    wait_for_runs(&sb, 5, Duration::from_secs(20));
    wait_until(
        "the restarted run's first record",
        Duration::from_secs(10),
        || read_record(&file).filter(|r| r.status == Status::Ok && r.lifecycle.restarts == Some(1)),
        || show_file(&file),
    );
    touch(&sb, "ask");
    wait_for_runs(&sb, 6, Duration::from_secs(10));
    touch(&sb, "ring");
    wait_for_runs(&sb, 7, Duration::from_secs(10));
    expect_success(&mut fleet(&sb, &["stop", "life"]));
    let all = wait_for_runs(&sb, 8, Duration::from_secs(10));
    let got: Vec<[&str; 5]> = all
        .iter()
        .map(|s| {
            [
                s.event.as_str(),
                s.previous.as_str(),
                s.exit_status.as_str(),
                s.exit_signal.as_str(),
                s.restarts.as_str(),
            ]
        })
        .collect();
    assert_eq!(
        got,
        [
            ["started", "", "", "", "0"],
            ["busy", "started", "", "", "0"],
            ["idle", "busy", "", "", "0"],
            ["restarting", "idle", "3", "", "0"],
            ["started", "restarting", "", "", "1"],
            ["busy", "started", "", "", "1"],
            ["waiting", "busy", "", "", "1"],
            ["stopped", "waiting", "", "", "1"],
        ]
    );
    let mut last: Option<DateTime<Utc>> = None;
    for s in &all {
        assert_eq!(s.agent, "life");
        assert_eq!(s.socket, sb.socket);
        assert_eq!(Path::new(&s.hb_file), file);
        let at = DateTime::parse_from_rfc3339(&s.time).unwrap().to_utc();
        assert!(last.is_none_or(|l| l <= at), "{all:?}");
        last = Some(at);
    }
    let rec = read_record(&file).unwrap();
    assert_eq!(rec.status, Status::Stopped);
    assert_eq!(
        (rec.lifecycle.hook_failures, rec.lifecycle.hook_dropped),
        (Some(0), Some(0)),
        "{}",
        show_file(&file)
    );
    // The stop's hook ran after the stop had let go, and its sidecar then left.
    wait_gone(hb_pid);
    assert_eq!(events(&sb).len(), 8);
}

// A death its policy does not restart is `exited` with its status, and a policy that gives up
// ends in `failed` with the last exit status or signal. (Under a policy tmux's own word says
// how the pane died: without one the sidecar may find the zombie reaped already.)
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn exited_and_failed_carry_how_the_agent_ended() {
    e2e!();
    let sb = Sandbox::new();
    let hook = recorder(&sb);
    let on_failure = ["--restart", "on-failure", "--restart-burst", "1"];
    let script = format!("{WAIT_FOR}wait_for end\nexit 0\n");
    launch(&sb, "ends", &script, &hook, &on_failure);
    wait_for_runs(&sb, 1, Duration::from_secs(10));
    touch(&sb, "end");
    let ends = wait_for_runs(&sb, 2, Duration::from_secs(10));
    let got = |s: &Seen| {
        [s.agent.clone(), s.event.clone(), s.previous.clone()]
            .into_iter()
            .chain([
                s.exit_status.clone(),
                s.exit_signal.clone(),
                s.restarts.clone(),
            ])
            .collect::<Vec<String>>()
    };
    assert_eq!(got(&ends[1]), ["ends", "exited", "started", "0", "", "0"]);
    let killed = launch(&sb, "killed", "exec sleep 600\n", &hook, &on_failure);
    wait_for_runs(&sb, 3, Duration::from_secs(10));
    signal(sb.pane_pid("killed"), libc::SIGKILL);
    let runs = wait_for_runs(&sb, 4, Duration::from_secs(10));
    assert_eq!(got(&runs[3]), ["killed", "failed", "started", "", "9", "0"]);
    wait_for_status(&killed, Status::Failed, Duration::from_secs(5));
    let flags = [
        "--restart",
        "on-failure",
        "--restart-delay",
        "0.1",
        "--restart-burst",
        "2",
        "--restart-guard",
        "0",
    ];
    let gives = launch(&sb, "gives", "sleep 0.3\nexit 1\n", &hook, &flags);
    wait_for_status(&gives, Status::Failed, Duration::from_secs(20));
    let mine: Vec<Seen> = wait_until(
        "the failed hook",
        Duration::from_secs(10),
        || {
            let mine: Vec<Seen> = seen(&sb)
                .into_iter()
                .filter(|s| s.agent == "gives")
                .collect();
            mine.last()
                .is_some_and(|s| s.event == "failed")
                .then_some(mine)
        },
        || format!("{:?}", events(&sb)),
    );
    let got: Vec<[&str; 4]> = mine
        .iter()
        .map(|s| [s.event.as_str(), &s.previous, &s.exit_status, &s.restarts])
        .collect();
    assert_eq!(
        got,
        [
            ["started", "", "", "0"],
            ["restarting", "started", "1", "0"],
            ["started", "restarting", "", "1"],
            ["failed", "started", "1", "1"],
        ]
    );
}

// A hook that hangs does not hold the beats up; at the timeout its whole process group is
// killed (a child it left in the background too), and it counts as a failure; the log says so.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_hanging_hook_is_killed_with_its_group_at_the_timeout() {
    e2e!();
    let sb = Sandbox::new();
    let pids = sb.path("pids");
    let hook = format!(
        "sleep 1000 & echo \"$$ $!\" > '{}'; echo hanging; wait",
        pids.display()
    );
    let file = launch(&sb, "hang", "sleep 600\n", &hook, &["--hook-timeout", "2"]);
    let (shell, child): (i32, i32) = wait_until(
        "the hook's pids",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&pids).ok()?;
            let (a, b) = text.trim().split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        },
        || show_file(&pids),
    );
    sb.track(shell);
    sb.track(child);
    // Beats go on meanwhile: the record's time moves while the hook is still there.
    let first = read_record(&file).unwrap();
    let later = wait_until(
        "a later beat",
        Duration::from_secs(5),
        || read_record(&file).filter(|r| r.ts > first.ts && r.seq > first.seq),
        || show_file(&file),
    );
    assert!(alive(shell) && alive(child), "the hook ended too soon");
    assert_eq!(later.lifecycle.hook_failures, Some(0), "{later:?}");
    wait_gone(shell);
    wait_gone(child);
    let rec = wait_until(
        "hook_failures=1",
        Duration::from_secs(5),
        || read_record(&file).filter(|r| r.lifecycle.hook_failures == Some(1)),
        || show_file(&file),
    );
    assert_eq!(rec.status, Status::Ok);
    let log = std::fs::read_to_string(sb.hb_dir().join(".hang.hb.hook.log")).unwrap();
    assert!(log.contains("hanging\n"), "{log}");
    assert!(log.contains("started hook: killed after 2s"), "{log}");
}

// A hook that exits non-zero counts as a failure; its output is kept in the hooks' log, a
// file of the owner's only.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_failing_hook_is_counted_and_its_output_kept() {
    e2e!();
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let hook = "echo \"said $MOSAIC_EVENT\"; echo oops >&2; exit 7";
    let file = launch(&sb, "fails", "sleep 600\n", hook, &[]);
    let rec = wait_until(
        "hook_failures=1",
        Duration::from_secs(10),
        || read_record(&file).filter(|r| r.lifecycle.hook_failures == Some(1)),
        || show_file(&file),
    );
    assert_eq!(rec.lifecycle.hook_dropped, Some(0));
    let log_path = sb.hb_dir().join(".fails.hb.hook.log");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("said started\noops\n"), "{log}");
    assert!(log.contains("started hook: exit status 7"), "{log}");
    let mode = std::fs::metadata(&log_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // status and ls read the new keys (and --json says nothing wrong about them).
    let out = expect_success(sb.hb().args(["status", "--json"]).arg(sb.hb_dir()));
    assert!(
        out.contains("\"hook_failures\":1,\"hook_dropped\":0}"),
        "{out}"
    );
    let out = expect_success(&mut fleet(&sb, &["ls", "--json"]));
    assert!(out.contains("\"fails\""), "{out}");
}

// A burst of events while a hook runs: the first QUEUE wait, in order, the rest are dropped
// and counted; the final event is never dropped.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_burst_is_queued_in_order_and_beyond_the_bound_dropped() {
    e2e!();
    let sb = Sandbox::new();
    let recorder = recorder(&sb);
    let go = sb.path("go");
    // The first hook waits for the test: every later event queues behind it.
    let hook = format!(
        "[ \"$MOSAIC_EVENT\" = started ] && [ \"$MOSAIC_RESTARTS\" = 0 ] && \
         while [ ! -e '{}' ]; do sleep 0.05; done; {recorder}",
        go.display()
    );
    let flags = [
        "--restart",
        "always",
        "--restart-delay",
        "0.05",
        "--restart-max-delay",
        "0.05",
        "--restart-burst",
        "12",
        "--restart-guard",
        "0",
        "--hook-timeout",
        "120",
    ];
    let file = launch(&sb, "burst", "sleep 0.3\nexit 1\n", &hook, &flags);
    let rec = wait_for_status(&file, Status::Failed, Duration::from_secs(60));
    std::fs::write(&go, "").unwrap();
    let restarts = rec.lifecycle.restarts.unwrap() as usize;
    // started, a restarting and a started per restart, failed.
    let total = 2 + 2 * restarts;
    assert!(total > 1 + 16, "not a burst: {total} events");
    let all = wait_for_runs(&sb, 1 + 16, Duration::from_secs(30));
    assert_eq!(
        rec.lifecycle.hook_dropped,
        Some((total - 17) as u32),
        "{rec:?}"
    );
    let got: Vec<&str> = all.iter().map(|s| s.event.as_str()).collect();
    let mut want = vec!["started"];
    for _ in 0..7 {
        want.extend(["restarting", "started"]);
    }
    want.extend(["restarting", "failed"]);
    assert_eq!(got, want);
    // The restarts each queued event saw are its own, in order.
    let counts: Vec<u32> = all.iter().map(|s| s.restarts.parse().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
}

// Hostile values never reach the shell's command string: a heartbeat directory full of
// quotes and `$(...)` arrives in MOSAIC_HB_FILE as it is, nothing in it runs, and a hook
// command with quotes of its own runs as written, also after `mosaic-fleet restart`.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn hostile_values_stay_in_the_environment() {
    e2e!();
    let sb = Sandbox::new();
    let dir = sb.path("h'b \"$(touch PWNED)\" `touch PWNED2`;x");
    let out = sb.path("out");
    let hook = format!(
        "printf '%s|%s\\n' \"it's \\\"$MOSAIC_EVENT\\\"\" \"$MOSAIC_HB_FILE\" >> '{}'",
        out.display()
    );
    let mut cmd = sb.launcher("odd");
    cmd.env("MOSAIC_HEARTBEAT_RUN_DIR", &dir)
        .env("MOSAIC_ON_EVENT", &hook)
        .env("MOSAIC_AGENT_COMMAND", "sleep 600");
    expect_success(&mut cmd);
    let file = dir.join("odd.hb");
    let line = |n: usize| {
        wait_until(
            &format!("{n} lines"),
            Duration::from_secs(10),
            || {
                let text = std::fs::read_to_string(&out).ok()?;
                let lines: Vec<String> = text.lines().map(String::from).collect();
                (lines.len() >= n).then_some(lines)
            },
            || show_file(&out),
        )
    };
    let want = |event: &str| format!("it's \"{event}\"|{}", file.display());
    assert_eq!(line(1), [want("started")]);
    let mut restart = fleet(&sb, &["restart", "odd"]);
    restart.env("MOSAIC_HEARTBEAT_RUN_DIR", &dir);
    expect_success(&mut restart);
    // The old sidecar's `stopped` and the new one's `started` may run in either order.
    let mut lines = line(3);
    assert_eq!(lines[0], want("started"));
    lines[1..].sort();
    assert_eq!(lines[1..], [want("started"), want("stopped")]);
    for pwned in ["PWNED", "PWNED2"] {
        assert!(!sb.path(pwned).exists() && !Path::new("/").join(pwned).exists());
    }
    expect_success(fleet(&sb, &["stop", "odd"]).env("MOSAIC_HEARTBEAT_RUN_DIR", &dir));
}

// A sidecar leaves once its last hook (the `stopped` event's, after the final record) is done:
// one whose hook ended between two of its looks slept on for an hour (half of the runs of
// `hostile_values_stay_in_the_environment` left one behind).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_sidecar_leaves_once_its_last_hook_is_done() {
    e2e!();
    let sb = Sandbox::new();
    let hook = format!("echo \"$MOSAIC_EVENT\" >> '{}'", sb.path("out").display());
    for n in 0..8 {
        let agent = format!("last{n}");
        expect_success(
            sb.launcher(&agent)
                .env("MOSAIC_ON_EVENT", &hook)
                .env("MOSAIC_AGENT_COMMAND", "sleep 600"),
        );
        let record = wait_for_status(&sb.hb_file(&agent), Status::Ok, Duration::from_secs(10));
        let sidecar = record.hb_pid.expect("the sidecar says its pid");
        expect_success(&mut fleet(&sb, &["stop", &agent]));
        wait_gone(sidecar);
    }
    let out = std::fs::read_to_string(sb.path("out")).unwrap();
    assert_eq!(out.matches("stopped").count(), 8, "{out}");
}

/// `contrib/hooks/NAME`.
fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib/hooks")
        .join(name)
}

/// A stand-in for `program` in `dir` that appends its argv (each argument in brackets) and
/// what it read on stdin (in angle brackets, a newline as `|`, for curl) to `calls`, one whole
/// line per call.
fn recording_program(dir: &Path, program: &str, calls: &Path, stdin: bool) {
    let read = if stdin {
        "printf ' <'; tr '\\n' '|'; printf '>'"
    } else {
        ":"
    };
    write_script(
        &dir.join(program),
        &format!(
            "#!/bin/sh\nline=$(printf '%s' {program}; printf ' [%s]' \"$@\"; {read})\n\
             printf '%s\\n' \"$line\" >> '{}'\n",
            calls.display()
        ),
    );
}

// The desktop notification, ntfy and webhook examples call their programs as their contract
// says, with what happened: nothing for an event they let pass, the exit for `exited`.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn contrib_notify_send_ntfy_and_webhook_hooks_call_their_programs() {
    e2e!();
    let sb = Sandbox::new();
    let bin = sb.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = sb.path("calls");
    recording_program(&bin, "notify-send", &calls, false);
    recording_program(&bin, "curl", &calls, true);
    let hook = ["notify-send.sh", "ntfy.sh", "webhook.sh"]
        .map(|name| format!("'{}'", contrib(name).display()))
        .join("; ");
    let path = path_with(&[&bin]);
    let script = sb.path("work").join("ends.sh");
    write_script(&script, &format!("{WAIT_FOR}wait_for end\nexit 0\n"));
    let mut cmd = sb.launcher("ends");
    cmd.env("MOSAIC_AGENT_COMMAND", "sh ./ends.sh")
        .env("MOSAIC_ON_EVENT", &hook)
        .env("MOSAIC_NTFY_URL", "https://ntfy.example/topic")
        .env("MOSAIC_WEBHOOK_URL", "https://hooks.example/x")
        .env("PATH", &path)
        .args(["--restart", "on-failure"]);
    expect_success(&mut cmd);
    let lines = |n: usize| {
        wait_until(
            &format!("{n} calls"),
            Duration::from_secs(10),
            || {
                let text = std::fs::read_to_string(&calls).ok()?;
                let lines: Vec<String> = text.lines().map(String::from).collect();
                (lines.len() >= n).then_some(lines)
            },
            || show_file(&calls),
        )
    };
    let started = lines(1);
    let file = sb.hb_file("ends");
    let rec = wait_until(
        "the started hook to be done",
        Duration::from_secs(10),
        || read_record(&file).filter(|r| r.lifecycle.hook_failures == Some(0)),
        || show_file(&file),
    );
    assert_eq!(
        started.len(),
        1,
        "only the webhook tells of a start: {started:?}"
    );
    assert!(
        started[0].starts_with(
            "curl [--silent] [--show-error] [--fail] [--max-time] [10] [--header] \
             [Content-Type: application/json] [--data-binary] [@-] [--] [https://hooks.example/x] \
             <{\"text\":\"mosaic: ends started\",\"agent\":\"ends\",\"event\":\"started\",\
             \"previous\":\"\",\"exit_status\":null,\"exit_signal\":null,\"restarts\":0,\"time\":\""
        ),
        "{started:?}"
    );
    touch(&sb, "end");
    let all = lines(4);
    let time = wait_for_status(&file, Status::Exited, Duration::from_secs(5)).ts;
    assert!(time >= rec.ts);
    let when = |line: &str| {
        let at = line.find("(20").expect("a time") + 1;
        line[at..at + 24].to_string()
    };
    let at = when(&all[1]);
    assert_eq!(
        all[1],
        format!(
            "notify-send [--app-name=mosaic-fleet] [--urgency=normal] [--] [mosaic: ends] \
             [ends exited with status 0 ({at})]"
        )
    );
    assert_eq!(
        all[2],
        format!(
            "curl [--silent] [--show-error] [--fail] [--max-time] [10] [--header] \
             [Title: mosaic: ends exited] [--header] [Priority: high] [--header] [Tags: robot] \
             [--data-binary] [@-] [--] [https://ntfy.example/topic] \
             <ends exited (status 0) at {at}|>"
        )
    );
    assert!(
        all[3].ends_with(&format!(
            "<{{\"text\":\"mosaic: ends exited\",\"agent\":\"ends\",\"event\":\"exited\",\
             \"previous\":\"started\",\"exit_status\":0,\"exit_signal\":null,\"restarts\":0,\
             \"time\":\"{at}\"}}|>"
        )),
        "{all:?}"
    );
}

/// Kills a tmux server of the test's own when dropped.
struct Server(String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .env_remove("TMUX")
            .output();
    }
}

// The tmux example shows its message on the operator's own tmux server (here one with a
// client attached from a pane of the sandbox's server, whose screen the test reads).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn contrib_tmux_hook_shows_a_message_on_the_operator_s_server() {
    e2e!();
    let sb = Sandbox::new();
    let ops = Server(format!("{}-ops", sb.socket));
    let own = |args: &[&str]| {
        let out = std::process::Command::new("tmux")
            .args(["-L", &ops.0, "-f", "/dev/null"])
            .args(args)
            .env("HOME", sb.path("home"))
            .env_remove("TMUX")
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    own(&["new-session", "-d", "-s", "desk", "sleep 600"]);
    let attach = format!("env -u TMUX tmux -L '{}' attach -t =desk", ops.0);
    let viewer = sb.tmux(&[
        "new-session",
        "-d",
        "-s",
        "viewer",
        "-x",
        "120",
        "-y",
        "10",
        &attach,
    ]);
    assert!(viewer.status.success(), "{viewer:?}");
    wait_until(
        "a client on the operator's server",
        Duration::from_secs(10),
        || (!own(&["list-clients"]).is_empty()).then_some(()),
        String::new,
    );
    let script = sb.path("work").join("asks.sh");
    write_script(&script, &format!("{WAIT_FOR}wait_for end\nexit 0\n"));
    let mut cmd = sb.launcher("asks");
    cmd.env("MOSAIC_AGENT_COMMAND", "sh ./asks.sh")
        .env(
            "MOSAIC_ON_EVENT",
            format!("'{}'", contrib("tmux-message.sh").display()),
        )
        .env("MOSAIC_NOTIFY_TMUX_SOCKET", &ops.0)
        .args(["--restart", "on-failure"]);
    expect_success(&mut cmd);
    touch(&sb, "end");
    let screen = || {
        let out = sb.tmux(&["capture-pane", "-p", "-t", "=viewer:"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(
        "the message on the operator's screen",
        Duration::from_secs(10),
        || screen().contains("mosaic: asks exited").then_some(()),
        screen,
    );
    let file = sb.hb_file("asks");
    let rec = wait_for_status(&file, Status::Exited, Duration::from_secs(5));
    assert_eq!(rec.lifecycle.hook_failures, Some(0), "{}", show_file(&file));
}

// A fleet file's `on_event` and `hook_timeout` reach the sidecar, and a changed hook is a
// change `diff` names (and `up` restarts the agent for).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_fleet_file_names_the_hook_and_diff_sees_it_change() {
    e2e!();
    let sb = Sandbox::new();
    let hook = recorder(&sb);
    let write = |hook: &str| {
        let text = format!(
            "[fleet]\nsocket = \"{}\"\nhb_dir = \"hb\"\n\n[defaults]\nhb_interval = 0.2\n\
             on_event = {hook:?}\nhook_timeout = 5\n\n[agents.filed]\ncommand = \"sleep 600\"\n",
            sb.socket
        );
        std::fs::write(sb.path("mosaic.toml"), text).unwrap();
    };
    let up = |args: &[&str]| {
        let mut cmd = sb.isolated("mosaic-fleet");
        cmd.args(args).current_dir(&sb.dir);
        cmd
    };
    write(&hook);
    expect_success(&mut up(&["up"]));
    let runs = wait_for_runs(&sb, 1, Duration::from_secs(10));
    assert_eq!(
        [runs[0].agent.as_str(), &runs[0].event],
        ["filed", "started"]
    );
    let launch = std::fs::read_to_string(sb.hb_dir().join(".filed.launch")).unwrap();
    assert!(launch.contains("\nhook_timeout=5\n"), "{launch}");
    expect_success(&mut up(&["diff"]));
    write(&format!("{hook} # another"));
    let (diff, _) = expect_exit(&mut up(&["diff"]), 3);
    assert!(
        diff.contains("~ restart filed (on_event changed)"),
        "{diff}"
    );
    expect_success(&mut up(&["down"]));
}

// A bad hook timeout, or a hook without the sidecar that would run it, is bad input: exit 2,
// the flag named, nothing started.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn hook_flags_are_checked_before_anything_starts() {
    e2e!();
    let sb = Sandbox::new();
    for (args, says) in [
        (
            &["--on-event", "true", "--hook-timeout", "0"][..],
            "--hook-timeout",
        ),
        (&["--hook-timeout", "3601"][..], "MOSAIC_HOOK_TIMEOUT"),
        (
            &["--on-event", "true", "--no-heartbeat"][..],
            "--no-heartbeat",
        ),
    ] {
        let (_, err) = expect_exit(sb.launcher("early").args(args), 2);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!sb.has_session("early"), "{args:?}");
    }
    assert!(!sb.hb_file("early").exists());
}

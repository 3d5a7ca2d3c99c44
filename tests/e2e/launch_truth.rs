/*!
Launch truth (issue 9): "started" means the agent's command was executed; a dead pane keeps why
it died and is started again; any `default-shell`; a tmux that hangs; one name on two sockets;
and the sidecar healing of issue 16 (stopped or late sidecars, a relative `HOME`).
*/

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::e2e;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

/// `#{...}` of the agent's active pane (no index assumed).
fn pane_format(sb: &Sandbox, agent: &str, format: &str) -> String {
    let out = sb.tmux(&["display-message", "-p", "-t", &format!("={agent}:"), format]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn active_pane_pid(sb: &Sandbox, agent: &str) -> i32 {
    let pid = pane_format(sb, agent, "#{pane_pid}");
    pid.parse()
        .unwrap_or_else(|_| panic!("no pane pid for {agent}: {pid:?}"))
}

fn cmdline(pid: i32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

// 100 launches of a command that does not exist: 100 exits of 1, each naming the agent,
// status 127 and `not found` (then the shell's own message, when tmux kept it: it can lose the
// end of a pane's output when the pane dies while it is read); the session is gone each time, no sidecar is left
// and no heartbeat file was written.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_command_not_found_fails_every_time() {
    e2e!();
    let sb = Sandbox::new();
    let mut with_message = 0;
    for i in 0..100 {
        let mut cmd = sb.launcher("typo");
        cmd.env("MOSAIC_AGENT_COMMAND", "nosuchcmd");
        let (out, err) = expect_exit(&mut cmd, 1);
        assert!(out.is_empty(), "run {i}: {out}");
        assert!(
            err.starts_with(
                "mosaic-launcher: agent typo exited at once with status 127 (command not found)"
            ) && err.contains("not found")
                && err.lines().count() == 1,
            "run {i}: {err}"
        );
        assert!(!sb.has_session("typo"), "run {i}: the session was left");
        with_message += usize::from(err.contains(": /bin/sh: 1: exec: nosuchcmd: not found"));
    }
    eprintln!("{with_message} of 100 carried the shell's whole message");
    assert!(
        with_message > 0,
        "the shell's message never reached the report"
    );
    assert!(sidecars_writing_under(&sb.dir).is_empty());
    assert!(
        !sb.hb_file("typo").exists(),
        "a failed launch wrote a record"
    );
}

// Commands that cannot be executed: not executable (126), a bad interpreter, a directory.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn commands_that_cannot_be_executed_fail_with_the_shells_status() {
    e2e!();
    let sb = Sandbox::new();
    let plain = sb.path("work/plain");
    std::fs::write(&plain, "just text\n").unwrap();
    let bad_interp = sb.path("work/bad-interp");
    write_script(&bad_interp, "#!/nonexistent/interpreter\n");
    // The shell's own message follows the status (tmux may cut its end: the pane dies while
    // its last output is read), so the test holds to the status and its meaning.
    let cases = [
        (plain.display().to_string(), "status 126 (not executable)"),
        (
            bad_interp.display().to_string(),
            "status 127 (command not found)",
        ),
        (
            sb.path("work").display().to_string(),
            "status 126 (not executable)",
        ),
    ];
    for (command, status) in cases {
        let mut cmd = sb.launcher("bad");
        cmd.env("MOSAIC_AGENT_COMMAND", &command);
        let (_, err) = expect_exit(&mut cmd, 1);
        assert!(
            err.contains(&format!("agent bad exited at once with {status}")),
            "{command}: {err}"
        );
        assert!(!sb.has_session("bad"), "{command}: the session was left");
    }
}

// "started" means executed: right when the launcher returns, the pane's process is the agent
// (its own command line, its own executable), and the record is there.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn started_means_the_command_was_executed() {
    e2e!();
    let sb = Sandbox::new();
    for i in 0..20 {
        let agent = format!("exec{i}");
        let out = expect_success(sb.launcher(&agent).env("MOSAIC_AGENT_COMMAND", "sleep 600"));
        assert!(out.starts_with(&format!("started agent {agent}")), "{out}");
        let pid = active_pane_pid(&sb, &agent);
        assert_eq!(cmdline(pid), b"sleep\x00600\x00", "{agent}");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(exe.ends_with("sleep"), "{}", exe.display());
        let rec = read_record(&sb.hb_file(&agent)).expect("the record exists at once");
        assert_eq!(rec.pid, pid);
    }
}

// --settle (MOSAIC_SETTLE) also waits for a crash after the exec; an agent that outlives it
// is started.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn settle_catches_a_crash_after_exec() {
    e2e!();
    let sb = Sandbox::new();
    let mut cmd = sb.launcher("crash");
    cmd.env("MOSAIC_AGENT_COMMAND", "sh -c 'sleep 0.3; exit 4'")
        .args(["--settle", "3"]);
    let (_, err) = expect_exit(&mut cmd, 1);
    assert!(
        err.starts_with("mosaic-launcher: agent crash exited at once with status 4"),
        "{err}"
    );
    assert!(!sb.has_session("crash"));
    let mut cmd = sb.launcher("crash");
    cmd.env("MOSAIC_AGENT_COMMAND", "sh -c 'kill -TERM $$'")
        .env("MOSAIC_SETTLE", "3");
    let (_, err) = expect_exit(&mut cmd, 1);
    assert!(err.contains("with signal 15"), "{err}");
    let out = expect_success(sb.launcher("steady").env("MOSAIC_SETTLE", "0.3"));
    assert!(out.starts_with("started agent steady"), "{out}");
    let (_, err) = expect_exit(sb.launcher("x").env("MOSAIC_SETTLE", "soon"), 2);
    assert!(err.contains("invalid settle time"), "{err}");
}

// A dead pane keeps its status, time and last output; a relaunch starts it again in the same
// session and says so (never "already running"); the same for a signal.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_dead_pane_keeps_why_and_is_restarted() {
    e2e!();
    let sb = Sandbox::new();
    let flag = sb.path("work/first-run-done");
    let command = format!(
        "sh -c 'if [ -e {0} ]; then exec sleep 600; fi; touch {0}; echo last words here; sleep 0.5; exit 7'",
        flag.display()
    );
    let out = expect_success(sb.launcher("dies").env("MOSAIC_AGENT_COMMAND", &command));
    assert!(out.starts_with("started agent dies"), "{out}");
    let first = active_pane_pid(&sb, "dies");
    // tmux 3.3a keeps the status and time once it has reaped the process; it sometimes misses
    // the SIGCHLD, and the pane stays dead without them, its process an unreaped zombie (the
    // launcher reads that zombie's own status). Wait for one or the other, exactly.
    let kept = wait_until(
        "the pane to be dead with its status kept by tmux or its zombie",
        WAIT,
        || match pane_format(&sb, "dies", "#{pane_dead}:#{pane_dead_status}").as_str() {
            "1:7" => Some(true),
            "1:" if zombie_wait_status(first) == Some(7 << 8) => Some(false),
            _ => None,
        },
        || pane_format(&sb, "dies", "#{pane_dead}:#{pane_dead_status}"),
    );
    if kept {
        assert!(!pane_format(&sb, "dies", "#{pane_dead_time}").is_empty());
    }
    let screen = sb.tmux(&["capture-pane", "-p", "-S", "-", "-t", "=dies:"]);
    assert!(
        String::from_utf8_lossy(&screen.stdout).contains("last words here"),
        "{screen:?}"
    );
    wait_for_status(&sb.hb_file("dies"), Status::Exited, WAIT);

    let out = expect_success(sb.launcher("dies").env("MOSAIC_AGENT_COMMAND", &command));
    assert!(
        out.starts_with("restarted agent dies") && out.contains("its last run ended with status 7"),
        "{out}"
    );
    assert!(!out.contains("already running"), "{out}");
    let second = active_pane_pid(&sb, "dies");
    assert_ne!(first, second);
    assert_eq!(sb.session_count(), 1);
    let rec = wait_for_status(&sb.hb_file("dies"), Status::Ok, WAIT);
    assert_eq!(rec.pid, second);

    // Killed by a signal: the relaunch names it.
    signal(second, libc::SIGKILL);
    wait_until(
        "the pane to be dead by signal 9, kept by tmux or its zombie",
        WAIT,
        || match pane_format(&sb, "dies", "#{pane_dead}:#{pane_dead_signal}").as_str() {
            "1:9" => Some(()),
            "1:" if zombie_wait_status(second) == Some(libc::SIGKILL) => Some(()),
            _ => None,
        },
        || pane_format(&sb, "dies", "#{pane_dead}:#{pane_dead_signal}"),
    );
    let out = expect_success(
        sb.launcher("dies")
            .env("MOSAIC_AGENT_COMMAND", &command)
            .arg("--json"),
    );
    let report = json(&out);
    assert_eq!(report["status"], "restarted", "{out}");
    assert_eq!(report["previous_signal"], 9, "{out}");
    // Live now: only now is it "already running".
    let out = expect_success(sb.launcher("dies").env("MOSAIC_AGENT_COMMAND", &command));
    assert!(out.contains("already running"), "{out}");
}

// The session is created with remain-on-exit by the very tmux command that creates it, whatever
// the user's configuration says.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn remain_on_exit_is_set_by_the_creating_command() {
    e2e!();
    let sb = Sandbox::new();
    std::fs::write(
        sb.path("home/.tmux.conf"),
        "set -g remain-on-exit off\nsetw -g remain-on-exit off\n",
    )
    .unwrap();
    expect_success(&mut sb.launcher("keep"));
    assert_eq!(
        String::from_utf8_lossy(
            &sb.tmux(&["show-options", "-p", "-v", "-t", "=keep:", "remain-on-exit"])
                .stdout
        )
        .trim(),
        "on"
    );
    // A quick death is kept too: the pane of a started agent that ends stays, dead.
    let out = expect_success(
        sb.launcher("brief")
            .env("MOSAIC_AGENT_COMMAND", "sleep 0.3")
            .arg("--no-heartbeat"),
    );
    assert!(out.starts_with("started agent brief"), "{out}");
    wait_until(
        "the brief pane to be dead",
        WAIT,
        || (pane_format(&sb, "brief", "#{pane_dead}") == "1").then_some(()),
        || pane_format(&sb, "brief", "#{pane_dead}:#{pane_dead_status}"),
    );
}

// A tmux server whose default-shell is elvish (not a POSIX shell): the pane still runs the
// POSIX pane command, with the runtime-bin on PATH, and the pane's process is the agent.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn any_default_shell_elvish() {
    e2e!();
    let elvish = ["/usr/bin/elvish", "/bin/elvish", "/usr/local/bin/elvish"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("elvish is installed (apt-get install elvish; .ci/run does)");
    let sb = Sandbox::new();
    std::fs::write(
        sb.path("home/.tmux.conf"),
        format!("set -g default-shell {elvish}\n"),
    )
    .unwrap();
    let rt = sb.path("runtime bin");
    std::fs::create_dir_all(&rt).unwrap();
    let out = expect_success(
        sb.launcher("e2")
            .env("MOSAIC_RUNTIME_BIN", &rt)
            .env("MOSAIC_AGENT_COMMAND", "sleep 600"),
    );
    assert!(out.starts_with("started agent e2"), "{out}");
    assert_eq!(
        String::from_utf8_lossy(
            &sb.tmux(&["show-options", "-g", "-v", "default-shell"])
                .stdout
        )
        .trim(),
        elvish
    );
    let pid = active_pane_pid(&sb, "e2");
    assert_eq!(cmdline(pid), b"sleep\x00600\x00");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let path = environ
        .split(|&b| b == 0)
        .find(|v| v.starts_with(b"PATH="))
        .unwrap();
    assert!(
        path.starts_with(format!("PATH={}:", rt.display()).as_bytes()),
        "{}",
        String::from_utf8_lossy(path)
    );
    let rec = wait_for_status(&sb.hb_file("e2"), Status::Ok, WAIT);
    assert_eq!(rec.pid, pid);
}

// A tmux that hangs: the launcher gives up at MOSAIC_TMUX_TIMEOUT, exit 1 naming tmux and the
// subcommand; the hung client and what it forked are killed; no sidecar is left.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_hung_tmux_is_cut_off() {
    e2e!();
    let sb = Sandbox::new();
    let bin = sb.path("hung-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let pids = sb.path("hung-pids");
    write_script(
        &bin.join("tmux"),
        &format!(
            "#!/bin/sh\nsleep 600 &\necho $! >> '{}'\nwait\n",
            pids.display()
        ),
    );
    let mut cmd = sb.launcher("hang");
    cmd.env("PATH", path_with(&[&bin]))
        .env("MOSAIC_TMUX_TIMEOUT", "0.5");
    let (_, err) = expect_exit(&mut cmd, 1);
    assert!(
        err.starts_with("mosaic-launcher: tmux new-session on socket ")
            && err.contains("timed out after 0.5s (MOSAIC_TMUX_TIMEOUT)"),
        "{err}"
    );
    let text = std::fs::read_to_string(&pids).unwrap();
    for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        wait_gone(pid);
    }
    assert!(sidecars_writing_under(&sb.dir).is_empty());
    assert!(!sb.hb_file("hang").exists());
    // The flag form, and a bad value.
    let mut cmd = sb.launcher("hang");
    cmd.env("PATH", path_with(&[&bin]))
        .args(["--tmux-timeout", "0.2"]);
    let (_, err) = expect_exit(&mut cmd, 1);
    assert!(err.contains("timed out after 0.2s"), "{err}");
    let (_, err) = expect_exit(sb.launcher("hang").env("MOSAIC_TMUX_TIMEOUT", "0"), 2);
    assert!(err.contains("invalid tmux timeout"), "{err}");
}

// The same name on two sockets with one heartbeat dir: the second launch fails (exit 1), names
// the file, the pid it watches and the way out, and removes the session it created; the first
// agent's heartbeat is untouched.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn one_name_on_two_sockets_is_refused() {
    e2e!();
    let a = Sandbox::new();
    let b = Sandbox::new();
    expect_success(&mut a.launcher("x"));
    let rec = wait_for_status(&a.hb_file("x"), Status::Ok, WAIT);
    let mut cmd = b.launcher("x");
    cmd.env("MOSAIC_HEARTBEAT_RUN_DIR", a.hb_dir());
    let (out, err) = expect_exit(&mut cmd, 1);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("heartbeat file {}", a.hb_file("x").display()))
            && err.contains(&format!("for pid {}", rec.pid))
            && err.contains("MOSAIC_HEARTBEAT_RUN_DIR"),
        "{err}"
    );
    assert!(!b.has_session("x"), "the refused launch left its session");
    let later = wait_until(
        "a later beat",
        WAIT,
        || read_record(&a.hb_file("x")).filter(|r| r.seq > rec.seq),
        || show_file(&a.hb_file("x")),
    );
    assert_eq!((later.pid, later.hb_pid), (rec.pid, rec.hb_pid));
    // B's agent already running without a sidecar (started with --no-heartbeat): its relaunch
    // with A's dir is refused the same way, and B's session stays.
    expect_success(b.launcher("x").arg("--no-heartbeat"));
    let mut cmd = b.launcher("x");
    cmd.env("MOSAIC_HEARTBEAT_RUN_DIR", a.hb_dir());
    let (_, err) = expect_exit(&mut cmd, 1);
    assert!(err.contains(&format!("for pid {}", rec.pid)), "{err}");
    assert!(b.has_session("x"));
}

// A sidecar that is SIGSTOPped, or whose beats are late, is healed by a relaunch, like one
// that is gone (issue 16).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_stopped_or_late_sidecar_is_healed() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("st");
    expect_success(sb.launcher("st").env("MOSAIC_HEARTBEAT_INTERVAL", "86400"));
    let rec = wait_for_status(&file, Status::Ok, WAIT);
    let stopped = rec.hb_pid.unwrap();
    sb.track(stopped);
    signal(stopped, libc::SIGSTOP);
    // kill(2) returns before the signal is delivered: the launcher must find it stopped.
    wait_until(
        "the sidecar to be stopped (state T in /proc)",
        WAIT,
        || (proc_state(stopped) == Some('T')).then_some(()),
        || format!("state {:?}", proc_state(stopped)),
    );
    let out = expect_success(sb.launcher("st").env("MOSAIC_HEARTBEAT_INTERVAL", "86400"));
    assert!(
        out.contains("already running") && out.contains("(sidecar restarted)"),
        "{out}"
    );
    wait_gone(stopped);
    let healed = wait_until(
        "the new sidecar's record",
        WAIT,
        || read_record(&file).filter(|r| r.hb_pid != Some(stopped)),
        || show_file(&file),
    );
    assert_eq!(healed.pid, rec.pid);
    assert_eq!(sidecars_watching(rec.pid), vec![healed.hb_pid.unwrap()]);

    // Late: a running sidecar whose last record is a minute old at a 0.2 s interval (what a
    // hung one leaves) is replaced too.
    let late = healed.hb_pid.unwrap();
    sb.track(late);
    let old = chrono::Utc::now() - chrono::Duration::seconds(60);
    let record = format!(
        "ts={}\npid={}\nstatus=ok\nagent=st\ninterval=0.2\nseq=9\nhb_pid={late}\n",
        old.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        rec.pid
    );
    let tmp = sb.hb_dir().join("late.tmp");
    std::fs::write(&tmp, record).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let out = expect_success(sb.launcher("st").env("MOSAIC_HEARTBEAT_INTERVAL", "86400"));
    assert!(out.contains("(sidecar restarted)"), "{out}");
    wait_gone(late);
    let fresh = wait_until(
        "the third sidecar's record",
        WAIT,
        || read_record(&file).filter(|r| r.hb_pid != Some(late) && r.seq == Some(1)),
        || show_file(&file),
    );
    assert_eq!(sidecars_watching(rec.pid), vec![fresh.hb_pid.unwrap()]);
    // A healthy one is left alone.
    let out = expect_success(sb.launcher("st").env("MOSAIC_HEARTBEAT_INTERVAL", "86400"));
    assert!(out.contains("(sidecar running)"), "{out}");
}

// A relative HOME puts nothing on the pane's PATH (issue 16).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_relative_home_adds_nothing_to_path() {
    e2e!();
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("work/h/.local/bin")).unwrap();
    let fakes = fake_bin(&sb.dir, "");
    let mut cmd = sb.launcher("rel");
    cmd.env("PATH", path_with(&[&fakes]))
        .env("HOME", "h")
        .current_dir(sb.path("work"))
        .stdout(Stdio::piped());
    expect_success(&mut cmd);
    let args = std::fs::read_to_string(sb.path("tmux-args")).unwrap();
    assert!(!args.contains("export PATH"), "{args}");
    assert!(!args.contains(".local/bin"), "{args}");
}

// A dead agent's record carries how it ended (`exit_status=`, `exit_signal=`) when the sidecar
// can still read it from the zombie, before tmux reaps it; never a wrong value.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn the_record_of_a_dead_agent_says_how_it_ended() {
    e2e!();
    let sb = Sandbox::new();
    let (mut statuses, mut signals) = (0, 0);
    for i in 0..5 {
        for (agent, end) in [
            (format!("ends{i}"), "exit 7"),
            (format!("killed{i}"), "kill -9 $$"),
        ] {
            // It ends when told, once started: never before the launcher's verdict, however
            // slow the machine.
            let command = format!("sh -c 'until [ -e go-{agent} ]; do sleep 0.05; done; {end}'");
            let out = expect_success(sb.launcher(&agent).env("MOSAIC_AGENT_COMMAND", command));
            assert!(out.starts_with("started"), "{out}");
            std::fs::write(sb.path("work").join(format!("go-{agent}")), "").unwrap();
            let rec = wait_for_status(&sb.hb_file(&agent), Status::Exited, WAIT);
            let life = &rec.lifecycle;
            if agent.starts_with("ends") {
                assert_eq!(life.exit_signal, None, "{agent}");
                assert!(
                    matches!(life.exit_status, None | Some(7)),
                    "{agent}: {life:?}"
                );
                statuses += usize::from(life.exit_status == Some(7));
            } else {
                assert_eq!(life.exit_status, None, "{agent}");
                assert!(
                    matches!(life.exit_signal, None | Some(9)),
                    "{agent}: {life:?}"
                );
                signals += usize::from(life.exit_signal == Some(9));
            }
        }
    }
    eprintln!("exit_status in {statuses} of 5, exit_signal in {signals} of 5");
    assert!(
        statuses + signals > 0,
        "no record ever said how its agent ended"
    );
}

/// The wait status of zombie `pid` (field 52 of `/proc/PID/stat`) while it is one.
fn zombie_wait_status(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if !fields.first()?.starts_with('Z') {
        return None;
    }
    fields.get(52 - 3)?.parse().ok()
}

/// The state letter of `/proc/PID/stat` (R, S, T, Z...).
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

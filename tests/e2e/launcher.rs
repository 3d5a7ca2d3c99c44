/*! `mosaic-launcher`: the contract's seven cases, idempotence, races and bad input. */

use std::time::Duration;

use crate::e2e;
use crate::support::*;

// Contract case 1: a real session, its pane in the workdir.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn creates_a_session_in_the_workdir() {
    e2e!();
    let sb = Sandbox::new();
    let out = expect_success(sb.launcher("alpha").arg("--no-heartbeat"));
    assert!(out.starts_with("started agent alpha"), "{out}");
    assert!(sb.has_session("alpha"));
    let work = sb.path("work");
    assert_eq!(sb.pane_path("alpha"), work.as_os_str().as_encoded_bytes());
}

// Contract case 2: a second start says "already running" and succeeds.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn second_start_is_already_running() {
    e2e!();
    let sb = Sandbox::new();
    expect_success(&mut sb.launcher("alpha"));
    let out = expect_success(&mut sb.launcher("alpha"));
    assert!(out.contains("already running"), "{out}");
    assert_eq!(sb.session_count(), 1);
}

/// The pane command in captured `new-session` arguments: the argument after `/bin/sh -c`.
fn pane_arg(args: &[String]) -> &str {
    let at = args
        .windows(2)
        .position(|w| w[0] == "/bin/sh" && w[1] == "-c")
        .unwrap_or_else(|| panic!("no /bin/sh -c in {args:?}"));
    &args[at + 2]
}

fn captured_tmux_args(
    sb: &Sandbox,
    runtime_bin: &str,
    extra_path: &[&std::path::Path],
) -> Vec<String> {
    let fakes = fake_bin(&sb.dir, "");
    let mut first = vec![fakes.as_path()];
    first.extend_from_slice(extra_path);
    let mut cmd = sb.launcher("agent3");
    cmd.env("PATH", path_with(&first))
        .env("MOSAIC_AGENT_RUNTIME", "pi")
        .env("MOSAIC_RUNTIME_BIN", runtime_bin)
        .env(
            "MOSAIC_AGENT_COMMAND",
            "mosaic yolo pi --model openai-codex/gpt-5.5:high",
        );
    let out = expect_success(&mut cmd);
    assert!(
        out.contains("no heartbeat"),
        "an empty list-panes must start no sidecar: {out}"
    );
    let args = std::fs::read_to_string(sb.path("tmux-args")).expect("fake tmux saw new-session");
    args.lines().map(str::to_string).collect()
}

// Contract case 3: the pane command exports the runtime bin on PATH and execs the command intact.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn pane_command_bakes_in_the_runtime_bin() {
    e2e!();
    let sb = Sandbox::new();
    let bin = sb.path("runtime bin");
    std::fs::create_dir_all(&bin).unwrap();
    let args = captured_tmux_args(&sb, bin.to_str().unwrap(), &[]);
    let tail: Vec<&str> = args.iter().map(String::as_str).take(6).collect();
    assert_eq!(
        tail,
        [
            "-L",
            sb.socket.as_str(),
            "new-session",
            "-d",
            "-s",
            "agent3"
        ]
    );
    let pane = pane_arg(&args);
    assert_eq!(
        pane,
        format!(
            "export PATH='{}':\"$PATH\"; exec mosaic yolo pi --model openai-codex/gpt-5.5:high",
            bin.display()
        )
    );
}

// Contract case 4: no candidate directory exists: plain `exec <command>`.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn pane_command_without_runtime_bins_still_execs() {
    e2e!();
    let sb = Sandbox::new();
    let args = captured_tmux_args(&sb, "/nonexistent-dir-for-mosaic", &[]);
    assert_eq!(
        pane_arg(&args),
        "exec mosaic yolo pi --model openai-codex/gpt-5.5:high"
    );
}

// Contract case 5: a candidate already on the launcher's PATH is still baked in.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn runtime_bin_on_launcher_path_is_still_baked_in() {
    e2e!();
    let sb = Sandbox::new();
    let bin = sb.path("rt");
    std::fs::create_dir_all(&bin).unwrap();
    let args = captured_tmux_args(&sb, bin.to_str().unwrap(), &[&bin]);
    assert!(
        pane_arg(&args).starts_with(&format!("export PATH='{}':", bin.display())),
        "{args:?}"
    );
}

// Home candidates come after the runtime bin, in order, once each.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn home_bins_follow_the_runtime_bin() {
    e2e!();
    let sb = Sandbox::new();
    let home = sb.path("home");
    for d in [".npm-global/bin", ".local/bin"] {
        std::fs::create_dir_all(home.join(d)).unwrap();
    }
    let local = home.join(".local/bin");
    let args = captured_tmux_args(&sb, local.to_str().unwrap(), &[]);
    assert_eq!(
        pane_arg(&args),
        format!(
            "export PATH='{}':'{}':\"$PATH\"; exec mosaic yolo pi --model openai-codex/gpt-5.5:high",
            local.display(),
            home.join(".npm-global/bin").display()
        )
    );
}

// Contract case 6: with a real pane, the heartbeat file appears with ts=, pid=, status=ok,
// and the launcher finds mosaic-hb next to itself (PATH unchanged).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn heartbeat_file_appears_for_a_real_pane() {
    e2e!();
    let sb = Sandbox::new();
    let out = expect_success(sb.launcher("beta").env("MOSAIC_HEARTBEAT_INTERVAL", "1"));
    let file = sb.hb_file("beta");
    assert!(
        out.contains(&format!("heartbeat {}", file.display())),
        "{out}"
    );
    let rec = wait_for_status(&file, Status::Ok, Duration::from_secs(5));
    assert_eq!(rec.pid, sb.pane_pid("beta"));
    assert_eq!(rec.agent.as_deref(), Some("beta"));
    let text = std::fs::read_to_string(&file).unwrap();
    let first: Vec<&str> = text.lines().take(3).collect();
    assert!(
        first[0].starts_with("ts=") && first[1].starts_with("pid=") && first[2] == "status=ok",
        "{text}"
    );
}

// Contract case 7: the sidecar is started through the setsid found on PATH, with the .hb
// path and the configured interval.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn sidecar_is_started_through_setsid_on_path() {
    e2e!();
    let sb = Sandbox::new();
    let fakes = fake_bin(&sb.dir, "88888");
    let mut cmd = sb.launcher("my-fleet-agent");
    cmd.env("PATH", path_with(&[&fakes]))
        .env("MOSAIC_HEARTBEAT_INTERVAL", "42");
    expect_success(&mut cmd);
    let raw = std::fs::read(sb.path("setsid-args")).expect("fake setsid was called");
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let hb = bin("mosaic-hb");
    let file = sb.hb_file("my-fleet-agent");
    // The sidecar starts while tmux works and reads the pane's pid from its stdin (`--pid -`).
    let want = [
        hb.to_str().unwrap(),
        "--pid",
        "-",
        "--file",
        file.to_str().unwrap(),
        "--interval",
        "42",
        "--idle-after",
        "60",
        "--agent",
        "my-fleet-agent",
        // For restarts and the event hooks' MOSAIC_SOCKET.
        "--socket",
        sb.socket.as_str(),
        // What the agent leaves behind when it dies is ended after 10 s (mosaic_core::teardown).
        "--reap",
        "10",
    ];
    assert_eq!(args, want);
}

// --json reports the same facts as one object.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn json_report() {
    e2e!();
    let sb = Sandbox::new();
    let out = expect_success(sb.launcher("gamma").arg("--json"));
    let file = sb.hb_file("gamma");
    assert_eq!(out.lines().count(), 1);
    let report = json(&out);
    let keys = [
        "agent",
        "socket",
        "status",
        "pane_pid",
        "heartbeat",
        "sidecar",
        "workdir",
    ];
    assert!(report.as_object().unwrap().keys().eq(keys), "{out}");
    assert_eq!(report["agent"], "gamma", "{out}");
    assert_eq!(report["status"], "started", "{out}");
    assert_eq!(report["heartbeat"], file.to_str().unwrap(), "{out}");
    assert_eq!(report["sidecar"], "started", "{out}");
    assert!(report["pane_pid"].as_i64().is_some_and(|p| p > 1), "{out}");
    let again = json(&expect_success(sb.launcher("gamma").arg("--json")));
    assert!(
        again["status"] == "already running" && again["sidecar"] == "running",
        "{again}"
    );
}

// The output can be captured: `$(mosaic-launcher a)` returns while the sidecar runs on.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn captured_output_returns_at_once() {
    e2e!();
    let sb = Sandbox::new();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(format!(
        "out=$('{}' delta) && printf '%s' \"$out\"",
        bin("mosaic-launcher").display()
    ));
    for (k, v) in sb.launcher("x").get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = expect_success(&mut cmd);
    assert!(out.starts_with("started agent delta"), "{out}");
    wait_for_status(&sb.hb_file("delta"), Status::Ok, Duration::from_secs(5));
}

// Many launchers racing for one name: one session, one sidecar, all exit 0.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn racing_launchers_make_one_session_and_one_sidecar() {
    e2e!();
    let sb = Sandbox::new();
    let mut children: Vec<_> = (0..8)
        .map(|_| {
            sb.launcher("racer")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut started = 0;
    for child in children.drain(..) {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a racer failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if text.starts_with("started agent racer") {
            started += 1;
        } else {
            assert!(text.contains("already running"), "{text}");
        }
    }
    assert_eq!(started, 1, "exactly one launcher creates the session");
    assert_eq!(sb.session_count(), 1);
    let rec = wait_for_status(&sb.hb_file("racer"), Status::Ok, Duration::from_secs(5));
    let hb_pid = rec.hb_pid.unwrap();
    // One writer: later records keep the same hb_pid, and only one mosaic-hb watches the pane.
    let later = wait_until(
        "three more beats",
        Duration::from_secs(5),
        || read_record(&sb.hb_file("racer")).filter(|r| r.seq.unwrap_or(0) > rec.seq.unwrap() + 2),
        || show_file(&sb.hb_file("racer")),
    );
    assert_eq!(later.hb_pid, Some(hb_pid));
    assert_eq!(sidecars_watching(rec.pid), vec![hb_pid]);
}

// Many launchers for different agents at once: every session, every heartbeat file.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn many_agents_at_once() {
    e2e!();
    let sb = Sandbox::new();
    let names: Vec<String> = (0..10).map(|i| format!("fleet-{i}")).collect();
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            sb.launcher(n)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(sb.session_count(), names.len());
    for n in &names {
        wait_for_status(&sb.hb_file(n), Status::Ok, Duration::from_secs(5));
    }
}

// A command that exits within the settle time is a failed launch, every time: exit 1, one
// line with the agent, its exit status; its session is gone and no sidecar runs.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn command_that_exits_at_once_is_reported() {
    e2e!();
    let sb = Sandbox::new();
    for (command, status) in [("true", 0), ("false", 1), ("sh -c \"exit 3\"", 3)] {
        let mut cmd = sb.launcher("quick");
        cmd.env("MOSAIC_AGENT_COMMAND", command)
            .env("MOSAIC_SETTLE", "2");
        let (_, err) = expect_exit(&mut cmd, 1);
        assert!(
            err.starts_with(&format!(
                "mosaic-launcher: agent quick exited at once with status {status}"
            )),
            "{command}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!sb.has_session("quick"), "{command}: the session was left");
        assert!(sidecars_writing_under(&sb.hb_dir()).is_empty());
    }
}

// Bad input: exit 2, one line on stderr naming the value, nothing started or written.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn bad_input_is_refused_before_anything_starts() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.path("work/file");
    std::fs::write(&file, "x").unwrap();
    let long = "a".repeat(65);
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        ("a.b", vec![], "invalid agent name \"a.b\""),
        ("a:b", vec![], "invalid agent name"),
        ("-x", vec![], ""),
        ("../etc", vec![], "invalid agent name"),
        (&long, vec![], "invalid agent name"),
        (
            "ok",
            vec![("MOSAIC_AGENT_WORKDIR", file.display().to_string())],
            "not a directory",
        ),
        (
            "ok",
            vec![(
                "MOSAIC_AGENT_WORKDIR",
                sb.path("missing").display().to_string(),
            )],
            "invalid workdir",
        ),
        (
            "ok",
            vec![("MOSAIC_HEARTBEAT_INTERVAL", "0".into())],
            "invalid interval \"0\"",
        ),
        (
            "ok",
            vec![("MOSAIC_HEARTBEAT_INTERVAL", "-3".into())],
            "invalid interval",
        ),
        (
            "ok",
            vec![("MOSAIC_HEARTBEAT_INTERVAL", "nan".into())],
            "invalid interval",
        ),
        (
            "ok",
            vec![("MOSAIC_HEARTBEAT_INTERVAL", "inf".into())],
            "invalid interval",
        ),
        (
            "ok",
            vec![("MOSAIC_HEARTBEAT_INTERVAL", "soon".into())],
            "invalid interval",
        ),
        (
            "ok",
            vec![("MOSAIC_AGENT_RUNTIME", "bash".into())],
            "unknown runtime \"bash\"",
        ),
        (
            "ok",
            vec![("MOSAIC_RUNTIME_BIN", "/a:/b".into())],
            "cannot contain ':'",
        ),
        (
            "ok",
            vec![("MOSAIC_TMUX_SOCKET", "../x".into())],
            "invalid tmux socket name",
        ),
    ];
    for (agent, env, message) in cases {
        let mut cmd = sb.launcher(agent);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let (out, err) = expect_exit(&mut cmd, 2);
        assert!(out.is_empty(), "{agent} {env:?}: stdout {out}");
        assert!(
            err.starts_with("mosaic-launcher: ") && err.contains(message),
            "{agent} {env:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{agent} {env:?}: {err}");
    }
    // Neither a command nor a runtime.
    let (_, err) = expect_exit(sb.launcher("ok").env_remove("MOSAIC_AGENT_COMMAND"), 2);
    assert!(err.contains("no agent command"), "{err}");
    assert_eq!(sb.session_count(), 0, "a refused launch started tmux");
    assert!(
        !sb.hb_dir().exists(),
        "a refused launch wrote the heartbeat dir"
    );
}

// The runtime alone gives the default command `mosaic yolo RUNTIME`.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn runtime_gives_the_default_command() {
    e2e!();
    let sb = Sandbox::new();
    let fakes = fake_bin(&sb.dir, "");
    let mut cmd = sb.launcher("rt");
    cmd.env("PATH", path_with(&[&fakes]))
        .env_remove("MOSAIC_AGENT_COMMAND")
        .env("MOSAIC_AGENT_RUNTIME", "codex");
    expect_success(&mut cmd);
    let args = std::fs::read_to_string(sb.path("tmux-args")).unwrap();
    let args: Vec<String> = args.lines().map(str::to_string).collect();
    assert_eq!(pane_arg(&args), "exec mosaic yolo codex");
}

// Flags override the variables they stand for.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn flags_override_variables() {
    e2e!();
    let sb = Sandbox::new();
    let fakes = fake_bin(&sb.dir, "");
    let mut cmd = sb.launcher("fl");
    cmd.env("PATH", path_with(&[&fakes])).args([
        "--socket",
        "other-sock",
        "--command",
        "from flag",
    ]);
    expect_success(&mut cmd);
    let args = std::fs::read_to_string(sb.path("tmux-args")).unwrap();
    let lines: Vec<String> = args.lines().map(str::to_string).collect();
    assert_eq!(lines[1], "other-sock");
    assert_eq!(pane_arg(&lines), "exec from flag");
}

// tmux missing, and tmux failing: exit 1, a message that names tmux.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn tmux_missing_or_failing_is_a_runtime_failure() {
    e2e!();
    let sb = Sandbox::new();
    let empty = sb.path("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    // setsid must be found for the launcher to get as far as tmux.
    let setsid = std::path::Path::new("/usr/bin/setsid");
    std::os::unix::fs::symlink(setsid, empty.join("setsid")).unwrap();
    let (_, err) = expect_exit(sb.launcher("t").env("PATH", &empty), 1);
    assert!(err.contains("tmux") && err.contains("not found"), "{err}");
    let failing = sb.path("failing-bin");
    std::fs::create_dir_all(&failing).unwrap();
    write_script(
        &failing.join("tmux"),
        "#!/bin/sh\necho 'server exploded' >&2\nexit 1\n",
    );
    let (_, err) = expect_exit(sb.launcher("t").env("PATH", path_with(&[&failing])), 1);
    assert!(
        err.starts_with("mosaic-launcher: tmux new-session") && err.contains("server exploded"),
        "{err}"
    );
}

// `#` in a workdir reaches tmux literally (tmux expands formats in -c).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn workdir_with_format_characters() {
    e2e!();
    let sb = Sandbox::new();
    let weird = sb.path("work/#{session_name} it's");
    std::fs::create_dir_all(&weird).unwrap();
    expect_success(
        sb.launcher("w")
            .env("MOSAIC_AGENT_WORKDIR", &weird)
            .arg("--no-heartbeat"),
    );
    assert_eq!(sb.pane_path("w"), weird.as_os_str().as_encoded_bytes());
}

// --help lists every environment variable.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn help_lists_every_variable() {
    e2e!();
    let out = expect_success(std::process::Command::new(bin("mosaic-launcher")).arg("--help"));
    for var in [
        "MOSAIC_TMUX_SOCKET",
        "MOSAIC_AGENT_WORKDIR",
        "MOSAIC_AGENT_RUNTIME",
        "MOSAIC_AGENT_COMMAND",
        "MOSAIC_RUNTIME_BIN",
        "MOSAIC_HEARTBEAT_RUN_DIR",
        "MOSAIC_HEARTBEAT_INTERVAL",
        "MOSAIC_HB_BIN",
        "MOSAIC_SETTLE",
        "MOSAIC_TMUX_TIMEOUT",
    ] {
        assert!(out.contains(var), "--help does not mention {var}:\n{out}");
    }
    for code in ["0 done", "1 failed", "2 bad input", "129/130/143"] {
        assert!(
            out.contains(code),
            "--help does not mention exit {code}:\n{out}"
        );
    }
}

// An empty variable counts as unset, as `${VAR:-default}` did in the bash original.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn empty_variables_count_as_unset() {
    e2e!();
    let sb = Sandbox::new();
    let fakes = fake_bin(&sb.dir, "");
    let mut cmd = sb.launcher("empty");
    cmd.env("PATH", path_with(&[&fakes]));
    for var in [
        "MOSAIC_TMUX_SOCKET",
        "MOSAIC_HEARTBEAT_INTERVAL",
        "MOSAIC_RUNTIME_BIN",
        "MOSAIC_AGENT_RUNTIME",
    ] {
        cmd.env(var, "");
    }
    expect_success(&mut cmd);
    let args = std::fs::read_to_string(sb.path("tmux-args")).unwrap();
    let lines: Vec<String> = args.lines().map(str::to_string).collect();
    assert_eq!(
        lines[1], "mosaic",
        "empty MOSAIC_TMUX_SOCKET must mean the default socket"
    );
    assert_eq!(pane_arg(&lines), "exec sleep 600");
}

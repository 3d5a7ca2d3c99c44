/*!
The hand-over (`--pid -`, the launcher's way of starting a sidecar while tmux creates the
pane): the pid and start time on stdin, `running` on stdout once the first record is written,
and distinct answers for "kept by another sidecar" and "target gone".
*/

use super::*;

// The hand-over (`--pid -`, the pid on stdin) answers "kept by another" and "target gone" with
// their own exit codes, 3 and 4, where `--pid N` says 1 for both; the message is the same.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn the_hand_over_answers_kept_and_gone_apart() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("ho");
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "0.2", ["--agent", "ho"]);
    let dead = sb.spawn_target();
    sb.kill_target(dead);
    let gone_file = sb.hb_file("gone");
    let cases = [
        (
            &file,
            target,
            3,
            format!("is already kept by mosaic-hb pid {hb}"),
        ),
        (&gone_file, dead, 4, format!("pid {dead} is not running")),
    ];
    for (file, pid, code, message) in cases {
        let mut handed = sb.hb();
        handed
            .args(["--pid", "-", "--interval", "0.2", "--file"])
            .arg(file)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = handed.spawn().unwrap();
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{pid}").unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.trim_end().ends_with(&message), "{err}");
        let mut direct = sb.hb();
        direct
            .args(["--pid", &pid.to_string(), "--interval", "0.2", "--file"])
            .arg(file);
        let (_, err) = expect_exit(&mut direct, 1);
        assert!(err.trim_end().ends_with(&message), "{err}");
    }
}

// Run by hand from a job-control shell, a hand-over sidecar leads its process group and cannot
// start a session of its own: it still runs, and answers.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_hand_over_sidecar_that_leads_its_group_still_answers() {
    e2e!();
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let target = sb.spawn_target();
    let file = sb.hb_file("leader");
    let mut cmd = sb.hb();
    cmd.args(["--pid", "-", "--interval", "0.05", "--file"])
        .arg(&file)
        .process_group(0);
    let (mut child, said, err) = hand_over(&mut cmd, target);
    assert_eq!((said.as_str(), err.as_str()), ("running\n", ""));
    assert_eq!(read_record(&file).map(|r| r.status), Some(Status::Ok));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Spawns a `--pid -` sidecar, hands it `target` on its stdin, and reads its stdout and
/// stderr to EOF: the child (still running when it answered), and what each pipe carried.
fn hand_over(cmd: &mut Command, target: i32) -> (std::process::Child, String, String) {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{target}").unwrap();
    let (mut said, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child, said, err)
}

// `--pid -` takes the target from stdin once the file is prepared, and stays the process that
// was spawned: it says `running` on stdout once its first record is on disk, then lets go of
// stdout and stderr, and only then removes a predecessor's stale temp files. EOF on stdin
// instead cancels, writing nothing.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn pid_from_stdin() {
    e2e!();
    let sb = Sandbox::new();
    let target = sb.spawn_target();
    let file = sb.hb_file("stdin");
    let stale = sb.hb_dir().join(".stdin.hb.99999.tmp");
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(sb.hb_dir())
            .unwrap();
    }
    std::fs::write(&stale, b"x").unwrap();
    let mut cmd = sb.hb();
    cmd.args(["--pid", "-", "--interval", "0.05", "--file"])
        .arg(&file);
    // Both pipes reach EOF while the sidecar runs on: nothing else is ever written to them.
    let (mut child, said, err) = hand_over(&mut cmd, target);
    assert_eq!((said.as_str(), err.as_str()), ("running\n", ""));
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "the sidecar is still running"
    );
    // The answer comes after the first record: no waiting for it.
    let rec = read_record(&file).expect("a record when the sidecar says running");
    assert_eq!(rec.status, Status::Ok);
    assert_eq!(rec.hb_pid, Some(child.id() as i32));
    assert_eq!(rec.pid, target);
    assert!(rec.started.is_some());
    // It left the caller's session and directory.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], child.id().to_string(), "session id: {stat}");
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", child.id())).unwrap();
    assert_eq!(cwd, std::path::Path::new("/"));
    wait_until(
        "the stale temp file to go",
        Duration::from_secs(5),
        || (!stale.exists()).then_some(()),
        || format!("{} is still there", stale.display()),
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let cancelled = sb.hb_file("cancelled");
    let mut cmd = sb.hb();
    cmd.args(["--pid", "-", "--file"]).arg(&cancelled);
    let (_, err) = expect_exit(&mut cmd, 2);
    assert_eq!(
        err.trim_end(),
        "mosaic-hb: no pid on stdin: nothing to watch"
    );
    let names: Vec<_> = std::fs::read_dir(sb.hb_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.to_string_lossy().contains("cancelled")),
        "{names:?}"
    );
}

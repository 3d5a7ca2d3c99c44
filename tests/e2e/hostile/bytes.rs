/*!
Non-UTF-8 arguments and variables: values that must be text are refused with exit 2 and one
line; commands, workdirs, runtime bins and the sidecar's paths reach tmux, the pane and the
file system byte for byte.
*/

use super::*;

// Values that must be text are refused with exit 2 and one line: nothing starts, nothing is
// written.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn non_utf8_text_values_are_refused() {
    e2e!();
    let sb = Sandbox::new();
    let work = sb.path("work");
    let launcher = |agent: &OsStr| {
        let mut cmd = sb.launcher(agent);
        cmd.current_dir(&work);
        cmd
    };
    let err = refused(&mut launcher(&os(b"ag\xffent")), 2, "mosaic-launcher");
    assert!(
        err.contains("invalid agent name") && err.contains("not UTF-8 text"),
        "{err}"
    );
    refused(&mut launcher(&os(b"\xc3\x28")), 2, "mosaic-launcher");
    for (var, value) in [
        ("MOSAIC_TMUX_SOCKET", &b"sock\xff"[..]),
        ("MOSAIC_HEARTBEAT_INTERVAL", b"1\xff"),
        ("MOSAIC_AGENT_RUNTIME", b"pi\xfe"),
    ] {
        let err = refused(
            launcher(OsStr::new("ok")).env(var, os(value)),
            2,
            "mosaic-launcher",
        );
        // The message names the variable, not just "invalid UTF-8 somewhere".
        assert!(
            err.contains("not UTF-8 text") && err.contains(var),
            "{var}: {err}"
        );
    }
    let target = sb.spawn_target().to_string();
    let file = sb.hb_file("u");
    let file = file.as_os_str().as_bytes();
    let cases: [&[&[u8]]; 4] = [
        &[b"--pid", b"12\xff", b"--file", file],
        &[
            b"--pid",
            target.as_bytes(),
            b"--file",
            file,
            b"--agent",
            b"a\xffb",
        ],
        &[
            b"--pid",
            target.as_bytes(),
            b"--file",
            file,
            b"--interval",
            b"\xff",
        ],
        &[
            b"--pid",
            target.as_bytes(),
            b"--file",
            file,
            b"--interval=1\xfe",
        ],
    ];
    for args in cases {
        let args: Vec<OsString> = args.iter().map(|a| os(a)).collect();
        let err = refused(sb.hb().args(&args), 2, "mosaic-hb");
        assert!(err.contains("UTF-8"), "{args:?}: {err}");
    }
    assert_eq!(sb.session_count(), 0, "a refused launch started tmux");
    assert!(
        !sb.hb_dir().exists(),
        "a refused start wrote the heartbeat dir"
    );
    assert!(canaries(&sb.dir).is_empty());
}

// A non-UTF-8 command, workdir and runtime bin reach tmux byte for byte (the fake tmux records
// its argv), with `#` doubled in the workdir only (tmux expands formats in `-c`).
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn non_utf8_values_reach_tmux_byte_for_byte() {
    e2e!();
    let sb = Sandbox::new();
    let fakes = fake_bin(&sb.dir, "");
    let workdir = sb.path("work").join(os(b"w\xfe #{pane_pid} \xe9"));
    let runtime_bin = sb.path("work").join(os(b"rt \xff'bin $(touch canary)"));
    std::fs::create_dir_all(&workdir).unwrap();
    std::fs::create_dir_all(&runtime_bin).unwrap();
    let command = b"printf '%s' caf\xe9 \xff\xfe; `x` $(y) \"z\" #{q}";
    let flag_command = b"exec \xc0\xaf --flag";
    for (via_flag, cmd_bytes) in [(false, &command[..]), (true, &flag_command[..])] {
        let mut cmd = sb.launcher("nu");
        cmd.env("PATH", path_with(&[&fakes]))
            .env("MOSAIC_AGENT_WORKDIR", &workdir)
            .env("MOSAIC_RUNTIME_BIN", &runtime_bin)
            .current_dir(sb.path("work"));
        if via_flag {
            cmd.arg("--command").arg(os(cmd_bytes));
        } else {
            cmd.env("MOSAIC_AGENT_COMMAND", os(cmd_bytes));
        }
        let out = succeeds(&mut cmd);
        assert!(out.contains("no heartbeat"), "{out}");
        let raw = std::fs::read(sb.path("tmux-args")).expect("fake tmux saw new-session");
        let got: Vec<&[u8]> = raw
            .strip_suffix(b"\n")
            .unwrap()
            .split(|&b| b == b'\n')
            .collect();
        let escaped_workdir =
            workdir
                .as_os_str()
                .as_bytes()
                .iter()
                .fold(Vec::new(), |mut v, &b| {
                    v.push(b);
                    if b == b'#' {
                        v.push(b'#');
                    }
                    v
                });
        let mut pane = b"export PATH=".to_vec();
        pane.extend(sh_quote(runtime_bin.as_os_str().as_bytes()));
        pane.extend_from_slice(b":\"$PATH\"; exec ");
        pane.extend_from_slice(cmd_bytes);
        let want: Vec<&[u8]> = vec![
            b"-L",
            sb.socket.as_bytes(),
            b"new-session",
            b"-d",
            b"-s",
            b"nu",
            b"-P",
            b"-F",
            b"#{pane_pid} #{pid}",
            b"-c",
            &escaped_workdir,
            b"-e",
            b"MOSAIC_AGENT_NAME=nu",
            b"/bin/sh",
            b"-c",
            &pane,
        ];
        // Then the same command sequence sets remain-on-exit and the session's marks.
        let got = &got[..want.len().min(got.len())];
        assert_eq!(
            got,
            want,
            "via flag: {via_flag}\ngot  {:?}\nwant {:?}",
            got.iter()
                .map(|a| String::from_utf8_lossy(a))
                .collect::<Vec<_>>(),
            want.iter()
                .map(|a| String::from_utf8_lossy(a))
                .collect::<Vec<_>>()
        );
    }
    assert!(canaries(&sb.dir).is_empty());
}

// Through a real tmux and a real pane shell: a non-UTF-8 runtime bin is first on the pane's
// PATH exactly, and a non-UTF-8 argument in the command arrives exactly.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn non_utf8_runtime_bin_and_command_reach_the_pane() {
    e2e!();
    let sb = Sandbox::new();
    let runtime_bin = sb
        .path("work")
        .join(os(b"rt \xff\"q\" 'x' $(touch canary) `touch canary`;"));
    std::fs::create_dir_all(&runtime_bin).unwrap();
    let arg = b"\xff\xfe caf\xe9 $(touch canary) '";
    let mut command = b"sh -c 'printf \"%s\" \"$PATH\" > path.out; printf \"%s\" \"$1\" > arg.out; exec sleep 600' sh ".to_vec();
    command.extend(sh_quote(arg));
    let mut cmd = sb.launcher("nx");
    cmd.env("MOSAIC_RUNTIME_BIN", &runtime_bin)
        .env("MOSAIC_AGENT_COMMAND", os(&command))
        .current_dir(sb.path("work"));
    let out = succeeds(&mut cmd);
    assert!(out.starts_with("started agent nx"), "{out}");
    let work = sb.path("work");
    let read = |name: &str| {
        wait_until(
            &format!("the pane to write {name}"),
            WAIT,
            || {
                std::fs::read(work.join(name))
                    .ok()
                    .filter(|b| !b.is_empty())
            },
            || format!("{:?}", names(&work)),
        )
    };
    let path = read("path.out");
    let mut want = runtime_bin.as_os_str().as_bytes().to_vec();
    want.push(b':');
    assert!(
        path.starts_with(&want),
        "pane PATH {:?}",
        String::from_utf8_lossy(&path)
    );
    assert_eq!(read("arg.out"), arg);
    let rec = wait_for_status(&sb.hb_file("nx"), Status::Ok, WAIT);
    assert_eq!(rec.pid, sb.pane_pid("nx"));
    assert!(canaries(&sb.dir).is_empty(), "{:?}", canaries(&sb.dir));
    end_agents(&sb);
}

// The sidecar takes non-UTF-8 --file and --log paths and uses them exactly.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn non_utf8_sidecar_paths() {
    e2e!();
    let sb = Sandbox::new();
    let dir = sb.path("work").join(os(b"hb \xff dir $(touch canary)"));
    let file = dir.join(os(b"caf\xe9.hb"));
    let log = sb.path("work").join(os(b"log \xfe.log"));
    let target = sb.spawn_target();
    let hb = sb.start_sidecar(target, &file, "0.05", logged(&log));
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(strangers(&dir, b"caf\xe9"), Vec::<OsString>::new());
    sb.kill_target(target);
    wait_for_status(&file, Status::Exited, WAIT);
    wait_gone(hb);
    let log = read_log(&log);
    assert!(
        log.contains("wrote status=exited") && !log.contains("panicked"),
        "{log}"
    );
    assert!(canaries(&sb.dir).is_empty());
}

/*!
`mosaic-fleet send` against two agents in real tmux panes: a terminal agent as Claude Code is
one (raw mode, bracketed paste; `paste-agent.c`, built here with the system's `cc`, writes each
submission to a file of its own) and a plain shell `read` loop in a cooked terminal. Both must
receive every text exactly, once, as one message: multi-line, hostile to a shell and to tmux's
parser, unicode, over 20 kB.
*/

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mosaic_core::activity::Activity;

use crate::e2e;
use crate::support::*;

/// Every byte a shell or tmux's command parser would act on, and unicode.
const HOSTILE: &str = "first \"line\" 'quoted' ; $(touch pwned) `touch pwned2` #{pane_pid} \
    #(touch pwned3) \\ \\; ~ $HOME %1 {} é 漢字 🚀\n\tsecond, after a tab;";

/// Builds the paste agent into the sandbox; returns its path.
fn paste_agent(sb: &Sandbox) -> PathBuf {
    let src = sb.path("paste-agent.c");
    std::fs::write(&src, include_str!("paste-agent.c")).unwrap();
    let program = sb.path("paste-agent");
    let mut cc = Command::new("cc");
    cc.arg("-o").arg(&program).arg(&src);
    expect_success(&mut cc);
    program
}

/// Starts the paste agent as `agent`, its submissions in DIR `agent`-subs; waits until its
/// terminal is raw (`ready-1`).
fn start_tui(sb: &Sandbox, program: &Path, agent: &str) -> PathBuf {
    let dir = sb.path(&format!("{agent}-subs"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = sb.launcher(agent);
    cmd.env(
        "MOSAIC_AGENT_COMMAND",
        format!("{} {}", program.display(), dir.display()),
    );
    expect_success(&mut cmd);
    wait_file(sb, agent, &dir.join("ready-1"));
    dir
}

/// Starts a `read` loop as `agent`, each line it reads appended to the file it returns; more
/// launcher arguments in `extra`.
pub fn start_reader(sb: &Sandbox, agent: &str, extra: &[&str]) -> PathBuf {
    let got = sb.path(&format!("{agent}-got"));
    let script = sb.path("work").join(format!("{agent}.sh"));
    write_script(
        &script,
        &format!(
            "while IFS= read -r line; do printf '%s\\n' \"$line\" >> '{}'; done\n",
            got.display()
        ),
    );
    let mut cmd = sb.launcher(agent);
    cmd.args(extra)
        .env("MOSAIC_AGENT_COMMAND", format!("sh ./{agent}.sh"));
    expect_success(&mut cmd);
    got
}

#[track_caller]
fn wait_file(sb: &Sandbox, agent: &str, path: &Path) -> Vec<u8> {
    wait_until(
        &format!("{}", path.display()),
        Duration::from_secs(20),
        || std::fs::read(path).ok(),
        || pane(sb, agent),
    )
}

fn pane(sb: &Sandbox, agent: &str) -> String {
    let out = sb.tmux(&["capture-pane", "-p", "-t", &format!("={agent}:")]);
    format!(
        "pane: {:?}",
        String::from_utf8_lossy(&out.stdout).trim_end()
    )
}

/// Waits until `file` holds `want` bytes; returns them.
#[track_caller]
pub fn wait_len(sb: &Sandbox, agent: &str, file: &Path, want: usize) -> String {
    let bytes = wait_until(
        &format!("{want} bytes in {}", file.display()),
        Duration::from_secs(20),
        || std::fs::read(file).ok().filter(|b| b.len() >= want),
        || {
            let have = std::fs::read(file).unwrap_or_default();
            format!("{} bytes; {}", have.len(), pane(sb, agent))
        },
    );
    String::from_utf8(bytes).unwrap()
}

/// `mosaic-fleet send ARGS`, `stdin` on its standard input.
fn send_stdin(sb: &Sandbox, args: &[&str], stdin: &str) -> std::process::Output {
    let mut cmd = fleet(sb, &[&["send"], args].concat());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// A text of over 20 kB: the hostile lines again and again, each line shorter than a cooked
/// terminal's 4 kB line limit.
fn big_text() -> String {
    let mut text = String::new();
    let mut n = 0;
    while text.len() < 24 * 1024 {
        n += 1;
        text += &format!("{n}: {HOSTILE}\n");
    }
    text + "the end"
}

// One send, two agents of two kinds, each text one message, byte for byte; nothing in it ran.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn send_pastes_exactly_into_a_raw_bracketed_agent_and_a_read_loop() {
    e2e!();
    let sb = Sandbox::new();
    let program = paste_agent(&sb);
    let subs = start_tui(&sb, &program, "tui");
    let got = start_reader(&sb, "shell", &[]);
    let texts = [
        "hello".to_string(),
        HOSTILE.to_string(),
        "-t =x ; kill-server ;".to_string(),
        big_text(),
    ];
    let mut expected = String::new();
    for (i, text) in texts.iter().enumerate() {
        let n = i + 1;
        let out = if n % 2 == 0 {
            // From stdin: its final newline is dropped.
            send_stdin(&sb, &["tui", "shell"], &format!("{text}\n"))
        } else {
            run(&mut fleet(&sb, &["send", "tui", "shell", "--", text]))
        };
        assert!(out.status.success(), "send {n}: {out:?}");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            report.contains("sent to tui:") && report.contains("sent to shell:"),
            "{report}"
        );
        let sub = wait_file(&sb, "tui", &subs.join(format!("sub-{n}")));
        assert!(
            sub == text.as_bytes(),
            "submission {n} differs: {} bytes, {:?}...",
            sub.len(),
            String::from_utf8_lossy(&sub[..sub.len().min(200)])
        );
        expected += text;
        expected.push('\n');
        let lines = wait_len(&sb, "shell", &got, expected.len());
        assert!(lines == expected, "the read loop read {lines:?}");
    }
    // One submission per send, no more.
    assert!(!subs.join("sub-5").exists());
    for pwned in ["pwned", "pwned2", "pwned3"] {
        assert!(!sb.path("work").join(pwned).exists(), "{pwned} ran");
    }
    // tmux keeps no buffer of ours.
    let buffers = sb.tmux(&["list-buffers", "-F", "#{buffer_name}"]);
    assert_eq!(String::from_utf8_lossy(&buffers.stdout), "");
}

// Refused texts and agents send nothing to anyone; --no-enter types without submitting; --all
// skips what is not running and says so; --json is one object per agent; a pane in copy mode
// still gets its Enter.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn send_refuses_what_it_cannot_deliver_and_sends_nothing() {
    e2e!();
    let sb = Sandbox::new();
    let program = paste_agent(&sb);
    let subs = start_tui(&sb, &program, "tui");
    let mut gone = sb.launcher("gone");
    expect_success(&mut gone);
    expect_success(&mut fleet(&sb, &["stop", "gone", "--grace", "0"]));

    for bad in [
        "a\x1b[201~b",
        "a\rb",
        "ctrl-c \x03",
        "del \x7f",
        "c1 \u{9b}",
    ] {
        let (_, err) = expect_exit(&mut fleet(&sb, &["send", "tui", "--", bad]), 2);
        assert!(err.contains("control character"), "{err}");
    }
    let (_, err) = expect_exit(&mut fleet(&sb, &["send", "tui", "--", ""]), 2);
    assert!(err.contains("empty"), "{err}");
    let (_, err) = expect_exit(&mut fleet(&sb, &["send", "tui", "nobody", "--", "x"]), 1);
    assert!(err.contains("no agent nobody"), "{err}");
    let (_, err) = expect_exit(&mut fleet(&sb, &["send", "tui", "gone", "--", "x"]), 1);
    assert!(err.contains("gone is not running (stopped)"), "{err}");
    expect_exit(&mut fleet(&sb, &["send", "../x", "--", "x"]), 2);

    // Typed, not submitted: the next text joins it in one message.
    let out = expect_success(&mut fleet(
        &sb,
        &["send", "tui", "--no-enter", "--", "typed "],
    ));
    assert_eq!(out, "typed into tui: 6 bytes, 1 line, no Enter\n");
    // A pane scrolled back (copy mode) would take the Enter for the mode.
    let copy = sb.tmux(&["copy-mode", "-t", "=tui:"]);
    assert!(copy.status.success(), "{copy:?}");
    let out = expect_success(&mut fleet(
        &sb,
        &["send", "--all", "--json", "--", "and sent"],
    ));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_agent = |name: &str| lines.iter().find(|l| l["agent"] == name).cloned();
    let tui = by_agent("tui").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        (&tui["result"], &tui["enter"], &tui["bytes"]),
        (&"sent".into(), &true.into(), &8.into())
    );
    let skipped = by_agent("gone").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(skipped["result"], "skipped");
    assert_eq!(skipped["reason"], "not running (stopped)");
    // Nothing refused above reached the agent: its first submission is the two texts alone.
    let sub = wait_file(&sb, "tui", &subs.join("sub-1"));
    assert_eq!(String::from_utf8_lossy(&sub), "typed and sent");
}

// --wait-ready sends only once the agent is not busy, and gives up at its deadline.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn send_waits_for_a_busy_agent_to_be_ready() {
    e2e!();
    let sb = Sandbox::new();
    let got = sb.path("got");
    // Busy for about 6 s (printing), noting any line that arrives meanwhile; then a read loop.
    let script = format!(
        "i=0\nwhile [ $i -lt 60 ]; do i=$((i+1)); echo tick $i; \
         if read -t 0; then : > early; fi; sleep 0.1; done\n\
         while IFS= read -r line; do printf '%s\\n' \"$line\" >> '{}'; done\n",
        got.display()
    );
    write_script(&sb.path("work").join("busy.sh"), &script);
    let mut cmd = sb.launcher("busy");
    cmd.env("MOSAIC_AGENT_COMMAND", "bash ./busy.sh")
        .env("MOSAIC_IDLE_AFTER", "1");
    expect_success(&mut cmd);
    let file = sb.hb_file("busy");
    wait_until(
        "the agent to be busy",
        Duration::from_secs(10),
        || read_record(&file).filter(|r| r.activity == Some(Activity::Busy)),
        || show_file(&file),
    );
    let (out, err) = expect_exit(
        &mut fleet(
            &sb,
            &["send", "busy", "--wait-ready", "0.5", "--", "too soon"],
        ),
        1,
    );
    assert!(
        out.starts_with("failed busy: not ready within 0.5s (busy)"),
        "{out}"
    );
    assert!(err.contains("send failed for busy"), "{err}");
    let out = expect_success(&mut fleet(
        &sb,
        &["send", "busy", "--wait-ready", "60", "--", "when ready"],
    ));
    assert!(out.starts_with("sent to busy:"), "{out}");
    let lines = wait_len(&sb, "busy", &got, "when ready\n".len());
    assert_eq!(lines, "when ready\n");
    assert!(
        !sb.path("work").join("early").exists(),
        "a line arrived while busy"
    );
}

// --label sends to the running agents with every label given, skips its stopped ones, and
// fails when no agent has it.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn send_by_label_reaches_the_labelled_running_agents_only() {
    e2e!();
    let sb = Sandbox::new();
    let search = start_reader(
        &sb,
        "search",
        &["--label", "team=search", "--label", "tier=1"],
    );
    let docs = start_reader(&sb, "docs", &["--label", "team=docs"]);
    let plain = start_reader(&sb, "plain", &[]);
    start_reader(&sb, "resting", &["--label", "team=search"]);
    expect_success(&mut fleet(&sb, &["stop", "resting", "--grace", "0"]));

    let out = expect_success(&mut fleet(
        &sb,
        &["send", "--label", "team=search", "--", "to search"],
    ));
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "sent to search: 9 bytes, 1 line, Enter pressed",
            "skipped resting: not running (stopped)"
        ],
        "{out}"
    );
    let out = expect_success(&mut fleet(
        &sb,
        &[
            "send",
            "--label",
            "team",
            "--label",
            "tier=1",
            "--",
            "to tier 1",
        ],
    ));
    assert_eq!(out, "sent to search: 9 bytes, 1 line, Enter pressed\n");
    let out = expect_success(&mut fleet(
        &sb,
        &["send", "--label", "team=docs", "--", "to docs"],
    ));
    assert_eq!(out, "sent to docs: 7 bytes, 1 line, Enter pressed\n");
    let (_, err) = expect_exit(
        &mut fleet(&sb, &["send", "--label", "team=nobody", "--", "x"]),
        1,
    );
    assert!(err.contains("no agent with label team=nobody"), "{err}");
    expect_exit(
        &mut fleet(&sb, &["send", "--label", "bad key", "--", "x"]),
        2,
    );
    expect_exit(
        &mut fleet(&sb, &["send", "search", "--label", "team", "--", "x"]),
        2,
    );

    assert_eq!(
        wait_len(&sb, "search", &search, 20),
        "to search\nto tier 1\n"
    );
    assert_eq!(wait_len(&sb, "docs", &docs, 8), "to docs\n");
    assert!(!plain.exists(), "an unlabelled agent got a text");
}

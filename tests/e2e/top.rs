/*!
`mosaic-fleet top` in a real terminal: a pane of a second tmux server (the "terminal"), driven
with `send-keys` and read with `capture-pane`, against agents on the sandbox's own socket. After
top ends, the pane's shell prints how it ended and whether the terminal is back in cooked mode;
tmux tells whether the alternate screen is left and the cursor shown.
*/

use std::process::Output;
use std::time::Duration;

use crate::e2e;
use crate::support::*;

/// A tmux server of its own whose one pane runs top on the sandbox's fleet, then says how it
/// ended (`top exited N`) and the terminal's mode (`tty cooked` / `tty raw`).
struct Term<'a> {
    sb: &'a Sandbox,
    socket: String,
}

const WAIT: Duration = Duration::from_secs(10);

impl<'a> Term<'a> {
    fn open(sb: &'a Sandbox) -> Term<'a> {
        // A server of its own each time: a socket name reused right after `kill-server` may
        // meet the old server on its way out.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let term = Term {
            sb,
            socket: format!("{}-term{n}", sb.socket),
        };
        let script = format!(
            "{} top --socket {} --hb-dir {}; echo \"top exited $?\"; \
             if stty -a | grep -q -- -icanon; then echo 'tty raw'; else echo 'tty cooked'; fi; \
             exec sleep 600",
            bin("mosaic-fleet").display(),
            sb.socket,
            sb.hb_dir().display()
        );
        let out = term.tmux(&[
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            "term",
            "sh",
            "-c",
            &script,
        ]);
        assert!(out.status.success(), "{out:?}");
        term.wait_for("top's header", "mosaic-fleet top:");
        term
    }

    fn tmux(&self, args: &[&str]) -> Output {
        std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env("HOME", self.sb.path("home"))
            .env_remove("TMUX")
            .output()
            .expect("tmux runs")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "=term:"]).stdout)
            .into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "=term:"];
        args.extend(keys);
        assert!(self.tmux(&args).status.success());
    }

    /// Waits until the screen shows `text`; returns the screen.
    #[track_caller]
    fn wait_for(&self, what: &str, text: &str) -> String {
        self.wait_screen(what, |s| s.contains(text))
    }

    #[track_caller]
    fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        wait_until(
            what,
            WAIT,
            || Some(self.screen()).filter(|s| ok(s)),
            || self.screen(),
        )
    }

    /// The row of `agent` on the screen (its first line naming it at the left).
    fn row(screen: &str, agent: &str) -> Option<String> {
        screen
            .lines()
            .find(|l| l.trim_start_matches('>').split_whitespace().next() == Some(agent))
            .map(String::from)
    }

    /// Waits until `agent`'s row holds `word`.
    #[track_caller]
    fn wait_row(&self, agent: &str, word: &str) -> String {
        self.wait_screen(&format!("top to show {agent} {word}"), |s| {
            Term::row(s, agent).is_some_and(|r| r.split_whitespace().any(|w| w == word))
        })
    }

    /// `#{alternate_on} #{cursor_flag}`: `0 1` once top has restored the terminal.
    fn modes(&self) -> String {
        let out = self.tmux(&[
            "display-message",
            "-p",
            "-t",
            "=term:",
            "#{alternate_on} #{cursor_flag}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits for top to end with `code`, and checks the terminal is as it was.
    #[track_caller]
    fn ended(&self, code: i32) {
        let screen = self.wait_for("top to end", "tty ");
        assert!(screen.contains(&format!("top exited {code}")), "{screen}");
        assert!(screen.contains("tty cooked"), "raw mode left on:\n{screen}");
        assert_eq!(
            self.modes(),
            "0 1",
            "alternate screen or hidden cursor left:\n{screen}"
        );
    }

    /// The pid of top itself: the one child of the pane's shell.
    fn top_pid(&self) -> i32 {
        let out = self.tmux(&["display-message", "-p", "-t", "=term:", "#{pane_pid}"]);
        let sh = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let children =
            std::fs::read_to_string(format!("/proc/{sh}/task/{sh}/children")).unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no child of the pane's shell {sh}"))
    }
}

impl Drop for Term<'_> {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        let tmpdir = std::env::var_os("TMUX_TMPDIR").unwrap_or_else(|| "/tmp".into());
        let uid = nix::unistd::geteuid();
        let _ = std::fs::remove_file(
            std::path::Path::new(&tmpdir)
                .join(format!("tmux-{uid}"))
                .join(&self.socket),
        );
    }
}

fn start(sb: &Sandbox, agent: &str, command: &str) {
    let mut cmd = sb.launcher(agent);
    cmd.env("MOSAIC_AGENT_COMMAND", command);
    expect_success(&mut cmd);
}

/// The pid of `agent`'s pane, when its session exists.
fn pane_pid(sb: &Sandbox, agent: &str) -> Option<i32> {
    let target = format!("={agent}:");
    let out = sb.tmux(&["display-message", "-p", "-t", &target, "#{pane_pid}"]);
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn top_shows_the_fleet_live_and_q_restores_the_terminal() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "steady", "sh -c 'echo steady-says-hi; exec sleep 600'");
    start(&sb, "doomed", "sleep 600");
    let term = Term::open(&sb);
    term.wait_row("steady", "running");
    let screen = term.wait_row("doomed", "running");
    // The first row is selected; its last line of output is the preview.
    assert!(screen.contains("doomed>"), "{screen}");
    term.keys(&["j"]);
    term.wait_for(
        "steady's last line in the preview",
        "steady> steady-says-hi",
    );
    // A death shows without a key.
    signal(sb.pane_pid("doomed"), 15);
    let screen = term.wait_row("doomed", "exited");
    let row = Term::row(&screen, "doomed").unwrap();
    assert!(row.contains("signal 15"), "{row}");
    // An agent started now appears; one whose record goes disappears.
    start(&sb, "late", "sleep 600");
    term.wait_row("late", "running");
    assert_eq!(
        term.modes(),
        "1 0",
        "top is on the alternate screen, cursor hidden"
    );
    term.keys(&["q"]);
    term.ended(0);
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn every_way_out_restores_the_terminal() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "one", "sleep 600");
    for (how, code) in [
        ("C-c", 0),
        ("SIGTERM", 143),
        ("SIGHUP", 129),
        ("SIGINT", 130),
    ] {
        let term = Term::open(&sb);
        term.wait_row("one", "running");
        match how {
            "C-c" => term.keys(&["C-c"]),
            "SIGTERM" => signal(term.top_pid(), 15),
            "SIGHUP" => signal(term.top_pid(), 1),
            _ => signal(term.top_pid(), 2),
        }
        term.ended(code);
    }
}

// A terminal that goes away (its tmux server killed, as when an ssh connection drops) ends
// top: it used to read the end of its input there forever, a core busy.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn top_ends_when_its_terminal_goes() {
    e2e!();
    let sb = Sandbox::new();
    let term = Term::open(&sb);
    let top = term.top_pid();
    let _ = term.tmux(&["kill-server"]);
    wait_gone(top);
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn keys_stop_and_restart_after_y_filter_help_log_and_attach() {
    e2e!();
    let sb = Sandbox::new();
    start(&sb, "alpha", "sh -c 'echo alpha-was-here; exec sleep 600'");
    start(&sb, "beta", "sleep 600");
    let term = Term::open(&sb);
    term.wait_row("beta", "running");
    // The filter: typed, applied with Enter, cleared with Esc.
    term.keys(&["/", "b", "e", "t"]);
    term.wait_for("the filter being typed", "/bet_");
    assert!(
        Term::row(&term.screen(), "alpha").is_some(),
        "applied too early"
    );
    term.keys(&["Enter"]);
    term.wait_screen("alpha filtered out", |s| {
        Term::row(s, "alpha").is_none() && Term::row(s, "beta").is_some()
    });
    term.keys(&["Escape"]);
    term.wait_row("alpha", "running");
    // Help, and back.
    term.keys(&["?"]);
    term.wait_for("the keys", "restart the agent (after y)");
    term.keys(&["x"]);
    term.wait_screen("help closed", |s| !s.contains("(after y)"));
    // The selection stayed on beta through the filter; the log of alpha, above it.
    term.keys(&["k", "l"]);
    let screen = term.wait_for("alpha's log", "alpha: recent output");
    assert!(screen.contains("alpha-was-here"), "{screen}");
    term.keys(&["x"]);
    // A stop needs its y: n keeps the agent running.
    let alpha_pid = sb.pane_pid("alpha");
    term.keys(&["s"]);
    term.wait_for("the question", "stop alpha? y: yes");
    term.keys(&["n"]);
    term.wait_for("the answer", "stop alpha: cancelled");
    assert!(alive(alpha_pid) && sb.has_session("alpha"));
    term.keys(&["s", "y"]);
    term.wait_row("alpha", "stopped");
    wait_for_status(&sb.hb_file("alpha"), Status::Stopped, WAIT);
    assert!(!sb.has_session("alpha"));
    // Restart beta (second row): a new pane.
    // alpha, stopped, now sorts after beta, and stays selected.
    let beta_pid = pane_pid(&sb, "beta");
    term.keys(&["k", "r"]);
    term.wait_for("the question", "restart beta? y: yes");
    term.keys(&["y"]);
    wait_until(
        "beta restarted in a new pane",
        WAIT,
        || pane_pid(&sb, "beta").filter(|&pid| Some(pid) != beta_pid),
        || term.screen(),
    );
    term.wait_row("beta", "running");
    // Enter attaches top's terminal to beta; detaching comes back to top.
    term.keys(&["Enter"]);
    wait_until(
        "a client on beta",
        WAIT,
        || {
            let out = sb.tmux(&["list-clients", "-F", "#{session_name}"]);
            (String::from_utf8_lossy(&out.stdout).trim() == "beta").then_some(())
        },
        || term.screen(),
    );
    term.keys(&["C-b", "d"]);
    term.wait_for("top again", "mosaic-fleet top:");
    term.wait_row("beta", "running");
    term.keys(&["q"]);
    term.ended(0);
}

// p types a prompt on the bottom line and sends it to the selected agent as `send` does: Esc
// and an empty prompt send nothing.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn p_sends_a_prompt_to_the_selected_agent() {
    e2e!();
    let sb = Sandbox::new();
    let got = crate::send::start_reader(&sb, "reader", &[]);
    start(&sb, "zzz", "sleep 600");
    let term = Term::open(&sb);
    term.wait_row("zzz", "running");
    // reader sorts first and is selected.
    term.keys(&["p", "n", "o", "p", "e"]);
    term.wait_for("the prompt being typed", "send reader> nope_");
    term.keys(&["Escape"]);
    term.wait_for("the prompt cancelled", "send reader: cancelled");
    term.keys(&["p", "Enter"]);
    term.wait_for("nothing typed", "send reader: nothing typed");
    term.keys(&["p"]);
    // Literal keys, so tmux takes none of them for a key name; q is typed, not a quit.
    term.keys(&["-l", "hi $(touch pwned); q #{pane_pid}"]);
    term.keys(&["BSpace", "Enter"]);
    term.wait_for("send's own report", "sent to reader:");
    let text = crate::send::wait_len(&sb, "reader", &got, 1);
    assert_eq!(text, "hi $(touch pwned); q #{pane_pid\n");
    assert!(!sb.path("work").join("pwned").exists());
    term.keys(&["q"]);
    term.ended(0);
}

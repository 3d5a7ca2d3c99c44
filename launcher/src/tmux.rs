/*!
Every conversation with tmux. Invariants: nothing else in the project talks to tmux; every
call has the shape `tmux -L <socket> <subcommand> ...` (the contract's fake tmux reads argv
`$3` as the subcommand) with exact-match targets (`=AGENT`, or `=AGENT:` for the session's
current window and its active pane: no window or pane index is assumed, so a user's
`base-index` or `pane-base-index` changes nothing); and every call has a deadline
(`MOSAIC_TMUX_TIMEOUT`), past which the tmux client's whole process group is killed.

The pane runs an argument vector, `/bin/sh -c '<pane command>'`, never a string for the
server's `default-shell`, which may not be a POSIX shell (elvish, fish, nu). The session is
created by one command sequence that also sets `remain-on-exit` on its pane and marks the
session as this launch's (`@mosaic_launch`) and names its heartbeat file (`@mosaic_hb`):
the server runs the sequence without returning to its event loop, so no exit of the pane can
slip in before `remain-on-exit` holds, and no other client sees the session unmarked.
*/

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mosaic_core::death::Death;
use mosaic_core::validate;

use crate::child::{self, Cut, Running, Stop};

mod args;
mod chain;
mod parse;

pub use self::args::pane_argument;
pub use self::args::LOG_OPTION;
use self::args::{new_session_args, no_trailing_semicolon, pane_args, reopen_pipe};
pub use self::chain::NewSessions;
pub use self::parse::PaneRow;
use self::parse::{output_only, parse_pane, parse_pids, split_first_line, PANE_ROW_FORMAT};

/// How long any one tmux call may take unless `MOSAIC_TMUX_TIMEOUT` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The shell that runs the pane command, whatever the server's `default-shell` is.
pub const PANE_SHELL: &str = "/bin/sh";

pub struct Tmux<'a> {
    socket: &'a str,
    timeout: Duration,
    stop: Option<&'a Stop>,
}

/// What `new-session` did.
pub enum Created {
    /// A new session. `pane` is its pane's pid and the server's pid when tmux printed them
    /// (a stand-in tmux may print nothing).
    New(Option<PanePids>),
    /// The session existed already (or a racing launcher made it first).
    AlreadyRunning,
}

/// What [`Tmux::capture_and_pipe`] found.
pub struct Piped {
    /// The pane had a pipe already (and keeps it: none was opened).
    pub already: bool,
    pub server: Option<i32>,
    /// What the agent printed, as far as the pane kept it (as [`Tmux::capture`]).
    pub kept: Vec<u8>,
}

/// A pane's process and its tmux server, as tmux printed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PanePids {
    pub pane: i32,
    pub server: i32,
}

/// What tmux says about the agent's pane (the active pane of the session's current window).
#[derive(Debug, PartialEq, Eq)]
pub enum Pane {
    Live(i32),
    /// Its process ended; `remain-on-exit` kept the pane.
    Dead(DeadPane),
    /// tmux answered, but with no pid (the contract's fakes do this): no sidecar.
    Unknown,
    /// The session is gone.
    Gone(String),
}

/// A dead pane, as tmux keeps it (`remain-on-exit`): its process, how that ended, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadPane {
    pub pid: i32,
    pub death: Death,
    /// Seconds since the epoch.
    pub time: Option<i64>,
}

impl DeadPane {
    /// Whether tmux (or the zombie) said how the process ended.
    pub fn known(&self) -> bool {
        self.death != Death::Unknown
    }

    /// Fills in an unknown death from a raw wait status (the zombie's own).
    pub fn fill_from_wait_status(&mut self, raw: i32) {
        if !self.known() {
            self.death = Death::from_wait_status(raw);
        }
    }

    /// As the launcher reports a start that failed: "status 127 (command not found)",
    /// "signal 9", or "an unknown status". The shell's meaning of 126 and 127 is spelt out:
    /// tmux may lose the end of the shell's own message when the pane dies while its last
    /// output is still being read.
    pub fn describe(&self) -> String {
        match self.death {
            Death::Signal(sig) => format!("signal {sig}"),
            Death::Status(126) => "status 126 (not executable)".into(),
            Death::Status(127) => "status 127 (command not found)".into(),
            Death::Status(status) => format!("status {status}"),
            Death::Unknown => "an unknown status".into(),
        }
    }
}

/// A tmux call that did not produce an answer.
#[derive(Debug)]
pub enum Failure {
    /// A stop signal arrived while waiting.
    Interrupted(i32),
    /// Anything else, as one line.
    Error(String),
}

impl From<String> for Failure {
    fn from(why: String) -> Self {
        Failure::Error(why)
    }
}

/// The session to create.
pub struct Spec<'a> {
    pub agent: &'a str,
    pub workdir: &'a Path,
    pub pane_command: &'a OsStr,
    /// Marks the session as this launch's, so that only this launch removes it again.
    pub token: &'a str,
    pub hb_file: Option<&'a Path>,
    /// The session's `alert-bell` hook (see `pane::bell_hook`), set in the same sequence: only
    /// a session this run created gets it (a `duplicate session` ends the sequence).
    pub bell_hook: Option<&'a OsStr>,
    /// The transcript's writer and `pane-died` hook, set in the same sequence, so the pipe
    /// holds from the pane's first byte.
    pub log: Option<&'a crate::transcript::Keeping>,
}

impl<'a> Tmux<'a> {
    pub fn new(socket: &'a str, timeout: Duration, stop: Option<&'a Stop>) -> Self {
        Tmux {
            socket,
            timeout,
            stop,
        }
    }

    pub fn socket(&self) -> &str {
        self.socket
    }

    /// Starts the `new-session` sequence and returns while tmux works; [`NewSession::finish`]
    /// waits for it.
    pub fn start_new_session(&self, spec: &Spec) -> Result<NewSession<'_>, Failure> {
        let mut cmd = self.command(&new_session_args(spec));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = child::spawn(&mut cmd, true).map_err(|e| Failure::Error(cannot_run(e)))?;
        Ok(NewSession {
            tmux: self,
            child,
            deadline: Instant::now() + self.timeout,
        })
    }

    /// The agent's pane: the active pane of the session's current window.
    pub fn pane(&self, agent: &str) -> Result<Pane, Failure> {
        let pane = self.pane_once(agent)?;
        let Pane::Dead(mut death) = pane else {
            return Ok(pane);
        };
        if death.known() || death.pid == 0 {
            return Ok(Pane::Dead(death));
        }
        // tmux 3.3a sometimes misses its child's SIGCHLD: the pane reads dead (its pty hit
        // EOF) with no status, and the process stays an unreaped zombie until some later
        // SIGCHLD. A zombie's pid cannot be reused, so its own wait status is this pane's.
        if let Some(raw) = mosaic_core::proc::zombie_status(death.pid) {
            death.fill_from_wait_status(raw);
            return Ok(Pane::Dead(death));
        }
        // No zombie: tmux has reaped it since it answered, and keeps its status now.
        self.pane_once(agent)
    }

    fn pane_once(&self, agent: &str) -> Result<Pane, Failure> {
        let target = format!("={agent}:");
        let out = self.run(&[
            "list-panes",
            "-t",
            &target,
            "-F",
            "#{pane_active}:#{pane_pid}:#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}:#{pane_dead_time}",
        ])?;
        if out.status.success() {
            return Ok(parse_pane(&out.stdout));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("can't find")
            || err.contains("no such")
            || err.contains("no server running")
            || err.contains("error connecting")
        {
            return Ok(Pane::Gone(first_line(&err)));
        }
        Err(self.failure("list-panes", &out).into())
    }

    /// The server's pid, when tmux tells it (a stand-in may not).
    pub fn server_pid(&self) -> Option<i32> {
        let out = self.run(&["display-message", "-p", "#{pid}"]).ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().ok().filter(|&p: &i32| p > 0)
    }

    /// The last line a dead pane's process wrote (its shell's complaint, say), if any.
    pub fn last_words(&self, agent: &str) -> Option<String> {
        let target = format!("={agent}:");
        let out = self
            .run(&["capture-pane", "-p", "-J", "-S", "-50", "-t", &target])
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .rev()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Pane is dead"))
            .map(str::to_string)
            .next()
    }

    /// The heartbeat file the session was created with (`@mosaic_hb`), if any.
    pub fn hb_file(&self, agent: &str) -> Result<Option<OsString>, Failure> {
        let target = format!("={agent}:");
        let out = self.run(&["show-options", "-v", "-t", &target, "@mosaic_hb"])?;
        if !out.status.success() {
            return Ok(None);
        }
        let mut value = out.stdout;
        if value.last() == Some(&b'\n') {
            value.pop();
        }
        if value.last() == Some(&b' ') {
            value.pop();
        }
        Ok((!value.is_empty()).then(|| OsString::from_vec(value)))
    }

    /// Names `file` as the session's heartbeat file (for a session made without one).
    pub fn set_hb_file(&self, agent: &str, file: &Path) {
        let target = format!("={agent}:");
        let _ = self.run(&[
            OsStr::new("set-option"),
            OsStr::new("-t"),
            OsStr::new(&target),
            OsStr::new("@mosaic_hb"),
            &no_trailing_semicolon(file.as_os_str(), b" "),
        ]);
    }

    /// Starts the command again in the agent's dead pane. tmux refuses a pane that is still
    /// active (a racing launcher respawned it first): `None`.
    pub fn respawn(
        &self,
        agent: &str,
        workdir: &Path,
        pane_command: &OsStr,
    ) -> Result<Option<PanePids>, Failure> {
        self.respawn_pane(agent, pane_args(agent, workdir, pane_command))
    }

    /// Starts the agent's dead pane again exactly as it was made: `respawn-pane` without a
    /// command reruns the pane's own argument vector in its own start directory, with the
    /// session's environment (tmux 3.3a). The restart of a supervised agent, which knows no
    /// more of it than its name. `None` when the pane is live (someone respawned it first).
    pub fn respawn_as_before(&self, agent: &str) -> Result<Option<PanePids>, Failure> {
        self.respawn_pane(agent, Vec::new())
    }

    fn respawn_pane(&self, agent: &str, pane: Vec<OsString>) -> Result<Option<PanePids>, Failure> {
        let target = format!("={agent}:");
        let mut args: Vec<OsString> =
            vec!["respawn-pane".into(), "-t".into(), target.clone().into()];
        args.extend(pane);
        // A transcript's writer that is gone (killed) is started again for the new run.
        args.extend(reopen_pipe(&target));
        args.extend([
            ";".into(),
            "display-message".into(),
            "-p".into(),
            "-t".into(),
            target.into(),
            "#{pane_pid} #{pid}".into(),
        ]);
        let mut cmd = self.command(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = child::output(&mut cmd, true, Instant::now() + self.timeout, self.stop)
            .map_err(|cut| self.cut("respawn-pane", cut))?;
        if out.status.success() {
            return Ok(parse_pids(&out.stdout));
        }
        if String::from_utf8_lossy(&out.stderr).contains("still active") {
            return Ok(None);
        }
        Err(self.failure("respawn-pane", &out).into())
    }

    /// Removes session `agent` if, and only if, this launch created it (`@mosaic_launch` is
    /// `token`): one tmux command, so a session another launcher owns is never touched. Runs
    /// to its own deadline whatever signals arrive: it is the roll-back.
    pub fn remove_own_session(&self, agent: &str, token: &str) {
        let target = format!("={agent}:");
        let test = format!("#{{==:#{{@mosaic_launch}},{token}}}");
        let kill = format!("kill-session -t {target}");
        let mut cmd = self.command(&["if-shell", "-F", "-t", &target, &test, &kill]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let _ = child::output(&mut cmd, true, Instant::now() + self.timeout, None);
    }

    /// Every session's pane (the active pane of its current window), in one `list-panes -a`
    /// round trip: the fleet view. A socket with no server is an empty fleet.
    pub fn list_panes(&self) -> Result<Vec<PaneRow>, Failure> {
        let out = self.run(&["list-panes", "-a", "-F", PANE_ROW_FORMAT])?;
        if !out.status.success() {
            if is_missing(&out) {
                return Ok(Vec::new());
            }
            return Err(self.failure("list-panes", &out).into());
        }
        let mut rows: Vec<PaneRow> = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((active, row)) = PaneRow::parse(line) else {
                continue;
            };
            // One row per session: its active pane in its current window, else its first.
            match rows.last_mut() {
                Some(last) if last.session == row.session => {
                    if active {
                        *last = row;
                    }
                }
                _ => rows.push(row),
            }
        }
        // As in `pane`: a dead pane whose SIGCHLD tmux missed has no status, but its process
        // is still an unreaped zombie whose own wait status is the pane's.
        for row in rows.iter_mut() {
            if row.dead && row.death == Death::Unknown {
                let zombie = row.pid.and_then(mosaic_core::proc::zombie_status);
                if let Some(raw) = zombie {
                    row.death = Death::from_wait_status(raw);
                }
            }
        }
        Ok(rows)
    }

    /// The agent's output as its pane kept it, its whole history (`capture-pane -p -J -S -`),
    /// also for a dead pane, without tmux's own "Pane is dead" line; `None` when there is no
    /// such session.
    pub fn capture(&self, agent: &str) -> Result<Option<Vec<u8>>, Failure> {
        let target = format!("={agent}:");
        let out = self.run(&[
            "display-message",
            "-p",
            "-t",
            &target,
            "#{pane_dead}",
            ";",
            "capture-pane",
            "-p",
            "-J",
            "-S",
            "-",
            "-t",
            &target,
        ])?;
        if out.status.success() {
            let (dead, kept) = split_first_line(&out.stdout);
            return Ok(Some(output_only(kept, dead.trim_ascii() == b"1")));
        }
        if is_missing(&out) {
            return Ok(None);
        }
        Err(self.failure("capture-pane", &out).into())
    }

    /// In one tmux command, so that no output falls between them or is seen twice: whether
    /// the agent's pane already has a pipe, the server's pid, everything the pane kept (as
    /// [`Tmux::capture`]), and, only when it had no pipe, a pipe of its output from now on
    /// into `fifo` (`pipe-pane -O`; tmux 3.3a's `-o` would close another's pipe). The shell
    /// command reaches `pipe-pane` through the pane option `option`, never through tmux's
    /// parser. `Ok(None)`: no such session.
    pub fn capture_and_pipe(
        &self,
        agent: &str,
        fifo: &Path,
        option: &str,
    ) -> Result<Option<Piped>, Failure> {
        let target = format!("={agent}:");
        let pipe = follow_command(fifo);
        let open = format!("pipe-pane -O -t {target} \"#{{{option}}}\"");
        let head = [
            "display-message",
            "-p",
            "-t",
            &target,
            "#{pane_pipe} #{pid} #{pane_dead}",
            ";",
            "set-option",
            "-p",
            "-t",
            &target,
            option,
        ];
        let mut args: Vec<&OsStr> = head.iter().map(OsStr::new).collect();
        args.push(&pipe);
        let rest = [
            ";",
            "capture-pane",
            "-p",
            "-J",
            "-S",
            "-",
            "-t",
            &target,
            ";",
            "if-shell",
            "-F",
            "-t",
            &target,
            "#{pane_pipe}",
            "",
            &open,
        ];
        args.extend(rest.iter().map(OsStr::new));
        let out = self.run(&args)?;
        if !out.status.success() {
            if is_missing(&out) {
                return Ok(None);
            }
            return Err(self.failure("pipe-pane", &out).into());
        }
        let (first, kept) = split_first_line(&out.stdout);
        let first = String::from_utf8_lossy(first);
        let mut words = first.split_whitespace();
        let already = words.next() == Some("1");
        let server = words.next().and_then(|w| validate::pid(w).ok());
        let dead = words.next() == Some("1");
        Ok(Some(Piped {
            already,
            server,
            kept: output_only(kept, dead),
        }))
    }

    /// The pane options of `agent`'s pane whose names start with `prefix` (a follower's
    /// `@mosaic_follow_ID`), names only; none when there is no such pane.
    pub fn pane_options(&self, agent: &str, prefix: &str) -> Vec<String> {
        let target = format!("={agent}:");
        let Ok(out) = self.run(&["show-options", "-p", "-t", &target]) else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| name.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    /// Removes the pane option `option` and, with `close`, the pane's pipe (`pipe-pane`
    /// without a command, after it: tmux 3.3a refuses that for a dead pane).
    pub fn unpipe(&self, agent: &str, option: &str, close: bool) {
        let target = format!("={agent}:");
        let mut args = vec!["set-option", "-pu", "-t", &target, option];
        if close {
            args.extend([";", "pipe-pane", "-t", &target]);
        }
        let _ = self.run(&args);
    }

    /// Ends session `agent` and names the pane it had at that instant (its pid, and whether it
    /// was dead): `list-panes` and `kill-session` in one tmux command, which the server runs
    /// with no other client's command in between, so a pane a racer respawned is never removed
    /// unseen. `Ok(None)` when there was no session.
    pub fn end_session_naming_pane(&self, agent: &str) -> Result<Option<(i32, bool)>, Failure> {
        let target = format!("={agent}");
        let window = format!("={agent}:");
        let format = "#{&&:#{pane_active},#{window_active}}\t#{pane_pid}\t#{pane_dead}";
        let out = self.run(&[
            "list-panes",
            "-t",
            &window,
            "-F",
            format,
            ";",
            "kill-session",
            "-t",
            &target,
        ])?;
        let pane = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                let active = fields.next()? == "1";
                let pid = fields.next()?.parse().ok()?;
                Some((active, pid, fields.next()? == "1"))
            })
            .max_by_key(|&(active, ..)| active)
            .map(|(_, pid, dead)| (pid, dead));
        if out.status.success() {
            return Ok(pane);
        }
        if is_missing(&out) {
            return Ok(None);
        }
        Err(self.failure("kill-session", &out).into())
    }

    /// Pastes the text read from `text` (a file positioned at its start) into the agent's pane
    /// as one paste, in one tmux command: `load-buffer` from the client's stdin into the
    /// private buffer `buffer`, then `paste-buffer -p -d` (bracketed when the pane's
    /// application asked for bracketed paste; the buffer deleted). No byte of the text is
    /// ever an argument, so neither a shell nor tmux's command parser sees it. tmux turns each
    /// LF into CR, as a terminal does for a pasted text. `Ok(false)`: no such session.
    pub fn paste(&self, agent: &str, text: std::fs::File, buffer: &str) -> Result<bool, Failure> {
        let target = format!("={agent}:");
        let args = [
            "load-buffer",
            "-b",
            buffer,
            "-",
            ";",
            "paste-buffer",
            "-p",
            "-d",
            "-b",
            buffer,
            "-t",
            &target,
        ];
        let out = self.run_with(&args, Stdio::from(text));
        if out.as_ref().is_ok_and(|out| out.status.success()) {
            return Ok(true);
        }
        // The sequence stopped before `-d` (no such pane, a deadline): the buffer, holding
        // the whole text, must not outlive this call.
        let _ = self.run(&["delete-buffer", "-b", buffer]);
        let out = out?;
        if is_missing(&out) {
            return Ok(false);
        }
        Err(self.failure("paste-buffer", &out).into())
    }

    /// Presses Enter in the agent's pane, as a key of its own. A pane in a mode (copy mode,
    /// after a scroll) would take the key for the mode: `copy-mode -q` ends any mode first,
    /// in the same command. `Ok(false)`: no such session.
    pub fn enter(&self, agent: &str) -> Result<bool, Failure> {
        let target = format!("={agent}:");
        let out = self.run(&[
            "copy-mode",
            "-q",
            "-t",
            &target,
            ";",
            "send-keys",
            "-t",
            &target,
            "Enter",
        ])?;
        if out.status.success() {
            return Ok(true);
        }
        if is_missing(&out) {
            return Ok(false);
        }
        Err(self.failure("send-keys", &out).into())
    }

    /// Ends session `agent`: `Ok(false)` when there was none.
    pub fn end_session(&self, agent: &str) -> Result<bool, Failure> {
        let target = format!("={agent}");
        let out = self.run(&["kill-session", "-t", &target])?;
        if out.status.success() {
            return Ok(true);
        }
        if is_missing(&out) {
            return Ok(false);
        }
        Err(self.failure("kill-session", &out).into())
    }

    /// Replaces this process with tmux showing session `agent`: `switch-client` when we run
    /// inside a client of this very server (`$TMUX` names its socket), else `attach-session`
    /// (with `TMUX` removed: attaching from inside another server's pane is deliberate here).
    /// No deadline: the user's session lasts as long as it lasts. Returns only on failure.
    pub fn attach(&self, agent: &str) -> String {
        use std::os::unix::process::CommandExt;
        cannot_run(self.attach_command(agent).exec())
    }

    /// [`Tmux::attach`] as a child, for `top`: returns when the user detaches (at once for a
    /// `switch-client`), with tmux's complaint when it failed.
    pub fn attach_and_wait(&self, agent: &str) -> Result<(), String> {
        let mut cmd = self.attach_command(agent);
        // Its complaint goes nowhere visible while top's screen is down: keep it.
        cmd.stderr(Stdio::piped()).stdout(Stdio::inherit());
        let out = cmd.output().map_err(cannot_run)?;
        if out.status.success() {
            return Ok(());
        }
        Err(first_line(&String::from_utf8_lossy(&out.stderr)))
    }

    fn attach_command(&self, agent: &str) -> Command {
        let target = format!("={agent}");
        let inside = std::env::var_os("TMUX").is_some_and(|tmux| {
            let socket = tmux.as_bytes().split(|&b| b == b',').next().unwrap_or(b"");
            Path::new(OsStr::from_bytes(socket)) == socket_path(self.socket)
        });
        let mut cmd = if inside {
            self.command(&["switch-client", "-t", &target])
        } else {
            let mut cmd = self.command(&["attach-session", "-t", &target]);
            cmd.env_remove("TMUX");
            cmd
        };
        cmd.stdin(Stdio::inherit());
        cmd
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output, Failure> {
        self.run_with(args, Stdio::null())
    }

    /// [`Tmux::run`] with `stdin` as the client's standard input.
    fn run_with<S: AsRef<OsStr>>(&self, args: &[S], stdin: Stdio) -> Result<Output, Failure> {
        let mut cmd = self.command(args);
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let subcommand = args
            .first()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .unwrap_or_default();
        child::output(&mut cmd, true, Instant::now() + self.timeout, self.stop)
            .map_err(|cut| self.cut(&subcommand, cut))
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-L")
            .arg(self.socket)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn cut(&self, subcommand: &str, cut: Cut) -> Failure {
        match cut {
            Cut::Interrupted(sig) => Failure::Interrupted(sig),
            Cut::TimedOut => Failure::Error(format!(
                "tmux {subcommand} on socket {} timed out after {} (MOSAIC_TMUX_TIMEOUT)",
                self.socket,
                seconds(self.timeout)
            )),
            Cut::Io(e) => Failure::Error(cannot_run(e)),
        }
    }

    fn failure(&self, subcommand: &str, out: &Output) -> String {
        let err = first_line(&String::from_utf8_lossy(&out.stderr));
        let why = if err.is_empty() {
            format!("{}", out.status)
        } else {
            err
        };
        format!("tmux {subcommand} on socket {} failed: {why}", self.socket)
    }
}

/// A `new-session` under way.
pub struct NewSession<'a> {
    tmux: &'a Tmux<'a>,
    child: Running,
    deadline: Instant,
}

impl NewSession<'_> {
    /// Waits for tmux. Its `duplicate session` means another launcher won: already running.
    pub fn finish(self) -> Result<Created, Failure> {
        let tmux = self.tmux;
        // Not cut short by a stop signal: a client killed after it sent the command may still
        // have its session made after our roll-back looked. Its answer is milliseconds away;
        // the launch looks at the signal right after.
        let out = self
            .child
            .finish(self.deadline, None)
            .map_err(|cut| tmux.cut("new-session", cut))?;
        if out.status.success() {
            return Ok(Created::New(parse_pids(&out.stdout)));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("duplicate session") {
            return Ok(Created::AlreadyRunning);
        }
        Err(tmux.failure("new-session", &out).into())
    }
}

/// Where `tmux -L NAME` keeps its socket: `${TMUX_TMPDIR:-/tmp}/tmux-UID/NAME`.
pub fn socket_path(socket: &str) -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::var_os("TMUX_TMPDIR")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/tmp".into());
    // /proc/self belongs to our uid; no raw call needed.
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    Path::new(&dir).join(format!("tmux-{uid}")).join(socket)
}

/// The shell command a follower's pipe runs: `exec cat >'FIFO'`.
pub fn follow_command(fifo: &Path) -> OsString {
    let mut pipe = b"exec cat >".to_vec();
    crate::pane::quote(&mut pipe, fifo.as_os_str().as_bytes());
    OsString::from_vec(pipe)
}

/// tmux's answer for a session (or server) that is not there. A server that exits while we
/// connect (`server exited unexpectedly`: its last session just ended) has no session either.
fn is_missing(out: &Output) -> bool {
    let err = String::from_utf8_lossy(&out.stderr);
    err.contains("can't find")
        || err.contains("no such")
        || err.contains("no server running")
        || err.contains("error connecting")
        || err.contains("server exited unexpectedly")
        || err.contains("no current target")
}

fn cannot_run(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "cannot run tmux: not found on PATH".to_string(),
        _ => format!("cannot run tmux: {}", mosaic_core::why(&e)),
    }
}

/// `10s`, `0.5s`.
pub fn seconds(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::args::escape_format;
    use super::*;

    #[test]
    fn a_dead_panes_capture_loses_only_tmuxs_line() {
        let dead = b"one\ntwo\n\n\nPane is dead (status 3, Thu Dec  3 01:07:46 2026)\n";
        assert_eq!(output_only(dead, true), b"one\ntwo\n\n\n");
        assert_eq!(output_only(dead, false), dead);
        assert_eq!(output_only(b"Pane is dead\n", true), b"");
        assert_eq!(output_only(b"", true), b"");
        assert_eq!(
            split_first_line(b"1 2\nrest\n"),
            (&b"1 2"[..], &b"rest\n"[..])
        );
    }

    #[test]
    fn formats_are_escaped_in_workdirs() {
        assert_eq!(escape_format(OsStr::new("/a/#{b}/##")), "/a/##{b}/####");
    }

    #[test]
    fn a_final_semicolon_never_reaches_tmux() {
        assert_eq!(no_trailing_semicolon(OsStr::new("/a;"), b"/"), "/a;/");
        assert_eq!(no_trailing_semicolon(OsStr::new("x \\;"), b" "), "x \\; ");
        assert_eq!(no_trailing_semicolon(OsStr::new("a;b"), b" "), "a;b");
    }
}

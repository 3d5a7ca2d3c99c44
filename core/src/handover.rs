/*!
The one protocol between the two binaries: how `mosaic-launcher` starts a sidecar and hands it
the pane, and how the sidecar answers. Both sides call this module, so the argv, the stdin line
and the exit codes are written once.

1. The launcher spawns `mosaic-hb` with [`Request::args`]: `--pid - --file FILE --interval SECS
   --idle-after SECS --agent NAME --socket SOCKET [--reap SECS] [--on-event CMD --hook-timeout
   SECS]` (and, under a restart policy, `--restart POLICY` with the limits that are not the
   default), while tmux is still creating the session.
2. The sidecar validates, prepares its file, and reads one line from stdin:
   [`Target::line`], `PID [STARTED]\n` (STARTED: `/proc/PID/stat` field 22, so a stranger that
   took the PID in between is refused). EOF instead means "no sidecar wanted": it leaves
   having written nothing.
3. The sidecar takes the lock and attaches, and stays the very process the launcher spawned
   (no fork: `setsid` gave it a session of its own, see [`Ready`]). Once its first record is
   written it prints [`READY`] on stdout and lets go of stdout and stderr: that line is the
   answer "running", and the launcher returns at once, without waiting for a daemon's forks.
   A sidecar that cannot run exits instead, and its exit status is the answer,
   [`Answer::from_code`]: [`KEPT`] another sidecar keeps the file, [`TARGET_GONE`] the target
   is not running (also when it died before the first record), 1 or 2 a failure whose
   one-line reason is on stderr.

The two extra codes are used only with `--pid -`: a person running `mosaic-hb --pid N` keeps
the documented 0/1/2 (and a daemon that forks away), and the launcher learns why a start
failed without probing again.
*/

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::validate;

/// The `--pid` value that means "read the target from stdin".
pub const PID_FROM_STDIN: &str = "-";

/// Exit code, with `--pid -`: another sidecar already keeps the heartbeat file.
pub const KEPT: u8 = 3;
/// Exit code, with `--pid -`: the target is not running (a `status=exited` record was written).
pub const TARGET_GONE: u8 = 4;

/// What the launcher asks a sidecar to keep.
pub struct Request<'a> {
    pub file: &'a Path,
    pub interval: Duration,
    pub idle_after: Duration,
    pub agent: &'a str,
    /// The agent's tmux socket (its restarts, and its hooks' `MOSAIC_SOCKET`).
    pub socket: &'a str,
    /// After each death of the agent, end what it left in its session, with this grace
    /// ([`crate::teardown`]).
    pub reap: Option<Duration>,
    /// The restart policy's arguments, [`crate::supervise::sidecar_args`] (none for `no`).
    pub restart: &'a [String],
    /// The event hook (`--on-event`) and its timeout.
    pub hook: Option<(&'a OsStr, Duration)>,
    /// The sidecar leaves our session itself (`--setsid`), not through `setsid(1)`.
    pub setsid: bool,
}

impl Request<'_> {
    /// The sidecar's arguments (after the program name).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--pid".into(),
            PID_FROM_STDIN.into(),
            "--file".into(),
            self.file.into(),
            "--interval".into(),
            validate::format_interval(self.interval).into(),
            "--idle-after".into(),
            validate::format_interval(self.idle_after).into(),
            "--agent".into(),
            self.agent.into(),
            "--socket".into(),
            self.socket.into(),
        ];
        if self.setsid {
            args.push("--setsid".into());
        }
        if let Some(grace) = self.reap {
            args.extend(["--reap".into(), validate::format_interval(grace).into()]);
        }
        if let Some((command, timeout)) = self.hook {
            let timeout = validate::format_interval(timeout).into();
            args.extend([
                "--on-event".into(),
                command.into(),
                "--hook-timeout".into(),
                timeout,
            ]);
        }
        args.extend(self.restart.iter().map(Into::into));
        args
    }
}

/// The process a sidecar is handed: its pid and, when `/proc` shows it, its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub pid: i32,
    pub started: Option<u64>,
}

impl Target {
    /// `pid` with its start time read now: call it as soon as the pid is known.
    pub fn now(pid: i32) -> Target {
        Target {
            pid,
            started: crate::proc::start_time(pid),
        }
    }

    /// The stdin line: `PID [STARTED]\n`.
    pub fn line(&self) -> String {
        match self.started {
            Some(started) => format!("{} {started}\n", self.pid),
            None => format!("{}\n", self.pid),
        }
    }

    /// Parses a stdin line; `Ok(None)` for an empty line or EOF (no sidecar wanted).
    pub fn parse(line: &str) -> Result<Option<Target>, String> {
        let mut words = line.split_whitespace();
        let Some(pid) = words.next() else {
            return Ok(None);
        };
        let pid = validate::pid(pid)?;
        let started = words.next().map(validate::start_time).transpose()?;
        if let Some(extra) = words.next() {
            return Err(format!("unexpected {extra:?} after the pid on stdin"));
        }
        Ok(Some(Target { pid, started }))
    }
}

/// The sidecar's answer "running", on its stdout: its first record is written.
pub const READY: &[u8] = b"running\n";

/// The hand-over sidecar's promise to answer once its first record is written.
pub struct Ready {
    /// /dev/null, for the descriptors the launcher must stop waiting on.
    pub null: File,
    /// Where diagnostics go once the launcher has its answer (else /dev/null).
    pub log: Option<File>,
}

impl Ready {
    /// Says [`READY`] on stdout, then puts stderr on the log and stdout on /dev/null: the
    /// launcher reads the line and nothing after it. Until now a diagnostic still reached the
    /// launcher's stderr pipe, which it reads when a start fails.
    pub fn send(self) {
        let _ = nix::unistd::dup2_stderr(self.log.as_ref().unwrap_or(&self.null));
        // A launcher that is gone (killed while waiting) leaves a broken pipe: the sidecar
        // beats on regardless (SIGPIPE is ignored by Rust's runtime, so this is an error).
        let _ = std::io::stdout().lock().write_all(READY);
        let _ = nix::unistd::dup2_stdout(&self.null);
    }
}

/// How a sidecar start ended, from its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The sidecar runs (with `--pid N`: it has daemonized; with `--pid -` it says [`READY`]
    /// and does not exit).
    Running,
    /// Another sidecar already keeps the file (a racing launcher started it).
    Kept,
    /// The target is not running.
    TargetGone,
    /// Anything else: the reason is the sidecar's one stderr line.
    Failed,
}

impl Answer {
    /// The answer for an exit code (`None`: killed by a signal).
    pub fn from_code(code: Option<i32>) -> Answer {
        match code {
            Some(0) => Answer::Running,
            Some(c) if c == i32::from(KEPT) => Answer::Kept,
            Some(c) if c == i32::from(TARGET_GONE) => Answer::TargetGone,
            _ => Answer::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_line_round_trips() {
        for target in [
            Target {
                pid: 42,
                started: Some(987_654),
            },
            Target {
                pid: i32::MAX,
                started: None,
            },
        ] {
            assert_eq!(Target::parse(&target.line()), Ok(Some(target)));
        }
        assert_eq!(Target::parse(""), Ok(None));
        assert_eq!(Target::parse("\n"), Ok(None));
        assert!(Target::parse("0\n").is_err());
        assert!(Target::parse("12 x\n").is_err());
        assert!(Target::parse("12 34 56\n").is_err());
    }

    #[test]
    fn args_carry_the_interval_as_written() {
        let request = Request {
            file: Path::new("/run/hb/a.hb"),
            interval: Duration::from_millis(500),
            idle_after: Duration::from_secs(60),
            agent: "a",
            socket: "s",
            reap: None,
            restart: &[],
            hook: Some((
                OsStr::new("echo \"$MOSAIC_EVENT\""),
                Duration::from_secs(30),
            )),
            setsid: false,
        };
        let args: Vec<String> = request
            .args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--pid",
                "-",
                "--file",
                "/run/hb/a.hb",
                "--interval",
                "0.5",
                "--idle-after",
                "60",
                "--agent",
                "a",
                "--socket",
                "s",
                "--on-event",
                "echo \"$MOSAIC_EVENT\"",
                "--hook-timeout",
                "30"
            ]
        );
    }

    #[test]
    fn exit_codes_answer() {
        assert_eq!(Answer::from_code(Some(0)), Answer::Running);
        assert_eq!(Answer::from_code(Some(3)), Answer::Kept);
        assert_eq!(Answer::from_code(Some(4)), Answer::TargetGone);
        assert_eq!(Answer::from_code(Some(1)), Answer::Failed);
        assert_eq!(Answer::from_code(None), Answer::Failed);
    }
}

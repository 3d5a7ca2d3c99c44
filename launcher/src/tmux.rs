/*!
Every conversation with tmux. Invariant: nothing else in the project talks to tmux, and every
call has the shape `tmux -L <socket> <subcommand> ...` (the contract's fake tmux reads argv
`$3` as the subcommand) with exact-match targets (`=AGENT`).
*/

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub struct Tmux<'a> {
    socket: &'a str,
}

/// What `new-session` did.
pub enum Created {
    /// A new session; its pane's pid when tmux printed it.
    New(Option<u32>),
    /// The session existed already (or a racing launcher made it first).
    AlreadyRunning,
}

/// What `list-panes` says about the agent's first pane.
pub enum Pane {
    Pid(u32),
    /// tmux answered, but with no pid (the contract's fakes do this): no sidecar.
    Unknown,
    /// The session is gone: its command exited at once.
    Gone(String),
}

impl<'a> Tmux<'a> {
    pub fn new(socket: &'a str) -> Self {
        Tmux { socket }
    }

    /// Starts `new-session -d -s AGENT -c WORKDIR -e MOSAIC_AGENT_NAME=AGENT -P -F
    /// '#{pane_pid}' CMD` and returns while tmux works; [`NewSession::finish`] waits for it.
    /// With `bell_hook`, the same tmux command goes on `; set-hook -t =AGENT: alert-bell HOOK`:
    /// only a session this run created gets it (a `duplicate session` ends the sequence), and
    /// `=AGENT:` is the exact target that `set-hook` accepts (`=AGENT` is refused, and a bare
    /// `AGENT` would also match a longer name by prefix).
    pub fn start_new_session(
        &self,
        agent: &str,
        workdir: &Path,
        pane_command: &OsStr,
        bell_hook: Option<&OsStr>,
    ) -> Result<NewSession<'_>, String> {
        let hook_target = format!("={agent}:");
        let hook = bell_hook.map(|hook| {
            [
                OsStr::new(";"),
                OsStr::new("set-hook"),
                OsStr::new("-t"),
                OsStr::new(&hook_target),
                OsStr::new("alert-bell"),
                hook,
            ]
        });
        let child = self
            .command(&[
                OsStr::new("new-session"),
                OsStr::new("-d"),
                OsStr::new("-s"),
                OsStr::new(agent),
                OsStr::new("-c"),
                &escape_format(workdir.as_os_str()),
                OsStr::new("-e"),
                OsStr::new(&format!("MOSAIC_AGENT_NAME={agent}")),
                OsStr::new("-P"),
                OsStr::new("-F"),
                OsStr::new("#{pane_pid}"),
                pane_command,
            ])
            .args(hook.iter().flatten())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(cannot_run)?;
        Ok(NewSession { tmux: self, child })
    }

    /// The pid of the agent's first pane.
    pub fn pane_pid(&self, agent: &str) -> Result<Pane, String> {
        let target = format!("={agent}:0.0");
        let out = self.run(&[
            OsStr::new("list-panes"),
            OsStr::new("-t"),
            OsStr::new(&target),
            OsStr::new("-F"),
            OsStr::new("#{pane_pid}"),
        ])?;
        if out.status.success() {
            return Ok(parse_pid(&out.stdout).map_or(Pane::Unknown, Pane::Pid));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("can't find")
            || err.contains("no server running")
            || err.contains("error connecting")
        {
            return Ok(Pane::Gone(first_line(&err)));
        }
        Err(self.failure("list-panes", &out))
    }

    /// Removes a session this launcher created and could not complete.
    pub fn kill_session(&self, agent: &str) {
        let target = format!("={agent}");
        let _ = self.run(&[
            OsStr::new("kill-session"),
            OsStr::new("-t"),
            OsStr::new(&target),
        ]);
    }

    fn run(&self, args: &[&OsStr]) -> Result<Output, String> {
        self.command(args).output().map_err(cannot_run)
    }

    fn command(&self, args: &[&OsStr]) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-L")
            .arg(self.socket)
            .args(args)
            .stdin(Stdio::null());
        cmd
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
    child: Child,
}

impl NewSession<'_> {
    /// Waits for tmux. Its `duplicate session` means another launcher won: already running.
    pub fn finish(self) -> Result<Created, String> {
        let out = self.child.wait_with_output().map_err(cannot_run)?;
        if out.status.success() {
            return Ok(Created::New(parse_pid(&out.stdout)));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("duplicate session") {
            return Ok(Created::AlreadyRunning);
        }
        // The new session's command ended at once and took the server (its only session) down
        // before tmux answered (tmux 3.3a, about one time in four for `exit 3`): a session was
        // made and is gone, which the pane lookup then reports as such.
        if err.contains("server exited unexpectedly") {
            return Ok(Created::New(None));
        }
        Err(self.tmux.failure("new-session", &out))
    }
}

fn cannot_run(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "cannot run tmux: not found on PATH".to_string(),
        _ => format!("cannot run tmux: {}", mosaic_hb::why(&e)),
    }
}

/// tmux expands `#{...}` formats in `-c`; `##` is a literal `#`.
fn escape_format(dir: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(dir.len());
    for &b in dir.as_bytes() {
        out.push(b);
        if b == b'#' {
            out.push(b'#');
        }
    }
    OsString::from_vec(out)
}

fn parse_pid(stdout: &[u8]) -> Option<u32> {
    std::str::from_utf8(stdout)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_escaped_in_workdirs() {
        assert_eq!(escape_format(OsStr::new("/a/#{b}/##")), "/a/##{b}/####");
    }

    #[test]
    fn pids_parse_from_the_first_line() {
        assert_eq!(parse_pid(b"123\n"), Some(123));
        assert_eq!(parse_pid(b"\n"), None);
        assert_eq!(parse_pid(b""), None);
    }
}

/*!
`mosaic-fleet`: the operator's CLI over one tmux socket and one heartbeat directory.

```text
mosaic-fleet start AGENT      exactly `mosaic-launcher AGENT` (same flags, variables, output)
mosaic-fleet ls               one row per agent: tmux panes joined with heartbeat records  (ls)
mosaic-fleet logs AGENT       its transcript, else the pane's output; --follow streams it (logs, follow)
mosaic-fleet attach AGENT     tmux attach (switch-client from inside that server)
mosaic-fleet stop AGENT...    a deliberate stop: status=stopped, the process tree ended   (stop)
mosaic-fleet restart AGENT    stop, then start with the stored launch configuration       (stop)
mosaic-fleet prune            remove records nobody runs or keeps                         (prune)
mosaic-fleet top              the live dashboard: ls on one screen, acted on with keys      (top)
mosaic-fleet up [-f FILE]     converge the fleet to mosaic.toml: start, restart what changed (up, file)
mosaic-fleet diff [-f FILE]   what `up` would do; exit 3 when it would change something  (up)
mosaic-fleet down [-f FILE]   stop the file's agents                                      (up)
mosaic-fleet send AGENT -- T  one paste of the text, then Enter, as a person would          (send)
```

Every verb finds the fleet the way the launcher does: `--socket` / `MOSAIC_TMUX_SOCKET`, and
`--hb-dir` / `MOSAIC_HEARTBEAT_RUN_DIR` (else [`mosaic_core::dirs::default_dir`]). tmux is asked
through [`crate::tmux`] only, once per verb where it can be (`list-panes -a`).
*/

pub mod file;
pub mod follow;
pub mod logs;
pub mod ls;
pub mod plain;
pub mod prune;
pub mod send;
pub mod stop;
pub mod top;
pub mod up;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
pub use mosaic_core::exit::Fail;
use mosaic_core::{dirs, validate};

use crate::cli::Cli;
use crate::tmux::{Failure, PaneRow, Tmux};

/// Exit codes and variables every verb's help ends with.
const VERB_HELP: &str = "Environment: each option above reads the variable shown beside it.\n\
    Exit codes: 0 done, 1 failed at run time (tmux, a file), 2 bad input (also an agent with \
    no session on the socket).";

#[derive(Parser, Debug)]
#[command(
    name = "mosaic-fleet",
    version,
    about = "See and steer a fleet of agents: start, ls, logs, attach, send, stop, restart, \
        prune, top; up, diff, down from a fleet file.",
    long_about = "See and steer a fleet of agents started by mosaic-launcher: each agent is a \
        tmux session on one socket (`tmux -L SOCKET`) with a heartbeat file HB_DIR/AGENT.hb.\n\n\
        `mosaic-fleet start AGENT` is `mosaic-launcher AGENT`. `mosaic-hb status` remains the \
        tmux-free reader for monitoring hosts.",
    after_help = "Environment: MOSAIC_TMUX_SOCKET, MOSAIC_HEARTBEAT_RUN_DIR and the launcher's \
        MOSAIC_* variables (see each verb's --help).\n\
        Exit codes: 0 done, 1 failed at run time, 2 bad input."
)]
pub struct FleetCli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// Start an agent: exactly `mosaic-launcher AGENT` (see `mosaic-launcher --help`).
    #[command(after_help = START_HELP)]
    Start(Box<Cli>),
    /// One row per agent: tmux sessions joined with heartbeat records, live agents first.
    #[command(after_help = ls::HELP)]
    Ls(ls::LsArgs),
    /// Print the agent's last output: its transcript (also when its session is gone), else
    /// its pane's.
    #[command(after_help = VERB_HELP)]
    Logs(logs::LogsArgs),
    /// Attach to the agent's tmux session (switch-client when inside that tmux server).
    #[command(after_help = ATTACH_HELP)]
    Attach(AttachArgs),
    /// Give agents a prompt: the text as one paste (bracketed when asked for), then Enter.
    #[command(after_help = send::HELP)]
    Send(send::SendArgs),
    /// Stop agents deliberately: record status=stopped, end every process of their session,
    /// remove the session.
    #[command(after_help = stop::STOP_HELP)]
    Stop(stop::StopArgs),
    /// Stop agents, then start each again with the configuration it was launched with.
    #[command(after_help = stop::RESTART_HELP)]
    Restart(stop::RestartArgs),
    /// Remove the heartbeat records and lock files of agents neither running nor kept by a
    /// sidecar.
    #[command(after_help = prune::HELP)]
    Prune(prune::PruneArgs),
    /// The live dashboard: one row per agent, kept up to date; keys attach, stop, restart.
    #[command(after_help = top::HELP)]
    Top(top::TopArgs),
    /// Converge the fleet to its file (mosaic.toml): start what is not running, restart alone
    /// what changed, leave the rest untouched; with --prune, stop agents the file does not name.
    #[command(after_help = up::UP_HELP)]
    Up(up::UpArgs),
    /// Print what `up` would do: + start, ~ restart (KEY changed), - stop, how many unchanged.
    #[command(after_help = up::DIFF_HELP)]
    Diff(up::DiffArgs),
    /// Stop the agents the fleet file names, and no other.
    #[command(after_help = up::DOWN_HELP)]
    Down(up::DownArgs),
}

const START_HELP: &str = "Without --command and --runtime, an agent whose launch file \
    (HB_DIR/.AGENT.launch) is there starts as it was launched.\n\
    Environment: each option above reads the variable shown beside it; also\n  MOSAIC_HB_BIN    path of mosaic-hb (default: next to this executable, else on PATH)\n  \
    PATH             where `tmux` and `setsid` are found\n\
    Exit codes: 0 done (started, or already running), 1 failed at run time, 2 bad input.";

const ATTACH_HELP: &str = "Environment: each option above reads the variable shown beside it; \
    TMUX (set inside tmux) decides between attach-session and switch-client.\n\
    Exit codes: does not return when tmux starts; 1 tmux cannot run, 2 bad input or no such \
    session.";

/// Where the fleet is: the tmux socket and the heartbeat directory.
#[derive(Args, Debug, Clone)]
pub struct Where {
    /// tmux socket name, as in `tmux -L SOCKET`.
    #[arg(
        long,
        env = "MOSAIC_TMUX_SOCKET",
        value_name = "SOCKET",
        default_value = "mosaic"
    )]
    socket: OsString,
    /// Heartbeat directory [default: $XDG_RUNTIME_DIR/mosaic/heartbeat, else
    /// /tmp/mosaic-UID/heartbeat].
    #[arg(long, env = "MOSAIC_HEARTBEAT_RUN_DIR", value_name = "DIR")]
    hb_dir: Option<OsString>,
    /// Deadline in seconds for every tmux call, 0.01 to 3600.
    #[arg(
        long,
        env = "MOSAIC_TMUX_TIMEOUT",
        value_name = "SECS",
        default_value = "10",
        value_parser = tmux_timeout
    )]
    tmux_timeout: Duration,
}

pub fn tmux_timeout(text: &str) -> Result<Duration, String> {
    // An empty variable counts as unset.
    if text.is_empty() {
        return Ok(crate::tmux::DEFAULT_TIMEOUT);
    }
    validate::seconds(text, 0.01..=3600.0)
}

/// A validated [`Where`].
#[derive(Debug, Clone)]
pub struct Fleet {
    pub socket: String,
    pub hb_dir: PathBuf,
    /// The deadline of every tmux call.
    pub timeout: Duration,
}

impl Fleet {
    pub fn tmux(&self) -> Tmux<'_> {
        Tmux::new(&self.socket, self.timeout, None)
    }

    pub fn hb_file(&self, agent: &str) -> PathBuf {
        mosaic_core::layout::record_path(&self.hb_dir, agent)
    }

    /// The agents with a session on the socket: what `--all` names.
    pub fn sessions(&self) -> Result<Vec<String>, Fail> {
        let panes = self.tmux().list_panes().map_err(tmux_failed)?;
        Ok(panes.into_iter().map(|p| p.session).collect())
    }

    /// Whether `agent` is known here: a session of `panes`, or a record in the heartbeat dir.
    pub fn knows(&self, panes: &[PaneRow], agent: &str) -> bool {
        panes.iter().any(|p| p.session == agent)
            || std::fs::symlink_metadata(self.hb_file(agent)).is_ok()
    }

    /// The refusal of `names` that are known neither way: bad input, as for every verb.
    pub fn unknown(&self, names: &[&str]) -> Fail {
        usage(format!(
            "no agent {} on tmux socket {}: no such session, and no heartbeat file in {} (see \
             `mosaic-fleet ls --all`)",
            names.join(", "),
            self.socket,
            self.hb_dir.display()
        ))
    }
}

impl Where {
    fn resolve(&self) -> Result<Fleet, Fail> {
        let socket = self.socket.to_str().ok_or_else(|| {
            usage(format!(
                "invalid tmux socket name {:?}: not UTF-8",
                self.socket
            ))
        })?;
        // An empty variable counts as unset, as for the launcher.
        let socket = if socket.is_empty() { "mosaic" } else { socket };
        let socket = validate::socket(socket).map_err(usage)?.to_string();
        let hb_dir = match self.hb_dir.as_ref().filter(|d| !d.is_empty()) {
            Some(dir) => std::path::absolute(dir).map_err(|e| {
                usage(format!(
                    "invalid heartbeat dir {}: {}",
                    PathBuf::from(dir).display(),
                    mosaic_core::why(&e)
                ))
            })?,
            None => dirs::default_dir(),
        };
        Ok(Fleet {
            socket,
            hb_dir,
            timeout: self.tmux_timeout,
        })
    }
}

#[derive(Args, Debug)]
struct AttachArgs {
    /// Agent name.
    #[arg(value_name = "AGENT")]
    agent: String,
    #[command(flatten)]
    place: Where,
}

pub fn usage(message: String) -> Fail {
    Fail::usage(message)
}

pub fn failed(message: String) -> Fail {
    Fail::failed(message)
}

/// A tmux call that gave no answer: it failed, timed out, or (not for the fleet CLI, which
/// catches no signal) was interrupted.
pub fn tmux_failed(failure: Failure) -> Fail {
    match failure {
        Failure::Error(why) => failed(why),
        Failure::Interrupted(sig) => failed(format!("tmux interrupted by signal {sig}")),
    }
}

/// An agent named on the command line that the socket has no session of: bad input (exit 2),
/// for every verb alike, as a name that does not exist is (`kill` of no such pid, `systemctl`
/// of no such unit): retrying the same command cannot help.
pub fn no_such_agent(agent: &str, socket: &str) -> Fail {
    usage(format!(
        "no agent {agent} on tmux socket {socket}: no such session (see `mosaic-fleet ls`)"
    ))
}

/// Checks an agent name given on the command line.
pub fn agent_name(name: &str) -> Result<&str, Fail> {
    validate::agent(name).map_err(usage)
}

/// `mosaic-fleet`, from parsed arguments to exit code.
pub fn run(cli: FleetCli) -> ExitCode {
    let result = match cli.verb {
        Verb::Start(cli) => return crate::launch::run_as("mosaic-fleet", as_launched(*cli)),
        Verb::Ls(args) => ls::run(&args),
        Verb::Logs(args) => logs::run(&args),
        Verb::Attach(args) => attach(&args),
        Verb::Send(args) => send::run(&args),
        Verb::Stop(args) => stop::run_stop(&args),
        Verb::Restart(args) => stop::run_restart(&args),
        Verb::Prune(args) => prune::run(&args),
        Verb::Top(args) => top::run(&args),
        Verb::Up(args) => up::run_up(&args),
        Verb::Diff(args) => up::run_diff(&args),
        Verb::Down(args) => up::run_down(&args),
    };
    match result {
        Ok(code) => code,
        // An empty message: stdout was closed (`| head`), nothing worth saying.
        Err(fail) => fail.report("mosaic-fleet"),
    }
}

/// `start AGENT` with no command and no runtime, of an agent whose launch file is in the
/// heartbeat directory: started as it was launched (as `pm2 start NAME` or `docker start`
/// does a known one), the caller's deadline, settle time and sidecar binary kept. Anything
/// else goes to the launcher as given (which says what is missing).
fn as_launched(cli: Cli) -> Cli {
    let given = |v: &Option<OsString>| v.as_ref().is_some_and(|v| !v.is_empty());
    if given(&cli.command) || given(&cli.runtime) || cli.no_heartbeat {
        return cli;
    }
    let Some(agent) = cli.agent.to_str().and_then(|a| validate::agent(a).ok()) else {
        return cli;
    };
    let dir = match cli.hb_dir.as_ref().filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => dirs::default_dir(),
    };
    match crate::config::LaunchConfig::load(&dir, agent) {
        Ok(Some(config)) if config.agent == agent => Cli {
            settle: cli.settle,
            tmux_timeout: cli.tmux_timeout,
            hb_bin: cli.hb_bin,
            ..config.to_cli(cli.json)
        },
        _ => cli,
    }
}

/// Writes a report to stdout; a reader that closed the pipe is not an error worth a message.
pub fn print(text: &str) -> Result<(), Fail> {
    print_bytes(text.as_bytes())
}

/// [`print`] for bytes.
pub fn print_bytes(bytes: &[u8]) -> Result<(), Fail> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Fail::failed(String::new())),
        Err(e) => Err(failed(format!(
            "cannot write report to stdout: {}",
            mosaic_core::why(&e)
        ))),
    }
}

/// The last `n` lines of a capture (all when `n` is 0), without the blank rows below the
/// output that a pane's screen always has.
pub(crate) fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if n > 0 && lines.len() > n {
        lines.drain(..lines.len() - n);
    }
    lines
}

fn attach(args: &AttachArgs) -> Result<ExitCode, Fail> {
    let agent = agent_name(&args.agent)?;
    let fleet = args.place.resolve()?;
    let tmux = fleet.tmux();
    let panes = tmux.list_panes().map_err(tmux_failed)?;
    if !panes.iter().any(|p| p.session == agent) {
        return Err(no_such_agent(agent, &fleet.socket));
    }
    Err(failed(tmux.attach(agent)))
}

/// A duration in seconds from the command line: 0 to one day, fractions allowed.
pub fn seconds(text: &str) -> Result<Duration, String> {
    validate::seconds(text, 0.0..=86400.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        FleetCli::command().debug_assert();
    }

    #[test]
    fn start_takes_the_launchers_arguments() {
        let cli =
            FleetCli::try_parse_from(["mosaic-fleet", "start", "a-1", "--command", "x"]).unwrap();
        let Verb::Start(start) = cli.verb else {
            panic!("not start: {cli:?}")
        };
        assert_eq!(start.agent, "a-1");
        assert_eq!(start.command.as_deref(), Some(std::ffi::OsStr::new("x")));
    }

    #[test]
    fn logs_keep_the_last_lines_without_the_blank_screen() {
        let text = "a\nb  \nc\n\n\n";
        assert_eq!(last_lines(text, 2), ["b", "c"]);
        assert_eq!(last_lines(text, 0), ["a", "b", "c"]);
        assert_eq!(last_lines("", 5), Vec::<&str>::new());
    }
}

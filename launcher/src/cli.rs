/*!
The launcher's command line. Every option also reads the bash script's `MOSAIC_*` variable, so
`mosaic-launcher` is a drop-in for `start-agent-session.sh`; `--help` lists each one.
*/

use std::ffi::OsString;

use clap::Parser;
use mosaic_core::supervise::LimitArgs;
use mosaic_core::validate;

#[derive(Parser, Debug)]
#[command(
    name = "mosaic-launcher",
    version,
    about = "Start an AI coding agent in its own detached tmux session, with a heartbeat sidecar.",
    long_about = "Start an AI coding agent in its own detached tmux session, with a heartbeat sidecar.\n\n\
        Creates tmux session AGENT on a private socket (`tmux -L SOCKET`), running \
        `export PATH=<runtime bins>:\"$PATH\"; exec <command>` in WORKDIR, then starts \
        `mosaic-hb` through `setsid` to keep HB_DIR/AGENT.hb current. Idempotent: an agent \
        that is already running is reported (\"already running\", exit 0), and its sidecar is \
        restarted if it died or does not beat; a dead pane is started again (\"restarted\"), \
        unless its sidecar's own restart is pending (\"restarting\", left to it). \
        \"started\" means the pane's shell has executed the agent's command: one that cannot be \
        executed or exits at once is a failure, with its exit status and the shell's message. \
        Exit codes: 0 done, 1 failed, 2 bad input, 129/130/143 stopped by SIGHUP/SIGINT/SIGTERM \
        (what this run created is removed, or the launch completed first, as the message says).",
    after_help = "Environment: each option above reads the variable shown beside it; also\n  \
        MOSAIC_HB_BIN    path of mosaic-hb (default: next to this executable, else on PATH)\n  \
        MOSAIC_LOG_BIN   path of mosaic-log, the transcript writer (found the same way)\n  \
        PATH             where `tmux` and `setsid` are found"
)]
// Values are `OsString`s: clap refuses an empty path (an empty variable must count as unset)
// and names no variable when text is not UTF-8; `plan` checks both with a clear message.
pub struct Cli {
    /// Agent name: the tmux session and heartbeat file name; 1 to 64 of A-Z a-z 0-9 _ -,
    /// starting with a letter or digit.
    #[arg(value_name = "AGENT")]
    pub agent: OsString,

    /// tmux socket name, as in `tmux -L SOCKET`.
    #[arg(
        long,
        env = "MOSAIC_TMUX_SOCKET",
        value_name = "SOCKET",
        default_value = validate::DEFAULT_SOCKET
    )]
    pub socket: OsString,

    /// Directory the agent starts in [default: the current directory].
    #[arg(long, env = "MOSAIC_AGENT_WORKDIR", value_name = "DIR")]
    pub workdir: Option<OsString>,

    /// Agent runtime: pi, claude or codex; the default command is `mosaic yolo RUNTIME`.
    #[arg(long, env = "MOSAIC_AGENT_RUNTIME", value_name = "RUNTIME")]
    pub runtime: Option<OsString>,

    /// Shell command the pane runs (after `exec`), forwarded byte for byte
    /// [default: `mosaic yolo RUNTIME`].
    #[arg(long, env = "MOSAIC_AGENT_COMMAND", value_name = "COMMAND")]
    pub command: Option<OsString>,

    /// Directory put first on the pane's PATH (with ~/.npm-global/bin and ~/.local/bin,
    /// those that exist).
    #[arg(long, env = "MOSAIC_RUNTIME_BIN", value_name = "DIR")]
    pub runtime_bin: Option<OsString>,

    /// Heartbeat directory, created 0700
    /// [default: $XDG_RUNTIME_DIR/mosaic/heartbeat, else /tmp/mosaic-UID/heartbeat].
    #[arg(long, env = "MOSAIC_HEARTBEAT_RUN_DIR", value_name = "DIR")]
    pub hb_dir: Option<OsString>,

    /// Seconds between heartbeats, 0.01 to 86400; fractions allowed.
    #[arg(
        long,
        env = "MOSAIC_HEARTBEAT_INTERVAL",
        value_name = "SECS",
        default_value = validate::DEFAULT_INTERVAL,
        allow_hyphen_values = true
    )]
    pub hb_interval: OsString,

    /// Seconds without output after which the agent counts as idle (`activity=idle` in its
    /// heartbeat), 1 to 86400; fractions allowed.
    #[arg(
        long,
        env = "MOSAIC_IDLE_AFTER",
        value_name = "SECS",
        default_value = validate::DEFAULT_IDLE_AFTER,
        allow_hyphen_values = true
    )]
    pub idle_after: OsString,

    /// Shell command the agent's sidecar runs (`/bin/sh -c CMD`) on each of its events:
    /// started, exited, restarting, failed, stopped, busy, idle, waiting. It reads what
    /// happened from MOSAIC_AGENT, MOSAIC_EVENT, MOSAIC_PREVIOUS, MOSAIC_EXIT_STATUS,
    /// MOSAIC_EXIT_SIGNAL, MOSAIC_RESTARTS, MOSAIC_SOCKET, MOSAIC_HB_FILE, MOSAIC_TIME (never
    /// from the command string); its output goes to HB_DIR/.AGENT.hb.hook.log. One at a time,
    /// 16 more queued; failures and drops are counted in the heartbeat.
    #[arg(long, env = "MOSAIC_ON_EVENT", value_name = "CMD")]
    pub on_event: Option<OsString>,

    /// Seconds an --on-event hook may run before its process group is killed (a failure),
    /// 0.01 to 3600.
    #[arg(
        long,
        env = "MOSAIC_HOOK_TIMEOUT",
        value_name = "SECS",
        default_value = validate::DEFAULT_HOOK_TIMEOUT,
        allow_hyphen_values = true
    )]
    pub hook_timeout: OsString,

    /// Start no heartbeat sidecar.
    #[arg(long)]
    pub no_heartbeat: bool,

    /// Report what happened as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// Seconds a started agent must live on after executing its command to count as started
    /// (a crash within them is a failed launch), 0 to 3600.
    #[arg(long, env = "MOSAIC_SETTLE", value_name = "SECS", default_value = "0")]
    pub settle: Option<OsString>,

    /// Deadline in seconds for every tmux call and for the sidecar's start-up, 0.01 to 3600.
    #[arg(
        long,
        env = "MOSAIC_TMUX_TIMEOUT",
        value_name = "SECS",
        default_value = "10"
    )]
    pub tmux_timeout: Option<OsString>,

    /// Restart policy, kept by the agent's sidecar: no, on-failure (after a non-zero exit or a
    /// signal), always (also after exit 0). Never after a stop. Needs the heartbeat sidecar.
    #[arg(
        long,
        env = "MOSAIC_RESTART",
        value_name = "POLICY",
        default_value = "no"
    )]
    pub restart: Option<OsString>,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// A variable for the agent's environment (its shell only, not the tmux server's);
    /// repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<OsString>,

    /// A label stored with the agent's launch configuration (`HB_DIR/.AGENT.launch`) for
    /// tools to read; repeatable. Not given to the agent.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<OsString>,

    /// Run the agent in its own git worktree of the repository at WORKDIR, on its own branch
    /// mosaic/AGENT: made at its first start (from --base), reused after. Needs a git work tree.
    #[arg(
        long,
        env = "MOSAIC_AGENT_WORKTREE",
        value_parser = boolish
    )]
    pub worktree: bool,

    /// Where a new worktree's branch starts: a branch, tag or commit [default: HEAD].
    #[arg(long, env = "MOSAIC_WORKTREE_BASE", value_name = "REF")]
    pub base: Option<OsString>,

    /// Shell command run once in a new worktree (`sh -c`, with MOSAIC_AGENT and
    /// MOSAIC_WORKTREE set); failing, the launch fails and the worktree is removed.
    #[arg(long, env = "MOSAIC_WORKTREE_SETUP", value_name = "COMMAND")]
    pub setup: Option<OsString>,

    /// Shell command run in the worktree before `mosaic-fleet prune` removes it (as --setup).
    #[arg(long, env = "MOSAIC_WORKTREE_TEARDOWN", value_name = "COMMAND")]
    pub teardown: Option<OsString>,
    /// Keep no transcript of the agent's output (tmux's scrollback only).
    #[arg(long)]
    pub no_log: bool,

    /// Base directory of transcripts, one folder per socket (BASE/SOCKET/AGENT.log), created
    /// 0700 [default: $XDG_STATE_HOME/mosaic/logs, else ~/.local/state/mosaic/logs].
    #[arg(long, env = "MOSAIC_LOG_DIR", value_name = "DIR")]
    pub log_dir: Option<OsString>,

    /// Size at which a transcript file is rotated: bytes, or with a K, M or G suffix.
    #[arg(long, env = "MOSAIC_LOG_MAX_SIZE", value_name = "SIZE", default_value = mosaic_core::transcript::DEFAULT_MAX_SIZE)]
    pub log_max_size: Option<OsString>,

    /// Rotated transcript files kept (AGENT.log.1 ... AGENT.log.N), 0 to 1000.
    #[arg(long, env = "MOSAIC_LOG_KEEP", value_name = "N", default_value = mosaic_core::transcript::DEFAULT_KEEP)]
    pub log_keep: Option<OsString>,

    /// Path of the mosaic-log binary.
    #[arg(long, env = "MOSAIC_LOG_BIN", value_name = "PATH", hide = true)]
    pub log_bin: Option<OsString>,

    /// Path of the mosaic-hb binary.
    #[arg(long, env = "MOSAIC_HB_BIN", value_name = "PATH", hide = true)]
    pub hb_bin: Option<OsString>,
}

/// A flag's variable: `1`, `true`, `yes`, `on` (any case) set it; `0`, `false`, `no`, `off` and
/// empty (unset, as every variable here) do not; anything else is refused.
fn boolish(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Ok(true),
        "" | "0" | "false" | "no" | "off" | "n" => Ok(false),
        _ => Err("1, true, yes, on, or 0, false, no, off, or empty expected".into()),
    }
}
